"""Run card: provenance, judge record, ledger, timings (or n/a) and secret redaction."""

from __future__ import annotations

import pandas as pd
import pytest

from axbench_kedro.reporting.run_card import (
    collect_provenance,
    normalise_timings,
    redact,
    render_run_card,
    safe_url,
)
from axbench_kedro.reporting.tables import llm_usage

from . import synthetic

SECRET = "sk-proj-THISisAplantedTESTkey0123"


def _card(**overrides: object) -> str:
    up = synthetic.upstream("embedded_270m_l12")
    kwargs: dict[str, object] = {
        "setting": "embedded_270m_l12",
        "layer": 9,
        "seed": 42,
        "model": {
            "source": "embedded",
            "name_or_path": "google/gemma-3-270m",
            "dtype": "auto",
            "gguf_file": None,
        },
        "generator": {"backend": "openai", "model": "gpt-4o-mini-2024-07-18", "base_url": None},
        "judge": {"kind": "proxy", "backend": "openai", "model": "gpt-4o-mini-2024-07-18", "base_url": None},
        "provenance": collect_provenance(["kedro", "pandas", "surely-not-installed-pkg"]),
        "concepts_meta": up["concepts_meta"],
        "judgements": up["judgements"],
        "usage": llm_usage(up["datagen_llm_usage"], up["steering_llm_usage"]),
        "timings": normalise_timings({"datagen": 12.34, "steering_eval": 56.7}),
        "sources": pd.DataFrame(
            [
                {
                    "setting": "gemma2_2b_l20",
                    "dataset": "steering_selection",
                    "version": "2025-01-01T00.00.00.000Z",
                    "filepath": "/x",
                }
            ]  # fmt: skip
        ),
        "methods": ["DiffMean", "Prompt"],
        "max_listed_concepts": 2,
    }
    kwargs.update(overrides)
    return render_run_card(**kwargs)  # type: ignore[arg-type]


def test_run_card_records_the_protocol_fields() -> None:
    card = _card()
    assert card.startswith("# Run card: embedded_270m_l12")
    for needle in (
        "| layer | 9 |",
        "| run seed | 42 |",
        "| model name_or_path | google/gemma-3-270m |",
        "| kind (configured) | proxy |",
        "| parse rules | axbench-v1 |",
        "| temperatures | 0.0 |",
        "con" + "0" * 61,  # template hash of the concept criterion
        "4 concepts.",
        "- 0: synthetic concept number 0",
        "- … and 2 more",
        "generation seeds in judgements: 42, 43",
        "| datagen | 12.3 s |",
        "| steering_eval | 56.7 s |",
        "| gemma2_2b_l20 | steering_selection | 2025-01-01T00.00.00.000Z |",
        "| kedro |",
        "| surely-not-installed-pkg | not installed |",
        "git commit:",
        "not comparable",
    ):
        assert needle in card, needle
    assert "gguf_file" not in card
    usage_line = next(line for line in card.splitlines() if line.startswith("| total |"))
    assert "| 30 | 15 | 3000 | 600 | 0.0030 |" in usage_line


def test_missing_timings_and_ledger_show_na() -> None:
    card = _card(timings=normalise_timings(None), usage=None, sources=None)
    section = card.split("## Wall time per pipeline", 1)[1].split("##", 1)[0]
    assert section.strip() == "n/a"
    assert "n/a (no ledger)" in card
    assert "none (this report covers the current setting only)" in card


def test_normalise_timings_accepts_the_usual_shapes() -> None:
    expected = pd.DataFrame({"pipeline": ["a", "b"], "wall_s": [1.0, 2.5]})
    for raw in (
        {"a": 1.0, "b": 2.5},
        {"a": {"wall_s": 1.0}, "b": {"wall_s": 2.5}},
        [{"pipeline": "a", "wall_s": 1.0}, {"pipeline": "b", "wall_s": 2.5}],
        expected,
    ):
        pd.testing.assert_frame_equal(normalise_timings(raw), expected, check_dtype=False)
    assert normalise_timings(None).empty
    assert normalise_timings({}).empty


def test_secrets_never_reach_the_card(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-abcdefgh12345")
    card = _card(
        judge={
            "kind": "llm",
            "model": "m",
            "base_url": f"https://user:{SECRET}@llm.example.com:8443/v1?api_key=x",
        },
        generator={"backend": "openai", "model": "m", "base_url": "http://localhost:8000/v1"},
        concepts_meta=pd.DataFrame({"concept_id": [0], "concept": [f"leak {SECRET} and tok-abcdefgh12345"]}),
    )
    assert SECRET not in card and "tok-abcdefgh12345" not in card
    assert "| base URL | https://llm.example.com:8443/v1 |" in card
    assert "| generator base URL | http://localhost:8000/v1 |" in card
    assert "[redacted]" in card


def test_redact_and_safe_url_units() -> None:
    assert redact("key sk-abcdefghijklmnop end", environ={}) == "key [redacted] end"
    assert redact("value hunter2hunter2", environ={"DB_PASSWORD": "hunter2hunter2"}) == "value [redacted]"
    assert redact("short abc", environ={"X_KEY": "abc"}) == "short abc"  # too short to be a key
    assert redact("plain text", environ={"HOME": "plain text"}) == "plain text"  # not a secret name
    assert safe_url(None) == "n/a" and safe_url("") == "n/a"
    assert safe_url("https://a:b@h.io/v1?k=1#f") == "https://h.io/v1"
    assert safe_url("not a url") == "[redacted]"


def test_provenance_fields() -> None:
    prov = collect_provenance(["kedro"])
    assert set(prov) >= {"python", "platform", "packages", "git_commit", "git_dirty", "generated_at"}
    assert prov["packages"]["kedro"].startswith("1.")
    assert prov["git_commit"]  # a hash or an explicit n/a


def test_controls_are_labelled_in_the_method_list() -> None:
    card = _card(methods=["Random", "DiffMean", "Random"])
    assert "| methods | DiffMean, Random (control) |" in card
    assert "not methods of the AxBench paper" in card
    assert "(control)" not in _card()  # no control, no note


def test_probe_loss_form_is_stated_when_probe_is_reported() -> None:
    """D33: the Probe's loss form comes from its class (``report_note``, read through the registry)."""
    from axbench_kedro.methods import get_method

    card = _card(methods=["DiffMean", "Probe", "Prompt"])
    notes = card.split("## Method notes", 1)[1].split("\n## ", 1)[0]
    assert "- **Probe**: loss = binary_cross_entropy_with_logits (numerically stable)" in notes
    assert "sigmoid then BCELoss" in notes
    assert get_method("Probe").report_note.split(";")[0] in notes
    assert "DiffMean" not in notes  # methods without a note are not listed
    assert "## Method notes" not in _card()  # no Probe, no note


def test_p1_cap_is_labelled_and_cut_replies_are_counted() -> None:
    """D31: no cap by default (stated as upstream's); a cap is labelled and the cut replies are counted by concept."""
    free = _card(prompt_steering_texts=synthetic.prompt_steering_texts(4))
    section = free.split("## Prompt baseline instruction (P1)", 1)[1].split("\n## ", 1)[0]
    assert "| max_tokens | none (no cap, as upstream) |" in section
    assert "| cut at the token cap (finish reason length) | 0 of 4 |" in section
    assert "Capped P1" not in free

    capped = _card(prompt_steering_texts=synthetic.prompt_steering_texts(4, max_tokens=40, cut=(1, 3)))
    section = capped.split("## Prompt baseline instruction (P1)", 1)[1].split("\n## ", 1)[0]
    assert "| max_tokens | 40 |" in section
    assert "| cut at the token cap (finish reason length) | 2 of 4: concept_id 1, 3 |" in section
    assert "**Capped P1 replies**: the steering-instruction call ran with max_tokens = 40" in section

    old = synthetic.prompt_steering_texts(2).drop(columns=["finish_reason", "truncated", "max_tokens"])
    section = _card(prompt_steering_texts=old).split("## Prompt baseline instruction (P1)", 1)[1]
    assert "| max_tokens | n/a (not recorded) |" in section
    assert "n/a (no prompt_steering_texts)" in _card()


def _rater_usage(opted_in: bool) -> pd.DataFrame:
    rater = {
        "model": "google/gemma-2-2b-it", "calls": 82, "cache_hits": 0, "input_tokens": 9000, "output_tokens": 4000,
        "cost_usd": 0.0, "rater_model": "google/gemma-2-2b-it", "rater_backend": "local", "prompt_style": "chat",
        "temperature": 1.0, "top_k": 50.0, "max_new_tokens": 512, "batch_size": 256,
        "template": "detect_concept_rating", "template_sha256": "ab" * 32,
    }  # fmt: skip
    rows = [{"stage": "latent_eval", **rater, "parse_failures": 3, "n_ratings": 82,
             "prompt_detection_imbalance": opted_in}]  # fmt: skip
    if opted_in:
        rows.append({"stage": "latent_eval_imbalance", **rater, "parse_failures": 5, "n_ratings": 7200,
                     "n_cached": 72, "max_generated_tokens": 3649536,
                     "estimate": "estimated time for the remaining 6872 ratings: about 2.5 h"})  # fmt: skip
    return pd.DataFrame(rows)


def test_run_card_names_the_detection_rater_and_the_imbalance_opt_in(tmp_path) -> None:
    path = tmp_path / "usage.csv"
    _rater_usage(False).to_csv(path, index=False)  # as the catalog stores it (CSV round trip)
    card = _card(detection_usage=pd.read_csv(path))
    section = card.split("## Detection rater (PromptDetection)", 1)[1].split("\n## ", 1)[0]
    for needle in (
        "| model | google/gemma-2-2b-it |",
        "| backend | local |",
        "| temperature | 1 |",
        "| top-k | 50 |",
        "| max new tokens | 512 |",
        "| batch size | 256 |",
        "| template | detect_concept_rating |",
        f"| template SHA-256 | {'ab' * 32} |",
        "| unparsable ratings (scored -1) | 3 |",
        "| 1:100 set | not rated (opt-in: `latent_eval.prompt_detection_imbalance` is off; protocol D32) |",
    ):
        assert needle in section, needle
    on = _card(detection_usage=_rater_usage(True)).split("## Detection rater (PromptDetection)", 1)[1]
    assert "| 1:100 set | 7200 ratings (72 cached), up to 3649536 generated tokens |" in on
    assert (
        "| 1:100 estimate (logged before rating) | estimated time for the remaining 6872 ratings: about 2.5 h |"
        in on
    )
    excluded = _card(detection_usage=pd.DataFrame([{"stage": "latent_eval", "model": "", "calls": 0}]))
    assert "n/a (PromptDetection did not rate" in excluded
