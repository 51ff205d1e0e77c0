"""Chat formats and the P/S constants (protocol §3.0, acceptance check §10.6)."""

from __future__ import annotations

import pytest

from axbench_kedro.lm.chat import (
    GEMMA_CHAT_TEMPLATE,
    chat_prefix_length,
    chat_suffix_length,
    ensure_chat_template,
    format_binary,
    format_detect,
    format_prompt,
    stop_token_ids,
)
from fixtures.tiny_models import make_tiny_tokenizer


@pytest.fixture(params=["gemma3", "gemma2"])
def tok(request, tiny_gemma3, tiny_gemma2):
    return {"gemma3": tiny_gemma3, "gemma2": tiny_gemma2}[request.param].tokenizer


def test_prefix_and_suffix_lengths(tok):
    assert chat_prefix_length(tok) == 4
    assert chat_suffix_length(tok) == 2
    ids = tok(format_prompt(tok, "anything at all"), add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids[:4]) == ["<bos>", "<start_of_turn>", "user", "\n"]


def test_prompt_format_trims_instruction(tok):
    assert (
        format_prompt(tok, "  Hi there \n")
        == "<bos><start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n"
    )


def test_detect_format(tok):
    text = format_detect(tok, "Hi", "  Yo ")
    assert text == "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nYo"
    assert text.endswith("Yo")


def test_binary_format_keeps_upstream_tail(tok):
    text = format_binary(tok, "Hi", "Yo")
    assert (
        text
        == "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nYo<end_of_turn>\n<start_of_turn>"
    )
    assert text.endswith("Yo<end_of_turn>\n<start_of_turn>")


def test_detect_starts_with_prompt_tokens(tok):
    prompt = tok(format_prompt(tok, "tell me"), add_special_tokens=False)["input_ids"]
    detect = tok(format_detect(tok, "tell me", "a story"), add_special_tokens=False)["input_ids"]
    assert detect[: len(prompt)] == prompt and len(detect) == len(prompt) + 2


def test_template_supplied_when_missing():
    tok = make_tiny_tokenizer()
    tok.chat_template = None
    ensure_chat_template(tok)
    assert tok.chat_template == GEMMA_CHAT_TEMPLATE
    assert format_prompt(tok, "x").startswith("<bos><start_of_turn>user\nx")


def test_existing_template_is_kept_and_p_s_recomputed():
    tok = make_tiny_tokenizer()
    tok.chat_template = "{{ bos_token }}{% for m in messages %}{{ m['content'] | trim }}\n{% endfor %}"
    ensure_chat_template(tok)
    assert "for m in messages" in tok.chat_template
    assert chat_prefix_length(tok) == 1 and chat_suffix_length(tok) == 1


def test_system_message_folds_into_first_user_turn(tok):
    text = tok.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert text == "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"


def test_stop_tokens(tok):
    assert stop_token_ids(tok) == [1, tok.convert_tokens_to_ids("<end_of_turn>")]
