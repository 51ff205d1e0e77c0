"""Residual-stream activations at the output of block L, from a forward pass that stops after that block.

Embeddings, masks (full and sliding-window) and rotary embeddings are built by the model's own decoder; a forward
hook on block L raises a private stop signal carrying the block output, so blocks L+1… and the LM head never run.

Example:
    >>> enc = encode(tm, ["<bos>hello world"])
    >>> h = truncated_hidden_states(tm.model, enc["input_ids"], enc["attention_mask"], layer=1)
    >>> h.shape  # [batch, tokens, d_model]
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import BatchEncoding

from axbench_kedro.lm.loading import validate_layer
from axbench_kedro.lm.types import TargetModel

__all__ = ["decoder_module", "decoder_layers", "truncated_hidden_states", "encode", "iter_hidden_states"]


class _StopForward(Exception):
    """Carries the output of the last block we need out of the model's forward."""

    def __init__(self, hidden: torch.Tensor) -> None:
        super().__init__("stop after the requested block")
        self.hidden = hidden


def decoder_module(model: Any) -> Any:
    """The decoder stack (``model.model`` for ``*ForCausalLM``), the module that owns ``.layers``."""
    inner = getattr(model, "model", model)
    if hasattr(inner, "language_model"):  # multimodal wrappers
        inner = inner.language_model
    if not hasattr(inner, "layers"):
        raise TypeError(f"{type(model).__name__} has no decoder `.layers`; expected a Gemma-like causal LM")
    return inner


def decoder_layers(model: Any) -> Any:
    """The ``nn.ModuleList`` of decoder blocks of a causal LM."""
    return decoder_module(model).layers


def truncated_hidden_states(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, layer: int
) -> torch.Tensor:
    """Output of decoder block ``layer`` (0-based) for every position, ``[batch, tokens, d_model]``.

    Equals ``output_hidden_states[layer + 1]`` of a full forward, but later blocks and the LM head never run.
    Gradients flow when the caller has them enabled (e.g. an input-gradient method); wrap in ``torch.no_grad()``
    otherwise.
    """
    decoder = decoder_module(model)
    validate_layer(len(decoder.layers), layer)

    owner = threading.get_ident()

    def stop(_module: Any, _args: Any, output: Any) -> None:
        if threading.get_ident() == owner:  # leave forwards of other threads alone
            raise _StopForward(output[0] if isinstance(output, tuple) else output)

    handle = decoder.layers[layer].register_forward_hook(stop)
    try:
        decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _StopForward as signal:
        return signal.hidden
    finally:
        handle.remove()
    raise RuntimeError(f"block {layer} did not run during the forward pass")  # pragma: no cover


def encode(
    tm: TargetModel, texts: Sequence[str], padding_side: str = "right", max_length: int | None = 1024
) -> BatchEncoding:
    """Tokenize formatted strings (they already hold ``<bos>``) into padded tensors on the model's device."""
    enc = tm.tokenizer(
        list(texts),
        add_special_tokens=False,
        padding=True,
        truncation=max_length is not None,
        max_length=max_length,
        padding_side=padding_side,
        return_tensors="pt",
    )
    return enc.to(tm.device)


def iter_hidden_states(
    tm: TargetModel,
    texts: Sequence[str],
    layer: int,
    batch_size: int,
    desc: str | None = None,
    max_length: int | None = 1024,
) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """Block-``layer`` activations of ``texts``, batch by batch (rows grouped by length, right padding).

    Yields:
        ``(row_indices, hidden [B, T, d], attention_mask [B, T])``: ``row_indices`` are positions in ``texts``;
        ``T`` is the longest row of the batch (capped at ``max_length``).
    """
    validate_layer(tm.n_layers, layer)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lengths = [
        len(ids)
        for ids in tm.tokenizer(
            list(texts), add_special_tokens=False, truncation=max_length is not None, max_length=max_length
        )["input_ids"]
    ]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    with tqdm(total=len(texts), desc=desc or f"activations L{layer}", unit="row", disable=not texts) as bar:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            enc = encode(tm, [texts[i] for i in rows], "right", max_length)
            with torch.no_grad():
                hidden = truncated_hidden_states(tm.model, enc["input_ids"], enc["attention_mask"], layer)
            bar.update(len(rows))
            yield rows, hidden, enc["attention_mask"]
