"""Steering-evaluation performance ratios on the embedded model (prints figures; not a timed test).

1. Steered generation (per-row pyvene addition) vs plain sampling: tokens/s ratio (target ≥ 0.95).
2. Whole-method generation as the pipeline schedules it (every row of a method in large batches across concepts,
   factor-free methods generated once per instruction) vs the upstream schedule for the same rows (batches of 10
   rows of one concept at a time, factor-free methods generated once per factor): wall-time ratio (target ≥ 1.3).
3. Judge throughput: about 1,000 LLM-judge calls against the loopback OpenAI-compatible server answering after
   200 ms (target ≤ 10 s).

Usage::

    .venv/bin/python benchmarks/bench_steering.py                 # defaults sized for a shared 2-core CPU
    .venv/bin/python benchmarks/bench_steering.py --skip-model    # only the judge throughput
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the loopback server lives with the test fixtures
os.environ.setdefault("HF_HUB_OFFLINE", "1")

INSTRUCTIONS = [
    "What is the capital of France?",
    "Give me three tips for staying healthy.",
    "Write a short poem about the sea.",
    "Explain how a bicycle works.",
    "How do I make a cup of tea?",
    "Describe your favourite season and why.",
    "What should I pack for a weekend trip?",
    "Summarise the plot of a fairy tale you know.",
    "Suggest a name for a small bakery.",
    "Why is the sky blue?",
    "List some ways to save money at home.",
    "How can I learn a new language quickly?",
    "Tell me about the history of chess.",
    "What makes a good friend?",
    "Write a limerick about a cat.",
    "How do plants grow from seeds?",
]
CONCEPTS = ["references to rental services", "astronomy and stars", "cooking recipes", "legal contracts"]


def _tm():
    from axbench_kedro.lm.loading import load_target_model
    from axbench_kedro.lm.types import ModelSpec

    start = time.perf_counter()
    tm = load_target_model(ModelSpec())
    print(
        f"model: {tm.name} loaded in {time.perf_counter() - start:.1f} s ({tm.n_layers} layers, d={tm.d_model})"
    )
    return tm


def bench_steered_vs_plain(tm, layer: int, n_rows: int, new_tokens: int, repeats: int) -> dict[str, float]:
    """Same prompts, seeds and batch: plain sampling vs steered sampling (a norm-500 vector at layer L).

    Returns:
        ``steered_tok_s``, ``plain_tok_s``, ``ratio`` (tokens/s) and ``step_ratio`` (row-steps/s).
    """
    from axbench_kedro.lm.chat import format_prompt
    from axbench_kedro.lm.generation import sample_generate
    from axbench_kedro.lm.steering import steered_generate

    prompts = [format_prompt(tm.tokenizer, INSTRUCTIONS[i % len(INSTRUCTIONS)]) for i in range(n_rows)]
    vec = torch.nn.functional.normalize(
        torch.randn(tm.d_model, generator=torch.Generator().manual_seed(0)), dim=0
    )
    vectors, strengths = vec.repeat(n_rows, 1), torch.full((n_rows,), 500.0)
    common = {"max_new_tokens": new_tokens, "batch_size": n_rows, "seed": 1}

    def rate(fn) -> tuple[float, float]:
        start = time.perf_counter()
        gens = fn()
        wall = time.perf_counter() - start
        steps = n_rows * max(g.n_new_tokens for g in gens)
        return sum(g.n_new_tokens for g in gens) / wall, steps / wall

    plain, steered = [], []
    for _ in range(repeats):  # interleaved, best of `repeats` (the CPU is shared)
        plain.append(rate(lambda: sample_generate(tm, prompts, **common, desc="plain")))
        steered.append(
            rate(lambda: steered_generate(tm, prompts, vectors, strengths, layer, **common, desc="steer"))
        )
    p_tok, p_step = max(plain)
    s_tok, s_step = max(steered)
    print(
        f"[1] steered {s_tok:.1f} tok/s vs plain {p_tok:.1f} tok/s -> ratio {s_tok / p_tok:.3f} (target >= 0.95); "
        f"row-steps/s ratio {s_step / p_step:.3f} ({n_rows} rows x {new_tokens} tokens, batch {n_rows})"
    )
    return {
        "steered_tok_s": s_tok,
        "plain_tok_s": p_tok,
        "ratio": s_tok / p_tok,
        "step_ratio": s_step / p_step,
    }


def _bench_inputs(tm, layer: int, n_concepts: int, n_instructions: int, factors: list[float]):
    from axbench_kedro.config.steering_eval import SteeringEvalParams
    from axbench_kedro.methods.base import MethodArtifact
    from axbench_kedro.pipelines.steering_eval.nodes import build_steering_prompts

    concepts = pd.DataFrame({"concept_id": range(n_concepts), "concept": CONCEPTS[:n_concepts]})
    instructions = pd.DataFrame({"instruction": INSTRUCTIONS})
    texts = pd.DataFrame(
        {
            "concept_id": range(n_concepts),
            "text": [f"Always bring {c} into your answer." for c in concepts["concept"]],
        }
    )
    params = SteeringEvalParams.model_validate(
        {
            "factors": factors,
            "instructions": {"n_selection": n_instructions // 2, "n_test": n_instructions // 2},
        }
    )
    prompts = build_steering_prompts(concepts, instructions, texts, tm, params)
    weight = torch.nn.functional.normalize(
        torch.randn(n_concepts, tm.d_model, generator=torch.Generator().manual_seed(1))
    )
    meta = {"status": "ok", "layer": layer, "concept_ids": list(range(n_concepts))}
    artifacts = {
        "DiffMean": MethodArtifact("DiffMean", {"weight": weight, "bias": torch.zeros(n_concepts)}, meta),
        "Prompt": MethodArtifact("Prompt", {}, meta),
    }
    max_acts = pd.DataFrame(
        {"concept_id": range(n_concepts), "method": "DiffMean", "max_act": 5000.0, "magnitude_base": 5000.0}
    )
    return prompts, artifacts, max_acts, params


def bench_schedule(
    tm, layer: int, n_concepts: int, n_instructions: int, new_tokens: int, batch: int
) -> dict[str, float]:
    """Pipeline schedule vs upstream schedule for the rows of one rank-1 method and the Prompt baseline.

    Returns:
        ``ours_s``, ``upstream_s``, ``speedup`` (upstream ÷ ours), ``ours_generations``, ``upstream_generations``.
    """
    from axbench_kedro.cache import SQLiteCache
    from axbench_kedro.lm.generation import sample_generate
    from axbench_kedro.lm.steering import steered_generate
    from axbench_kedro.steering.plans import steering_plans
    from axbench_kedro.steering.schedule import GenerationStats, generate_plans

    factors = [0.05, 0.1, 0.2]
    prompts, artifacts, max_acts, params = _bench_inputs(tm, layer, n_concepts, n_instructions, factors)
    params = params.model_copy(
        update={
            "compute_perplexity": False,
            "generation": params.generation.model_copy(
                update={"max_new_tokens": new_tokens, "batch_size": batch}
            ),
        }
    )
    plans = steering_plans(
        None, artifacts, max_acts, params, layer=layer, tm=tm, concept_ids=list(range(n_concepts))
    )
    stats = GenerationStats()
    start = time.perf_counter()
    ours = generate_plans(
        plans, prompts, tm, SQLiteCache(":memory:"), params, layer=layer, seed=0, stats=stats
    )
    ours_wall = time.perf_counter() - start

    # Upstream: per concept and method, its rows (instructions x factors) in batches of 10; Prompt once per factor.
    start = time.perf_counter()
    upstream_rows = 0
    common = {"max_new_tokens": new_tokens, "seed": 0, "temperature": 1.0, "top_k": 50, "top_p": 1.0}
    for plan in plans:
        for cid in range(n_concepts):
            rows = prompts[prompts["concept_id"] == cid].sort_values(["input_id", "factor"])
            for first in range(0, len(rows), 10):
                chunk = rows.iloc[first : first + 10]
                upstream_rows += len(chunk)
                if plan.factor_free:
                    sample_generate(
                        tm, chunk["steered_input"].tolist(), batch_size=10, desc="upstream", **common
                    )
                else:
                    vectors = plan.vectors[[plan.rows[cid]] * len(chunk)]
                    strengths = torch.tensor(
                        chunk["factor"].to_numpy() * plan.magnitudes[cid], dtype=torch.float32
                    )
                    steered_generate(
                        tm,
                        chunk["input"].tolist(),
                        vectors,
                        strengths,
                        layer,
                        batch_size=10,
                        desc="upstream",
                        **common,
                    )
    upstream_wall = time.perf_counter() - start
    print(
        f"[2] whole-method schedule {ours_wall:.1f} s ({stats.units} generations for {len(ours)} rows, batch {batch}) "
        f"vs upstream schedule {upstream_wall:.1f} s ({upstream_rows} generations, batch 10 per concept) "
        f"-> {upstream_wall / ours_wall:.2f}x faster (target >= 1.3)"
    )
    return {
        "ours_s": ours_wall,
        "upstream_s": upstream_wall,
        "speedup": upstream_wall / ours_wall,
        "ours_generations": stats.units,
        "upstream_generations": upstream_rows,
    }


def _rating_reply(body: dict) -> str:
    return "Fine.\nRating: [[2]]"


def _serve(latency_s: float, urls, stop) -> None:  # runs in a child process
    from fixtures.fake_openai import FakeOpenAIServer

    with FakeOpenAIServer(reply_fn=_rating_reply, latency_s=latency_s) as server:
        urls.put(server.base_url)
        stop.wait()


def bench_judge(n_items: int, latency_s: float, separate_process: bool) -> dict[str, float]:
    """LLM-judge calls against the loopback server with a fixed latency per reply.

    Returns:
        ``calls``, ``wall_s`` and ``parsed`` (ratings parsed).
    """
    import multiprocessing as mp
    from types import SimpleNamespace

    from axbench_kedro.config.steering_eval import JudgeTemplates
    from axbench_kedro.judges.llm_judge import LLMJudge, load_judge_templates
    from fixtures.fake_openai import FakeOpenAIServer, client_for
    from fixtures.project_catalog import project_prompt_templates

    gens = pd.DataFrame(
        {
            "dataset_name": "AlpacaEval",
            "concept_id": [i % 4 for i in range(n_items)],
            "input_id": [i % 10 for i in range(n_items)],
            "factor": [float(i) for i in range(n_items)],
            "method": "DiffMean",
            "steered_generation": [f"generated text number {i} about rentals" for i in range(n_items)],
        }
    )
    prompts = pd.DataFrame(
        [
            {"dataset_name": "AlpacaEval", "concept_id": c, "input_id": i, "input_concept": CONCEPTS[c],
             "original_prompt": INSTRUCTIONS[i]}
            for c in range(4)
            for i in range(10)
        ]
    )  # fmt: skip
    templates = load_judge_templates(JudgeTemplates(), project_prompt_templates())  # the catalog dataset
    if separate_process:  # like a real server: its work does not share this process's interpreter lock
        ctx = mp.get_context("spawn")
        urls, stop = ctx.Queue(), ctx.Event()
        child = ctx.Process(target=_serve, args=(latency_s, urls, stop), daemon=True)
        child.start()
        server = SimpleNamespace(base_url=urls.get(timeout=60))
        try:
            judge = LLMJudge(client_for(server, None), templates)
            start = time.perf_counter()
            out = judge.judge(gens, prompts)
            wall = time.perf_counter() - start
        finally:
            stop.set()
            child.join(timeout=10)
        where = "server in a separate process"
    else:
        with FakeOpenAIServer(reply_fn=_rating_reply, latency_s=latency_s) as server:
            judge = LLMJudge(client_for(server, None), templates)
            start = time.perf_counter()
            out = judge.judge(gens, prompts)
            wall = time.perf_counter() - start
        where = "server thread in this process"
    calls = int(judge.usage_frame("bench")["calls"].iloc[0])
    print(
        f"[3] judge: {calls} calls with {latency_s * 1000:.0f} ms latency in {wall:.2f} s ({calls / wall:.0f} calls/s, "
        f"{where}, {int(out['parse_ok'].sum())} ratings parsed) (target <= 10 s)"
    )
    return {"calls": calls, "wall_s": wall, "parsed": int(out["parse_ok"].sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", type=int, default=9)
    parser.add_argument("--rows", type=int, default=16, help="[1] rows per batch")
    parser.add_argument("--tokens", type=int, default=16, help="new tokens per row in [1] and [2]")
    parser.add_argument("--repeats", type=int, default=2, help="[1] interleaved repeats (best kept)")
    parser.add_argument("--concepts", type=int, default=4, help="[2] concepts")
    parser.add_argument("--instructions", type=int, default=4, help="[2] instructions per concept")
    parser.add_argument("--batch", type=int, default=32, help="[2] pipeline batch size")
    parser.add_argument(
        "--judge-items", type=int, default=334, help="[3] distinct generations (3 calls each)"
    )
    parser.add_argument("--latency", type=float, default=0.2, help="[3] server latency per reply (s)")
    parser.add_argument(
        "--in-process-server", action="store_true", help="[3] serve from a thread of this process"
    )
    parser.add_argument("--skip-model", action="store_true", help="only run [3]")
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    if not args.skip_model:
        tm = _tm()
        bench_steered_vs_plain(tm, args.layer, args.rows, args.tokens, args.repeats)
        bench_schedule(tm, args.layer, args.concepts, args.instructions, args.tokens, args.batch)
    bench_judge(args.judge_items, args.latency, separate_process=not args.in_process_server)


if __name__ == "__main__":
    main()
