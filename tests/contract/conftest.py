"""Fixtures of the contract suite: every test runs once per backend.

``QI_TEST_BACKENDS`` (comma-separated) restricts the backends; the real ones
(``confluent``, ``aiokafka``) talk to the session's development broker (the kind
``QI_DEV_BROKER`` names, Tansu by default), or to ``QI_TEST_BROKERS`` when set.
Tests marked ``kafka_rules`` check what Kafka refuses, which Tansu lets through:
their real backends talk to a noida-db broker instead (``QI_TEST_BROKERS`` still
wins). ``memory`` tests each get a private in-process broker, so they never see
each other's topics or groups.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Final

import pytest

from qi.base import Success
from qi.base.streaming import (
    ConsumerConfig,
    ProducerConfig,
    StreamingClient,
    StreamingConfig,
    StreamingConsumer,
    StreamingProducer,
    TopicConfig,
    _factory,
    create_streaming_client,
)
from qi.base.streaming.devbroker import kind_from_environment
from qi.base.streaming.testing import quick_config
from testkit import Collector, ok, unique

from ._support import (
    ON_MEMORY_BROKER,
    CollectingConsumerFactory,
    ConsumerConfigFactory,
    MemberClientsFactory,
    TopicFactory,
    start_collecting,
)

ALL_BACKENDS: Final = ("memory", "confluent", "aiokafka", "fourth")
REAL_BACKENDS: Final = frozenset({"confluent", "aiokafka"})
# The test-only backend written against qi.base.streaming.backend alone (tests/fourth_backend):
# it runs on the memory broker, so it shares memory's fixtures.
TEST_BACKENDS: Final = {"fourth": ("fourth_backend", (), None)}


def _selected_backends() -> list[Any]:
    raw = os.environ.get("QI_TEST_BACKENDS")
    names = [name.strip() for name in raw.split(",") if name.strip()] if raw else ALL_BACKENDS
    return [
        pytest.param(name, id=name, marks=[pytest.mark.broker] if name in REAL_BACKENDS else [])
        for name in names
    ]


@pytest.fixture(scope="session", autouse=True)
def _test_backends_known() -> Iterator[None]:
    """Let create_connector build the test-only backends by name, as it builds the others."""
    with pytest.MonkeyPatch.context() as patch:
        for name, entry in TEST_BACKENDS.items():
            patch.setitem(_factory._BACKENDS, name, entry)
        yield


@pytest.fixture(params=_selected_backends())
def backend(request: pytest.FixtureRequest) -> str:
    """The implementation under test."""
    name: str = request.param
    return name


@pytest.fixture
def brokers(backend: str, request: pytest.FixtureRequest) -> Iterator[tuple[str, ...]]:
    """Bootstrap brokers: a private in-process broker for memory, else the session's broker."""
    if backend not in REAL_BACKENDS:
        # The qi-base pytest plugin's fixture: a fresh broker, discarded after the test.
        memory: tuple[str, ...] = request.getfixturevalue("qi_memory_brokers")
        yield memory
        return
    # Looked up lazily so that a memory-only run never starts a broker.
    bootstrap: str = request.getfixturevalue(
        "noida_bootstrap" if _needs_kafka_rules(request) else "kafka_bootstrap"
    )
    yield tuple(address.strip() for address in bootstrap.split(",") if address.strip())


def _needs_kafka_rules(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker("kafka_rules") is not None


@pytest.fixture
def streaming_config(brokers: tuple[str, ...]) -> StreamingConfig:
    """Short timeouts, so a broken behaviour fails fast instead of hitting the test timeout
    (the qi-base pytest plugin's quick_config: a unique client id, 5 s to connect, 10 s a
    request)."""
    return quick_config(brokers)


@pytest.fixture
def unreachable_config(backend: str, streaming_config: StreamingConfig) -> StreamingConfig:
    """A config whose brokers never answer, with a short connection timeout."""
    if backend in ON_MEMORY_BROKER:
        # The in-process broker has no port to close: its fault hook makes it unreachable.
        from qi.base.streaming.backends.memory import broker_for

        broker_for(streaming_config.brokers).set_unreachable()
        return dataclasses.replace(streaming_config, connection_timeout=1.5)
    return dataclasses.replace(
        streaming_config, brokers=(f"127.0.0.1:{_closed_port()}",), connection_timeout=1.5
    )


def _closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def producer_config(backend: str, request: pytest.FixtureRequest) -> ProducerConfig:
    """The default producer config, except where the development broker cannot do it."""
    if (
        backend == "aiokafka"
        and _session_broker_is_tansu()
        and not _needs_kafka_rules(request)  # noida-db gives producer ids
    ):
        # Tansu 0.6 rejects aiokafka's InitProducerId request, so an idempotent aiokafka
        # producer cannot start on it: the contract suite runs the aiokafka backend with
        # idempotent=False on Tansu. On noida-db and on a real cluster (QI_TEST_BROKERS)
        # it uses the defaults like every other backend.
        return ProducerConfig(idempotent=False)
    return ProducerConfig()


def _session_broker_is_tansu() -> bool:
    return not os.environ.get("QI_TEST_BROKERS") and kind_from_environment() == "tansu"


@pytest.fixture
def consumer_config() -> ConsumerConfigFactory:
    """Fresh group ids; a short session because joins on Tansu take about half of it."""

    def make(group_id: str | None = None, **changes: Any) -> ConsumerConfig:
        config = ConsumerConfig(
            group_id=group_id if group_id is not None else unique("group"),
            session_timeout=6.0,
            heartbeat_interval=0.5,
            auto_commit=True,
            auto_commit_interval=1.0,
        )
        return dataclasses.replace(config, **changes)

    return make


@pytest.fixture
async def client(backend: str, streaming_config: StreamingConfig) -> AsyncIterator[StreamingClient]:
    """A client of the backend under test, disconnected (with all it handed out) afterwards."""
    streaming_client = create_streaming_client(backend, streaming_config)
    yield streaming_client
    await streaming_client.disconnect()


@pytest.fixture
async def second_client(
    backend: str, streaming_config: StreamingConfig
) -> AsyncIterator[StreamingClient]:
    """Another client of the same brokers: its producers are other instances (clients cache)."""
    other = create_streaming_client(backend, streaming_config)
    yield other
    await other.disconnect()


@pytest.fixture
async def member_clients(
    backend: str, streaming_config: StreamingConfig
) -> AsyncIterator[MemberClientsFactory]:
    """Pairs of clients for two members of one group: a member id starts with its client id,
    so with client ids ``<unique>-a`` and ``<unique>-b`` every assignor here gives the second
    member the higher partitions (partition 1 of a two-partition topic)."""
    made: list[StreamingClient] = []

    def make(config: StreamingConfig | None = None) -> tuple[StreamingClient, StreamingClient]:
        base = config if config is not None else streaming_config
        prefix = unique("member")
        first, second = (
            create_streaming_client(backend, dataclasses.replace(base, client_id=f"{prefix}-{end}"))
            for end in "ab"
        )
        made.extend((first, second))
        return first, second

    yield make
    for other in reversed(made):
        await other.disconnect()


@pytest.fixture
async def producer(client: StreamingClient, producer_config: ProducerConfig) -> StreamingProducer:
    """A connected producer of ``client``."""
    return ok(await client.get_producer(producer_config))


@pytest.fixture
def collecting(
    client: StreamingClient, consumer_config: ConsumerConfigFactory
) -> CollectingConsumerFactory:
    """Starts consumers of ``client`` that feed a new Collector each (see start_collecting)."""

    async def start(
        *topics: str,
        config: ConsumerConfig | None = None,
        from_beginning: bool = True,
        batches: bool = False,
    ) -> tuple[StreamingConsumer, Collector]:
        chosen = config if config is not None else consumer_config()
        return await start_collecting(
            client, chosen, topics, from_beginning=from_beginning, batches=batches
        )

    return start


@pytest.fixture
async def make_topic(client: StreamingClient) -> AsyncIterator[TopicFactory]:
    """Creates uniquely named topics through the admin and deletes them afterwards."""
    created: list[str] = []

    async def make(
        partitions: int = 1, *, name: str | None = None, config: Mapping[str, str] | None = None
    ) -> str:
        topic = name if name is not None else unique("topic")
        admin = ok(await client.get_admin())
        settings = TopicConfig(topic, num_partitions=partitions, config_entries=config or {})
        ok(await admin.create_topics([settings]))
        created.append(topic)
        return topic

    yield make
    if created:
        # Consumers leave first, so none of them commits to or fetches from a deleted topic.
        await client.disconnect()
        # Best effort: a test may have deleted some already, or broken the connection.
        admin = await client.get_admin()
        if isinstance(admin, Success):
            await admin.value.delete_topics(created)
