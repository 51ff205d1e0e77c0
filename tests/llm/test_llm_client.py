"""LLMClient: cache keys and hits, cost ledger, concurrency limit, ordering, async use."""

from __future__ import annotations

import asyncio
import time

import pandas as pd
import pytest

from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.llm.ledger import USAGE_COLUMNS, Price, PriceTable
from axbench_kedro.llm.types import LLMRequest
from fixtures.fake_openai import FakeOpenAIServer, client_for

MODEL = "gpt-4o-mini"


def _req(text: str = "hello there", **kw) -> LLMRequest:
    return LLMRequest.user(text, model=MODEL, **kw)


def test_replies_follow_request_order(server, make_client):
    server.reply_fn = lambda body: body["messages"][-1]["content"].upper()
    client = make_client(max_concurrency=8)
    texts = [f"item {i}" for i in range(40)]
    replies = client.complete_many([_req(t) for t in texts])
    assert [r.text for r in replies] == [t.upper() for t in texts]
    assert all(not r.cached and r.model == MODEL for r in replies)


def test_second_identical_request_is_a_free_cache_hit(server, make_client):
    client = make_client()
    first = client.complete_many([_req()])[0]
    second = client.complete_many([_req()])[0]
    assert len(server.requests) == 1
    assert (second.text, second.input_tokens, second.output_tokens) == (
        first.text,
        first.input_tokens,
        first.output_tokens,
    )
    assert second.cached and not first.cached
    totals = client.totals()
    assert (totals.calls, totals.cache_hits) == (1, 1)
    assert totals.cost_usd == pytest.approx(Price(0.15, 0.60).cost(first.input_tokens, first.output_tokens))


def test_cache_persists_across_clients(server, make_client):
    make_client().complete_many([_req("persist me")])
    fresh = make_client()
    (reply,) = fresh.complete_many([_req("persist me")])
    assert reply.cached and len(server.requests) == 1
    assert fresh.totals().calls == 0 and fresh.totals().cache_hits == 1


def test_sampling_parameters_are_part_of_the_key(server, make_client):
    client = make_client()
    variants = [
        _req(),
        _req(sample_index=1),
        _req(temperature=0.0),
        _req(max_tokens=50),
        _req(top_p=0.9),
        LLMRequest(messages=(("system", "be brief"), ("user", "hello there")), model=MODEL),
    ]
    keys = {client.cache_key(r) for r in variants}
    assert len(keys) == len(variants)
    client.complete_many(variants)
    assert len(server.requests) == len(variants)
    # the request bodies carry the sampling parameters (calls run concurrently: arrival order is not fixed)
    temperatures = [r.get("temperature") for r in server.requests]
    assert temperatures.count(0.0) == 1 and 1.0 in temperatures
    assert any(r.get("max_tokens") == 50 for r in server.requests)
    assert any(r.get("top_p") == 0.9 for r in server.requests)


def test_request_without_model_gets_the_clients(server, make_client):
    client = make_client()
    assert client.cache_key(LLMRequest.user("x")) == client.cache_key(_req("x"))
    client.complete_many([LLMRequest.user("x")])
    assert server.requests[0]["model"] == MODEL


def test_request_for_another_model_is_refused(make_client):
    with pytest.raises(AxbenchConfigError, match="gpt-4o"):
        make_client().complete_many([LLMRequest.user("x", model="gpt-4o")])


def test_duplicates_in_one_call_make_one_request(server, make_client):
    client = make_client()
    replies = client.complete_many([_req("same"), _req("same"), _req("other"), _req("same")])
    assert len(server.requests) == 2
    assert [r.cached for r in replies] == [False, True, False, True]
    assert client.totals().calls == 2 and client.totals().cache_hits == 2


def test_ledger_totals_match_hand_computation(server, tmp_path):
    # Every reply is billed 1000 input and 200 output tokens; a second model id is priced 2.50 / 10.00.
    server.reply_fn = lambda body: {"content": "ok", "prompt_tokens": 1000, "completion_tokens": 200}
    prices = PriceTable({"gpt-4o-mini": Price(0.15, 0.60), "gpt-4o": Price(2.50, 10.00)})
    client = client_for(server, tmp_path / "a.sqlite", prices=prices)
    client.complete_many([_req(f"q{i}") for i in range(3)])
    client.complete_many([_req("q0")])  # hit: counted, free
    frame = client.usage_frame("datagen")
    assert list(frame.columns) == USAGE_COLUMNS
    row = frame.iloc[0]
    assert row["stage"] == "datagen" and row["model"] == MODEL
    assert (row["calls"], row["cache_hits"], row["input_tokens"], row["output_tokens"]) == (3, 1, 3000, 600)
    # 3 × (1000 × 0.15 + 200 × 0.60) / 1e6 = 3 × 270e-6 = 8.1e-4 USD (input and output priced separately)
    assert row["cost_usd"] == pytest.approx(8.1e-4, rel=1e-12)

    other = client_for(server, tmp_path / "b.sqlite", model="gpt-4o", prices=prices)
    other.complete_many([LLMRequest.user("z", model="gpt-4o")])
    # 1000 × 2.50 / 1e6 + 200 × 10.00 / 1e6 = 0.0025 + 0.002 = 0.0045 (not 1200 × 10.00 / 1e6 = 0.012)
    assert other.usage_frame("judge")["cost_usd"].iloc[0] == pytest.approx(0.0045, rel=1e-12)


def test_usage_frame_since_reports_one_stage(server, make_client):
    client = make_client()
    client.complete_many([_req("a"), _req("b")])
    before = client.totals()
    client.complete_many([_req("a"), _req("c")])
    row = client.usage_frame("second", since=before).iloc[0]
    assert (row["calls"], row["cache_hits"]) == (1, 1)
    whole = client.usage_frame("all").iloc[0]
    assert (whole["calls"], whole["cache_hits"]) == (3, 1)
    frame = pd.concat([client.usage_frame("x"), client.usage_frame("y")])
    assert len(frame) == 2


def test_unpriced_model_costs_zero_with_a_warning(server, tmp_path, caplog):
    client = client_for(server, tmp_path / "c.sqlite", model="my-vllm-model", prices=PriceTable({}))
    client.complete_many([LLMRequest.user("x", model="my-vllm-model")])
    assert client.totals().cost_usd == 0.0 and client.totals().calls == 1
    assert "no price" in caplog.text


def test_concurrency_limit_is_respected(tmp_path):
    with FakeOpenAIServer(latency_s=0.1) as srv:
        client = client_for(srv, tmp_path / "c.sqlite", max_concurrency=4)
        start = time.perf_counter()
        client.complete_many([_req(f"q{i}") for i in range(20)])
        elapsed = time.perf_counter() - start
        assert srv.max_in_flight == 4  # reached, never exceeded
    assert (
        0.45 <= elapsed < 5.0
    )  # 20 calls / 4 lanes × 0.1 s = 0.5 s at least; the upper bound only guards against hangs


def test_concurrency_limit_holds_across_concurrent_batches(tmp_path):
    with FakeOpenAIServer(latency_s=0.05) as srv:
        client = client_for(srv, tmp_path / "c.sqlite", max_concurrency=3)

        async def both():
            try:
                return await asyncio.gather(
                    client.acomplete_many([_req(f"a{i}") for i in range(9)]),
                    client.acomplete_many([_req(f"b{i}") for i in range(9)]),
                )
            finally:
                await client.backend.aclose()  # connections opened in this loop

        first, second = asyncio.run(both())
        assert len(first) == len(second) == 9
        assert srv.max_in_flight <= 3


def test_complete_many_works_inside_a_running_loop(server, make_client):
    client = make_client()

    async def call_sync_api():
        return client.complete_many([_req("from a notebook")])

    (reply,) = asyncio.run(call_sync_api())
    assert reply.text == "reply to: from a notebook"


def test_progress_bar_counts_calls(server, make_client, capsys):
    client = make_client()
    client.complete_many([_req(f"q{i}") for i in range(5)], desc="judge")
    err = capsys.readouterr().err
    assert "judge" in err and "5/5" in err and "call/s" in err


def test_bad_client_settings_are_config_errors(server):
    with pytest.raises(AxbenchConfigError, match="max_concurrency"):
        client_for(server, None, max_concurrency=0)
    with pytest.raises(AxbenchConfigError, match="max_attempts"):
        client_for(server, None, max_attempts=0)


def test_connections_are_reused_across_calls_and_closed(server, make_client):
    with make_client() as client:
        client.complete_many([_req("one")])
        client.complete_many([_req("two")])
        assert len(client.backend._sdks) == 1  # one SDK client (one connection pool) for both calls
        thread = client._loop._thread
        assert thread is not None and thread.is_alive()
    assert len(client.backend._sdks) == 0 and not thread.is_alive()
