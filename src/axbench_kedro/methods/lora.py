"""LoRA (protocol §3.12): a rank-r update of ``o_proj`` in the listed layers, LM loss on the positives only.

Each concept gets its own adapter, built with ``peft``'s LoRA layer (rsLoRA scaling α/√r, dropout on the layer
input, no bias): A starts Kaiming-uniform from the concept's seed, B at zero. AdamW (wd 0), linear decay, no
clipping, gradient accumulation. The adapter weights are kept in float32 whatever the model's dtype. The artifact
stacks them per concept (``lora_A [C, n_layers, r, d_in]``, ``lora_B [C, n_layers, d_out, r]``, ``layers``).
Detection: none; steering: sampling with the concept's adapter attached (factor-free).

``layers: null`` adapts the training layer L only (small models, tests); the paper lists [5, 10, 15, 20] (2B) and
[12, 20, 31, 39] (9B) per setting.

Example:
    >>> with get_method("LoRA").adapter(artifact, tm, concept_id=3):
    ...     gens = sample_generate(tm, prompts, max_new_tokens=32, batch_size=8, seed=0)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from pydantic import Field

from axbench_kedro.config.common import StrictModel
from axbench_kedro.lm.activations import decoder_layers
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.methods.adapters import (
    AdapterMethod,
    fit_adapter,
    full_response_loss,
    positive_rows,
    resolve_layers,
)
from axbench_kedro.methods.base import ConceptInputs, MethodArtifact
from axbench_kedro.methods.rank1 import seeded_generator
from axbench_kedro.methods.registry import register

__all__ = ["LoRAParams", "LoRA", "attached_lora"]

_ADAPTER = "axbench"


class LoRAParams(StrictModel):
    """Attributes:
    lr: AdamW learning rate (2B 9e-4, 9B 5e-3).
    epochs: passes over the positives.
    batch_size: rows per micro-batch.
    gradient_accumulation: micro-batches per optimizer step.
    rank: r.
    alpha: α (scaling α/√r with rsLoRA, else α/r).
    dropout: dropout on the adapted layer's input.
    use_rslora: rank-stabilised scaling.
    layers: adapted blocks (their ``self_attn.o_proj``); null = the training layer L.
    max_grad_norm: gradient clipping norm (null = none, as in the paper).
    """

    lr: float = Field(9e-4, gt=0)
    epochs: int = Field(24, ge=1)
    batch_size: int = Field(18, ge=1)
    gradient_accumulation: int = Field(2, ge=1)
    rank: int = Field(4, ge=1)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    use_rslora: bool = True
    layers: list[int] | None = None
    max_grad_norm: float | None = Field(None, gt=0)


def _lora_config(hp: LoRAParams) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=hp.rank,
        lora_alpha=hp.alpha,
        lora_dropout=hp.dropout,
        use_rslora=hp.use_rslora,
        bias="none",
        target_modules=["o_proj"],
        init_lora_weights=False,  # initialised here from the concept's seed
    )


@contextmanager
def attached_lora(
    model: torch.nn.Module,
    layers: Sequence[int],
    hp: LoRAParams,
    *,
    weights: tuple[torch.Tensor, torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[list[Any]]:
    """Swap ``o_proj`` of each of ``layers`` for a peft LoRA layer around it; restore the originals on exit.

    Args:
        model: the causal LM (modified only inside the ``with`` block).
        layers: blocks to adapt.
        hp: rank, α, dropout, rsLoRA.
        weights: ``(A [n_layers, r, d_in], B [n_layers, d_out, r])`` to load; ``None`` = fresh init (A
            Kaiming-uniform from ``generator``, B = 0).
        generator: RNG of the fresh init.

    Yields:
        The LoRA layers, in ``layers`` order (train mode; call ``.eval()`` to switch dropout off).
    """
    from peft.tuners.lora.layer import Linear as LoraLinear

    config = _lora_config(hp)
    blocks = decoder_layers(model)
    swapped: list[tuple[torch.nn.Module, torch.nn.Module]] = []
    modules: list[Any] = []
    try:
        for i, layer in enumerate(layers):
            attn = blocks[layer].self_attn
            base = attn.o_proj
            with torch.random.fork_rng(devices=[]):  # nn.Linear's own init draws from the global RNG
                mod = LoraLinear(base, _ADAPTER, config=config, r=hp.rank, lora_alpha=hp.alpha)
            a, b = mod.lora_A[_ADAPTER], mod.lora_B[_ADAPTER]
            a.float()
            b.float()
            with torch.no_grad():
                if weights is not None:
                    a.weight.copy_(weights[0][i])
                    b.weight.copy_(weights[1][i])
                else:
                    torch.nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5), generator=generator)
                    b.weight.zero_()
            attn.o_proj = mod
            swapped.append((attn, base))
            modules.append(mod)
        yield modules
    finally:
        for attn, base in swapped:
            attn.o_proj = base


@register("LoRA")
class LoRA(AdapterMethod):
    """Per-concept LoRA on ``o_proj`` trained through the LM loss on the positives; steering = the adapted model."""

    Params = LoRAParams
    order = 68

    def train_concept(self, inputs: ConceptInputs, hp: LoRAParams) -> dict[str, Any]:
        rows = positive_rows(inputs)
        tm: TargetModel = inputs.lm_tail.tm
        layers = resolve_layers(hp.layers, tm, inputs.lm_tail.layer, "training.hyperparameters.LoRA.layers")
        with attached_lora(tm.model, layers, hp, generator=seeded_generator(inputs.seed)) as mods:
            for mod in mods:
                mod.train()
            params = [p for m in mods for p in (m.lora_A[_ADAPTER].weight, m.lora_B[_ADAPTER].weight)]
            for p in params:
                p.requires_grad_(True)
            losses = fit_adapter(
                rows,
                params,
                lambda batch: full_response_loss(tm, batch),
                hp,
                seed=inputs.seed,
                device=tm.device,
            )
            a = torch.stack([m.lora_A[_ADAPTER].weight.detach().float().cpu() for m in mods])
            b = torch.stack([m.lora_B[_ADAPTER].weight.detach().float().cpu() for m in mods])
        return {
            "lora_A": a,
            "lora_B": b,
            "layers": torch.tensor(layers, dtype=torch.long),
            "train_loss": losses,
        }

    @contextmanager
    def adapter(self, artifact: MethodArtifact, tm: TargetModel, concept_id: int) -> Iterator[None]:
        row = int(artifact.rows_of([concept_id])[0])
        hp = self.params(artifact.meta.get("hyperparameters"))
        layers = artifact.tensors["layers"][row].tolist()
        weights = (
            artifact.tensors["lora_A"][row].to(tm.device),
            artifact.tensors["lora_B"][row].to(tm.device),
        )
        with attached_lora(tm.model, layers, hp, weights=weights) as mods:
            for mod in mods:
                mod.eval()
            yield
