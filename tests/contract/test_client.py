"""Contract section 4: the client, the factory and the connector."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest

from qi.base import Failure, Success
from qi.base.streaming import (
    ProducerConfig,
    StreamingClient,
    StreamingConfig,
    StreamingConnector,
    StreamingMessage,
    SubscriptionConfig,
    create_connector,
    create_streaming_client,
)
from testkit import ok, wait_until

from ._support import ConsumerConfigFactory, TopicFactory, expect_failure

GARBAGE: Any = object()


# -- the client hands out connected, cached instances --------------------------------------


async def test_get_returns_connected_instances(
    client: StreamingClient,
    producer_config: ProducerConfig,
    consumer_config: ConsumerConfigFactory,
) -> None:
    producer = ok(await client.get_producer(producer_config))
    consumer = ok(await client.get_consumer(consumer_config()))
    admin = ok(await client.get_admin())
    assert producer.is_connected()
    assert consumer.is_connected()
    assert admin.is_connected()


async def test_equal_configs_give_the_same_cached_instance(
    client: StreamingClient,
    producer_config: ProducerConfig,
    consumer_config: ConsumerConfigFactory,
) -> None:
    group = consumer_config()
    first_producer = ok(await client.get_producer(producer_config))
    # An equal but distinct config object must hit the cache too.
    same_producer = ok(await client.get_producer(dataclasses.replace(producer_config)))
    other_producer = ok(
        await client.get_producer(dataclasses.replace(producer_config, linger=0.02))
    )
    first_consumer = ok(await client.get_consumer(group))
    same_consumer = ok(await client.get_consumer(dataclasses.replace(group)))
    other_consumer = ok(await client.get_consumer(consumer_config()))
    assert same_producer is first_producer
    assert other_producer is not first_producer
    assert same_consumer is first_consumer
    assert other_consumer is not first_consumer
    assert other_producer.is_connected() and other_consumer.is_connected()


async def test_get_admin_always_returns_the_one_admin(client: StreamingClient) -> None:
    first = ok(await client.get_admin())
    second = ok(await client.get_admin())
    assert second is first


async def test_get_producer_without_config_uses_the_defaults(
    client: StreamingClient, producer_config: ProducerConfig
) -> None:
    if producer_config != ProducerConfig():
        pytest.skip("the development broker cannot run this backend's default producer")
    producer = ok(await client.get_producer())
    assert producer.is_connected()
    assert ok(await client.get_producer(ProducerConfig())) is producer


async def test_disconnect_closes_everything_and_later_gets_are_fresh(
    client: StreamingClient,
    producer_config: ProducerConfig,
    consumer_config: ConsumerConfigFactory,
) -> None:
    group = consumer_config()
    producer = ok(await client.get_producer(producer_config))
    consumer = ok(await client.get_consumer(group))
    admin = ok(await client.get_admin())

    ok(await client.disconnect())

    assert not producer.is_connected()
    assert not consumer.is_connected()
    assert not admin.is_connected()
    new_producer = ok(await client.get_producer(producer_config))
    new_consumer = ok(await client.get_consumer(group))
    new_admin = ok(await client.get_admin())
    assert new_producer is not producer and new_producer.is_connected()
    assert new_consumer is not consumer and new_consumer.is_connected()
    assert new_admin is not admin and new_admin.is_connected()
    ok(await new_admin.list_topics())


async def test_disconnect_twice_is_harmless(client: StreamingClient) -> None:
    ok(await client.get_admin())
    ok(await client.disconnect())
    ok(await client.disconnect())


async def test_async_with_disconnects_everything(
    backend: str,
    streaming_config: StreamingConfig,
    producer_config: ProducerConfig,
    consumer_config: ConsumerConfigFactory,
) -> None:
    async with create_streaming_client(backend, streaming_config) as client:
        producer = ok(await client.get_producer(producer_config))
        consumer = ok(await client.get_consumer(consumer_config()))
        admin = ok(await client.get_admin())
        assert producer.is_connected() and consumer.is_connected() and admin.is_connected()
    assert not producer.is_connected()
    assert not consumer.is_connected()
    assert not admin.is_connected()


async def test_clients_with_the_same_brokers_share_the_cluster(
    backend: str, streaming_config: StreamingConfig, make_topic: TopicFactory
) -> None:
    topic = await make_topic(2)
    async with create_streaming_client(backend, streaming_config) as other:
        admin = ok(await other.get_admin())
        assert topic in ok(await admin.list_topics())
        (metadata,) = ok(await admin.get_topic_metadata([topic]))
        assert len(metadata.partitions) == 2


async def test_is_healthy_when_a_broker_answers(client: StreamingClient) -> None:
    assert ok(await client.is_healthy()) is True


# -- brokers that cannot be reached -----------------------------------------------------


async def test_unreachable_brokers_fail_within_the_connection_timeout(
    backend: str,
    unreachable_config: StreamingConfig,
    producer_config: ProducerConfig,
    consumer_config: ConsumerConfigFactory,
) -> None:
    bound = unreachable_config.connection_timeout + 3.0
    async with create_streaming_client(backend, unreachable_config) as client:
        calls = (
            lambda: client.get_producer(producer_config),
            lambda: client.get_consumer(consumer_config()),
            client.get_admin,
        )
        for call in calls:
            started = time.monotonic()
            expect_failure(await call(), "STREAMING_CONNECTION_FAILED", implementation=backend)
            elapsed = time.monotonic() - started
            assert elapsed < bound, f"took {elapsed:.1f}s"
        started = time.monotonic()
        assert ok(await client.is_healthy()) is False
        elapsed = time.monotonic() - started
        assert elapsed < bound, f"is_healthy took {elapsed:.1f}s"


# -- the factory and the connector -------------------------------------------------------


async def test_connector_builds_unconnected_instances(
    backend: str,
    streaming_config: StreamingConfig,
    producer_config: ProducerConfig,
    consumer_config: ConsumerConfigFactory,
) -> None:
    connector = ok(create_connector(backend, streaming_config))
    assert connector.implementation == backend
    assert ok(await connector.is_healthy()) is True
    producer = ok(connector.create_producer(producer_config))
    consumer = ok(connector.create_consumer(consumer_config()))
    admin = ok(connector.create_admin())
    assert not producer.is_connected()
    assert not consumer.is_connected()
    assert not admin.is_connected()
    message = StreamingMessage(b"x")
    expect_failure(await producer.send("t", message), "STREAMING_NOT_CONNECTED")
    expect_failure(await consumer.subscribe(SubscriptionConfig(("t",))), "STREAMING_NOT_CONNECTED")
    expect_failure(await admin.list_topics(), "STREAMING_NOT_CONNECTED")
    expect_failure(producer.get_native_client(), "STREAMING_NOT_CONNECTED")
    try:
        for endpoint in (producer, consumer, admin):
            ok(await endpoint.connect())
            assert endpoint.is_connected()
        ok(await admin.list_topics())
    finally:
        for endpoint in (producer, consumer, admin):
            ok(await endpoint.disconnect())


async def test_connector_rejects_invalid_configs(
    backend: str,
    streaming_config: StreamingConfig,
    producer_config: ProducerConfig,
    consumer_config: ConsumerConfigFactory,
) -> None:
    connector = ok(create_connector(backend, streaming_config))
    expect_failure(
        connector.create_producer(ProducerConfig(acks=1)),
        "STREAMING_INVALID_CONFIG",
        implementation=backend,
    )
    expect_failure(
        connector.create_consumer(consumer_config(group_id="")),
        "STREAMING_INVALID_CONFIG",
        implementation=backend,
    )


async def test_create_connector_reports_invalid_config_and_unknown_names(
    backend: str, streaming_config: StreamingConfig
) -> None:
    broken = dataclasses.replace(streaming_config, client_id="")
    expect_failure(create_connector(backend, broken), "STREAMING_INVALID_CONFIG")
    expect_failure(
        create_connector("no-such-backend", streaming_config), "STREAMING_UNKNOWN_IMPLEMENTATION"
    )


# -- unknown implementations and invalid configs surface on first use ---------------------


async def test_unknown_implementation_is_reported_by_every_first_call(
    streaming_config: StreamingConfig, consumer_config: ConsumerConfigFactory
) -> None:
    async with create_streaming_client(cast(Any, "no-such-backend"), streaming_config) as client:
        for result in (
            await client.get_producer(),
            await client.get_consumer(consumer_config()),
            await client.get_admin(),
            await client.is_healthy(),
        ):
            expect_failure(
                result, "STREAMING_UNKNOWN_IMPLEMENTATION", implementation="no-such-backend"
            )


async def test_create_streaming_client_never_raises_on_garbage(backend: str) -> None:
    for implementation, config in (
        (GARBAGE, GARBAGE),
        (None, None),
        (backend, None),
        (backend, "localhost:9092"),
        (backend, StreamingConfig(cast(Any, None), cast(Any, None))),
    ):
        client = create_streaming_client(cast(Any, implementation), cast(Any, config))
        result = await client.get_producer()
        assert isinstance(result, Failure), result
        assert result.error.code in (
            "STREAMING_UNKNOWN_IMPLEMENTATION",
            "STREAMING_INVALID_CONFIG",
        ), result
        assert isinstance(await client.is_healthy(), Failure)
        ok(await client.disconnect())


async def test_results_are_plain_values(client: StreamingClient) -> None:
    # Success/Failure must be usable with structural pattern matching.
    match await client.is_healthy():
        case Success(value=healthy):
            assert healthy is True
        case Failure(error=error):
            pytest.fail(f"is_healthy failed: {error}")


def _nothing_started_since() -> Callable[[], bool]:
    """A check that no thread or task has been started since this call is still running."""
    threads = set(threading.enumerate())
    tasks = set(asyncio.all_tasks())

    def nothing_left() -> bool:
        return set(threading.enumerate()) <= threads and set(asyncio.all_tasks()) <= tasks

    return nothing_left


def _one_of_each_endpoint(
    connector: StreamingConnector,
    producer_config: ProducerConfig,
    consumer_config: ConsumerConfigFactory,
) -> list[Any]:
    return [
        ok(connector.create_producer(producer_config)),
        ok(connector.create_consumer(consumer_config())),
        ok(connector.create_admin()),
    ]


async def _cancel_after_one_step(call: Awaitable[Any]) -> None:
    """Start ``call``, cancel it after one step of the loop, and wait for it to end."""
    attempt = asyncio.ensure_future(call)
    await asyncio.sleep(0)  # one step: the call is now inside the backend
    attempt.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await attempt


async def test_a_connect_cancelled_while_opening_leaves_nothing_running(
    backend: str,
    streaming_config: StreamingConfig,
    producer_config: ProducerConfig,
    consumer_config: ConsumerConfigFactory,
) -> None:
    # A cancelled connect() must close the native client its open had created (threads,
    # tasks, connections), as a failed one does: connect() again would build another.
    connector = ok(create_connector(backend, streaming_config))
    nothing_left = _nothing_started_since()
    for endpoint in _one_of_each_endpoint(connector, producer_config, consumer_config):
        await _cancel_after_one_step(endpoint.connect())  # cancelled inside the backend's open
        ok(await endpoint.disconnect())
    await wait_until(nothing_left, "the native clients of the cancelled connects to close")


async def test_a_disconnect_cancelled_while_closing_still_closes(
    backend: str,
    streaming_config: StreamingConfig,
    producer_config: ProducerConfig,
    consumer_config: ConsumerConfigFactory,
) -> None:
    connector = ok(create_connector(backend, streaming_config))
    nothing_left = _nothing_started_since()
    for endpoint in _one_of_each_endpoint(connector, producer_config, consumer_config):
        ok(await endpoint.connect())
        await _cancel_after_one_step(endpoint.disconnect())  # cancelled inside its close
        assert not endpoint.is_connected()
    await wait_until(nothing_left, "the native clients of the cancelled disconnects to close")
