"""A faulty LLM server: the judge and datagen-style calls complete, every request is answered or reported, parse
failures reach the outputs and the run card, retries stay within their budget, and a dead server ends the run."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from axbench_kedro.cache import SQLiteCache
from axbench_kedro.llm.client import CACHE_TABLE
from axbench_kedro.llm.errors import LLMCallError
from axbench_kedro.llm.types import LLMRequest
from axbench_kedro.reporting.run_card import render_run_card
from fixtures.fake_openai import FAULT_KINDS, JUNK_REPLY, FakeOpenAIServer, body_key, client_for
from reliability.judge_frames import GOOD_REPLY, judge_frames, llm_judge

# Short timeouts: a `timeout` fault sleeps 1 s, the client gives up after 0.3 s.
CALLS = {"timeout_s": 0.3, "max_timeout_s": 0.3}


def _cached_rows(path) -> int:
    cache = SQLiteCache(path, table=CACHE_TABLE)
    try:
        return len(cache)
    finally:
        cache.close()


def test_judge_completes_through_random_faults(tmp_path) -> None:
    generations, prompts = judge_frames(40)
    with FakeOpenAIServer(
        reply_fn=lambda body: GOOD_REPLY, fault_rate=0.2, fault_seed=3, fault_sleep_s=1.0
    ) as srv:
        client = client_for(srv, tmp_path / "llm.sqlite")
        judge = llm_judge(client, **CALLS)
        out = judge.judge(generations, prompts)
        bodies = {body_key(b) for b in srv.requests}
        faults = Counter(srv.fault_counts)
        delivered = dict(srv.delivered)
        # A rerun is served from the cache: the faults never reached it.
        again = llm_judge(client_for(srv, tmp_path / "llm.sqlite"), **CALLS)
        n_before = len(srv.requests)
        rerun = again.judge(generations, prompts)
        assert len(srv.requests) == n_before

    requested = 3 * len(generations)
    assert len(bodies) == requested and len(out) == requested  # every request answered, none dropped
    assert sum(faults.values()) >= 0.1 * requested and len(faults) >= 5  # the faults really happened
    totals = client.totals()
    assert totals.calls == requested and totals.failures == 0
    assert 0 < totals.retries <= max(10, requested)  # within the run's retry budget
    # Cut and junk replies are answers the parser cannot read: each one is a counted parse failure, no other is.
    unreadable = sum(kind in ("length", "junk") for kind in delivered.values())
    assert unreadable > 0
    assert int((~out["parse_ok"]).sum()) == unreadable
    assert (out.loc[~out["parse_ok"], "rating"] == 0.0).all()
    assert set(out.loc[out["parse_ok"], "rating"]) == {2.0}
    assert (out["raw_completion"] == JUNK_REPLY).sum() == sum(k == "junk" for k in delivered.values())
    # Only complete replies are cached: one row per request, none for a failed attempt.
    assert _cached_rows(tmp_path / "llm.sqlite") == requested
    assert rerun["parse_ok"].tolist() == out["parse_ok"].tolist()
    # The run card counts them.
    card = render_run_card(
        setting="s",
        layer=0,
        seed=42,
        model={},
        generator={},
        judge={"kind": "llm"},
        provenance={},
        judgements=out,
    )
    assert f"unparsable replies (scored 0) | {unreadable} of {requested}" in card


def test_generation_calls_complete_through_random_faults(tmp_path) -> None:
    kinds = [k for k in FAULT_KINDS if k not in ("junk", "timeout")]
    requests = [
        LLMRequest.user(f"Write about topic {i}.", model="gpt-4o-mini", temperature=1.0, sample_index=i % 3)
        for i in range(90)
    ]
    with FakeOpenAIServer(fault_rate=0.25, fault_seed=11, fault_kinds=kinds) as srv:
        client = client_for(srv, tmp_path / "gen.sqlite", max_concurrency=16)
        replies = client.complete_many(requests)
        delivered = Counter(srv.delivered.values())
        assert sum(srv.fault_counts.values()) > 0
    assert len(replies) == len(requests)
    assert all(r.text for r in replies)
    assert sum(r.finish_reason == "length" for r in replies) == delivered["length"] > 0
    assert sum(r.text.startswith("reply to: Write about topic") for r in replies) == delivered["ok"]
    assert delivered["ok"] + delivered["length"] == len(requests)
    assert client.totals().calls == len(requests)
    assert _cached_rows(tmp_path / "gen.sqlite") == len(requests)


def test_a_request_failing_for_good_is_reported_and_the_rest_kept(tmp_path) -> None:
    generations, prompts = judge_frames(12)

    def reply(body: dict) -> str:
        if "Generated text 5 " in body["messages"][0]["content"]:
            raise RuntimeError("model crashed on this prompt")  # the fake answers 500, every time
        return GOOD_REPLY

    with FakeOpenAIServer(reply_fn=reply) as srv:
        judge = llm_judge(client_for(srv, tmp_path / "llm.sqlite"), max_attempts=2, initial_in_flight=1)
        with pytest.raises(LLMCallError) as info:
            judge.judge(generations, prompts)
        err = info.value
        requested = 3 * len(generations)
        assert err.requested == requested
        assert err.answered + err.failed + err.not_sent == requested  # nothing silently dropped
        assert err.failed >= 1 and err.status == 500
        assert f"{err.answered} answered and cached" in str(err) and "127.0.0.1" in str(err)
        assert _cached_rows(tmp_path / "llm.sqlite") == err.answered
        # The server recovers: the rerun sends only what was not answered.
        srv.reply_fn = lambda body: GOOD_REPLY
        n_before = len(srv.requests)
        out = llm_judge(client_for(srv, tmp_path / "llm.sqlite")).judge(generations, prompts)
        assert len(srv.requests) - n_before == requested - err.answered
    assert len(out) == requested and out["parse_ok"].all()


def test_server_down_for_good_ends_the_run_with_one_clear_error(tmp_path) -> None:
    generations, prompts = judge_frames(40)
    with FakeOpenAIServer(fault_rate=1.0, fault_kinds=("503",)) as srv:
        client = client_for(srv, tmp_path / "llm.sqlite")
        with pytest.raises(LLMCallError, match=r"127\.0\.0\.1.*4 attempt.*HTTP 503") as info:
            llm_judge(client).judge(generations, prompts)
        n_sent = len(srv.requests)
    err = info.value
    assert err.answered == 0 and err.answered + err.failed + err.not_sent == err.requested == 120
    # No success: no second round, and no new call after the first call failed for good (4 start in flight).
    assert n_sent <= 4 * 4
    assert client.totals().calls == 0 and _cached_rows(tmp_path / "llm.sqlite") == 0


def test_server_dying_mid_run_stops_within_the_retry_budget(tmp_path) -> None:
    requests = [LLMRequest.user(f"question {i}", model="gpt-4o-mini") for i in range(60)]
    answered = []
    lock = threading.Lock()

    def reply(body: dict) -> str:
        with lock:
            if len(answered) >= 20:
                raise RuntimeError("out of memory")  # 500 from here on
            answered.append(1)
        return "fine"

    with FakeOpenAIServer(reply_fn=reply) as srv:
        client = client_for(srv, tmp_path / "llm.sqlite", max_concurrency=4, adaptive_concurrency=False)
        with pytest.raises(LLMCallError, match="HTTP 500") as info:
            client.complete_many(requests)
        n_sent = len(srv.requests)
    err = info.value
    assert err.answered == 20 and err.answered + err.failed + err.not_sent == 60
    budget = max(10, len(requests))
    assert client.totals().retries <= budget
    assert n_sent <= len(requests) + budget
