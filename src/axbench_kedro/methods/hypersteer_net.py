"""HyperSteer's hypernetwork (protocol §3.14): concept description + prompt states → one steering vector.

A small Gemma-2-style decoder stack reads the (left padded) concept description. Every layer runs, each wrapped in
a pre and a post RMSNorm with a residual add: causal self-attention with rotary positions, cross-attention to the
base model's hidden states of the prompt tokens (``hidden_states[L]``, the output of block L−1), and a gated GeLU
MLP. The last position's state (final RMSNorm) goes through ``Linear(hidden, d)`` to give v(c, x).

The description's tokens are embedded with the base model's own (frozen) input embeddings, RMS-normalised and
projected to the stack's width, so words of held-out concepts have meaningful inputs (upstream initialises the
stack from a Gemma-2 checkpoint for the same reason). The output projection starts at zero: before training v = 0
and the steered model is the base model.

Example:
    >>> cfg = HyperNetConfig(d_model=64, hidden=32, n_layers=2, n_heads=2, head_dim=16, intermediate=64)
    >>> net = HyperSteerNet(cfg)
    >>> v = net(concept_emb, concept_mask, prompt_states, prompt_mask)  # [B, 64]  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["HyperNetConfig", "HyperSteerNet", "rotary"]


@dataclass(frozen=True)
class HyperNetConfig:
    """Shape of the hypernetwork.

    Attributes:
        d_model: width d of the base model (cross-attention keys/values, token embeddings, output vector).
        hidden: width of the stack.
        n_layers: decoder layers.
        n_heads: attention heads (self- and cross-attention).
        head_dim: width of one head.
        intermediate: MLP width.
        rope_theta: rotary base of the self-attention.
        eps: RMSNorm epsilon.
    """

    d_model: int
    hidden: int
    n_layers: int
    n_heads: int
    head_dim: int
    intermediate: int
    rope_theta: float = 10000.0
    eps: float = 1e-6

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stored in the artifact's metadata)."""
        return asdict(self)


def rotary(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotate ``x [B, H, T, D]`` by ``positions [B, T]`` (half-split RoPE, as Gemma)."""
    half = x.shape[-1] // 2
    freq = theta ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angle = positions.to(torch.float32)[:, None, :, None] * freq  # [B, 1, T, half]
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class _Attention(nn.Module):
    """Multi-head attention; ``kv_dim`` differs from the query width for cross-attention."""

    def __init__(self, cfg: HyperNetConfig, kv_dim: int) -> None:
        super().__init__()
        inner = cfg.n_heads * cfg.head_dim
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden, inner, bias=False)
        self.k_proj = nn.Linear(kv_dim, inner, bias=False)
        self.v_proj = nn.Linear(kv_dim, inner, bias=False)
        self.o_proj = nn.Linear(inner, cfg.hidden, bias=False)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.n_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        allowed: torch.Tensor,
        positions: torch.Tensor | None = None,
        theta: float = 10000.0,
    ) -> torch.Tensor:
        """``allowed [B, Tq, Tk]`` bool: which keys each query may attend to (every query needs at least one)."""
        q, k, v = (
            self._heads(self.q_proj(x)),
            self._heads(self.k_proj(memory)),
            self._heads(self.v_proj(memory)),
        )
        if positions is not None:
            q, k = rotary(q, positions, theta), rotary(k, positions, theta)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None])
        return self.o_proj(out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))


class _Layer(nn.Module):
    """Self-attention, cross-attention and MLP, each between a pre and a post RMSNorm (Gemma-2 sandwich)."""

    def __init__(self, cfg: HyperNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.self_attn = _Attention(cfg, cfg.hidden)
        self.cross_attn = _Attention(cfg, cfg.d_model)
        from transformers import Gemma2Config  # lazy: the method registry imports this module
        from transformers.models.gemma2.modeling_gemma2 import Gemma2MLP, Gemma2RMSNorm

        mlp_cfg = Gemma2Config(
            hidden_size=cfg.hidden,
            intermediate_size=cfg.intermediate,
            hidden_activation="gelu_pytorch_tanh",
        )
        self.mlp = Gemma2MLP(mlp_cfg)
        norm = lambda dim: Gemma2RMSNorm(dim, eps=cfg.eps)  # noqa: E731
        self.pre_self, self.post_self = norm(cfg.hidden), norm(cfg.hidden)
        self.pre_cross, self.post_cross = norm(cfg.hidden), norm(cfg.hidden)
        self.pre_mlp, self.post_mlp = norm(cfg.hidden), norm(cfg.hidden)

    def forward(
        self,
        x: torch.Tensor,
        self_allowed: torch.Tensor,
        positions: torch.Tensor,
        memory: torch.Tensor,
        cross_allowed: torch.Tensor,
    ) -> torch.Tensor:
        h = self.pre_self(x)
        x = x + self.post_self(self.self_attn(h, h, self_allowed, positions, self.cfg.rope_theta))
        x = x + self.post_cross(self.cross_attn(self.pre_cross(x), memory, cross_allowed))
        return x + self.post_mlp(self.mlp(self.pre_mlp(x)))


class HyperSteerNet(nn.Module):
    """The hypernetwork: ``forward(concept_emb, concept_mask, prompt_states, prompt_mask) → v [B, d]``."""

    def __init__(self, cfg: HyperNetConfig) -> None:
        from transformers.models.gemma2.modeling_gemma2 import Gemma2RMSNorm

        super().__init__()
        self.cfg = cfg
        self.in_proj = nn.Linear(cfg.d_model, cfg.hidden, bias=False)
        self.memory_norm = Gemma2RMSNorm(cfg.d_model, eps=cfg.eps)
        self.layers = nn.ModuleList([_Layer(cfg) for _ in range(cfg.n_layers)])
        self.final_norm = Gemma2RMSNorm(cfg.hidden, eps=cfg.eps)
        self.out_proj = nn.Linear(cfg.hidden, cfg.d_model, bias=True)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(
        self,
        concept_emb: torch.Tensor,
        concept_mask: torch.Tensor,
        prompt_states: torch.Tensor,
        prompt_mask: torch.Tensor,
    ) -> torch.Tensor:
        """One steering vector per row.

        Args:
            concept_emb: ``[B, Tc, d]`` base-model embeddings of the description tokens, **left** padded.
            concept_mask: ``[B, Tc]`` 1 on real tokens.
            prompt_states: ``[B, Tp, d]`` base-model ``hidden_states[L]`` of the prompt tokens.
            prompt_mask: ``[B, Tp]`` 1 on real prompt tokens (any padding side).

        Returns:
            ``[B, d]`` float32 vectors v(c, x).
        """
        dtype = self.in_proj.weight.dtype
        cmask, pmask = concept_mask.bool(), prompt_mask.bool()
        x = self.in_proj(F.rms_norm(concept_emb.to(dtype), (concept_emb.shape[-1],)))
        memory = self.memory_norm(prompt_states.to(dtype))
        tc = x.shape[1]
        causal = torch.ones(tc, tc, dtype=torch.bool, device=x.device).tril()
        diag = torch.eye(tc, dtype=torch.bool, device=x.device)
        # pad queries see themselves only (their outputs are never read): no row is fully masked
        self_allowed = (causal[None] & cmask[:, None, :]) | diag[None]
        cross_allowed = pmask[:, None, :].expand(-1, tc, -1)
        positions = (cmask.long().cumsum(dim=1) - 1).clamp_min(0)
        for layer in self.layers:
            x = layer(x, self_allowed, positions, memory, cross_allowed)
        return self.out_proj(self.final_norm(x[:, -1])).float()
