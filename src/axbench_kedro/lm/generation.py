"""Batched generation with the target model: greedy and seeded sampling (left padding, stop at EOS/turn end).

Sampling is seeded per row: row ``i`` of the input draws from its own ``torch.Generator`` seeded with
``(seed, key_i)`` where ``key_i`` is ``row_keys[i]`` (default: ``i``), so a row's tokens do not depend on which
other rows share its batch or on the batch size (up to the float noise that padding introduces), and no global
random state is touched. Stable keys (e.g. a generation id) make a row reproducible even when it is generated in a
different list, e.g. when an interrupted run resumes with the remaining rows only. The draw itself is the
Gumbel-max trick over the temperature / top-k / top-p filtered logits, which samples exactly the same
distribution as ``transformers``' multinomial sampling.

Example:
    >>> gens = sample_generate(tm, [format_prompt(tm.tokenizer, "Hi")], max_new_tokens=32, batch_size=8, seed=0)
    >>> gens[0].text, gens[0].n_new_tokens
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from axbench_kedro.lm.activations import decoder_module, encode
from axbench_kedro.lm.chat import stop_token_ids
from axbench_kedro.lm.types import Generation, TargetModel

__all__ = ["SeededSampler", "row_seed", "generate_greedy", "sample_generate", "run_generation"]

# A batch context: given the input-order row indices of the batch, returns a context manager inside which
# `generate(**kwargs)` is called; the manager yields the callable that generates (plain or intervened).
BatchRunner = Callable[[list[int]], AbstractContextManager[Callable[..., torch.Tensor]]]


def row_seed(seed: int, row: int) -> int:
    """The generator seed of input row ``row`` under run seed ``seed`` (well mixed, 63 bits)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(row) & 0xFFFFFFFF]).generate_state(
        2, np.uint32
    )
    return (int(state[0]) << 31) ^ int(state[1])


class SeededSampler(LogitsProcessor):
    """Samples the next token of every row with that row's generator; returns one-hot scores for greedy pick.

    Applies temperature, then top-k (``0`` = off), then top-p (``1.0`` = off, at least one token kept), then draws
    ``argmax(logit + Gumbel noise)`` among the kept tokens.
    """

    def __init__(
        self, generators: list[torch.Generator], temperature: float, top_k: int, top_p: float
    ) -> None:
        if temperature <= 0:
            raise ValueError("SeededSampler needs temperature > 0 (use greedy decoding for 0)")
        self.generators = generators
        self.temperature = float(temperature)
        self.top_k = int(top_k or 0)
        self.top_p = float(top_p)
        self._buffer: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # In place, like transformers' own processors: `scores` is this step's copy of the logits, and the
        # one-hot result is written back into it (fresh [B, 262k] buffers each step cost more than the math).
        logits = scores.float().div_(self.temperature)
        vocab = logits.shape[-1]
        if 0 < self.top_k < vocab:
            values, index = torch.topk(logits, self.top_k, dim=-1)  # sorted, descending
        elif self.top_p < 1.0:
            values, index = torch.sort(logits, dim=-1, descending=True)
        else:
            values, index = logits, None
        if self.top_p < 1.0:
            probs = torch.softmax(values, dim=-1)
            before = torch.cumsum(probs, dim=-1) - probs  # mass of strictly better tokens
            drop = before >= self.top_p
            drop[..., 0] = False
            values = values.masked_fill(drop, float("-inf"))
        noise = self._noise(len(self.generators), values.shape[-1])
        for row, generator in zip(noise, self.generators, strict=True):
            row.uniform_(generator=generator)  # the stream torch.rand(n, generator=g) draws
        pick = gumbel_argmax(values, noise.clamp_(min=1e-20, max=1.0 - 1e-7).to(values.device))
        token = pick if index is None else index.gather(-1, pick)
        return scores.fill_(float("-inf")).scatter_(-1, token, 0.0)

    def _noise(self, n_rows: int, width: int) -> torch.Tensor:
        """A float32 CPU buffer for one step's uniform draws, reused across the steps of a generation."""
        if self._buffer is None or self._buffer.shape != (n_rows, width):
            self._buffer = torch.empty(n_rows, width, dtype=torch.float32)
        return self._buffer


def _gumbel(noise: torch.Tensor) -> torch.Tensor:
    return -torch.log(-torch.log(noise))


# Below this many logits per row the plain full-row draw is as cheap as the pruned one.
_PRUNE_FROM = 4096
# Slack on the pruning bound, far above float32 rounding of the Gumbel transform (candidates are a superset).
_PRUNE_SLACK = 1e-3


def gumbel_argmax(values: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``argmax(values + G(noise))`` per row, ``G(u) = −log(−log u)``: the Gumbel-max draw, ``[B, 1]``.

    Over a 262k vocabulary, transforming every entry's noise costs more than the rest of a sampling step. ``G``
    increases with ``u``, so no entry gains more than ``G(max u)``: an entry whose value is that much below the
    total its row's top-value entry reaches cannot win, and ``G`` is evaluated only on the few hundred entries
    that can. The result is the full draw's, token for token (ties go to the first index, as ``argmax``'s do).
    """
    if values.shape[-1] < _PRUNE_FROM:
        return torch.argmax(values + _gumbel(noise), dim=-1, keepdim=True)
    n_rows, vocab = values.shape
    reach = _gumbel(noise.amax(dim=-1, keepdim=True))
    top = values.argmax(dim=-1, keepdim=True)
    floor = values.gather(-1, top) + _gumbel(noise.gather(-1, top))  # a total the row reaches
    rows, cols = torch.nonzero(values >= floor - reach - _PRUNE_SLACK, as_tuple=True)  # row-major order
    totals = values[rows, cols] + _gumbel(noise[rows, cols])
    best = totals.new_full((n_rows,), float("-inf")).scatter_reduce(0, rows, totals, "amax")
    wins = totals == best[rows]
    first = cols.new_full((n_rows,), vocab).scatter_reduce(0, rows[wins], cols[wins], "amin")
    return first.unsqueeze(-1)


def _plain_runner(tm: TargetModel) -> BatchRunner:
    def runner(_rows: list[int]) -> AbstractContextManager[Callable[..., torch.Tensor]]:
        return nullcontext(tm.model.generate)

    return runner


# A batch whose rows share at least this many leading tokens (a few-shot template) runs that prefix once.
MIN_SHARED_PREFIX = 32


def shared_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Leading tokens all ``rows`` have in common, leaving every row at least one token of its own."""
    if not rows:
        return 0
    first, limit = rows[0], min(len(r) for r in rows) - 1
    n = 0
    while n < limit and all(r[n] == first[n] for r in rows):
        n += 1
    return n


def _cache_kwarg(model: torch.nn.Module) -> str:
    """The name the model's ``forward`` takes its KV cache under (transformers 5 renamed ``past_key_values``)."""
    params = inspect.signature(type(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _shared_prefix_inputs(
    tm: TargetModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int
) -> dict[str, Any] | None:
    """``generate`` inputs that run the batch's shared prefix once instead of once per row, or ``None``.

    Datagen and rating prompts repeat one few-shot template in every row, so most of a batch's prefill is the same
    tokens B times. The prefix is run once (batch 1, the decoder stack without the LM head), its KV cache repeated B
    times, and each row continues as ``prefix, padding, own tokens`` with the padding masked: every token sees the
    same positions (from the attention mask) and the same unmasked keys as under left padding, so the generations are
    the same up to float rounding (greedy texts identical on the embedded model's datagen prompts). Skipped (``None``)
    for a single row, a prefix under :data:`MIN_SHARED_PREFIX` tokens, a run that could outgrow a sliding attention
    window (where a cache slot count differs from a position count) or a cache that cannot be repeated.
    """
    rows = [ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask, strict=True)]
    n_prefix = shared_prefix_length(rows)
    if len(rows) < 2 or n_prefix < MIN_SHARED_PREFIX:
        return None
    text_config = getattr(tm.model.config, "text_config", None) or tm.model.config
    window = getattr(text_config, "sliding_window", None)
    if window and input_ids.shape[1] + max_new_tokens > window:
        return None
    name = _cache_kwarg(tm.model)
    prefix = torch.tensor([rows[0][:n_prefix]], device=input_ids.device)
    with torch.no_grad():  # the decoder stack only: the prefix's next-token logits are never used
        out = decoder_module(tm.model)(input_ids=prefix, use_cache=True)
    cache = getattr(out, name)  # the output field bears the forward argument's name
    if not hasattr(cache, "batch_repeat_interleave"):
        return None
    cache.batch_repeat_interleave(len(rows))
    width = max(len(r) for r in rows) - n_prefix
    pad = tm.tokenizer.pad_token_id
    ids = [rows[0][:n_prefix] + [pad] * (width - len(r) + n_prefix) + r[n_prefix:] for r in rows]
    mask = [[1] * n_prefix + [0] * (width - len(r) + n_prefix) + [1] * (len(r) - n_prefix) for r in rows]
    return {
        "input_ids": torch.tensor(ids, device=input_ids.device),
        "attention_mask": torch.tensor(mask, device=input_ids.device, dtype=attention_mask.dtype),
        name: cache,
    }


def run_generation(
    tm: TargetModel,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    seed: int = 0,
    temperature: float = 1.0,
    top_k: int = 50,
    top_p: float = 1.0,
    runner: BatchRunner | None = None,
    desc: str | None = None,
    row_keys: Sequence[int] | None = None,
) -> list[Generation]:
    """Shared generation loop: length-sorted batches, left padding, returns results in input order.

    ``temperature <= 0`` decodes greedily (``seed`` unused). ``row_keys`` key the rows' random streams. ``runner``
    supplies the generate callable per batch (the steering module passes a pyvene-intervened one); without one, a
    batch whose rows share a long prefix runs it once (:func:`_shared_prefix_inputs`).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    prompts = list(prompts)
    keys = list(range(len(prompts))) if row_keys is None else [int(k) for k in row_keys]
    if len(keys) != len(prompts):
        raise ValueError(f"row_keys must have {len(prompts)} entries, got {len(keys)}")
    share_prefix = runner is None  # an intervention must see every row's prompt, so only plain runs share
    runner = runner or _plain_runner(tm)
    tok = tm.tokenizer
    stops = stop_token_ids(tok)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=stops or None,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        use_cache=True,
    )
    lengths = [len(ids) for ids in tok(prompts, add_special_tokens=False)["input_ids"]] if prompts else []
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
    results: list[Generation | None] = [None] * len(prompts)
    new_tokens = 0
    start = time.perf_counter()
    with tqdm(total=len(prompts), desc=desc or "generate", unit="row", disable=not prompts) as bar:
        for first in range(0, len(order), batch_size):
            rows = order[first : first + batch_size]
            enc = encode(tm, [prompts[i] for i in rows], padding_side="left", max_length=None)
            processors = LogitsProcessorList()
            if temperature > 0:
                gens = [torch.Generator(device="cpu").manual_seed(row_seed(seed, keys[i])) for i in rows]
                processors.append(SeededSampler(gens, temperature, top_k, top_p))
            inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
            if share_prefix:
                inputs = _shared_prefix_inputs(tm, **inputs, max_new_tokens=max_new_tokens) or inputs
            with runner(rows) as generate, torch.no_grad():
                out = generate(**inputs, generation_config=config, logits_processor=processors)
            for row, ids in zip(rows, out[:, inputs["input_ids"].shape[1] :].tolist(), strict=True):
                results[row] = _finish(tok, ids, stops)
                new_tokens += results[row].n_new_tokens
            bar.update(len(rows))
            bar.set_postfix(tok_s=f"{new_tokens / max(time.perf_counter() - start, 1e-9):.1f}")
    return [r for r in results if r is not None]


def _finish(tokenizer: object, ids: list[int], stops: list[int]) -> Generation:
    """Cut at the first stop token (counted as generated) and decode without special tokens.

    Without a stop token the row ran to ``max_new_tokens``: its finish reason is ``length``.
    """
    n, reason = len(ids), "length"
    for pos, token in enumerate(ids):
        if token in stops:
            n, reason = pos + 1, "stop"
            break
    text = tokenizer.decode(ids[:n], skip_special_tokens=True)  # type: ignore[attr-defined]
    return Generation(text=text, n_new_tokens=n, finish_reason=reason)


def generate_greedy(
    tm: TargetModel, prompts: list[str], max_new_tokens: int, batch_size: int
) -> list[Generation]:
    """Greedy continuations of already formatted prompts (left padding), in input order."""
    return run_generation(
        tm, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, temperature=0.0, desc="greedy"
    )


def sample_generate(
    tm: TargetModel,
    prompts: list[str],
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
    """Seeded sampling without intervention; same tokens as ``steered_generate`` with zero strengths.

    ``row_keys`` (default: the row positions) key each row's random stream, see the module docstring.
    """
    return run_generation(
        tm,
        prompts,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        seed=seed,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        desc=desc or "sample",
        row_keys=row_keys,
    )
