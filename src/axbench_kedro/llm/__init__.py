"""LLM clients behind one protocol: an OpenAI-compatible HTTP backend and an in-process transformers backend,
wrapped by :class:`LLMClient` (persistent cache, concurrency limit, retries, cost ledger); prompt templates.

Modules: ``types`` (requests, responses, backend protocol), ``errors``, ``client``, ``openai_backend``,
``local_backend``, ``ledger`` (prices and usage), ``credentials``, ``templates``. Nothing here reads a project
file: templates, the price table and credentials arrive through the Kedro catalog.
"""

from __future__ import annotations

from axbench_kedro.llm.client import LLMClient
from axbench_kedro.llm.errors import LLMCallError, TransientLLMError
from axbench_kedro.llm.ledger import CostLedger, LedgerTotals, Price, PriceTable
from axbench_kedro.llm.templates import PromptTemplate, load_templates, pick_template
from axbench_kedro.llm.types import Backend, LLMRequest, LLMResponse

__all__ = [
    "Backend",
    "CostLedger",
    "LLMCallError",
    "LLMClient",
    "LLMRequest",
    "LLMResponse",
    "LedgerTotals",
    "Price",
    "PriceTable",
    "PromptTemplate",
    "TransientLLMError",
    "load_templates",
    "pick_template",
]
