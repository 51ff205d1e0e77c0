"""The P1 steering-instruction call [D 31]: no cap by default; finish reasons are recorded for the OpenAI-compatible
backend (loopback server) and the local backend; replies cut at a cap are kept, counted and logged by concept."""

from __future__ import annotations

import logging

import pandas as pd

from axbench_kedro.config.steering_eval import PromptSteeringParams, SteeringEvalParams
from axbench_kedro.llm.client import LLMClient
from axbench_kedro.llm.local_backend import LocalBackend
from axbench_kedro.llm.types import LLMRequest
from axbench_kedro.steering.prompt_baseline import TEXT_COLUMNS, steering_instruction_texts
from fixtures.fake_openai import FakeOpenAIServer, client_for
from fixtures.project_catalog import project_llm_prices, project_prompt_templates

CONCEPTS = pd.DataFrame(
    {"concept_id": [0, 1, 2], "concept": ["rental services", "astronomy and stars", "cooking pasta"]}
)


def _reply(body: dict) -> dict:
    prompt = body["messages"][-1]["content"]
    if "astronomy" in prompt:
        return {"content": "Talk about stars and galaxies in every", "finish_reason": "length"}
    return {
        "content": f"Always bring up {'renting' if 'rental' in prompt else 'pasta'}.",
        "finish_reason": "stop",
    }


def test_defaults_have_no_cap() -> None:
    assert PromptSteeringParams().max_tokens is None
    assert SteeringEvalParams().prompt_steering.max_tokens is None


def test_openai_finish_reason_is_read_and_cached(tmp_path) -> None:
    with FakeOpenAIServer(reply_fn=_reply) as server:
        client = client_for(server, tmp_path / "llm.sqlite")
        reqs = [LLMRequest.user(f"about {c}") for c in ("rental", "astronomy", "astronomy")]
        first = client.complete_many(reqs)
        assert [r.finish_reason for r in first] == ["stop", "length", "length"]
        assert [r.truncated for r in first] == [False, True, True]
        assert not first[1].cached and first[2].cached  # a repeat inside the batch is served like a hit
        again = client_for(server, tmp_path / "llm.sqlite").complete_many(reqs)
        assert all(r.cached for r in again) and [r.finish_reason for r in again] == [
            "stop",
            "length",
            "length",
        ]
        assert len(server.requests) == 2


def test_local_backend_reports_length_at_the_cap(tiny_gemma3) -> None:
    from axbench_kedro.lm.chat import format_prompt, stop_token_ids
    from axbench_kedro.lm.generation import _finish, generate_greedy

    tok = tiny_gemma3.tokenizer
    stops = stop_token_ids(tok)
    words = tok("the cat sit", add_special_tokens=False)["input_ids"]
    cut = _finish(tok, words, stops)
    ended = _finish(tok, [*words[:2], stops[0], tok.pad_token_id], stops)
    assert (cut.finish_reason, cut.n_new_tokens, cut.text) == ("length", 3, "the cat sit")
    assert (ended.finish_reason, ended.n_new_tokens) == ("stop", 3)

    questions = ["Tell me a story about a dog.", "Name a color.", "Hi"]
    client = LLMClient(LocalBackend(tiny_gemma3, batch_size=4, prompt_style="chat"), cache=None)
    replies = client.complete_many([LLMRequest.user(q, temperature=0.0, max_tokens=3) for q in questions])
    expected = generate_greedy(tiny_gemma3, [format_prompt(tok, q) for q in questions], 3, 1)
    assert [r.finish_reason for r in replies] == [g.finish_reason for g in expected]
    for reply in replies:
        assert reply.finish_reason in ("stop", "length")
        assert reply.truncated == (reply.finish_reason == "length")
        if reply.truncated:
            assert reply.output_tokens == 3


def test_cut_replies_are_kept_counted_and_logged(tmp_path, caplog) -> None:
    with FakeOpenAIServer(reply_fn=_reply) as server:
        client = client_for(server, tmp_path / "llm.sqlite")
        cfg = PromptSteeringParams(max_tokens=8)
        with caplog.at_level(logging.WARNING, logger="axbench_kedro.steering.prompt_baseline"):
            texts, usage = steering_instruction_texts(
                CONCEPTS, client, project_llm_prices(), project_prompt_templates(), cfg
            )
        assert server.requests[0]["max_tokens"] == 8
    assert list(texts.columns) == TEXT_COLUMNS
    row = texts.set_index("concept_id")
    assert row.loc[1, "text"] == "Talk about stars and galaxies in every"  # kept as is
    assert row.loc[1, "truncated"] and row.loc[1, "finish_reason"] == "length"
    assert not row.loc[0, "truncated"] and row.loc[0, "finish_reason"] == "stop"
    assert texts["truncated"].sum() == 1 and (texts["max_tokens"] == 8).all()
    logged = [r.getMessage() for r in caplog.records]
    assert any("concept_id 1:" in m and "cut at the token cap" in m for m in logged)
    assert any("1 of 3 replies were cut" in m for m in logged)
    assert usage["calls"].iloc[0] == 3


def test_uncapped_call_sends_no_max_tokens(tmp_path) -> None:
    with FakeOpenAIServer(reply_fn=_reply) as server:
        texts, _ = steering_instruction_texts(
            CONCEPTS,
            client_for(server, tmp_path / "llm.sqlite"),
            project_llm_prices(),
            project_prompt_templates(),
            PromptSteeringParams(),
        )
        assert all(
            "max_tokens" not in body and "max_completion_tokens" not in body for body in server.requests
        )
    assert texts["max_tokens"].isna().all() and texts["truncated"].sum() == 1
