"""PromptDetection: the target model rates each latent-eval output for its concept (rubric J1); the rating is
``max_act`` (protocol §3.9).

Every ``llm`` detection method (``detection_kind == "llm"``) shares the same ratings: one rating generation per row,
and, when opted in [D 32], one per negative of the 1:100 pool and concept. The rater is whatever client the node is
handed (the ``detection_rater_llm`` catalog dataset: the target model in-process); its model, backend, sampling
settings and template hash go on the usage rows, and the template and its SHA-256 on every score row.

Example:
    >>> scores, pool_scores, usage = prompt_detection_scores(
    ...     data, pool, concepts_meta, names, rater, prices, templates, settings, imbalance=False
    ... )  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from axbench_kedro.config.latent_eval import PromptDetectionSettings
from axbench_kedro.detection.rating_estimate import api_cost_estimate, format_duration
from axbench_kedro.detection.rows import concat_pool_scores, empty_scores, per_text_rows, pool_rows
from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.llm.client import apply_prices, resolve_client
from axbench_kedro.llm.ledger import zero_usage_frame
from axbench_kedro.llm.templates import PromptTemplate, pick_template
from axbench_kedro.llm.types import LLMRequest, LLMResponse
from axbench_kedro.methods.prompt import PARSE_FAILED, parse_detection_rating

__all__ = ["IMBALANCE_STAGE", "RATER_ROW_COLUMNS", "STAGE", "Rater", "prompt_detection_scores"]

log = logging.getLogger(__name__)

STAGE = "latent_eval"
"""The ``stage`` of the usage row of the balanced set."""
IMBALANCE_STAGE = "latent_eval_imbalance"
"""The ``stage`` of the usage row of the 1:100 pool (only when opted in)."""
RATER_ROW_COLUMNS = ["template", "template_sha256", "rater_model"]
"""Columns PromptDetection adds to its ``latent_scores`` rows (null for the other methods)."""


@dataclass
class Rater:
    """One rating client with its template and settings: builds the requests and parses the replies."""

    client: Any
    template: PromptTemplate
    settings: PromptDetectionSettings
    concept_text: Mapping[int, str]

    def request(self, concept_id: int, text: str) -> LLMRequest:
        """The rating request of ``text`` for concept ``concept_id``."""
        return LLMRequest.user(
            self.template.render(concept=self.concept_text[int(concept_id)], text=str(text)),
            model=self.client.model,
            temperature=self.settings.temperature,
            max_tokens=self.settings.max_new_tokens,
        )

    def parse(self, replies: Sequence[LLMResponse]) -> np.ndarray:
        """Ratings in [0, 2], −1 where unparsable, non-finite or out of range [D 29]."""
        prefix = self.settings.reply_prefix
        return np.array([parse_detection_rating(prefix + r.text) for r in replies], dtype=np.float64)

    def keys(self, requests: Sequence[LLMRequest]) -> list[str]:
        """The client's reply-cache keys (empty strings for a client without a cache)."""
        key = getattr(self.client, "cache_key", None)
        return [key(r) for r in requests] if callable(key) else [""] * len(requests)

    def cached(self, keys: Sequence[str]) -> set[str]:
        """Those of ``keys`` the client's reply cache already holds."""
        cache = getattr(self.client, "cache", None)
        if cache is None or not any(keys):
            return set()
        return set(cache.get_many(keys))

    def record(self) -> dict[str, Any]:
        """The rater's identity and settings for the usage rows and the run card."""
        backend = getattr(self.client, "backend", None)
        default_raw = getattr(backend, "default_raw", None)
        top_k = getattr(backend, "top_k", None)
        return {
            "rater_model": self.client.model,
            "rater_backend": getattr(self.client, "backend_name", None),
            "prompt_style": None if default_raw is None else ("raw" if default_raw else "chat"),
            "temperature": float(self.settings.temperature),
            "top_k": None if top_k is None else int(top_k),
            "max_new_tokens": int(self.settings.max_new_tokens),
            "batch_size": getattr(backend, "max_batch_size", None),
            "template": self.template.name,
            "template_sha256": self.template.sha256,
        }


def prompt_detection_scores(
    data: pd.DataFrame,
    pool: pd.DataFrame,
    concepts_meta: pd.DataFrame,
    methods: Sequence[str],
    rater_llm: Any,
    llm_prices: Mapping[str, Any],
    prompt_templates: Mapping[str, Any],
    settings: PromptDetectionSettings,
    *,
    imbalance: bool,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """PromptDetection scores of every row of ``data`` (and, when ``imbalance``, of ``pool`` × every concept).

    Args:
        data: checked ``latent_eval_data``.
        pool: the shared negative pool of the 1:100 set (``imbalance_negatives``).
        concepts_meta: concept text per ``concept_id`` (every concept of ``data`` must be there).
        methods: the ``llm`` methods to score; none = the rater is never built, no call, a zero usage row.
        rater_llm: the rating client, or a zero-argument factory (lazy catalog handle) that builds it.
        llm_prices: the price table the usage is costed with (and an API rater's 1:100 cost estimated with).
        prompt_templates: the ``prompt_templates`` catalog dataset (``settings.template`` is taken from it).
        settings: ``latent_eval.prompt_detection``.
        imbalance: ``latent_eval.prompt_detection_imbalance`` [D 32].

    Returns:
        ``(scores, pool_scores, usage)``: §1.7 rows (``max_act`` in [0, 2] or −1 when unparsable, ``max_act_idx``
        −1, plus ``RATER_ROW_COLUMNS``), ``neg_row_id, concept_id, method, max_act`` rows of the pool (empty
        unless ``imbalance``), and the usage rows (``STAGE``, and ``IMBALANCE_STAGE`` when rated) with the rater's
        settings, template hash, rating counts and parse failures.

    Raises:
        AxbenchDataError: a concept of ``data`` has no text in ``concepts_meta``.
    """
    if not methods:  # the lazy rater handle stays untouched: nothing is built or loaded
        return empty_scores(), concat_pool_scores([]), zero_usage_frame(STAGE)
    template = pick_template(prompt_templates, settings.template, "latent_eval.prompt_detection.template")
    client = apply_prices(resolve_client(rater_llm), llm_prices)
    concept_text = dict(
        zip(concepts_meta["concept_id"].astype(int), concepts_meta["concept"].astype(str), strict=True)
    )
    missing = sorted(set(data["concept_id"].astype(int)) - concept_text.keys())
    if missing:
        raise AxbenchDataError(f"concepts_meta: no concept text for concept_id(s) {missing[:10]}")
    rater = Rater(client, template, settings, concept_text)
    record = rater.record()

    usage_rows, pool_scores = [], concat_pool_scores([])
    if imbalance and len(pool):  # first, so that its size and estimate are logged before any rating call
        concepts = sorted(set(data["concept_id"].astype(int)))
        full, pool_usage = _rate_pool(rater, pool, concepts, llm_prices)
        pool_scores = concat_pool_scores([pool_rows(full, pool, concepts, name) for name in methods])
        usage_rows.append(pool_usage.assign(**record))

    requests = [rater.request(c, o) for c, o in zip(data["concept_id"], data["output"], strict=True)]
    since = client.totals()
    ratings = rater.parse(client.complete_many(requests, desc="PromptDetection"))
    n_failed = _warn_failures(ratings, "")
    row_info = {c: record[c] for c in RATER_ROW_COLUMNS}
    frames = [per_text_rows(data, name, ratings).assign(**row_info) for name in methods]
    usage = client.usage_frame(STAGE, since=since).assign(
        **record, parse_failures=n_failed, n_ratings=len(requests), prompt_detection_imbalance=bool(imbalance)
    )
    usage = pd.concat([usage, *usage_rows], ignore_index=True)
    return pd.concat(frames, ignore_index=True), pool_scores, usage


def _warn_failures(ratings: np.ndarray, where: str) -> int:
    n_failed = int((ratings == PARSE_FAILED).sum())
    if n_failed:
        log.warning(
            "latent_eval: PromptDetection could not parse %d of %d ratings%s (scored -1)",
            n_failed,
            len(ratings),
            where,
        )
    return n_failed


def _rate_pool(
    rater: Rater, pool: pd.DataFrame, concepts: list[int], llm_prices: Mapping[str, Any]
) -> tuple[np.ndarray, pd.DataFrame]:
    """Ratings ``[n_pool, n_concepts]`` of every pool row for every concept, and the pool's usage row.

    Before the first call it logs (and the usage row keeps) the number of ratings, how many are cached, the maximum
    generated tokens and an estimate: of cost for a priced API rater, of time from a timed warm-up batch for the
    in-process rater [D 32]. Requests are built one concept at a time, so memory stays small at paper scale.
    """
    client, max_new = rater.client, rater.settings.max_new_tokens
    outputs = pool["output"].astype(str).tolist()
    n_ratings = len(outputs) * len(concepts)

    def chunk(cid: int) -> list[LLMRequest]:
        return [rater.request(cid, text) for text in outputs]

    backend = getattr(client, "backend", None)
    free = bool(getattr(backend, "free", False))
    warm_size = int(getattr(backend, "max_batch_size", 1) or 1)
    n_cached, todo_chars, warm_reqs = 0, 0, {}
    for cid in concepts:  # pre-pass: what is cached already, and the warm-up batch (first uncached requests)
        reqs = chunk(cid)
        keys = rater.keys(reqs)
        hit = rater.cached(keys)
        for req, key in zip(reqs, keys, strict=True):
            if key in hit:
                n_cached += 1
                continue
            todo_chars += len(req.text)
            if key and len(warm_reqs) < warm_size:
                warm_reqs.setdefault(key, req)
    n_todo = n_ratings - n_cached
    head = (
        f"latent_eval: PromptDetection on the 1:100 set (opt-in [D 32]): {n_ratings} ratings "
        f"({len(outputs)} negatives x {len(concepts)} concepts; {n_cached} cached, {n_todo} to generate), "
        f"up to {n_todo * max_new} generated tokens ({max_new} per rating) by {client.model}"
    )
    if n_todo == 0:
        estimate = "all ratings cached: no generation"
        log.warning("%s; %s", head, estimate)
    elif not free:
        estimate = api_cost_estimate(client.model, llm_prices, todo_chars, n_todo * max_new)
        log.warning("%s; %s", head, estimate)
    else:
        log.warning("%s; timing a warm-up batch of %d ratings for a time estimate", head, len(warm_reqs))
    since = client.totals()
    warm: dict[str, LLMResponse] = {}
    if free and warm_reqs:
        start = time.perf_counter()
        replies = client.complete_many(list(warm_reqs.values()), desc="PromptDetection warm-up")
        elapsed = time.perf_counter() - start
        warm = dict(zip(warm_reqs, replies, strict=True))
        rest = max(n_todo - len(warm), 0)
        estimate = (
            f"estimated time for the remaining {rest} ratings: about "
            f"{format_duration(elapsed / len(warm) * rest)} (warm-up: {len(warm)} ratings in {elapsed:.1f} s)"
        )
        log.warning("latent_eval: PromptDetection on the 1:100 set: %s", estimate)
    elif free and n_todo:  # no reply-cache keys to single out a warm-up batch with
        estimate = "no estimate (the client has no reply cache keys)"
    full = np.empty((len(outputs), len(concepts)), dtype=np.float64)
    for j, cid in enumerate(concepts):
        reqs = chunk(cid)
        keys = rater.keys(reqs)
        todo = [i for i, k in enumerate(keys) if not (k and k in warm)]
        replies: list[Any] = [warm.get(k) for k in keys]
        fresh = client.complete_many([reqs[i] for i in todo], desc=f"PromptDetection 1:100 concept {cid}")
        for i, reply in zip(todo, fresh, strict=True):
            replies[i] = reply
        full[:, j] = rater.parse(replies)
    n_failed = _warn_failures(full.reshape(-1), " on the 1:100 set")
    usage = client.usage_frame(IMBALANCE_STAGE, since=since).assign(
        parse_failures=n_failed,
        n_ratings=n_ratings,
        n_cached=n_cached,
        max_generated_tokens=n_todo * max_new,
        estimate=estimate,
    )
    return full, usage
