"""The Prompt baseline's steering instruction per concept (template P1, one cached LLM call per concept).

An empty reply is replaced by the configured fallback (``is_fallback`` = True) [D 18]. The call has no length cap by
default (upstream passes none) [D 31]; with a cap (``max_tokens``), every reply cut at it (finish reason
``length``) is kept, counted and logged with its ``concept_id``. Each row records the reply's ``finish_reason``,
``truncated`` and the ``max_tokens`` it was requested with (null = no cap), so the run card can label the run.

Example:
    >>> cfg = params.prompt_steering
    >>> texts, usage = steering_instruction_texts(concepts_meta, client, prices, templates, cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from axbench_kedro.config.steering_eval import PromptSteeringParams
from axbench_kedro.llm.client import apply_prices
from axbench_kedro.llm.templates import pick_template
from axbench_kedro.llm.types import LLMRequest
from axbench_kedro.steering.prompts import check_concepts

__all__ = ["STAGE", "TEXT_COLUMNS", "steering_instruction_texts"]

log = logging.getLogger(__name__)

STAGE = "steering_eval.prompt_steering"
"""The ``stage`` of the usage row."""

TEXT_COLUMNS = [
    "concept_id",
    "text",
    "is_fallback",
    "finish_reason",
    "truncated",
    "max_tokens",
    "template_sha256",
    "model",
]
"""Columns of ``prompt_steering_texts``."""


def steering_instruction_texts(
    concepts_meta: pd.DataFrame,
    client: Any,
    llm_prices: Mapping[str, Any],
    prompt_templates: Mapping[str, Any],
    cfg: PromptSteeringParams,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One steering instruction per concept, written by the LLM from template ``cfg.template``.

    Args:
        concepts_meta: the concepts (``concept_id``, ``concept``); rows come out in ``concept_id`` order.
        client: the LLM client.
        llm_prices: the price table the usage is costed with.
        prompt_templates: the ``prompt_templates`` catalog dataset.
        cfg: ``steering_eval.prompt_steering``.

    Returns:
        ``prompt_steering_texts`` (``TEXT_COLUMNS``: ``finish_reason`` as the backend reported it, null when unknown;
        ``truncated`` = finish reason ``length``; ``max_tokens`` = the cap requested, null for none) and its usage
        row.
    """
    concepts = check_concepts(concepts_meta)
    template = pick_template(prompt_templates, cfg.template, "steering_eval.prompt_steering.template")
    client = apply_prices(client, llm_prices)
    since = client.totals()
    requests = [
        LLMRequest.user(template.render(concept=c), temperature=cfg.temperature, max_tokens=cfg.max_tokens)
        for c in concepts["concept"].astype(str)
    ]
    replies = client.complete_many(requests, desc="prompt-steering instructions")
    texts, fallback = [], []
    cut = [
        int(cid)
        for cid, reply in zip(concepts["concept_id"], replies, strict=True)
        if reply.finish_reason == "length"
    ]
    for cid in cut:
        log.warning(
            "prompt steering: concept_id %d: reply cut at the token cap (finish reason length, max_tokens=%s); kept",
            cid,
            cfg.max_tokens,
        )
    if cut:
        log.warning(
            "prompt steering: %d of %d replies were cut at the token cap (max_tokens=%s) [D 31]",
            len(cut),
            len(replies),
            cfg.max_tokens,
        )
    for concept, reply in zip(concepts["concept"].astype(str), replies, strict=True):
        text = reply.text.strip()
        if cfg.first_line_only:
            text = next((line.strip() for line in text.splitlines() if line.strip()), "")
        fallback.append(not text)
        texts.append(text or cfg.fallback.replace("{concept}", concept))
    if any(fallback):
        log.warning(
            "prompt steering: %d of %d replies were empty; fallback used", sum(fallback), len(fallback)
        )
    out = pd.DataFrame(
        {
            "concept_id": concepts["concept_id"].astype("int64"),
            "text": texts,
            "is_fallback": fallback,
            "finish_reason": pd.array([r.finish_reason for r in replies], dtype="string"),
            "truncated": [r.finish_reason == "length" for r in replies],
            "max_tokens": pd.array([cfg.max_tokens] * len(replies), dtype="Int64"),
            "template_sha256": template.sha256,
            "model": str(client.model),
        }
    )
    return out[TEXT_COLUMNS], client.usage_frame(STAGE, since=since)
