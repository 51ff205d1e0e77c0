"""GemmaScope SAE methods: SAE (protocol §3.7, the concept's own feature) and SAE-A (§3.8, best feature by AUROC).

The SAE is read from a local ``params.npz`` (``W_enc [d,F]``, ``b_enc [F]``, ``threshold [F]``, ``W_dec [F,d]``,
``b_dec [d]``); a hidden size or width that does not match is an error. Detection is the JumpReLU activation
1[x·W_enc + b_enc > θ]·ReLU(x·W_enc + b_enc) (no ``b_dec`` subtraction); steering adds m·f·``W_dec[id]``. Each
method keeps a pruned SAE with one feature per concept, listed in the artefact's meta ``sae_ids``.

Magnitudes (``magnitude_source = "sae_table"``): m = the ``max_act`` of that feature in the setting's ``sae_max_act``
table (Neuronpedia's ``maxValue``; :func:`axbench_kedro.detection.summary.magnitude_table`). A feature missing from a
present table is an error [D 12]; with no table at all m follows the latent-eval rule of §3.0 and the reports call the
method "SAE (AxBench max-act)" / "SAE-A (AxBench max-act)" [D 13]. With no SAE file both methods are skipped (with the reason) —
never replaced by a random SAE. Reading and checking the file is :mod:`axbench_kedro.methods.sae_file` (re-exported
here).

Example:
    >>> jumprelu(torch.tensor([0.5, 2.0, -1.0]), torch.tensor([1.0, 1.0, 0.0]))  # protocol §10.19
    tensor([0., 2., 0.])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from axbench_kedro.config.common import StrictModel
from axbench_kedro.methods.base import ConceptData, ConceptInputs, DetectionEncoder, Method, MethodArtifact
from axbench_kedro.methods.registry import register
from axbench_kedro.methods.sae_file import SAE_KEYS, SAEParams, SAESource, jumprelu, load_sae_params

__all__ = [
    "SAE_KEYS",
    "SAEParams",
    "SAESource",
    "load_sae_params",
    "jumprelu",
    "row_max_activations",
    "feature_aurocs",
    "SAEMethod",
    "SAEAMethod",
]


def row_max_activations(
    sae: SAEParams, tokens: torch.Tensor, row: torch.Tensor, n_rows: int, chunk: int = 2048
) -> torch.Tensor:
    """Per row and feature, the max JumpReLU activation over the given tokens → ``[n_rows, F]`` (0 if none)."""
    out = torch.zeros(n_rows, sae.width, device=sae.W_enc.device)
    for start in range(0, tokens.shape[0], chunk):
        acts = sae.encode(tokens[start : start + chunk].to(sae.W_enc.device))
        idx = row[start : start + chunk].to(out.device)[:, None].expand_as(acts)
        out.scatter_reduce_(0, idx, acts.float(), reduce="amax", include_self=True)
    return out


def feature_aurocs(pos: torch.Tensor, neg: torch.Tensor, max_elements: int = 2**25) -> torch.Tensor:
    """ROC AUC of every feature (column) separating ``pos [n_p, F]`` from ``neg [n_n, F]`` rows.

    AUC = P(pos > neg) + ½·P(pos = neg) over all pairs (equal to scikit-learn's ``roc_auc_score``, ties included).
    """
    n_p, width = pos.shape
    n_n = neg.shape[0]
    out = torch.empty(width, dtype=torch.float64)
    step = max(1, max_elements // max(n_p * n_n, 1))
    for start in range(0, width, step):
        p = pos[:, None, start : start + step]
        q = neg[None, :, start : start + step]
        score = (p > q).sum((0, 1)).double() + 0.5 * (p == q).sum((0, 1)).double()
        out[start : start + step] = (score / (n_p * n_n)).cpu()
    return out


class _SAEBase(Method):
    """Shared parts: pruned-SAE artifact (meta ``sae_ids`` = each concept's feature, which the magnitude table looks
    up), JumpReLU detection, ``W_dec`` steering."""

    magnitude_source = "sae_table"

    def unavailable_reason(self, *, sae: SAESource | None, concepts: Sequence[ConceptData]) -> str | None:
        if sae is None or not sae.available:
            return (sae or SAESource(None)).missing_reason
        return None

    def _pruned(self, sae: SAEParams, feature: int) -> dict[str, torch.Tensor]:
        return {
            "W_enc": sae.W_enc[:, feature].float().cpu(),
            "b_enc": sae.b_enc[feature].float().cpu(),
            "threshold": sae.threshold[feature].float().cpu(),
            "W_dec": sae.W_dec[feature].float().cpu(),
            "b_dec": sae.b_dec.float().cpu(),
            "sae_id": torch.tensor(int(feature), dtype=torch.int64),
        }

    def stack(
        self, rows: Sequence[dict[str, torch.Tensor]], concepts: Sequence[ConceptData]
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {
            "W_enc": torch.stack([r["W_enc"] for r in rows], dim=1),  # [d, n]
            "b_enc": torch.stack([r["b_enc"] for r in rows]),
            "threshold": torch.stack([r["threshold"] for r in rows]),
            "W_dec": torch.stack([r["W_dec"] for r in rows]),  # [n, d]
            "b_dec": rows[0]["b_dec"],
            "sae_id": torch.stack([r["sae_id"] for r in rows]),
        }
        return tensors, {"sae_ids": [int(r["sae_id"]) for r in rows]}

    def detection_encoder(self, artifact: MethodArtifact) -> DetectionEncoder:
        t = artifact.tensors
        return DetectionEncoder(
            weight=t["W_enc"].T.contiguous().float(),
            bias=t["b_enc"].float(),
            activation="jumprelu",
            threshold=t["threshold"].float(),
        )

    def steering_vectors(self, artifact: MethodArtifact) -> torch.Tensor:
        return artifact.tensors["W_dec"].float()


class SAEParamsModel(StrictModel):
    """The SAE methods have no hyperparameters (the file comes from the catalog, ``training.sae_width`` checks it)."""


@register("SAE")
class SAEMethod(_SAEBase):
    """The concept's own GemmaScope feature (``concepts_meta.sae_id``); no training."""

    Params = SAEParamsModel
    order = 70
    requires = frozenset({"sae"})

    def unavailable_reason(self, *, sae: SAESource | None, concepts: Sequence[ConceptData]) -> str | None:
        reason = super().unavailable_reason(sae=sae, concepts=concepts)
        if reason:
            return reason
        without = [c.concept_id for c in concepts if c.sae_id < 0]
        if without:
            return f"concept(s) {without[:10]} have no SAE feature (concepts_meta.sae_id = -1)"
        return None

    def train_concept(self, inputs: ConceptInputs, hp: StrictModel) -> dict[str, torch.Tensor]:
        sae = inputs.sae
        assert sae is not None
        sae.check_features([inputs.data.sae_id], f"SAE (concept {inputs.data.concept_id})")
        return self._pruned(sae, inputs.data.sae_id)


class SAEAParams(StrictModel):
    """Attributes:
    chunk_tokens: tokens encoded by the full SAE at once (memory bound only).
    """

    chunk_tokens: int = 2048


@register("SAE-A")
class SAEAMethod(_SAEBase):
    """The SAE feature whose per-row max activation best separates the concept's training rows (ROC AUC)."""

    Params = SAEAParams
    order = 80
    requires = frozenset({"activations", "sae"})

    def train_concept(self, inputs: ConceptInputs, hp: SAEAParams) -> dict[str, torch.Tensor]:
        acts, sae = inputs.activations, inputs.sae
        assert acts is not None and sae is not None
        scored = acts.scored
        maxima = row_max_activations(
            sae, acts.acts.tokens[scored], acts.acts.row[scored], acts.acts.n_rows, hp.chunk_tokens
        )
        labels = acts.labels.to(maxima.device).bool()
        auc = feature_aurocs(maxima[labels], maxima[~labels])
        feature = int(torch.argmax(auc))  # first maximum on ties
        out = self._pruned(sae, feature)
        out["auroc"] = torch.tensor(float(auc[feature]))
        return out

    def stack(
        self, rows: Sequence[dict[str, torch.Tensor]], concepts: Sequence[ConceptData]
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = super().stack(rows, concepts)
        meta["train_auroc"] = [round(float(r["auroc"]), 6) for r in rows]
        return tensors, meta
