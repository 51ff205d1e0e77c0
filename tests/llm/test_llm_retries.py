"""Retries, timeouts and failures of LLMClient + OpenAICompatibleBackend against the loopback fake server."""

from __future__ import annotations

import logging
import time

import pytest

from axbench_kedro.llm.errors import LLMCallError
from axbench_kedro.llm.openai_backend import parse_retry_after
from axbench_kedro.llm.types import LLMRequest
from fixtures.fake_openai import FAKE_API_KEY as TEST_KEY
from fixtures.fake_openai import FakeOpenAIServer, client_for

MODEL = "gpt-4o-mini"


def _req(text: str = "hello there", **kw) -> LLMRequest:
    return LLMRequest.user(text, model=MODEL, **kw)


def test_429_retry_after_is_honoured(server, make_client):
    server.add_failures(("status", 429, {"Retry-After": "1"}))
    client = make_client()
    start = time.perf_counter()
    (reply,) = client.complete_many([_req()])
    elapsed = time.perf_counter() - start
    assert reply.text == "reply to: hello there"
    assert len(server.requests) == 2
    assert 0.95 <= elapsed < 3.0  # waited the 1 s the server asked for, not the 10 ms backoff
    assert client.totals().retries == 1
    assert client.totals().calls == 1


def test_5xx_is_retried_until_success(server, make_client):
    server.add_failures(("status", 500), ("status", 503))
    client = make_client()
    (reply,) = client.complete_many([_req()])
    assert reply.text == "reply to: hello there"
    assert len(server.requests) == 3
    assert client.totals().retries == 2


def test_slow_reply_times_out_and_is_retried(server, make_client):
    server.add_failures(("sleep", 6.0))
    client = make_client(timeout_s=0.3)
    start = time.perf_counter()
    (reply,) = client.complete_many([_req()])
    elapsed = time.perf_counter() - start
    assert reply.text == "reply to: hello there"
    assert len(server.requests) == 2
    assert elapsed < 4.0  # gave up on the 6 s reply instead of waiting for it


@pytest.mark.parametrize("action", ["malformed", "no_choices"])
def test_malformed_body_is_retried(server, make_client, action):
    server.add_failures((action,))
    client = make_client()
    (reply,) = client.complete_many([_req()])
    assert reply.text == "reply to: hello there"
    assert len(server.requests) == 2


def test_exhausted_retries_raise_clear_error(server, make_client):
    server.add_failures(*[("status", 500)] * 3)
    client = make_client(max_attempts=3)
    with pytest.raises(LLMCallError) as info:
        client.complete_many([_req()])
    message = str(info.value)
    assert len(server.requests) == 3
    assert MODEL in message and "127.0.0.1" in message and "500" in message and "3 attempt" in message
    assert TEST_KEY not in message
    assert info.value.status == 500 and info.value.attempts == 3
    assert client.totals().failures == 1 and client.totals().calls == 0


def test_timeout_exhaustion_names_timeout(server, make_client):
    server.add_failures(("sleep", 1.0), ("sleep", 1.0))
    client = make_client(timeout_s=0.2, max_attempts=2)
    with pytest.raises(LLMCallError, match="timed out") as info:
        client.complete_many([_req()])
    assert info.value.status == "timeout"


def test_401_fails_at_once_with_credentials_hint(tmp_path):
    with FakeOpenAIServer(api_key="sk-the-right-key-000000") as srv:
        client = client_for(srv, tmp_path / "c.sqlite")
        with pytest.raises(LLMCallError) as info:
            client.complete_many([_req()])
        assert len(srv.requests) == 1  # no retry
    message = str(info.value)
    assert "401" in message and "openai.api_key" in message and "OPENAI_API_KEY" in message
    assert "conf/<env>/credentials.yml" in message
    assert TEST_KEY not in message


@pytest.mark.parametrize("status", [400, 403, 404])
def test_other_4xx_fail_at_once(server, make_client, status):
    server.add_failures(("status", status))
    client = make_client()
    with pytest.raises(LLMCallError, match=str(status)):
        client.complete_many([_req()])
    assert len(server.requests) == 1


def test_finished_replies_are_cached_before_a_failure(server, make_client, tmp_path):
    server.add_failures(("ok",), ("ok",), ("status", 400))
    client = make_client(max_concurrency=1)
    requests = [_req(f"question {i}") for i in range(4)]
    with pytest.raises(LLMCallError):
        client.complete_many(requests)
    again = make_client()  # a fresh process would see the same file
    replies = again.complete_many(requests[:2])
    assert all(r.cached for r in replies)
    assert len(server.requests) == 3


def test_key_never_logged(server, make_client, caplog):
    caplog.set_level(logging.DEBUG)
    server.add_failures(("status", 429, {"Retry-After": "0"}), ("status", 500))
    client = make_client()
    client.complete_many([_req()])
    server.add_failures(("status", 401))
    with pytest.raises(LLMCallError):
        client.complete_many([_req("another")])
    assert "retry 1/3" in caplog.text  # retries are logged...
    assert TEST_KEY not in caplog.text  # ...without the key
    assert TEST_KEY not in repr(client) and TEST_KEY not in repr(client.backend)
    # the key did reach the server, so it was really in use
    assert server.headers[0]["authorization"] == f"Bearer {TEST_KEY}"


def test_sdk_retries_are_off(server, make_client):
    server.add_failures(("status", 500))
    client = make_client(max_attempts=1)
    with pytest.raises(LLMCallError):
        client.complete_many([_req()])
    assert len(server.requests) == 1


def test_parse_retry_after_forms():
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= parse_retry_after({"Retry-After": date}) <= 31


def test_unreachable_server_is_retried_then_named(tmp_path):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    class Nowhere:
        base_url = f"http://127.0.0.1:{port}/v1"

    client = client_for(Nowhere, tmp_path / "c.sqlite", max_attempts=2)
    with pytest.raises(LLMCallError, match=rf"127\.0\.0\.1:{port}.*2 attempt.*connection error") as info:
        client.complete_many([_req()])
    assert info.value.status == "connection"
