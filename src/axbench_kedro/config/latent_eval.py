"""``params:latent_eval``: concept-detection evaluation (protocol §4, defaults §8).

Example:
    >>> p = LatentEvalParams(exclude_methods=["Prompt"])
    >>> p.prompt_detection.max_new_tokens
    512
"""

from __future__ import annotations

from pydantic import Field

from axbench_kedro.config.common import StrictModel

__all__ = ["PromptDetectionSettings", "LatentEvalParams"]


class PromptDetectionSettings(StrictModel):
    """PromptDetection (the target model rates each output with the concept rubric; protocol §3.9).

    The rater is the ``detection_rater_llm`` catalog dataset (the target model in-process; its top-k and batch size
    are set there); these settings shape each rating request.

    Attributes:
        template: prompt template name under ``conf/base/prompts/`` (placeholders ``{concept}``, ``{text}``).
        reply_prefix: text the template ends with that the reply continues (a base model is primed with
            ``Rating: [[``); it is put back in front of the reply before parsing.
        temperature: sampling temperature (protocol: 1.0).
        max_new_tokens: cap on the rating reply (protocol: 512; the embedded env lowers it for speed).
    """

    template: str = "detect_concept_rating"
    reply_prefix: str = ""
    temperature: float = Field(1.0, ge=0)
    max_new_tokens: int = Field(512, ge=1)


class LatentEvalParams(StrictModel):
    """Attributes:
    exclude_methods: trained methods left out of detection (e.g. ``[Prompt]`` to skip the LLM ratings).
    batch_size: rows per truncated forward pass (protocol: 16).
    max_length: token cap of the F-detect strings.
    imbalance_factor: negatives per positive in the imbalanced set (protocol: 100).
    keep_token_acts: also store per-token scores and tokens in ``latent_scores`` (large at paper scale).
    roc_grid_points: points of the common FPR grid of the mean ROC plot.
    use_cache: reuse scores whose inputs (model, layer, artefacts, data, settings) are unchanged.
    prompt_detection: PromptDetection settings.
    prompt_detection_imbalance: also rate every negative of the 1:100 set against every concept with
        PromptDetection (one rating generation per pair: 3 600 × 500 at paper scale; protocol [D 32]). Off: its
        ``*_imb`` metrics are null with ``imb_status`` ``opt-in``.
    """

    exclude_methods: list[str] = Field(default_factory=list)
    batch_size: int = Field(16, ge=1)
    max_length: int = Field(1024, ge=8)
    imbalance_factor: int = Field(100, ge=1)
    keep_token_acts: bool = False
    roc_grid_points: int = Field(101, ge=2)
    use_cache: bool = True
    prompt_detection: PromptDetectionSettings = Field(default_factory=PromptDetectionSettings)
    prompt_detection_imbalance: bool = False
