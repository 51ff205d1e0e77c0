"""A private event loop on a daemon thread, so sync code can run coroutines without re-creating the loop.

Re-creating a loop per call (``asyncio.run``) would also re-create everything bound to it, such as the HTTP
connection pool of the OpenAI SDK (~0.3 s and fresh connections every time). One long-lived loop keeps
connections warm across calls, works when the caller already runs a loop (notebooks), and is shared safely by
several caller threads. After ``fork`` a new loop is started in the child.

Example:
    >>> loop = BackgroundLoop("demo")
    >>> loop.run(asyncio.sleep(0, result=42))
    42
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["BackgroundLoop"]

T = TypeVar("T")


class BackgroundLoop:
    """An asyncio loop running forever on a daemon thread (started on first use)."""

    def __init__(self, name: str = "axbench-llm") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid() or not self._loop.is_running():
                loop = asyncio.new_event_loop()
                started = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(started.set)
                    try:
                        loop.run_forever()
                    finally:
                        loop.close()  # the loop's own thread closes it, once it has stopped

                thread = threading.Thread(target=serve, name=self.name, daemon=True)
                thread.start()
                started.wait()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (Ctrl-C cancels it)."""
        if self._thread is not None and threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("BackgroundLoop.run called from its own loop: await the coroutine instead")
        future = asyncio.run_coroutine_threadsafe(coro, self._ensure())
        try:
            return future.result()
        except (KeyboardInterrupt, concurrent.futures.CancelledError):
            future.cancel()
            raise

    def close(
        self, final: Callable[[], Coroutine[Any, Any, Any]] | None = None, *, wait: bool = True
    ) -> None:
        """Await ``final()`` (e.g. closing connections) on the loop, then stop the loop; its thread closes it.

        Nothing here blocks the loop: shutting down is a task the loop runs itself. ``wait=False`` returns at
        once, which is what a garbage-collection finalizer needs, since it runs on whatever thread happened to
        trigger the collection (another client's loop thread included, where waiting would stall that client).

        Args:
            final: coroutine factory awaited on the loop before it stops (best effort, at most 10 s).
            wait: join the loop's thread (at most 10 s) unless called from that thread.
        """
        with self._lock:
            loop, thread, pid = self._loop, self._thread, self._pid
            self._loop = self._thread = self._pid = None
        if loop is None or pid != os.getpid() or loop.is_closed():
            return

        async def shut_down() -> None:
            if final is not None:
                with contextlib.suppress(Exception):  # closing is best effort
                    await asyncio.wait_for(final(), timeout=10)
            loop.stop()

        shutdown = shut_down()
        try:
            loop.call_soon_threadsafe(loop.create_task, shutdown)
        except RuntimeError:  # closed meanwhile
            shutdown.close()
            return
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
