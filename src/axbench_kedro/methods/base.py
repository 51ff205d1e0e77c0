"""The method interface every AxBench method implements, and the value objects it exchanges.

A method is a stateless object registered by name (see :mod:`axbench_kedro.methods.registry`). The training
pipeline asks it for one concept's parameters at a time (:meth:`Method.train_concept`), stacks the rows into a
:class:`MethodArtifact` (row ``i`` = ``artifact.concept_ids[i]``), and the later pipelines read that artifact back
through the method:

* detection (``latent_eval``) — by :attr:`Method.detection_kind`:
  ``"activation"``: :meth:`Method.detection_encoder` gives a per-token score ``act(h·W[row] + b[row])`` at layer L
  (all such methods are scored together in one truncated forward pass); ``"text"``:
  :meth:`Method.score_texts` (BoW); ``"gradient"``: :meth:`Method.score_model_texts` (attribution methods that
  need the target model and gradients, IG / IxG); ``"llm"``: the node asks an LLM client (PromptDetection);
  ``"none"``: no detection score.
* steering (``steering_eval``, helper D): :attr:`Method.steers`, :attr:`Method.factor_free`,
  :attr:`Method.magnitude_source` and :meth:`Method.steering_vectors` (``[n_concepts, d]``, the vector ``w`` of
  ``h + m·f·w``).

Example:
    >>> from axbench_kedro.methods import get_method
    >>> m = get_method("DiffMean")
    >>> m.steers, m.factor_free, m.magnitude_source, m.detection_kind
    (True, False, 'latent_eval', 'activation')
    >>> vectors = m.steering_vectors(artifact)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch

from axbench_kedro.config.common import StrictModel

if TYPE_CHECKING:  # pragma: no cover
    from axbench_kedro.methods.activations import ConceptActivations, LMObjectiveRows
    from axbench_kedro.methods.preference import PreferenceRows
    from axbench_kedro.methods.sae_file import SAEParams, SAESource

__all__ = [
    "DetectionKind",
    "MagnitudeSource",
    "MethodRole",
    "SuppressionIntervention",
    "Requirement",
    "NoParams",
    "ConceptData",
    "PreferenceData",
    "ConceptInputs",
    "DetectionEncoder",
    "MethodArtifact",
    "RowFile",
    "Method",
    "apply_activation",
]

DetectionKind = Literal["activation", "text", "gradient", "llm", "none"]
MagnitudeSource = Literal["latent_eval", "unit", "sae_table"]
# What a method's row is for readers of the reports: a method of the benchmark, or a control (a reference row such as
# a random direction, which shows the chance level; reports label it "<name> (control)").
MethodRole = Literal["method", "control"]
# How a rank-1 method suppresses its concept (protocol §6): "addition" adds m·f·w with the negated factor f < 0;
# "addition_suppression" (RePS-SV, Lang.) adds s·v with s = f − b (f < 0), f + b (f > 0), 0 (f = 0).
SuppressionIntervention = Literal["addition", "addition_suppression"]
# What a method needs from the trainer for one concept:
#   "activations"  — layer-L activations of the concept's F-binary rows (shared by every no-gradient method)
#   "lm_objective" — cached layer-L states of F-prompt + output rows, to train through the LM loss
#   "sae"          — a GemmaScope SAE (``params.npz``)
#   "texts"        — nothing but the raw rows (the ConceptData is always given)
#   "preference"   — the concept's ``preference_data`` pairs as cached layer-L states (RePS family, protocol §3.13)
#   "lm_tail"      — only the runtime of the blocks after L and the LM head (IG / IxG, SAE (filtered))
#   "lm_rows_on_demand" — a builder of "lm_objective" rows for given pairs, plus the LM tail, so a method computes
#                    only the rows it is about to use (HyperSteer streaming its joint training)
Requirement = Literal[
    "activations", "lm_objective", "sae", "texts", "preference", "lm_tail", "lm_rows_on_demand"
]


class NoParams(StrictModel):
    """Hyperparameters of a method that has none."""


@dataclass(frozen=True)
class ConceptData:
    """One concept's training rows (protocol §2.4: its positives and its genre's pool negatives).

    Attributes:
        concept_id: dense concept id.
        concept: the concept description.
        genre: the genre whose pool negatives are used.
        sae_id: the concept's SAE feature index (−1 if none).
        pos_inputs, pos_outputs: raw instruction/response pairs of the positives.
        neg_inputs, neg_outputs: raw pairs of the same-genre pool negatives.
    """

    concept_id: int
    concept: str
    genre: str
    sae_id: int
    pos_inputs: tuple[str, ...]
    pos_outputs: tuple[str, ...]
    neg_inputs: tuple[str, ...]
    neg_outputs: tuple[str, ...]

    @property
    def inputs(self) -> tuple[str, ...]:
        """Positives then negatives."""
        return self.pos_inputs + self.neg_inputs

    @property
    def outputs(self) -> tuple[str, ...]:
        """Positives then negatives."""
        return self.pos_outputs + self.neg_outputs

    @property
    def labels(self) -> np.ndarray:
        """1 for positives, 0 for negatives (same order as :attr:`inputs`)."""
        return np.r_[np.ones(len(self.pos_inputs)), np.zeros(len(self.neg_inputs))].astype(np.int64)

    def fingerprint(self) -> str:
        """SHA-256 of everything that determines training on this concept."""
        h = hashlib.sha256()
        for part in (str(self.concept_id), self.concept, self.genre, str(self.sae_id)):
            h.update(part.encode("utf-8") + b"\x00")
        for rows in (self.pos_inputs, self.pos_outputs, self.neg_inputs, self.neg_outputs):
            h.update(str(len(rows)).encode() + b"\x01")
            for text in rows:
                h.update(text.encode("utf-8") + b"\x00")
        return h.hexdigest()


@dataclass(frozen=True)
class PreferenceData:
    """One concept's preference pairs (protocol §1.4, §2.6), in ``preference_data`` row order.

    Attributes:
        concept_id: dense concept id.
        inputs: raw instructions x.
        winning: the concept responses y_c (``winning_output``).
        losing: the target model's own responses y (``losing_output``).
    """

    concept_id: int
    inputs: tuple[str, ...]
    winning: tuple[str, ...]
    losing: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.inputs)

    def fingerprint(self) -> str:
        """SHA-256 of the pairs (part of the training cache key of the methods that use them)."""
        h = hashlib.sha256(str(self.concept_id).encode() + b"\x00")
        for rows in (self.inputs, self.winning, self.losing):
            h.update(str(len(rows)).encode() + b"\x01")
            for text in rows:
                h.update(text.encode("utf-8") + b"\x00")
        return h.hexdigest()


@dataclass
class ConceptInputs:
    """What the trainer hands :meth:`Method.train_concept` for one concept.

    Only the resources named in :attr:`Method.requires` are filled in.

    Attributes:
        data: the concept's rows.
        seed: the per-concept, per-method seed (derived from the run seed).
        device: torch device of the target model.
        d_model: hidden size d of the target model (always filled in by the trainer).
        activations: shared layer-L activations of the F-binary rows ("activations").
        lm_rows: cached layer-L states for LM-objective training ("lm_objective").
        lm_tail: callable runtime of the blocks after L and the LM head ("lm_objective", "preference").
        sae: the full SAE ("sae").
        binary_texts: F-binary strings of ``data.inputs``/``data.outputs`` ("texts").
        preference: cached layer-L states of the concept's preference pairs ("preference").
        lm_row_builder: ``(raw inputs, raw outputs) → LMObjectiveRows`` computed now, formatted as ``lm_rows``
            ("lm_rows_on_demand").
    """

    data: ConceptData
    seed: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    d_model: int | None = None
    binary_texts: tuple[str, ...] | None = None
    activations: ConceptActivations | None = None
    lm_rows: LMObjectiveRows | None = None
    lm_tail: Any = None
    sae: SAEParams | None = None
    preference: PreferenceRows | None = None
    lm_row_builder: Callable[[Sequence[str], Sequence[str]], LMObjectiveRows] | None = None


@dataclass(frozen=True)
class DetectionEncoder:
    """Per-token detection score of an ``activation`` method: ``act(h @ weight.T + bias)``.

    Attributes:
        weight: ``[n_concepts, d]`` (row = concept, in the artifact's order).
        bias: ``[n_concepts]`` (zeros for methods whose detection ignores the bias).
        activation: ``linear`` (h·w), ``relu`` (ReLU(h·w)) or ``jumprelu`` (GemmaScope JumpReLU with ``threshold``).
        threshold: ``[n_concepts]`` JumpReLU thresholds (``jumprelu`` only).
    """

    weight: torch.Tensor
    bias: torch.Tensor
    activation: Literal["linear", "relu", "jumprelu"] = "linear"
    threshold: torch.Tensor | None = None

    def apply(self, pre: torch.Tensor) -> torch.Tensor:
        """Turn pre-activations ``[..., n]`` (= h·W + b) into scores."""
        return apply_activation(pre, self.activation, self.threshold)


def apply_activation(
    pre: torch.Tensor, activation: str, threshold: torch.Tensor | None = None
) -> torch.Tensor:
    """``linear`` → pre; ``relu`` → ReLU(pre); ``jumprelu`` → 1[pre > θ]·ReLU(pre) (protocol §3.7)."""
    if activation == "linear":
        return pre
    if activation == "relu":
        return torch.relu(pre)
    if activation == "jumprelu":
        if threshold is None:
            raise ValueError("jumprelu needs a threshold")
        return (pre > threshold).to(pre.dtype) * torch.relu(pre)
    raise ValueError(f"unknown activation {activation!r}")


@dataclass(frozen=True)
class RowFile:
    """One concept's tensors of a :attr:`~Method.rows_on_disk` method, in a safetensors file read on demand.

    Attributes:
        path: the file (names without the concept axis: what ``train_concept`` returned).
        sha256: SHA-256 of the file's bytes (the concept's identity in fingerprints and cache keys).
        owner: keeps a temporary folder holding ``path`` alive (not compared, not pickled).
    """

    path: str
    sha256: str
    owner: Any = field(default=None, compare=False, repr=False)

    def load(self) -> dict[str, torch.Tensor]:
        """The concept's tensors (read now, on the CPU)."""
        from safetensors.torch import load_file

        return load_file(self.path)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "owner": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)


@dataclass
class MethodArtifact:
    """A trained method for every concept: named tensors plus metadata (protocol §1.6).

    ``meta`` always holds ``method``, ``status`` (``ok`` | ``skipped``), ``skip_reason``, ``setting``, ``layer``,
    ``d``, ``seed``, ``model``, ``hyperparameters`` and ``concept_ids`` (the row order of every per-concept
    tensor); methods add their own keys (e.g. ``sae_ids``, ``vocabulary``). A :attr:`~Method.rows_on_disk` method
    keeps its per-concept tensors in ``row_files`` (``{concept_id: RowFile}``) instead of ``tensors``; read one
    concept with :meth:`concept_tensors` either way.
    """

    method: str
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    row_files: dict[int, RowFile] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return str(self.meta.get("status", "ok"))

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def skip_reason(self) -> str | None:
        return self.meta.get("skip_reason")

    @property
    def concept_ids(self) -> list[int]:
        return [int(c) for c in self.meta.get("concept_ids", [])]

    def rows_of(self, concept_ids: Sequence[int]) -> torch.Tensor:
        """Row index of each concept id (``AxbenchDataError`` if one is missing)."""
        from axbench_kedro.errors import AxbenchDataError

        index = {c: i for i, c in enumerate(self.concept_ids)}
        missing = sorted({int(c) for c in concept_ids} - index.keys())
        if missing:
            raise AxbenchDataError(
                f"method_artifacts[{self.method}]: no row for concept_id(s) {missing[:10]}"
            )
        return torch.tensor([index[int(c)] for c in concept_ids], dtype=torch.long)

    def fingerprint(self) -> str:
        """SHA-256 of the tensors and metadata (used as a cache key by later pipelines)."""
        h = hashlib.sha256(self.method.encode())
        h.update(
            repr(
                sorted((k, repr(v)) for k, v in self.meta.items() if k not in ("fingerprint", "method"))
            ).encode()
        )
        for name in sorted(self.tensors):
            t = self.tensors[name].detach().cpu().contiguous()
            h.update(name.encode() + str(t.dtype).encode() + str(tuple(t.shape)).encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        for concept_id in sorted(self.row_files):
            h.update(f"row {concept_id} {self.row_files[concept_id].sha256}".encode())
        return h.hexdigest()

    def concept_tensors(self, concept_id: int) -> dict[str, torch.Tensor]:
        """``concept_id``'s tensors without the concept axis (from its row file, or row of the stacked tensors)."""
        if self.row_files:
            self.rows_of([concept_id])  # the same error for a concept the artifact lacks
            return self.row_files[int(concept_id)].load()
        row = int(self.rows_of([concept_id])[0])
        return {name: t[row] for name, t in self.tensors.items()}


class Method(ABC):
    """One AxBench method (stateless; hyperparameters come in as a validated :attr:`Params` instance).

    Class attributes (capabilities read by the pipelines — never branch on the name):
        name: registry name, also the ``method`` value in every output table.
        Params: pydantic model of the hyperparameters (``params:training.hyperparameters.<name>``).
        requires: trainer resources needed per concept (see :data:`Requirement`).
        detects: has a detection score (scored by ``latent_eval``).
        detection_kind: how it is scored (see the module docstring).
        token_activation: per-token score of the default :meth:`detection_encoder`: ``linear`` (h·w) or ``relu``
            (ReLU(h·w), the LM-objective methods).
        steers: usable by ``steering_eval``.
        factor_free: steering has no strength knob (one generation per instruction).
        magnitude_source: where the steering magnitude m comes from: ``latent_eval`` (max of ``max_act`` over the
            concept's latent-eval rows, ≤ 0 → 50), ``sae_table`` (the feature's Neuronpedia max activation, falling
            back to ``latent_eval``), ``unit`` (m = 1).
        trains_on_negatives: ``False`` when only the positives are used (the trainer then skips the negatives'
            LM-objective rows when no other method needs them).
        version: bumped when the method's maths changes (part of the training cache key).
        role: ``method`` (a method of the benchmark, the default) or ``control`` (a reference row, e.g. a random
            direction giving the chance level); report tables carry it in a ``role`` column and Markdown labels
            controls ``<name> (control)`` (see :func:`axbench_kedro.methods.registry.method_role`).
        order: position in the default method list (``training.methods: null``): lower first; ``None`` (the
            default, e.g. plugins) places the method after every ordered one, alphabetically. Only the class's own
            value counts (a subclass of a built-in does not take its place).
        report_note: one line the run card prints under "Method notes" whenever the method is in the report (how it
            departs from upstream, e.g. the Probe's loss form [D 33]); ``""`` = nothing to say.
        suppression_intervention: how the suppression pipeline applies the vector with a negated factor (see
            :data:`SuppressionIntervention`); ``addition`` (the default) = ``h + m·f·w``.
        detection_reported: ``False`` when the detection scores equal another method's (SAE (filtered) = SAE):
            ``latent_eval`` still scores it (its magnitudes may need the rows), reports leave it out (protocol §4).
        subset_baseline: a method steered on a subset of the concepts (its own filter) names the method the
            leaderboard also scores on that subset, beside it (SAE (filtered) → SAE, protocol §3.15); ``None`` = none.
        trains_jointly: one model for all training concepts (HyperSteer): the trainer calls :meth:`split_concepts`
            and then :meth:`train_all` once, instead of :meth:`train_concept` per concept; the artifact's
            ``concept_ids`` are the evaluated concepts :meth:`split_concepts` returns.
        per_prompt_vectors: the steering vector depends on the prompt too, v(c, x) (HyperSteer): steering asks
            :meth:`prompt_steering_vectors` for every (concept, prompt) pair instead of :meth:`steering_vectors`.
        rows_on_disk: a concept's trained tensors are large (SFT: a model copy): the trainer trains one concept at
            a time and writes its tensors to a file as soon as it finishes, and the artifact refers to the files
            (:attr:`MethodArtifact.row_files`), so memory does not grow with the number of concepts.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[StrictModel]] = NoParams
    requires: ClassVar[frozenset[str]] = frozenset()
    detects: ClassVar[bool] = True
    detection_kind: ClassVar[DetectionKind] = "activation"
    token_activation: ClassVar[Literal["linear", "relu"]] = "linear"
    steers: ClassVar[bool] = True
    factor_free: ClassVar[bool] = False
    magnitude_source: ClassVar[MagnitudeSource] = "latent_eval"
    trains_on_negatives: ClassVar[bool] = True
    version: ClassVar[str] = "1"
    role: ClassVar[MethodRole] = "method"
    order: ClassVar[float | None] = None
    report_note: ClassVar[str] = ""
    suppression_intervention: ClassVar[SuppressionIntervention] = "addition"
    detection_reported: ClassVar[bool] = True
    subset_baseline: ClassVar[str | None] = None
    trains_jointly: ClassVar[bool] = False
    per_prompt_vectors: ClassVar[bool] = False
    rows_on_disk: ClassVar[bool] = False

    # ---- training ------------------------------------------------------------------------------------------
    def params(self, raw: dict[str, Any] | StrictModel | None = None) -> StrictModel:
        """Validate hyperparameters (``None`` → defaults)."""
        if isinstance(raw, self.Params):
            return raw
        return self.Params.model_validate(dict(raw or {}))

    def unavailable_reason(self, *, sae: SAESource | None, concepts: Sequence[ConceptData]) -> str | None:
        """Why the method cannot run here (e.g. no SAE file), or ``None`` when it can (the SAE methods override
        it)."""
        del sae, concepts
        return None

    def concept_limit(self, hp: Any) -> int | None:
        """How many concepts to train (the first ones in ``concept_id`` order; the trainer logs the rest as skipped
        and leaves them out of the artifact), or ``None`` for every concept (SFT overrides it)."""
        del hp
        return None

    def steered_concept_count(self, hp: Any, n_concepts: int) -> int:
        """How many of a run's ``n_concepts`` concepts the method steers, for planning (the capacity plan): those
        its :meth:`concept_limit` trains, or all; HyperSteer overrides it (its held-out concepts)."""
        limit = self.concept_limit(hp)
        return n_concepts if limit is None else min(limit, n_concepts)

    def bind_run_inputs(self, inputs: Mapping[str, Any]) -> None:
        """Receive the training node's run-wide inputs before training (``released_dictionaries``,
        ``concepts_meta``, ``model``, ``layer``, ``hyperparameters``); methods that read a catalog file of their own
        override it."""
        del inputs

    def source_identity(self) -> Any:
        """Identity of the files a bound input will be read from (part of the training cache key); ``None`` = none."""
        return None

    @abstractmethod
    def train_concept(self, inputs: ConceptInputs, hp: Any) -> dict[str, Any]:
        """Train on one concept; returns its tensors (e.g. ``{"weight": [d], "bias": []}``).

        Values may also be JSON-able Python objects (lists, numbers) that :meth:`stack` folds into metadata.
        """

    def split_concepts(
        self, concepts: Sequence[ConceptData], hp: Any, seed: int
    ) -> tuple[list[ConceptData], list[ConceptData]]:
        """A :attr:`trains_jointly` method's ``(training concepts, evaluated concepts)``; default: all, all."""
        del hp, seed
        return list(concepts), list(concepts)

    def requirements(self, hp: Any) -> frozenset[str]:
        """The resources the trainer builds for these hyperparameters (a subset of :attr:`requires`, which also
        decides the cache key's parts); default: all of :attr:`requires`."""
        del hp
        return self.requires

    def train_all(
        self, items: Sequence[ConceptInputs], evaluated: Sequence[ConceptData], hp: Any, seed: int
    ) -> dict[str, Any]:
        """Train a :attr:`trains_jointly` method once on every training concept (``items``); returns the artifact's
        tensors and JSON-able metadata values (``evaluated`` become its ``concept_ids``)."""
        raise NotImplementedError(f"{self.name} does not train across concepts")

    def train_group(self, items: Sequence[ConceptInputs], hp: Any) -> list[dict[str, Any]]:
        """Train several concepts (one result per item); methods that can batch concepts together override it."""
        return [self.train_concept(item, hp) for item in items]

    def stack(
        self, rows: Sequence[dict[str, torch.Tensor]], concepts: Sequence[ConceptData]
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Stack per-concept tensors into artifact tensors (row = concept); other values become metadata lists."""
        del concepts
        if not rows or not rows[0]:
            return {}, {}
        tensors = {
            k: torch.stack([r[k] for r in rows]) for k, v in rows[0].items() if isinstance(v, torch.Tensor)
        }
        extra = {k: [r[k] for r in rows] for k, v in rows[0].items() if not isinstance(v, torch.Tensor)}
        return tensors, extra

    # ---- detection -----------------------------------------------------------------------------------------
    def detection_encoder(self, artifact: MethodArtifact) -> DetectionEncoder:
        """Per-token scorer of an ``activation`` method (rank-1 methods: ``h·w``, no bias, then
        :attr:`token_activation`)."""
        weight = artifact.tensors["weight"].float()
        return DetectionEncoder(
            weight=weight, bias=torch.zeros(weight.shape[0]), activation=self.token_activation
        )

    def score_texts(
        self, artifact: MethodArtifact, texts: Sequence[str], concept_rows: torch.Tensor | None = None
    ) -> np.ndarray:
        """Scores of a ``text`` method: ``[len(texts), n_concepts]`` (or ``[len(texts)]`` with ``concept_rows``)."""
        raise NotImplementedError(f"{self.name} has no text scorer")

    def score_model_texts(
        self,
        artifact: MethodArtifact,
        texts: Sequence[str],
        concept_rows: torch.Tensor | None = None,
        *,
        tm: Any,
        layer: int,
        max_length: int,
    ) -> np.ndarray:
        """Scores of a ``gradient`` method (same shapes as :meth:`score_texts`), computed with the target model."""
        raise NotImplementedError(f"{self.name} has no model scorer")

    def source_files(self, artifact: MethodArtifact) -> dict[str, str]:
        """Files the artifact was read from (path → SHA-256), listed on the run card; ``{}`` for trained methods."""
        del artifact
        return {}

    def steering_subset(self, artifact: MethodArtifact) -> frozenset[int] | None:
        """The concepts steering evaluates when the method covers only some of the run's: by default the artifact's
        own concepts when the trainer left some out (a concept limit: ``skipped_concept_ids``); methods that choose
        their own (SAE (filtered): the kept ones; HyperSteer: the held-out ones) override it. ``None`` = every
        concept of the run (a concept without an artifact row is then an error)."""
        return frozenset(artifact.concept_ids) if "skipped_concept_ids" in artifact.meta else None

    def artifact_magnitudes(self, artifact: MethodArtifact) -> list[dict[str, Any]] | None:
        """Magnitude rows fixed by the artifact itself (``concept_id, max_act, source, source_ref``; e.g. a
        released dictionary's own ``max_act``), or ``None`` to follow :attr:`magnitude_source`."""
        del artifact
        return None

    # ---- steering ------------------------------------------------------------------------------------------
    def steering_vectors(self, artifact: MethodArtifact) -> torch.Tensor:
        """``[n_concepts, d]`` vectors added as ``h + m·f·w`` (row = ``artifact.concept_ids``)."""
        if not self.steers or self.factor_free:
            raise NotImplementedError(f"{self.name} has no steering vector")
        return artifact.tensors["weight"].float()

    def prompt_steering_vectors(
        self,
        artifact: MethodArtifact,
        tm: Any,
        layer: int,
        concept_ids: Sequence[int],
        prompts: Sequence[str],
    ) -> torch.Tensor:
        """A :attr:`per_prompt_vectors` method's ``[n, d]`` vectors, one per (``concept_ids[i]``, ``prompts[i]``)."""
        raise NotImplementedError(f"{self.name} has no per-prompt steering vectors")

    def suppression_biases(self, artifact: MethodArtifact) -> torch.Tensor:
        """``[n_concepts]`` biases b read by ``addition_suppression`` (the artifact's ``bias``; zeros without one)."""
        n = int(artifact.tensors["weight"].shape[0])
        bias = artifact.tensors.get("bias")
        if bias is None or bias.numel() != n:
            return torch.zeros(n)
        return bias.float().reshape(-1)

    def __repr__(self) -> str:
        return f"<Method {self.name}>"
