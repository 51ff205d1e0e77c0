"""Frames shared by the judge tests."""

from __future__ import annotations

import pandas as pd
import pytest


@pytest.fixture
def judge_prompts() -> pd.DataFrame:
    """steering_prompts-like rows: two concepts, two instructions each."""
    rows = []
    for cid, concept in ((0, "references to rental services"), (1, "astronomy and stars")):
        for input_id, instruction in enumerate(("How do I bake bread?", "What is the capital of France?")):
            rows.append(
                {
                    "dataset_name": "AlpacaEval",
                    "concept_id": cid,
                    "input_concept": concept,
                    "input_id": input_id,
                    "factor": 1.0,
                    "original_prompt": instruction,
                    "steered_input": f"STEERED PROMPT ABOUT {concept}. Question: {instruction}",
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture
def judge_generations() -> pd.DataFrame:
    """steering_generations-like rows: method A (two factors), factor-free method F (one text for both factors)."""
    rows = []
    texts = {
        (0, 0): "Rent a bread machine from our rental service and bake bread at home.",
        (0, 1): "Paris is the capital of France.",
        (1, 0): "Bake the bread under the stars.",
        (1, 1): "The capital of France is Paris; at night you can see Jupiter and the stars.",
    }
    for (cid, input_id), text in texts.items():
        for factor in (0.5, 1.0):
            rows.append(("A", cid, input_id, factor, f"{text} (factor {factor})", factor * 10))
            rows.append(("F", cid, input_id, factor, f"{text} (prompted)", float("nan")))
    frame = pd.DataFrame(
        rows, columns=["method", "concept_id", "input_id", "factor", "steered_generation", "strength"]
    )
    frame.insert(0, "dataset_name", "AlpacaEval")
    frame["seed"] = 7
    frame["n_new_tokens"] = 12
    return frame
