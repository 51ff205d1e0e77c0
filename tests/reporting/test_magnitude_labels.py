"""Which magnitudes each SAE row steered with, carried from ``max_activations`` through ``steering_summary`` to the
leaderboard (long, wide, Markdown) and the run card: the Neuronpedia table, or the AxBench max-act fallback, labelled
"SAE (AxBench max-act)" [D 13]."""

from __future__ import annotations

import numpy as np
import pandas as pd

from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.reporting import ReportingParams
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.datasets.results_across_settings import SOURCES_KEY
from axbench_kedro.pipelines.reporting.nodes import (
    combine_settings,
    format_leaderboard,
    make_leaderboard,
    make_run_card,
)
from axbench_kedro.pipelines.steering_eval.nodes import summarize_steering
from axbench_kedro.reporting.leaderboard import (
    AVG,
    FALLBACK_NOTE,
    build_leaderboard,
    concept_scores,
    judge_labels,
)
from axbench_kedro.reporting.magnitudes import magnitude_rows, magnitudes_section
from axbench_kedro.reporting.run_card import collect_provenance
from axbench_kedro.steering.summary import magnitude_label

from . import synthetic

CURRENT, OTHER = "gemma2_9b_l20", "gemma2_2b_l10"
TABLE_REF = f"data/01_raw/{OTHER}/sae_max_act.csv (sha256 0123456789ab, 16384 rows)"
MISSING_REF = f"no sae_max_act table (catalog entry `sae_max_act`: data/01_raw/{CURRENT}/sae_max_act.csv does not exist)"
PARAMS = ReportingParams(n_resamples=50)


def _max_activations(sae_source: str, sae_ref: str, n_concepts: int = 4) -> pd.DataFrame:
    """§1.9 rows of the synthetic steering methods: DiffMean / ReFT-r1 by the latent-eval rule, SAE as given."""
    rows = []
    for method, source, ref in (
        ("DiffMean", "latent_eval", ""),
        ("ReFT-r1", "latent_eval", ""),
        ("SAE", sae_source, sae_ref),
    ):
        for c in range(n_concepts):
            rows.append({"concept_id": c, "method": method, "max_act": 3.0 + c, "magnitude_base": 3.0 + c,
                         "source": source, "source_ref": ref})  # fmt: skip
    return pd.DataFrame(rows)


def _setting(setting: str, seed: int, sae_source: str, sae_ref: str) -> dict[str, pd.DataFrame]:
    """A setting's upstream frames with the ``steering_summary`` the steering_eval node writes."""
    up = synthetic.upstream(setting, seed=seed)
    up["steering_summary"] = summarize_steering(
        up["steering_selection"],
        up["judgements"],
        _max_activations(sae_source, sae_ref),
        SteeringEvalParams(n_resamples=50),
        RunSettings(setting=setting, layer=20, seed=42),
    )
    return up


def _others(up: dict[str, pd.DataFrame], setting: str) -> dict[str, pd.DataFrame]:
    names = ("steering_selection", "steering_summary", "latent_metrics")
    out = {name: up[name].assign(setting=setting) for name in names}
    out[SOURCES_KEY] = pd.DataFrame(
        [{"setting": setting, "dataset": name, "version": "v1", "filepath": "f"} for name in names]
    )
    return out


def _report(current: dict[str, pd.DataFrame], others: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, ...]:
    run = RunSettings(setting=CURRENT, layer=20, seed=42)
    selection, summary, _, sources = combine_settings(
        current["steering_selection"],
        current["steering_summary"],
        current["latent_metrics"],
        others,
        PARAMS,
        run,
    )
    long = make_leaderboard(selection, summary, PARAMS, run)
    wide, markdown = format_leaderboard(long, PARAMS)
    card = make_run_card(
        run,
        PARAMS,
        collect_provenance(["pandas"]),
        current["concepts_meta"],
        current["judgements"],
        pd.DataFrame(),
        sources,
        long,
    )
    return long, wide, markdown, card


def test_label_names_only_a_table_method_that_fell_back() -> None:
    assert magnitude_label("SAE", "latent_eval") == "SAE (AxBench max-act)"
    assert magnitude_label("SAE-A", "latent_eval") == "SAE-A (AxBench max-act)"
    assert magnitude_label("SAE", "sae_table") == "SAE"
    assert magnitude_label("DiffMean", "latent_eval") == "DiffMean"  # its own rule: nothing to label
    assert magnitude_label("Prompt", None) == "Prompt"
    assert magnitude_label("NotInstalledHere", "latent_eval") == "NotInstalledHere"


def test_steering_summary_carries_source_reference_and_label() -> None:
    summary = _setting(CURRENT, 0, "latent_eval", MISSING_REF)["steering_summary"].set_index("method")
    assert summary.loc["SAE", ["label", "magnitude_source", "magnitude_ref"]].tolist() == [
        "SAE (AxBench max-act)",
        "latent_eval",
        MISSING_REF,
    ]
    assert summary.loc["DiffMean", ["label", "magnitude_source", "magnitude_ref"]].tolist() == [
        "DiffMean",
        "latent_eval",
        "",
    ]
    assert summary.loc["Prompt", "label"] == "Prompt" and pd.isna(summary.loc["Prompt", "magnitude_source"])
    table = _setting(OTHER, 1, "sae_table", TABLE_REF)["steering_summary"].set_index("method")
    assert table.loc["SAE", ["label", "magnitude_source", "magnitude_ref"]].tolist() == [
        "SAE",
        "sae_table",
        TABLE_REF,
    ]


def test_fallback_everywhere_renames_the_row_and_the_run_card_says_why() -> None:
    current = _setting(CURRENT, 0, "latent_eval", MISSING_REF)
    long, wide, markdown, card = _report(current, {})
    sae = long[long["method"] == "SAE"].set_index("setting")
    assert sae.loc[CURRENT, ["label", "magnitude_source", "magnitude_ref"]].tolist() == [
        "SAE (AxBench max-act)",
        "latent_eval",
        MISSING_REF,
    ]
    assert (
        sae.loc[AVG, "label"] == "SAE (AxBench max-act)" and sae.loc[AVG, "magnitude_source"] == "latent_eval"
    )
    row = wide.set_index("method").loc["SAE"]
    assert (row["label"], row["magnitude_source"]) == ("SAE (AxBench max-act)", "latent_eval")
    assert "| SAE (AxBench max-act) |" in markdown and "| SAE |" not in markdown and "‡" not in markdown
    assert "| DiffMean |" in markdown and FALLBACK_NOTE in markdown
    assert "## Steering magnitudes" in card
    assert (
        f"- **SAE (AxBench max-act)** ({CURRENT}): magnitudes: AxBench max-act fallback (latent-eval rule: max over "
        f"the concept's latent-eval rows, ≤ 0 → 50) — {MISSING_REF} [D 13]"
    ) in card
    assert "**DiffMean** (" not in card  # methods with their own rule have no magnitude line


def test_table_in_one_setting_fallback_in_another_marks_the_cell() -> None:
    current = _setting(CURRENT, 0, "latent_eval", MISSING_REF)
    other = _setting(OTHER, 1, "sae_table", TABLE_REF)
    long, wide, markdown, card = _report(current, _others(other, OTHER))
    sae = long[long["method"] == "SAE"].set_index("setting")
    assert sae.loc[OTHER, ["label", "magnitude_source", "magnitude_ref"]].tolist() == [
        "SAE",
        "sae_table",
        TABLE_REF,
    ]
    assert sae.loc[CURRENT, "label"] == "SAE (AxBench max-act)"
    assert (sae.loc[AVG, "label"], sae.loc[AVG, "magnitude_source"]) == ("SAE", "mixed")
    assert wide.set_index("method").loc["SAE", "magnitude_source"] == "mixed"

    def cells(first: str) -> list[str]:
        line = next(row for row in markdown.splitlines() if row.startswith(f"| {first} |"))
        return [c.strip() for c in line.strip().strip("|").split("|")]

    by_setting = dict(zip(cells("method"), cells("SAE"), strict=True))
    assert by_setting[CURRENT].endswith("‡") and "‡" not in by_setting[OTHER]
    assert f"‡ Variant in that setting: SAE (AxBench max-act) in {CURRENT}." in markdown
    assert FALLBACK_NOTE in markdown
    assert f"- **SAE** ({OTHER}): magnitudes: Neuronpedia table {TABLE_REF}" in card
    assert f"- **SAE (AxBench max-act)** ({CURRENT}): magnitudes: AxBench max-act fallback" in card


def test_a_summary_from_before_the_magnitude_columns_keeps_plain_names() -> None:
    up = synthetic.upstream(OTHER)  # synthetic summaries have no label / magnitude columns
    selection = up["steering_selection"].assign(setting=OTHER)
    long = build_leaderboard(concept_scores(selection), judge_labels(up["steering_summary"]), n_resamples=20)
    assert (long["label"] == long["method"]).all() and long["magnitude_source"].isna().all()
    assert np.isfinite(long["overall"]).all()
    assert magnitude_rows(long).empty and magnitudes_section(magnitude_rows(long)) == []
