"""Contract section 10: consumer groups and their offsets, seen and changed by the admin.

Every test is marked ``kafka_rules``: on Tansu the real backends talk to noida-db
instead, because Tansu reports a wrong end offset after a batched produce and lacks
part of the group admin (see the README's broker quirks).
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

import pytest

from qi.base.streaming import (
    ConsumerConfig,
    GroupDescription,
    MessageBatch,
    PartitionLag,
    PartitionOffsets,
    StreamingAdmin,
    StreamingClient,
    StreamingConfig,
    StreamingConsumer,
    StreamingMessage,
    StreamingProducer,
    SubscriptionConfig,
)
from testkit import Collector, ok, unique, wait_until

from ._support import (
    ConsumerConfigFactory,
    TopicFactory,
    consume,
    expect_failure,
    numbered,
    produce,
    start_consumer,
)

pytestmark = pytest.mark.kafka_rules


async def _admin(client: StreamingClient) -> StreamingAdmin:
    return ok(await client.get_admin())


async def _describe(admin: StreamingAdmin, group_id: str) -> GroupDescription:
    return ok(await admin.describe_group(group_id))


async def _committed_group(
    client: StreamingClient,
    producer: StreamingProducer,
    config: ConsumerConfig,
    topic: str,
    count: int,
) -> None:
    """Produce ``count`` messages to partition 0, consume them all and leave (which commits)."""
    await produce(producer, topic, numbered("m", count), partition=0)
    await consume(client, config, [topic], count)


class _Group(NamedTuple):
    """A group that read its topic's first messages and left, and the admin to inspect it."""

    admin: StreamingAdmin
    topic: str
    config: ConsumerConfig


class _GroupFactory(Protocol):
    """A new topic, ``count`` messages on its partition 0 and a group that read them."""

    def __call__(self, *, partitions: int, count: int) -> Awaitable[_Group]: ...


@pytest.fixture
def group_that_read(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> _GroupFactory:
    async def make(*, partitions: int, count: int) -> _Group:
        admin = await _admin(client)
        topic = await make_topic(partitions)
        config = consumer_config()
        await _committed_group(client, producer, config, topic, count)
        return _Group(admin, topic, config)

    return make


async def _committed(admin: StreamingAdmin, group_id: str) -> list[int | None]:
    """The group's committed offset of each partition it has committed to."""
    return [lag.committed for lag in ok(await admin.get_group_lag(group_id))]


async def _running_member(
    client: StreamingClient, config: ConsumerConfig, topic: str
) -> StreamingConsumer:
    return await start_consumer(
        client, config, SubscriptionConfig(topics=(topic,)), Collector().run_config()
    )


async def test_topic_offsets_follow_single_and_batched_produces(
    client: StreamingClient, producer: StreamingProducer, make_topic: TopicFactory
) -> None:
    admin = await _admin(client)
    topic = await make_topic(2)
    assert ok(await admin.get_topic_offsets(topic)) == (
        PartitionOffsets(topic, 0, 0, 0),
        PartitionOffsets(topic, 1, 0, 0),
    )

    await produce(producer, topic, numbered("single", 3), partition=0)
    batch = tuple(StreamingMessage(value, partition=1) for value in numbered("batch", 10))
    ok(await producer.send_batch(MessageBatch(topic, batch)))

    assert ok(await admin.get_topic_offsets(topic)) == (
        PartitionOffsets(topic, 0, 0, 3),
        PartitionOffsets(topic, 1, 0, 10),
    )
    missing = await admin.get_topic_offsets(unique("missing"))
    expect_failure(missing, "STREAMING_TOPIC_NOT_FOUND")
    expect_failure(await admin.get_topic_offsets("bad name!"), "STREAMING_INVALID_TOPIC")


async def test_lag_counts_from_the_commit_or_from_the_log_start(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    admin = await _admin(client)
    read, unread = await make_topic(2), await make_topic(1)
    config = consumer_config()
    await _committed_group(client, producer, config, read, 3)
    await produce(producer, read, numbered("later", 2), partition=0)
    await produce(producer, read, numbered("other", 4), partition=1)
    await produce(producer, unread, numbered("never", 5), partition=0)

    lags = ok(await admin.get_group_lag(config.group_id, [read, unread]))

    # Partition 1 of ``read`` may or may not carry a commit (a client may commit where it
    # stands on an assigned partition): either way its lag counts its 4 messages.
    assert lags[0] == PartitionLag(read, 0, 3, 0, 5, 2)
    assert (lags[1].topic, lags[1].partition, lags[1].end, lags[1].lag) == (read, 1, 4, 4)
    assert lags[1].committed in (None, 0)
    assert lags[2] == PartitionLag(unread, 0, None, 0, 5, 5)


async def test_lag_of_every_committed_topic_when_none_are_named(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    admin = await _admin(client)
    read, other = await make_topic(1), await make_topic(1)
    await produce(producer, other, numbered("elsewhere", 2), partition=0)
    config = consumer_config()
    await _committed_group(client, producer, config, read, 2)
    await produce(producer, read, numbered("later", 1), partition=0)

    assert ok(await admin.get_group_lag(config.group_id)) == (PartitionLag(read, 0, 2, 0, 3, 1),)
    missing = await admin.get_group_lag(config.group_id, [unique("missing")])
    expect_failure(missing, "STREAMING_TOPIC_NOT_FOUND")


async def test_describe_shows_an_active_member_and_its_assignment(
    client: StreamingClient,
    streaming_config: StreamingConfig,
    group_that_read: _GroupFactory,
) -> None:
    admin, topic, config = await group_that_read(partitions=2, count=1)
    consumer = await _running_member(client, config, topic)

    async def one_stable_member() -> bool:
        described = await _describe(admin, config.group_id)
        return described.state == "stable" and len(described.members) == 1

    await wait_until(one_stable_member, "one stable member")
    member = (await _describe(admin, config.group_id)).members[0]
    assert member.member_id
    assert member.client_id == streaming_config.client_id
    assert member.host
    assert member.assignment == ((topic, 0), (topic, 1))

    ok(await consumer.disconnect())

    async def left() -> bool:
        described = await _describe(admin, config.group_id)
        return described.state == "empty" and described.members == ()

    await wait_until(left, "the group to be empty")
    assert config.group_id in ok(await admin.list_groups())


@pytest.mark.parametrize("target", ["earliest", "latest", "offset", "time"])
async def test_reset_moves_where_the_next_consumer_starts(
    target: str,
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    admin = await _admin(client)
    topic = await make_topic(1)
    stamped = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    for index in range(6):
        message = StreamingMessage(
            f"m-{index}".encode(), partition=0, timestamp=stamped + timedelta(seconds=index)
        )
        ok(await producer.send(topic, message))
    config = consumer_config()
    await consume(client, config, [topic], 6)

    to: Any = {
        "earliest": "earliest",
        "latest": "latest",
        "offset": 2,
        "time": stamped + timedelta(seconds=3, milliseconds=500),  # between offsets 3 and 4
    }[target]
    expected = {"earliest": 0, "latest": 6, "offset": 2, "time": 4}[target]
    ok(await admin.reset_group_offsets(config.group_id, topic, to))

    lag = ok(await admin.get_group_lag(config.group_id, [topic]))
    assert lag == (PartitionLag(topic, 0, expected, 0, 6, 6 - expected),)
    await produce(producer, topic, [b"after-reset"], partition=0)
    received = await consume(client, config, [topic], 7 - expected, from_beginning=False)
    assert received[0].offset == expected


async def test_reset_past_every_message_goes_to_the_end(
    producer: StreamingProducer, group_that_read: _GroupFactory
) -> None:
    admin, topic, config = await group_that_read(partitions=2, count=2)
    await produce(producer, topic, numbered("more", 3), partition=1)

    at_the_end = (PartitionLag(topic, 0, 2, 0, 2, 0), PartitionLag(topic, 1, 3, 0, 3, 0))
    future = datetime.now(UTC) + timedelta(days=1)
    ok(await admin.reset_group_offsets(config.group_id, topic, future))
    assert ok(await admin.get_group_lag(config.group_id, [topic])) == at_the_end

    # An offset beyond a partition's log is kept within it, as kafka-consumer-groups does.
    ok(await admin.reset_group_offsets(config.group_id, topic, "earliest"))
    assert await _committed(admin, config.group_id) == [0, 0]
    ok(await admin.reset_group_offsets(config.group_id, topic, 1_000))
    assert ok(await admin.get_group_lag(config.group_id, [topic])) == at_the_end


async def test_reset_to_a_naive_time_at_the_ends_of_datetimes_range_is_a_time(
    group_that_read: _GroupFactory,
) -> None:
    # Local time cannot be computed for them (datetime.min.timestamp() raises ValueError).
    admin, topic, config = await group_that_read(partitions=1, count=2)
    ok(await admin.reset_group_offsets(config.group_id, topic, datetime.min))
    assert await _committed(admin, config.group_id) == [0]
    ok(await admin.reset_group_offsets(config.group_id, topic, datetime.max))
    assert await _committed(admin, config.group_id) == [2]


async def test_reset_and_delete_refuse_a_group_with_active_members(
    client: StreamingClient, group_that_read: _GroupFactory
) -> None:
    admin, topic, config = await group_that_read(partitions=1, count=2)
    consumer = await _running_member(client, config, topic)
    await wait_until(
        lambda: _has_members(admin, config.group_id), "the member to show in the group"
    )
    member_ids = {member.member_id for member in (await _describe(admin, config.group_id)).members}

    for refused in (
        await admin.reset_group_offsets(config.group_id, topic, "earliest"),
        await admin.delete_group(config.group_id),
    ):
        error = expect_failure(refused, "STREAMING_INVALID_ARGUMENT")
        assert set(error.context["members"]) == member_ids
        assert error.context["group_id"] == config.group_id
    # Nothing moved: the group still stands at its commit.
    assert ok(await admin.get_group_lag(config.group_id, [topic]))[0].committed == 2
    ok(await consumer.disconnect())


async def _has_members(admin: StreamingAdmin, group_id: str) -> bool:
    return bool((await _describe(admin, group_id)).members)


async def test_an_unknown_group_is_dead_and_cannot_be_measured_reset_or_deleted(
    client: StreamingClient, make_topic: TopicFactory
) -> None:
    admin = await _admin(client)
    topic = await make_topic(1)
    group_id = unique("nobody")

    assert ok(await admin.describe_group(group_id)) == GroupDescription(group_id, "dead", ())
    assert group_id not in ok(await admin.list_groups())
    for failed in (
        await admin.get_group_lag(group_id),
        await admin.get_group_lag(group_id, [topic]),
        await admin.reset_group_offsets(group_id, topic, "earliest"),
        await admin.delete_group(group_id),
    ):
        error = expect_failure(failed, "STREAMING_ADMIN_FAILED")
        assert error.context["group_id"] == group_id


async def test_a_deleted_group_is_no_longer_listed(
    group_that_read: _GroupFactory,
) -> None:
    admin, topic, config = await group_that_read(partitions=1, count=1)
    await wait_until(lambda: _listed(admin, config.group_id), "the group to be listed")

    ok(await admin.delete_group(config.group_id))

    assert config.group_id not in ok(await admin.list_groups())
    assert (await _describe(admin, config.group_id)).state == "dead"
    expect_failure(await admin.get_group_lag(config.group_id), "STREAMING_ADMIN_FAILED")


async def _listed(admin: StreamingAdmin, group_id: str) -> bool:
    return group_id in ok(await admin.list_groups())


async def test_group_calls_refuse_bad_arguments(client: StreamingClient) -> None:
    admin = await _admin(client)
    bad: Any = 7
    for refused in (
        await admin.describe_group(""),
        await admin.get_group_lag(bad),
        await admin.get_group_lag("group", bad),
        await admin.reset_group_offsets("group", "topic", "middle"),  # type: ignore[arg-type]
        await admin.reset_group_offsets("group", "topic", -1),
        await admin.reset_group_offsets("group", "topic", True),
        await admin.delete_group(bad),
    ):
        expect_failure(refused, "STREAMING_INVALID_ARGUMENT")
    for refused in (
        await admin.get_group_lag("group", ["bad name!"]),
        await admin.reset_group_offsets("group", "bad name!", "latest"),
    ):
        expect_failure(refused, "STREAMING_INVALID_TOPIC")
