"""aiokafka backend behaviour that only shows against a broker: broker quirks and clean-up.

Each test gets a private development broker (the kind ``QI_DEV_BROKER`` names),
because some of them stop it or depend on what it does with topics requested by
name. The one about refused idempotence always runs against Tansu, the broker
that refuses it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from qi.base import Failure, QiError
from qi.base.streaming import (
    ConsumerConfig,
    ConsumerRunConfig,
    EachMessagePayload,
    MessageBatch,
    ProducerConfig,
    SecurityConfig,
    StreamingClient,
    StreamingConfig,
    StreamingMessage,
    SubscriptionConfig,
    TopicConfig,
    create_streaming_client,
)
from qi.base.streaming.backends.aiokafka._settings import CONSUMER_METADATA_MAX_AGE_MS
from qi.base.streaming.devbroker import DevBroker
from testkit import ok, unique

pytestmark = pytest.mark.broker

NOT_IDEMPOTENT = ProducerConfig(idempotent=False)


def _failure(result: object, code: str) -> QiError:
    assert isinstance(result, Failure), f"expected a Failure {code}, got {result!r}"
    error: QiError = result.error
    assert error.code == code, error
    return error


def _group(**changes: object) -> ConsumerConfig:
    config = ConsumerConfig(group_id=unique("group"), session_timeout=6.0, heartbeat_interval=0.5)
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


def _config(broker: DevBroker, **changes: object) -> StreamingConfig:
    config = StreamingConfig(
        client_id=unique("client"),
        brokers=(broker.bootstrap,),
        connection_timeout=3.0,
        request_timeout=5.0,
    )
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


@pytest.fixture
async def client(dev_broker: DevBroker) -> AsyncIterator[StreamingClient]:
    streaming_client = create_streaming_client("aiokafka", _config(dev_broker))
    yield streaming_client
    await streaming_client.disconnect()


async def _tasks_settle(before: set[asyncio.Task[object]], within: float = 3.0) -> set[str]:
    """Names of tasks still alive that were not there before, after waiting up to ``within``."""
    deadline = time.monotonic() + within
    while True:
        extra = asyncio.all_tasks() - before - {asyncio.current_task()}
        if not extra or time.monotonic() > deadline:
            return {task.get_name() + ":" + repr(task.get_coro()) for task in extra}
        await asyncio.sleep(0.05)


@pytest.fixture
def tansu() -> Iterator[DevBroker]:
    """A private Tansu broker, whatever ``QI_DEV_BROKER`` says: it refuses InitProducerId."""
    with DevBroker(kind="tansu") as broker:
        yield broker


async def test_idempotent_producer_on_tansu_fails_fast_and_clearly(tansu: DevBroker) -> None:
    before = asyncio.all_tasks()
    client = create_streaming_client("aiokafka", _config(tansu))
    began = time.monotonic()
    outcome = await client.get_producer(ProducerConfig(idempotent=True))
    elapsed = time.monotonic() - began
    error = _failure(outcome, "STREAMING_INVALID_CONFIG")
    assert "idempotence is not supported by the broker" in error.message
    assert "idempotent=False" in error.message
    assert error.context["kafka_error"] == "UNKNOWN"
    assert error.context["retriable"] is False
    assert elapsed < 2.0, f"took {elapsed:.1f}s"
    ok(await client.disconnect())
    assert await _tasks_settle(before) == set()
    # The same client still works without idempotence.
    producer = ok(await client.get_producer(NOT_IDEMPOTENT))
    assert producer.is_connected()
    ok(await client.disconnect())


async def test_no_call_creates_a_missing_topic(client: StreamingClient) -> None:
    missing = unique("missing")
    admin = ok(await client.get_admin())
    producer = ok(await client.get_producer(NOT_IDEMPOTENT))
    sent = await producer.send(missing, StreamingMessage(b"v"))
    assert _failure(sent, "STREAMING_TOPIC_NOT_FOUND").context["delivery"] == "not_written"
    _failure(await admin.get_topic_metadata([missing]), "STREAMING_TOPIC_NOT_FOUND")
    consumer = ok(await client.get_consumer(_group()))
    ok(await consumer.subscribe(SubscriptionConfig(topics=(missing,))))

    async def handler(payload: EachMessagePayload) -> None:
        raise AssertionError("no message can come from a missing topic")

    ok(await consumer.run(ConsumerRunConfig(each_message=handler)))
    # Absence needs time to show: let the consumer's periodic metadata refresh run once.
    await asyncio.sleep(CONSUMER_METADATA_MAX_AGE_MS / 1000 + 0.5)
    assert missing not in ok(await admin.list_topics())
    _failure(await producer.send(missing, StreamingMessage(b"v")), "STREAMING_TOPIC_NOT_FOUND")


async def test_batch_results_point_at_the_records_written(client: StreamingClient) -> None:
    # Big enough for several record batches per partition: each message's offset is its
    # batch's base offset plus its place in that batch.
    topic = unique("topic")
    ok(await (ok(await client.get_admin())).create_topics([TopicConfig(topic, num_partitions=3)]))
    producer = ok(await client.get_producer(NOT_IDEMPOTENT))
    values = [b"%03d-" % index + b"x" * 50_000 for index in range(60)]
    messages = tuple(
        StreamingMessage(value, key=str(index % 7)) for index, value in enumerate(values)
    )
    results = ok(await producer.send_batch(MessageBatch(topic, messages))).results
    assert len({result.partition for result in results}) > 1
    written: dict[tuple[int, int], bytes] = {}
    done = asyncio.Event()

    async def handler(payload: EachMessagePayload) -> None:
        message = payload.message
        assert message.value is not None
        written[(message.partition, message.offset)] = message.value
        if len(written) == len(values):
            done.set()

    consumer = ok(await client.get_consumer(_group()))
    ok(await consumer.subscribe(SubscriptionConfig(topics=(topic,), from_beginning=True)))
    ok(await consumer.run(ConsumerRunConfig(each_message=handler)))
    await asyncio.wait_for(done.wait(), 20.0)
    for value, result in zip(values, results, strict=True):
        assert written[(result.partition, result.offset)] == value


async def test_get_native_client_gives_the_aiokafka_objects(client: StreamingClient) -> None:
    producer = ok(await client.get_producer(NOT_IDEMPOTENT))
    consumer = ok(await client.get_consumer(_group()))
    admin = ok(await client.get_admin())
    assert isinstance(ok(producer.get_native_client()), AIOKafkaProducer)
    assert isinstance(ok(consumer.get_native_client()), AIOKafkaConsumer)
    assert isinstance(ok(admin.get_native_client()), AIOKafkaAdminClient)


async def test_disconnect_leaves_no_task_behind(dev_broker: DevBroker) -> None:
    before = asyncio.all_tasks()
    client = create_streaming_client("aiokafka", _config(dev_broker))
    topic = unique("topic")
    admin = ok(await client.get_admin())
    ok(await admin.create_topics([TopicConfig(topic, num_partitions=2)]))
    producer = ok(await client.get_producer(NOT_IDEMPOTENT))
    batch = tuple(StreamingMessage(b"%d" % i, key=str(i)) for i in range(20))
    ok(await producer.send_batch(MessageBatch(topic, batch)))
    seen = asyncio.Event()
    count = 0

    async def handler(payload: EachMessagePayload) -> None:
        nonlocal count
        count += 1
        if count == len(batch):
            seen.set()

    consumer = ok(await client.get_consumer(_group()))
    ok(await consumer.subscribe(SubscriptionConfig(topics=(topic,), from_beginning=True)))
    ok(await consumer.run(ConsumerRunConfig(each_message=handler)))
    await asyncio.wait_for(seen.wait(), 20.0)
    ok(await client.disconnect())
    assert await _tasks_settle(before) == set()


async def test_a_member_leaves_its_group_so_the_next_one_is_assigned_at_once(
    client: StreamingClient,
) -> None:
    # Tansu numbers generations from 0, where aiokafka skips LeaveGroup; without the
    # backend's fix the next member waits a whole session timeout for the partitions.
    topic = unique("topic")
    ok(await (ok(await client.get_admin())).create_topics([TopicConfig(topic)]))
    first = _group()
    second = dataclasses.replace(first, heartbeat_interval=0.6)  # same group, another member
    run = ConsumerRunConfig(each_message=lambda payload: asyncio.sleep(0))
    consumer = ok(await client.get_consumer(first))
    ok(await consumer.subscribe(SubscriptionConfig(topics=(topic,))))
    ok(await consumer.run(run))
    ok(await consumer.disconnect())
    began = time.monotonic()
    successor = ok(await client.get_consumer(second))
    ok(await successor.subscribe(SubscriptionConfig(topics=(topic,))))
    ok(await successor.run(run))
    elapsed = time.monotonic() - began
    assert elapsed < first.session_timeout - 0.5, f"assignment took {elapsed:.1f}s"


async def test_sends_end_in_time_when_the_broker_goes_away(dev_broker: DevBroker) -> None:
    config = _config(dev_broker, request_timeout=2.0)
    client = create_streaming_client("aiokafka", config)
    topic = unique("topic")
    ok(await (ok(await client.get_admin())).create_topics([TopicConfig(topic)]))
    producer = ok(await client.get_producer(NOT_IDEMPOTENT))
    ok(await producer.send(topic, StreamingMessage(b"before")))
    await asyncio.to_thread(dev_broker.stop)
    began = time.monotonic()
    outcome = await producer.send(topic, StreamingMessage(b"after"))
    assert isinstance(outcome, Failure), outcome
    assert outcome.error.context["delivery"] in ("not_written", "unknown")
    assert time.monotonic() - began < config.request_timeout + 1.0
    began = time.monotonic()
    await client.disconnect()
    assert time.monotonic() - began < config.request_timeout + 4.0


async def test_disconnect_reports_what_was_still_in_flight(dev_broker: DevBroker) -> None:
    config = _config(dev_broker, request_timeout=2.0)
    client = create_streaming_client("aiokafka", config)
    topic = unique("topic")
    ok(await (ok(await client.get_admin())).create_topics([TopicConfig(topic)]))
    producer = ok(await client.get_producer(NOT_IDEMPOTENT))
    await asyncio.to_thread(dev_broker.stop)
    batch = MessageBatch(topic, tuple(StreamingMessage(b"%d" % i) for i in range(5)))
    sending = asyncio.ensure_future(producer.send_batch(batch))
    await asyncio.sleep(0.1)  # queued, waiting for a broker that is gone
    began = time.monotonic()
    await client.disconnect()
    assert time.monotonic() - began < config.request_timeout + 4.0
    outcome = await asyncio.wait_for(sending, 1.0)
    error = _failure(outcome, "STREAMING_BATCH_PARTIAL_FAILURE")
    results = error.context["results"]
    assert len(results) == len(batch.messages)
    for result in results:
        assert isinstance(result, Failure)
        assert result.error.context["delivery"] in ("not_written", "unknown")


async def test_a_refused_login_never_shows_the_password(
    dev_broker: DevBroker, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cret-" + uuid.uuid4().hex
    security = SecurityConfig(mechanism="scram-sha-256", username="user", password=secret)
    client = create_streaming_client("aiokafka", _config(dev_broker, security=security))
    with caplog.at_level(logging.DEBUG):
        outcome = await client.get_producer(NOT_IDEMPOTENT)
        await client.disconnect()
    # Tansu without --authentication offers no SASL mechanism at all.
    error = _failure(outcome, "STREAMING_AUTHENTICATION_FAILED")
    assert error.context["kafka_error"] == "UNSUPPORTED_SASL_MECHANISM"
    assert secret not in repr(outcome)
    assert secret not in caplog.text
