"""Dedicated threads for librdkafka calls that block, so the event loop never does.

A consumer's blocking calls (``consume``, ``commit``, ``seek``, ``close``) run
on its one worker thread, one at a time, in submission order. Serialising them
is deliberate: librdkafka's rebalance callbacks then always run on that one
thread, and a seek or commit can never race a consume. An admin's metadata
requests are independent, so its worker may run a few at once: one slow call
must not make the next wait out its timeout. Unlike ``asyncio.to_thread`` the
threads belong to the client, so closing the client leaves none behind.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[Callable[[], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class BlockingWorker:
    """Runs blocking callables on up to ``threads`` named daemon threads."""

    def __init__(self, name: str, threads: int = 1) -> None:
        self._name = name
        self._size = threads
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for a job; changed under _lock
        self._waiting = 0  # jobs submitted and not yet taken by a thread; under _lock
        self._lock = threading.Lock()
        self._closed = False
        self._ended: asyncio.Future[None] | None = None
        self._running = 0  # threads not yet ended; changed on the loop

    async def run(self, call: Callable[[], T]) -> T:
        """Run ``call()`` on a worker thread and return (or raise) what it did."""
        if self._closed:
            raise RuntimeError(f"{self._name} is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            # A thread only counts as free for this job if no earlier job is waiting for it.
            self._waiting += 1
            start = self._waiting > self._idle and len(self._threads) < self._size
        if start:
            self._start(loop)
        self._jobs.put((call, loop, future))
        return await future

    async def close(self, patience: float) -> bool:
        """Let the queued calls finish, then end the threads; idempotent.

        Waits at most ``patience`` seconds: a librdkafka call stuck on a dead broker
        must not make disconnect() hang. A thread still busy then ends on its own once
        its call returns (librdkafka bounds them all). Returns whether all have ended.
        """
        if not self._closed:
            self._closed = True
            for _ in self._threads:
                self._jobs.put(None)
        if self._ended is not None and not self._ended.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._ended), max(patience, 0.0))
            except TimeoutError:
                return False
        for thread in self._threads:
            # Each has signalled its end: nothing is left for it but returning.
            thread.join(timeout=1.0)
        return not any(thread.is_alive() for thread in self._threads)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._ended is None or self._ended.done():
            self._ended = loop.create_future()
        self._running += 1
        index = len(self._threads)
        name = self._name if self._size == 1 else f"{self._name}-{index}"
        thread = threading.Thread(target=self._main, args=(loop,), name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _thread_ended(self) -> None:
        self._running -= 1
        if self._running == 0 and self._ended is not None and not self._ended.done():
            self._ended.set_result(None)

    def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while True:
                with self._lock:
                    self._idle += 1
                job = self._jobs.get()
                with self._lock:
                    self._idle -= 1
                    if job is not None:
                        self._waiting -= 1
                if job is None:
                    return
                call, job_loop, future = job
                try:
                    result = call()
                except BaseException as exc:
                    _resolve(job_loop, future, None, exc)
                else:
                    _resolve(job_loop, future, result, None)
        finally:
            try:
                loop.call_soon_threadsafe(self._thread_ended)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass


def _resolve(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: object,
    exc: BaseException | None,
) -> None:
    def settle() -> None:
        if future.done():  # the awaiting coroutine was cancelled
            return
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass
