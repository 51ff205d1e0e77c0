"""Price table and cost ledger."""

from __future__ import annotations

import pytest

from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.llm.ledger import CostLedger, Price, load_price_table
from axbench_kedro.llm.paths import project_root


def test_project_price_table():
    table = load_price_table(project_root() / "conf" / "base" / "llm_prices.yml")
    assert table.lookup("gpt-4o-mini") == Price(0.15, 0.60)
    assert table.lookup("gpt-4o-mini-2024-07-18") == Price(0.15, 0.60)
    assert table.lookup("gpt-4o-2099-01-01") == table.lookup("gpt-4o")  # dated id → undated alias
    assert table.lookup("llama-3-8b") is None


def test_price_table_errors(tmp_path):
    with pytest.raises(AxbenchConfigError, match="not found"):
        load_price_table(tmp_path / "none.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("models:\n  m: {input: 1.0}\n", encoding="utf-8")
    with pytest.raises(AxbenchConfigError, match=r"models\.m needs numeric `input` and `output`"):
        load_price_table(bad)
    bad.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(AxbenchConfigError, match="models:"):
        load_price_table(bad)


def test_input_and_output_priced_separately():
    ledger = CostLedger("gpt-4o-mini", Price(0.15, 0.60))
    ledger.record_call(2_000_000, 0)
    ledger.record_call(0, 1_000_000)
    ledger.record_hits(5)
    t = ledger.totals()
    assert t.cost_usd == pytest.approx(0.30 + 0.60)
    assert (t.calls, t.cache_hits, t.input_tokens, t.output_tokens) == (2, 5, 2_000_000, 1_000_000)
    frame = ledger.usage_frame("s")
    assert frame["calls"].dtype == "int64" and frame["cost_usd"].iloc[0] == pytest.approx(0.9)
