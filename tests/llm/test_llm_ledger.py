"""Price table and cost ledger."""

from __future__ import annotations

import pytest
from kedro.io import DataCatalog

from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.llm.ledger import CostLedger, Price, PriceTable
from fixtures.project_catalog import catalog_entry, project_llm_prices


def test_project_price_table_through_the_catalog():
    table = PriceTable.from_config(project_llm_prices())
    assert table.lookup("gpt-4o-mini") == Price(0.15, 0.60)
    assert table.lookup("gpt-4o-mini-2024-07-18") == Price(0.15, 0.60)
    assert table.lookup("gpt-4o-2099-01-01") == table.lookup("gpt-4o")  # dated id → undated alias
    assert table.lookup("llama-3-8b") is None


def test_price_table_errors(tmp_path):
    with pytest.raises(AxbenchConfigError, match=r"models\.m needs numeric `input` and `output`"):
        PriceTable.from_config({"models": {"m": {"input": 1.0}}})
    with pytest.raises(AxbenchConfigError, match="models:"):
        PriceTable.from_config(["a list"])
    with pytest.raises(AxbenchConfigError, match="negative"):
        PriceTable.from_config({"models": {"m": {"input": -1.0, "output": 1.0}}})
    bad = tmp_path / "bad.yml"  # a broken file fails the same way through the catalog entry
    bad.write_text("models:\n  m: {input: 1.0}\n", encoding="utf-8")
    config = {**catalog_entry("llm_prices"), "filepath": str(bad)}
    raw = DataCatalog.from_config({"llm_prices": config}).load("llm_prices")
    with pytest.raises(AxbenchConfigError, match=r"llm_prices: models\.m"):
        PriceTable.from_config(raw)


def test_set_price_reprices_what_was_counted():
    ledger = CostLedger("gpt-4o-mini", None)
    ledger.record_call(1_000_000, 1_000_000)
    assert ledger.totals().cost_usd == 0.0
    ledger.set_price(Price(0.15, 0.60))
    assert ledger.totals().cost_usd == pytest.approx(0.75)
    ledger.record_call(1_000_000, 0)
    assert ledger.totals().cost_usd == pytest.approx(0.90)
    before = ledger.totals()
    ledger.set_price(Price(0.15, 0.60))  # the same price again: nothing changes
    assert ledger.totals() == before


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
