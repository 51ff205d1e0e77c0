"""In-context examples for the many-shot attack (protocol §6, template R4; §1.10 ``multishot_examples``).

Per rule, R4 calls ask for ``per_call`` examples about a topic drawn from :data:`~.replies.TOPICS`; calls continue
(in rounds, all rules of a round batched together) until the rule has ``n_examples`` parsed pairs or ``max_calls``
calls were made. The topic of call ``k`` is drawn from a generator seeded by (seed, rule, k) and ``k`` is the
request's ``sample_index``, so a rerun makes the same requests and the cached layer answers them all.

A completion-style template for base models may end with a bare question label (``User:``): the model then writes
the first question on that line, so the label is put back in front of the reply before parsing.

Example:
    >>> examples, usage = multishot_examples(rules, client, prices, templates, n_examples=20)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.llm.client import apply_prices
from axbench_kedro.llm.templates import pick_template
from axbench_kedro.llm.types import LLMRequest
from axbench_kedro.suppression.replies import _QUESTION, TOPICS, parse_examples

__all__ = ["STAGE", "EXAMPLE_COLUMNS", "TEMPLATE", "call_topic", "multishot_examples"]

log = logging.getLogger(__name__)

STAGE = "suppression.multishot"
"""The ``stage`` of the usage row."""
TEMPLATE = "multishot_examples"
"""Default R4 template (``multishot_examples_base`` for base models)."""
EXAMPLE_COLUMNS = ["rule", "example_id", "topic", "question", "answer"]
"""Columns of ``multishot_examples``."""


def call_topic(seed: int, rule: str, call: int, topics: tuple[str, ...] = TOPICS) -> str:
    """The topic of R4 call ``call`` for ``rule`` (independent of how many calls other rules need)."""
    rng = np.random.default_rng([int(seed), zlib.crc32(rule.encode("utf-8")), int(call)])
    return topics[int(rng.integers(len(topics)))]


def _label_tail(prompt: str) -> str:
    """The prompt's last line when it is a bare question label (``User:``), else ``""``."""
    last = prompt.rstrip().rsplit("\n", 1)[-1]
    match = _QUESTION.match(last)
    return last.strip() + " " if match and not match.group(2).strip() else ""


def multishot_examples(
    rules: pd.DataFrame,
    client: Any,
    llm_prices: Mapping[str, Any],
    prompt_templates: Mapping[str, Any],
    *,
    n_examples: int,
    per_call: int = 10,
    max_calls: int | None = None,
    seed: int = 0,
    template: str = TEMPLATE,
    temperature: float = 1.0,
    max_tokens: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """At least ``n_examples`` (question, answer) examples per rule that follow the rule strongly.

    Args:
        rules: ``rule`` (its name, e.g. ``all_capital``) and ``description`` (the rule in words, fills ``{rule}``).
        client: the LLM client (cached).
        llm_prices: the price table the usage is costed with.
        prompt_templates: the ``prompt_templates`` catalog dataset.
        n_examples: examples kept per rule (the largest n-shot of the attack).
        per_call: examples asked for per call (``{n}``; protocol 10).
        max_calls: calls per rule before giving up (default ``4 · ceil(n_examples / per_call)``); a rule left
            short keeps what it has and is logged.
        seed: seeds the topic of every call.
        template: R4 template name.
        temperature / max_tokens: sampling of every call.

    Returns:
        ``multishot_examples`` (``EXAMPLE_COLUMNS``; ``example_id`` 0.. in collection order, at most
        ``n_examples`` per rule) and its usage row.

    Raises:
        AxbenchDataError: ``rules`` lacks a column or repeats a rule.
    """
    missing = [c for c in ("rule", "description") if c not in rules.columns]
    if missing:
        raise AxbenchDataError(f"rules: missing column(s) {missing}")
    if rules["rule"].duplicated().any():
        raise AxbenchDataError(
            f"rules: repeated rule(s) {sorted(set(rules['rule'][rules['rule'].duplicated()]))}"
        )
    tpl = pick_template(prompt_templates, template, "suppression.multishot.template")
    limit = max_calls if max_calls is not None else 4 * -(-n_examples // per_call)
    client = apply_prices(client, llm_prices)
    since = client.totals()
    described = dict(zip(rules["rule"].astype(str), rules["description"].astype(str), strict=True))
    found: dict[str, list[tuple[str, str, str]]] = {r: [] for r in described}
    calls = dict.fromkeys(described, 0)
    while True:
        batch: list[tuple[str, str, str, LLMRequest]] = []
        for rule, desc in described.items():
            need = -(-(n_examples - len(found[rule])) // per_call)
            for _ in range(max(0, min(need, limit - calls[rule]))):
                topic = call_topic(seed, rule, calls[rule])
                prompt = tpl.render(n=str(per_call), rule=desc, topic=topic)
                req = LLMRequest.user(
                    prompt, temperature=temperature, max_tokens=max_tokens, sample_index=calls[rule]
                )
                batch.append((rule, topic, _label_tail(prompt), req))
                calls[rule] += 1
        if not batch:
            break
        replies = client.complete_many([b[3] for b in batch], desc="many-shot examples")
        for (rule, topic, tail, _), reply in zip(batch, replies, strict=True):
            found[rule].extend((topic, q, a) for q, a in parse_examples(tail + reply.text))
    rows = []
    for rule, items in found.items():
        if len(items) < n_examples:
            log.warning(
                "many-shot examples: rule %s has %d of %d examples after %d calls",
                rule,
                len(items),
                n_examples,
                calls[rule],
            )
        for i, (topic, q, a) in enumerate(items[:n_examples]):
            rows.append({"rule": rule, "example_id": i, "topic": topic, "question": q, "answer": a})
    out = pd.DataFrame(rows, columns=EXAMPLE_COLUMNS).astype({"example_id": "int64"})
    return out, client.usage_frame(STAGE, since=since)
