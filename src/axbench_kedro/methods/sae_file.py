"""The GemmaScope SAE file every SAE-based method reads: loading, shape checks, and the lazy source the training
node hands the trainer (the ``"sae"`` requirement of :class:`~axbench_kedro.methods.base.Method`).

A neutral module: :mod:`axbench_kedro.methods.base` and the trainer refer to these types without depending on a
concrete method (SAE / SAE-A live in :mod:`axbench_kedro.methods.sae`).

Example:
    >>> jumprelu(torch.tensor([0.5, 2.0, -1.0]), torch.tensor([1.0, 1.0, 0.0]))  # protocol §10.19
    tensor([0., 2., 0.])
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from axbench_kedro.errors import AxbenchConfigError, AxbenchDataError

__all__ = [
    "SAE_KEYS",
    "SAEParams",
    "SAESource",
    "load_sae_params",
    "sae_shapes",
    "check_sae_shapes",
    "jumprelu",
]

SAE_KEYS = ("W_enc", "b_enc", "threshold", "W_dec", "b_dec")


def jumprelu(pre: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """GemmaScope JumpReLU: ``1[pre > θ] · ReLU(pre)``."""
    return (pre > threshold).to(pre.dtype) * torch.relu(pre)


@dataclass
class SAEParams:
    """A loaded GemmaScope residual SAE.

    Attributes:
        W_enc: ``[d, F]``; b_enc: ``[F]``; threshold: ``[F]``; W_dec: ``[F, d]``; b_dec: ``[d]``.
        path: the file it came from.
    """

    W_enc: torch.Tensor
    b_enc: torch.Tensor
    threshold: torch.Tensor
    W_dec: torch.Tensor
    b_dec: torch.Tensor
    path: str = ""

    @property
    def d(self) -> int:
        return int(self.W_enc.shape[0])

    @property
    def width(self) -> int:
        return int(self.W_enc.shape[1])

    def to(self, device: torch.device | str) -> SAEParams:
        """A copy on ``device``."""
        return SAEParams(*(getattr(self, k).to(device) for k in SAE_KEYS), path=self.path)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """JumpReLU feature activations ``[N, F]`` of activations ``x [N, d]``."""
        pre = x.to(self.W_enc.dtype) @ self.W_enc + self.b_enc
        return jumprelu(pre, self.threshold)

    def check_features(self, ids: Sequence[int], what: str) -> None:
        """``AxbenchDataError`` when a feature index is outside ``[0, width)``."""
        bad = [int(i) for i in ids if not 0 <= int(i) < self.width]
        if bad:
            raise AxbenchDataError(
                f"{what}: SAE feature index {bad[:5]} outside [0, {self.width}) of {self.path}"
            )


def sae_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Array shapes of a ``params.npz`` read from the ``.npy`` headers only (no array data is read).

    Raises:
        AxbenchConfigError: a missing or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise AxbenchConfigError(f"sae_params: {path} does not exist")
    shapes: dict[str, tuple[int, ...]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as handle:
                    major, _ = np.lib.format.read_magic(handle)
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if major == 1
                        else np.lib.format.read_array_header_2_0
                    )
                    shape = read_header(handle)[0]
                shapes[info.filename[: -len(".npy")]] = tuple(int(n) for n in shape)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise AxbenchConfigError(f"sae_params: {path} is not a readable .npz file ({exc})") from None
    return shapes


def check_sae_shapes(
    shapes: dict[str, tuple[int, ...]],
    path: str | Path,
    d_model: int | None = None,
    expected_width: int | None = None,
) -> None:
    """Check the arrays of a GemmaScope SAE against each other, the model's hidden size and ``training.sae_width``.

    Raises:
        AxbenchConfigError: one line naming the file and the array at fault.
    """
    missing = [k for k in SAE_KEYS if k not in shapes]
    if missing:
        raise AxbenchConfigError(f"sae_params: {path} lacks array(s) {missing} (needs {list(SAE_KEYS)})")
    if len(shapes["W_enc"]) != 2:
        raise AxbenchConfigError(
            f"sae_params: {path} has W_enc of shape {shapes['W_enc']}, expected 2 dimensions"
        )
    d, width = shapes["W_enc"]
    expected = {"b_enc": (width,), "threshold": (width,), "W_dec": (width, d), "b_dec": (d,)}
    for key, shape in expected.items():
        if tuple(shapes[key]) != shape:
            raise AxbenchConfigError(
                f"sae_params: {path} has {key} of shape {tuple(shapes[key])}, expected {shape} "
                f"for W_enc {tuple(shapes['W_enc'])}"
            )
    if d_model is not None and d != d_model:
        raise AxbenchConfigError(
            f"sae_params: {path} has hidden size d={d} but the target model's hidden size is {d_model}"
        )
    if expected_width is not None and width != expected_width:
        raise AxbenchConfigError(
            f"sae_params: {path} has width {width} but training.sae_width is {expected_width}"
        )


def load_sae_params(
    path: str | Path, d_model: int | None = None, expected_width: int | None = None
) -> SAEParams:
    """Read a GemmaScope ``params.npz`` and check its shapes.

    Raises:
        AxbenchConfigError: missing file or key, inconsistent shapes, ``d`` ≠ the model's hidden size, or a width
            other than ``expected_width``.
    """
    path = Path(path)
    if not path.is_file():
        raise AxbenchConfigError(f"sae_params: {path} does not exist")
    with np.load(path) as npz:
        missing = [k for k in SAE_KEYS if k not in npz.files]
        if missing:
            raise AxbenchConfigError(f"sae_params: {path} lacks array(s) {missing} (needs {list(SAE_KEYS)})")
        arrays = {k: torch.from_numpy(np.asarray(npz[k], dtype=np.float32)) for k in SAE_KEYS}
    check_sae_shapes({k: tuple(v.shape) for k, v in arrays.items()}, path, d_model, expected_width)
    return SAEParams(**arrays, path=str(path))


@dataclass
class SAESource:
    """What the ``sae_params`` catalog entry hands the training node: a file that may or may not exist.

    Loading is lazy (a 131k-wide SAE is several GB) and memoized.
    """

    path: str | None
    _loaded: dict[tuple[Any, ...], SAEParams] = field(default_factory=dict, repr=False)

    @property
    def available(self) -> bool:
        return self.path is not None and Path(self.path).is_file()

    @property
    def missing_reason(self) -> str:
        where = "no path configured" if self.path is None else f"{self.path} does not exist"
        return f"no GemmaScope SAE params.npz (catalog entry `sae_params`: {where})"

    def load(self, d_model: int | None = None, expected_width: int | None = None) -> SAEParams:
        """The checked SAE (see :func:`load_sae_params`)."""
        if self.path is None:
            raise AxbenchConfigError(self.missing_reason)
        key = (d_model, expected_width)
        if key not in self._loaded:
            self._loaded[key] = load_sae_params(self.path, d_model, expected_width)
        return self._loaded[key]
