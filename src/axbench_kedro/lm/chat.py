"""Chat formatting of the target model (protocol §3.0: F-prompt, F-detect, F-binary, P and S).

Every formatted string starts with the literal ``<bos>`` and is meant to be tokenized with
``add_special_tokens=False``. Tokenizers without a chat template (the base ``google/gemma-3-270m``) get
:data:`GEMMA_CHAT_TEMPLATE`, the Gemma turn format written for this project.

Example:
    >>> format_prompt(tok, "  Hi ")
    '<bos><start_of_turn>user\\nHi<end_of_turn>\\n<start_of_turn>model\\n'
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = [
    "GEMMA_CHAT_TEMPLATE",
    "ensure_chat_template",
    "format_prompt",
    "format_detect",
    "format_binary",
    "chat_prefix_length",
    "chat_suffix_length",
    "stop_token_ids",
    "turn_end_suffix",
]

# Gemma turn format: `<start_of_turn>{role}\n{content|trim}<end_of_turn>\n`, the assistant role is called
# `model`, a system message is folded into the first user turn (Gemma has no system role).
GEMMA_CHAT_TEMPLATE = (
    "{%- set state = namespace(system='') -%}"
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- set state.system = (message['content'] | trim) + '\\n\\n' -%}"
    "{%- else -%}"
    "{%- set role = 'model' if message['role'] in ['assistant', 'model'] else message['role'] -%}"
    "{{- '<start_of_turn>' + role + '\\n' -}}"
    "{%- if role == 'user' -%}{{- state.system -}}{%- set state.system = '' -%}{%- endif -%}"
    "{{- (message['content'] | trim) + '<end_of_turn>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}"
)

# Probe instructions used to find the tokens every templated user turn shares (P and S).
_PROBES = ("x", "Hello world.", "7", "What is the capital of France?", "\u00e9t\u00e9 ?", "(a) b\nc")


def ensure_chat_template(tokenizer: Any) -> Any:
    """Give ``tokenizer`` the Gemma turn format when it has no chat template; returns the tokenizer."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = GEMMA_CHAT_TEMPLATE
    return tokenizer


def _template(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    ensure_chat_template(tokenizer)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _cut_last_tokens(tokenizer: Any, text: str, n: int) -> str:
    """``text`` without the characters of its last ``n`` tokens (offsets when available, else decode)."""
    if n <= 0:
        return text
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc.get("offset_mapping")
    if offsets and len(offsets) >= n:
        return text[: offsets[len(offsets) - n][0]]
    return tokenizer.decode(enc["input_ids"][:-n], skip_special_tokens=False)  # pragma: no cover


def format_prompt(tokenizer: Any, instruction: str) -> str:
    """F-prompt: the user turn plus the model-turn opener (generation prompt)."""
    return _template(tokenizer, [{"role": "user", "content": instruction}], True)


def format_detect(tokenizer: Any, instruction: str, output: str) -> str:
    """F-detect: F-prompt followed by the trimmed response, without the closing turn tokens."""
    text = _template(
        tokenizer,
        [{"role": "user", "content": instruction}, {"role": "assistant", "content": output}],
        False,
    )
    return _cut_last_tokens(tokenizer, text, chat_suffix_length(tokenizer))


def format_binary(tokenizer: Any, instruction: str, output: str) -> str:
    """F-binary: the finished conversation templated with a generation prompt, last S tokens cut.

    For Gemma this ends in ``{output}<end_of_turn>\\n<start_of_turn>`` (protocol §9 decision 1).
    """
    text = _template(
        tokenizer,
        [{"role": "user", "content": instruction}, {"role": "assistant", "content": output}],
        True,
    )
    return _cut_last_tokens(tokenizer, text, chat_suffix_length(tokenizer))


class _Ref:
    """Hashable-by-identity wrapper so the tokenizer can ride through ``lru_cache``."""

    __slots__ = ("tok",)

    def __init__(self, tok: Any) -> None:
        self.tok = tok

    def __hash__(self) -> int:
        return id(self.tok)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Ref) and other.tok is self.tok


@lru_cache(maxsize=32)
def _prefix_suffix(tokenizer_ref: _Ref, template: str) -> tuple[int, int]:
    del template  # part of the cache key only: a changed template is measured again
    tok = tokenizer_ref.tok
    turns = [_ids(tok, _template(tok, [{"role": "user", "content": p}], False)) for p in _PROBES]
    first = turns[0]
    prefix = min(_common_prefix(first, other) for other in turns[1:])
    suffix = min(_common_prefix(first[::-1], other[::-1]) for other in turns[1:])
    return prefix, suffix


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def chat_prefix_length(tokenizer: Any) -> int:
    """P: number of leading tokens every templated user turn shares (Gemma: ``<bos> <start_of_turn> user \\n`` → 4)."""
    ensure_chat_template(tokenizer)
    return _prefix_suffix(_Ref(tokenizer), str(tokenizer.chat_template))[0]


def chat_suffix_length(tokenizer: Any) -> int:
    """S: number of trailing tokens every templated user turn shares (Gemma: ``<end_of_turn> \\n`` → 2)."""
    ensure_chat_template(tokenizer)
    return _prefix_suffix(_Ref(tokenizer), str(tokenizer.chat_template))[1]


def turn_end_suffix(tokenizer: Any) -> str:
    """The text the chat template closes a model turn with (Gemma: ``<end_of_turn>\\n``, two tokens).

    This is the suffix upstream's June code appends to LM-objective targets unless ``keep_orig_axbench_format`` is
    set (``training.append_eot_to_targets``, protocol §9 decision 2).
    """
    marker = "AXBENCHTURNENDMARKER"
    text = _template(
        tokenizer,
        [{"role": "user", "content": "x"}, {"role": "assistant", "content": marker}],
        False,
    )
    return text[text.rindex(marker) + len(marker) :]


def stop_token_ids(tokenizer: Any) -> list[int]:
    """Ids that end a generation: EOS and, when the vocabulary has it, ``<end_of_turn>``."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    eot = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    if isinstance(eot, int) and eot != tokenizer.unk_token_id and eot not in ids:
        ids.append(eot)
    return ids
