"""Capacity plan for Concept500 on the four paper settings and for Concept16K, from measured per-unit costs.

Reads the raw figures ``benchmarks/report.py`` wrote (``measurements.json``: P1 steered tokens/s, the Dask row's
sequential training seconds, the benchmark data's rows and tokens per concept, the machine) and each setting's
merged configuration (``conf/base`` + ``conf/<setting>``, soft merge as ``kedro run --env``): concepts,
instructions, factor grids, replicates, steering methods, judge model, prices (``conf/base/llm_prices.yml``), the
judge templates (``conf/base/prompts``). Writes ``docs/capacity_plan.md`` (generated; do not edit by hand).

Usage::

    .venv/bin/python benchmarks/capacity_plan.py [--measurements data/08_reporting/perf/measurements.json]
        [--out docs/capacity_plan.md]
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from axbench_kedro.errors import AxbenchConfigError, AxbenchDataError
from axbench_kedro.llm.ledger import Price, PriceTable

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
DEFAULT_MEASUREMENTS = ROOT / "data" / "08_reporting" / "perf" / "measurements.json"
DEFAULT_OUT = ROOT / "docs" / "capacity_plan.md"
COMMAND = ".venv/bin/python benchmarks/capacity_plan.py"
SETTINGS = ("gemma2_2b_l10", "gemma2_2b_l20", "gemma2_9b_l20", "gemma2_9b_l31")
CONCEPT16K = 16_000
CONCEPT16K_SETTINGS = (
    "gemma2_2b_l20",
    "gemma2_9b_l20",
)  # the settings AxBench trained its 16K dictionaries on
# Parameter counts of the paper models (Gemma 2 model cards: 2.6B and 9.2B), for the size scaling.
MODEL_PARAMS = {"google/gemma-2-2b-it": 2.61e9, "google/gemma-2-9b-it": 9.24e9}
CHARS_PER_TOKEN = 4.0  # OpenAI's rule of thumb for English text (no tokenizer of the judge model here)
ASSUMED = {
    "judge_output_tokens": 60,  # a one-to-three-sentence justification + "Rating: [[N]]"
    "concept_tokens": 12,  # a Concept500 description
    "instruction_tokens": 25,  # an AlpacaEval instruction
}
JUDGE_CALLS_PER_GENERATION = 3  # protocol §5.4: concept, instruction, fluency


@dataclass(frozen=True)
class Units:
    """Per-unit costs measured by ``benchmarks/report.py`` and the machine they come from.

    Attributes:
        gen_tok_s: steered generation tokens/s (P1) at batch ``gen_batch``.
        train_s_per_concept_method: in-process training seconds per concept and method (the Dask row's
            sequential run) for ``train_methods``.
        train_rows_per_concept: positives + the genre pool's negatives per concept in that run.
        train_prompt_tokens: tokens of a training row besides its answer (template + instruction).
        train_answer_tokens: answer tokens of a training row in that run.
        model_params: parameters of the measured model.
    """

    gen_tok_s: float
    gen_batch: int
    train_s_per_concept_method: float
    train_methods: tuple[str, ...]
    train_rows_per_concept: float
    train_prompt_tokens: float
    train_answer_tokens: float
    model: str
    model_params: float
    machine: str
    device: str
    dtype: str
    commit: str
    date: str
    note: str = ""


@dataclass(frozen=True)
class Workload:
    """What one setting's configuration asks for, per concept.

    Attributes:
        steering: ``{method: factor grid}`` of the steering methods (empty grid = factor-free).
        n_instructions: steering instructions per concept (selection + test).
        replicates: samples per instruction of factor-free methods.
        trained: methods trained (``training.method_names()``).
        concept_limit: ``{method: n}`` for a method that trains (and so steers) only its first ``n`` concepts
            (:meth:`~axbench_kedro.methods.base.Method.concept_limit`, e.g. SFT's ``max_concepts``).
        steered: ``{method: f}``, ``f(n)`` = concepts the method steers out of ``n`` where that is not what it
            trains (:meth:`~axbench_kedro.methods.base.Method.steered_concept_count`: HyperSteer's held-out ones).
        train_positives / train_negatives: training rows per concept.
        answer_tokens: mean answer tokens of a training row (positives T, pool answers 1.5 T).
    """

    setting: str
    model: str
    model_params: float
    steering: dict[str, tuple[float, ...]]
    n_instructions: int
    replicates: int
    max_new_tokens: int
    trained: tuple[str, ...]
    train_positives: int
    train_negatives: int
    answer_tokens: float
    judge_model: str
    concept_limit: dict[str, int] = field(default_factory=dict)
    steered: dict[str, Callable[[int], int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """One row of the plan."""

    dataset: str
    setting: str
    concepts: int
    generations: int
    judge_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    batch_cost_usd: float
    train_hours: float
    gen_hours: float


def method_generations(w: Workload, method: str) -> int:
    """Generations of ``method`` per concept it steers: instructions × (factors, or replicates if factor-free)."""
    factors = w.steering[method]
    return w.n_instructions * (len(factors) if factors else w.replicates)


def concepts_of(w: Workload, method: str, concepts: int) -> int:
    """Concepts ``method`` trains and steers out of ``concepts`` (its concept limit, if any)."""
    limit = w.concept_limit.get(method)
    return concepts if limit is None else min(limit, concepts)


def generations_per_concept(w: Workload) -> int:
    """Σ over steering methods of :func:`method_generations` (every method steering every concept)."""
    return sum(method_generations(w, m) for m in w.steering)


def steered_concepts(w: Workload, method: str, concepts: int) -> int:
    """Concepts ``method`` steers out of ``concepts``: ``w.steered``'s count, else those it trains."""
    count = w.steered.get(method)
    return count(concepts) if count is not None else concepts_of(w, method, concepts)


def generations(w: Workload, concepts: int) -> int:
    """Steered generations of ``concepts`` concepts: each method on the concepts it steers."""
    return sum(steered_concepts(w, m, concepts) * method_generations(w, m) for m in w.steering)


def trained_concepts(w: Workload, concepts: int) -> int:
    """Σ over trained methods of the concepts each trains (:func:`concepts_of`)."""
    return sum(concepts_of(w, m, concepts) for m in w.trained)


def judge_tokens_per_call(templates: dict[str, str], max_new_tokens: int) -> tuple[float, float]:
    """(input, output) tokens of one judge call, averaged over the criteria.

    Input = the template's own text (characters ÷ 4) + its placeholders' assumed sizes, the generation at its cap
    (``max_new_tokens``, an upper bound); output = :data:`ASSUMED` ``judge_output_tokens``.
    """
    sizes = {
        "concept": ASSUMED["concept_tokens"],
        "instruction": ASSUMED["instruction_tokens"],
        "generation": max_new_tokens,
    }
    per_call = []
    for text in templates.values():
        names = re.findall(r"\{(\w+)\}", text)
        own = len(re.sub(r"\{\w+\}", "", text)) / CHARS_PER_TOKEN
        per_call.append(own + sum(sizes.get(n, 0) for n in names))
    return sum(per_call) / len(per_call), float(ASSUMED["judge_output_tokens"])


def plan_row(
    dataset: str,
    concepts: int,
    w: Workload,
    u: Units,
    tokens_per_call: tuple[float, float],
    price: Price,
) -> Plan:
    """Counts, judge cost and device-hours of ``concepts`` concepts of ``w`` from the measured ``u``.

    Device-hours scale the measured seconds linearly with the model's parameter count (FLOPs per token) and, for
    training, with rows × tokens per concept. A method with a concept limit trains and steers only that many.
    """
    n_gen = generations(w, concepts)
    calls = n_gen * JUDGE_CALLS_PER_GENERATION
    tin, tout = round(calls * tokens_per_call[0]), round(calls * tokens_per_call[1])
    cost = price.cost(tin, tout)
    size = w.model_params / u.model_params
    rows = w.train_positives + w.train_negatives
    data = (rows * (u.train_prompt_tokens + w.answer_tokens)) / (
        u.train_rows_per_concept * (u.train_prompt_tokens + u.train_answer_tokens)
    )
    train_s = trained_concepts(w, concepts) * u.train_s_per_concept_method * data * size
    gen_s = n_gen * w.max_new_tokens / u.gen_tok_s * size
    return Plan(dataset, w.setting, concepts, n_gen, calls, tin, tout, cost, cost / 2,
                train_s / 3600, gen_s / 3600)  # fmt: skip


# ------------------------------------------------------------------------------------------------ inputs


def load_units(path: Path) -> Units:
    """The per-unit costs of ``measurements.json``.

    Raises:
        AxbenchDataError: the file is missing or lacks a figure (named).
    """
    if not path.is_file():
        raise AxbenchDataError(f"{path}: no measurements file (run benchmarks/report.py first)")
    try:
        raw = json.loads(path.read_text())
        meta, p1, dask, tu = raw["meta"], raw["P1"], raw["Dask"], raw["training_units"]
        return Units(
            gen_tok_s=float(p1["steered_tok_s"]),
            gen_batch=int(p1.get("rows", 0)),
            train_s_per_concept_method=float(dask["sequential_s"])
            / (int(dask["concepts"]) * len(dask["methods"])),
            train_methods=tuple(dask["methods"]),
            train_rows_per_concept=float(tu["positives_per_concept"]) + float(tu["negatives_per_concept"]),
            train_prompt_tokens=float(tu["tokens_per_row"]) - float(tu["output_tokens_per_row"]),
            train_answer_tokens=float(tu["output_tokens_per_row"]),
            model=str(meta["model"]),
            model_params=float(meta["model_params"]),
            machine=f"{meta['machine']}; {meta['cpus']} CPUs, torch threads {meta['torch_threads']}",
            device=str(meta["device"]),
            dtype=str(meta["dtype"]),
            commit=str(meta["commit"]),
            date=str(meta["date"]),
            note=str(meta.get("note") or ""),
        )
    except json.JSONDecodeError as exc:
        raise AxbenchDataError(f"{path}: not JSON ({exc.msg})") from None
    except (KeyError, TypeError) as exc:
        raise AxbenchDataError(
            f"{path}: missing figure {exc} (run benchmarks/report.py with P1 and Dask)"
        ) from None


def load_env(env: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(parameters, globals) of ``env`` as ``kedro run --env env`` merges them."""
    from kedro.config import OmegaConfigLoader

    from axbench_kedro.settings import CONFIG_LOADER_ARGS

    args = {k: v for k, v in CONFIG_LOADER_ARGS.items() if k != "default_run_env"}
    loader = OmegaConfigLoader(str(CONF), env=env, **args)
    return loader["parameters"], loader["globals"]


def workload(env: str) -> Workload:
    """The configured workload of paper setting ``env``."""
    from axbench_kedro.config.datagen import DatagenParams
    from axbench_kedro.config.steering_eval import SteeringEvalParams
    from axbench_kedro.config.training import TrainingParams
    from axbench_kedro.methods.registry import get_method

    params, globals_ = load_env(env)
    steering = SteeringEvalParams.model_validate(params["steering_eval"])
    training = TrainingParams.model_validate(params["training"])
    datagen = DatagenParams(**params["datagen"])
    trained = tuple(training.method_names())  # `methods: null` = every registered method less exclude_methods
    limits = {m: get_method(m).concept_limit(training.method_params(m)) for m in trained}
    wanted = steering.methods or [m for m in trained if get_method(m).steers]
    model = str(globals_["model"]["name_or_path"])
    if model not in MODEL_PARAMS:
        raise AxbenchConfigError(
            f"conf/{env}: model.name_or_path {model!r} has no parameter count in the plan"
        )
    pos, neg = datagen.train_positives, datagen.pool_per_genre
    return Workload(
        setting=env,
        model=model,
        model_params=MODEL_PARAMS[model],
        steering={m: () if get_method(m).factor_free else tuple(steering.factors_for(m)) for m in wanted},
        n_instructions=steering.instructions.n_selection + steering.instructions.n_test,
        replicates=steering.generation.prompt_replicates,
        max_new_tokens=steering.generation.max_new_tokens,
        trained=trained,
        train_positives=pos,
        train_negatives=neg,
        answer_tokens=(pos * datagen.output_length + neg * datagen.pool_tokens) / (pos + neg),
        judge_model=str(steering.judge.model),
        concept_limit={m: int(n) for m, n in limits.items() if n is not None},
        steered={
            m: functools.partial(get_method(m).steered_concept_count, training.method_params(m))
            for m in wanted
            if m in trained
        },
    )


def judge_templates(env: str) -> dict[str, str]:
    """The judge templates of ``env`` (``steering_eval.judge.templates`` → ``conf/base/prompts/<name>.txt``)."""
    params, _ = load_env(env)
    names = params["steering_eval"]["judge"]["templates"]
    return {k: (CONF / "base" / "prompts" / f"{v}.txt").read_text() for k, v in names.items()}


def prices() -> PriceTable:
    return PriceTable.from_config(
        yaml.safe_load((CONF / "base" / "llm_prices.yml").read_text()), "llm_prices"
    )


# ------------------------------------------------------------------------------------------------ output


def _n(x: float) -> str:
    return f"{x:,.0f}"


def render(plans: list[Plan], workloads: dict[str, Workload], u: Units, tokens: tuple[float, float],
           price_of: dict[str, tuple[str, Price]], measurements: str) -> str:  # fmt: skip
    """``docs/capacity_plan.md``."""
    hours = "GPU-hours" if u.device.startswith("cuda") else f"device-hours ({u.device}, as measured)"
    lines = [
        "<!-- Generated by benchmarks/capacity_plan.py; do not edit by hand. -->",
        "# Capacity plan",
        "",
        f"Generated by `benchmarks/capacity_plan.py` from `{measurements}`. Regenerate with:",
        "",
        "```bash",
        ".venv/bin/python benchmarks/report.py          # measures the per-unit costs (writes measurements.json)",
        COMMAND,
        "```",
        "",
        "## Measured per-unit costs",
        "",
        f"- machine: {u.machine}; model {u.model} ({u.model_params / 1e6:,.0f} M parameters, {u.dtype}, {u.device})",
        f"- measured {u.date} at commit `{u.commit}`" + (f"; {u.note}" if u.note else ""),
        f"- steered generation (P1): {u.gen_tok_s:.1f} tokens/s at batch {u.gen_batch}",
        f"- training, in-process: {u.train_s_per_concept_method:.2f} s per concept and method "
        f"(mean over {', '.join(u.train_methods)}) on {u.train_rows_per_concept:g} rows per concept of "
        f"{u.train_prompt_tokens + u.train_answer_tokens:.0f} tokens ({u.train_answer_tokens:.0f} answer tokens)",
        "",
        "## Assumptions",
        "",
        "- Device time scales linearly with the model's parameter count (per-token FLOPs): gemma-2-2b-it "
        f"{MODEL_PARAMS['google/gemma-2-2b-it'] / 1e9:.2f} B, gemma-2-9b-it {MODEL_PARAMS['google/gemma-2-9b-it'] / 1e9:.2f} B "
        f"parameters vs the measured model; attention's quadratic term and the larger batches of a GPU are ignored.",
        "- Training time scales linearly with rows × tokens per concept (protocol §8: 72 positives with "
        "128-token answers, 72 pool negatives with 192-token answers) and every trained method costs the "
        "measured mean; the long gradient methods (LoRA, LoReFT 24 epochs, RePS 18, IG/IxG) cost more than that mean.",
        "- Every generation runs to `max_new_tokens` (128; an upper bound: generations stop at `<eos>`); the "
        "perplexity pass of `compute_perplexity` and the datagen / Prompt-baseline LLM calls are not counted.",
        f"- Judge tokens per call: the template's own text at {CHARS_PER_TOKEN:g} characters per token + a "
        f"{ASSUMED['concept_tokens']}-token concept, a {ASSUMED['instruction_tokens']}-token instruction and the "
        f"generation at 128 tokens → {tokens[0]:.0f} input tokens (mean over the 3 criteria); "
        f"{tokens[1]:.0f} output tokens (assumed). 3 calls per generation, no cache hits.",
        "- Methods: every method the setting's configuration trains and steers (`training.methods: null` = every "
        "registered method but `training.exclude_methods`, `steering_eval.methods: null` = every trained method that "
        "steers), including those that skip at run time without their input files (SAE family, released "
        "dictionaries). A method with a concept limit (SFT: `max_concepts`) trains and steers only its first "
        "concepts; HyperSteer trains on the others and steers only its held-out concepts; every other method "
        "trains and steers every concept.",
        "- Batch-API cost = half the configured price.",
        f"- Concept16K = 16,000 concepts on the settings AxBench built its 16K dictionaries for "
        f"({', '.join(CONCEPT16K_SETTINGS)}), with the same per-concept workload as Concept500.",
        "",
        "## Plan",
        "",
        f"| dataset | setting | concepts | generations | judge calls | judge input tokens | judge output tokens "
        f"| judge cost (USD) | Batch API (USD) | training {hours} | generation {hours} |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in plans:
        model, _ = price_of[p.setting]
        lines.append(
            f"| {p.dataset} | {p.setting} | {_n(p.concepts)} | {_n(p.generations)} | {_n(p.judge_calls)} | "
            f"{p.input_tokens / 1e6:,.1f} M | {p.output_tokens / 1e6:,.1f} M | {p.cost_usd:,.2f} | "
            f"{p.batch_cost_usd:,.2f} | {p.train_hours:,.1f} | {p.gen_hours:,.1f} |"
        )
    lines += ["", "Judge prices (conf/base/llm_prices.yml, USD per 1 M tokens input / output):", ""]
    for setting, (model, price) in price_of.items():
        lines.append(f"- {setting}: `{model}` {price.input_per_m:g} / {price.output_per_m:g}")
    lines += ["", "## Generations per concept, by setting", ""]
    for setting, w in workloads.items():
        parts = [f"{m} {method_generations(w, m)}" for m in w.steering]
        limited = [f"{m} on the first {n}" for m, n in w.concept_limit.items()]
        limited += [
            f"{m} steers {n} of 500"
            for m in w.steered
            if m not in w.concept_limit and (n := steered_concepts(w, m, 500)) != 500
        ]
        lines.append(
            f"- {setting}: {generations_per_concept(w)} = {' + '.join(parts)} "
            f"({w.n_instructions} instructions × the method's factors, factor-free methods × "
            f"{w.replicates} replicate(s)); {len(w.trained)} methods trained"
            + (f"; concepts limited: {', '.join(limited)}" if limited else "")
        )
    return "\n".join(lines) + "\n"


def build(measurements: Path) -> str:
    """The plan's Markdown from ``measurements`` and the configuration."""
    units = load_units(measurements)
    table = prices()
    workloads = {env: workload(env) for env in SETTINGS}
    templates = judge_templates(SETTINGS[0])
    tokens = judge_tokens_per_call(templates, max(w.max_new_tokens for w in workloads.values()))
    price_of: dict[str, tuple[str, Price]] = {}
    for env, w in workloads.items():
        price = table.lookup(w.judge_model)
        if price is None:
            raise AxbenchConfigError(
                f"conf/base/llm_prices.yml: no price for the judge model {w.judge_model!r}"
            )
        price_of[env] = (w.judge_model, price)
    plans = [plan_row("Concept500", 500, w, units, tokens, price_of[env][1]) for env, w in workloads.items()]
    plans += [
        plan_row("Concept16K", CONCEPT16K, workloads[env], units, tokens, price_of[env][1])
        for env in CONCEPT16K_SETTINGS
    ]
    try:
        shown = measurements.resolve().relative_to(ROOT)
    except ValueError:
        shown = measurements
    return render(plans, workloads, units, tokens, price_of, str(shown))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measurements", type=Path, default=DEFAULT_MEASUREMENTS)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    try:
        text = build(args.measurements)
    except (AxbenchDataError, AxbenchConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
