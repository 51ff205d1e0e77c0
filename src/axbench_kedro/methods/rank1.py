"""Small numerical helpers shared by the rank-1 methods (unit norm, gradient projection, schedules, PCA).

Example:
    >>> w = torch.tensor([1.0, 0.0]); g = torch.tensor([0.3, 0.4])
    >>> project_out_parallel(g, w)  # protocol §10.16
    tensor([0.0000, 0.4000])
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import PCA

from axbench_kedro.errors import AxbenchDataError

__all__ = [
    "unit_norm",
    "project_out_parallel",
    "linear_decay",
    "first_principal_component",
    "orient_towards_positives",
    "seeded_generator",
]


def unit_norm(w: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``w / ‖w‖`` (a zero vector stays zero)."""
    return w / w.norm().clamp_min(eps)


def project_out_parallel(grad: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Remove from ``grad`` its component along ``w`` (``w`` need not be unit norm)."""
    u = unit_norm(w)
    return grad - (grad @ u) * u


def linear_decay(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning rate falling linearly from its initial value to 0 over ``total_steps`` (no warm-up)."""
    total = max(int(total_steps), 1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, (total - step) / total))


def first_principal_component(x: torch.Tensor | np.ndarray, seed: int, what: str = "PCA") -> torch.Tensor:
    """First component of scikit-learn ``PCA(n_components=2)`` on the rows of ``x``, unit norm, sign as returned."""
    arr = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    if arr.shape[0] < 2:
        raise AxbenchDataError(f"{what}: needs at least 2 activation vectors, got {arr.shape[0]}")
    pca = PCA(n_components=min(2, arr.shape[0], arr.shape[1]), random_state=seed)
    pca.fit(arr)
    return unit_norm(torch.from_numpy(pca.components_[0].astype(np.float32)))


def orient_towards_positives(w: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Flip ``w`` when positives project lower than negatives on average (opt-in ``orient_sign``)."""
    if pos.numel() and neg.numel() and (pos.float() @ w).mean() < (neg.float() @ w).mean():
        return -w
    return w


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed``."""
    return torch.Generator().manual_seed(int(seed) % (2**63))
