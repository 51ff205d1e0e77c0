"""The loopback fake server itself: replies, usage counts, scripting hooks, stats endpoint."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest

from axbench_kedro.llm.errors import LLMCallError
from axbench_kedro.llm.types import LLMRequest
from fixtures.fake_openai import FakeOpenAIServer, client_for


def _chat(server, text):
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    try:
        return client.chat.completions.create(model="m", messages=[{"role": "user", "content": text}])
    finally:
        client.close()


def test_replies_queue_then_default_and_usage():
    with FakeOpenAIServer(replies=["first answer here"]) as server:
        one = _chat(server, "two words")
        two = _chat(server, "again")
    assert one.choices[0].message.content == "first answer here"
    assert (one.usage.prompt_tokens, one.usage.completion_tokens) == (2, 3)
    assert two.choices[0].message.content == "reply to: again"
    assert [r["messages"][0]["content"] for r in server.requests] == ["two words", "again"]


def test_reply_fn_scripts_by_content_with_usage_override():
    def reply(body):
        text = body["messages"][-1]["content"]
        return {"content": "YES" if "dog" in text else "NO", "prompt_tokens": 7, "completion_tokens": 1}

    with FakeOpenAIServer(reply_fn=reply) as server:
        yes = _chat(server, "a dog")
        no = _chat(server, "a cat")
    assert (yes.choices[0].message.content, no.choices[0].message.content) == ("YES", "NO")
    assert (yes.usage.prompt_tokens, yes.usage.completion_tokens) == (7, 1)


def test_broken_reply_fn_is_a_named_500(tmp_path):
    def reply(body):
        raise ValueError("script bug")

    with FakeOpenAIServer(reply_fn=reply) as server:
        client = client_for(server, None, max_attempts=2)
        with pytest.raises(LLMCallError, match="reply_fn raised ValueError: script bug"):
            client.complete_many([LLMRequest.user("x")])
    assert len(server.errors) == 2


def test_stats_endpoint_and_unknown_path():
    with FakeOpenAIServer() as server:
        _chat(server, "x")
        root = server.base_url.removesuffix("/v1")
        with urllib.request.urlopen(root + "/_fake/stats", timeout=5) as resp:
            assert json.loads(resp.read()) == {"requests": 1, "max_in_flight": 1}
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(root + "/v1/nothing", timeout=5)
        assert info.value.code == 404
