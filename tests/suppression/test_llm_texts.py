"""Suppression texts (R1–R3) and many-shot examples (R4) through the cached LLM layer, on the loopback server."""

from __future__ import annotations

import pandas as pd

from axbench_kedro.suppression.multishot import EXAMPLE_COLUMNS, multishot_examples
from axbench_kedro.suppression.replies import AVOID_CONCEPT_FALLBACK, TOPICS
from axbench_kedro.suppression.texts import TEXT_COLUMNS, suppression_texts
from fixtures.fake_openai import FakeOpenAIServer, client_for
from fixtures.project_catalog import project_llm_prices, project_prompt_templates

CONCEPTS = pd.DataFrame(
    {"concept_id": [0, 5], "concept": ["cooking pasta", "Write every answer in capital letters."]}
)
POOL = pd.DataFrame({"instruction": [f"Task {i}." for i in range(12)]})


def _texts_reply(body: dict) -> str:
    prompt = body["messages"][-1]["content"]
    if "keep the concept quoted below out" in prompt:
        return "" if "pasta" in prompt else "Never talk about the rule's topic."
    if "never to follow the writing rule" in prompt:
        return "  Write in normal case.  "
    return "Rewritten: include it."


def test_texts_rows_fallbacks_and_cache(tmp_path) -> None:
    templates, prices = project_prompt_templates(), project_llm_prices()
    with FakeOpenAIServer(reply_fn=_texts_reply) as server:
        args = (CONCEPTS, POOL, client_for(server, tmp_path / "llm.sqlite"), prices, templates)
        out, usage = suppression_texts(*args, n_instructions=3, rules={5: "write in capital letters only"})
        assert (
            len(server.requests) == 2 * 3 + 2 + 1
        )  # R1 per instruction, R2 per concept, R3 per rule concept
        assert list(out.columns) == TEXT_COLUMNS and len(out) == 6
        pasta = out[out["concept_id"] == 0]
        assert pasta["suppress_original_is_fallback"].all()
        assert (
            pasta["suppress_original"].eq(AVOID_CONCEPT_FALLBACK.replace("{concept}", "cooking pasta")).all()
        )
        assert pasta["suppress_rewrite"].eq("").all() and not pasta["suppress_rewrite_is_fallback"].any()
        rule = out[out["concept_id"] == 5]
        assert rule["suppress_rewrite"].eq("Write in normal case.").all()
        r3 = [r["messages"][-1]["content"] for r in server.requests if "never to follow" in str(r)]
        assert len(r3) == 1 and "write in capital letters only" in r3[0]  # R3 gets the rule's description
        assert out["rewritten"].eq("Rewritten: include it.").all() and not out["rewritten_is_fallback"].any()
        again, _ = suppression_texts(
            CONCEPTS,
            POOL,
            client_for(server, tmp_path / "llm.sqlite"),
            prices,
            templates,
            n_instructions=3,
            rules={5: "write in capital letters only"},
        )
        assert len(server.requests) == 9  # rerun: 0 new calls
        pd.testing.assert_frame_equal(again, out)


def test_multishot_collects_until_enough_with_seeded_topics(tmp_path) -> None:
    calls: list[str] = []

    def reply(body: dict) -> str:
        prompt = body["messages"][-1]["content"]
        calls.append(prompt)
        # 3 good examples and junk per call, whatever was asked
        return (
            "Sure!\nUser: q1?\nAssistant: A1!\n\nQuestion: q2?\nAnswer: A2!\nnoise\nUser: q3?\nAssistant: A3!"
        )

    rules = pd.DataFrame({"rule": ["all_capital", "emoji"], "description": ["Use capitals.", "Use emoji."]})
    templates, prices = project_prompt_templates(), project_llm_prices()
    with FakeOpenAIServer(reply_fn=reply) as server:
        out, _ = multishot_examples(
            rules,
            client_for(server, tmp_path / "llm.sqlite"),
            prices,
            templates,
            n_examples=7,
            per_call=3,
            seed=1,
        )
        n_first = len(server.requests)
        assert n_first == 2 * 3  # ceil(7 / 3) calls per rule, each parsed to 3 examples
        assert list(out.columns) == EXAMPLE_COLUMNS
        assert out.groupby("rule").size().to_dict() == {"all_capital": 7, "emoji": 7}
        assert out[out["rule"] == "emoji"]["example_id"].tolist() == list(range(7))
        assert set(out["topic"]) <= set(TOPICS)
        assert all("Use capitals." in p or "Use emoji." in p for p in calls)
        again, _ = multishot_examples(
            rules,
            client_for(server, tmp_path / "llm.sqlite"),
            prices,
            templates,
            n_examples=7,
            per_call=3,
            seed=1,
        )
        assert len(server.requests) == n_first  # cached
        pd.testing.assert_frame_equal(again, out)


def test_multishot_gives_up_after_max_calls(tmp_path) -> None:
    rules = pd.DataFrame({"rule": ["emoji"], "description": ["Use emoji."]})
    with FakeOpenAIServer(reply_fn=lambda body: "nothing usable") as server:
        out, _ = multishot_examples(
            rules,
            client_for(server, None),
            project_llm_prices(),
            project_prompt_templates(),
            n_examples=5,
            per_call=5,
            max_calls=3,
        )
        assert len(server.requests) == 3 and out.empty
