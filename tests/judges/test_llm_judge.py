"""LLM judge against the loopback OpenAI-compatible server: 3 independent calls per generation, parsing, record."""

from __future__ import annotations

import pandas as pd
import pytest

from axbench_kedro.config.steering_eval import JudgeParams, JudgeTemplates
from axbench_kedro.judges import JudgeResources, LLMJudge, build_judge
from axbench_kedro.judges.llm_judge import load_judge_templates
from axbench_kedro.llm.templates import pick_template
from fixtures.fake_openai import FakeOpenAIServer, client_for
from fixtures.project_catalog import project_llm_prices, project_prompt_templates, templates_from_folder

TEMPLATES = project_prompt_templates()  # what the prompt_templates catalog dataset hands the judge node


def _criterion(prompt: str) -> str:
    if "BEGIN CONCEPT" in prompt:
        return "concept"
    if "BEGIN INSTRUCTION" in prompt:
        return "instruction"
    return "fluency"


def _reply(body: dict) -> str:
    prompt = body["messages"][-1]["content"]
    criterion = _criterion(prompt)
    if criterion == "concept":
        return (
            "It is about renting.\nRating: [[2]]" if "rental" in prompt.lower() else "Absent.\nRating: [[0]]"
        )
    if criterion == "instruction":
        if "Jupiter" in prompt:
            return "Rating: [[2]] because it answers"  # unparsable under axbench-v1 → 0, counted
        return "On topic.\n**Rating:** [[2]]"
    return "Reads fine.\nRating: [[1.5]]."


def test_three_calls_per_distinct_generation(tmp_path, judge_generations, judge_prompts) -> None:
    with FakeOpenAIServer(reply_fn=_reply) as server:
        client = client_for(server, tmp_path / "llm.sqlite")
        resources = JudgeResources(
            llm_client=client, seed=42, prompt_templates=TEMPLATES, llm_prices=project_llm_prices()
        )
        judge = build_judge(JudgeParams(kind="llm"), resources)
        assert isinstance(judge, LLMJudge)
        out = judge.judge(judge_generations, judge_prompts)
        bodies = server.requests

    distinct = judge_generations.drop_duplicates(["method", "concept_id", "input_id", "steered_generation"])
    assert len(distinct) == 12  # A: 8 texts; F: 4 texts shared by its two factor rows
    assert len(bodies) == 3 * len(distinct)
    assert all(b["temperature"] == 0.0 and len(b["messages"]) == 1 for b in bodies)
    assert len(out) == 3 * len(judge_generations)
    assert out["replica"].sum() == 3 * 4

    # J2 sees the original instruction, never the steered prompt.
    j2 = [
        b["messages"][0]["content"]
        for b in bodies
        if _criterion(b["messages"][0]["content"]) == "instruction"
    ]
    assert all("STEERED PROMPT" not in text for text in j2)
    assert any("How do I bake bread?" in text for text in j2)

    ratings = out.pivot_table(
        index=["method", "concept_id", "input_id", "factor"], columns="criterion", values="rating"
    )
    assert ratings.loc[("A", 0, 0, 0.5)].to_dict() == {"concept": 2.0, "fluency": 1.5, "instruction": 2.0}
    assert ratings.loc[("A", 1, 0, 0.5), "concept"] == 0.0
    assert ratings.loc[("A", 1, 1, 1.0), "instruction"] == 0.0  # junk reply
    bad = out[~out["parse_ok"]]
    assert set(bad["criterion"]) == {"instruction"}
    assert len(bad[~bad["replica"]]) == 3  # A: two texts (one per factor); F: one text for both factors
    assert len(bad) == 4
    assert bad["raw_completion"].str.contains("because").all()

    record = out.iloc[0]
    assert record["judge_kind"] == "llm" and record["judge_model"] == "gpt-4o-mini"
    assert record["temperature"] == 0.0 and record["parse_rule"] == "axbench-v1" and record["seed"] == 42
    shas = out.groupby("criterion")["template_sha256"].unique()
    for criterion, name in (
        ("concept", "judge_concept"),
        ("instruction", "judge_instruction"),
        ("fluency", "judge_fluency"),
    ):
        assert list(shas[criterion]) == [pick_template(TEMPLATES, name, "test").sha256]


def test_rerun_is_served_from_the_cache(tmp_path, judge_generations, judge_prompts) -> None:
    with FakeOpenAIServer(reply_fn=_reply) as server:
        first = LLMJudge(
            client_for(server, tmp_path / "c.sqlite"), load_judge_templates(JudgeTemplates(), TEMPLATES)
        )
        first.judge(judge_generations, judge_prompts)
        n_calls = len(server.requests)
        again = LLMJudge(
            client_for(server, tmp_path / "c.sqlite"), load_judge_templates(JudgeTemplates(), TEMPLATES)
        )
        out = again.judge(judge_generations, judge_prompts)
        assert len(server.requests) == n_calls
    usage = again.usage_frame("judge")
    assert int(usage["calls"].iloc[0]) == 0 and int(usage["cache_hits"].iloc[0]) == n_calls
    assert len(out) == 3 * len(judge_generations)


def test_lazy_client_is_only_built_for_the_llm_judge(judge_generations) -> None:
    calls = []

    def factory():
        calls.append(1)
        raise RuntimeError("no key")

    resources = JudgeResources(llm_client=factory, target_model=None, seed=0, prompt_templates=TEMPLATES)
    with pytest.raises(RuntimeError, match="no key"):
        build_judge(JudgeParams(kind="llm"), resources)
    assert calls == [1]


def test_missing_prompt_row_is_an_error(judge_generations, judge_prompts) -> None:
    from axbench_kedro.errors import AxbenchDataError

    judge = LLMJudge(client=_NoCalls(), templates=load_judge_templates(JudgeTemplates(), TEMPLATES))
    with pytest.raises(AxbenchDataError, match="no steering_prompts row"):
        judge.judge(judge_generations, judge_prompts[judge_prompts["concept_id"] == 0])


class _NoCalls:
    model = "none"

    def complete_many(self, requests, desc=None):  # pragma: no cover - never reached
        raise AssertionError("no call expected")


def test_template_placeholders_are_checked(tmp_path) -> None:
    from axbench_kedro.errors import AxbenchConfigError

    (tmp_path / "bad.txt").write_text("Rate {generation} only.\nRating: [[N]]")
    for name in ("judge_concept", "judge_instruction", "judge_fluency"):
        (tmp_path / f"{name}.txt").write_text(pick_template(TEMPLATES, name, "test").text)
    templates = templates_from_folder(tmp_path)
    assert load_judge_templates(JudgeTemplates(), templates)["concept"].name == "judge_concept"
    with pytest.raises(AxbenchConfigError, match="templates.concept"):
        load_judge_templates(JudgeTemplates(concept="bad"), templates)


def test_unknown_template_names_the_parameter_and_the_known_templates() -> None:
    from axbench_kedro.errors import AxbenchConfigError

    with pytest.raises(AxbenchConfigError) as info:
        load_judge_templates(JudgeTemplates(fluency="judge_fluency_v2"), TEMPLATES)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("steering_eval.judge.templates.fluency: prompt template 'judge_fluency_v2'")
    assert "'judge_fluency'" in message  # the known templates are listed
    with pytest.raises(AxbenchConfigError, match="prompt_templates"):
        build_judge(JudgeParams(kind="llm"), JudgeResources(llm_client=_NoCalls()))


def test_empty_generation_frame(tmp_path, judge_prompts) -> None:
    judge = LLMJudge(client=_NoCalls(), templates=load_judge_templates(JudgeTemplates(), TEMPLATES))
    empty = pd.DataFrame(
        columns=["dataset_name", "concept_id", "input_id", "factor", "method", "steered_generation"]
    ).astype({"concept_id": "int64", "input_id": "int64", "factor": "float64"})
    assert judge.judge(empty, judge_prompts).empty
