"""Nodes of the ``latent_eval`` pipeline (protocol §4): score, measure, plot.

* :func:`sample_imbalance_negatives` — the shared 1:100 negative pool (§1.8).
* :func:`score_model_methods` — every ``activation`` method in one truncated forward pass plus the ``text``
  methods (BoW); pool rows are scored against every concept in the same pass.
* :func:`score_prompt_detection` — the ``llm`` methods (PromptDetection) through the LLM client.
* :func:`merge_latent_scores`, :func:`compute_latent_metrics`, :func:`compute_max_activations`,
  :func:`plot_latent_roc`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from axbench_kedro.cache import content_key
from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.latent_eval import LatentEvalParams
from axbench_kedro.errors import AxbenchConfigError, AxbenchDataError
from axbench_kedro.lm.chat import format_detect
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.methods.base import MethodArtifact
from axbench_kedro.methods.registry import get_method
from axbench_kedro.methods.scoring import EncoderBank, score_rows
from axbench_kedro.metrics.detection import (
    HARD_NEGATIVE,
    NEGATIVE,
    POSITIVE,
    concept_metrics,
    imbalanced_metrics,
    mean_roc_curve,
    minmax_normalise,
)

__all__ = [
    "SCORE_COLUMNS",
    "sample_imbalance_negatives",
    "detection_artifacts",
    "score_model_methods",
    "score_prompt_detection",
    "merge_latent_scores",
    "compute_latent_metrics",
    "compute_max_activations",
    "plot_latent_roc",
]

log = logging.getLogger(__name__)

SCORE_COLUMNS = ["concept_id", "row_id", "category", "method", "max_act", "max_act_idx", "max_token"]
_LATENT_COLUMNS = ("input", "output", "output_concept", "concept_genre", "category", "concept_id")
_IMB_COLUMNS = [
    "neg_row_id",
    "source_row_id",
    "input",
    "output",
    "output_concept",
    "concept_genre",
    "category",
]
_MAGNITUDE_FALLBACK = 50.0


def _check_latent(frame: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in _LATENT_COLUMNS if c not in frame.columns]
    if missing:
        raise AxbenchDataError(f"latent_eval_data: missing column(s) {missing}")
    bad = sorted(set(frame["category"]) - {POSITIVE, NEGATIVE, HARD_NEGATIVE})
    if bad:
        raise AxbenchDataError(f"latent_eval_data: unknown category value(s) {bad} in column 'category'")
    return frame.reset_index(drop=True)


def _frame_hash(frame: pd.DataFrame, columns: list[str]) -> str:
    cols = [c for c in columns if c in frame.columns]
    return content_key(pd.util.hash_pandas_object(frame[cols], index=True).tolist())


def sample_imbalance_negatives(
    latent_eval_data: pd.DataFrame, run: RunSettings, latent_eval: LatentEvalParams
) -> pd.DataFrame:
    """The shared negative pool of the 1:100 set (protocol §1.8, §4.5, [D 21]).

    ``n_pos × imbalance_factor`` rows of category ``negative`` from all concepts (``n_pos`` = the largest number of
    positives of a concept), drawn with the run seed; with fewer available, all of them (the achieved ratio is
    reported in ``latent_metrics``).
    """
    data = _check_latent(latent_eval_data)
    negatives = np.flatnonzero((data["category"] == NEGATIVE).to_numpy())
    per_concept = data[data["category"] == POSITIVE].groupby("concept_id").size()
    n_pos = int(per_concept.max()) if len(per_concept) else 0
    wanted = n_pos * latent_eval.imbalance_factor
    rng = np.random.default_rng(run.seed)
    if len(negatives) > wanted:
        chosen = np.sort(rng.choice(negatives, size=wanted, replace=False))
    else:
        chosen = negatives
        if len(negatives) < wanted:
            log.warning(
                "latent_eval: only %d negatives for the 1:%d set (wanted %d = %d positives × %d); using all",
                len(negatives), latent_eval.imbalance_factor, wanted, n_pos, latent_eval.imbalance_factor,
            )  # fmt: skip
    rows = data.iloc[chosen]
    out = pd.DataFrame(
        {
            "neg_row_id": np.arange(len(rows), dtype=np.int64),
            "source_row_id": chosen.astype(np.int64),
            "input": rows["input"].to_numpy(),
            "output": rows["output"].to_numpy(),
            "output_concept": "EEEEE",
            "concept_genre": rows["concept_genre"].to_numpy(),
            "category": NEGATIVE,
        }
    )
    return out[_IMB_COLUMNS]


def detection_artifacts(
    method_artifacts: Mapping[str, MethodArtifact], exclude: list[str], log_skipped: bool = False
) -> dict[str, MethodArtifact]:
    """The trained, detecting, not-excluded artefacts (skipped ones are logged when ``log_skipped``)."""
    out = {}
    for name, art in method_artifacts.items():
        method = get_method(name)
        if not method.detects or name in exclude:
            continue
        if not art.ok:
            if log_skipped:
                log.warning("latent_eval: %s not scored (training skipped it: %s)", name, art.skip_reason)
            continue
        out[name] = art
    return out


def _empty_scores() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(SCORE_COLUMNS, [
        "int64", "int64", "object", "object", "float64", "int64", "object"], strict=True)})  # fmt: skip


def _row_scores_frame(data: pd.DataFrame, method: str, scores: np.ndarray) -> pd.DataFrame:
    """``latent_scores`` rows of a method scored per text (no token positions): one score per row of ``data``."""
    return pd.DataFrame(
        {
            "concept_id": data["concept_id"].astype("int64").to_numpy(),
            "row_id": np.arange(len(data), dtype=np.int64),
            "category": data["category"].to_numpy(),
            "method": method,
            "max_act": np.round(scores, 3),
            "max_act_idx": -1,
            "max_token": "",
        }
    )


def _pool_frame(full: np.ndarray, pool: pd.DataFrame, concepts: list[int], method: str) -> pd.DataFrame:
    """Long ``neg_row_id, concept_id, method, max_act`` rows of a ``[n_pool, n_concepts]`` score matrix."""
    n_pool, n_concepts = full.shape
    return pd.DataFrame(
        {
            "neg_row_id": np.repeat(pool["neg_row_id"].to_numpy(dtype=np.int64), n_concepts),
            "concept_id": np.tile(np.asarray(concepts, dtype=np.int64), n_pool),
            "method": method,
            "max_act": np.round(full.reshape(-1), 3),
        }
    )


def score_model_methods(
    latent_eval_data: pd.DataFrame,
    imbalance_negatives: pd.DataFrame,
    method_artifacts: Mapping[str, MethodArtifact],
    target_model: TargetModel,
    latent_cache: Any,
    run: RunSettings,
    latent_eval: LatentEvalParams,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores of every ``activation`` and ``text`` method on every latent-eval row and on the negative pool.

    Returns:
        ``(scores, imbalance_scores)``: §1.7 long rows (``max_act`` rounded to 3 decimals) and
        ``neg_row_id, concept_id, method, max_act``.
    """
    data = _check_latent(latent_eval_data)
    arts = detection_artifacts(method_artifacts, latent_eval.exclude_methods, log_skipped=True)
    arts = {n: a for n, a in arts.items() if get_method(n).detection_kind in ("activation", "text")}
    for name, art in arts.items():
        if art.meta.get("layer") is not None and int(art.meta["layer"]) != run.layer:
            raise AxbenchConfigError(
                f"run.layer: {run.layer} differs from the layer {art.meta['layer']} method_artifacts[{name}] was "
                "trained at"
            )
    key = content_key(
        {
            "what": "latent_scores/v1",
            "model": [target_model.name, str(target_model.dtype), target_model.device.type],
            "layer": run.layer,
            "data": _frame_hash(data, list(_LATENT_COLUMNS)),
            "pool": imbalance_negatives["source_row_id"].tolist(),
            "methods": {n: a.fingerprint() for n, a in arts.items()},
            "params": latent_eval.model_dump(mode="json", exclude={"prompt_detection", "exclude_methods"}),
        }
    )
    store = latent_cache if latent_eval.use_cache else None
    if store is not None and (hit := store.get_frames(key)) is not None:
        log.info("latent_eval: scores of %s reused from the cache", list(arts))
        return hit["scores"], hit["imbalance"]

    tok = target_model.tokenizer
    texts = [format_detect(tok, i, o) for i, o in zip(data["input"], data["output"], strict=True)]
    concept_ids = data["concept_id"].astype(int).tolist()
    pool_rows = imbalance_negatives["source_row_id"].astype(int).tolist()
    all_concepts = sorted(set(concept_ids))
    frames, imb_frames = [], []

    rank1 = {n: a for n, a in arts.items() if get_method(n).detection_kind == "activation"}
    if rank1:
        bank = EncoderBank.from_artifacts(rank1)
        res = score_rows(
            target_model, texts, concept_ids, bank, run.layer, latent_eval.batch_size,
            full_rows=pool_rows, keep_token_acts=latent_eval.keep_token_acts, max_length=latent_eval.max_length,
        )  # fmt: skip
        for j, name in enumerate(bank.methods):
            frame = pd.DataFrame(
                {
                    "concept_id": concept_ids,
                    "row_id": np.arange(len(data), dtype=np.int64),
                    "category": data["category"].to_numpy(),
                    "method": name,
                    "max_act": np.round(res.max_act[:, j], 3),
                    "max_act_idx": res.max_idx[:, j],
                    "max_token": [t[j] for t in res.max_token],
                }
            )
            if res.acts is not None and res.tokens is not None:
                frame["acts"] = [np.round(a[:, j], 3).tolist() for a in res.acts]
                frame["tokens"] = res.tokens
            frames.append(frame)
            if pool_rows:
                cols = bank.columns_for(all_concepts).numpy()[:, j]
                full = np.stack([res.full[src][cols] for src in pool_rows])
                imb_frames.append(_pool_frame(full, imbalance_negatives, all_concepts, name))

    for name, art in arts.items():
        method = get_method(name)
        if method.detection_kind != "text":
            continue
        own = method.score_texts(art, texts, art.rows_of(concept_ids))
        frames.append(_row_scores_frame(data, name, own))
        if pool_rows:
            full = method.score_texts(art, [texts[r] for r in pool_rows])[
                :, art.rows_of(all_concepts).numpy()
            ]
            imb_frames.append(_pool_frame(full, imbalance_negatives, all_concepts, name))

    scores = pd.concat(frames, ignore_index=True) if frames else _empty_scores()
    imbalance = (
        pd.concat(imb_frames, ignore_index=True)[["neg_row_id", "concept_id", "method", "max_act"]]
        if imb_frames
        else pd.DataFrame({"neg_row_id": [], "concept_id": [], "method": [], "max_act": []})
    )
    imbalance = imbalance.astype({"neg_row_id": "int64", "concept_id": "int64", "max_act": "float64"})
    scores = scores.astype(
        {"concept_id": "int64", "row_id": "int64", "max_act": "float64", "max_act_idx": "int64"}
    )
    if store is not None:
        store.put_frames(key, {"scores": scores, "imbalance": imbalance})
    return scores, imbalance


def score_prompt_detection(
    latent_eval_data: pd.DataFrame,
    concepts_meta: pd.DataFrame,
    method_artifacts: Mapping[str, MethodArtifact],
    generator_llm: Any,
    latent_eval: LatentEvalParams,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """PromptDetection: the LLM rates each output for the concept (rubric J1); the parsed rating is ``max_act``.

    Returns:
        ``(scores, usage)``: §1.7 rows (``max_act`` in [0, 2] or −1 when unparsable, ``max_act_idx`` −1) and the
        LLM usage of this stage (``latent_eval_llm_usage``).
    """
    from axbench_kedro.llm.templates import load_template
    from axbench_kedro.llm.types import LLMRequest
    from axbench_kedro.methods.prompt import parse_detection_rating

    data = _check_latent(latent_eval_data)
    arts = detection_artifacts(method_artifacts, latent_eval.exclude_methods)
    names = [n for n in arts if get_method(n).detection_kind == "llm"]
    client = (
        generator_llm()
        if callable(generator_llm) and not hasattr(generator_llm, "complete_many")
        else generator_llm
    )
    if not names:
        return _empty_scores(), pd.DataFrame(
            [{"stage": "latent_eval", "model": getattr(client, "model", ""), "calls": 0, "cache_hits": 0,
              "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}]
        )  # fmt: skip
    settings = latent_eval.prompt_detection
    template = load_template(settings.template)
    concept_text = dict(
        zip(concepts_meta["concept_id"].astype(int), concepts_meta["concept"].astype(str), strict=True)
    )
    missing = sorted(set(data["concept_id"].astype(int)) - concept_text.keys())
    if missing:
        raise AxbenchDataError(f"concepts_meta: no concept text for concept_id(s) {missing[:10]}")
    requests = [
        LLMRequest.user(
            template.render(concept=concept_text[int(c)], text=str(o)),
            model=client.model,
            temperature=settings.temperature,
            max_tokens=settings.max_new_tokens,
        )
        for c, o in zip(data["concept_id"], data["output"], strict=True)
    ]
    since = client.totals()
    replies = client.complete_many(requests, desc="PromptDetection")
    ratings = np.array(
        [parse_detection_rating(settings.reply_prefix + r.text) for r in replies], dtype=np.float64
    )
    n_failed = int((ratings < 0).sum())
    if n_failed:
        log.warning(
            "latent_eval: PromptDetection could not parse %d of %d ratings (scored -1)",
            n_failed,
            len(ratings),
        )
    frames = [_row_scores_frame(data, name, ratings) for name in names]
    usage = client.usage_frame("latent_eval", since=since)
    usage["template"] = template.name
    usage["template_sha256"] = template.sha256
    usage["parse_failures"] = n_failed
    return pd.concat(frames, ignore_index=True), usage


def merge_latent_scores(model_scores: pd.DataFrame, prompt_scores: pd.DataFrame) -> pd.DataFrame:
    """``latent_scores``: one table, rows ordered by method then row id."""
    parts = [f for f in (model_scores, prompt_scores) if len(f)]
    if not parts:
        return _empty_scores()
    out = pd.concat(parts, ignore_index=True)
    order = {m: i for i, m in enumerate(dict.fromkeys(out["method"]))}
    out = out.sort_values(["method", "row_id"], key=lambda s: s.map(order) if s.name == "method" else s)
    return out.reset_index(drop=True)


def compute_latent_metrics(
    latent_scores: pd.DataFrame, imbalance_scores: pd.DataFrame, imbalance_negatives: pd.DataFrame
) -> pd.DataFrame:
    """``latent_metrics`` (§1.15): one row per concept and method, plus the 1:100 metrics and achieved ratio."""
    rows = []
    imb_groups = (
        {k: g for k, g in imbalance_scores.groupby(["method", "concept_id"])} if len(imbalance_scores) else {}
    )
    n_pool = len(imbalance_negatives)
    for (method, cid), group in latent_scores.groupby(["method", "concept_id"], sort=False):
        rec: dict[str, Any] = {"concept_id": int(cid), "method": method}
        rec.update(concept_metrics(group["max_act"].to_numpy(), group["category"].tolist()))
        pos = group.loc[group["category"] == POSITIVE, "max_act"].to_numpy()
        neg = imb_groups.get((method, cid))
        if neg is not None:
            rec.update(imbalanced_metrics(pos, neg["max_act"].to_numpy()))
            rec["imbalance_ratio"] = n_pool / max(len(pos), 1)
        else:
            rec.update({"f1_imb": None, "precision_imb": None, "recall_imb": None, "auroc_imb": None,
                        "imbalance_ratio": None})  # fmt: skip
        rows.append(rec)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    float_cols = [c for c in out.columns if c not in ("concept_id", "method") and not c.startswith("n_")]
    out[float_cols] = out[float_cols].astype("float64")
    return out.sort_values(["method", "concept_id"], key=_method_order(latent_scores)).reset_index(drop=True)


def _method_order(scores: pd.DataFrame) -> Any:
    order = {m: i for i, m in enumerate(dict.fromkeys(scores["method"]))}
    return lambda s: s.map(order) if s.name == "method" else s


def compute_max_activations(
    latent_scores: pd.DataFrame, method_artifacts: Mapping[str, MethodArtifact]
) -> pd.DataFrame:
    """``max_activations`` (§1.9): per concept and steering method the magnitude base m.

    ``latent_eval`` and ``sae_table`` methods: max of ``max_act`` over all of the concept's rows, ≤ 0 → 50 (the
    SAE's Neuronpedia table, when the steering pipeline has one, takes precedence there: [D 13]). ``unit``
    methods: m = 1. Factor-free methods have no magnitude.
    """
    rows = []
    for name, art in method_artifacts.items():
        method = get_method(name)
        if not method.steers or method.factor_free or not art.ok:
            continue
        if method.magnitude_source == "unit":
            rows += [{"concept_id": c, "method": name, "max_act": float("nan"), "magnitude_base": 1.0,
                      "source": "unit"} for c in art.concept_ids]  # fmt: skip
            continue
        per = latent_scores[latent_scores["method"] == name].groupby("concept_id")["max_act"].max()
        for cid, value in per.items():
            base = float(value) if value > 0 else _MAGNITUDE_FALLBACK
            rows.append({"concept_id": int(cid), "method": name, "max_act": float(value), "magnitude_base": base,
                         "source": "latent_eval"})  # fmt: skip
    out = pd.DataFrame(rows, columns=["concept_id", "method", "max_act", "magnitude_base", "source"])
    return out.astype({"concept_id": "int64", "max_act": "float64", "magnitude_base": "float64"})


def plot_latent_roc(latent_scores: pd.DataFrame, latent_eval: LatentEvalParams) -> Figure:
    """Mean ROC curve per method (positives vs negatives, interpolated on a common FPR grid)."""
    grid = np.linspace(0.0, 1.0, latent_eval.roc_grid_points)
    fig = Figure(figsize=(5.5, 5.0), dpi=120)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
    for method, group in latent_scores.groupby("method", sort=False):
        curves = []
        for _, g in group.groupby("concept_id"):
            keep = g["category"].isin([POSITIVE, NEGATIVE]).to_numpy()
            norm = minmax_normalise(g["max_act"].to_numpy())
            curves.append(((g["category"] == POSITIVE).to_numpy()[keep].astype(int), norm[keep]))
        fpr, tpr = mean_roc_curve(curves, grid)
        if np.isnan(tpr).all():
            continue
        area = float(np.trapezoid(tpr, fpr))
        ax.plot(fpr, tpr, linewidth=1.5, label=f"{method} (area {area:.3f})")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("Concept detection: mean ROC over concepts")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    fig.tight_layout()
    return fig
