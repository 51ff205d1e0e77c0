"""``LLMClient``: persistent cache, concurrency limit, retries and a cost ledger around any backend.

* Cache: SQLite (WAL) keyed by the content hash of model id, messages, sampling parameters and sample index, plus
  the backend settings that change a reply without being in the request (``backend.cache_key_extras(req)``, e.g.
  the local backend's top-k); a hit makes no call and costs nothing; every finished reply is written at once, so a
  killed run keeps it.
* Concurrency: at most ``max_concurrency`` backend calls in flight (per event loop).
* Retries: transient failures (429 / 5xx / timeouts / connection errors / malformed bodies) are retried with
  exponential backoff and jitter, honouring ``Retry-After``; after ``max_attempts`` an ``LLMCallError`` names
  the model, the server host and the last status. Permanent failures (other 4xx) raise at once.
* Ledger: calls, cache hits, input and output tokens, USD cost (input and output priced separately).

Example:
    >>> client = LLMClient(OpenAICompatibleBackend("gpt-4o-mini", api_key=key), cache="data/llm_cache.sqlite")
    >>> replies = client.complete_many([LLMRequest.user("Say hi.", model=client.model)], desc="demo")
    >>> client.usage_frame("demo")
"""

from __future__ import annotations

import asyncio
import logging
import random
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tqdm.auto import tqdm

from axbench_kedro.cache import SQLiteCache, content_key
from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.llm.errors import LLMCallError, TransientLLMError
from axbench_kedro.llm.ledger import FREE, CostLedger, LedgerTotals, PriceTable
from axbench_kedro.llm.loop import BackgroundLoop
from axbench_kedro.llm.types import Backend, LLMRequest, LLMResponse

__all__ = ["LLMClient", "CACHE_TABLE", "CACHE_VERSION", "apply_prices", "resolve_client"]

log = logging.getLogger(__name__)

CACHE_TABLE = "llm_replies"
CACHE_VERSION = "llm-v1"


class LLMClient:
    """Caching, rate-limited, retrying front of one backend (one model).

    Args:
        backend: an object following :class:`~axbench_kedro.llm.types.Backend`.
        cache: a :class:`SQLiteCache`, a database path, or ``None`` (in-memory: no persistence).
        max_concurrency: backend calls in flight at most.
        max_attempts: attempts per call, the first included (protocol: 3 retries → 4).
        prices: price table; ``None`` or a model missing from it costs 0 (with a warning). The in-process
            backend (``backend.free``) always costs 0.
        backoff_initial_s: first backoff before jitter; doubles per attempt.
        backoff_max_s: cap of the exponential backoff.
        seed: seed of the jitter (keeps retry timing reproducible in tests).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        cache: SQLiteCache | str | Path | None = None,
        max_concurrency: int = 32,
        max_attempts: int = 4,
        prices: PriceTable | None = None,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
        seed: int | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise AxbenchConfigError(f"LLM max_concurrency must be >= 1, got {max_concurrency}")
        if max_attempts < 1:
            raise AxbenchConfigError(f"LLM max_attempts must be >= 1, got {max_attempts}")
        if backoff_initial_s < 0 or backoff_max_s < 0:
            raise AxbenchConfigError("LLM backoff times must be >= 0")
        self.backend = backend
        self.model: str = backend.model
        self.backend_name: str = backend.name
        if cache is None:
            cache = SQLiteCache(":memory:", table=CACHE_TABLE)
        elif not isinstance(cache, SQLiteCache):
            cache = SQLiteCache(cache, table=CACHE_TABLE)
        self.cache = cache
        self.max_concurrency = int(max_concurrency)
        self.max_attempts = int(max_attempts)
        self.backoff_initial_s = float(backoff_initial_s)
        self.backoff_max_s = float(backoff_max_s)
        price = FREE if getattr(backend, "free", False) else (prices.lookup(self.model) if prices else None)
        self.ledger = CostLedger(self.model, price)
        self._rng = random.Random(seed)
        self._loop = BackgroundLoop(f"llm-{backend.name}")
        # A dropped client closes its connections and stops its loop thread.
        weakref.finalize(self, self._loop.close, backend.aclose)
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return (
            f"LLMClient(backend={self.backend_name!r}, model={self.model!r}, host={self.backend.location!r}, "
            f"max_concurrency={self.max_concurrency}, max_attempts={self.max_attempts}, cache={self.cache.path!r})"
        )

    # -- keys --------------------------------------------------------------------------------------------------
    def _normalise(self, req: LLMRequest) -> LLMRequest:
        if not isinstance(req, LLMRequest):
            raise TypeError(f"LLMClient expects LLMRequest objects, got {type(req).__name__}")
        if not req.model:
            return replace(req, model=self.model)
        if req.model != self.model:
            raise AxbenchConfigError(
                f"request for model {req.model!r} sent to the LLM client of model {self.model!r}: "
                "use one client (catalog dataset) per model"
            )
        return req

    def cache_key(self, req: LLMRequest) -> str:
        """Content hash of everything that determines the reply (model, messages, sampling, sample index, and the
        backend's own reply-changing settings such as a local top-k)."""
        return self._key(self._normalise(req))

    def _key(self, req: LLMRequest) -> str:
        payload = {"v": CACHE_VERSION, **req.key_payload()}
        extras = getattr(self.backend, "cache_key_extras", None)
        settings = extras(req) if callable(extras) else None
        if settings:  # absent when empty: keys of backends without such settings are unchanged
            payload["backend_settings"] = settings
        return content_key(payload)

    # -- public API --------------------------------------------------------------------------------------------
    def complete_many(self, requests: Sequence[LLMRequest], desc: str | None = None) -> list[LLMResponse]:
        """Replies to ``requests`` in order (sync; runs the async core on the client's own event loop).

        Args:
            requests: the requests; identical ones are answered by one call.
            desc: progress-bar label; ``None`` hides the bar.
        """
        return self._loop.run(self.acomplete_many(requests, desc))

    def complete(self, request: LLMRequest) -> LLMResponse:
        """One reply (sync)."""
        return self.complete_many([request])[0]

    async def acomplete_many(
        self, requests: Sequence[LLMRequest], desc: str | None = None
    ) -> list[LLMResponse]:
        """Async version of :meth:`complete_many` (runs in the caller's event loop)."""
        reqs = [self._normalise(r) for r in requests]
        keys = [self._key(r) for r in reqs]
        stored = self.cache.get_many(keys)
        replies: dict[str, LLMResponse] = {}
        for key, value in stored.items():
            replies[key] = LLMResponse(
                text=value["text"],
                input_tokens=int(value["input_tokens"]),
                output_tokens=int(value["output_tokens"]),
                cached=True,
                model=value.get("model", self.model),
                finish_reason=value.get("finish_reason"),
            )
        todo: dict[str, LLMRequest] = {}
        for key, req in zip(keys, reqs, strict=True):
            if key not in replies and key not in todo:
                todo[key] = req
        n_hits = len(reqs) - len(todo)
        if n_hits:
            self.ledger.record_hits(n_hits)
        if todo:
            fresh = await self._call_all(list(todo.items()), desc, n_hits)
            replies.update(fresh)
        out: list[LLMResponse] = []
        fresh_keys = set(todo)
        for key in keys:
            reply = replies[key]
            if key in fresh_keys:
                fresh_keys.discard(key)  # the first occurrence is the call; repeats are served like hits
            elif not reply.cached:
                reply = replace(reply, cached=True)
            out.append(reply)
        return out

    def use_prices(self, prices: PriceTable | Mapping[str, Any] | None) -> LLMClient:
        """Price this client's calls with ``prices`` from now on (calls already counted are re-priced).

        Args:
            prices: a :class:`PriceTable`, or what the ``llm_prices`` catalog dataset loads
                (``{"models": {id: {"input": ..., "output": ...}}}``); ``None`` keeps the current price. A model
                missing from the table costs 0 (one warning); the in-process backend always costs 0.

        Returns:
            The client itself.
        """
        if prices is None or getattr(self.backend, "free", False):
            return self
        table = prices if isinstance(prices, PriceTable) else PriceTable.from_config(prices)
        self.ledger.set_price(table.lookup(self.model))
        return self

    def totals(self) -> LedgerTotals:
        """Ledger snapshot (pass it to :meth:`usage_frame` as ``since`` to report one stage)."""
        return self.ledger.totals()

    def usage_frame(self, stage: str, since: LedgerTotals | None = None) -> pd.DataFrame:
        """One-row usage table: ``stage, model, calls, cache_hits, input_tokens, output_tokens, cost_usd``."""
        return self.ledger.usage_frame(stage, since=since)

    # -- machinery ---------------------------------------------------------------------------------------------
    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._semaphores.get(loop)
        if sem is None:
            limit = self.max_concurrency
            if self.backend.max_in_flight:
                limit = min(limit, int(self.backend.max_in_flight))
            sem = self._semaphores[loop] = asyncio.Semaphore(limit)
        return sem

    def _batches(self, items: list[tuple[str, LLMRequest]]) -> list[list[tuple[str, LLMRequest]]]:
        size = max(1, int(self.backend.max_batch_size))
        if size > 1:  # same sampling settings together, similar lengths together: less padding, fewer groups
            items = sorted(
                items,
                key=lambda kv: (
                    kv[1].temperature,
                    kv[1].top_p or 1.0,
                    kv[1].max_tokens or 0,
                    str(kv[1].raw_prompt),
                    len(kv[1].text),
                ),
            )
        return [items[i : i + size] for i in range(0, len(items), size)]

    async def _call_all(
        self, items: list[tuple[str, LLMRequest]], desc: str | None, n_hits: int
    ) -> dict[str, LLMResponse]:
        batches = iter(self._batches(items))
        results: dict[str, LLMResponse] = {}
        sem = self._semaphore()
        bar = tqdm(total=len(items), desc=desc, unit="call", disable=desc is None, dynamic_ncols=True)
        if n_hits:
            bar.set_postfix(cached=n_hits, refresh=False)

        async def worker() -> None:
            for batch in batches:  # shared iterator: each batch is taken by exactly one worker
                async with sem:
                    responses = await self._call_with_retry([req for _, req in batch])
                if len(responses) != len(batch):
                    raise RuntimeError(
                        f"LLM backend {self.backend_name!r} returned {len(responses)} replies for {len(batch)} requests"
                    )
                rows = {}
                for (key, _), resp in zip(batch, responses, strict=True):
                    results[key] = resp
                    self.ledger.record_call(resp.input_tokens, resp.output_tokens)
                    rows[key] = {
                        "text": resp.text,
                        "input_tokens": resp.input_tokens,
                        "output_tokens": resp.output_tokens,
                        "model": resp.model,
                        "finish_reason": resp.finish_reason,
                    }
                self.cache.put_many(rows)  # written at once: a killed run keeps every finished reply
                bar.update(len(batch))

        n_workers = min(self.max_concurrency, -(-len(items) // max(1, int(self.backend.max_batch_size))))
        tasks = [asyncio.ensure_future(worker()) for _ in range(max(1, n_workers))]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                exc = task.exception()
                if exc is not None:
                    raise exc
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        finally:
            bar.close()
        return results

    def _wait_seconds(self, state: RetryCallState) -> float:
        base = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (state.attempt_number - 1))
        wait = base * (0.5 + 0.5 * self._rng.random())  # exponential backoff, "equal jitter"
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            wait = max(wait, float(retry_after))
        return wait

    def _before_sleep(self, state: RetryCallState) -> None:
        self.ledger.record_retry()
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.info(
            "LLM call to %s at %s: %s; retry %d/%d in %.1f s",
            self.model,
            self.backend.location,
            exc,
            state.attempt_number,
            self.max_attempts - 1,
            wait,
        )

    async def _call_with_retry(self, batch: list[LLMRequest]) -> list[LLMResponse]:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait_seconds,
            retry=retry_if_exception_type(TransientLLMError),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self.backend.complete(batch)
        except TransientLLMError as exc:
            self.ledger.record_failure()
            raise LLMCallError(
                f"LLM call to model {self.model!r} at {self.backend.location} failed after {self.max_attempts} "
                f"attempt(s); last error: {exc}",
                model=self.model,
                location=self.backend.location,
                status=exc.status,
                attempts=self.max_attempts,
            ) from exc
        except LLMCallError:
            self.ledger.record_failure()
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the backend's connections, stop the client's event loop, close the cache."""
        self._loop.close(self.backend.aclose)
        self.cache.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve_client(client: Any) -> Any:
    """The LLM client a node was handed, built now when the catalog gave a lazy handle (a zero-argument factory);
    anything else (a client, ``None`` where no LLM is needed) is returned as it is."""
    if callable(client) and not hasattr(client, "complete_many"):
        return client()
    return client


def apply_prices(client: Any, llm_prices: PriceTable | Mapping[str, Any] | None) -> Any:
    """Hand a node's ``llm_prices`` input to its LLM client (objects without ``use_prices`` pass unchanged)."""
    use = getattr(client, "use_prices", None)
    if callable(use) and llm_prices is not None:
        use(llm_prices)
    return client
