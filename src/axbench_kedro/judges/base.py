"""The judge interface and its registry (protocol §1.12, §5.4).

A judge turns steered generations into ratings 0–2 on three criteria (concept, instruction, fluency).
:meth:`Judge.judge` is shared: it joins each generation to its concept and original instruction, rates every
distinct (method, concept, instruction, text) once — a factor-free method's replicated rows cost one
rating —, and writes the long ``judgements`` frame with the protocol record on every row. Subclasses only
implement :meth:`Judge.rate`.

Example:
    >>> judge = build_judge(params.judge, JudgeResources(target_model=tm, seed=42))
    >>> judgements = judge.judge(generations, prompts)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from axbench_kedro.errors import AxbenchConfigError, AxbenchDataError
from axbench_kedro.metrics.steering import CRITERIA, GENERATION_KEYS
from axbench_kedro.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from axbench_kedro.config.steering_eval import JudgeParams
    from axbench_kedro.lm.types import TargetModel

__all__ = [
    "ITEM_COLUMNS",
    "RATING_COLUMNS",
    "JUDGEMENT_COLUMNS",
    "judgement_frame",
    "JudgeResources",
    "Judge",
    "register_judge",
    "get_judge_class",
    "list_judges",
    "build_judge",
]

#: Columns of the frame handed to :meth:`Judge.rate` (one row per distinct item). ``perplexity_conditional`` is the
#: generation's perplexity given the unsteered input (protocol §5.9 [D 28]; NaN when not computed); upstream's
#: whole-sequence ``perplexity`` is never handed to a judge.
ITEM_COLUMNS = [
    "item",
    "method",
    "concept_id",
    "concept",
    "instruction",
    "generation",
    "perplexity_conditional",
]
#: Columns :meth:`Judge.rate` returns (one row per item × criterion).
RATING_COLUMNS = ["item", "criterion", "rating", "parse_ok", "raw_completion", "template_sha256"]
#: Columns of ``judgements`` (protocol §1.12) plus ``replica``: True on a row whose rating was copied from an
#: identical earlier generation (a factor-free method's factor rows); count calls and parse failures without them.
JUDGEMENT_COLUMNS = [
    *GENERATION_KEYS,
    "criterion",
    "rating",
    "parse_ok",
    "raw_completion",
    "judge_kind",
    "judge_model",
    "temperature",
    "template_sha256",
    "parse_rule",
    "seed",
    "replica",
]
_ITEM_KEYS = ["method", "dataset_name", "concept_id", "input_id", "steered_generation"]


@dataclass
class JudgeResources:
    """What a judge may need, handed over by the node; each judge takes only its own.

    Attributes:
        llm_client: the LLM judge's client, or a zero-argument callable that creates it on first use (so a
            proxy run never builds a client and never needs an API key).
        target_model: the unsteered target model (the proxy judge's perplexity).
        seed: the run seed (recorded with every judgement).
        prompt_templates: the ``prompt_templates`` catalog dataset (``{name: loader}``; the LLM judge's rubrics).
        llm_prices: the ``llm_prices`` catalog dataset, handed to the LLM client when it is created.
    """

    llm_client: Any = None
    target_model: TargetModel | None = None
    seed: int = 0
    prompt_templates: Mapping[str, Any] | None = None
    llm_prices: Mapping[str, Any] | None = None

    def client(self) -> Any:
        """The LLM client, created now if it was given as a factory, priced with ``llm_prices``."""
        from axbench_kedro.llm.client import apply_prices, resolve_client

        client = self.llm_client
        if client is None:
            raise AxbenchConfigError("judge.kind: the LLM judge needs the `judge_llm` catalog dataset")
        client = self.llm_client = resolve_client(client)
        return apply_prices(client, self.llm_prices)

    def templates(self) -> Mapping[str, Any]:
        """The prompt templates (``AxbenchConfigError`` when the node handed none)."""
        if self.prompt_templates is None:
            raise AxbenchConfigError("judge.kind: the LLM judge needs the `prompt_templates` catalog dataset")
        return self.prompt_templates


class Judge(ABC):
    """Rates steered generations on concept, instruction and fluency (0–2 each).

    Attributes:
        kind: registry name, stored as ``judge_kind`` (``llm``, ``proxy``).
        parse_rule: version of the rule that turned the raw reply into a rating.
        criteria: criteria rated, in order.
    """

    kind: ClassVar[str] = ""
    parse_rule: ClassVar[str] = ""
    criteria: ClassVar[tuple[str, ...]] = CRITERIA

    def __init__(self, *, seed: int = 0, temperature: float = 0.0) -> None:
        self.seed = int(seed)
        self.temperature = float(temperature)

    @classmethod
    @abstractmethod
    def from_config(cls, config: JudgeParams, resources: JudgeResources) -> Judge:
        """Build the judge from ``params:steering_eval.judge`` and the node's resources."""

    @property
    @abstractmethod
    def model_name(self) -> str:
        """Stored as ``judge_model`` (the LLM id, or a description of the proxy's models)."""

    @abstractmethod
    def rate(self, items: pd.DataFrame) -> pd.DataFrame:
        """Rate distinct items (``ITEM_COLUMNS``) on every criterion; returns ``RATING_COLUMNS`` rows."""

    def usage_frame(self, stage: str) -> pd.DataFrame:
        """LLM usage of this judge since it was built (empty for judges that make no LLM calls)."""
        del stage
        return pd.DataFrame()

    def record(self) -> dict[str, Any]:
        """The protocol record shared by every judgement of this judge."""
        return {
            "judge_kind": self.kind,
            "judge_model": self.model_name,
            "temperature": self.temperature,
            "parse_rule": self.parse_rule,
            "seed": self.seed,
        }

    def judge(self, generations: pd.DataFrame, prompts: pd.DataFrame) -> pd.DataFrame:
        """Rate every generation on every criterion.

        Args:
            generations: ``steering_generations`` rows (protocol §1.11).
            prompts: ``steering_prompts`` rows holding ``input_concept`` and ``original_prompt`` for each
                (dataset_name, concept_id, input_id).

        Returns:
            ``judgements``: one row per generation × criterion (``JUDGEMENT_COLUMNS``).
        """
        items, item_of_row = _distinct_items(generations, prompts)
        if not len(items):
            return pd.DataFrame(columns=JUDGEMENT_COLUMNS)
        ratings = self.rate(items)
        missing = set(RATING_COLUMNS) - set(ratings.columns)
        if missing:
            raise RuntimeError(f"judge {self.kind!r} returned no column(s) {sorted(missing)}")
        rows = generations[GENERATION_KEYS].copy()
        rows["item"] = item_of_row
        rows["replica"] = rows["item"].duplicated()  # a copy of a rating made for an identical earlier row
        out = rows.merge(ratings[RATING_COLUMNS], on="item", how="inner", validate="many_to_many")
        for key, value in self.record().items():
            out[key] = value
        return judgement_frame(out)


def judgement_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """``judgements`` rows in schema order (§1.12), sorted by generation key and criterion, with their dtypes."""
    out = rows[JUDGEMENT_COLUMNS].sort_values([*GENERATION_KEYS, "criterion"], kind="stable")
    return out.astype(
        {
            "concept_id": "int64",
            "input_id": "int64",
            "rating": "float64",
            "parse_ok": "bool",
            "seed": "int64",
            "replica": "bool",
        }
    ).reset_index(drop=True)


def _distinct_items(generations: pd.DataFrame, prompts: pd.DataFrame) -> tuple[pd.DataFrame, list[int]]:
    """Join generations to concept and instruction; one item per distinct (method, prompt, text)."""
    need = [*GENERATION_KEYS, "steered_generation"]
    missing = [c for c in need if c not in generations.columns]
    if missing:
        raise AxbenchDataError(f"steering_generations: missing column(s) {missing}")
    keys = ["dataset_name", "concept_id", "input_id"]
    lookup = prompts[[*keys, "input_concept", "original_prompt"]].drop_duplicates(keys)
    joined = generations.merge(lookup, on=keys, how="left")
    unmatched = joined["original_prompt"].isna()
    if unmatched.any():
        first = joined.loc[unmatched, keys].iloc[0].to_dict()
        raise AxbenchDataError(f"steering_generations: no steering_prompts row for {first}")
    codes = joined.groupby(_ITEM_KEYS, sort=False, dropna=False).ngroup().to_numpy()
    joined["item"] = codes
    if "perplexity_conditional" not in joined.columns:
        joined["perplexity_conditional"] = float("nan")
    items = joined.drop_duplicates("item").rename(
        columns={
            "input_concept": "concept",
            "original_prompt": "instruction",
            "steered_generation": "generation",
        }
    )
    items["generation"] = items["generation"].fillna("").astype(str)
    return items[ITEM_COLUMNS].reset_index(drop=True), codes.tolist()


_JUDGES: Registry[type[Judge]] = Registry(
    "judge", attribute="kind", package="axbench_kedro.judges", key="steering_eval.judge.kind"
)

register_judge = _JUDGES.register
"""Class decorator registering a :class:`Judge` subclass under ``kind``."""


def get_judge_class(kind: str) -> type[Judge]:
    """The judge class registered as ``kind`` (``AxbenchConfigError`` listing the known kinds otherwise)."""
    return _JUDGES.get(kind)


def list_judges() -> list[str]:
    """Registered judge kinds, sorted."""
    return _JUDGES.names()


def build_judge(config: JudgeParams, resources: JudgeResources) -> Judge:
    """Instantiate the judge named by ``config.kind``."""
    return get_judge_class(config.kind).from_config(config, resources)
