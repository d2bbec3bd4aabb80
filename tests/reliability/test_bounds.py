"""Every public call returns within its documented bound, whatever the others are doing.

Each test measures one call against the bound the contract or the README gives it,
while something else makes it as hard as it can: a slow broker, a stalled one, a
handler that finishes just in time.
"""

from __future__ import annotations

import asyncio

import pytest

from qi.base import Success
from qi.base.streaming import (
    ConsumerRunConfig,
    EachMessagePayload,
    ErrorCode,
    StreamingMessage,
    SubscriptionConfig,
    TopicConfig,
    create_streaming_client,
)
from testkit import ok, unique, wait_until

from ._proxy import ProxiedBroker
from ._scenarios import Faults, consumer_config, timed
from ._support import backend_params, producer_config_for, streaming_config

# Beyond a bound, the time a call may take to notice it ran out (scheduling, a poll).
SLACK = 2.0


@pytest.mark.parametrize("backend", backend_params(("confluent", "aiokafka")))
async def test_concurrent_sends_to_a_missing_topic_each_fail_within_request_timeout(
    backend: str, proxied_broker: ProxiedBroker
) -> None:
    config = streaming_config((proxied_broker.bootstrap,), request_timeout=4.0)
    async with create_streaming_client(backend, config) as client:
        producer = ok(await client.get_producer(producer_config_for(backend)))
        topic = unique("missing")
        # The client now knows the topic is missing; every send below has to look again.
        first = await producer.send(topic, StreamingMessage(b"first"))
        assert not isinstance(first, Success)
        proxied_broker.proxy.add_latency(0.3)  # each metadata request takes a while
        try:
            outcomes = await asyncio.gather(
                *(timed(producer.send(topic, StreamingMessage(b"%d" % i))) for i in range(20))
            )
        finally:
            proxied_broker.proxy.restore()
    for outcome, seconds in outcomes:
        assert not isinstance(outcome, Success), outcome
        assert outcome.error.code == ErrorCode.TOPIC_NOT_FOUND, outcome.error
        assert seconds <= config.request_timeout + SLACK, f"a send took {seconds:.1f}s"


async def test_a_run_that_cannot_join_returns_within_its_bound(
    backend: str, faulty: tuple[tuple[str, ...], Faults]
) -> None:
    brokers, faults = faulty
    config = streaming_config(brokers, request_timeout=5.0)
    group = consumer_config()
    bound = 2 * group.session_timeout + config.connection_timeout
    async with create_streaming_client(backend, config) as client:
        admin = ok(await client.get_admin())
        topic = unique("unjoinable")
        ok(await admin.create_topics([TopicConfig(topic)]))
        consumer = ok(await client.get_consumer(group))
        ok(await consumer.subscribe(SubscriptionConfig(topics=(topic,))))
        faults.stall()
        try:
            outcome, seconds = await timed(consumer.run(ConsumerRunConfig(each_message=_ignore)))
        finally:
            faults.restore()
    # Joining may fail, or succeed against a broker that still answers part of it: either
    # way run() keeps its bound, leaving the group included.
    if not isinstance(outcome, Success):
        assert outcome.error.code == ErrorCode.TIMEOUT, outcome.error
    assert seconds <= bound + SLACK, f"run() took {seconds:.1f}s (bound {bound:.1f}s)"


async def test_disconnect_commits_what_a_late_handler_finished_within_its_bound(
    backend: str, faulty: tuple[tuple[str, ...], Faults]
) -> None:
    brokers, faults = faulty
    config = streaming_config(brokers, request_timeout=4.0)
    # A session long enough that the broker keeps the member through the stall below.
    group = consumer_config(auto_commit=False, session_timeout=12.0, heartbeat_interval=1.0)
    late = config.request_timeout - 0.3  # the handler finishes just within its allowance
    topic = unique("late")
    slow_started = asyncio.Event()

    async def handle(payload: EachMessagePayload) -> None:
        if payload.message.offset == 1:
            slow_started.set()
            await asyncio.sleep(late)

    async with create_streaming_client(backend, config) as client:
        admin = ok(await client.get_admin())
        ok(await admin.create_topics([TopicConfig(topic)]))
        producer = ok(await client.get_producer(producer_config_for(backend)))
        for index in range(3):
            ok(await producer.send(topic, StreamingMessage(b"%d" % index, partition=0)))
        consumer = ok(await client.get_consumer(group))
        ok(await consumer.subscribe(SubscriptionConfig(topics=(topic,), from_beginning=True)))
        ok(await consumer.run(ConsumerRunConfig(each_message=handle)))
        await asyncio.wait_for(slow_started.wait(), 30.0)
        # The broker stops answering, so the commit after the handler waits; it answers
        # again well within the commit's own bound, but after request_timeout + 2 s.
        faults.stall()
        restore = asyncio.get_running_loop().call_later(late + 2.7, faults.restore)
        try:
            outcome, seconds = await timed(consumer.disconnect())
        finally:
            restore.cancel()
            faults.restore()
        assert isinstance(outcome, Success), outcome
        bound = 2 * config.request_timeout
        assert seconds <= bound + SLACK, f"disconnect took {seconds:.1f}s (bound {bound:.1f}s)"

        # The next member starts right after the message the late handler finished.
        seen: list[int] = []

        async def collect(payload: EachMessagePayload) -> None:
            seen.append(payload.message.offset)

        successor = ok(await client.get_consumer(group))
        ok(await successor.subscribe(SubscriptionConfig(topics=(topic,), from_beginning=True)))
        ok(await successor.run(ConsumerRunConfig(each_message=collect)))
        await wait_until(lambda: bool(seen), "the successor's first message", within=30.0)
        assert seen[0] == 2, f"the late handler's message was not committed: {seen}"


async def _ignore(payload: EachMessagePayload) -> None:
    pass
