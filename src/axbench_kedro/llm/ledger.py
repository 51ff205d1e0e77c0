"""Cost ledger: calls, cache hits, tokens and USD cost, input and output tokens priced separately.

Prices are USD per one million tokens, from the ``llm_prices`` catalog dataset (``conf/base/llm_prices.yml``)
that nodes using an LLM client take as an input and hand to the client (``LLMClient.use_prices``)::

    models:
      gpt-4o-mini: {input: 0.15, output: 0.60}

Example:
    >>> prices = PriceTable({"gpt-4o-mini": Price(0.15, 0.60)})
    >>> ledger = CostLedger("gpt-4o-mini", prices.lookup("gpt-4o-mini"))
    >>> ledger.record_call(1000, 200)
    >>> round(ledger.totals().cost_usd, 8)
    0.00027
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from axbench_kedro.errors import AxbenchConfigError

__all__ = ["Price", "PriceTable", "LedgerTotals", "CostLedger", "USAGE_COLUMNS", "FREE", "zero_usage_frame"]

log = logging.getLogger(__name__)

USAGE_COLUMNS = ["stage", "model", "calls", "cache_hits", "input_tokens", "output_tokens", "cost_usd"]
_DATE_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Price:
    """USD per one million input / output tokens."""

    input_per_m: float
    output_per_m: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_m + output_tokens * self.output_per_m) / 1_000_000


FREE = Price(0.0, 0.0)


class PriceTable:
    """Model id → :class:`Price`; a dated snapshot id falls back to its undated alias."""

    def __init__(self, prices: dict[str, Price] | None = None) -> None:
        self.prices = dict(prices or {})

    def lookup(self, model: str) -> Price | None:
        """The price of ``model`` (exact id, then without a ``-YYYY-MM-DD`` suffix), else ``None``."""
        if model in self.prices:
            return self.prices[model]
        return self.prices.get(_DATE_SUFFIX.sub("", model))

    @classmethod
    def from_config(cls, raw: Any, source: str = "llm_prices") -> PriceTable:
        """A price table from what the ``llm_prices`` catalog dataset loads
        (``{"models": {id: {"input": usd_per_m, "output": usd_per_m}}}``).

        Args:
            raw: the loaded YAML (a mapping).
            source: name for messages (the catalog entry).

        Raises:
            AxbenchConfigError: no ``models:`` mapping, or an entry without numeric ``input`` / ``output`` or with
                a negative price.
        """
        models = raw.get("models") if isinstance(raw, Mapping) else None
        if not isinstance(models, Mapping):
            raise AxbenchConfigError(f"LLM price table {source} needs a top-level `models:` mapping")
        prices: dict[str, Price] = {}
        for model, entry in models.items():
            try:
                price = Price(float(entry["input"]), float(entry["output"]))
            except (TypeError, KeyError, ValueError) as exc:
                raise AxbenchConfigError(
                    f"LLM price table {source}: models.{model} needs numeric `input` and `output` "
                    "(USD per 1M tokens)"
                ) from exc
            if price.input_per_m < 0 or price.output_per_m < 0:
                raise AxbenchConfigError(f"LLM price table {source}: models.{model} has a negative price")
            prices[str(model)] = price
        return cls(prices)


@dataclass(frozen=True)
class LedgerTotals:
    """A snapshot of the ledger (differences of two snapshots are a stage's usage)."""

    calls: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    retries: int = 0
    failures: int = 0

    def __sub__(self, other: LedgerTotals) -> LedgerTotals:
        return LedgerTotals(
            calls=self.calls - other.calls,
            cache_hits=self.cache_hits - other.cache_hits,
            input_tokens=self.input_tokens - other.input_tokens,
            output_tokens=self.output_tokens - other.output_tokens,
            cost_usd=self.cost_usd - other.cost_usd,
            retries=self.retries - other.retries,
            failures=self.failures - other.failures,
        )


class CostLedger:
    """Thread-safe running totals for one client (one model).

    Args:
        model: model id (recorded in the usage frame).
        price: its price; ``None`` = unknown (counted as 0 USD, with one warning).
    """

    def __init__(self, model: str, price: Price | None) -> None:
        self.model = model
        self.priced = price is not None
        self.price = price if price is not None else FREE
        self._totals = LedgerTotals()
        self._lock = threading.Lock()
        self._warned = False

    def set_price(self, price: Price | None) -> None:
        """Use ``price`` from now on (``None`` = unknown: 0 USD with one warning). Calls already recorded under
        another price are re-priced, so the totals always follow the current price table."""
        with self._lock:
            new = price if price is not None else FREE
            changed = (price is not None) != self.priced or new != self.price
            self.priced = price is not None
            self.price = new
            t = self._totals
            if changed and t.calls:
                self._totals = replace(t, cost_usd=new.cost(t.input_tokens, t.output_tokens))

    def record_call(self, input_tokens: int, output_tokens: int) -> None:
        """A completed (billed) call."""
        if not self.priced and not self._warned:
            self._warned = True
            log.warning(
                "no price for LLM model %r in the price table: its cost is counted as 0 USD", self.model
            )
        with self._lock:
            t = self._totals
            total_in, total_out = t.input_tokens + input_tokens, t.output_tokens + output_tokens
            # Priced from the integer token totals, not a float sum of per-call costs: concurrent calls finish in
            # any order, and the cost must be the same bytes in every run.
            self._totals = replace(
                t,
                calls=t.calls + 1,
                input_tokens=total_in,
                output_tokens=total_out,
                cost_usd=self.price.cost(total_in, total_out),
            )

    def record_hits(self, n: int = 1) -> None:
        """Replies served from the cache (cost 0)."""
        with self._lock:
            self._totals = replace(self._totals, cache_hits=self._totals.cache_hits + n)

    def record_retry(self) -> None:
        with self._lock:
            self._totals = replace(self._totals, retries=self._totals.retries + 1)

    def record_failure(self) -> None:
        with self._lock:
            self._totals = replace(self._totals, failures=self._totals.failures + 1)

    def totals(self) -> LedgerTotals:
        """The running totals (an immutable snapshot)."""
        with self._lock:
            return self._totals

    def usage_frame(self, stage: str, since: LedgerTotals | None = None) -> pd.DataFrame:
        """One row: ``stage, model, calls, cache_hits, input_tokens, output_tokens, cost_usd``.

        Args:
            stage: label of the pipeline stage.
            since: an earlier :meth:`totals` snapshot; the row then holds only what happened after it.
        """
        t = self.totals()
        if since is not None:
            t = t - since
        row = {
            "stage": stage,
            "model": self.model,
            "calls": t.calls,
            "cache_hits": t.cache_hits,
            "input_tokens": t.input_tokens,
            "output_tokens": t.output_tokens,
            "cost_usd": float(t.cost_usd),
        }
        frame = pd.DataFrame([row], columns=USAGE_COLUMNS)
        return frame.astype(
            {"calls": "int64", "cache_hits": "int64", "input_tokens": "int64", "output_tokens": "int64"}
        )


def zero_usage_frame(stage: str, model: str = "") -> pd.DataFrame:
    """The usage row of a stage that made no LLM call (``USAGE_COLUMNS``, all counts 0, cost 0.0).

    Args:
        stage: label of the pipeline stage.
        model: the LLM model name, when a client exists.
    """
    zero = {
        "stage": stage,
        "model": model,
        "calls": 0,
        "cache_hits": 0,
        "input_tokens": 0,
        "output_tokens": 0,
    }
    return pd.DataFrame([{**zero, "cost_usd": 0.0}])
