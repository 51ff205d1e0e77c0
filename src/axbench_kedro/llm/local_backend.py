"""Backend that answers with a transformers causal LM in this process (by default the target model), batched.

Messages become one prompt string that starts with the literal ``<bos>``:

* raw (completion style): ``<bos>`` + the message texts joined by blank lines, fed as is. Base models (the
  embedded ``google/gemma-3-270m``) get this by default: they continue text, they do not follow turns.
* chat: the model's chat format (``lm.chat.format_prompt`` for one user message, the chat template for longer
  conversations). Instruction-tuned models get this by default.

``LLMRequest.raw_prompt`` overrides the choice per request. Temperature 0 is greedy decoding; otherwise each
request samples from its own random stream, keyed by the hash of its content (sample index included) and the
backend seed: different sample indices differ, and a request gives the same text whichever batch it lands in.
Token counts are the real tokenizer counts; the cost is 0.

The top-k cut and the seed are backend settings, not request fields: :meth:`LocalBackend.cache_key_extras` hands them
to the client's reply cache key (for sampled requests, when not 0), so a reply sampled with another top-k or seed
is never reused (and keys made before these settings existed stay valid).

Example:
    >>> backend = LocalBackend(load_target_model(ModelSpec()))
    >>> client = LLMClient(backend, cache="data/02_intermediate/llm_cache.sqlite")
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any, Literal

from axbench_kedro.cache import content_key
from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.llm.types import LLMRequest, LLMResponse
from axbench_kedro.lm.types import TargetModel

__all__ = ["LocalBackend", "is_base_model"]

PromptStyle = Literal["auto", "raw", "chat"]


def is_base_model(tm: TargetModel) -> bool:
    """True for models without a chat template of their own (the embedded model, GGUF base models)."""
    from axbench_kedro.lm.chat import GEMMA_CHAT_TEMPLATE

    if tm.spec.source == "embedded":
        return True
    template = getattr(tm.tokenizer, "chat_template", None)
    # `lm.chat.ensure_chat_template` gives template-less tokenizers the project's Gemma format.
    return not template or template == GEMMA_CHAT_TEMPLATE


class LocalBackend:
    """In-process generation with a :class:`~axbench_kedro.lm.types.TargetModel`.

    Args:
        target_model: the loaded model (``lm.loading.load_target_model``).
        batch_size: requests per generation batch (also the client's batch size).
        prompt_style: ``auto`` (base model → raw, chat model → chat), ``raw`` or ``chat``.
        default_max_tokens: new-token cap when a request has no ``max_tokens``.
        top_k: top-k cut for sampling (0 = none, like OpenAI-style servers).
        seed: run seed of the sampling streams.
    """

    name = "local"
    location = "in-process"
    free = True
    max_in_flight = 1  # one generation at a time: the model is shared and compute-bound

    def __init__(
        self,
        target_model: TargetModel,
        *,
        batch_size: int = 16,
        prompt_style: PromptStyle = "auto",
        default_max_tokens: int = 256,
        top_k: int = 0,
        seed: int = 0,
    ) -> None:
        if batch_size < 1:
            raise AxbenchConfigError(f"local LLM batch_size must be >= 1, got {batch_size}")
        if prompt_style not in ("auto", "raw", "chat"):
            raise AxbenchConfigError(
                f"local LLM prompt_style must be auto, raw or chat, got {prompt_style!r}"
            )
        if default_max_tokens < 1:
            raise AxbenchConfigError(f"local LLM default_max_tokens must be >= 1, got {default_max_tokens}")
        if top_k < 0:
            raise AxbenchConfigError(f"local LLM top_k must be >= 0 (0 = no cut), got {top_k}")
        self.tm = target_model
        self.model = target_model.name
        self.max_batch_size = int(batch_size)
        self.prompt_style = prompt_style
        self.default_raw = is_base_model(target_model) if prompt_style == "auto" else prompt_style == "raw"
        self.default_max_tokens = int(default_max_tokens)
        self.top_k = int(top_k)
        self.seed = int(seed)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        style = "raw" if self.default_raw else "chat"
        return (
            f"LocalBackend(model={self.model!r}, batch_size={self.max_batch_size}, prompt_style={style!r}, "
            f"top_k={self.top_k})"
        )

    # -- prompt rendering ----------------------------------------------------------------------------------------
    def render(self, req: LLMRequest) -> str:
        """The exact string fed to the model (starts with ``<bos>``; tokenized without special tokens)."""
        tok = self.tm.tokenizer
        raw = self.default_raw if req.raw_prompt is None else req.raw_prompt
        if raw:
            return (tok.bos_token or "") + req.text
        from axbench_kedro.lm.chat import ensure_chat_template, format_prompt

        roles = [role for role, _ in req.messages]
        if roles == ["user"]:
            return format_prompt(tok, req.messages[0][1])
        if roles[-1] != "user":
            raise AxbenchConfigError("a chat-formatted local LLM request must end with a user message")
        ensure_chat_template(tok)
        messages = [{"role": role, "content": content} for role, content in req.messages]
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def count_tokens(self, text: str) -> int:
        """Tokens of a formatted string (no special tokens added: ``<bos>`` is in the text)."""
        return len(self.tm.tokenizer(text, add_special_tokens=False)["input_ids"])

    def cache_key_extras(self, req: LLMRequest) -> dict[str, int]:
        """Backend settings that change ``req``'s reply, for the client's cache key: ``top_k`` and ``seed`` when
        sampled and not 0 (greedy replies depend on neither; 0 adds nothing, which keeps older keys valid)."""
        if req.temperature == 0:
            return {}
        return {name: value for name, value in (("top_k", self.top_k), ("seed", self.seed)) if value}

    # -- generation ----------------------------------------------------------------------------------------------
    def _group_key(self, req: LLMRequest) -> tuple[Any, ...]:
        max_new = req.max_tokens or self.default_max_tokens
        if req.temperature == 0:
            return ("greedy", max_new)
        return ("sample", max_new, float(req.temperature), float(req.top_p or 1.0))

    @staticmethod
    def _row_key(req: LLMRequest) -> int:
        """A 32-bit key of the request's content: the key of its own random stream."""
        return int(content_key(req.key_payload())[:8], 16)

    def _generate(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]:
        from axbench_kedro.lm.generation import generate_greedy, sample_generate

        prompts = [self.render(r) for r in requests]
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault(self._group_key(req), []).append(i)
        texts: list[str] = [""] * len(requests)
        new_tokens: list[int] = [0] * len(requests)
        finish: list[str | None] = [None] * len(requests)
        with self._lock:
            for key, rows in groups.items():
                group_prompts = [prompts[i] for i in rows]
                if key[0] == "greedy":
                    gens = generate_greedy(self.tm, group_prompts, key[1], self.max_batch_size)
                else:
                    gens = sample_generate(
                        self.tm,
                        group_prompts,
                        max_new_tokens=key[1],
                        batch_size=self.max_batch_size,
                        seed=self.seed,
                        temperature=key[2],
                        top_k=self.top_k,
                        top_p=key[3],
                        row_keys=[self._row_key(requests[i]) for i in rows],
                    )
                for i, gen in zip(rows, gens, strict=True):
                    texts[i] = gen.text
                    new_tokens[i] = int(gen.n_new_tokens)
                    finish[i] = gen.finish_reason
        return [
            LLMResponse(
                text=texts[i],
                input_tokens=self.count_tokens(prompts[i]),
                output_tokens=new_tokens[i],
                cached=False,
                model=self.model,
                finish_reason=finish[i],
            )
            for i in range(len(requests))
        ]

    async def complete(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]:
        """Generate for a batch in a worker thread (the event loop stays free)."""
        if not requests:
            return []
        return await asyncio.to_thread(self._generate, list(requests))

    async def aclose(self) -> None:
        """Nothing to close (the model belongs to the process-wide model cache)."""
        return None
