"""A loopback TCP server run by its own asyncio loop in its own thread, for test fixtures.

The fault proxy and the SASL gateway build on it. A loop of their own keeps them serving
while a test blocks its thread or its loop (librdkafka's ``flush()``, a synchronous poll),
and lets their control methods be called from sync and async code alike.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import ssl
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import pytest

from qi.base.streaming.devbroker import DevBroker, kind_from_environment

T = TypeVar("T")

LOOPBACK: Final = "127.0.0.1"
CONTROL_TIMEOUT: Final = 10.0


async def pump_until_one_ends(*pumps: Coroutine[Any, Any, None]) -> None:
    """Run the pumps of one relayed connection until one of them ends, then stop the rest."""
    tasks = [asyncio.create_task(pump) for pump in pumps]
    try:
        # Kafka never half-closes: one side gone means the connection is over.
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class LoopThreadServer(abc.ABC):
    """Listens on loopback from its own thread; subclasses handle the connections."""

    _kind = "server"
    """What error messages and the thread's name call it."""

    def __init__(self, *, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self._requested_port = port
        self._tls = tls
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._closing = False

    @property
    def bootstrap(self) -> str:
        """The "127.0.0.1:PORT" address clients connect to."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def port(self) -> int:
        """The port it listens on."""
        if self._port is None:
            raise RuntimeError(f"the {self._kind} is not started")
        return self._port

    def start(self) -> None:
        """Listen on loopback."""
        if self._loop is not None:
            return
        loop = asyncio.new_event_loop()
        name = "qi-test-" + self._kind.lower().replace(" ", "-")
        thread = threading.Thread(target=loop.run_forever, name=name, daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._run(self._serve())
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop listening, drop every connection and end the thread; idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            self._run(self._shutdown())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CONTROL_TIMEOUT)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- for subclasses, on the server's loop ----------------------------------------------------

    @abc.abstractmethod
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one accepted connection (never called once closing has begun)."""

    @abc.abstractmethod
    def _drop_all(self) -> list[asyncio.Task[Any]]:
        """Abort every open connection; return the tasks still winding down."""

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, LOOPBACK, self._requested_port, ssl=self._tls
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:
            writer.transport.abort()
            return
        await self._handle(reader, writer)

    async def _shutdown(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        # Connections accepted just before the close may still be starting: let them reach
        # _accept (which now drops them) before the loop goes away.
        for _ in range(3):
            await asyncio.gather(*self._drop_all(), return_exceptions=True)
            await asyncio.sleep(0.01)
        # Python 3.11's Server.close() leaves connections still in their TLS handshake open
        # (3.12 added close_clients()); they would be collected later, unclosed, in another
        # test. Abort every socket this private loop still watches.
        watched = getattr(asyncio.get_running_loop(), "_transports", {})
        for transport in list(watched.values()):
            if transport is not None and not transport.is_closing():
                transport.abort()
        await asyncio.sleep(0)
        if self._server is not None:
            await self._server.wait_closed()

    # -- crossing threads ------------------------------------------------------------------------

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coroutine.close()
            raise RuntimeError(f"the {self._kind} is not started")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CONTROL_TIMEOUT)

    def _control(self, action: Callable[[], T]) -> T:
        async def on_loop() -> T:
            return action()

        return self._run(on_loop())


class FrontedBroker:
    """A private development broker that clients can reach only through ``front``.

    The broker advertises the front's address, so clients that learn brokers from
    metadata cannot go around it. The front starts first: only then is its port known.
    """

    def __init__(self, front: LoopThreadServer) -> None:
        self._front = front
        self._broker: DevBroker | None = None

    @property
    def broker(self) -> DevBroker:
        """The broker process (``stop``/``start``/``restart`` keep its port)."""
        if self._broker is None:
            raise RuntimeError(f"the broker behind the {self._front._kind} is not started")
        return self._broker

    @property
    def bootstrap(self) -> str:
        """What clients connect to: the front."""
        return self._front.bootstrap

    def start(self) -> None:
        """Start the front, then the broker advertising it (skips the test on noida-db)."""
        if kind_from_environment() != "tansu":
            pytest.skip(
                "Tansu only: a front needs a broker that advertises the front's address, "
                "and noida-db always advertises its own listener"
            )
        self._front.start()
        try:
            if self._broker is None or self._broker.advertised != self._front.bootstrap:
                self._broker = DevBroker(kind="tansu", advertised=self._front.bootstrap)
            self._broker.start()
        except BaseException:
            self._front.close()
            raise

    def stop(self) -> None:
        """Stop the broker and the front; idempotent."""
        try:
            if self._broker is not None:
                self._broker.stop()
        finally:
            self._front.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
