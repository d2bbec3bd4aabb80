"""Dedicated threads for librdkafka calls that block, so the event loop never does.

A consumer's blocking calls (``consume``, ``commit``, ``seek``, ``close``) run
on its one worker thread, one at a time, in submission order. Serialising them
is deliberate: librdkafka's rebalance callbacks then always run on that one
thread, and a seek or commit runs between two fetches (a commit may also run
inside a rebalance callback that waits for the event loop, ``wait_serving``),
never beside one. An admin's metadata requests are independent, so its worker
may run a few at once: one slow call must not make the next wait out its
timeout. Unlike ``asyncio.to_thread`` the threads belong to the client, so
closing the client leaves none behind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(slots=True, eq=False)
class _Job:
    call: Callable[[], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    nestable: bool


class BlockingWorker:
    """Runs blocking callables on up to ``threads`` named daemon threads."""

    def __init__(self, name: str, threads: int = 1) -> None:
        self._name = name
        self._size = threads
        self._lock = threading.Condition()
        self._jobs: deque[_Job] = deque()  # submitted, not yet taken; under _lock
        self._idle = 0  # threads waiting for a job; under _lock
        self._closing = False  # threads end once the queue is empty; under _lock
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._ended: asyncio.Future[None] | None = None
        self._running = 0  # threads not yet ended; changed on the loop

    async def run(self, call: Callable[[], T], *, nestable: bool = False) -> T:
        """Run ``call()`` on a worker thread and return (or raise) what it did.

        A ``nestable`` call may also run inside a call that is waiting for the event
        loop in :meth:`wait_serving` (a rebalance callback waiting for the run loop),
        so that what that wait depends on never queues behind it.
        """
        return await self.submit(call, nestable=nestable)

    def submit(self, call: Callable[[], T], *, nestable: bool = False) -> asyncio.Future[T]:
        """Queue ``call()`` as :meth:`run` does; its future, which a caller that stops
        waiting may keep (the call goes on all the same)."""
        if self._closed:
            raise RuntimeError(f"{self._name} is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            self._jobs.append(_Job(call, loop, future, nestable))
            # A thread only counts as free for this job if no earlier job is waiting for it.
            start = len(self._jobs) > self._idle and len(self._threads) < self._size
            self._lock.notify_all()
        if start:
            self._start(loop)
        return future

    def wait_serving(self, waited: concurrent.futures.Future[T], timeout: float) -> T:
        """On a worker thread: wait for ``waited``, running nestable calls meanwhile.

        Raises ``concurrent.futures.TimeoutError`` after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        waited.add_done_callback(self._wake)
        while True:
            with self._lock:
                job = None
                while not waited.done():
                    job = next((job for job in self._jobs if job.nestable), None)
                    if job is not None:
                        self._jobs.remove(job)
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise concurrent.futures.TimeoutError()
                    self._lock.wait(remaining)
            if job is None:
                return waited.result()
            _execute(job)

    async def close(self, patience: float) -> bool:
        """Let the queued calls finish, then end the threads; idempotent.

        Waits at most ``patience`` seconds: a librdkafka call stuck on a dead broker
        must not make disconnect() hang. A thread still busy then ends on its own once
        its call returns (librdkafka bounds them all). Returns whether all have ended.
        """
        if not self._closed:
            self._closed = True
            with self._lock:
                self._closing = True
                self._lock.notify_all()
        if self._ended is not None and not self._ended.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._ended), max(patience, 0.0))
            except TimeoutError:
                return False
        for thread in self._threads:
            # Each has signalled its end: nothing is left for it but returning.
            thread.join(timeout=1.0)
        return not any(thread.is_alive() for thread in self._threads)

    def _wake(self, _: object) -> None:
        with self._lock:
            self._lock.notify_all()

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
                    while not self._jobs and not self._closing:
                        self._lock.wait()
                    self._idle -= 1
                    if not self._jobs:
                        return
                    job = self._jobs.popleft()
                _execute(job)
        finally:
            try:
                loop.call_soon_threadsafe(self._thread_ended)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass


def _execute(job: _Job) -> None:
    try:
        result = job.call()
    except BaseException as exc:
        _resolve(job.loop, job.future, None, exc)
    else:
        _resolve(job.loop, job.future, result, None)


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
