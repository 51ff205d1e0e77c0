"""LocalBackend on the tiny Gemma-3 fixture: prompt rendering, token counts, greedy determinism, batching."""

from __future__ import annotations

import pytest

from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.llm.client import LLMClient
from axbench_kedro.llm.local_backend import LocalBackend, is_base_model
from axbench_kedro.llm.types import LLMRequest
from axbench_kedro.lm.chat import format_prompt
from axbench_kedro.lm.generation import generate_greedy

QUESTIONS = [
    "Tell me a story about a dog.",
    "What is two plus two?",
    "Write a short song about the sea.",
    "Hi",
    "Explain the rules of the game.",
    "Name a color.",
]


class Recorder(LocalBackend):
    """LocalBackend that records the size of every batch it receives."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batch_sizes: list[int] = []

    async def complete(self, requests):
        self.batch_sizes.append(len(requests))
        return await super().complete(requests)


def test_prompt_rendering(tiny_gemma3):
    raw = LocalBackend(tiny_gemma3, prompt_style="raw")
    chat = LocalBackend(tiny_gemma3, prompt_style="chat")
    req = LLMRequest.user("The dog ran to the")
    assert raw.render(req) == "<bos>The dog ran to the"
    assert chat.render(req) == format_prompt(tiny_gemma3.tokenizer, "The dog ran to the")
    # the request flag overrides the backend default
    assert chat.render(LLMRequest.user("x", raw_prompt=True)) == "<bos>x"
    assert raw.render(LLMRequest.user("x", raw_prompt=False)) == format_prompt(tiny_gemma3.tokenizer, "x")
    # system + user in chat style: Gemma folds the system text into the user turn
    both = chat.render(LLMRequest(messages=(("system", "Be brief."), ("user", "Hi"))))
    assert both == "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    with pytest.raises(AxbenchConfigError, match="end with a user message"):
        chat.render(LLMRequest(messages=(("user", "Hi"), ("assistant", "Yo"))))


def test_base_model_detection(tiny_gemma3):
    # The fixture carries the project's Gemma template (what template-less base models are given) → base.
    assert is_base_model(tiny_gemma3)
    assert LocalBackend(tiny_gemma3).default_raw


def test_greedy_is_deterministic_batched_and_counted(tiny_gemma3):
    backend = Recorder(tiny_gemma3, batch_size=4, prompt_style="chat")
    requests = [LLMRequest.user(q, temperature=0.0, max_tokens=8) for q in QUESTIONS]
    first = LLMClient(backend, cache=None).complete_many(requests)
    assert sorted(backend.batch_sizes) == [2, 4]  # 6 requests → batches of at most 4
    second = LLMClient(backend, cache=None).complete_many(list(reversed(requests)))
    assert [r.text for r in first] == [r.text for r in reversed(second)]
    prompts = [format_prompt(tiny_gemma3.tokenizer, q) for q in QUESTIONS]
    expected = generate_greedy(tiny_gemma3, prompts, max_new_tokens=8, batch_size=1)
    tok = tiny_gemma3.tokenizer
    for reply, gen, prompt in zip(first, expected, prompts, strict=True):
        assert reply.text == gen.text
        assert reply.output_tokens == gen.n_new_tokens
        assert reply.input_tokens == len(tok(prompt, add_special_tokens=False)["input_ids"])
        assert reply.model == tiny_gemma3.name and not reply.cached


def test_sampling_seeded_by_request(tiny_gemma3):
    backend = LocalBackend(tiny_gemma3, batch_size=4, prompt_style="chat")
    client = LLMClient(backend, cache=None)
    samples = [
        LLMRequest.user("Tell me a story about a dog.", max_tokens=12, sample_index=i) for i in range(4)
    ]
    replies = client.complete_many(samples)
    assert len({r.text for r in replies}) > 1  # different sample indices, different draws
    # the same request alone, in a fresh client, gives the same text as inside the batch
    alone = LLMClient(backend, cache=None).complete_many([samples[2]])[0]
    assert alone.text == replies[2].text


def test_local_client_is_free_and_cached(tiny_gemma3, tmp_path):
    client = LLMClient(LocalBackend(tiny_gemma3, batch_size=4), cache=tmp_path / "local.sqlite")
    client.use_prices({"models": {client.model: {"input": 5.0, "output": 5.0}}})  # in-process: still free
    req = LLMRequest.user("The cat sat on the", temperature=0.0, max_tokens=5)
    first = client.complete_many([req])[0]
    second = client.complete_many([req])[0]
    assert second.cached and second.text == first.text
    row = client.usage_frame("datagen").iloc[0]
    assert (row["calls"], row["cache_hits"], row["cost_usd"]) == (1, 1, 0.0)
    assert row["input_tokens"] == first.input_tokens > 0


def test_cache_key_holds_top_k_and_seed_of_sampled_requests(tiny_gemma3, tmp_path):
    from axbench_kedro.cache import content_key
    from axbench_kedro.llm.client import CACHE_VERSION

    sampled = LLMRequest.user("Tell me a story about a dog.", max_tokens=6)
    greedy = LLMRequest.user("Tell me a story about a dog.", max_tokens=6, temperature=0.0)

    def key(req, **kw):
        return LLMClient(LocalBackend(tiny_gemma3, **kw), cache=None).cache_key(req)

    assert key(sampled, top_k=50) != key(sampled, top_k=0) != key(sampled, top_k=0, seed=1)
    assert key(sampled, top_k=50) != key(sampled, top_k=40)
    assert key(greedy, top_k=50) == key(greedy, top_k=0)  # greedy replies depend on neither
    # top-k 0 and seed 0 add nothing: keys written before these settings existed stay valid
    legacy = content_key({"v": CACHE_VERSION, **sampled.key_payload() | {"model": tiny_gemma3.name}})
    assert key(sampled) == legacy

    # one cache file, two top-k values: the second client samples afresh instead of reusing the first reply
    path = tmp_path / "shared.sqlite"
    plain = LLMClient(LocalBackend(tiny_gemma3, batch_size=2), cache=path)
    plain.complete_many([sampled])
    cut = LLMClient(LocalBackend(tiny_gemma3, batch_size=2, top_k=50), cache=path)
    reply = cut.complete_many([sampled])[0]
    assert not reply.cached and cut.totals().calls == 1
    fresh = LLMClient(LocalBackend(tiny_gemma3, batch_size=2, top_k=50), cache=path)
    again = fresh.complete_many([sampled])[0]
    assert again.cached and again.text == reply.text
