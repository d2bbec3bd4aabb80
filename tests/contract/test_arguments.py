"""Contract section 5: whatever a public method is given, it returns a Result and never raises.

Wrong arguments get the code the contract names: a bad topic name is
STREAMING_INVALID_TOPIC, a bad message STREAMING_INVALID_MESSAGE, a bad config
STREAMING_INVALID_CONFIG, anything else STREAMING_INVALID_ARGUMENT.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from qi.base.streaming import (
    ConsumerRunConfig,
    EachMessagePayload,
    MessageBatch,
    StreamingClient,
    StreamingMessage,
    StreamingProducer,
    SubscriptionConfig,
    TopicConfig,
)
from testkit import ok

from ._support import ConsumerConfigFactory, TopicFactory, expect_failure

JUNK: Any = object()
Call = Callable[[], Awaitable[object] | object]


async def _outcome(call: Call) -> object:
    outcome = call()
    if isinstance(outcome, Awaitable):
        return await outcome
    return outcome


async def _check(cases: list[tuple[str, Call]], backend: str) -> None:
    """Run every case and report all that break the contract, not just the first."""
    problems: list[str] = []
    for index, (code, call) in enumerate(cases):
        try:
            outcome = await _outcome(call)
            expect_failure(outcome, code, implementation=backend)
        except AssertionError as exc:
            problems.append(f"case {index}: {exc}")
        except Exception as exc:  # the contract's promise is exactly that this never happens
            problems.append(f"case {index}: raised {exc!r}")
    assert not problems, "\n".join(problems)


async def _noop(payload: EachMessagePayload) -> None:
    del payload


async def test_producer_methods_never_raise(
    producer: StreamingProducer, make_topic: TopicFactory, backend: str
) -> None:
    topic = await make_topic()
    p = cast(Any, producer)
    message = StreamingMessage(b"x")
    cases: list[tuple[str, Call]] = [
        ("STREAMING_INVALID_TOPIC", lambda: p.send(None, message)),
        ("STREAMING_INVALID_TOPIC", lambda: p.send(42, message)),
        ("STREAMING_INVALID_TOPIC", lambda: p.send(JUNK, message)),
        ("STREAMING_INVALID_TOPIC", lambda: p.send(b"bytes-topic", message)),
        ("STREAMING_INVALID_MESSAGE", lambda: p.send(topic, None)),
        ("STREAMING_INVALID_MESSAGE", lambda: p.send(topic, 42)),
        ("STREAMING_INVALID_MESSAGE", lambda: p.send(topic, "text")),
        ("STREAMING_INVALID_MESSAGE", lambda: p.send(topic, JUNK)),
        ("STREAMING_INVALID_ARGUMENT", lambda: p.send()),
        ("STREAMING_INVALID_ARGUMENT", lambda: p.send(topic)),
        ("STREAMING_INVALID_ARGUMENT", lambda: p.send(topic, message, "extra")),
        ("STREAMING_INVALID_ARGUMENT", lambda: p.send(topic, message, bogus=1)),
        ("STREAMING_INVALID_ARGUMENT", lambda: p.send(topic=topic, msg=message)),
        ("STREAMING_INVALID_MESSAGE", lambda: p.send_batch(None)),
        ("STREAMING_INVALID_MESSAGE", lambda: p.send_batch(42)),
        ("STREAMING_INVALID_MESSAGE", lambda: p.send_batch(message)),
        ("STREAMING_INVALID_TOPIC", lambda: p.send_batch(MessageBatch(JUNK, (message,)))),
        ("STREAMING_INVALID_MESSAGE", lambda: p.send_batch(MessageBatch(topic, JUNK))),
        ("STREAMING_INVALID_ARGUMENT", lambda: p.send_batch()),
        ("STREAMING_INVALID_ARGUMENT", lambda: p.send_batch(MessageBatch(topic, ()), 1)),
        ("STREAMING_INVALID_ARGUMENT", lambda: p.send_batch(MessageBatch(topic, ()), x=1)),
        ("STREAMING_INVALID_ARGUMENT", lambda: p.get_native_client(1)),
        ("STREAMING_INVALID_ARGUMENT", lambda: p.get_native_client(bogus=1)),
        ("STREAMING_INVALID_ARGUMENT", lambda: p.connect(1)),
        ("STREAMING_INVALID_ARGUMENT", lambda: p.disconnect(timeout=1)),
    ]
    await _check(cases, backend)
    # None of that broke the producer.
    assert producer.is_connected()
    ok(await producer.send(topic, message))


async def test_consumer_methods_never_raise(
    client: StreamingClient,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
    backend: str,
) -> None:
    topic = await make_topic()
    consumer = ok(await client.get_consumer(consumer_config()))
    c = cast(Any, consumer)
    cases: list[tuple[str, Call]] = [
        ("STREAMING_INVALID_CONFIG", lambda: c.subscribe(None)),
        ("STREAMING_INVALID_CONFIG", lambda: c.subscribe(topic)),
        ("STREAMING_INVALID_CONFIG", lambda: c.subscribe([topic])),
        ("STREAMING_INVALID_CONFIG", lambda: c.subscribe(JUNK)),
        ("STREAMING_INVALID_CONFIG", lambda: c.subscribe(SubscriptionConfig(pattern="(unclosed"))),
        ("STREAMING_INVALID_CONFIG", lambda: c.subscribe(SubscriptionConfig(pattern=JUNK))),
        ("STREAMING_INVALID_CONFIG", lambda: c.subscribe(SubscriptionConfig(topics=JUNK))),
        ("STREAMING_INVALID_TOPIC", lambda: c.subscribe(SubscriptionConfig(topics=("a b",)))),
        ("STREAMING_INVALID_TOPIC", lambda: c.subscribe(SubscriptionConfig(topics=(JUNK,)))),
        ("STREAMING_INVALID_ARGUMENT", lambda: c.subscribe()),
        ("STREAMING_INVALID_ARGUMENT", lambda: c.subscribe(SubscriptionConfig((topic,)), 1)),
        ("STREAMING_INVALID_ARGUMENT", lambda: c.run()),
        ("STREAMING_INVALID_ARGUMENT", lambda: c.run(ConsumerRunConfig(_noop), bogus=True)),
        ("STREAMING_INVALID_ARGUMENT", lambda: c.commit_offsets(1)),
        ("STREAMING_INVALID_ARGUMENT", lambda: c.commit_offsets(force=True)),
        ("STREAMING_INVALID_TOPIC", lambda: c.seek(None, 0, 0)),
        ("STREAMING_INVALID_TOPIC", lambda: c.seek("", 0, 0)),
        ("STREAMING_INVALID_ARGUMENT", lambda: c.seek(topic, "zero", 0)),
        ("STREAMING_INVALID_ARGUMENT", lambda: c.seek(topic, -1, 0)),
        ("STREAMING_INVALID_ARGUMENT", lambda: c.seek(topic, None, 0)),
        ("STREAMING_INVALID_ARGUMENT", lambda: c.seek(topic, 0, JUNK)),
        ("STREAMING_INVALID_ARGUMENT", lambda: c.seek(topic, 0)),
        ("STREAMING_INVALID_ARGUMENT", lambda: c.seek(topic, 0, 0, 0)),
        ("STREAMING_INVALID_ARGUMENT", lambda: c.get_native_client(None)),
        ("STREAMING_INVALID_ARGUMENT", lambda: c.connect(None)),
        ("STREAMING_INVALID_ARGUMENT", lambda: c.disconnect(None)),
    ]
    await _check(cases, backend)
    ok(await consumer.subscribe(SubscriptionConfig(topics=(topic,))))
    run_cases: list[tuple[str, Call]] = [
        ("STREAMING_INVALID_CONFIG", lambda: c.run(None)),
        ("STREAMING_INVALID_CONFIG", lambda: c.run(_noop)),
        ("STREAMING_INVALID_CONFIG", lambda: c.run(JUNK)),
        ("STREAMING_INVALID_CONFIG", lambda: c.run(ConsumerRunConfig(each_message=JUNK))),
        ("STREAMING_INVALID_CONFIG", lambda: c.run(ConsumerRunConfig(_noop, on_error=JUNK))),
        ("STREAMING_INVALID_CONFIG", lambda: c.run(ConsumerRunConfig(_noop, retry_backoff=-1))),
        ("STREAMING_INVALID_CONFIG", lambda: c.run(ConsumerRunConfig(_noop, retry_backoff=JUNK))),
    ]
    await _check(run_cases, backend)
    assert consumer.is_connected()


async def test_admin_methods_never_raise(client: StreamingClient, backend: str) -> None:
    a = cast(Any, ok(await client.get_admin()))
    cases: list[tuple[str, Call]] = [
        ("STREAMING_INVALID_ARGUMENT", lambda: a.create_topics(None)),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.create_topics(42)),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.create_topics("a-topic")),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.create_topics(TopicConfig("a-topic"))),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.create_topics(JUNK)),
        ("STREAMING_INVALID_CONFIG", lambda: a.create_topics([None])),
        ("STREAMING_INVALID_CONFIG", lambda: a.create_topics([TopicConfig("t", JUNK)])),
        ("STREAMING_INVALID_CONFIG", lambda: a.create_topics([TopicConfig("t", 1, 1, JUNK)])),
        ("STREAMING_INVALID_TOPIC", lambda: a.create_topics([TopicConfig(JUNK)])),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.create_topics()),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.create_topics([], [])),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.delete_topics(None)),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.delete_topics("a-topic")),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.delete_topics(42)),
        ("STREAMING_INVALID_TOPIC", lambda: a.delete_topics([None])),
        ("STREAMING_INVALID_TOPIC", lambda: a.delete_topics(["a b"])),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.delete_topics()),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.list_topics(1)),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.list_topics(internal=True)),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.get_topic_metadata(None)),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.get_topic_metadata(7)),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.get_topic_metadata("a-topic")),
        ("STREAMING_INVALID_TOPIC", lambda: a.get_topic_metadata([JUNK])),
        ("STREAMING_INVALID_TOPIC", lambda: a.get_topic_metadata([".."])),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.get_topic_metadata()),
        ("STREAMING_INVALID_TOPIC", lambda: a.get_topic_offsets(None)),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.get_topic_offsets()),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.list_groups(1)),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.describe_group(None)),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.describe_group()),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.get_group_lag("g", "a-topic")),
        ("STREAMING_INVALID_TOPIC", lambda: a.get_group_lag("g", [JUNK])),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.reset_group_offsets("g", "t", JUNK)),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.reset_group_offsets("g", "t", 1.5)),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.reset_group_offsets("g", "t")),
        ("STREAMING_INVALID_TOPIC", lambda: a.reset_group_offsets("g", JUNK, "latest")),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.delete_group(JUNK)),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.delete_group("g", "h")),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.get_native_client(1)),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.connect(1)),
        ("STREAMING_INVALID_ARGUMENT", lambda: a.disconnect(1)),
    ]
    await _check(cases, backend)
    assert ok(await a.list_topics()) is not None


async def test_client_methods_never_raise(client: StreamingClient, backend: str) -> None:
    c = cast(Any, client)
    cases: list[tuple[str, Call]] = [
        ("STREAMING_INVALID_CONFIG", lambda: c.get_producer(42)),
        ("STREAMING_INVALID_CONFIG", lambda: c.get_producer("all")),
        ("STREAMING_INVALID_CONFIG", lambda: c.get_producer(JUNK)),
        ("STREAMING_INVALID_CONFIG", lambda: c.get_producer([1])),
        ("STREAMING_INVALID_CONFIG", lambda: c.get_consumer(None)),
        ("STREAMING_INVALID_CONFIG", lambda: c.get_consumer("group")),
        ("STREAMING_INVALID_CONFIG", lambda: c.get_consumer({"group_id": "g"})),
        ("STREAMING_INVALID_ARGUMENT", lambda: c.get_producer(None, None)),
        ("STREAMING_INVALID_ARGUMENT", lambda: c.get_producer(bogus=1)),
        ("STREAMING_INVALID_ARGUMENT", lambda: c.get_consumer()),
        ("STREAMING_INVALID_ARGUMENT", lambda: c.get_admin(1)),
        ("STREAMING_INVALID_ARGUMENT", lambda: c.is_healthy(1)),
        ("STREAMING_INVALID_ARGUMENT", lambda: c.disconnect(1)),
    ]
    await _check(cases, backend)
    assert ok(await client.is_healthy()) is True


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise ValueError("this exception cannot be described")


class _UnhashableTopic(str):
    """A topic name (a str) that fails as soon as it is hashed, with an unprintable error."""

    __slots__ = ()

    def __hash__(self) -> int:
        raise _Unprintable()


async def test_an_exception_that_cannot_be_described_is_still_a_failure(
    producer: StreamingProducer, make_topic: TopicFactory, backend: str
) -> None:
    # Describing an escaped exception (str(exc), the debug log) runs inside the boundary's
    # own handler: when that raises too, the call must still return its Failure.
    topic = await make_topic()
    sent = await producer.send(_UnhashableTopic(topic), StreamingMessage(b"x"))
    error = expect_failure(sent, "STREAMING_PRODUCE_FAILED", implementation=backend)
    assert error.context["exception_type"] == "_Unprintable"
    assert error.context["delivery"] == "unknown"
    ok(await producer.send(topic, StreamingMessage(b"x")))
