"""``params:training``: which methods to train and their hyperparameters (protocol §3, defaults §8).

Each method's block under ``hyperparameters`` is validated by that method's own ``Params`` model, so a typo or a
wrong type stops the run before any work, naming the method and the key.

``methods: null`` (the default) means every registered method — the built-ins and the installed entry-point
plugins — in the registry's default order (:func:`axbench_kedro.methods.registry.default_methods`), less
``exclude_methods`` (a setting leaves methods out this way and new plugins still join); a list narrows it.

Example:
    >>> p = TrainingParams(methods=["DiffMean", "Probe"], hyperparameters={"Probe": {"lr": 1e-3}})
    >>> p.method_params("Probe").lr
    0.001
    >>> TrainingParams().method_names()[:2]
    ['DiffMean', 'PCA']
    >>> "SFT" in TrainingParams(exclude_methods=["SFT"]).method_names()
    False
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from axbench_kedro.config.common import StrictModel

__all__ = ["TrainingParams"]


class TrainingParams(StrictModel):
    """Attributes:
    methods: methods to train, in output order (registry names); ``None`` = every registered method (see
        :meth:`method_names`). A string is split on ``;`` (``kedro run --params "training.methods=DiffMean;RePS"``:
        Kedro's ``--params`` splits its value on commas, so it cannot pass a list of several names).
    exclude_methods: registry names left out of the default list (``methods: null``), e.g. ``[SFT]`` on the 9B
        settings (protocol §8); an explicit ``methods`` list is trained as given. A string is split on ``;``.
    hyperparameters: per-method overrides of the method's defaults (``{method: {key: value}}``).
    activation_batch_size: rows per truncated forward pass of the shared activations (protocol: 6).
    lm_cache_batch_size: rows per forward pass when caching layer-L states for LM-objective methods.
    max_length: token cap of training sequences.
    sae_width: expected GemmaScope SAE width (``None`` = not checked); the hidden size is always checked.
    lm_objective_dtype: compute dtype of the blocks after L and the LM head while training SSV / ReFT-r1
        (``None`` = the model's; ``bfloat16`` on a CPU with AMX is several times faster than float32).
    concept_group_size: concepts trained together (one forward pass for their activations; SSV / ReFT-r1 steps
        run all of them in one batch, each concept still optimised on its own).
    append_eot_to_targets: append the chat template's turn end (Gemma ``<end_of_turn>\\n``, two tokens) to every
        LM-objective target (SSV, ReFT-r1), as upstream's June code did without ``keep_orig_axbench_format``;
        ``False`` (default) keeps the Feb/paper targets ``{output}`` exactly (protocol §3.0, §9 decision 2).
    use_cache: reuse per-concept results whose inputs are unchanged (content-keyed store).
    """

    methods: list[str] | None = Field(None, validate_default=True)
    exclude_methods: list[str] = Field(default_factory=list)
    hyperparameters: dict[str, dict[str, Any]] = Field(default_factory=dict)
    activation_batch_size: int = Field(6, ge=1)
    lm_cache_batch_size: int = Field(6, ge=1)
    max_length: int = Field(1024, ge=8)
    sae_width: int | None = Field(None, ge=1)
    lm_objective_dtype: Literal["float32", "bfloat16", "float16"] | None = None
    concept_group_size: int = Field(4, ge=1)
    append_eot_to_targets: bool = False
    use_cache: bool = True

    @field_validator("methods", "exclude_methods", mode="before")
    @classmethod
    def _split_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [name.strip() for name in value.split(";") if name.strip()]
        return value

    @field_validator("methods")
    @classmethod
    def _known_unique(cls, names: list[str] | None) -> list[str] | None:
        from axbench_kedro.methods.registry import default_methods, get_method

        if names is None:
            default_methods()  # loads the plugins now: a broken one stops the run before any work
            return None
        seen: set[str] = set()
        for name in names:
            get_method(name)  # AxbenchConfigError listing the known names
            if name in seen:
                raise ValueError(f"method {name!r} is listed twice")
            seen.add(name)
        return names

    @field_validator("exclude_methods")
    @classmethod
    def _known_excluded(cls, names: list[str]) -> list[str]:
        from axbench_kedro.methods.registry import get_method

        for name in names:
            get_method(
                name
            )  # AxbenchConfigError (a ValueError: pydantic names the key) listing the known names
        return list(dict.fromkeys(names))

    @model_validator(mode="after")
    def _something_left(self) -> TrainingParams:
        if not self.method_names():
            raise ValueError(f"exclude_methods {self.exclude_methods} leaves no method to train")
        return self

    @model_validator(mode="after")
    def _valid_hyperparameters(self) -> TrainingParams:
        from axbench_kedro.methods.registry import get_method

        for name, block in self.hyperparameters.items():
            try:
                get_method(name).params(block)
            except Exception as exc:  # pydantic ValidationError or unknown method
                raise ValueError(f"hyperparameters.{name}: {exc}") from exc
        return self

    def method_names(self) -> list[str]:
        """The methods to train, in output order: :attr:`methods`, or every registered method but
        :attr:`exclude_methods` when it is ``None``."""
        from axbench_kedro.methods.registry import default_methods

        if self.methods is not None:
            return list(self.methods)
        return [name for name in default_methods() if name not in self.exclude_methods]

    def method_params(self, name: str) -> StrictModel:
        """The validated hyperparameters of ``name`` (defaults + overrides)."""
        from axbench_kedro.methods.registry import get_method

        return get_method(name).params(self.hyperparameters.get(name))
