"""Throughput of the target-model runtime on the embedded gemma-3-270m (not a test; prints ratios).

1. Steered generation (pyvene, per-row vectors, seeded sampler) vs plain ``model.generate(do_sample=True)`` at the
   same batch size and the same number of new tokens (stopping disabled for both so every row runs the same
   number of steps). Target: ratio >= 0.95.
2. Truncated activations at layer L vs a full forward (all blocks + LM head over all positions).

Usage:
    python benchmarks/bench_lm.py --batch-size 16 --new-tokens 32 --layer 9
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import torch
from transformers import GenerationConfig

from axbench_kedro.lm import generation
from axbench_kedro.lm.activations import encode, truncated_hidden_states
from axbench_kedro.lm.chat import format_detect, format_prompt
from axbench_kedro.lm.loading import load_target_model
from axbench_kedro.lm.steering import steered_generate
from axbench_kedro.lm.types import ModelSpec

INSTRUCTIONS = [
    "Explain how a bicycle gear works.",
    "Write a short poem about the sea.",
    "What are good habits for learning a new language?",
    "Describe the water cycle to a child.",
    "Give me three ideas for a weekend trip.",
    "How do I make a simple tomato sauce?",
    "Summarise the plot of a detective story you like.",
    "Why is the sky blue?",
]


def _prompts(tm, n: int) -> list[str]:
    return [format_prompt(tm.tokenizer, INSTRUCTIONS[i % len(INSTRUCTIONS)] + f" (#{i})") for i in range(n)]


def bench_generation(tm, batch_size: int, new_tokens: int, layer: int, rounds: int) -> None:
    prompts = _prompts(tm, batch_size)
    g = torch.Generator().manual_seed(0)
    vectors = torch.nn.functional.normalize(torch.randn(batch_size, tm.d_model, generator=g), dim=-1)
    strengths = torch.linspace(0, 100, batch_size)
    enc = encode(tm, prompts, padding_side="left", max_length=None)
    config = GenerationConfig(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=True,
        temperature=1.0,
        top_k=50,
        top_p=1.0,
        pad_token_id=tm.tokenizer.pad_token_id,
        eos_token_id=None,
    )
    total = batch_size * new_tokens

    def plain() -> float:
        start = time.perf_counter()
        with torch.no_grad():
            out = tm.model.generate(**enc, generation_config=config)
        assert out.shape[1] - enc["input_ids"].shape[1] == new_tokens
        return time.perf_counter() - start

    def steered() -> float:
        start = time.perf_counter()
        gens = steered_generate(
            tm, prompts, vectors, strengths, layer, max_new_tokens=new_tokens, batch_size=batch_size, seed=0
        )
        assert sum(x.n_new_tokens for x in gens) == total
        return time.perf_counter() - start

    def sampled() -> float:
        start = time.perf_counter()
        gens = generation.sample_generate(
            tm, prompts, max_new_tokens=new_tokens, batch_size=batch_size, seed=0
        )
        assert sum(x.n_new_tokens for x in gens) == total
        return time.perf_counter() - start

    with mock.patch.object(generation, "stop_token_ids", lambda tok: []):  # same step count for every path
        plain()  # warm-up
        times = {"plain": [], "steered": [], "sampled": []}
        for _ in range(rounds):  # interleaved, best of `rounds` (the CPU is shared)
            times["plain"].append(plain())
            times["steered"].append(steered())
            times["sampled"].append(sampled())
    best = {k: min(v) for k, v in times.items()}
    rate = {k: total / v for k, v in best.items()}
    print(f"generation: batch {batch_size}, {new_tokens} new tokens, layer {layer}, best of {rounds}")
    print(f"  plain model.generate (multinomial)    {rate['plain']:8.1f} tok/s")
    print(f"  sample_generate (seeded sampler)      {rate['sampled']:8.1f} tok/s")
    print(f"  steered_generate (pyvene + sampler)   {rate['steered']:8.1f} tok/s")
    print(
        f"  ratio steered / plain generate        {rate['steered'] / rate['plain']:8.3f}   (target >= 0.95)"
    )
    print(f"  ratio steered / sample_generate       {rate['steered'] / rate['sampled']:8.3f}")


def bench_activations(tm, batch_size: int, layer: int, rounds: int) -> None:
    texts = [
        format_detect(tm.tokenizer, INSTRUCTIONS[i % len(INSTRUCTIONS)], " ".join(INSTRUCTIONS) * 2)
        for i in range(batch_size)
    ]
    enc = encode(tm, texts)
    n_tokens = int(enc["attention_mask"].sum())

    def truncated() -> float:
        start = time.perf_counter()
        with torch.no_grad():
            truncated_hidden_states(tm.model, enc["input_ids"], enc["attention_mask"], layer)
        return time.perf_counter() - start

    def full() -> float:
        start = time.perf_counter()
        with torch.no_grad():
            tm.model(**enc, output_hidden_states=True)
        return time.perf_counter() - start

    truncated()
    t_trunc = min(truncated() for _ in range(rounds))
    t_full = min(full() for _ in range(rounds))
    print(f"activations: batch {batch_size}, {enc['input_ids'].shape[1]} tokens/row, layer {layer}")
    print(f"  truncated forward (blocks 0..{layer})      {n_tokens / t_trunc:8.1f} tok/s")
    print(f"  full forward (+ later blocks, LM head)  {n_tokens / t_full:8.1f} tok/s")
    print(f"  ratio truncated / full                  {t_full / t_trunc:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--layer", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    start = time.perf_counter()
    tm = load_target_model(ModelSpec())
    print(
        f"model: {tm.name} on {tm.device} ({tm.dtype}), loaded in {time.perf_counter() - start:.1f} s; "
        f"torch threads {torch.get_num_threads()}"
    )
    bench_generation(tm, args.batch_size, args.new_tokens, args.layer, args.rounds)
    bench_activations(tm, args.batch_size, args.layer, args.rounds)


if __name__ == "__main__":
    main()
