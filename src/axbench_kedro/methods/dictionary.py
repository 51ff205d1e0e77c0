"""Released supervised dictionaries as drop-in methods (protocol §3.16): ``Dictionary(ReFT-r1 16K)`` and
``Dictionary(DiffMean 16K)``.

No training: each concept's row is taken from a released ``[n, d]`` weight (files in
``<released_dictionaries>/<folder>/l<L>/``, see :mod:`axbench_kedro.methods.dictionary_file`), matched by concept text
(ties: the concept's ``ref`` feature, then the lowest row) or by ``concept_id``. A concept without a row stops the
run with one error listing them (scores are means over the concepts every method shares). No folder → the method is
skipped with the reason, like SAE without its file. The artefact is the usual rank-1 one (``weight`` rows in
``concept_ids`` order, ``bias``), so detection is the rank-1 method's own rule (``reft_r1``: ReLU(h·w + b);
``diffmean``: h·w) and steering adds m·f·w with m from latent_eval (§3.0).

Example (catalog + parameters):
    released_dictionaries:
      type: axbench_kedro.datasets.dictionaries.ReleasedDictionariesDataset
      path: data/01_raw/dictionaries/${globals:setting}
    training.hyperparameters."Dictionary(ReFT-r1 16K)": {folder: reft-r1-16k, match_on: concept}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import pandas as pd
import torch

from axbench_kedro.config.common import StrictModel
from axbench_kedro.errors import AxbenchConfigError, AxbenchDataError
from axbench_kedro.methods.base import (
    ConceptData,
    ConceptInputs,
    DetectionEncoder,
    Method,
    MethodArtifact,
)
from axbench_kedro.methods.dictionary_file import DictionarySource, feature_path, match_concepts
from axbench_kedro.methods.registry import register
from axbench_kedro.methods.sae_file import SAESource

__all__ = ["DictionaryParams", "ReFTR1DictionaryParams", "DiffMeanDictionaryParams", "DictionaryMethod"]


class DictionaryParams(StrictModel):
    """Attributes:
    folder: the dictionary's folder under the ``released_dictionaries`` root (files in ``<folder>/l<L>/``).
    match_on: ``concept`` (text, then ``ref``, then the lowest row) or ``concept_id`` (row = id, text checked).
    model: the model the dictionary was trained on (``None`` = not checked; else must equal the target model's
        name). The width is always checked against the model's hidden size.
    magnitude_source: ``latent_eval`` (m = max of this method's latent-eval ``max_act`` per concept, ≤ 0 → 50) or
        ``released`` (m = the concept's ``max_act`` in the dictionary's ``acts.json``, same ≤ 0 → 50 rule).
    """

    folder: str = ""
    match_on: Literal["concept", "concept_id"] = "concept"
    model: str | None = None
    magnitude_source: Literal["latent_eval", "released"] = "latent_eval"


class ReFTR1DictionaryParams(DictionaryParams):
    """``Dictionary(ReFT-r1 16K)`` (released as ``pyvene/gemma-reft-r1-{2b,9b}-it-res``)."""

    folder: str = "reft-r1-16k"


class DiffMeanDictionaryParams(DictionaryParams):
    """``Dictionary(DiffMean 16K)`` (released as ``pyvene/gemma-diffmean-{2b,9b}-it-res``)."""

    folder: str = "diffmean-16k"


class DictionaryMethod(Method):
    """Shared behaviour of the released dictionaries; subclasses set :attr:`kind` and their ``Params`` default."""

    kind: ClassVar[Literal["reft_r1", "diffmean"]] = "diffmean"
    Params: ClassVar[type[StrictModel]] = DictionaryParams
    requires = frozenset()
    trains_on_negatives = False
    report_note = (
        "released Concept16K dictionary (protocol §3.16): rows read from local files, no training cost"
    )

    def __init__(self) -> None:
        self._source: DictionarySource | None = None
        self._layer: int | None = None
        self._model: str | None = None
        self._refs: dict[int, str | None] = {}
        self._hp: DictionaryParams = self.params()  # type: ignore[assignment]
        self._rows: dict[int, tuple[int, int]] = {}

    # ---- run inputs ----------------------------------------------------------------------------------------
    def bind_run_inputs(self, inputs: Mapping[str, Any]) -> None:
        self._source = inputs.get("released_dictionaries")
        self._layer = inputs.get("layer")
        self._model = inputs.get("model")
        if inputs.get("hyperparameters") is not None:
            self._hp = self.params(inputs["hyperparameters"])  # type: ignore[assignment]
        meta = inputs.get("concepts_meta")
        if isinstance(meta, pd.DataFrame) and "ref" in meta.columns:
            self._refs = {
                int(c): feature_path(r) for c, r in zip(meta["concept_id"], meta["ref"], strict=True)
            }

    def source_identity(self) -> Any:
        if self._source is None or self._layer is None:
            return None
        return self._source.identity(self._hp.folder, self._layer)

    def unavailable_reason(self, *, sae: SAESource | None, concepts: Sequence[ConceptData]) -> str | None:
        """The missing-folder reason (skipped), or ``None`` after matching every concept to a row (a concept without
        one raises, protocol §3.16)."""
        del sae
        if self._source is None or self._layer is None:
            return "no released dictionary (catalog entry `released_dictionaries` not given to training)"
        reason = self._source.missing_reason(self._hp.folder, self._layer)
        if reason:
            return reason
        self._check_model()
        self._match_rows(concepts)
        return None

    def _check_model(self) -> None:
        if self._hp.model is not None and self._model is not None and self._hp.model != self._model:
            raise AxbenchConfigError(
                f"training.hyperparameters.{self.name}.model: the dictionary is for {self._hp.model!r} but the "
                f"target model is {self._model!r}"
            )

    def _match_rows(self, concepts: Sequence[ConceptData]) -> None:
        assert self._source is not None and self._layer is not None
        rows = self._source.metadata(self._hp.folder, self._layer)
        triples = [(c.concept_id, c.concept, self._refs.get(c.concept_id)) for c in concepts]
        match = match_concepts(rows, triples, self._hp.match_on, self.name)
        self._rows.update(
            zip(match.concept_ids, zip(match.rows, match.duplicate_rows, strict=True), strict=True)
        )

    # ---- import --------------------------------------------------------------------------------------------
    def train_group(self, items: Sequence[ConceptInputs], hp: DictionaryParams) -> list[dict[str, Any]]:
        """Each concept's released row (no gradients; ``hp`` is the bound hyperparameters)."""
        if self._source is None or self._layer is None:
            raise AxbenchConfigError(
                f"{self.name}: no released dictionary bound (catalog `released_dictionaries`)"
            )
        self._hp = hp
        self._check_model()
        todo = [i.data for i in items if i.data.concept_id not in self._rows]
        if todo:
            self._match_rows(todo)
        released = self._source.load(hp.folder, self._layer, items[0].d_model if items else None)
        out = []
        for item in items:
            row, dups = self._rows[item.data.concept_id]
            w = released.weight[row]
            b = released.bias[row] if released.bias is not None else torch.zeros(())
            out.append(
                {
                    "weight": w.clone(),
                    "bias": b.clone().reshape(()),
                    "dictionary_row": int(row),
                    "duplicate_rows": int(dups),
                    "weight_norm": round(float(w.norm()), 6),
                    "released_max_act": released.max_act.get(row),
                    "released_threshold": released.thresholds.get(row),
                }
            )
        return out

    def train_concept(self, inputs: ConceptInputs, hp: DictionaryParams) -> dict[str, Any]:
        return self.train_group([inputs], hp)[0]

    def stack(
        self, rows: Sequence[dict[str, Any]], concepts: Sequence[ConceptData]
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, extra = super().stack(rows, concepts)
        extra["dictionary_kind"] = self.kind
        if self._source is not None and self._layer is not None:
            extra["dictionary_folder"] = str(self._source.folder(self._hp.folder, self._layer))
            extra["dictionary_sha256"] = self._source.sha256(self._hp.folder, self._layer)
        extra["match_on"] = self._hp.match_on
        extra["magnitude_source"] = self._hp.magnitude_source
        return tensors, extra

    # ---- provenance and magnitudes -------------------------------------------------------------------------
    def source_files(self, artifact: MethodArtifact) -> dict[str, str]:
        """Every dictionary file with its SHA-256 (from the artefact's metadata)."""
        folder = artifact.meta.get("dictionary_folder", "")
        hashes = artifact.meta.get("dictionary_sha256") or {}
        return {f"{folder}/{name}" if folder else name: sha for name, sha in sorted(hashes.items())}

    def artifact_magnitudes(self, artifact: MethodArtifact) -> list[dict[str, Any]] | None:
        """With ``magnitude_source: released``, m per concept from the dictionary's ``acts.json`` ``max_act``
        (≤ 0 → 50 is applied by the caller; source ``released_table``); ``None`` otherwise (latent-eval rule).

        Raises:
            AxbenchDataError: a concept whose dictionary row has no released ``max_act`` [D 12].
        """
        if artifact.meta.get("magnitude_source") != "released":
            return None
        values = artifact.meta.get("released_max_act") or [None] * len(artifact.concept_ids)
        rows = artifact.meta.get("dictionary_row") or [None] * len(artifact.concept_ids)
        missing = [
            f"concept_id {c} (row {r})"
            for c, r, v in zip(artifact.concept_ids, rows, values, strict=True)
            if v is None
        ]
        if missing:
            raise AxbenchDataError(
                f"training.hyperparameters.{self.name}.magnitude_source: released, but acts.json has no max_act "
                f"for {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''} [D 12]; use latent_eval"
            )
        acts = next((f for f in self.source_files(artifact) if f.endswith("acts.json")), "acts.json")
        sha = (artifact.meta.get("dictionary_sha256") or {}).get("acts.json", "")
        ref = f"released {acts} (sha256 {sha[:12]}…)" if sha else f"released {acts}"
        return [
            {"concept_id": int(c), "max_act": float(v), "source": "released_table", "source_ref": ref}
            for c, v in zip(artifact.concept_ids, values, strict=True)
        ]

    # ---- detection -----------------------------------------------------------------------------------------
    def detection_encoder(self, artifact: MethodArtifact) -> DetectionEncoder:
        weight = artifact.tensors["weight"].float()
        bias = artifact.tensors.get("bias")
        if self.kind == "diffmean" or bias is None:
            bias = torch.zeros(weight.shape[0])
        return DetectionEncoder(
            weight=weight, bias=bias.float().reshape(-1), activation=self.token_activation
        )


@register("Dictionary(ReFT-r1 16K)")
class ReFTR1Dictionary(DictionaryMethod):
    """ReFT-r1 rows: detection ReLU(h·w + b) (b = 0 without a bias file), steering as ReFT-r1."""

    kind = "reft_r1"
    Params = ReFTR1DictionaryParams
    token_activation = "relu"
    order = 104


@register("Dictionary(DiffMean 16K)")
class DiffMeanDictionary(DictionaryMethod):
    """DiffMean rows: detection h·w, steering as DiffMean."""

    kind = "diffmean"
    Params = DiffMeanDictionaryParams
    token_activation = "linear"
    order = 105
