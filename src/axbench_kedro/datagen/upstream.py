"""Build the paper's input files from local copies of the upstream datasets (no network).

* ``seed-pools``: the §2.2 seed instruction pools — text: Dolly-15k ``open_qa`` rows with an empty context;
  math: GSM8K train questions; code: python_code_instructions_18k_alpaca rows with an empty ``input``; each
  shorter than 500 characters, train = the first 1000, test = the next 1000, file order kept.
* ``alpaca-eval``: the 805 Alpaca-Eval instructions (column ``instruction``, file order kept) for steering_eval.

Then point ``seed_instructions`` / ``steering_instructions`` in ``conf/<env>/globals.yml`` at the written files.

Example::

    python -m axbench_kedro.datagen.upstream seed-pools dolly.jsonl gsm8k_train.jsonl code18k.json \\
        data/01_raw/seed_instructions_paper.csv
    python -m axbench_kedro.datagen.upstream alpaca-eval alpaca_eval.json data/01_raw/alpaca_eval.csv
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from axbench_kedro.errors import AxbenchDataError

__all__ = ["read_any", "seed_pools_from_upstream", "alpaca_eval_instructions", "main"]


def read_any(path: str | Path) -> pd.DataFrame:
    """Read ``.jsonl``, ``.json`` (a list of objects), ``.parquet`` or ``.csv`` into a DataFrame (file order)."""
    path = Path(path)
    if not path.is_file():
        raise AxbenchDataError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return pd.read_json(path, lines=True)
    if suffix == ".json":
        return pd.read_json(path)
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix == ".csv":
        return pd.read_csv(path)
    raise AxbenchDataError(f"{path}: unsupported file type {suffix!r} (use .jsonl, .json, .parquet or .csv)")


def _column(frame: pd.DataFrame, name: str, source: str) -> pd.Series:
    if name not in frame.columns:
        raise AxbenchDataError(f"{source}: column '{name}': missing (columns: {list(frame.columns)})")
    return frame[name]


def _blank(values: pd.Series) -> pd.Series:
    return values.isna() | (values.astype(str).str.strip() == "")


def seed_pools_from_upstream(
    dolly: pd.DataFrame,
    gsm8k: pd.DataFrame,
    python_code: pd.DataFrame,
    per_split: int = 1000,
    max_chars: int = 500,
) -> pd.DataFrame:
    """The paper's seed pools (§2.2) as a ``seed_instructions`` table (``genre``, ``split``, ``input``).

    Args:
        dolly: databricks-dolly-15k rows (``instruction``, ``context``, ``category``).
        gsm8k: GSM8K train rows (``question``).
        python_code: python_code_instructions_18k_alpaca rows (``instruction``, ``input``).
        per_split: instructions per split (train = first block, test = the next one).
        max_chars: instructions must be shorter than this.
    """
    text = _column(dolly, "instruction", "dolly").astype(str)
    keep = (_column(dolly, "category", "dolly") == "open_qa") & _blank(_column(dolly, "context", "dolly"))
    text = text[keep & (text.str.len() < max_chars)]
    math = _column(gsm8k, "question", "gsm8k").astype(str)
    math = math[math.str.len() < max_chars]
    code = _column(python_code, "instruction", "python_code").astype(str)
    code = code[_blank(_column(python_code, "input", "python_code")) & (code.str.len() < max_chars)]
    rows: list[dict[str, Any]] = []
    for genre, series in (("text", text), ("math", math), ("code", code)):
        values = series.tolist()
        for split, block in (("train", values[:per_split]), ("test", values[per_split : 2 * per_split])):
            rows.extend({"genre": genre, "split": split, "input": v} for v in block)
    return pd.DataFrame(rows, columns=["genre", "split", "input"])


def alpaca_eval_instructions(frame: pd.DataFrame) -> pd.DataFrame:
    """The ``instruction`` column of an Alpaca-Eval file, file order kept."""
    return pd.DataFrame({"instruction": _column(frame, "instruction", "alpaca_eval").astype(str).tolist()})


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m axbench_kedro.datagen.upstream", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    pools = sub.add_parser(
        "seed-pools", help="Dolly-15k + GSM8K + python_code_instructions_18k → seed_instructions CSV"
    )
    pools.add_argument("dolly")
    pools.add_argument("gsm8k")
    pools.add_argument("python_code")
    pools.add_argument("output")
    pools.add_argument("--per-split", type=int, default=1000)
    alpaca = sub.add_parser("alpaca-eval", help="Alpaca-Eval JSON → steering_instructions CSV")
    alpaca.add_argument("alpaca_eval")
    alpaca.add_argument("output")
    args = parser.parse_args(argv)
    if args.command == "seed-pools":
        frame = seed_pools_from_upstream(
            read_any(args.dolly), read_any(args.gsm8k), read_any(args.python_code), per_split=args.per_split
        )
    else:
        frame = alpaca_eval_instructions(read_any(args.alpaca_eval))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.output, index=False)
    print(f"wrote {len(frame)} rows to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
