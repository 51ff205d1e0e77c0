"""HyperSteer (protocol §3.14): one hypernetwork for all concepts, one steering vector per (concept, prompt).

The hypernetwork (:mod:`axbench_kedro.methods.hypersteer_net`) reads the concept description and cross-attends to
the base model's ``hidden_states[L]`` (output of block L−1) of the prompt tokens; its output v(c, x) is added at
block L. Training (:meth:`HyperSteer.train_all`, called once by the trainer with every *training* concept): h ← h +
v at positions "all" of the block-L states of F-prompt + response, LM loss on the positives' responses (mean over the
batch's response tokens), only the hypernetwork trains; AdamW, linear decay, gradient clipping, batches mixing
concepts.

Where the states come from (``cache_states``): cached, the trainer computes the block-L states of every training row
up front (``lm_objective``) and HyperSteer adds every row's prompt states, all held for the whole training; streamed
(the paper configuration), the trainer hands over a row builder (``lm_rows_on_demand``, the same F-prompt, targets
and ``max_length``) and each optimizer step computes its own rows' states, then drops them, so memory does not grow
with the number of concepts (strings and description token ids only), at the price of one truncated forward pass of
the step's rows per step and epoch.

Memory per training row, cached: ``(T_row + T_prompt) · d`` values in the model's dtype plus ``8 · T_row`` bytes of
token ids, more with padding (a row's states are views of its padded batch); ``benchmarks/bench_hypersteer_memory.py``
measures 143 KB a row in float32 at d 512. Gemma-2-2B in bfloat16 (d 2304), a ~200-token row with a ~40-token prompt:
~1.1 MB a row, ~40 GB for 500 concepts × 72 positives. Streamed: one step's ``batch_size`` rows at a time.

Held-out split [D 19]: upstream's split is unpublished, so :func:`held_out_split` holds out a seeded sample of the
concepts (a count or a fraction) or an explicit id list; no held-out concept reaches training, and the artifact's
``concept_ids`` are the held-out concepts only, so steering_eval scores HyperSteer on them alone. Detection: none.
Steering: h + f·v(c, x) at every position (m = 1); the vectors of a run's (concept, prompt) pairs are computed in one
batched pass (:meth:`HyperSteer.prompt_steering_vectors`).

Example:
    >>> train, held = held_out_split([0, 1, 2, 3], held_out=1, seed=42)
    >>> sorted(train + held)
    [0, 1, 2, 3]
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from pydantic import Field, field_validator
from tqdm.auto import tqdm

from axbench_kedro.config.common import StrictModel
from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.lm.activations import truncated_hidden_states
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.methods.activations import LMBatch, LMObjectiveRows
from axbench_kedro.methods.base import ConceptData, ConceptInputs, Method, MethodArtifact
from axbench_kedro.methods.hypersteer_net import HyperNetConfig, HyperSteerNet
from axbench_kedro.methods.rank1 import linear_decay, seeded_generator
from axbench_kedro.methods.registry import register

__all__ = [
    "HyperSteerParams",
    "HyperSteer",
    "held_out_count",
    "held_out_split",
    "net_config",
    "prompt_states",
    "concept_embeddings",
]

_KEY = "training.hyperparameters.HyperSteer"
_NET = "net."  # prefix of the hypernetwork's tensors in the artifact


class HyperSteerParams(StrictModel):
    """Attributes:
    lr: AdamW learning rate (upstream 8e-5).
    epochs: passes over the training concepts' positives.
    batch_size: rows per optimizer step (rows of several concepts mixed).
    max_grad_norm: gradient clipping norm (null = none).
    weight_decay: AdamW weight decay.
    n_layers: decoder layers of the hypernetwork.
    hidden: its width (null = the base model's d).
    n_heads: attention heads.
    head_dim: width of a head (null = hidden // n_heads).
    intermediate: MLP width (null = 4 × hidden).
    held_out: concepts held out of training: a count (int ≥ 1) or a fraction in (0, 1) (rounded, at least 1).
    held_out_ids: explicit held-out concept ids (replace ``held_out``).
    split_seed: seed of the held-out sample (null = the run seed).
    state_batch_size: prompts per truncated forward pass (prompt states, training and steering).
    vector_batch_size: (concept, prompt) pairs per hypernetwork pass at steering time.
    cache_states: compute the block-L states of every training row and its prompt states once, before training, and
        keep them all (fastest, but memory grows with concepts × positives × tokens × d: tens of GB at paper scale);
        false = stream: each optimizer step computes its own rows' states (one more truncated forward pass of the
        step's rows per step, every epoch) and memory stays constant in the number of concepts. Results agree to
        float rounding (rows are padded per step instead of per concept), not bit for bit.
    """

    lr: float = Field(8e-5, gt=0)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(12, ge=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    n_layers: int = Field(4, ge=1)
    hidden: int | None = Field(None, ge=1)
    n_heads: int = Field(8, ge=1)
    head_dim: int | None = Field(None, ge=2)
    intermediate: int | None = Field(None, ge=1)
    held_out: int | float = 0.1
    held_out_ids: list[int] | None = None
    split_seed: int | None = None
    state_batch_size: int = Field(16, ge=1)
    vector_batch_size: int = Field(32, ge=1)
    cache_states: bool = False

    @field_validator("held_out")
    @classmethod
    def _count_or_fraction(cls, value: int | float) -> int | float:
        if isinstance(value, int) and value < 1:
            raise ValueError("held_out: a count must be >= 1")
        if isinstance(value, float) and not 0.0 < value < 1.0:
            raise ValueError("held_out: a fraction must lie in (0, 1)")
        return value

    @field_validator("head_dim")
    @classmethod
    def _even(cls, value: int | None) -> int | None:
        if value is not None and value % 2:
            raise ValueError("head_dim must be even (rotary embeddings)")
        return value


def held_out_count(held_out: int | float, n_concepts: int) -> int:
    """Concepts held out of ``n_concepts``: a count as given, a fraction rounded (at least 1)."""
    return held_out if isinstance(held_out, int) else max(1, round(held_out * n_concepts))


def held_out_split(
    concept_ids: Sequence[int],
    held_out: int | float,
    seed: int,
    explicit: Sequence[int] | None = None,
) -> tuple[list[int], list[int]]:
    """``(train_ids, held_out_ids)``, both sorted and disjoint; deterministic for a seed.

    Args:
        concept_ids: every concept of the run.
        held_out: a count, or a fraction of the concepts (rounded, at least 1).
        seed: seed of the sample (``random.Random(seed)`` over the sorted ids).
        explicit: held-out ids given by hand (``held_out`` and ``seed`` are then ignored).

    Raises:
        AxbenchConfigError: an explicit id that is not a concept of the run, or a split that leaves no concept on
            either side.
    """
    ids = sorted({int(c) for c in concept_ids})
    if explicit is not None:
        unknown = sorted({int(c) for c in explicit} - set(ids))
        if unknown:
            raise AxbenchConfigError(
                f"{_KEY}.held_out_ids: concept_id(s) {unknown[:10]} are not in concepts_meta"
            )
        held = sorted({int(c) for c in explicit})
    else:
        k = held_out_count(held_out, len(ids))
        if k >= len(ids):
            raise AxbenchConfigError(
                f"{_KEY}.held_out: holding out {k} of {len(ids)} concepts leaves none to train on"
            )
        held = sorted(random.Random(int(seed)).sample(ids, k))
    train = [c for c in ids if c not in set(held)]
    if not train or not held:
        raise AxbenchConfigError(
            f"{_KEY}.held_out_ids: the split needs at least one training and one held-out concept"
        )
    return train, held


def net_config(hp: HyperSteerParams, d_model: int) -> HyperNetConfig:
    """The hypernetwork's shape for a base model of width ``d_model``."""
    hidden = hp.hidden or d_model
    head_dim = hp.head_dim or max(2, (hidden // hp.n_heads) // 2 * 2)
    return HyperNetConfig(
        d_model=d_model,
        hidden=hidden,
        n_layers=hp.n_layers,
        n_heads=hp.n_heads,
        head_dim=head_dim,
        intermediate=hp.intermediate or 4 * hidden,
    )


def _state_layer(layer: int) -> int:
    """The block whose output is ``hidden_states[layer]`` (upstream's read-out, kept)."""
    if layer < 1:
        raise AxbenchConfigError(
            "run.layer: HyperSteer reads hidden_states[L] (output of block L-1); L must be >= 1"
        )
    return layer - 1


def _right_pad(parts: Sequence[torch.Tensor], left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``[len_i, d]`` tensors into ``[B, T, d]`` with a ``[B, T]`` mask (right or left padding)."""
    t_max, ref = max(p.shape[0] for p in parts), parts[0]
    out = torch.zeros(len(parts), t_max, ref.shape[-1], dtype=ref.dtype, device=ref.device)
    mask = torch.zeros(len(parts), t_max, dtype=torch.long, device=ref.device)
    for b, p in enumerate(parts):
        n = p.shape[0]
        span = slice(t_max - n, t_max) if left else slice(0, n)
        out[b, span], mask[b, span] = p, 1
    return out, mask


def prompt_states(
    tm: TargetModel, token_ids: Sequence[Sequence[int]], layer: int, batch_size: int
) -> list[torch.Tensor]:
    """Per prompt, the base model's ``hidden_states[layer]`` (output of block ``layer − 1``) ``[len_i, d]``."""
    block = _state_layer(layer)
    pad = tm.tokenizer.pad_token_id or 0
    out: list[torch.Tensor | None] = [None] * len(token_ids)
    order = sorted(range(len(token_ids)), key=lambda i: -len(token_ids[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        t_max = max(len(token_ids[i]) for i in rows)
        ids = torch.full((len(rows), t_max), pad, dtype=torch.long)
        mask = torch.zeros(len(rows), t_max, dtype=torch.long)
        for b, i in enumerate(rows):
            ids[b, : len(token_ids[i])] = torch.as_tensor(list(token_ids[i]), dtype=torch.long)
            mask[b, : len(token_ids[i])] = 1
        with torch.no_grad():
            hidden = truncated_hidden_states(tm.model, ids.to(tm.device), mask.to(tm.device), block)
        for b, i in enumerate(rows):
            out[i] = hidden[b, : len(token_ids[i])].detach()
    return [h for h in out if h is not None]


def _description_ids(tm: TargetModel, descriptions: Sequence[str]) -> list[list[int]]:
    """Per description, its token ids (BOS first; a lone pad id for an empty one)."""
    pad = tm.tokenizer.pad_token_id or 0
    return [tm.tokenizer(text, add_special_tokens=True)["input_ids"] or [pad] for text in descriptions]


def _embed(tm: TargetModel, ids: Sequence[int]) -> torch.Tensor:
    """The base model's (frozen) input embeddings of ``ids``, ``[len, d]``."""
    with torch.no_grad():
        return tm.model.get_input_embeddings()(torch.tensor([list(ids)], device=tm.device))[0].detach()


def concept_embeddings(tm: TargetModel, descriptions: Sequence[str]) -> list[torch.Tensor]:
    """Per description, the base model's (frozen) input embeddings of its tokens ``[len_i, d]``."""
    return [_embed(tm, ids) for ids in _description_ids(tm, descriptions)]


_StepRows = Callable[[Sequence[int]], tuple[LMBatch, list[torch.Tensor]]]


def _prompt_ids(rows: LMObjectiveRows) -> list[list[int]]:
    return [ids[:n].tolist() for ids, n in zip(rows.input_ids, rows.prompt_lengths, strict=True)]


def _cached_rows(
    items: Sequence[ConceptInputs], tm: TargetModel, layer: int, hp: HyperSteerParams
) -> _StepRows:
    """A step's batch and prompt states, sliced out of every row's states computed here, once."""
    if any(it.lm_rows is None for it in items):
        raise ValueError("HyperSteer (cache_states: true) needs the trainer's lm_objective rows")
    rows = LMObjectiveRows.concat(
        [it.lm_rows.subset(range(len(it.data.pos_inputs))) for it in items]  # type: ignore[union-attr]
    )
    prompts = prompt_states(tm, _prompt_ids(rows), layer, hp.state_batch_size)
    return lambda pick: (rows.batch(pick), [prompts[i] for i in pick])


def _streamed_rows(
    items: Sequence[ConceptInputs],
    pairs: Sequence[tuple[int, int]],
    tm: TargetModel,
    layer: int,
    hp: HyperSteerParams,
) -> _StepRows:
    """A step's batch and prompt states, computed for that step's rows only (the trainer's row builder)."""
    build = items[0].lm_row_builder
    if build is None:
        raise ValueError("HyperSteer (cache_states: false) needs the trainer's on-demand LM rows")

    def step(pick: Sequence[int]) -> tuple[LMBatch, list[torch.Tensor]]:
        chosen = [pairs[i] for i in pick]
        rows = build(
            [items[c].data.pos_inputs[r] for c, r in chosen],
            [items[c].data.pos_outputs[r] for c, r in chosen],
        )
        return rows.batch(range(len(rows))), prompt_states(tm, _prompt_ids(rows), layer, hp.state_batch_size)

    return step


def _build_net(cfg: HyperNetConfig, seed: int, device: torch.device) -> HyperSteerNet:
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # initialise from the method's seed, leave the global RNG alone
        torch.manual_seed(int(seed) % (2**63))
        net = HyperSteerNet(cfg)
    return net.to(device)


@register("HyperSteer")
class HyperSteer(Method):
    """A hypernetwork trained once on every training concept; steers held-out concepts with v(c, x)."""

    Params = HyperSteerParams
    order = 61
    requires = frozenset({"lm_objective", "lm_rows_on_demand"})  # one of them, by cache_states (requirements)
    trains_on_negatives = False
    trains_jointly = True
    per_prompt_vectors = True
    detects = False
    detection_kind = "none"
    magnitude_source = "unit"
    version = "1"
    report_note = (
        "HyperSteer: scored on its held-out concepts only (a configurable seeded split; upstream never released "
        "its split), so its numbers are not comparable with the leaderboard row [D 19]."
    )

    def unavailable_reason(self, *, sae: Any, concepts: Sequence[ConceptData]) -> str | None:
        del sae
        if len(concepts) < 2:
            return "HyperSteer needs at least two concepts (one to train on, one held out)"
        return None

    def split_concepts(
        self, concepts: Sequence[ConceptData], hp: HyperSteerParams, seed: int
    ) -> tuple[list[ConceptData], list[ConceptData]]:
        """Training concepts and held-out concepts (:func:`held_out_split`; ``split_seed`` or the run seed)."""
        split_seed = hp.split_seed if hp.split_seed is not None else seed
        train, held = held_out_split(
            [c.concept_id for c in concepts], hp.held_out, split_seed, hp.held_out_ids
        )
        by_id = {c.concept_id: c for c in concepts}
        return [by_id[c] for c in train], [by_id[c] for c in held]

    def requirements(self, hp: HyperSteerParams) -> frozenset[str]:
        """Every training row's states up front (``cache_states``), else a builder of one step's rows."""
        return frozenset({"lm_objective" if hp.cache_states else "lm_rows_on_demand"})

    def train_concept(self, inputs: ConceptInputs, hp: HyperSteerParams) -> dict[str, Any]:
        raise NotImplementedError("HyperSteer trains once across concepts (train_all)")

    def train_all(
        self,
        items: Sequence[ConceptInputs],
        evaluated: Sequence[ConceptData],
        hp: HyperSteerParams,
        seed: int,
    ) -> dict[str, Any]:
        """Train the hypernetwork on the positives of ``items`` (training concepts only).

        Returns:
            The artifact's tensors (``net.*``) and metadata (``net_config``, ``concepts``: the descriptions of
            ``evaluated`` in row order, ``train_concept_ids``, ``held_out_concept_ids``, ``train_loss``).
        """
        tail = items[0].lm_tail
        if tail is None:
            raise ValueError("HyperSteer needs the trainer's LM tail")
        tm: TargetModel = tail.tm
        # every training row (a positive), as (concept index, row of the concept); the same order in both modes
        pairs = [(c, r) for c, it in enumerate(items) for r in range(len(it.data.pos_inputs))]
        descriptions = _description_ids(tm, [it.data.concept for it in items])
        if hp.cache_states:
            step_rows = _cached_rows(items, tm, tail.layer, hp)
            embedded = [_embed(tm, ids) for ids in descriptions]
            concept_emb: Callable[[int], torch.Tensor] = embedded.__getitem__
        else:  # token ids only: a step embeds its own concepts (a lookup)
            step_rows = _streamed_rows(items, pairs, tm, tail.layer, hp)
            concept_emb = lambda c: _embed(tm, descriptions[c])  # noqa: E731
        cfg = net_config(hp, tm.d_model)
        net = _build_net(cfg, seed, tm.device)
        params = [p for p in net.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        n = len(pairs)
        per_epoch = -(-n // hp.batch_size)
        sched = linear_decay(opt, hp.epochs * per_epoch)
        order_gen = seeded_generator(seed)
        losses: list[float] = []
        net.train()
        with tqdm(total=hp.epochs * per_epoch, desc="HyperSteer training", unit="step") as bar:
            for _ in range(hp.epochs):
                order = torch.randperm(n, generator=order_gen).tolist()
                for start in range(0, n, hp.batch_size):
                    pick = order[start : start + hp.batch_size]
                    batch, prompts = step_rows(pick)
                    c_emb, c_mask = _right_pad([concept_emb(pairs[i][0]) for i in pick], left=True)
                    p_states, p_mask = _right_pad(prompts)
                    v = net(c_emb, c_mask, p_states, p_mask)
                    h = batch.hidden.float() + v[:, None, :] * batch.intervene[..., None]
                    loss = tail.token_losses(h, batch)[0].mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if hp.max_grad_norm is not None:
                        torch.nn.utils.clip_grad_norm_(params, hp.max_grad_norm)
                    opt.step()
                    sched.step()
                    losses.append(round(float(loss.detach()), 6))
                    bar.update(1)
                    bar.set_postfix(loss=f"{losses[-1]:.3f}")
        state = {f"{_NET}{k}": v.detach().float().cpu().contiguous() for k, v in net.state_dict().items()}
        return {
            **state,
            "net_config": cfg.to_dict(),
            "concepts": [c.concept for c in evaluated],
            "train_concept_ids": [it.data.concept_id for it in items],
            "held_out_concept_ids": [c.concept_id for c in evaluated],
            "train_loss": losses,
        }

    def steering_vectors(self, artifact: MethodArtifact) -> torch.Tensor:
        raise NotImplementedError("HyperSteer's vectors depend on the prompt: use prompt_steering_vectors")

    def load_net(self, artifact: MethodArtifact, device: torch.device) -> HyperSteerNet:
        """The trained hypernetwork of ``artifact`` (eval mode, float32, on ``device``)."""
        net = HyperSteerNet(HyperNetConfig(**artifact.meta["net_config"]))
        state = {k[len(_NET) :]: v for k, v in artifact.tensors.items() if k.startswith(_NET)}
        net.load_state_dict(state)
        return net.to(device).eval()

    def steering_subset(self, artifact: MethodArtifact) -> frozenset[int] | None:
        """The held-out concepts (the artifact's): HyperSteer is evaluated on them only [D 19]."""
        return frozenset(artifact.concept_ids)

    def steered_concept_count(self, hp: HyperSteerParams, n_concepts: int) -> int:
        """The held-out concepts' count (what the capacity plan charges generations for)."""
        if hp.held_out_ids is not None:
            return min(len(set(hp.held_out_ids)), n_concepts)
        return min(held_out_count(hp.held_out, n_concepts), n_concepts)

    def prompt_steering_vectors(
        self,
        artifact: MethodArtifact,
        tm: TargetModel,
        layer: int,
        concept_ids: Sequence[int],
        prompts: Sequence[str],
    ) -> torch.Tensor:
        """v(c, x) for each (``concept_ids[i]``, ``prompts[i]``) pair (F-prompt strings): ``[n, d]`` float32 CPU."""
        hp = self.params(artifact.meta.get("hyperparameters"))
        rows = artifact.rows_of(concept_ids).tolist()
        descriptions = artifact.meta["concepts"]
        net = self.load_net(artifact, tm.device)
        unique = list(dict.fromkeys(prompts))
        ids = tm.tokenizer(list(unique), add_special_tokens=False, truncation=True, max_length=1024)[
            "input_ids"
        ]
        states = dict(zip(unique, prompt_states(tm, ids, layer, hp.state_batch_size), strict=True))
        needed = sorted(set(rows))
        emb = dict(zip(needed, concept_embeddings(tm, [descriptions[r] for r in needed]), strict=True))
        out = torch.zeros(len(prompts), tm.d_model)
        step = hp.vector_batch_size
        with torch.no_grad():
            for start in tqdm(range(0, len(prompts), step), desc="HyperSteer vectors", unit="batch"):
                part = range(start, min(start + step, len(prompts)))
                c_emb, c_mask = _right_pad([emb[rows[i]] for i in part], left=True)
                p_states, p_mask = _right_pad([states[prompts[i]] for i in part])
                out[start : part.stop] = net(c_emb, c_mask, p_states, p_mask).cpu()
        if not torch.isfinite(out).all():
            raise ValueError("HyperSteer: the hypernetwork produced non-finite steering vectors")
        return out
