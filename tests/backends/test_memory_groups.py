"""Consumer groups on the memory broker: assignment spread, stickiness and rebalances."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Mapping

import pytest

from qi.base.streaming import (
    ConsumedMessage,
    ConsumerConfig,
    ConsumerRunConfig,
    EachMessagePayload,
    MessageBatch,
    StreamingClient,
    StreamingConsumer,
    StreamingMessage,
    SubscriptionConfig,
    TopicConfig,
    create_streaming_client,
)
from qi.base.streaming.backends.memory import broker_for, crash, discard_broker
from qi.base.streaming.backends.memory._group import ConsumerGroup, sticky_assignment
from qi.base.streaming.testing._cluster import private_memory_brokers
from testkit import ok, wait_until

from ._memory import config_for

TopicPartition = tuple[str, int]


class FakeMember:
    """A group member that only holds partitions: enough for the assignment logic."""

    def __init__(self, member_id: str, topics: frozenset[str], alive: bool = True) -> None:
        self.member_id = member_id
        self.client_id = "fake-client"
        self.topics = topics
        self.held: frozenset[TopicPartition] = frozenset()
        self.is_alive = alive
        self.revoked: list[frozenset[TopicPartition]] = []

    def wants(self, topic: str) -> bool:
        return topic in self.topics

    def owned(self) -> frozenset[TopicPartition]:
        return self.held

    def alive(self) -> bool:
        return self.is_alive

    async def revoke(self, partitions: frozenset[TopicPartition]) -> None:
        self.revoked.append(partitions)
        self.held -= partitions

    async def assign(self, partitions: frozenset[TopicPartition]) -> None:
        self.held |= partitions


def _check_balanced(
    result: Mapping[str, frozenset[TopicPartition]], topics: Mapping[str, int]
) -> None:
    every = [key for keys in result.values() for key in keys]
    assert len(every) == len(set(every)), "a partition was given twice"
    assert set(every) == {(t, p) for t, count in topics.items() for p in range(count)}
    sizes = [len(keys) for keys in result.values()]
    assert max(sizes) - min(sizes) <= 1, sizes


@pytest.mark.parametrize(
    ("members", "partitions"), list(itertools.product(range(1, 7), (1, 2, 5, 12)))
)
def test_assignment_spreads_partitions_over_1_to_n_members(members: int, partitions: int) -> None:
    topics = {"a": partitions, "b": 3}
    group = [FakeMember(f"m{index}", frozenset(topics)) for index in range(members)]
    result = sticky_assignment(group, topics)
    _check_balanced(result, topics)
    # Deterministic: the same members and topics give the same assignment.
    assert sticky_assignment(group, topics) == result


def test_assignment_is_sticky_when_members_come_and_go() -> None:
    topics = {"a": 12}
    group = [FakeMember(f"m{index}", frozenset(topics)) for index in range(3)]
    for member, keys in zip(group, sticky_assignment(group, topics).values(), strict=True):
        member.held = keys
    before = {member.member_id: member.held for member in group}

    joined = [*group, FakeMember("m3", frozenset(topics))]
    after_join = sticky_assignment(joined, topics)
    _check_balanced(after_join, topics)
    for member in group:  # each old member gave up exactly one partition to the newcomer
        assert after_join[member.member_id] <= before[member.member_id]
        assert len(after_join[member.member_id]) == 3

    survivors = group[1:]
    after_leave = sticky_assignment(survivors, topics)
    _check_balanced(after_leave, topics)
    for member in survivors:  # nobody lost anything when a member left
        assert before[member.member_id] <= after_leave[member.member_id]


def test_assignment_respects_each_member_subscription() -> None:
    topics = {"shared": 4, "only-b": 2, "nobody": 3}
    a = FakeMember("a", frozenset({"shared"}))
    b = FakeMember("b", frozenset({"shared", "only-b"}))
    result = sticky_assignment([a, b], topics)
    assert {key[0] for key in result["a"]} == {"shared"}
    assert {("only-b", 0), ("only-b", 1)} <= result["b"]
    assert len(result["a"]) + len(result["b"]) == 6
    assert sticky_assignment([], topics) == {}


async def test_members_of_closed_event_loops_are_evicted() -> None:
    group = ConsumerGroup("g", lambda: {"t": 4})
    live, dead = FakeMember("live", frozenset({"t"})), FakeMember("dead", frozenset({"t"}))
    dead.held = frozenset({("t", 0), ("t", 1)})
    dead.is_alive = False
    group.join(dead)
    group.join(live)
    await wait_until(lambda: not group.rebalancing(), "the rebalance")
    assert [member.member_id for member in group.members] == ["live"]
    assert live.held == frozenset(("t", p) for p in range(4))


class Member:
    """A consumer of a shared group that records what it handled."""

    def __init__(self) -> None:
        self.seen: list[ConsumedMessage] = []
        self.consumer: StreamingConsumer | None = None

    async def handle(self, payload: EachMessagePayload) -> None:
        self.seen.append(payload.message)

    async def start(self, client: StreamingClient, config: ConsumerConfig, topic: str) -> None:
        self.consumer = ok(await client.get_consumer(config))
        ok(await self.consumer.subscribe(SubscriptionConfig((topic,), from_beginning=True)))
        ok(await self.consumer.run(ConsumerRunConfig(each_message=self.handle)))


@pytest.mark.parametrize("size", [1, 2, 3, 6, 7])
async def test_a_live_group_shares_partitions_and_rebalances_on_leave(size: int) -> None:
    brokers = private_memory_brokers()
    broker = broker_for(brokers)
    broker.create_topic(TopicConfig("work", num_partitions=6))
    config = ConsumerConfig("workers", 6.0, 0.5, auto_commit=False)
    clients = [create_streaming_client("memory", config_for(brokers)) for _ in range(size)]
    members = [Member() for _ in range(size)]
    try:
        for member, client in zip(members, clients, strict=True):
            await member.start(client, config, "work")
        group = broker.group("workers")
        await wait_until(lambda: not group.rebalancing(), "the rebalances")
        owned = list(group.assignment().values())
        assert len(owned) == size
        assert sorted(key for keys in owned for key in keys) == [("work", p) for p in range(6)]
        assert max(map(len, owned)) - min(map(len, owned)) <= 1

        producer = ok(await clients[0].get_producer())
        batch = MessageBatch(
            "work", tuple(StreamingMessage(b"%d" % p, partition=p) for p in range(6))
        )
        ok(await producer.send_batch(batch))
        await wait_until(lambda: sum(len(m.seen) for m in members) == 6, "the first round")

        ok(await clients[-1].disconnect())  # the last member leaves: the others take over
        await wait_until(lambda: not group.rebalancing(), "the rebalance after the leave")
        if size > 1:
            remaining = group.assignment()
            assert len(remaining) == size - 1
            assert sorted(k for keys in remaining.values() for k in keys) == [
                ("work", p) for p in range(6)
            ]
            ok(await producer.send_batch(batch))
            await wait_until(lambda: sum(len(m.seen) for m in members) == 12, "the second round")
            # Leaving committed what the member handled, so nothing was handled twice.
            handled = [(m.partition, m.offset) for member in members for m in member.seen]
            assert sorted(handled) == sorted((p, o) for p in range(6) for o in (0, 1))
        else:
            assert group.assignment() == {}
            assert broker.committed("workers") == {("work", p): 1 for p in range(6)}
    finally:
        for client in clients:
            await client.disconnect()
        discard_broker(brokers)


async def test_a_partition_moving_to_a_newcomer_carries_the_processed_offset() -> None:
    brokers = private_memory_brokers()
    broker = broker_for(brokers)
    broker.create_topic(TopicConfig("moving", num_partitions=2))
    config = ConsumerConfig("movers", 6.0, 0.5, auto_commit=False)
    first, second = Member(), Member()
    async with (
        create_streaming_client("memory", config_for(brokers)) as one,
        create_streaming_client("memory", config_for(brokers)) as two,
    ):
        producer = ok(await one.get_producer())
        batch = MessageBatch("moving", tuple(StreamingMessage(b"x", partition=p) for p in (0, 1)))
        ok(await producer.send_batch(batch))
        await first.start(one, config, "moving")
        await wait_until(lambda: len(first.seen) == 2, "the first member's messages")
        assert broker.committed("movers") == {}  # auto_commit is off and nothing was committed

        await second.start(two, config, "moving")
        group = broker.group("movers")
        await wait_until(lambda: not group.rebalancing(), "the rebalance")
        newcomer = group.members[1].member_id  # members are listed in join order
        (moved,) = group.assignment()[newcomer]
        # The partition taken from the first member was committed on revocation...
        assert broker.committed("movers") == {moved: 1}
        ok(await producer.send_batch(batch))
        await wait_until(lambda: len(first.seen) + len(second.seen) == 4, "the second round")
        # ...so the newcomer starts after what the first member handled.
        assert [(m.topic, m.partition, m.offset) for m in second.seen] == [(*moved, 1)]


async def test_a_crashed_member_keeps_its_partitions_until_its_session_expires() -> None:
    brokers = private_memory_brokers()
    broker = broker_for(brokers)
    broker.create_topic(TopicConfig("crashy", num_partitions=2))
    session = 0.6
    config = ConsumerConfig("crashers", session, 0.1, auto_commit=False)
    handled: list[tuple[str, int, int, float]] = []  # member, partition, offset, when
    blocked = asyncio.Event()
    cancelled: list[int] = []

    def handler(name: str) -> Callable[[EachMessagePayload], Awaitable[None]]:
        async def handle(payload: EachMessagePayload) -> None:
            message = payload.message
            if name == "doomed" and message.offset == 3:
                blocked.set()
                try:
                    await asyncio.Event().wait()  # until the crash
                except asyncio.CancelledError:
                    cancelled.append(message.offset)
                    raise
            handled.append((name, message.partition, message.offset, time.monotonic()))

        return handle

    async with (
        create_streaming_client("memory", config_for(brokers)) as one,
        create_streaming_client("memory", config_for(brokers)) as two,
    ):
        doomed = ok(await one.get_consumer(config))
        ok(await doomed.subscribe(SubscriptionConfig(("crashy",), from_beginning=True)))
        ok(await doomed.run(ConsumerRunConfig(each_message=handler("doomed"))))
        survivor = ok(await two.get_consumer(config))
        ok(await survivor.subscribe(SubscriptionConfig(("crashy",), from_beginning=True)))
        ok(await survivor.run(ConsumerRunConfig(each_message=handler("survivor"))))
        group = broker.group("crashers")
        await wait_until(lambda: not group.rebalancing(), "both members to hold a partition")
        doomed_id = group.members[0].member_id  # members are listed in join order
        (partition,) = group.assignment()[doomed_id]
        producer = ok(await one.get_producer())
        for index in range(5):
            message = StreamingMessage(b"%d" % index, partition=partition[1])
            ok(await producer.send("crashy", message))
        await wait_until(blocked.is_set, "the doomed member to be inside offset 3")
        ok(await doomed.commit_offsets())  # 0, 1 and 2 were handled: the group resumes at 3

        crashed_at = time.monotonic()
        crash(doomed)
        assert not doomed.is_connected()
        await wait_until(lambda: cancelled == [3], "the running handler to be cancelled")
        await wait_until(
            lambda: [o for n, _, o, _ in handled if n == "survivor"] == [3, 4],
            "the survivor to take over from the committed offset",
        )

    taken_at = min(at for name, _, _, at in handled if name == "survivor")
    assert taken_at - crashed_at >= session * 0.9, "the partition moved before the session expired"
    assert [member.member_id for member in group.members] != [doomed_id]
    assert doomed_id not in group.assignment()
