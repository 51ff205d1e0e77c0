"""Small synthetic upstream results with exactly the protocol columns (§1.1, §1.7, §1.12–§1.15, LLM ledgers).

The numbers are random but seeded; steering_selection is derived from steering_scores with the real selection rule
(``metrics.steering.select_factors``), so the frames are mutually consistent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from axbench_kedro.metrics.steering import select_factors

FACTORS = [0.2, 0.4, 1.0, 2.0, 5.0]
RANK1 = ["DiffMean", "ReFT-r1", "SAE"]
FACTOR_FREE = ["Prompt"]
DETECTORS = ["DiffMean", "ReFT-r1", "SAE"]
USAGE_COLUMNS = ["stage", "model", "calls", "cache_hits", "input_tokens", "output_tokens", "cost_usd"]


def concepts_meta(n_concepts: int = 4) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "concept_id": np.arange(n_concepts, dtype="int64"),
            "concept": [f"synthetic concept number {i}" for i in range(n_concepts)],
            "ref": ["null"] * n_concepts,
            "sae_id": np.full(n_concepts, -1, dtype="int64"),
            "concept_genres": [["text"] for _ in range(n_concepts)],
        }
    )


def latent_scores(n_concepts: int = 4, seed: int = 0, per_category: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    row_id = 0
    for c in range(n_concepts):
        for category, shift in (("positive", 1.0), ("negative", 0.0), ("hard negative", 0.6)):
            for _ in range(per_category):
                for k, method in enumerate(DETECTORS):
                    rows.append(
                        {
                            "concept_id": c,
                            "row_id": row_id,
                            "category": category,
                            "method": method,
                            "max_act": round(float(rng.normal(shift * (1.5 - 0.4 * k), 0.7)), 3),
                            "max_act_idx": int(rng.integers(0, 20)),
                            "max_token": "tok",
                            # list-valued cells, as latent_eval writes with keep_token_acts (viz previews)
                            "acts": [0.0, round(float(rng.normal()), 3), float("nan")],
                            "tokens": ["<bos>", "tok", "en"],
                        }
                    )
                row_id += 1
    return pd.DataFrame(rows).astype({"concept_id": "int64", "row_id": "int64", "max_act_idx": "int64"})


def latent_metrics(n_concepts: int = 4, seed: int = 0, offset: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed + 100)
    rows = []
    for k, method in enumerate(DETECTORS):
        for c in range(n_concepts):
            auc = float(np.clip(0.95 - 0.15 * k + offset + rng.normal(0, 0.02), 0, 1))
            rows.append(
                {
                    "concept_id": c,
                    "method": method,
                    "roc_auc": auc,
                    "youden_threshold": 0.5,
                    "positive_acc_youden": auc,
                    "hard_negative_acc_youden": 0.5,
                    "hardneg_macro_acc": (auc + 0.5) / 2,
                    "pr_threshold": 0.4,
                    "precision": auc - 0.1,
                    "recall": auc,
                    "f1": auc - 0.05,
                    "overall_accuracy": auc - 0.02,
                    "positive_acc": auc,
                    "negative_acc": auc - 0.05,
                    "hard_negative_acc": 0.5,
                    "macro_acc": auc - 0.1,
                    "max_act": 3.0,
                    "min_act": -1.0,
                    "f1_imb": auc / 3,
                    "precision_imb": auc / 4,
                    "recall_imb": auc,
                    "auroc_imb": auc,
                }
            )
    return pd.DataFrame(rows).astype({"concept_id": "int64"})


def steering_scores(n_concepts: int = 4, seed: int = 0, offset: float = 0.0) -> pd.DataFrame:
    """§1.13 rows: rank-1 methods over the factor grid, factor-free methods at factor 0 (no grid)."""
    rng = np.random.default_rng(seed + 200)
    rows = []
    for method in RANK1 + FACTOR_FREE:
        grid = FACTORS if method in RANK1 else [0.0]
        for c in range(n_concepts):
            peak = rng.uniform(0.3, 1.5)
            for split in ("selection", "test"):
                for f in grid:
                    base = np.exp(-((np.log(f / 1.0)) ** 2)) if f > 0 else 0.8
                    hm = float(np.clip(peak * base + offset + rng.normal(0, 0.1), 0, 2))
                    rows.append(
                        {
                            "concept_id": c,
                            "method": method,
                            "dataset_name": "AlpacaEval",
                            "split": split,
                            "factor": float(f),
                            "n": 5,
                            "lm_judge_rating": hm,
                            "relevance_concept_ratings": float(np.clip(hm + 0.3, 0, 2)),
                            "relevance_instruction_ratings": float(np.clip(2 - hm / 2, 0, 2)),
                            "fluency_ratings": float(np.clip(1.8 - 0.1 * f, 0, 2)),
                            "perplexity": float(20 + 5 * f),
                        }
                    )
    return pd.DataFrame(rows).astype({"concept_id": "int64", "n": "int64"})


def steering_selection(scores: pd.DataFrame) -> pd.DataFrame:
    return select_factors(scores, factor_free_methods=FACTOR_FREE)


def steering_summary(selection: pd.DataFrame, setting: str, judge_kind: str = "proxy") -> pd.DataFrame:
    grouped = selection.groupby("method", sort=True)
    return pd.DataFrame(
        {
            "method": list(grouped.groups),
            "setting": setting,
            "judge_kind": judge_kind,
            "judge_model": "all-MiniLM-L6-v2" if judge_kind == "proxy" else "gpt-4o-mini-2024-07-18",
            "overall": grouped["test_hm"].mean().to_numpy(),
            "concept": grouped["test_concept"].mean().to_numpy(),
            "instruction": grouped["test_instruction"].mean().to_numpy(),
            "fluency": grouped["test_fluency"].mean().to_numpy(),
            "perplexity": grouped["test_perplexity"].mean().to_numpy(),
            "winrate_vs_prompt": 0.5,
            "n_concepts": grouped["concept_id"].nunique().to_numpy(),
            "parse_failures": 0,
        }
    )


def judgements(n_concepts: int = 2, seed: int = 0, judge_kind: str = "proxy") -> pd.DataFrame:
    rng = np.random.default_rng(seed + 300)
    rows = []
    for method in RANK1 + FACTOR_FREE:
        for c in range(n_concepts):
            for input_id in range(2):
                for criterion in ("concept", "instruction", "fluency"):
                    ok = bool(rng.random() > 0.1)
                    rows.append(
                        {
                            "dataset_name": "AlpacaEval",
                            "concept_id": c,
                            "input_id": input_id,
                            "factor": 1.0,
                            "method": method,
                            "criterion": criterion,
                            "rating": float(rng.integers(0, 3)) if ok else 0.0,
                            "parse_ok": ok,
                            "raw_completion": "Rating: [[1]]",
                            "judge_kind": judge_kind,
                            "judge_model": "all-MiniLM-L6-v2",
                            "temperature": 0.0,
                            "template_sha256": f"{criterion[:3]}" + "0" * 61,
                            "parse_rule": "axbench-v1",
                            "seed": 42 + c,
                        }
                    )
    return pd.DataFrame(rows).astype({"concept_id": "int64", "input_id": "int64", "seed": "int64"})


def llm_usage(stage: str, calls: int = 10) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "stage": stage,
                "model": "gpt-4o-mini-2024-07-18",
                "calls": calls,
                "cache_hits": calls // 2,
                "input_tokens": 100 * calls,
                "output_tokens": 20 * calls,
                "cost_usd": 0.0001 * calls,
            }
        ],
        columns=USAGE_COLUMNS,
    )


def prompt_steering_texts(
    n_concepts: int = 4, max_tokens: int | None = None, cut: tuple[int, ...] = ()
) -> pd.DataFrame:
    """``prompt_steering_texts`` (§1.10, P1 replies): concepts in ``cut`` stopped at the token cap."""
    return pd.DataFrame(
        {
            "concept_id": np.arange(n_concepts, dtype="int64"),
            "text": [f"Always mention concept {c}." for c in range(n_concepts)],
            "is_fallback": False,
            "finish_reason": pd.array(
                ["length" if c in cut else "stop" for c in range(n_concepts)], dtype="string"
            ),
            "truncated": [c in cut for c in range(n_concepts)],
            "max_tokens": pd.array([max_tokens] * n_concepts, dtype="Int64"),
            "template_sha256": "p1" + "0" * 62,
            "model": "gpt-4o-mini-2024-07-18",
        }
    )


def upstream(
    setting: str, *, n_concepts: int = 4, seed: int = 0, offset: float = 0.0
) -> dict[str, pd.DataFrame]:
    """Every upstream dataset the reporting pipeline reads, keyed by catalog name."""
    scores = steering_scores(n_concepts, seed, offset)
    selection = steering_selection(scores)
    return {
        "concepts_meta": concepts_meta(n_concepts),
        "latent_scores": latent_scores(n_concepts, seed),
        "latent_metrics": latent_metrics(n_concepts, seed, offset),
        "steering_scores": scores,
        "steering_selection": selection,
        "steering_summary": steering_summary(selection, setting),
        "judgements": judgements(min(n_concepts, 2), seed),
        "datagen_llm_usage": llm_usage("datagen"),
        "latent_eval_llm_usage": llm_usage("latent_eval", 0),
        "steering_llm_usage": llm_usage("steering_eval", 20),
        "prompt_steering_texts": prompt_steering_texts(n_concepts),
        "training_summary": training_summary(n_concepts),
    }


def training_summary(n_concepts: int) -> pd.DataFrame:
    """``training_summary`` of two trained methods (no source files)."""
    return pd.DataFrame(
        {
            "method": ["DiffMean", "Prompt"],
            "status": "ok",
            "skip_reason": "",
            "n_concepts": n_concepts,
            "cached_concepts": 0,
            "seconds": [1.5, 0.1],
            "source_files": "",
        }
    )


# --- suppression (protocol §6) ---------------------------------------------------------------------------------------

SUPPRESSION_SETTING = "embedded_270m_l12"
SUPPRESSION_REPS = [1.0, 1.2, 0.8, 1.0]
SUPPRESSION_PROMPT = [0.5, 0.5, 0.5, 0.5]
SUPPRESSION_SAE = [0.1, 0.3, 0.2]  # one concept fewer


def suppression_selection(setting: str = SUPPRESSION_SETTING, shift: float = 0.0) -> pd.DataFrame:
    """``suppression_selection`` (§1.14, AlpacaEvalSuppress) of three methods; Prompt is the factor-free defence."""
    rows = []
    for method, values, factor in (
        ("RePS", SUPPRESSION_REPS, -8.0),
        ("Prompt", SUPPRESSION_PROMPT, np.nan),
        ("SAE", SUPPRESSION_SAE, -2.0),
    ):
        for c, value in enumerate(values):
            rows.append(
                {
                    "concept_id": c,
                    "method": method,
                    "dataset_name": "AlpacaEvalSuppress",
                    "best_factor": factor,
                    "best_index": 0 if np.isnan(factor) else 3,
                    "selection_hm": 1.0,
                    "test_hm": value + shift,
                    "test_concept": 0.2,
                    "test_instruction": 1.8,
                    "test_fluency": 1.6,
                }
            )
    # A steering row in the same file must not count.
    rows.append({**rows[0], "dataset_name": "AlpacaEval", "test_hm": 2.0, "concept_id": 99})
    return pd.DataFrame(rows).astype({"concept_id": "int64", "best_index": "int64"}).assign(setting=setting)


def suppression_summary(setting: str = SUPPRESSION_SETTING) -> pd.DataFrame:
    """Judge columns of ``suppression_summary`` (SAE left out: its judge is unknown)."""
    return pd.DataFrame(
        {"method": ["RePS", "Prompt"], "judge_kind": "llm", "judge_model": "gpt-4o-mini-2024-07-18"}
    ).assign(setting=setting)


def attack_summary(setting: str = SUPPRESSION_SETTING) -> pd.DataFrame:
    """``attack_summary``: one row per method × attack × n-shot plus each method's no-attack row."""
    rows = []
    spec = {
        ("RePS", "steering"): {("none", 0): 1.2, ("multishot", 1): 1.15, ("multishot", 5): 1.1, ("append", 0): 0.9,
                               ("prepend", 0): 0.8},
        ("Prompt", "prompt"): {("none", 0): 1.5, ("multishot", 5): 0.3, ("multishot", 1): 0.6, ("append", 0): 0.2,
                               ("prepend", 0): 0.4},
    }  # fmt: skip
    for (method, kind), cells in spec.items():
        for (attack, n_shot), score in cells.items():
            label = {"none": "no attack", "multishot": f"{n_shot}-shot"}.get(attack, f"overwrite ({attack})")
            rows.append(
                {
                    "setting": setting,
                    "method": method,
                    "kind": kind,
                    "attack": attack,
                    "n_shot": n_shot,
                    "label": label,
                    "n_concepts": 3,
                    "n_generations": 15,
                    "score": score,
                    "ci_low": score - 0.2,
                    "ci_high": score + 0.1,
                    "judge_kind": "llm",
                }
            )
    return pd.DataFrame(rows).astype({"n_shot": "int64", "n_concepts": "int64", "n_generations": "int64"})
