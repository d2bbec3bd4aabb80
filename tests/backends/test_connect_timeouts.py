"""A connect (or health probe) that times out part-way leaves no connection open, on each
backend that opens connections.

aiokafka's bootstrap, cancelled while it waits for the broker's metadata, drops its
connection without closing it (the socket stays open until the garbage collector
finds it); the backend never cuts a bootstrap short, so aiokafka's own request
timeout ends it and closes the connection. librdkafka's client is destroyed with
its connections when the confluent backend gives up.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import struct
import sys
from collections.abc import AsyncIterator, Iterator

import pytest

from qi.base import Failure
from qi.base.streaming import ConsumerConfig, ErrorCode, StreamingConfig, create_streaming_client
from qi.base.streaming.devbroker import DevBroker
from testkit import wait_until

_METADATA = 3


class MetadataSwallower:
    """A loopback proxy in front of ``broker`` that forwards every request but Metadata,
    which it never answers; it counts the client connections still open."""

    def __init__(self, broker: str) -> None:
        self._host, _, port = broker.rpartition(":")
        self._port = int(port)
        self.open = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None

    @property
    def bootstrap(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> MetadataSwallower:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        broker_reader, broker_writer = await asyncio.open_connection(self._host, self._port)
        answers = asyncio.ensure_future(self._pump(broker_reader, writer))
        try:
            while True:
                head = await reader.readexactly(4)
                frame = await reader.readexactly(struct.unpack(">i", head)[0])
                if struct.unpack(">h", frame[:2])[0] != _METADATA:
                    broker_writer.write(head + frame)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            answers.cancel()
            broker_writer.close()
            writer.close()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    # A dropped aiokafka connection sits in a reference cycle: only the collector would
    # close it. Without it, what the library leaves open stays open and is seen.
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


@pytest.fixture
async def swallower(dev_broker: DevBroker) -> AsyncIterator[MetadataSwallower]:
    async with MetadataSwallower(dev_broker.bootstrap) as proxy:
        yield proxy


def _quick_to_give_up(swallower: MetadataSwallower) -> StreamingConfig:
    """Through ``swallower``: 1 s to connect, and aiokafka's bootstrap ends 2 s later."""
    return StreamingConfig(
        client_id="leak",
        brokers=(swallower.bootstrap,),
        connection_timeout=1.0,
        request_timeout=2.0,
    )


REAL_BACKENDS = ("aiokafka", "confluent")


@pytest.mark.usefixtures("no_cyclic_gc")
@pytest.mark.parametrize("backend", REAL_BACKENDS)
@pytest.mark.parametrize("kind", ["producer", "consumer", "admin"])
async def test_a_connect_timed_out_in_the_bootstrap_leaves_no_connection_open(
    swallower: MetadataSwallower, kind: str, backend: str
) -> None:
    config = _quick_to_give_up(swallower)
    client = create_streaming_client(backend, config)
    # A consumer's requests may last its session timeout plus 5 s (a JoinGroup must fit),
    # its bootstrap too: a short session keeps the wait short.
    group = ConsumerConfig("leak-group", session_timeout=1.0, heartbeat_interval=0.3)
    outcome: object
    if kind == "producer":
        outcome = await client.get_producer()
        bootstrap_timeout = config.request_timeout
    elif kind == "consumer":
        outcome = await client.get_consumer(group)
        bootstrap_timeout = max(config.request_timeout, group.session_timeout + 5.0)
    else:
        outcome = await client.get_admin()
        bootstrap_timeout = config.request_timeout
    assert isinstance(outcome, Failure), outcome
    assert outcome.error.code == ErrorCode.CONNECTION_FAILED
    assert swallower.accepted >= 1
    # aiokafka's own request timeout ends the bootstrap; then nothing stays open.
    await wait_until(
        lambda: swallower.open == 0,
        "every connection of the failed connect to close",
        within=bootstrap_timeout + 3.0,
    )
    await client.disconnect()


@pytest.mark.usefixtures("no_cyclic_gc")
@pytest.mark.parametrize("backend", REAL_BACKENDS)
async def test_a_health_probe_timed_out_in_the_bootstrap_leaves_no_connection_open(
    swallower: MetadataSwallower, backend: str
) -> None:
    config = _quick_to_give_up(swallower)
    client = create_streaming_client(backend, config)
    healthy = await client.is_healthy()
    assert healthy.unwrap() is False
    assert swallower.accepted >= 1
    await wait_until(
        lambda: swallower.open == 0,
        "every connection of the failed probe to close",
        within=config.request_timeout + 3.0,
    )
    await client.disconnect()


_A_PATIENT_PROGRAM = """
import asyncio, gc, sys
from qi.base.streaming import StreamingConfig, create_streaming_client

def bootstraps():
    return [t for t in asyncio.all_tasks() if "AIOKafkaClient.bootstrap" in repr(t)]

async def main():
    config = StreamingConfig(
        client_id="lost", brokers=(sys.argv[1],), connection_timeout=1.0, request_timeout=2.0
    )
    client = create_streaming_client("aiokafka", config)
    assert (await client.get_producer()).is_failure()
    await client.disconnect()
    while bootstraps():  # aiokafka's request timeout ends it with "Unable to bootstrap"
        await asyncio.wait(bootstraps(), timeout=5.0)

asyncio.run(main())
gc.collect()
"""


async def test_a_bootstrap_that_fails_after_its_connect_timed_out_logs_no_lost_error(
    swallower: MetadataSwallower,
) -> None:
    # Nobody is left to read the bootstrap's error: asyncio must not log it as an
    # exception never retrieved (an ERROR record per failed connect).
    program = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _A_PATIENT_PROGRAM,
        swallower.bootstrap,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await program.communicate()
    assert program.returncode == 0, stderr.decode()
    assert "never retrieved" not in stderr.decode(), stderr.decode()


_A_PROGRAM = """
import asyncio, gc, sys, warnings
from qi.base.streaming import StreamingConfig, create_streaming_client

async def main():
    config = StreamingConfig(
        client_id="leak", brokers=(sys.argv[1],), connection_timeout=1.0, request_timeout=2.0
    )
    client = create_streaming_client("aiokafka", config)
    outcome = await client.get_producer()
    assert outcome.is_failure(), outcome
    await client.disconnect()

warnings.simplefilter("always", ResourceWarning)
gc.disable()  # what the program leaves open stays open until the collection below
asyncio.run(main())  # ends while the bootstrap would still run on
gc.collect()
"""


@pytest.mark.xfail(
    strict=True,
    reason="asyncio.run cancels the bootstrap still running on after a timed-out connect, "
    "and aiokafka, cancelled while it waits for metadata, drops its connection unclosed: "
    "closing it needs the connection the bootstrap holds (a local of aiokafka's bootstrap)",
)
async def test_a_program_that_ends_right_after_a_timed_out_connect_leaves_no_connection_open(
    swallower: MetadataSwallower,
) -> None:
    program = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _A_PROGRAM, swallower.bootstrap, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await program.communicate()
    assert program.returncode == 0, stderr.decode()
    assert swallower.accepted >= 1
    assert "ResourceWarning" not in stderr.decode(), stderr.decode()
