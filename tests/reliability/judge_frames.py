"""Steering-generation and prompt frames of any size for the LLM-judge reliability tests, and the judge on a server."""

from __future__ import annotations

from typing import Any

import pandas as pd

from axbench_kedro.config.steering_eval import JudgeParams, LLMCallParams
from axbench_kedro.judges import JudgeResources, LLMJudge, build_judge
from fixtures.project_catalog import project_llm_prices, project_prompt_templates

#: What a well-behaved judge model answers (enough words before the rating that a cut reply loses it).
GOOD_REPLY = "The fragment reads well and fits.\nRating: [[2]]"


def judge_frames(n_generations: int, n_concepts: int = 4) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(steering_generations, steering_prompts)`` with ``n_generations`` distinct texts of one method
    (3 judge calls each)."""
    per_concept = -(-n_generations // n_concepts)
    prompts, generations = [], []
    for i in range(n_generations):
        cid, input_id = divmod(i, per_concept)
        prompts.append(
            {
                "dataset_name": "AlpacaEval",
                "concept_id": cid,
                "input_concept": f"concept number {cid}",
                "input_id": input_id,
                "factor": 1.0,
                "original_prompt": f"Question {input_id} about something?",
                "steered_input": f"steered {cid} {input_id}",
            }
        )
        generations.append(
            {
                "dataset_name": "AlpacaEval",
                "method": "A",
                "concept_id": cid,
                "input_id": input_id,
                "factor": 1.0,
                "steered_generation": f"Generated text {i} for concept {cid}.",
                "strength": 1.0,
                "seed": 7,
                "n_new_tokens": 8,
            }
        )
    return pd.DataFrame(generations), pd.DataFrame(prompts)


def llm_judge(client: Any, **call_settings: Any) -> LLMJudge:
    """The LLM judge built as the pipeline builds it (``params`` → ``build_judge``), its call settings from
    ``LLMCallParams(**call_settings)``."""
    params = JudgeParams(kind="llm", client=LLMCallParams(**call_settings))
    resources = JudgeResources(
        llm_client=client,
        seed=42,
        prompt_templates=project_prompt_templates(),
        llm_prices=project_llm_prices(),
    )
    judge = build_judge(params, resources)
    assert isinstance(judge, LLMJudge)
    return judge
