"""ToyRandom: a seeded random unit direction per concept (a test plugin registered as a class entry point).

It has no ``@register``: the entry point ``ToyRandom = "axbench_toy_method.random_dir:ToyRandom"`` names the class
and the registry registers it under the entry point's name.
"""

from __future__ import annotations

import torch

from axbench_kedro.methods import Method
from axbench_kedro.methods.base import ConceptInputs, NoParams

__all__ = ["ToyRandom"]


class ToyRandom(Method):
    """A random direction drawn from the per-concept seed (the activations only give the width d)."""

    Params = NoParams
    requires = frozenset({"activations"})

    def train_concept(self, inputs: ConceptInputs, hp: NoParams) -> dict[str, torch.Tensor]:
        assert inputs.activations is not None
        d = int(inputs.activations.tokens_where(1).shape[1])
        w = torch.randn(d, generator=torch.Generator().manual_seed(int(inputs.seed)), dtype=torch.float64)
        return {"weight": (w / w.norm()).float(), "bias": torch.zeros(())}
