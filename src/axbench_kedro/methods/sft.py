"""SFT (protocol §3.12): a full fine-tune of the target model on one concept's positives, LM loss on the responses.

Every concept starts from the original weights: the trained parameters are snapshotted (on the CPU) before the
concept's steps and copied back bit for bit afterwards, and the optimizer, the gradients and the snapshot are
dropped before the next concept, so memory after concept k is that after concept 1 (``benchmarks/
bench_sft_memory.py``). AdamW (wd 0), linear decay, clip 1.0, gradient accumulation, in the model's own dtype.

``trainable`` picks the trained parameters: ``all`` (every parameter, the paper's full fine-tune; tied embeddings
count once, and the LM head then trains through a plain cross-entropy instead of the fused frozen-head one) or
``layers`` (the decoder blocks of ``layers``, null = the training layer L; a lighter option for CPU demos). A
concept's row is the fine-tuned values of exactly those parameters in the model's dtype (``sft.<parameter name>``);
with ``all`` that is a model copy (Gemma-2-2B in bf16: ~5.2 GB), so SFT keeps its rows on disk
(:attr:`~axbench_kedro.methods.base.Method.rows_on_disk`): each concept's file is written as soon as the concept
finishes (the training cache's entry, hard-linked into the artifact folder as ``SFT.rows/<concept_id>.safetensors``)
and the adapter reads one concept's file when it is attached, copying the values in and the originals back, both
exact. Memory is that of one concept whatever the count; disk is one model copy per concept. The paper trains only
``max_concepts`` concepts (20 on 2B; §8): the trainer trains the first ``max_concepts`` (concept_id order), logs the
others as skipped and leaves them out of the artifact, and steering evaluates the trained ones only.
Detection: none; steering: sampling from the fine-tuned model (factor-free, once per instruction).

Example:
    >>> with get_method("SFT").adapter(artifact, tm, concept_id=3):
    ...     gens = sample_generate(tm, prompts, max_new_tokens=32, batch_size=8, seed=0)
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import torch
from pydantic import Field
from tqdm.auto import tqdm

from axbench_kedro.config.common import StrictModel
from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.lm.activations import decoder_layers, decoder_module
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.methods.activations import LMBatch
from axbench_kedro.methods.adapters import (
    AdapterMethod,
    fit_adapter,
    full_response_loss,
    positive_rows,
    resolve_layers,
)
from axbench_kedro.methods.base import ConceptInputs, MethodArtifact
from axbench_kedro.methods.registry import register

__all__ = ["SFTParams", "SFT", "trainable_parameters", "swapped_weights", "response_loss", "PREFIX"]

PREFIX = "sft."


class SFTParams(StrictModel):
    """Attributes:
    lr: AdamW learning rate (4e-5 in the paper).
    epochs: passes over the positives.
    batch_size: rows per micro-batch.
    gradient_accumulation: micro-batches per optimizer step.
    max_grad_norm: gradient clipping norm (null = none).
    trainable: ``all`` (full fine-tune) or ``layers`` (only the decoder blocks of ``layers``).
    layers: blocks trained with ``trainable: layers``; null = the training layer L.
    max_concepts: concepts trained (the first ones in concept_id order; null = every concept).
    """

    lr: float = Field(4e-5, gt=0)
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(18, ge=1)
    gradient_accumulation: int = Field(4, ge=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    trainable: Literal["all", "layers"] = "all"
    layers: list[int] | None = None
    max_concepts: int | None = Field(20, ge=1)


def trainable_parameters(
    model: torch.nn.Module, hp: SFTParams, tm: TargetModel, run_layer: int
) -> dict[str, torch.nn.Parameter]:
    """The parameters SFT trains, by their ``named_parameters`` name (tied weights once), in model order.

    Raises:
        AxbenchConfigError: a listed layer outside the model.
    """
    named = dict(model.named_parameters())
    if hp.trainable == "all":
        return named
    layers = resolve_layers(hp.layers, tm, run_layer, "training.hyperparameters.SFT.layers")
    chosen = {id(p) for i in layers for p in decoder_layers(model)[i].parameters()}
    return {name: p for name, p in named.items() if id(p) in chosen}


def response_loss(tm: TargetModel, batch: LMBatch) -> torch.Tensor:
    """Mean cross-entropy over the response tokens of ``batch``; trains the LM head too when it requires a gradient
    (the fused loss of :func:`full_response_loss` treats the head as frozen)."""
    model = tm.model
    head = model.get_output_embeddings()
    if not head.weight.requires_grad:
        return full_response_loss(tm, batch)
    final = decoder_module(model)(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
    ).last_hidden_state
    b_idx, t_idx = batch.target.nonzero(as_tuple=True)
    logits = head(final[b_idx, t_idx].to(head.weight.dtype)).float()
    softcap = getattr(model.config, "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return torch.nn.functional.cross_entropy(logits, batch.input_ids[b_idx, t_idx + 1])


@contextmanager
def swapped_weights(
    params: Mapping[str, torch.nn.Parameter], values: dict[str, torch.Tensor] | None = None
) -> Iterator[None]:
    """Inside the block ``params`` may change (``values`` are copied in first, when given, and the dict is emptied
    as they are, so a loaded model copy is not held through the block); on exit every parameter gets its original
    bits back, and the snapshot (a CPU copy) is released."""
    snapshot = {name: p.detach().to("cpu", copy=True) for name, p in params.items()}
    try:
        if values is not None:
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(values.pop(name).to(device=p.device, dtype=p.dtype))
        yield
    finally:
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(snapshot[name])
        snapshot.clear()


@register("SFT")
class SFT(AdapterMethod):
    """Per-concept full fine-tune through the LM loss on the positives; steering = sampling from the tuned model."""

    Params = SFTParams
    order = 69
    rows_on_disk = True  # a row is a model copy with ``trainable: all``

    def concept_limit(self, hp: SFTParams) -> int | None:
        return hp.max_concepts

    def train_concept(self, inputs: ConceptInputs, hp: SFTParams) -> dict[str, Any]:
        rows = positive_rows(inputs)
        tm: TargetModel = inputs.lm_tail.tm
        params = trainable_parameters(tm.model, hp, tm, inputs.lm_tail.layer)
        flags = {name: p.requires_grad for name, p in params.items()}
        micro = -(-len(rows) // hp.batch_size)
        total = hp.epochs * -(-micro // hp.gradient_accumulation)
        try:
            with (
                swapped_weights(params),
                tqdm(
                    total=total, desc=f"SFT concept {inputs.data.concept_id}", unit="step", leave=False
                ) as bar,
            ):
                for p in params.values():
                    p.requires_grad_(True)
                losses = fit_adapter(
                    rows,
                    list(params.values()),
                    lambda batch: response_loss(tm, batch),
                    hp,
                    seed=inputs.seed,
                    device=tm.device,
                    after_step=lambda: bar.update(1),
                )
                tuned = {PREFIX + name: p.detach().to("cpu", copy=True) for name, p in params.items()}
        finally:
            for name, p in params.items():
                p.grad = None
                p.requires_grad_(flags[name])
            del params
            _release(tm.device)
        return {**tuned, "train_loss": losses}

    @contextmanager
    def adapter(self, artifact: MethodArtifact, tm: TargetModel, concept_id: int) -> Iterator[None]:
        named = dict(tm.model.named_parameters())
        values = {
            k[len(PREFIX) :]: v
            for k, v in artifact.concept_tensors(concept_id).items()
            if k.startswith(PREFIX)
        }
        missing = [n for n in values if n not in named]
        if missing:
            raise AxbenchDataError(
                f"method_artifacts[{self.name}]: parameter(s) {missing[:5]} are not in the target model"
            )
        with swapped_weights({n: named[n] for n in values}, values):
            yield


def _release(device: torch.device) -> None:
    """Return the freed optimizer state and gradients to the allocator before the next concept."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
