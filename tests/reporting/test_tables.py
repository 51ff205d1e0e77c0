"""Detection, steering-component, win-rate, judge-health and LLM-ledger tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.reporting import tables as tables_mod
from axbench_kedro.reporting.leaderboard import AVG
from axbench_kedro.reporting.tables import (
    DETECTION_METRICS,
    IMB_STATUS,
    USAGE_COLUMNS,
    detection_markdown,
    detection_table,
    judge_health,
    llm_usage,
    steering_components,
    steering_markdown,
    win_rates,
)

from . import synthetic


def _metrics() -> pd.DataFrame:
    rows = []
    for setting, shift in (("s1", 0.0), ("s2", 0.1)):
        for method, auc in (("DiffMean", [0.9, 0.8]), ("SAE", [0.6, 0.7])):
            for c, value in enumerate(auc):
                rows.append(
                    {
                        "setting": setting,
                        "concept_id": c,
                        "method": method,
                        "roc_auc": value + shift,
                        "f1": 0.5,
                        "precision": 0.4,
                        "recall": 1.0,
                        "overall_accuracy": 0.6,
                        "hardneg_macro_acc": np.nan if c == 0 else 0.25,  # absent without hard negatives
                        "macro_acc": 0.5,
                        "f1_imb": 0.2,
                        "precision_imb": 0.1,
                        "recall_imb": 1.0,
                        "auroc_imb": 0.7,
                    }
                )
    return pd.DataFrame(rows)


def test_detection_table_means_avg_and_order() -> None:
    table = detection_table(_metrics())
    assert list(table.columns) == ["method", "role", "setting", "n_concepts", *DETECTION_METRICS, IMB_STATUS]
    assert set(table["imb_status"]) == {"scored"}
    assert set(table["role"]) == {"method"}
    assert table["method"].drop_duplicates().tolist() == ["DiffMean", "SAE"]  # by Avg ROC AUC
    cell = table.set_index(["method", "setting"])
    assert cell.loc[("DiffMean", "s1"), "roc_auc"] == pytest.approx(0.85)
    assert cell.loc[("DiffMean", "s2"), "roc_auc"] == pytest.approx(0.95)
    assert cell.loc[("DiffMean", AVG), "roc_auc"] == pytest.approx(0.9)
    assert cell.loc[("SAE", "s1"), "hardneg_macro_acc"] == pytest.approx(0.25)  # NaN skipped
    assert cell.loc[("SAE", "s1"), "n_concepts"] == 2
    assert cell.loc[("SAE", AVG), "n_concepts"] == 4
    assert cell.loc[("SAE", AVG), "f1_imb"] == pytest.approx(0.2)


def test_detection_table_tolerates_missing_optional_metric_and_rejects_missing_auc() -> None:
    table = detection_table(_metrics().drop(columns=["auroc_imb"]))
    assert table["auroc_imb"].isna().all()
    with pytest.raises(AxbenchDataError, match="latent_metrics: missing column 'roc_auc'"):
        detection_table(_metrics().drop(columns=["roc_auc"]))


def test_detection_markdown_has_grid_and_both_sets() -> None:
    md = detection_markdown(detection_table(_metrics()))
    assert "| method | s1 | s2 | Avg |" in md
    assert "| DiffMean | 0.850 | 0.950 | 0.900 |" in md
    assert "Balanced set" in md and "Imbalanced set (1:100)" in md


def _selection() -> pd.DataFrame:
    up = synthetic.upstream("s1")
    other = synthetic.upstream("s2", seed=4, offset=0.1)
    return pd.concat(
        [up["steering_selection"].assign(setting="s1"), other["steering_selection"].assign(setting="s2")],
        ignore_index=True,
    )


def test_steering_components_match_selection_means() -> None:
    selection = _selection()
    table = steering_components(selection, "AlpacaEval")
    cell = table.set_index(["method", "setting"])
    part = selection[(selection["setting"] == "s2") & (selection["method"] == "SAE")]
    assert cell.loc[("SAE", "s2"), "score"] == pytest.approx(part["test_hm"].mean())
    assert cell.loc[("SAE", "s2"), "fluency"] == pytest.approx(part["test_fluency"].mean())
    assert cell.loc[("SAE", AVG), "score"] == pytest.approx(
        (cell.loc[("SAE", "s1"), "score"] + cell.loc[("SAE", "s2"), "score"]) / 2
    )
    assert table["method"].iloc[0] == table.groupby("method", sort=False)["score"].last().idxmax()


def test_win_rates_count_per_concept() -> None:
    selection = pd.DataFrame(
        {
            "setting": "s",
            "concept_id": [0, 1, 2, 0, 1, 2, 0, 1],
            "method": ["Prompt"] * 3 + ["DiffMean"] * 3 + ["SAE"] * 2,
            "test_hm": [1.0, 0.5, 0.2, 1.2, 0.5, 0.1, 0.0, 0.0],
            "test_concept": 1.0,
            "test_instruction": 1.0,
            "test_fluency": 1.0,
        }
    )
    rates = win_rates(selection, ["Prompt", "Absent"]).set_index("method")
    assert set(rates.index) == {"DiffMean", "SAE"}
    assert rates.loc["DiffMean", ["wins", "ties", "losses", "n"]].tolist() == [1, 1, 1, 3]
    assert rates.loc["DiffMean", "win_rate"] == pytest.approx(0.5)
    assert rates.loc["SAE", "n"] == 2 and rates.loc["SAE", "win_rate"] == 0.0


def test_judge_health_counts_parse_failures() -> None:
    judgements = synthetic.judgements(2, seed=1)
    health = judge_health(judgements)
    row = health.set_index(["method", "criterion"]).loc[("SAE", "concept")]
    part = judgements[(judgements["method"] == "SAE") & (judgements["criterion"] == "concept")]
    assert row["n"] == len(part)
    assert row["parse_failures"] == int((~part["parse_ok"]).sum())
    assert row["failure_rate"] == pytest.approx((~part["parse_ok"]).mean())
    assert health["parse_failures"].sum() == int((~judgements["parse_ok"]).sum())


def test_llm_usage_concatenates_and_totals() -> None:
    usage = llm_usage(synthetic.llm_usage("datagen", 10), None, synthetic.llm_usage("steering_eval", 20))
    assert list(usage.columns) == USAGE_COLUMNS
    total = usage.iloc[-1]
    assert total["stage"] == "total"
    assert total["calls"] == 30 and total["cache_hits"] == 15
    assert total["cost_usd"] == pytest.approx(0.003)
    assert usage["calls"].dtype.kind == "i"
    assert llm_usage(None).empty
    with pytest.raises(AxbenchDataError, match="llm_usage: missing column 'cost_usd'"):
        llm_usage(synthetic.llm_usage("x").drop(columns="cost_usd"))


def test_steering_markdown_sections() -> None:
    selection = _selection()
    md = steering_markdown(
        steering_components(selection),
        win_rates(selection, ["Prompt"]),
        judge_health(synthetic.judgements()),
        llm_usage(synthetic.llm_usage("datagen")),
    )
    for title in ("selected factor", "Win rates", "Judge health", "LLM calls and cost"):
        assert title in md
    assert "| total |  | 10 | 5 |" in md


def test_judge_health_counts_replicas_once() -> None:
    judgements = synthetic.judgements(1, seed=2).assign(replica=False, parse_ok=True)
    copies = judgements[judgements["method"] == "Prompt"].assign(replica=True, parse_ok=False, factor=2.0)
    health = judge_health(pd.concat([judgements, copies], ignore_index=True)).set_index(
        ["method", "criterion"]
    )
    assert health.loc[("Prompt", "concept"), "n"] == 2
    assert health["parse_failures"].sum() == 0


def _with_prompt(status: str | None, settings: tuple[str, ...] = ("s1", "s2")) -> pd.DataFrame:
    """``_metrics()`` plus PromptDetection rows without 1:100 values (``imb_status`` = ``status``; ``None`` drops the
    column, as in results written before it existed)."""
    base = _metrics().assign(imb_status="scored")
    prompt = base[(base["method"] == "SAE") & base["setting"].isin(settings)].assign(
        method="Prompt", imb_status=status, f1_imb=np.nan, precision_imb=np.nan, recall_imb=np.nan,
        auroc_imb=np.nan,
    )  # fmt: skip
    frame = pd.concat([base, prompt], ignore_index=True)
    return frame.drop(columns=["imb_status"]) if status is None else frame


@pytest.mark.parametrize("status", ["opt-in", None])
def test_prompt_detection_imbalance_reads_opt_in_never_blank(status) -> None:
    table = detection_table(_with_prompt(status))
    prompt = table[table["method"] == "Prompt"]
    assert set(prompt["imb_status"]) == {"opt-in"} and prompt["f1_imb"].isna().all()  # CSV: null + reason
    assert set(table.loc[table["method"] != "Prompt", "imb_status"]) == {"scored"}
    text = detection_markdown(table)
    imbalanced = text.split("### Imbalanced set (1:100)", 1)[1]
    prompt_lines = [line for line in imbalanced.splitlines() if line.startswith("| Prompt |")]
    assert len(prompt_lines) == 3  # s1, s2, Avg
    for line in prompt_lines:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[3:] == ["n/a (opt-in)"] * 4
    assert "prompt_detection_imbalance" in imbalanced and "D32" in imbalanced
    sae_line = next(line for line in imbalanced.splitlines() if line.startswith("| SAE | s1 |"))
    assert "n/a" not in sae_line


def test_prompt_detection_imbalance_opted_in_somewhere_averages_the_scored_settings() -> None:
    metrics = _with_prompt("opt-in")
    scored = metrics["method"].eq("Prompt") & metrics["setting"].eq("s2")
    metrics.loc[scored, ["f1_imb", "imb_status"]] = [0.6, "scored"]
    table = detection_table(metrics).set_index(["method", "setting"])
    assert table.loc[("Prompt", "s1"), "imb_status"] == "opt-in"
    assert table.loc[("Prompt", AVG), "imb_status"] == "scored"
    assert table.loc[("Prompt", AVG), "f1_imb"] == pytest.approx(0.6)
    text = detection_markdown(table.reset_index())
    assert "| Prompt | s1 | 2 | n/a (opt-in) | n/a (opt-in) |" in text
    assert "| Prompt | s2 | 2 | – | 0.600 | – | – |" in text  # scored there (its other metrics: none given)
    assert "|---|---|---:|---:|---:|---:|---:|" in text  # numbers stay right-aligned beside the labels


def test_sae_filtered_detection_rows_are_not_reported_twice() -> None:
    from axbench_kedro.pipelines.reporting.nodes import make_detection_tables

    base = synthetic.latent_metrics().assign(setting="s1")
    sae = base[base["method"] == base["method"].iloc[0]].assign(method="SAE")
    frame = pd.concat([base, sae, sae.assign(method="SAE-filtered"), sae.assign(method="SomePlugin")])
    kept = set(tables_mod.reported_detection_rows(frame)["method"])
    assert "SAE-filtered" not in kept and {"SAE", "SomePlugin"} <= kept  # unknown names are kept
    table, markdown = make_detection_tables(frame)
    assert "SAE-filtered" not in set(table["method"]) and "SAE (filtered)" not in markdown
    assert "SAE" in set(table["method"])
