"""A fault-injecting TCP proxy for tests, and a development broker that advertises it.

    with ProxiedBroker() as cluster:        # a Tansu broker reachable only through the proxy
        bootstrap = cluster.bootstrap       # what clients connect to: the proxy's address
        cluster.proxy.cut()                 # drop every open connection; clients reconnect
        cluster.proxy.stall()               # accept and read, forward nothing, never answer
        cluster.proxy.add_latency(0.2)      # hold every chunk 0.2 s before forwarding it
        cluster.proxy.drop_produce_requests(1)  # swallow the next Produce request unseen
        cluster.proxy.lose_next_produce_answer()  # the broker writes, the client never hears
        cluster.proxy.restore()             # no latency, forwarding again
        cluster.broker.restart()            # the broker process itself, same port
        cluster.start_broker({"topic": 2})  # a stopped broker again, its topics back first

Kafka clients learn broker addresses from metadata, so the broker advertises the
proxy's address: after bootstrapping, clients still cannot bypass the proxy. noida-db
always advertises its own listener; ``ProxiedNoida`` puts the proxy in front of it by
rewriting that address in the broker's answers instead (``rewrite_advertised``).

The proxy runs its own event loop in its own thread (see ``_loop_thread``), so it keeps
forwarding while a test blocks its thread or its loop. Loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self

from qi.base.streaming.devbroker import DevBroker, find_broker_binary

from ._loop_thread import (
    CONTROL_TIMEOUT,
    LOOPBACK,
    FrontedBroker,
    LoopThreadServer,
    pump_until_one_ends,
)

_CHUNK: Final = 65536
_PRODUCE: Final = 0  # the Kafka protocol's api key of a Produce request
# What an answer's frame starts with after its 4-byte length: its correlation id.
_ANSWER_HEAD: Final = 4


class _Frames:
    """Finds the Kafka frames in one direction of a connection, read in chunks of any size."""

    __slots__ = ("_head", "_size", "_skip")

    def __init__(self, head: int) -> None:
        self._size = 4 + head
        self._head = bytearray()
        self._skip = 0

    def heads(self, data: bytes) -> list[bytes]:
        """The head (after the length) of every frame whose head completes in ``data``."""
        found: list[bytes] = []
        position = 0
        while position < len(data):
            if self._skip:
                step = min(self._skip, len(data) - position)
                self._skip -= step
                position += step
                continue
            taken = data[position : position + self._size - len(self._head)]
            self._head += taken
            position += len(taken)
            if len(self._head) == self._size:
                found.append(bytes(self._head[4:]))
                length = int.from_bytes(self._head[:4], "big")
                self._skip = max(0, length - (self._size - 4))
                self._head.clear()
        return found


@dataclass(eq=False, slots=True)
class _Link:
    """One client connection and, once the proxy has opened it, its upstream connection."""

    client: asyncio.StreamWriter
    task: asyncio.Task[None] | None
    upstream: asyncio.StreamWriter | None = None
    answers: _Frames = field(default_factory=lambda: _Frames(_ANSWER_HEAD))
    doomed: bytes | None = None
    """Correlation id of the request whose answer this connection must not deliver."""

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


class FaultProxy(LoopThreadServer):
    """A TCP proxy on loopback in front of one upstream address, with faults on demand."""

    _kind = "fault proxy"

    def __init__(
        self,
        upstream: Callable[[], tuple[str, int]],
        *,
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """Forward to ``upstream()`` (asked per connection, so a broker may move); not started.

        With ``tls`` the proxy terminates TLS: clients speak TLS to it, it speaks
        plaintext to the upstream.
        """
        super().__init__(port=port, tls=tls)
        self._upstream = upstream
        self._links: set[_Link] = set()
        self._flowing: asyncio.Event | None = None
        self._latency = 0.0
        self._produce_drops = 0
        self.dropped = 0
        """Produce requests swallowed by :meth:`drop_produce_requests` since start."""
        self._lose_produce_answer = False
        self.accepted = 0
        """Client connections accepted since start: proof that clients came through here."""
        self.answers_lost = 0
        """Produce answers dropped by :meth:`lose_next_produce_answer` so far."""
        self._advertised: tuple[bytes, bytes] | None = None

    @property
    def active(self) -> int:
        """Client connections open right now."""
        return self._control(lambda: len(self._links))

    def rewrite_advertised(self, host: str, port: int) -> None:
        """Make answers name the proxy wherever they name ``host:port`` (the upstream): in
        Metadata and FindCoordinator answers a broker is a host string followed by its port
        as a 32-bit integer, and only the port changes, so no frame changes size. Answers
        are then forwarded a whole frame at a time. Call before ``start``."""
        address = host.encode()
        self._advertised = (address + port.to_bytes(4, "big"), address)

    # -- faults ----------------------------------------------------------------------------------

    def cut(self) -> int:
        """Close every open connection at once (both sides); return how many there were.

        The proxy keeps listening, so clients can reconnect straight away.
        """
        return self._control(self._cut_all)

    def stall(self) -> None:
        """Keep accepting and reading, but forward nothing in either direction: no answers."""
        self._control(self._stop_flowing)

    def add_latency(self, seconds: float) -> None:
        """Hold every chunk ``seconds`` before forwarding it, in both directions."""
        self._latency = max(0.0, float(seconds))

    def drop_produce_requests(self, count: int = 1) -> None:
        """Swallow the next ``count`` Produce requests clients send: the broker never sees
        them and nobody answers, while later requests on the same connection go through
        (as when a request is lost or its answer never comes)."""
        self._produce_drops = max(0, count)

    def lose_next_produce_answer(self) -> None:
        """Forward the next Produce request, then cut its connection instead of answering.

        The broker has written the messages; the client never hears so, and sends them
        again on a new connection. Answers already on their way are dropped with it.
        """
        self._lose_produce_answer = True

    def restore(self) -> None:
        """No latency and forwarding again; data held during a stall is delivered now."""
        self._latency = 0.0
        self._lose_produce_answer = False
        self._control(self._start_flowing)

    # -- on the proxy's loop ---------------------------------------------------------------------

    async def _serve(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        await super()._serve()

    def _drop_all(self) -> list[asyncio.Task[Any]]:
        tasks = [link.task for link in self._links if link.task is not None]
        self._cut_all()
        return tasks

    def _cut_all(self) -> int:
        links = list(self._links)
        for link in links:
            link.abort()
            if link.task is not None:
                link.task.cancel()
        return len(links)

    def _stop_flowing(self) -> None:
        assert self._flowing is not None
        self._flowing.clear()

    def _start_flowing(self) -> None:
        assert self._flowing is not None
        self._flowing.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(writer, asyncio.current_task())
        self._links.add(link)
        self.accepted += 1
        try:
            assert self._flowing is not None
            await self._flowing.wait()  # a stalled proxy accepts but never even dials upstream
            host, port = self._upstream()
            upstream_reader, link.upstream = await asyncio.open_connection(host, port)
            await pump_until_one_ends(
                self._pump_requests(reader, link),
                self._pump(upstream_reader, writer, self._answers_of(link))
                if self._advertised is None
                else self._pump_frames(upstream_reader, writer, self._answers_of(link)),
            )
        except (OSError, asyncio.CancelledError):
            pass  # upstream down (the client sees a closed connection) or cut()
        finally:
            self._links.discard(link)
            link.abort()

    async def _pump_requests(self, reader: asyncio.StreamReader, link: _Link) -> None:
        """Client to broker, one Kafka request at a time (a 4-byte size, then the request,
        whose header starts with its api key, api version and correlation id), so that a
        Produce request can be dropped, or its answer marked to be lost."""
        assert self._flowing is not None and link.upstream is not None
        writer = link.upstream
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                size = await reader.readexactly(4)
                request = await reader.readexactly(int.from_bytes(size, "big"))
                if self._latency > 0:
                    await asyncio.sleep(self._latency)
                await self._flowing.wait()
                if int.from_bytes(request[:2], "big") == _PRODUCE:
                    if self._produce_drops:
                        self._produce_drops -= 1
                        self.dropped += 1
                        continue
                    if self._lose_produce_answer:
                        self._lose_produce_answer = False
                        link.doomed = request[4:8]
                writer.write(size + request)
                await writer.drain()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        forwards: Callable[[bytes], bool],
    ) -> None:
        assert self._flowing is not None
        with contextlib.suppress(OSError):
            while data := await reader.read(_CHUNK):
                if self._latency > 0:
                    await asyncio.sleep(self._latency)
                await self._flowing.wait()
                if not forwards(data):
                    return
                writer.write(data)
                await writer.drain()

    async def _pump_frames(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        forwards: Callable[[bytes], bool],
    ) -> None:
        """Answers a frame at a time, the upstream's advertised address replaced by ours."""
        assert self._flowing is not None and self._advertised is not None
        upstream, host = self._advertised
        ours = host + self.port.to_bytes(4, "big")
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                size = await reader.readexactly(4)
                frame = size + await reader.readexactly(int.from_bytes(size, "big"))
                if self._latency > 0:
                    await asyncio.sleep(self._latency)
                await self._flowing.wait()
                if not forwards(frame):
                    return
                writer.write(frame.replace(upstream, ours))
                await writer.drain()

    def _answers_of(self, link: _Link) -> Callable[[bytes], bool]:
        def forwards(data: bytes) -> bool:
            heads = link.answers.heads(data)
            if link.doomed is None or link.doomed not in heads:
                return True
            self.answers_lost += 1
            link.abort()
            return False

        return forwards


class ProxiedBroker(FrontedBroker):
    """A private development broker that clients can reach only through a :class:`FaultProxy`."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.proxy: Final = FaultProxy(lambda: (LOOPBACK, self.broker.port), tls=tls)
        """The proxy every client connection goes through."""
        super().__init__(self.proxy)

    def start_broker(self, topics: Mapping[str, int]) -> None:
        """Start the stopped broker with ``topics`` (name: partitions) made before clients return.

        The development broker forgets every topic when it stops; a real cluster keeps
        them. Without them, a message a client still holds reaches the new broker first,
        which stores it for a topic it does not know (Tansu answers success) and later
        fails the first write to that partition once the topic is made (see README,
        Reliability). So the proxy holds every connection until the topics are made,
        straight on the broker's own port.
        """
        self.proxy.stall()
        try:
            self.broker.start()
            for name, partitions in topics.items():
                address = f"tcp://{self.broker.bootstrap}"
                command = [find_broker_binary(), "topic", "create", "--broker", address]
                made = subprocess.run(
                    [*command, "--partitions", str(partitions), name],
                    capture_output=True,
                    text=True,
                    timeout=CONTROL_TIMEOUT,
                    check=False,
                )
                if made.returncode:
                    raise RuntimeError(f"could not make topic {name!r}: {made.stderr.strip()}")
        finally:
            self.proxy.restore()


class ProxiedNoida:
    """A private noida-db broker reachable only through a :class:`FaultProxy`, which rewrites
    the address noida-db advertises (its own listener, always) into the proxy's."""

    def __init__(self) -> None:
        self.broker: Final = DevBroker(kind="noida")
        self.proxy: Final = FaultProxy(lambda: (LOOPBACK, self.broker.port))
        """The proxy every client connection goes through."""

    @property
    def bootstrap(self) -> str:
        """What clients connect to: the proxy."""
        return self.proxy.bootstrap

    def __enter__(self) -> Self:
        self.broker.start()
        try:
            self.proxy.rewrite_advertised(LOOPBACK, self.broker.port)
            self.proxy.start()
        except BaseException:
            self.broker.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.proxy.close()
        finally:
            self.broker.stop()
