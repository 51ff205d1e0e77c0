"""The whole performance table in one command (P1–P7 and the Dask scale-out), as Markdown + CSV per commit.

Figures (targets from the issues that set them; P2's target is ≥ 5× on a GPU, ≥ 1.3× on a CPU):

- P1 steered ÷ plain generation tokens/s (``bench_steering.bench_steered_vs_plain``), target ≥ 0.95.
- P2 whole-method batched schedule vs the upstream per-concept schedule (``bench_steering.bench_schedule``).
- P3 no-gradient training ÷ one truncated forward (``bench_training_latent.bench_nograd``), target ≤ 1.3.
- P4 latent scoring of every method ÷ one (``bench_training_latent.bench_scoring``), target ≤ 1.2.
- P5 second default ``kedro run`` ÷ the first, and its LLM calls (``bench_rerun.measure_rerun``), ≤ 0.10 and 0.
- P6 1,000 judge calls against a loopback server answering after 200 ms (``bench_steering.bench_judge``), ≤ 10 s.
- P7 the default ``kedro run`` wall, cold data caches, target ≤ 600 s on 2 CPU cores.
- Dask: training the same concepts on a LocalCluster of 2 workers vs in-process (same artifacts checked).

P5 and P7 need two default runs in a fresh clone (~10 min or more): only with ``--kedro-run``; otherwise the figures
of the last such run are read back from ``<out>/kedro_run.json`` (or printed as "not measured").

Writes ``perf_<UTC stamp>_<commit>.{md,csv}``, ``latest.{md,csv}`` and ``measurements.json`` (the raw figures that
``benchmarks/capacity_plan.py`` reads) under ``--out`` (default ``data/08_reporting/perf/``, ``…/perf/tiny/`` with
``--tiny``).

Usage::

    .venv/bin/python benchmarks/report.py                  # embedded model, P5/P7 from the last --kedro-run
    .venv/bin/python benchmarks/report.py --kedro-run      # + two default `kedro run` in a fresh clone
    .venv/bin/python benchmarks/report.py --tiny           # tiny random model, small sizes (a smoke test)
    .venv/bin/python benchmarks/report.py --only P1,P6 --out /tmp/perf
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))  # tiny models and the loopback server live with the test fixtures
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")

IDS = ("P1", "P2", "P3", "P4", "P5", "P6", "P7", "Dask")
CSV_COLUMNS = [
    "id", "measure", "value", "unit", "target", "meets_target", "detail",
    "commit", "date", "model", "device", "dtype", "cpus", "torch_threads",
]  # fmt: skip
DEFAULT_OUT = ROOT / "data" / "08_reporting" / "perf"
KEDRO_RUN_FILE = "kedro_run.json"


@dataclass(frozen=True)
class Row:
    """One line of the table.

    Attributes:
        id: ``P1`` … ``P7`` or ``Dask``.
        measure: what is measured.
        value: the figure (``None`` = not measured).
        unit: ``ratio``, ``×``, ``s``, ``calls``.
        op: ``>=`` / ``<=`` against ``threshold``, or ``None`` (no target).
        threshold: the target value.
        detail: the raw figures behind the value.
    """

    id: str
    measure: str
    value: float | None
    unit: str
    op: str | None = None
    threshold: float | None = None
    detail: str = ""

    @property
    def target(self) -> str:
        if self.op is None or self.threshold is None:
            return "–"
        return f"{'≥' if self.op == '>=' else '≤'} {self.threshold:g}"

    @property
    def meets(self) -> str:
        if self.value is None or self.op is None or self.threshold is None:
            return "–"
        ok = self.value >= self.threshold if self.op == ">=" else self.value <= self.threshold
        return "yes" if ok else "no"


# ----------------------------------------------------------------------------------------------------- assembly


def _fmt(value: float | None) -> str:
    if value is None:
        return "not measured"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value)}"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.1f}"


def table_frame(rows: list[Row], meta: dict[str, Any]) -> pd.DataFrame:
    """The CSV: one row per figure, each carrying the run's commit, date and machine (so CSVs concatenate)."""
    records = [
        {
            "id": r.id,
            "measure": r.measure,
            "value": r.value,
            "unit": r.unit,
            "target": r.target,
            "meets_target": r.meets,
            "detail": r.detail,
            **{k: meta.get(k) for k in CSV_COLUMNS[7:]},
        }
        for r in rows
    ]
    return pd.DataFrame(records, columns=CSV_COLUMNS)


def table_markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    """The Markdown report: a header with commit, date and machine, then the table."""
    lines = [
        "# Performance report",
        "",
        f"- commit: `{meta.get('commit')}`",
        f"- date: {meta.get('date')}",
        f"- model: {meta.get('model')} ({meta.get('dtype')}, {meta.get('device')})",
        f"- machine: {meta.get('machine')}; {meta.get('cpus')} CPUs, torch threads {meta.get('torch_threads')}",
    ]
    if meta.get("note"):
        lines.append(f"- note: {meta['note']}")
    lines += [
        "",
        "| id | measure | value | unit | target | meets target | detail |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        detail = r.detail.replace("|", "/")
        lines.append(
            f"| {r.id} | {r.measure} | {_fmt(r.value)} | {r.unit} | {r.target} | {r.meets} | {detail} |"
        )
    return "\n".join(lines) + "\n"


def write_report(rows: list[Row], meta: dict[str, Any], raw: dict[str, Any], out: Path) -> list[Path]:
    """Write the stamped and ``latest`` Markdown + CSV and ``measurements.json`` under ``out``; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = str(meta["date"]).replace("-", "").replace(":", "").replace(" ", "T")
    stem = f"perf_{stamp}_{str(meta['commit'])[:8]}"
    md, frame = table_markdown(rows, meta), table_frame(rows, meta)
    paths = []
    for name in (stem, "latest"):
        (out / f"{name}.md").write_text(md)
        frame.to_csv(out / f"{name}.csv", index=False)
        paths += [out / f"{name}.md", out / f"{name}.csv"]
    (out / "measurements.json").write_text(json.dumps({"meta": meta, **raw}, indent=2, default=str) + "\n")
    return [*paths, out / "measurements.json"]


def rows_from(raw: dict[str, Any], device: str) -> list[Row]:
    """The table rows of the raw figures (``raw[id]`` = what each bench function returned; missing = not run)."""
    rows: list[Row] = []
    failed = {k: v["error"] for k, v in raw.items() if isinstance(v, dict) and "error" in v}
    raw = {k: v for k, v in raw.items() if k not in failed}
    rows += [Row(k, "failed", None, "–", detail=f"failed: {e}") for k, e in failed.items()]
    if (p := raw.get("P1")) is not None:
        rows.append(Row("P1", "steered ÷ plain generation tokens/s", p["ratio"], "ratio", ">=", 0.95,
                        f"steered {p['steered_tok_s']:.1f} tok/s, plain {p['plain_tok_s']:.1f} tok/s"))  # fmt: skip
    if (p := raw.get("P2")) is not None:
        rows.append(Row("P2", "batched whole-method schedule vs upstream per-concept schedule (speed-up)",
                        p["speedup"], "×", ">=", 5.0 if device.startswith("cuda") else 1.3,
                        f"ours {p['ours_s']:.1f} s ({p['ours_generations']} generations), upstream "
                        f"{p['upstream_s']:.1f} s ({p['upstream_generations']}); target ≥ 5 on a GPU, ≥ 1.3 on a CPU"))  # fmt: skip
    if (p := raw.get("P3")) is not None:
        rows.append(Row("P3", "no-gradient training (DiffMean+PCA+LAT) ÷ one truncated forward", p["ratio"],
                        "ratio", "<=", 1.3,
                        f"training {p['training_s']:.2f} s, forward {p['forward_s']:.2f} s ({p['rows']} rows)"))  # fmt: skip
    if (p := raw.get("P4")) is not None:
        rows.append(Row("P4", "latent scoring of every method ÷ one method", p["ratio"], "ratio", "<=", 1.2,
                        f"{p['methods']} methods {p['all_s']:.2f} s, DiffMean alone {p['one_s']:.2f} s"))  # fmt: skip
    p5 = raw.get("P5")
    where = f" ({p5['source']})" if p5 and p5.get("source") else ""
    if "P5" in raw:
        rows.append(Row("P5", "rerun: second default `kedro run` ÷ first (wall)", p5 and p5["ratio"], "ratio",
                        "<=", 0.10, (f"{p5['second_s']:.1f} s ÷ {p5['first_s']:.1f} s" + where) if p5 else ""))  # fmt: skip
        rows.append(Row("P5", "rerun: LLM calls of the second run", p5 and p5["second_calls"], "calls", "<=", 0,
                        (f"first run {p5['first_calls']} calls" + where) if p5 else ""))  # fmt: skip
    if (p := raw.get("P6")) is not None:
        rows.append(Row("P6", f"{p['calls']} judge calls, loopback server with {p['latency_ms']:.0f} ms latency",
                        p["wall_s"], "s", "<=", 10.0,
                        f"{p['calls'] / p['wall_s']:.0f} calls/s, {p['parsed']} ratings parsed"))  # fmt: skip
    if "P7" in raw:
        p7 = raw["P7"]
        rows.append(Row("P7", "default `kedro run` wall (fresh clone, cold data caches)", p7 and p7["first_s"],
                        "s", "<=", 600.0, p7.get("source", "") if p7 else ""))  # fmt: skip
    if (p := raw.get("Dask")) is not None:
        rows.append(Row("Dask", f"training, LocalCluster {p['workers']} workers vs sequential (speed-up)",
                        p["speedup"], "×", None, None,
                        f"sequential {p['sequential_s']:.1f} s, dask {p['dask_s']:.1f} s (+{p['warmup_s']:.1f} s "
                        f"worker model load), {p['concepts']} concepts × {', '.join(p['methods'])}; "
                        f"identical artifacts: {'yes' if p['identical'] else 'NO'}"))  # fmt: skip
    return sorted(rows, key=lambda r: IDS.index(r.id))  # stable: P5's two rows keep their order


# --------------------------------------------------------------------------------------------------- measuring


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_meta(tm: Any, note: str = "") -> dict[str, Any]:
    """Commit (``+dirty`` for uncommitted changes), UTC date and the machine the figures come from."""
    import torch

    dirty = _git("status", "--porcelain", "--untracked-files=no")
    commit = _git("rev-parse", "HEAD") + ("+dirty" if dirty and dirty != "unknown" else "")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "commit": commit,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
        "model": tm.name,
        "model_params": sum(p.numel() for p in tm.model.parameters()),
        "device": str(tm.device),
        "dtype": str(tm.dtype).removeprefix("torch."),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.system()}, {gpu or 'no GPU'}, torch {torch.__version__}",
        "note": note,
    }


def _tiny_model(where: Path) -> Any:
    """A tiny random Gemma saved to ``where`` and loaded by path (as Dask workers load it)."""
    from axbench_kedro.lm.loading import load_target_model
    from axbench_kedro.lm.types import ModelSpec
    from fixtures.tiny_models import make_tiny_target_model

    tiny = make_tiny_target_model("gemma3", n_layers=4, hidden=64, seed=0)
    tiny.model.save_pretrained(where)
    tiny.tokenizer.save_pretrained(where)
    return load_target_model(
        ModelSpec(source="local", name_or_path=str(where), dtype="float32", device="cpu")
    )


def _same_artifacts(a: dict[str, Any], b: dict[str, Any]) -> bool:
    import torch

    return list(a) == list(b) and all(
        set(a[n].tensors) == set(b[n].tensors)
        and all(torch.equal(a[n].tensors[k], b[n].tensors[k]) for k in a[n].tensors)
        for n in a
    )


def bench_dask(tm: Any, layer: int, methods: list[str], batch_size: int, workers: int = 2) -> dict[str, Any]:
    """Training of the benchmark concepts (one concept per shard) in-process vs on a LocalCluster.

    The workers load the model before the clock starts (reported apart as ``warmup_s``).
    """
    import torch
    from bench_training_latent import make_data

    from axbench_kedro.lm.loading import load_target_model
    from axbench_kedro.methods.registry import get_method
    from axbench_kedro.methods.trainer import TrainOptions, build_concepts, train_methods
    from axbench_kedro.scaling import ScalingParams, make_executor

    train_df, meta, _ = make_data()
    concepts = build_concepts(train_df, meta)
    opts = TrainOptions(
        setting="bench", layer=layer, seed=42, activation_batch_size=batch_size,
        lm_cache_batch_size=batch_size, concept_group_size=1,
    )  # fmt: skip
    runnable = [(get_method(n), None) for n in methods]
    start = time.perf_counter()
    seq, _ = train_methods(tm, concepts, runnable, opts)
    seq_s = time.perf_counter() - start
    spec = tm.spec
    params = ScalingParams(engine="dask", n_workers=workers)
    with make_executor(params, gpu=tm.device.type == "cuda") as ex:
        start = time.perf_counter()
        ex.client.run(lambda: load_target_model(spec) and None)  # every worker loads the model once
        warm_s = time.perf_counter() - start
        start = time.perf_counter()
        dask, _ = train_methods(tm, concepts, runnable, opts, executor=ex)
        dask_s = time.perf_counter() - start
    print(
        f"[Dask] {len(concepts)} concepts × {methods}: sequential {seq_s:.1f} s, LocalCluster {workers} workers "
        f"{dask_s:.1f} s (+{warm_s:.1f} s model load) → {seq_s / dask_s:.2f}× (torch threads {torch.get_num_threads()})"
    )
    return {
        "sequential_s": seq_s,
        "dask_s": dask_s,
        "warmup_s": warm_s,
        "speedup": seq_s / dask_s,
        "workers": workers,
        "concepts": len(concepts),
        "methods": methods,
        "identical": _same_artifacts(seq, dask),
    }


def training_units(tm: Any) -> dict[str, float]:
    """Rows and tokens per concept of the benchmark training data (the capacity plan scales from them)."""
    from bench_training_latent import make_data

    from axbench_kedro.lm.chat import format_binary

    train_df, _, _ = make_data()
    pos = train_df[train_df["category"] == "positive"]
    pool = train_df[train_df["category"] == "negative"]
    genres = pos.groupby("concept_id")["concept_genre"].first()
    n_concepts = len(genres)
    rows = [
        format_binary(tm.tokenizer, i, o) for i, o in zip(train_df["input"], train_df["output"], strict=True)
    ]
    tok = tm.tokenizer
    row_tokens = [len(tok(r, add_special_tokens=False)["input_ids"]) for r in rows]
    out_tokens = [len(tok(o, add_special_tokens=False)["input_ids"]) for o in train_df["output"]]
    return {
        "concepts": n_concepts,
        "positives_per_concept": len(pos) / n_concepts,
        "negatives_per_concept": sum(int((pool["concept_genre"] == g).sum()) for g in genres) / n_concepts,
        "tokens_per_row": sum(row_tokens) / len(rows),
        "output_tokens_per_row": sum(out_tokens) / len(rows),
    }


def _kedro_run_figures(out: Path, measure: bool, meta: dict[str, Any]) -> dict[str, Any] | None:
    """P5/P7: measured now (and saved to ``out``) or read back from the last measurement, else ``None``."""
    path = out / KEDRO_RUN_FILE
    if measure:
        from bench_rerun import measure_rerun

        figures = measure_rerun()
        out.mkdir(parents=True, exist_ok=True)
        saved = {**figures, "commit": meta["commit"], "date": meta["date"], "machine": meta["machine"]}
        path.write_text(json.dumps(saved, indent=2) + "\n")
        return {**figures, "source": "measured in this run"}
    if path.exists():
        figures = json.loads(path.read_text())
        return {
            **figures,
            "source": f"last measured {figures.get('date')} at {str(figures.get('commit'))[:8]}",
        }
    return None


def measure(args: argparse.Namespace) -> tuple[list[Row], dict[str, Any], dict[str, Any]]:
    """Run the selected benchmarks; return the rows, the run's metadata and the raw figures."""
    import bench_steering
    import bench_training_latent

    only = set(args.only)
    with tempfile.TemporaryDirectory(prefix="axbench-perf-") as tmp:
        if args.tiny:
            tm, layer = _tiny_model(Path(tmp)), 1
            size = dict(
                rows=4, tokens=4, repeats=1, concepts=2, instructions=2, batch=8, judge_items=34, bs=8
            )
            dask_methods = ["DiffMean", "ReFT-r1"]
        else:
            from axbench_kedro.lm.loading import load_target_model
            from axbench_kedro.lm.types import ModelSpec

            tm, layer = load_target_model(ModelSpec()), args.layer
            size = dict(
                rows=16, tokens=16, repeats=2, concepts=4, instructions=4, batch=32, judge_items=334, bs=16
            )
            dask_methods = ["DiffMean", "Probe", "ReFT-r1"]
        meta = machine_meta(tm, args.note)
        if args.tiny:
            meta["model"] = f"tiny random Gemma-3 ({tm.n_layers} layers, d {tm.d_model})"
        print(
            f"model {meta['model']} ({meta['dtype']}, {meta['device']}), layer {layer}, commit {meta['commit']}"
        )
        raw: dict[str, Any] = {"layer": layer, "sizes": size, "training_units": training_units(tm)}
        jobs = {
            "P1": lambda: {
                **bench_steering.bench_steered_vs_plain(
                    tm, layer, size["rows"], size["tokens"], size["repeats"]
                ),
                "rows": size["rows"],
                "new_tokens": size["tokens"],
            },
            "P2": lambda: bench_steering.bench_schedule(
                tm, layer, size["concepts"], size["instructions"], size["tokens"], size["batch"]
            ),
            "P3": lambda: bench_training_latent.bench_nograd(tm, layer, size["repeats"], size["bs"]),
            "P4": lambda: bench_training_latent.bench_scoring(tm, layer, size["repeats"], size["bs"]),
            "P6": lambda: {
                **bench_steering.bench_judge(size["judge_items"], args.latency, separate_process=True),
                "latency_ms": args.latency * 1000,
            },
            "Dask": lambda: bench_dask(tm, layer, dask_methods, size["bs"]),
        }
        for key, job in jobs.items():
            if key in only:
                try:
                    raw[key] = job()
                except Exception as exc:  # noqa: BLE001 (one failed figure must not lose the others)
                    print(f"[{key}] failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                    raw[key] = {"error": f"{type(exc).__name__}: {exc}"}
        if only & {"P5", "P7"}:
            figures = _kedro_run_figures(args.out, args.kedro_run, meta)
            for key in sorted(only & {"P5", "P7"}):
                raw[key] = figures
    return rows_from(raw, meta["device"]), meta, raw


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny", action="store_true", help="a tiny random model and small sizes (smoke test)"
    )
    parser.add_argument(
        "--kedro-run", action="store_true", help="measure P5/P7 now (two default runs, ~10+ min)"
    )
    parser.add_argument("--only", default=",".join(IDS), help=f"comma-separated subset of {', '.join(IDS)}")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default data/08_reporting/perf)"
    )
    parser.add_argument("--layer", type=int, default=9, help="steering/training layer of the embedded model")
    parser.add_argument("--latency", type=float, default=0.2, help="P6 server latency per reply (s)")
    parser.add_argument("--note", default="", help="a line for the report header (e.g. 'machine shared')")
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in args.only if s not in IDS]
    if unknown:
        parser.error(f"--only: unknown id(s) {unknown}; choose from {', '.join(IDS)}")
    if args.out is None:
        args.out = DEFAULT_OUT / "tiny" if args.tiny else DEFAULT_OUT
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rows, meta, raw = measure(args)
    print()
    print(table_markdown(rows, meta))
    for path in write_report(rows, meta, raw, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
