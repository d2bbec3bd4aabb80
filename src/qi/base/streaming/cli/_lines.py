"""Reading input lines for ``produce`` without blocking the event loop.

A daemon thread reads whatever bytes are available (``read1``), so a pipe fed
slowly (``tail -f log | qi-stream produce``) or a person typing sends each line
promptly, while a large file still fills whole batches. The thread is a daemon
because a read blocked on a terminal must not keep the process alive after the
command decided to stop; it reads the file descriptor itself, because a daemon
thread holding the lock of ``sys.stdin.buffer`` at interpreter exit is fatal.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import BinaryIO, Final

_CHUNK_BYTES: Final = 1 << 16
_CHUNKS_AHEAD: Final = 8  # how far the reader may run ahead of the producer


class LineReader:
    """Numbered lines of a binary stream, without their trailing newline."""

    def __init__(self, stream: BinaryIO, *, linger: float = 0.05) -> None:
        """Read ``stream``; ``take`` waits up to ``linger`` seconds to fill a batch."""
        self._stream = stream
        self._linger = linger
        self._chunks: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
        self._slots = threading.Semaphore(_CHUNKS_AHEAD)
        self._lines: deque[tuple[int, bytes]] = deque()
        self._partial = b""
        self._line_number = 0
        self._eof = False
        self._pending: asyncio.Task[bytes | BaseException] | None = None
        self._thread: threading.Thread | None = None

    async def take(self, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` (line number, line) pairs; an empty list means end of input.

        Waits for at least one line, then for more only while they keep arriving
        within ``linger`` seconds. Raises OSError when the stream cannot be read.
        """
        self._start()
        while not self._lines and not self._eof:
            await self._fill(wait_at_most=None)
        while len(self._lines) < limit and not self._eof:
            if not await self._fill(wait_at_most=self._linger):
                break
        count = min(limit, len(self._lines))
        return [self._lines.popleft() for _ in range(count)]

    def close(self) -> None:
        """Stop waiting for input (the reader thread ends with the process if it is blocked)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _start(self) -> None:
        if self._thread is not None:
            return
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._read_all, args=(loop,), name="qi-stream-input", daemon=True
        )
        self._thread.start()

    def _read_all(self, loop: asyncio.AbstractEventLoop) -> None:
        read = _raw_reader(self._stream)
        while True:
            self._slots.acquire()
            chunk: bytes | BaseException
            try:
                chunk = read(_CHUNK_BYTES)
            except (OSError, ValueError) as exc:
                chunk = exc
            try:
                loop.call_soon_threadsafe(self._chunks.put_nowait, chunk)
            except RuntimeError:  # the loop closed: nobody wants more input
                return
            if not isinstance(chunk, bytes) or not chunk:
                return

    async def _fill(self, wait_at_most: float | None) -> bool:
        """Take one chunk from the reader; False when none arrived within ``wait_at_most``."""
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._chunks.get())
        done, _ = await asyncio.wait({self._pending}, timeout=wait_at_most)
        if not done:
            return False
        chunk = self._pending.result()
        self._pending = None
        self._slots.release()
        if isinstance(chunk, BaseException):
            raise chunk
        if not chunk:
            self._eof = True
            if self._partial:  # a last line without a newline is still a line
                self._push(self._partial)
                self._partial = b""
            return True
        pieces = (self._partial + chunk).split(b"\n")
        self._partial = pieces.pop()
        for piece in pieces:
            self._push(piece)
        return True

    def _push(self, line: bytes) -> None:
        self._line_number += 1
        self._lines.append((self._line_number, line))


def _raw_reader(stream: BinaryIO) -> Callable[[int], bytes]:
    try:
        descriptor = stream.fileno()
    except (AttributeError, OSError, ValueError):  # an in-memory stream
        return getattr(stream, "read1", stream.read)
    return functools.partial(os.read, descriptor)
