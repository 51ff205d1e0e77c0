"""The AxBench LLM judge: three independent calls per generation (J1 concept, J2 instruction, J3 fluency).

Each call is one user message rendered from a project template (``judge_*`` of the ``prompt_templates`` catalog
dataset, handed over by the node) and answered at
the configured temperature (default 0, protocol §9 decision 27); the reply is parsed with the ``axbench-v1`` rule
(§5.5). The instruction criterion sees the original instruction, never the steered prompt.

Example:
    >>> templates = load_judge_templates(JudgeTemplates(), catalog.load("prompt_templates"))
    >>> judge = LLMJudge(client, templates=templates, temperature=0.0, seed=42)
    >>> judge.judge(generations, prompts)  # 3 calls per distinct generation
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.judges.base import RATING_COLUMNS, Judge, JudgeResources, register_judge
from axbench_kedro.judges.parsing import PARSE_RULE, parse_rating
from axbench_kedro.llm.templates import PromptTemplate, pick_template
from axbench_kedro.llm.types import LLMRequest

if TYPE_CHECKING:  # pragma: no cover
    from axbench_kedro.config.steering_eval import JudgeParams, JudgeTemplates

__all__ = ["LLMJudge", "load_judge_templates", "CRITERION_FIELDS"]

log = logging.getLogger(__name__)

#: Item column feeding each template placeholder, per criterion (J1–J3).
CRITERION_FIELDS: dict[str, dict[str, str]] = {
    "concept": {"concept": "concept", "generation": "generation"},
    "instruction": {"instruction": "instruction", "generation": "generation"},
    "fluency": {"generation": "generation"},
}


def load_judge_templates(
    names: JudgeTemplates, prompt_templates: Mapping[str, Any]
) -> dict[str, PromptTemplate]:
    """Pick the three judge templates from the ``prompt_templates`` catalog dataset and check each has exactly
    the placeholders its criterion fills."""
    templates = {
        criterion: pick_template(
            prompt_templates, getattr(names, criterion), f"steering_eval.judge.templates.{criterion}"
        )
        for criterion in CRITERION_FIELDS
    }
    for criterion, template in templates.items():
        expected = set(CRITERION_FIELDS[criterion])
        if set(template.fields) != expected:
            raise AxbenchConfigError(
                f"steering_eval.judge.templates.{criterion}: template {template.name!r} must use the placeholders "
                f"{sorted(expected)}, found {list(template.fields)}"
            )
    return templates


@register_judge("llm")
class LLMJudge(Judge):
    """Judge through an OpenAI-compatible (or local) LLM client.

    Args:
        client: an :class:`~axbench_kedro.llm.client.LLMClient`.
        templates: criterion → template (see :func:`load_judge_templates`).
        temperature: judge temperature.
        max_tokens: reply cap (None = backend default).
        seed: run seed, recorded.
    """

    parse_rule = PARSE_RULE

    def __init__(
        self,
        client: Any,
        templates: Mapping[str, PromptTemplate],
        *,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed, temperature=temperature)
        self.client = client
        self.templates = dict(templates)
        self.max_tokens = max_tokens
        self._since = client.totals() if hasattr(client, "totals") else None

    @classmethod
    def from_config(cls, config: JudgeParams, resources: JudgeResources) -> LLMJudge:
        client = resources.client()
        configure = getattr(client, "configure", None)
        if callable(configure):  # the call settings live in params (steering_eval.judge.client)
            configure(**config.client.client_settings())
        return cls(
            client,
            load_judge_templates(config.templates, resources.templates()),
            temperature=config.temperature,
            max_tokens=config.max_tokens,
            seed=resources.seed,
        )

    @property
    def model_name(self) -> str:
        return str(self.client.model)

    def requests(self, items: pd.DataFrame) -> list[tuple[int, str, LLMRequest]]:
        """``(item, criterion, request)`` for every item and criterion, item-major."""
        out = []
        records = items.to_dict("records")
        for record in records:
            for criterion in self.criteria:
                fields = {name: record[column] for name, column in CRITERION_FIELDS[criterion].items()}
                text = self.templates[criterion].render(**fields)
                request = LLMRequest.user(text, temperature=self.temperature, max_tokens=self.max_tokens)
                out.append((int(record["item"]), criterion, request))
        return out

    def rate(self, items: pd.DataFrame) -> pd.DataFrame:
        planned = self.requests(items)
        replies = self.client.complete_many([req for _, _, req in planned], desc="judge calls")
        rows = []
        for (item, criterion, _), reply in zip(planned, replies, strict=True):
            parsed = parse_rating(reply.text)
            rows.append(
                {
                    "item": item,
                    "criterion": criterion,
                    "rating": parsed.rating,
                    "parse_ok": parsed.ok,
                    "raw_completion": reply.text,
                    "template_sha256": self.templates[criterion].sha256,
                }
            )
        frame = pd.DataFrame(rows, columns=RATING_COLUMNS)
        failures = int((~frame["parse_ok"]).sum()) if len(frame) else 0
        if failures:
            log.warning(
                "LLM judge: %d of %d replies unparsable or out of range (rated 0)", failures, len(frame)
            )
        cut = sum(1 for reply in replies if getattr(reply, "truncated", False))
        if cut:
            log.warning(
                "LLM judge: %d of %d replies cut at max_tokens=%s (finish reason length)",
                cut,
                len(replies),
                self.max_tokens,
            )
        return frame

    def usage_frame(self, stage: str) -> pd.DataFrame:
        if not hasattr(self.client, "usage_frame"):
            return pd.DataFrame()
        return self.client.usage_frame(stage, since=self._since)
