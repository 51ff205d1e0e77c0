"""Steering prompts (protocol §1.10, §5.1): instructions per concept and the prompt grid every method answers.

Example:
    >>> frame = steering_prompt_frame(concepts_meta, instructions, texts, tokenizer,
    ...                               dataset_name="AlpacaEval", n_instructions=20, factors=[0.5, 1.0])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from axbench_kedro.errors import AxbenchDataError

__all__ = ["PROMPT_COLUMNS", "check_concepts", "sample_instructions", "steering_prompt_frame"]

PROMPT_COLUMNS = [
    "dataset_name",
    "concept_id",
    "input_concept",
    "input_id",
    "factor",
    "original_prompt",
    "input",
    "steered_input",
    "steered_prompt",
    "suppress_original",
    "suppress_rewrite",
    "defense",
    "sae_link",
    "sae_id",
]


def sample_instructions(instructions: pd.DataFrame, concept_id: int, n: int) -> list[str]:
    """The concept's steering instructions: ``instructions.sample(n, random_state=concept_id)`` (protocol §5.1).

    The file order of ``instructions`` matters (pandas sampling depends on it); ``input_id`` = position in the
    returned list.

    Raises:
        AxbenchDataError: no ``instruction`` column, or fewer than ``n`` rows.
    """
    if "instruction" not in instructions.columns:
        raise AxbenchDataError(
            f"steering_instructions: missing column 'instruction' (columns: {list(instructions.columns)})"
        )
    if len(instructions) < n:
        raise AxbenchDataError(f"steering_instructions: {len(instructions)} rows, {n} needed per concept")
    return instructions.sample(n=n, random_state=int(concept_id))["instruction"].astype(str).tolist()


def check_concepts(concepts_meta: pd.DataFrame) -> pd.DataFrame:
    """``concepts_meta`` sorted by ``concept_id``.

    Raises:
        AxbenchDataError: ``concept_id`` or ``concept`` is missing.
    """
    missing = [c for c in ("concept_id", "concept") if c not in concepts_meta.columns]
    if missing:
        raise AxbenchDataError(f"concepts_meta: missing column(s) {missing}")
    return concepts_meta.sort_values("concept_id", kind="stable").reset_index(drop=True)


def steering_prompt_frame(
    concepts_meta: pd.DataFrame,
    steering_instructions: pd.DataFrame,
    prompt_steering_texts: pd.DataFrame,
    tokenizer: Any,
    *,
    dataset_name: str,
    n_instructions: int,
    factors: Sequence[float],
) -> pd.DataFrame:
    """One row per concept × instruction × factor (``PROMPT_COLUMNS``).

    ``input`` = F-prompt(instruction); ``steered_input`` = F-prompt(steering text + blank line + ``Question: `` +
    instruction) (§3.9, Jun form).

    Args:
        concepts_meta: ``concept_id, concept`` (and optionally ``sae_id``, ``ref``).
        steering_instructions: the instruction pool (file order matters, see :func:`sample_instructions`).
        prompt_steering_texts: ``concept_id, text`` of the Prompt baseline.
        tokenizer: the target model's tokenizer (chat template).
        dataset_name: value of the ``dataset_name`` column.
        n_instructions: instructions per concept.
        factors: the shared factor grid.

    Raises:
        AxbenchDataError: a concept without a steering text, or a malformed input table.
    """
    from axbench_kedro.lm.chat import format_prompt

    concepts = check_concepts(concepts_meta)
    steer = dict(
        zip(prompt_steering_texts["concept_id"].astype(int), prompt_steering_texts["text"], strict=True)
    )
    rows = []
    for rec in concepts.to_dict("records"):
        cid = int(rec["concept_id"])
        if cid not in steer:
            raise AxbenchDataError(f"prompt_steering_texts: no steering text for concept_id {cid}")
        sae_id = rec.get("sae_id", -1)
        sae_id = -1 if sae_id is None or pd.isna(sae_id) else int(sae_id)
        instructions = sample_instructions(steering_instructions, cid, n_instructions)
        for input_id, instruction in enumerate(instructions):
            base = {
                "dataset_name": dataset_name,
                "concept_id": cid,
                "input_concept": str(rec["concept"]),
                "input_id": input_id,
                "original_prompt": instruction,
                "input": format_prompt(tokenizer, instruction),
                "steered_input": format_prompt(tokenizer, f"{steer[cid]}\n\nQuestion: {instruction}"),
                "steered_prompt": "",
                "suppress_original": "",
                "suppress_rewrite": "",
                "sae_link": str(rec.get("ref", "null") or "null"),
                "sae_id": sae_id,
            }
            for factor in factors:
                rows.append({**base, "factor": float(factor), "defense": []})
    out = pd.DataFrame(rows, columns=PROMPT_COLUMNS)
    return out.astype({"concept_id": "int64", "input_id": "int64", "factor": "float64", "sae_id": "int64"})
