"""``LLMClient``: persistent cache, concurrency limit, retries and a cost ledger around any backend.

* Cache: SQLite (WAL) keyed by the content hash of model id, messages, sampling parameters and sample index, plus
  the backend settings that change a reply without being in the request (``backend.cache_key_extras(req)``, e.g.
  the local backend's top-k); a hit makes no call and costs nothing; every finished reply is written at once, so a
  killed run keeps it.
* Concurrency: at most ``max_concurrency`` backend calls in flight (per event loop); by default the limit adapts
  to the server (:class:`~axbench_kedro.llm.concurrency.AdaptiveLimiter`: start at 4, grow while latency holds,
  halve on timeouts / 429 / 503), so a server that answers one request at a time is not flooded. The per-call
  timeout starts when the call is sent (never while it waits for a slot) and stretches with the observed latency.
* Retries: transient failures (429 / 5xx / timeouts / connection errors / malformed bodies) are retried with
  exponential backoff and jitter, honouring ``Retry-After``, within ``max_attempts`` per call and a retry budget
  per ``complete_many`` (``retry_budget`` × calls); a call that exhausts its attempts while the server answers
  others gets one more round at the end of the queue. Permanent failures (other 4xx) are not retried.
* Failures: the first call that fails for good stops new calls; calls in flight finish and are cached; then one
  ``LLMCallError`` names the model, the server host, the last status, and how many calls were answered, failed
  and never sent. Nothing but a complete reply is ever cached.
* Ledger: calls, cache hits, input and output tokens, USD cost (input and output priced separately).

Example:
    >>> client = LLMClient(OpenAICompatibleBackend("gpt-4o-mini", api_key=key), cache="data/llm_cache.sqlite")
    >>> replies = client.complete_many([LLMRequest.user("Say hi.", model=client.model)], desc="demo")
    >>> client.usage_frame("demo")
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from axbench_kedro.cache import SQLiteCache, content_key
from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.llm.concurrency import OVERLOAD_STATUSES, AdaptiveLimiter, Ticket
from axbench_kedro.llm.errors import LLMCallError, TransientLLMError
from axbench_kedro.llm.ledger import FREE, CostLedger, LedgerTotals, PriceTable
from axbench_kedro.llm.loop import BackgroundLoop
from axbench_kedro.llm.types import Backend, LLMRequest, LLMResponse

__all__ = ["LLMClient", "CACHE_TABLE", "CACHE_VERSION", "apply_prices", "resolve_client"]

log = logging.getLogger(__name__)

CACHE_TABLE = "llm_replies"
CACHE_VERSION = "llm-v1"
_MIN_RETRY_BUDGET = 10


@dataclass
class _Run:
    """Book-keeping of one ``complete_many``: retries left, successes, and the first failure."""

    retries_left: int
    successes: int = 0
    failed: int = 0
    error: LLMCallError | None = None

    def fail(self, error: LLMCallError, n_calls: int) -> None:
        self.failed += n_calls
        if self.error is None:
            self.error = error


class _NotSent(Exception):
    """A call left unsent because another one failed for good (internal)."""


class _Exhausted(Exception):
    """A call's transient failures outlasted its attempts (internal: the worker decides on another round)."""

    def __init__(self, error: LLMCallError) -> None:
        super().__init__(str(error))
        self.error = error


class LLMClient:
    """Caching, rate-limited, retrying front of one backend (one model).

    Args:
        backend: an object following :class:`~axbench_kedro.llm.types.Backend`.
        cache: a :class:`SQLiteCache`, a database path, or ``None`` (in-memory: no persistence).
        max_concurrency: backend calls in flight at most.
        max_attempts: attempts per call, the first included (protocol: 3 retries → 4).
        adaptive_concurrency: let the limit adapt (AIMD) within [1, ``max_concurrency``]; ``False`` = fixed.
        initial_concurrency: adaptive starting limit (``None`` = min(4, ``max_concurrency``)).
        timeout_factor: a call's timeout is at least this × the slowest recent reply (and at least the backend's
            ``timeout_s``).
        max_timeout_s: cap of that stretched timeout (``None`` = 10 × the backend's ``timeout_s``).
        retry_budget: retries allowed per ``complete_many``, as a fraction of its calls (at least 10).
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
        adaptive_concurrency: bool = True,
        initial_concurrency: int | None = None,
        timeout_factor: float = 3.0,
        max_timeout_s: float | None = None,
        retry_budget: float = 1.0,
        prices: PriceTable | None = None,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
        seed: int | None = None,
    ) -> None:
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
        self._limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AdaptiveLimiter] = (
            weakref.WeakKeyDictionary()
        )
        # The limiter used last: its limit history shows the adaptation.
        self.limiter: AdaptiveLimiter | None = None
        self.configure(
            max_concurrency=max_concurrency,
            max_attempts=max_attempts,
            adaptive_concurrency=adaptive_concurrency,
            initial_concurrency=initial_concurrency,
            timeout_factor=timeout_factor,
            max_timeout_s=max_timeout_s,
            retry_budget=retry_budget,
        )
        self.backoff_initial_s = float(backoff_initial_s)
        self.backoff_max_s = float(backoff_max_s)
        price = FREE if getattr(backend, "free", False) else (prices.lookup(self.model) if prices else None)
        self.ledger = CostLedger(self.model, price)
        self._rng = random.Random(seed)
        self._loop = BackgroundLoop(f"llm-{backend.name}")
        # A dropped client closes its connections and stops its loop thread, without blocking the collecting thread.
        weakref.finalize(self, self._loop.close, backend.aclose, wait=False)

    def __repr__(self) -> str:
        return (
            f"LLMClient(backend={self.backend_name!r}, model={self.model!r}, host={self.backend.location!r}, "
            f"max_concurrency={self.max_concurrency}, adaptive={self.adaptive_concurrency}, "
            f"max_attempts={self.max_attempts}, cache={self.cache.path!r})"
        )

    def configure(
        self,
        *,
        max_concurrency: int | None = None,
        max_attempts: int | None = None,
        adaptive_concurrency: bool | None = None,
        initial_concurrency: int | None = None,
        timeout_s: float | None = None,
        timeout_factor: float | None = None,
        max_timeout_s: float | None = None,
        retry_budget: float | None = None,
    ) -> LLMClient:
        """Change the call settings (``None`` keeps a setting); the concurrency limit starts afresh.

        Nodes hand the ``params:`` of their LLM (e.g. ``steering_eval.judge.client``) over through this, so the
        knobs live in parameters, not only in the catalog entry that builds the client.

        Args:
            max_concurrency: calls in flight at most (>= 1).
            max_attempts: attempts per call (>= 1).
            adaptive_concurrency: adapt the limit (AIMD) or keep it fixed at ``max_concurrency``.
            initial_concurrency: adaptive starting limit (>= 1).
            timeout_s: the backend's base per-call timeout (> 0; backends with a timeout only).
            timeout_factor: stretch of the timeout over the slowest recent reply (>= 1).
            max_timeout_s: cap of the stretched timeout (> 0).
            retry_budget: retries per ``complete_many`` as a fraction of its calls (>= 0).

        Returns:
            The client itself.

        Raises:
            AxbenchConfigError: a value out of range (named).
        """
        checks = (
            ("max_concurrency", max_concurrency, 1),
            ("max_attempts", max_attempts, 1),
            ("initial_concurrency", initial_concurrency, 1),
            ("timeout_factor", timeout_factor, 1),
            ("retry_budget", retry_budget, 0),
        )
        for name, value, low in checks:
            if value is not None and not value >= low:
                raise AxbenchConfigError(f"LLM {name} must be >= {low}, got {value}")
        for name, value in (("timeout_s", timeout_s), ("max_timeout_s", max_timeout_s)):
            if value is not None and not value > 0:
                raise AxbenchConfigError(f"LLM {name} must be > 0, got {value}")
        if max_concurrency is not None:
            self.max_concurrency = int(max_concurrency)
        if max_attempts is not None:
            self.max_attempts = int(max_attempts)
        if adaptive_concurrency is not None:
            self.adaptive_concurrency = bool(adaptive_concurrency)
        if initial_concurrency is not None or not hasattr(self, "initial_concurrency"):
            self.initial_concurrency = None if initial_concurrency is None else int(initial_concurrency)
        if timeout_factor is not None:
            self.timeout_factor = float(timeout_factor)
        if max_timeout_s is not None or not hasattr(self, "max_timeout_s"):
            self.max_timeout_s = None if max_timeout_s is None else float(max_timeout_s)
        if retry_budget is not None:
            self.retry_budget = float(retry_budget)
        if timeout_s is not None and hasattr(self.backend, "timeout_s"):
            self.backend.timeout_s = float(timeout_s)
        self._limiters.clear()
        return self

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
    def _limiter(self) -> AdaptiveLimiter:
        loop = asyncio.get_running_loop()
        limiter = self._limiters.get(loop)
        if limiter is None:
            limit = self.max_concurrency
            if self.backend.max_in_flight:
                limit = min(limit, int(self.backend.max_in_flight))
            initial = self.initial_concurrency
            limiter = self._limiters[loop] = AdaptiveLimiter(
                limit,
                initial=None if initial is None else min(initial, limit),
                adaptive=self.adaptive_concurrency,
            )
        self.limiter = limiter
        return limiter

    def _call_timeout(self, limiter: AdaptiveLimiter) -> float | None:
        """The timeout of the next call: the backend's, stretched by the observed latency (a queueing server is
        slow, not dead), capped at ``max_timeout_s``; ``None`` for backends without a per-call timeout."""
        base = getattr(self.backend, "timeout_s", None)
        if not getattr(self.backend, "per_call_timeout", False) or not base:
            return None
        cap = self.max_timeout_s if self.max_timeout_s is not None else 10.0 * float(base)
        return limiter.timeout_s(float(base), factor=self.timeout_factor, cap_s=max(cap, float(base)))

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
        batches = self._batches(items)
        queue: deque[tuple[int, list[tuple[str, LLMRequest]]]] = deque((1, b) for b in batches)
        run = _Run(retries_left=max(_MIN_RETRY_BUDGET, math.ceil(self.retry_budget * len(items))))
        results: dict[str, LLMResponse] = {}
        self._limiter()
        bar = tqdm(total=len(items), desc=desc, unit="call", disable=desc is None, dynamic_ncols=True)
        if n_hits:
            bar.set_postfix(cached=n_hits, refresh=False)

        async def worker() -> None:
            while queue and run.error is None:  # shared queue: each batch is taken by exactly one worker
                round_no, batch = queue.popleft()
                try:
                    responses = await self._call_with_retry([req for _, req in batch], run)
                except _NotSent:
                    return
                except _Exhausted as exc:
                    if round_no == 1 and run.successes and run.retries_left > 0 and run.error is None:
                        # The server answers others: one more round for this call, after the rest of the queue.
                        queue.append((2, batch))
                        continue
                    run.fail(exc.error, len(batch))
                    self.ledger.record_failure()
                    continue
                except LLMCallError as exc:  # permanent (e.g. 401): no new call is sent after it
                    run.fail(exc, len(batch))
                    self.ledger.record_failure()
                    continue
                if len(responses) != len(batch):
                    raise RuntimeError(
                        f"LLM backend {self.backend_name!r} returned {len(responses)} replies for {len(batch)} requests"
                    )
                run.successes += 1
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

        n_workers = min(self._limiter().max_limit, len(batches))
        tasks = [asyncio.ensure_future(worker()) for _ in range(max(1, n_workers))]
        try:
            # In-flight calls finish (and are cached) after a failure; only new ones stop.
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            bar.close()
        if run.error is not None:
            raise self._summary_error(run, requested=len(items), answered=len(results))
        return results

    def _summary_error(self, run: _Run, *, requested: int, answered: int) -> LLMCallError:
        """The first failure, with the count of what was answered (and cached), failed and never sent."""
        first = run.error
        assert first is not None
        not_sent = requested - answered - run.failed
        message = str(first)
        if requested > 1:
            message += (
                f" [{requested} call(s) requested: {answered} answered and cached (a rerun does not repeat them), "
                f"{run.failed} failed, {not_sent} not sent]"
            )
        return LLMCallError(
            message,
            model=first.model,
            location=first.location,
            status=first.status,
            attempts=first.attempts,
            requested=requested,
            answered=answered,
            failed=run.failed,
            not_sent=not_sent,
        )

    def _wait_seconds(self, attempt: int, exc: TransientLLMError) -> float:
        base = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (attempt - 1))
        wait = base * (0.5 + 0.5 * self._rng.random())  # exponential backoff, "equal jitter"
        if exc.retry_after is not None:
            wait = max(wait, float(exc.retry_after))
        return wait

    async def _attempt(
        self, batch: list[LLMRequest], limiter: AdaptiveLimiter, ticket: Ticket
    ) -> list[LLMResponse]:
        """One backend call; the limiter learns its latency or its overload."""
        limiter.sending(ticket)
        # Measured from the send: time spent waiting for a slot does not count.
        timeout = self._call_timeout(limiter)
        start = time.monotonic()
        try:
            if timeout is None:
                responses = await self.backend.complete(batch)
            else:
                responses = await self.backend.complete(batch, timeout_s=timeout)  # type: ignore[call-arg]
        except TransientLLMError as exc:
            limiter.record(ticket, overload=exc.status in OVERLOAD_STATUSES)
            raise
        limiter.record(ticket, latency_s=time.monotonic() - start)
        return responses

    async def _call_with_retry(self, batch: list[LLMRequest], run: _Run) -> list[LLMResponse]:
        """The replies of one batch; transient failures are retried with backoff while the attempts, the run's
        retry budget and the run itself (no failure elsewhere) allow.

        Raises:
            _Exhausted: the transient failures outlasted the attempts or the budget (wraps the user's error).
            _NotSent: another call failed for good while this one waited for a slot.
            LLMCallError: a permanent failure.
        """
        limiter = self._limiter()
        ticket = await limiter.acquire()
        try:  # the slot is held through the backoff: a struggling server gets fewer calls, not more
            if run.error is not None:  # another call failed for good while this one waited for its slot
                raise _NotSent
            return await self._retrying(batch, run, limiter, ticket)
        finally:
            limiter.release(ticket)

    async def _retrying(
        self, batch: list[LLMRequest], run: _Run, limiter: AdaptiveLimiter, ticket: Ticket
    ) -> list[LLMResponse]:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(batch, limiter, ticket)
            except TransientLLMError as exc:
                if attempt >= self.max_attempts or run.error is not None or run.retries_left <= 0:
                    budget = " (the run's retry budget is spent)" if run.retries_left <= 0 else ""
                    error = LLMCallError(
                        f"LLM call to model {self.model!r} at {self.backend.location} failed after {attempt} "
                        f"attempt(s){budget}; last error: {exc}",
                        model=self.model,
                        location=self.backend.location,
                        status=exc.status,
                        attempts=attempt,
                    )
                    raise _Exhausted(error) from exc
                run.retries_left -= 1
                wait = self._wait_seconds(attempt, exc)
                self.ledger.record_retry()
                log.info(
                    "LLM call to %s at %s: %s; retry %d/%d in %.1f s",
                    self.model,
                    self.backend.location,
                    exc,
                    attempt,
                    self.max_attempts - 1,
                    wait,
                )
                await asyncio.sleep(wait)
                await limiter.requeue(ticket)

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
