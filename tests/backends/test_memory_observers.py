"""The memory broker's group observers: what a test's history learns of joins, assignments,
revocations and commits, in the order the coordinator acts."""

from __future__ import annotations

import asyncio
import logging

import pytest

from qi.base.streaming import (
    ConsumerConfig,
    ConsumerRunConfig,
    EachMessagePayload,
    MessageBatch,
    StreamingMessage,
    SubscriptionConfig,
    TopicConfig,
    create_streaming_client,
)
from qi.base.streaming.backends.memory import GroupEvent, broker_for, discard_broker
from qi.base.streaming.backends.memory._group import ConsumerGroup
from qi.base.streaming.testing._cluster import private_memory_brokers
from testkit import ok, wait_until

from ._memory import config_for
from .test_memory_groups import FakeMember


async def test_observers_see_joins_assignments_commits_and_revocations_in_order() -> None:
    brokers = private_memory_brokers()
    broker = broker_for(brokers)
    events: list[GroupEvent] = []
    stop = broker.observe_groups(events.append)
    handled: list[int] = []
    slow_handler_running = asyncio.Event()
    release = asyncio.Event()

    async def first_handler(payload: EachMessagePayload) -> None:
        if payload.message.offset == 3:
            slow_handler_running.set()
            await release.wait()
        handled.append(payload.message.offset)

    async def second_handler(payload: EachMessagePayload) -> None:
        handled.append(payload.message.offset)

    try:
        async with create_streaming_client("memory", config_for(brokers)) as client:
            admin = ok(await client.get_admin())
            ok(await admin.create_topics([TopicConfig("t", num_partitions=2)]))
            producer = ok(await client.get_producer())
            batch = tuple(StreamingMessage(b"x", partition=1) for _ in range(4))
            ok(await producer.send_batch(MessageBatch("t", batch)))
            group = ConsumerConfig(group_id="g", auto_commit=False)
            subscription = SubscriptionConfig(topics=("t",), from_beginning=True)
            first = ok(await client.get_consumer(group))
            ok(await first.subscribe(subscription))
            ok(await first.run(ConsumerRunConfig(each_message=first_handler)))
            await asyncio.wait_for(slow_handler_running.wait(), 5)
            ok(await first.commit_offsets())

            async with create_streaming_client("memory", config_for(brokers)) as other:
                second = ok(await other.get_consumer(group))
                ok(await second.subscribe(subscription))
                run_second = second.run(ConsumerRunConfig(each_message=second_handler))
                joining = asyncio.ensure_future(run_second)
                await wait_until(lambda: any(e.kind == "revoking" for e in events), "revoking")
                release.set()
                ok(await joining)
                await wait_until(lambda: len(handled) >= 4, "every message handled")
    finally:
        stop()
        discard_broker(brokers)

    first_id, second_id = events[0].member_id, events[3].member_id
    assert first_id != second_id
    kinds = [(event.kind, event.member_id) for event in events]
    assert kinds[:2] == [("joined", first_id), ("assigned", first_id)]
    assert events[1].partitions == {("t", 0), ("t", 1)}
    # commit_offsets while offset 3 ran: offsets 0-2 of partition 1 were processed.
    assert events[2] == GroupEvent("committed", "g", first_id, frozenset({("t", 1)}), {("t", 1): 3})
    assert kinds[3][0] == "joined"
    revoking = kinds.index(("revoking", first_id))
    revoked = kinds.index(("revoked", first_id))
    # Told before the running handler was waited for; the commit of what it finished follows.
    committed = kinds.index(("committed", first_id), revoking)
    assert revoking < committed < revoked
    # The sticky assignment keeps partition 0 on the first member and moves partition 1.
    assert events[revoking].partitions == events[revoked].partitions == {("t", 1)}
    assert events[committed].offsets == {("t", 1): 4}
    assigned = kinds.index(("assigned", second_id))
    assert revoked < assigned
    assert events[assigned].partitions == events[revoking].partitions
    # Both members left at the end: each said so before its partitions were revoked.
    assert ("left", first_id) in kinds and ("left", second_id) in kinds


async def test_stopping_an_observer_and_a_failing_observer_leave_the_group_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[GroupEvent] = []

    def failing(event: GroupEvent) -> None:
        raise RuntimeError("observer bug")

    observers = [failing, seen.append]
    group = ConsumerGroup("g", lambda: {"t": 2}, observers)
    member = FakeMember("m", frozenset({"t"}))
    with caplog.at_level(logging.ERROR, logger="qi.base.streaming.memory"):
        group.join(member)
        await wait_until(lambda: not group.rebalancing(), "the rebalance")
    assert member.held == {("t", 0), ("t", 1)}
    assert [event.kind for event in seen] == ["joined", "assigned"]
    assert "group observer" in caplog.text and "observer bug" in caplog.text

    broker = broker_for(private_memory_brokers())
    stop = broker.observe_groups(seen.append)
    stop()
    stop()  # idempotent
    broker.group("h").join(FakeMember("n", frozenset({"t"})))
    assert [event.kind for event in seen] == ["joined", "assigned"]


async def test_a_member_of_a_closed_loop_is_reported_evicted() -> None:
    seen: list[GroupEvent] = []
    group = ConsumerGroup("g", lambda: {"t": 2}, [seen.append])
    dead = FakeMember("dead", frozenset({"t"}), alive=False)
    dead.held = frozenset({("t", 0)})
    group.join(dead)
    group.join(FakeMember("live", frozenset({"t"})))
    await wait_until(lambda: not group.rebalancing(), "the rebalance")
    assert [(event.kind, event.member_id) for event in seen] == [
        ("joined", "dead"),
        ("joined", "live"),
        ("evicted", "dead"),
        ("assigned", "live"),
    ]
