"""The Prompt baseline's steering instruction per concept (template P1, one cached LLM call per concept).

An empty reply is replaced by the configured fallback (``is_fallback`` = True) [D 18].

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

__all__ = ["STAGE", "steering_instruction_texts"]

log = logging.getLogger(__name__)

STAGE = "steering_eval.prompt_steering"
"""The ``stage`` of the usage row."""


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
        ``prompt_steering_texts`` (``concept_id, text, is_fallback, template_sha256, model``) and its usage row.
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
            "template_sha256": template.sha256,
            "model": str(client.model),
        }
    )
    return out, client.usage_frame(STAGE, since=since)
