"""Training several concepts' vectors together through the LM objective (SSV, ReFT-r1).

Each concept keeps its own rows, shuffle order (its own seeded RNG), loss (mean over its own response tokens) and
optimizer state: the concept vectors are the rows of one ``[C, d]`` parameter, and AdamW, gradient clipping, unit
normalisation and gradient projection all act row by row — so the result equals training the concepts one after
the other, while every step runs the later blocks and the LM head once on the batches of all C concepts (larger,
faster matrix products; far fewer steps).

Example:
    >>> for step, (batch, owner) in enumerate(group_batches(rows, seeds, epochs=3, batch_size=6)):
    ...     ...
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from axbench_kedro.methods.activations import LMBatch, LMObjectiveRows
from axbench_kedro.methods.rank1 import seeded_generator

__all__ = [
    "split_by_size",
    "steps_per_run",
    "group_batches",
    "per_group_mean",
    "clip_rows_",
    "normalise_rows_and_project_",
]


def split_by_size(sizes: Sequence[int]) -> list[list[int]]:
    """Indices grouped by equal size (concepts with equal row counts share a step schedule)."""
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(sizes):
        groups.setdefault(int(n), []).append(i)
    return list(groups.values())


def steps_per_run(n_rows: int, batch_size: int, epochs: int) -> int:
    """Optimizer steps of one concept: epochs × ⌈rows / batch⌉."""
    return epochs * -(-n_rows // batch_size)


def group_batches(
    rows: Sequence[LMObjectiveRows], seeds: Sequence[int], epochs: int, batch_size: int
) -> Iterator[tuple[LMBatch, torch.Tensor]]:
    """Per step, one batch holding the next ``batch_size`` rows of every concept (each shuffled by its own seed).

    Yields:
        ``(batch, owner)``: the collated rows and, per batch row, the index of its concept in ``rows``.
    """
    n = len(rows[0])
    if any(len(r) != n for r in rows):
        raise ValueError("group_batches needs the same number of rows per concept")
    gens = [seeded_generator(s) for s in seeds]
    for _ in range(epochs):
        orders = [torch.randperm(n, generator=g).tolist() for g in gens]
        for start in range(0, n, batch_size):
            picks = [order[start : start + batch_size] for order in orders]
            merged = LMObjectiveRows.concat([r.subset(p) for r, p in zip(rows, picks, strict=True)])
            owner = torch.tensor([c for c, p in enumerate(picks) for _ in p], dtype=torch.long)
            yield merged.batch(range(len(merged))), owner.to(merged.hidden[0].device)


def per_group_mean(values: torch.Tensor, group: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Mean of ``values`` per group index (differentiable)."""
    sums = torch.zeros(n_groups, dtype=values.dtype, device=values.device).index_add(0, group, values)
    counts = torch.bincount(group, minlength=n_groups).clamp_min(1).to(values.dtype)
    return sums / counts


def clip_rows_(grad: torch.Tensor, max_norm: float) -> None:
    """``clip_grad_norm_`` applied to each row on its own (in place)."""
    norms = grad.norm(dim=1)
    grad.mul_((max_norm / (norms + 1e-6)).clamp(max=1.0)[:, None])


def normalise_rows_and_project_(w: torch.nn.Parameter) -> None:
    """Row by row, in place: w ← w/‖w‖, then drop the gradient component along the new w."""
    with torch.no_grad():
        w.div_(w.norm(dim=1, keepdim=True).clamp_min(1e-12))
        if w.grad is not None:
            w.grad.sub_((w.grad * w).sum(dim=1, keepdim=True) * w)
