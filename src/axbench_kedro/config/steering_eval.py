"""Parameters of the ``steering_eval`` pipeline (``params:steering_eval``, protocol §5)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from axbench_kedro.config.common import StrictModel

__all__ = [
    "PAPER_FACTORS",
    "DEFAULT_PROMPT_FALLBACK",
    "InstructionSplitParams",
    "SamplingParams",
    "PromptSteeringParams",
    "JudgeTemplates",
    "ProxyJudgeParams",
    "LLMCallParams",
    "JUDGE_MAX_TOKENS",
    "JudgeParams",
    "SteeringEvalParams",
]

#: Protocol §5.3: the 14 factors of every rank-1 method (multiplied by the magnitude base m).
PAPER_FACTORS: list[float] = [0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 4.0, 5.0]
#: The project's own fallback when the LLM returns an empty steering instruction ([D 18]); ``{concept}`` is filled.
DEFAULT_PROMPT_FALLBACK = (
    "Whatever you are asked, make {concept} a clear and central part of your answer, "
    "even where it has nothing to do with the question."
)


def _ascending_unique(values: list[float], key: str) -> list[float]:
    if not values:
        raise ValueError(f"{key} must list at least one factor")
    bad = [v for v in values if not v > 0]  # `not >` also catches NaN
    if bad:
        raise ValueError(f"{key} must hold factors > 0 (suppression negates them itself), got {bad}")
    if sorted(set(values)) != list(values):
        raise ValueError(f"{key} must be strictly ascending without duplicates, got {values}")
    return values


class InstructionSplitParams(StrictModel):
    """How many instructions each concept gets (protocol §5.1: 5 + 5).

    Attributes:
        n_selection: ids ``0 .. n_selection-1`` choose the factor.
        n_test: the next ``n_test`` ids report the Score.
    """

    n_selection: int = Field(default=5, ge=1)
    n_test: int = Field(default=5, ge=1)

    @property
    def total(self) -> int:
        return self.n_selection + self.n_test


class SamplingParams(StrictModel):
    """Steered generation (protocol §5.2).

    Attributes:
        max_new_tokens: tokens generated per row (paper 128).
        temperature, top_k, top_p: sampling distribution (paper 1.0 / 50 / 1.0).
        batch_size: rows per generation batch, mixed across concepts and factors.
        prompt_replicates: samples per instruction of factor-free methods ([D 5]; 1 = generate once, the same
            text stands for every factor of the grid; the grid length restores upstream's replication).
    """

    max_new_tokens: int = Field(default=128, ge=1)
    temperature: float = Field(default=1.0, ge=0.0)
    top_k: int = Field(default=50, ge=0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    batch_size: int = Field(default=32, ge=1)
    prompt_replicates: int = Field(default=1, ge=1)


class PromptSteeringParams(StrictModel):
    """The Prompt baseline's per-concept steering instruction (protocol §3.9, §5.7, template P1).

    Attributes:
        template: prompt template name under ``conf/base/prompts``.
        temperature: generator temperature (protocol 1.0).
        max_tokens: reply cap; ``None`` (default) = no cap, as upstream [D 31]. A cap saves cost; replies cut at
            it are kept, counted and logged, and the run card labels the run as capped.
        fallback: text used when the reply is empty; ``{concept}`` is filled with the concept.
        first_line_only: keep only the reply's first non-empty line (completion-style templates for base models
            go on writing further entries); the protocol keeps the whole stripped reply.
    """

    template: str = "prompt_steering_instruction"
    temperature: float = Field(default=1.0, ge=0.0)
    max_tokens: int | None = Field(default=None, ge=1)
    fallback: str = DEFAULT_PROMPT_FALLBACK
    first_line_only: bool = False

    @field_validator("fallback")
    @classmethod
    def _fallback_has_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt_steering.fallback must not be empty")
        return value


class JudgeTemplates(StrictModel):
    """Template names of the three LLM-judge criteria (J1–J3)."""

    concept: str = "judge_concept"
    instruction: str = "judge_instruction"
    fluency: str = "judge_fluency"


class ProxyJudgeParams(StrictModel):
    """Thresholds of the offline proxy judge (never comparable with the AxBench judge).

    Cosine similarities come from the ``all-MiniLM-L6-v2`` sentence embedder (paraphrases ≈ 0.6, unrelated
    texts ≈ 0); a rating is 2 at or above the upper threshold, 1 at or above the lower one, else 0.

    Attributes:
        concept_thresholds: (lower, upper) cosine(concept, generation).
        instruction_thresholds: (lower, upper) cosine(original instruction, generation).
        fluency_perplexity: (upper bound for 2, upper bound for 1) of the generation's perplexity under the
            unsteered model given the original F-prompt.
        min_distinct_ratio: distinct word trigrams / word trigrams below this → looping → fluency 0.
        min_words: generations with fewer words get 0 on every criterion.
        batch_size: embedding and perplexity batch size.
    """

    concept_thresholds: tuple[float, float] = (0.15, 0.35)
    instruction_thresholds: tuple[float, float] = (0.15, 0.40)
    fluency_perplexity: tuple[float, float] = (60.0, 400.0)
    min_distinct_ratio: float = Field(default=0.5, ge=0.0, le=1.0)
    min_words: int = Field(default=1, ge=0)
    batch_size: int = Field(default=32, ge=1)

    @field_validator("concept_thresholds", "instruction_thresholds", "fluency_perplexity")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError(f"thresholds must be (lower, upper) with lower <= upper, got {value}")
        return value


class LLMCallParams(StrictModel):
    """How an LLM client sends its calls (handed to ``LLMClient.configure`` by the node that uses it).

    The defaults work against OpenAI and against a local server that answers one request at a time (llama.cpp).

    Attributes:
        max_in_flight: calls in flight at most.
        adaptive: adapt the limit to the server (AIMD: start at ``initial_in_flight``, +1 per success while latency
            holds, halve on timeouts / 429 / 503); ``False`` keeps ``max_in_flight`` calls in flight.
        initial_in_flight: the adaptive limit's start.
        timeout_s: per-call timeout, counted from the send (never while a call waits for a slot); stretched to
            3 × the slowest recent reply when that is longer, up to ``max_timeout_s``.
        max_timeout_s: cap of the stretched timeout.
        max_attempts: attempts per call, the first included (protocol: 3 retries).
        retry_budget: retries allowed per batch of calls, as a fraction of its calls (at least 10).
    """

    max_in_flight: int = Field(default=32, ge=1)
    adaptive: bool = True
    initial_in_flight: int = Field(default=4, ge=1)
    timeout_s: float = Field(default=60.0, gt=0.0)
    max_timeout_s: float = Field(default=600.0, gt=0.0)
    max_attempts: int = Field(default=4, ge=1)
    retry_budget: float = Field(default=1.0, ge=0.0)

    def client_settings(self) -> dict[str, Any]:
        """Keyword arguments of ``LLMClient.configure``."""
        return {
            "max_concurrency": self.max_in_flight,
            "adaptive_concurrency": self.adaptive,
            "initial_concurrency": self.initial_in_flight,
            "timeout_s": self.timeout_s,
            "max_timeout_s": self.max_timeout_s,
            "max_attempts": self.max_attempts,
            "retry_budget": self.retry_budget,
        }


#: Default cap of a judge reply: the rubric asks for one to three sentences and a ``Rating: [[N]]`` line (well
#: under 150 tokens); the cap stops a local model that rambles without cutting a normal reply.
JUDGE_MAX_TOKENS = 256


class JudgeParams(StrictModel):
    """Which judge rates the generations (``globals.judge`` + protocol §5.4).

    Attributes:
        kind: registry name: ``proxy`` (offline) or ``llm`` (AxBench rubric).
        backend, model, base_url: the LLM judge's client (read by the ``judge_llm`` dataset; recorded here).
        temperature: LLM judge temperature (default 0 [D 27]; 0.7 reproduces the AxBench-paper judging).
        max_tokens: cap on judge replies (default 256; ``None`` = the backend's default, which on llama.cpp is no
            cap). A reply cut at the cap usually lacks its rating line: it is a counted parse failure.
        templates: template names of J1–J3.
        proxy: thresholds of the proxy judge.
        client: how the LLM judge's calls are sent (in flight, timeout, retries); see :class:`LLMCallParams`.
    """

    kind: str = "proxy"
    backend: str = "openai"
    model: str = "gpt-4o-mini-2024-07-18"
    base_url: str | None = None
    temperature: float = Field(default=0.0, ge=0.0)
    max_tokens: int | None = Field(default=JUDGE_MAX_TOKENS, ge=1)
    templates: JudgeTemplates = Field(default_factory=JudgeTemplates)
    proxy: ProxyJudgeParams = Field(default_factory=ProxyJudgeParams)
    client: LLMCallParams = Field(default_factory=LLMCallParams)


class SteeringEvalParams(StrictModel):
    """``params:steering_eval``.

    Attributes:
        methods: methods to steer with, in order; ``None`` = every method of ``method_artifacts`` that steers.
        dataset_name: ``dataset_name`` written to every row (``AlpacaEval`` for steering).
        factors: factor grid shared by the methods (protocol §5.3), ascending.
        method_factors: per-method grid overrides (e.g. RePS-SV ``[2, 4, …, 50]``), ascending.
        instructions: selection / test split sizes.
        generation: sampling settings.
        prompt_steering: the Prompt baseline's steering instruction.
        judge: judge choice and settings.
        winrate_baseline: method every other one is compared with (``Prompt``).
        compute_perplexity: store the perplexities of every generation under the unsteered model.
        sequence_perplexity: with ``compute_perplexity``, also upstream's ``perplexity`` (prompt + generation, one
            more forward pass per generation); ``False`` leaves it NaN and keeps ``perplexity_conditional`` (the
            proxy judge's fluency input) [D 28].
        perplexity_batch_size: batch size of the perplexity pass.
        n_resamples, confidence: bootstrap CI of the Overall Score in the summary.
    """

    methods: list[str] | None = None
    dataset_name: str = "AlpacaEval"
    factors: list[float] = Field(default_factory=lambda: list(PAPER_FACTORS))
    method_factors: dict[str, list[float]] = Field(default_factory=dict)
    instructions: InstructionSplitParams = Field(default_factory=InstructionSplitParams)
    generation: SamplingParams = Field(default_factory=SamplingParams)
    prompt_steering: PromptSteeringParams = Field(default_factory=PromptSteeringParams)
    judge: JudgeParams = Field(default_factory=JudgeParams)
    winrate_baseline: str = "Prompt"
    compute_perplexity: bool = True
    sequence_perplexity: bool = True
    perplexity_batch_size: int = Field(default=16, ge=1)
    n_resamples: int = Field(default=1000, ge=1)
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)

    @field_validator("factors")
    @classmethod
    def _factors_ascending(cls, value: list[float]) -> list[float]:
        return _ascending_unique(value, "steering_eval.factors")

    @model_validator(mode="after")
    def _check_overrides(self) -> SteeringEvalParams:
        for name, grid in self.method_factors.items():
            _ascending_unique(grid, f"steering_eval.method_factors.{name}")
        return self

    def factors_for(self, method: str) -> list[float]:
        """The factor grid of ``method`` (its override, else the shared grid)."""
        return list(self.method_factors.get(method, self.factors))
