"""A local server that answers one request at a time (llama.cpp's single slot), scaled down from ~2 s per reply
and a 60 s timeout to 0.05 s and 1.2 s: 32 calls queued at the server (1.6 s) outlast the timeout, as 32 × 2 s
outlast 60 s. The judge's defaults complete; the old fixed 32-in-flight client does not."""

from __future__ import annotations

import asyncio

import pytest

from axbench_kedro.config.steering_eval import JUDGE_MAX_TOKENS, JudgeParams
from axbench_kedro.llm.concurrency import AdaptiveLimiter
from axbench_kedro.llm.errors import LLMCallError
from fixtures.fake_openai import FakeOpenAIServer, client_for
from reliability.judge_frames import GOOD_REPLY, judge_frames, llm_judge

SERVICE_S = 0.05  # one reply (llama.cpp: ~2 s)
TIMEOUT_S = 1.2  # the base timeout (the default 60 s, scaled like the service time)
N_GENERATIONS = 20  # 60 judge calls


def _slow_server() -> FakeOpenAIServer:
    return FakeOpenAIServer(reply_fn=lambda body: GOOD_REPLY, latency_s=SERVICE_S, single_slot=True)


def test_judge_defaults_complete_against_a_single_slot_server(tmp_path) -> None:
    generations, prompts = judge_frames(N_GENERATIONS)
    with _slow_server() as srv:
        client = client_for(srv, tmp_path / "llm.sqlite")
        judge = llm_judge(client, timeout_s=TIMEOUT_S)  # the defaults, but the timeout scaled
        out = judge.judge(generations, prompts)
        bodies = srv.requests
        max_in_flight = srv.max_in_flight
    assert len(out) == 3 * N_GENERATIONS and out["parse_ok"].all()
    assert client.totals().calls == 3 * N_GENERATIONS and client.totals().failures == 0
    limiter = client.limiter
    assert limiter is not None and limiter.adaptive
    assert max_in_flight <= limiter.max_limit_seen < 32  # it never flooded the server's queue
    assert all(b["max_tokens"] == JUDGE_MAX_TOKENS for b in bodies)  # the judge's reply cap is sent


def test_old_fixed_32_in_flight_client_fails_against_it(tmp_path) -> None:
    generations, prompts = judge_frames(N_GENERATIONS)
    with _slow_server() as srv:
        client = client_for(srv, tmp_path / "llm.sqlite")
        judge = llm_judge(
            client, adaptive=False, max_in_flight=32, timeout_s=TIMEOUT_S, max_timeout_s=TIMEOUT_S
        )
        with pytest.raises(LLMCallError, match="timed out") as info:
            judge.judge(generations, prompts)
    err = info.value
    assert err.status == "timeout"
    assert err.answered < err.requested == 3 * N_GENERATIONS
    assert err.answered + err.failed + err.not_sent == err.requested


def test_a_flood_of_timeouts_halves_the_limit(tmp_path) -> None:
    """Starting at 32 in flight (the old default), the limit halves on the first timeouts and the run completes."""
    generations, prompts = judge_frames(N_GENERATIONS)
    with _slow_server() as srv:
        client = client_for(srv, tmp_path / "llm.sqlite")
        judge = llm_judge(client, initial_in_flight=32, timeout_s=TIMEOUT_S)
        out = judge.judge(generations, prompts)
    assert len(out) == 3 * N_GENERATIONS
    limiter = client.limiter
    assert limiter.decreases >= 1 and limiter.min_limit_seen <= 16
    assert client.totals().failures == 0


def test_call_settings_come_from_parameters() -> None:
    params = JudgeParams.model_validate(
        {"kind": "llm", "client": {"max_in_flight": 1, "adaptive": False, "timeout_s": 600}}
    )
    settings = params.client.client_settings()
    assert settings["max_concurrency"] == 1 and settings["adaptive_concurrency"] is False
    assert settings["timeout_s"] == 600.0
    assert JudgeParams().max_tokens == JUDGE_MAX_TOKENS and JudgeParams().client.adaptive
    with FakeOpenAIServer() as srv:
        client = client_for(srv, None, max_concurrency=32)
        client.configure(**settings)
        assert client.max_concurrency == 1 and not client.adaptive_concurrency
        assert client.backend.timeout_s == 600.0


def test_limiter_halves_once_per_window_and_grows_while_latency_holds() -> None:
    async def scenario() -> AdaptiveLimiter:
        limiter = AdaptiveLimiter(32, initial=32)
        tickets = [await limiter.acquire() for _ in range(32)]
        for ticket in tickets:  # 32 timeouts of calls sent in the same window: one decrease
            limiter.record(ticket, overload=True)
        assert limiter.limit == 16 and limiter.decreases == 1
        for ticket in tickets:
            limiter.release(ticket)
            limiter.release(ticket)  # a second release of the same slot does nothing
        assert limiter.in_flight == 0
        for expected in (8, 4, 2, 1, 1):  # each new window halves again, never below 1
            ticket = await limiter.acquire()
            limiter.record(ticket, overload=True)
            limiter.release(ticket)
            assert limiter.limit == expected
        for latency in (1.0, 1.5, 2.0):  # within 2 × the recent minimum (+ slack): grow by one each
            ticket = await limiter.acquire()
            limiter.record(ticket, latency_s=latency)
            limiter.release(ticket)
        assert limiter.limit == 4
        ticket = await limiter.acquire()
        limiter.record(ticket, latency_s=5.0)  # a queue is building: no growth
        limiter.release(ticket)
        assert limiter.limit == 4
        assert limiter.timeout_s(1.0, factor=3.0, cap_s=10.0) == 10.0  # 3 × 5 s, capped
        assert limiter.timeout_s(60.0, factor=3.0, cap_s=600.0) == 60.0
        return limiter

    limiter = asyncio.run(scenario())
    assert limiter.min_limit_seen == 1 and limiter.max_limit_seen == 32

    fixed = AdaptiveLimiter(8, adaptive=False)

    async def overload() -> None:
        ticket = await fixed.acquire()
        fixed.record(ticket, overload=True)
        fixed.release(ticket)

    asyncio.run(overload())
    assert fixed.limit == 8 and fixed.decreases == 0
