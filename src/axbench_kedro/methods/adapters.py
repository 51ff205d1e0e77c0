"""Shared machinery of the factor-free adapter baselines (LoRA, LoReFT; protocol §3.12).

An adapter method trains, per concept, a small set of weights that change the target model itself (a low-rank
update of some ``o_proj`` layers, a low-rank representation edit at some blocks) through the plain LM loss on the
concept's positives, with a full forward pass (its layers may lie before the training layer L). Steering samples
from the adapted model: :meth:`AdapterMethod.adapter` is a context manager that attaches one concept's adapter to
the shared model and detaches it on exit, which the steering schedule enters around each (single-concept) batch.

The rows come from the trainer's ``lm_objective`` resource (F-prompt + response token ids and prompt lengths, the
same targets as SSV); the model is the one behind ``ConceptInputs.lm_tail``. While an adapter is attached (in
training and in steering) the shared model object is changed for every caller, so it must not serve concurrent
forwards from other threads (Dask workers are processes with one thread each by default).

Example:
    >>> method = get_method("LoRA")
    >>> with method.adapter(artifact, tm, concept_id=0):
    ...     gens = sample_generate(tm, prompts, max_new_tokens=32, batch_size=8, seed=0)
"""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

import torch

from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.lm.activations import decoder_module
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.methods.activations import LMBatch, LMObjectiveRows
from axbench_kedro.methods.base import ConceptInputs, Method, MethodArtifact
from axbench_kedro.methods.lm_tail import linear_cross_entropy
from axbench_kedro.methods.rank1 import linear_decay, seeded_generator

__all__ = [
    "AdapterMethod",
    "AdapterSchedule",
    "resolve_layers",
    "positive_rows",
    "full_response_loss",
    "fit_adapter",
]


class AdapterSchedule(Protocol):
    """The optimisation hyperparameters every adapter method's ``Params`` carries (read by :func:`fit_adapter`)."""

    lr: float
    epochs: int
    batch_size: int
    gradient_accumulation: int
    max_grad_norm: float | None


class AdapterMethod(Method):
    """A factor-free method whose steering is sampling from the model with one concept's adapter attached.

    Subclasses implement :meth:`train_concept` and :meth:`adapter`; the steering schedule generates once per
    instruction (from the plain ``input``) inside ``adapter(artifact, tm, concept_id)``.
    """

    requires = frozenset({"lm_objective"})
    trains_on_negatives = False
    detects = False
    detection_kind = "none"
    factor_free = True
    magnitude_source = "unit"

    @abstractmethod
    def adapter(
        self, artifact: MethodArtifact, tm: TargetModel, concept_id: int
    ) -> AbstractContextManager[None]:
        """Attach ``concept_id``'s adapter to ``tm.model`` for the duration of the ``with`` block."""

    def adapter_sha(self, artifact: MethodArtifact, concept_id: int) -> str:
        """SHA-256 of one concept's adapter tensors (the generation cache key's stand-in for a vector hash); for
        rows kept in files, of the file's recorded SHA-256 (nothing is read)."""
        h = hashlib.sha256(self.name.encode())
        if artifact.row_files:
            artifact.rows_of([concept_id])
            h.update(b"file " + artifact.row_files[int(concept_id)].sha256.encode())
            return h.hexdigest()
        tensors = artifact.concept_tensors(concept_id)
        for name in sorted(tensors):
            t = tensors[name].detach().to(torch.float32).cpu().contiguous()
            h.update(name.encode() + str(tuple(t.shape)).encode() + t.numpy().tobytes())
        return h.hexdigest()


def resolve_layers(layers: Sequence[int] | None, tm: TargetModel, run_layer: int, key: str) -> list[int]:
    """The adapted layers: ``layers`` (sorted, unique) or, when ``None``, the training layer alone.

    Raises:
        AxbenchConfigError: a layer outside the model (``key`` names the setting).
    """
    out = sorted({int(x) for x in layers}) if layers is not None else [int(run_layer)]
    bad = [x for x in out if not 0 <= x < tm.n_layers]
    if bad or not out:
        raise AxbenchConfigError(
            f"{key}: layer(s) {bad or out} outside the target model's {tm.n_layers} layers"
        )
    return out


def positive_rows(inputs: ConceptInputs) -> LMObjectiveRows:
    """The concept's positive LM-objective rows (positives come first in ``lm_rows``)."""
    if inputs.lm_rows is None or inputs.lm_tail is None:
        raise ValueError("adapter methods need the trainer's lm_objective rows")
    return inputs.lm_rows.subset(range(len(inputs.data.pos_inputs)))


def full_response_loss(tm: TargetModel, batch: LMBatch) -> torch.Tensor:
    """Mean cross-entropy over the response tokens of ``batch`` from a full forward pass of ``tm.model``."""
    model = tm.model
    final = decoder_module(model)(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
    ).last_hidden_state
    b_idx, t_idx = batch.target.nonzero(as_tuple=True)
    labels = batch.input_ids[b_idx, t_idx + 1]
    head = model.get_output_embeddings().weight
    softcap = getattr(model.config, "final_logit_softcapping", None)
    return linear_cross_entropy(final[b_idx, t_idx].to(head.dtype), head, labels, softcap).mean()


def fit_adapter(
    rows: LMObjectiveRows,
    params: Sequence[torch.nn.Parameter],
    loss_fn: Callable[[LMBatch], torch.Tensor],
    hp: AdapterSchedule,
    *,
    seed: int,
    device: torch.device,
    after_step: Callable[[], None] | None = None,
) -> list[float]:
    """AdamW (wd 0, ``hp.lr``) with linear decay over the rows (shuffled per epoch by ``seed``) for ``hp.epochs``;
    returns the per-step losses.

    An optimizer step follows every ``hp.gradient_accumulation`` micro-batches of ``hp.batch_size`` rows (and the
    last one of an epoch), after clipping to ``hp.max_grad_norm`` when set; the loss of a step is the mean of its
    micro-batch losses. Dropout draws from a forked RNG seeded with ``seed``, so the global random state is left as
    it was.
    """
    lr, epochs, batch_size = hp.lr, hp.epochs, hp.batch_size
    gradient_accumulation, max_grad_norm = hp.gradient_accumulation, hp.max_grad_norm
    n = len(rows)
    micro = -(-n // batch_size)
    opt = torch.optim.AdamW(list(params), lr=lr, weight_decay=0.0)
    sched = linear_decay(opt, epochs * -(-micro // gradient_accumulation))
    order_gen = seeded_generator(seed)
    losses: list[float] = []
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(int(seed) % (2**63))
        for _ in range(epochs):
            order = torch.randperm(n, generator=order_gen).tolist()
            running, count = 0.0, 0
            for k, start in enumerate(range(0, n, batch_size)):
                loss = loss_fn(rows.batch(order[start : start + batch_size]))
                (loss / gradient_accumulation).backward()
                running, count = running + float(loss.detach()), count + 1
                if (k + 1) % gradient_accumulation == 0 or k + 1 == micro:
                    if max_grad_norm is not None:
                        torch.nn.utils.clip_grad_norm_(list(params), max_grad_norm)
                    opt.step()
                    sched.step()
                    opt.zero_grad(set_to_none=True)
                    if after_step is not None:
                        after_step()
                    losses.append(round(running / count, 6))
                    running, count = 0.0, 0
    return losses
