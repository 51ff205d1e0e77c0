"""PromptDetection: an LLM rates each latent-eval output for its concept (rubric J1); the rating is ``max_act``.

Every ``llm`` detection method (``detection_kind == "llm"``) shares the same ratings: one LLM call per row.

Example:
    >>> scores, usage = prompt_detection_scores(data, concepts_meta, names, client, prices, templates, settings)
    ... # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from axbench_kedro.config.latent_eval import PromptDetectionSettings
from axbench_kedro.detection.rows import empty_scores, per_text_rows
from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.llm.client import apply_prices, resolve_client
from axbench_kedro.llm.ledger import zero_usage_frame
from axbench_kedro.llm.templates import pick_template
from axbench_kedro.llm.types import LLMRequest
from axbench_kedro.methods.prompt import parse_detection_rating

__all__ = ["STAGE", "prompt_detection_scores"]

log = logging.getLogger(__name__)

STAGE = "latent_eval"
"""The ``stage`` of the usage row."""


def prompt_detection_scores(
    data: pd.DataFrame,
    concepts_meta: pd.DataFrame,
    methods: Sequence[str],
    generator_llm: Any,
    llm_prices: Mapping[str, Any],
    prompt_templates: Mapping[str, Any],
    settings: PromptDetectionSettings,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """PromptDetection scores of every row of ``data`` for each of ``methods``, and the stage's LLM usage.

    Args:
        data: checked ``latent_eval_data``.
        concepts_meta: concept text per ``concept_id`` (every concept of ``data`` must be there).
        methods: the ``llm`` methods to score; none = no LLM call and a zero usage row.
        generator_llm: the LLM client, or a zero-argument factory that builds it.
        llm_prices: the price table the usage is costed with.
        prompt_templates: the ``prompt_templates`` catalog dataset (``settings.template`` is taken from it).
        settings: ``latent_eval.prompt_detection``.

    Returns:
        ``(scores, usage)``: §1.7 rows (``max_act`` in [0, 2] or −1 when unparsable, ``max_act_idx`` −1) and the
        usage row with the template name and hash and the number of parse failures.

    Raises:
        AxbenchDataError: a concept of ``data`` has no text in ``concepts_meta``.
    """
    client = resolve_client(generator_llm)
    if not methods:
        return empty_scores(), zero_usage_frame(STAGE, getattr(client, "model", ""))
    template = pick_template(prompt_templates, settings.template, "latent_eval.prompt_detection.template")
    client = apply_prices(client, llm_prices)
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
    frames = [per_text_rows(data, name, ratings) for name in methods]
    usage = client.usage_frame(STAGE, since=since)
    usage["template"] = template.name
    usage["template_sha256"] = template.sha256
    usage["parse_failures"] = n_failed
    return pd.concat(frames, ignore_index=True), usage
