"""BackgroundLoop: closing never blocks the thread that asks, and a closed loop restarts on next use."""

from __future__ import annotations

import asyncio
import threading
import time

from axbench_kedro.llm.loop import BackgroundLoop


def test_close_awaits_final_then_stops_and_closes_the_loop() -> None:
    loop = BackgroundLoop("t")
    assert loop.run(asyncio.sleep(0, result=7)) == 7
    inner, thread = loop._loop, loop._thread
    finished = []

    async def final() -> None:
        await asyncio.sleep(0.05)
        finished.append(True)

    loop.close(final)
    assert finished == [True]
    assert not thread.is_alive() and inner.is_closed()
    assert loop.run(asyncio.sleep(0, result=8)) == 8  # a fresh loop on next use
    loop.close()


def test_close_without_wait_returns_while_the_loop_is_busy() -> None:
    loop = BackgroundLoop("t")
    loop.run(asyncio.sleep(0))
    inner, thread = loop._loop, loop._thread
    inner.call_soon_threadsafe(time.sleep, 1.0)  # the loop is stuck in a blocking call for 1 s
    start = time.perf_counter()
    loop.close(wait=False)
    assert time.perf_counter() - start < 0.5
    thread.join(timeout=5)
    assert not thread.is_alive() and inner.is_closed()


def test_close_from_the_loops_own_thread_does_not_deadlock() -> None:
    loop = BackgroundLoop("t")
    loop.run(asyncio.sleep(0))
    thread = loop._thread
    done = threading.Event()

    def close_here() -> None:
        loop.close()  # e.g. a garbage-collection finalizer that ran on this thread
        done.set()

    start = time.perf_counter()
    loop._loop.call_soon_threadsafe(close_here)
    assert done.wait(timeout=5)
    thread.join(timeout=5)
    assert time.perf_counter() - start < 2.0 and not thread.is_alive()
