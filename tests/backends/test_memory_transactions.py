"""The memory broker's transaction coordinator: epochs, timeouts and group fencing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from qi.base.streaming import (
    ConsumerConfig,
    ConsumerRunConfig,
    EachMessagePayload,
    ProducerConfig,
    StreamingClient,
    StreamingConsumer,
    StreamingMessage,
    SubscriptionConfig,
    TopicConfig,
    create_streaming_client,
)
from qi.base.streaming.backends.memory import (
    BrokerError,
    MemoryBroker,
    broker_for,
)
from qi.base.streaming.backends.memory._errors import MemoryBrokerError
from qi.base.streaming.backends.memory._transactions import MemoryGroupMetadata
from testkit import ok, wait_until

from ._memory import client_with_topics, config_for, failed


@pytest.fixture
async def client(brokers: tuple[str, ...]) -> AsyncIterator[StreamingClient]:
    async with client_with_topics(brokers, TopicConfig("t", 2)) as client:
        yield client


def broker(brokers: tuple[str, ...]) -> MemoryBroker:
    return broker_for(brokers)


async def test_each_initialisation_bumps_the_epoch_and_fences_the_older_producers(
    brokers: tuple[str, ...],
) -> None:
    coordinator = broker(brokers).transactions
    first = coordinator.init_producer("id", 60.0)
    second = coordinator.init_producer("id", 60.0)
    third = coordinator.init_producer("id", 60.0)
    assert first.producer_id == second.producer_id == third.producer_id
    assert (first.epoch, second.epoch, third.epoch) == (0, 1, 2)
    assert coordinator.init_producer("other", 60.0).producer_id != first.producer_id


async def test_initialising_the_id_again_aborts_the_open_transaction(
    client: StreamingClient, brokers: tuple[str, ...]
) -> None:
    config = ProducerConfig(transactional_id="restarted")
    old = ok(await client.get_producer(config))
    txn = ok(await old.transaction())
    ok(await txn.send("t", StreamingMessage(b"left open", partition=0)))
    topic = broker(brokers).topic("t")
    assert topic is not None
    assert topic.readable_end(0, committed_only=True) == 0
    restarted = create_streaming_client("memory", config_for(brokers))
    try:
        ok(await restarted.get_producer(config))
        # Aborted by the new instance's initialisation: marker at 1, nothing held back.
        assert topic.readable_end(0, committed_only=True) == 2
        assert topic.read(0, 0, 2, committed_only=True) == []
        error = failed(
            await txn.send("t", StreamingMessage(b"zombie")), "STREAMING_PRODUCER_FENCED"
        )
        assert error.context["fatal"] is True
        assert error.context["delivery"] == "not_written"
    finally:
        await restarted.disconnect()


async def test_a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced(
    client: StreamingClient, brokers: tuple[str, ...]
) -> None:
    producer = ok(
        await client.get_producer(ProducerConfig(transactional_id="slow", transaction_timeout=0.2))
    )
    txn = ok(await producer.transaction())
    ok(await txn.send("t", StreamingMessage(b"too slow", partition=0)))
    topic = broker(brokers).topic("t")
    assert topic is not None
    # The coordinator's timer aborts it without any further request: a marker appears.
    await wait_until(lambda: len(topic.logs[0]) == 2, "the abort marker")
    assert topic.read(0, 0, 2, committed_only=True) == []
    assert [m.value for m in topic.read(0, 0, 2)] == [b"too slow"]
    error = failed(await txn.commit(), "STREAMING_PRODUCER_FENCED")
    assert error.context["kafka_error"] == "PRODUCER_FENCED"
    failed(await producer.transaction(), "STREAMING_PRODUCER_FENCED")


async def test_a_member_cannot_commit_partitions_it_lost_in_a_rebalance(
    client: StreamingClient, brokers: tuple[str, ...]
) -> None:
    producer = ok(await client.get_producer(ProducerConfig(transactional_id="pipeline")))

    async def handle(payload: EachMessagePayload) -> None:
        return None

    async def member() -> StreamingConsumer:
        consumer = ok(
            await client.get_consumer(
                ConsumerConfig("g", session_timeout=1.0, heartbeat_interval=0.1, auto_commit=False)
            )
        )
        ok(await consumer.subscribe(SubscriptionConfig(topics=("t",))))
        ok(await consumer.run(ConsumerRunConfig(each_message=handle)))
        return consumer

    first = await member()
    group = broker(brokers).group("g")
    await wait_until(lambda: len(group.committed) == 0 and len(group.members) == 1, "one member")
    txn = ok(await producer.transaction())
    ok(await txn.send_offsets(first, {("t", 0): 5, ("t", 1): 7}))

    second = ok(
        await create_streaming_client("memory", config_for(brokers)).get_consumer(
            ConsumerConfig("g", session_timeout=1.0, heartbeat_interval=0.1, auto_commit=False)
        )
    )
    ok(await second.subscribe(SubscriptionConfig(topics=("t",))))
    ok(await second.run(ConsumerRunConfig(each_message=handle)))
    await wait_until(lambda: all(group.assignment().values()), "both members own a partition")
    lost = next(iter(group.assignment()[group.members[1].member_id]))

    # Sent before the rebalance, refused at commit: the transaction stays whole and abortable.
    error = failed(await txn.commit(), "STREAMING_TRANSACTION_FAILED")
    assert error.context["abortable"] is True
    assert error.context["kafka_error"] == "ILLEGAL_GENERATION"
    ok(await txn.abort())
    assert broker(brokers).committed("g") == {}
    # Sent after it: refused at once.
    txn = ok(await producer.transaction())
    failed(await txn.send_offsets(first, {lost: 1}), "STREAMING_TRANSACTION_FAILED")
    ok(await txn.abort())
    ok(await second.disconnect())


async def test_offsets_of_a_generation_the_group_moved_past_are_refused(
    client: StreamingClient, brokers: tuple[str, ...]
) -> None:
    async def handle(payload: EachMessagePayload) -> None:
        return None

    consumer = ok(
        await client.get_consumer(
            ConsumerConfig("g", session_timeout=1.0, heartbeat_interval=0.1, auto_commit=False)
        )
    )
    ok(await consumer.subscribe(SubscriptionConfig(topics=("t",))))
    ok(await consumer.run(ConsumerRunConfig(each_message=handle)))
    memory = broker(brokers)
    group = memory.group("g")
    await wait_until(lambda: not group.rebalancing(), "the group to settle")
    member = group.members[0].member_id
    coordinator = memory.transactions
    session = coordinator.init_producer("stale", 60.0)
    coordinator.begin(session)
    current = MemoryGroupMetadata("g", member, group.generation)
    coordinator.add_offsets(session, current, {("t", 0): 1})
    stale = MemoryGroupMetadata("g", member, group.generation - 1)
    with pytest.raises(MemoryBrokerError) as refused:
        coordinator.add_offsets(session, stale, {("t", 0): 2})
    assert refused.value.error is BrokerError.ILLEGAL_GENERATION
    gone = MemoryGroupMetadata("g", "nobody", group.generation)
    with pytest.raises(MemoryBrokerError) as unknown:
        coordinator.add_offsets(session, gone, {("t", 0): 2})
    assert unknown.value.error is BrokerError.UNKNOWN_MEMBER_ID
    coordinator.commit(session)
    assert memory.committed("g") == {("t", 0): 1}
    ok(await consumer.disconnect())


@pytest.mark.parametrize(("partitions", "written"), [(2, 0), (1, 1)])
async def test_ending_a_transaction_leaves_a_topic_created_anew_under_its_name_alone(
    client: StreamingClient, brokers: tuple[str, ...], partitions: int, written: int
) -> None:
    producer = ok(await client.get_producer(ProducerConfig(transactional_id="recreated")))
    txn = ok(await producer.transaction())
    ok(await txn.send("t", StreamingMessage(b"old", partition=written)))
    admin = ok(await client.get_admin())
    ok(await admin.delete_topics(["t"]))
    ok(await admin.create_topics([TopicConfig("t", partitions)]))
    plain = ok(await client.get_producer())
    ok(await plain.send("t", StreamingMessage(b"new", partition=0)))
    # Its marker and hidden offset were for the deleted topic (whose partition 1 the new
    # one lacks): the new topic's record stays readable, and nothing is left stuck.
    ok(await txn.abort())
    topic = broker(brokers).topic("t")
    assert topic is not None
    assert len(topic.logs[0]) == 1  # no marker in the new topic
    assert [m.value for m in topic.read(0, 0, 1, committed_only=True)] == [b"new"]
    ok(await (await producer.transaction()).unwrap().abort())


async def test_an_abort_that_could_not_reach_the_broker_is_finished_by_the_next_transaction(
    client: StreamingClient, brokers: tuple[str, ...]
) -> None:
    producer = ok(await client.get_producer(ProducerConfig(transactional_id="cut-off")))
    txn = ok(await producer.transaction())
    ok(await txn.send("t", StreamingMessage(b"never", partition=0)))
    memory = broker(brokers)
    memory.set_unreachable()
    failed(await txn.abort(), "STREAMING_CONNECTION_FAILED")
    memory.set_unreachable(False)
    topic = memory.topic("t")
    assert topic is not None
    assert topic.readable_end(0, committed_only=True) == 0  # the broker was not told
    # Not "a transaction is still open" until transaction_timeout fences the producer.
    ok(await (await producer.transaction()).unwrap().commit())
    assert topic.read(0, 0, len(topic.logs[0]), committed_only=True) == []
    assert topic.readable_end(0, committed_only=True) == len(topic.logs[0])
