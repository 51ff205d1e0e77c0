"""Steered generation: pyvene addition ``h + strength·vector`` at the output of block L, one vector per row.

Every row of a batch carries its own vector and strength (rows of different concepts and factors mix freely),
held by :class:`RowAdditionIntervention` as a ``[batch, d]`` buffer. pyvene runs it at every position of every
forward step (``unit_locations=None`` with ``intervene_on_prompt=True``): the whole prompt — BOS, chat prefix and
left padding included — and each generated token (protocol §3.0 / §5.2).

pyvene strips every forward hook of the model when it cleans up; :func:`preserved_forward_hooks` puts foreign hooks
back (use it around any direct pyvene ``forward``/``generate`` call). The intervention hooks live on the shared model
while a batch runs, so one ``TargetModel`` must not be steered from two threads at once.

Example:
    >>> gens = steered_generate(tm, prompts, vectors, strengths, layer=9, max_new_tokens=128, batch_size=16, seed=0)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyvene as pv
import torch

from axbench_kedro.lm.generation import run_generation
from axbench_kedro.lm.loading import validate_layer
from axbench_kedro.lm.types import Generation, TargetModel

__all__ = [
    "RowAdditionIntervention",
    "addition_suppression",
    "addition_suppression_strengths",
    "intervenable_model",
    "preserved_forward_hooks",
    "steered_generate",
]


class RowAdditionIntervention(pv.ConstantSourceIntervention):
    """Adds ``deltas[b]`` to every position of batch row ``b`` (``deltas`` = strength·vector, ``[B, d]``).

    The sum is taken in float32 and cast back to the activation dtype.
    """

    def __init__(self, d_model: int, **kwargs: Any) -> None:
        super().__init__(keep_last_dim=True, **kwargs)
        self.register_buffer("deltas", torch.zeros(1, d_model), persistent=False)

    def set_deltas(self, deltas: torch.Tensor) -> None:
        """Install the per-row additions of the next batch."""
        self.deltas = deltas

    def forward(
        self, base: torch.Tensor, source: Any = None, subspaces: Any = None, **kwargs: Any
    ) -> torch.Tensor:
        if base.shape[0] != self.deltas.shape[0]:
            raise RuntimeError(
                f"intervention holds {self.deltas.shape[0]} row vectors for a batch of {base.shape[0]}"
            )
        return (base.float() + self.deltas[:, None, :].float()).to(base.dtype)


@contextlib.contextmanager
def preserved_forward_hooks(model: torch.nn.Module) -> Iterator[None]:
    """Put back the forward (pre-)hooks that pyvene strips from every submodule when it cleans up.

    pyvene 0.1.8 empties ``_forward_hooks`` / ``_forward_pre_hooks`` of the whole model before and after each call,
    which also deletes hooks it does not own — e.g. the output-capturing hooks transformers 5 installs once per model
    (``output_hidden_states=True`` would silently return nothing afterwards) and hooks of other callers.
    """
    saved = [
        (module, dict(module._forward_hooks), dict(module._forward_pre_hooks))
        for module in model.modules()
        if module._forward_hooks or module._forward_pre_hooks
    ]
    try:
        yield
    finally:
        for module, hooks, pre_hooks in saved:
            for key, fn in hooks.items():
                module._forward_hooks.setdefault(key, fn)
            for key, fn in pre_hooks.items():
                module._forward_pre_hooks.setdefault(key, fn)


def addition_suppression_strengths(factors: torch.Tensor, biases: torch.Tensor) -> torch.Tensor:
    """Per-row strength s of ``addition_suppression`` (protocol §6): ``f − b`` if f < 0, ``f + b`` if f > 0, 0 if f = 0.

    The bias widens the step away from zero on either side; a zero factor leaves the row unsteered whatever b is.
    Pass the result as ``strengths`` of :func:`steered_generate` (m = 1 for the RePS family).

    Args:
        factors: ``[N]`` signed factors (negative in suppression).
        biases: ``[N]`` (or scalar) learned biases b of the rows' vectors.
    """
    f = torch.as_tensor(factors, dtype=torch.float32)
    b = torch.as_tensor(biases, dtype=torch.float32).to(f.device).expand_as(f)
    return torch.where(f < 0, f - b, torch.where(f > 0, f + b, torch.zeros_like(f)))


def addition_suppression(
    h: torch.Tensor, vectors: torch.Tensor, biases: torch.Tensor, factors: torch.Tensor
) -> torch.Tensor:
    """``h ← h + s·v`` at every position with s from :func:`addition_suppression_strengths` (``h [B, T, d]``,
    ``vectors [B, d]``, ``biases, factors [B]``); the sum is taken in float32 and cast back to ``h``'s dtype."""
    s = addition_suppression_strengths(factors, biases).to(h.device)
    return (h.float() + s[:, None, None] * vectors.float().to(h.device)[:, None, :]).to(h.dtype)


def intervenable_model(model: Any, layer: int, intervention: pv.Intervention) -> pv.IntervenableModel:
    """Wrap ``model`` with ``intervention`` on the output of decoder block ``layer``."""
    return pv.IntervenableModel(
        {"component": f"model.layers[{layer}].output", "intervention": intervention}, model=model
    )


def steered_generate(
    tm: TargetModel,
    prompts: Sequence[str],
    vectors: torch.Tensor,
    strengths: torch.Tensor,
    layer: int,
    *,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
    temperature: float = 1.0,
    top_k: int = 50,
    top_p: float = 1.0,
    desc: str | None = None,
    row_keys: Sequence[int] | None = None,
) -> list[Generation]:
    """Sample from formatted ``prompts`` while adding ``strengths[i]·vectors[i]`` to block ``layer`` for row ``i``.

    Args:
        tm: the target model.
        prompts: F-prompt strings (hold ``<bos>``), ``N`` of them.
        vectors: ``[N, d_model]`` steering directions (any dtype/device).
        strengths: ``[N]`` multipliers (``factor·magnitude``); 0 gives plain sampling.
        layer: decoder block whose output is steered.
        max_new_tokens / batch_size / seed / temperature / top_k / top_p: as in
            :func:`axbench_kedro.lm.generation.sample_generate` (``temperature <= 0`` = greedy).
        desc: progress-bar label.
        row_keys: per-row keys of the random streams (default: row positions); pass stable ids (e.g. a hash of
            concept, instruction and factor) to make each row's sample independent of the list it is in.

    Returns:
        One :class:`Generation` per prompt, in input order.
    """
    validate_layer(tm.n_layers, layer)
    n = len(prompts)
    vectors = torch.as_tensor(vectors)
    strengths = torch.as_tensor(strengths).reshape(-1)
    if vectors.ndim != 2 or vectors.shape != (n, tm.d_model):
        raise ValueError(f"vectors must be [{n}, {tm.d_model}], got {list(vectors.shape)}")
    if strengths.shape[0] != n:
        raise ValueError(f"strengths must have {n} entries, got {strengths.shape[0]}")
    deltas = strengths.to(torch.float32)[:, None] * vectors.to(torch.float32)

    intervention = RowAdditionIntervention(tm.d_model).to(tm.device)
    wrapped = intervenable_model(tm.model, layer, intervention)

    @contextlib.contextmanager
    def runner(rows: list[int]) -> Iterator[Callable[..., torch.Tensor]]:
        intervention.set_deltas(deltas[rows].to(tm.device))

        def generate(input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            with preserved_forward_hooks(tm.model):
                _, out = wrapped.generate(
                    {"input_ids": input_ids, "attention_mask": attention_mask},
                    unit_locations=None,
                    intervene_on_prompt=True,
                    **kwargs,
                )
            return out

        yield generate

    return run_generation(
        tm,
        prompts,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        seed=seed,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        runner=runner,
        desc=desc or f"steer L{layer}",
        row_keys=row_keys,
    )
