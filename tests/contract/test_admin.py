"""Contract section 5, the admin: topics created, listed, described and deleted one by one."""

from __future__ import annotations

from typing import Any, cast

from qi.base import Failure
from qi.base.streaming import (
    PartitionMetadata,
    StreamingAdmin,
    StreamingClient,
    TopicConfig,
    TopicMetadata,
)
from testkit import ok, unique, wait_until

from ._support import TopicFactory, expect_broker_error, expect_failure


async def _admin(client: StreamingClient) -> StreamingAdmin:
    return ok(await client.get_admin())


async def _gone(admin: StreamingAdmin, topic: str) -> bool:
    return topic not in ok(await admin.list_topics())


async def test_create_list_describe_delete(client: StreamingClient) -> None:
    admin = await _admin(client)
    topic = unique("admin")
    ok(await admin.create_topics([TopicConfig(topic, num_partitions=3)]))
    try:
        # Visible as soon as create_topics returns, without waiting.
        names = ok(await admin.list_topics())
        assert isinstance(names, tuple) and topic in names
        (metadata,) = ok(await admin.get_topic_metadata([topic]))
        assert isinstance(metadata, TopicMetadata)
        assert metadata.name == topic
        assert isinstance(metadata.partitions, tuple)
        assert [p.partition_id for p in metadata.partitions] == [0, 1, 2]
        for partition in metadata.partitions:
            assert isinstance(partition, PartitionMetadata)
            assert isinstance(partition.leader, int)
            assert isinstance(partition.replicas, tuple) and partition.replicas
            assert all(isinstance(broker, int) for broker in partition.replicas)
            assert isinstance(partition.isr, tuple)
            assert all(isinstance(broker, int) for broker in partition.isr)
    finally:
        ok(await admin.delete_topics([topic]))
    await wait_until(lambda: _gone(admin, topic), f"{topic} to disappear", within=15.0)
    missing = await admin.get_topic_metadata([topic])
    error = expect_failure(
        missing, "STREAMING_TOPIC_NOT_FOUND", implementation=client.implementation
    )
    assert error.context["topics"] == (topic,)


async def test_describe_several_topics(make_topic: TopicFactory, client: StreamingClient) -> None:
    one = await make_topic(1)
    four = await make_topic(4)
    admin = await _admin(client)
    described = {meta.name: meta for meta in ok(await admin.get_topic_metadata([four, one]))}
    assert set(described) == {one, four}
    assert len(described[one].partitions) == 1
    assert len(described[four].partitions) == 4


async def test_a_name_given_twice_is_created_and_deleted_once(client: StreamingClient) -> None:
    admin = await _admin(client)
    topic = unique("twice")
    ok(await admin.create_topics([TopicConfig(topic, num_partitions=2), TopicConfig(topic)]))
    try:
        (metadata,) = ok(await admin.get_topic_metadata([topic]))
        assert len(metadata.partitions) == 2  # the first config given
    finally:
        ok(await admin.delete_topics([topic, topic]))
    await wait_until(lambda: _gone(admin, topic), f"{topic} to disappear", within=15.0)


async def test_create_existing_topic_is_already_exists(
    make_topic: TopicFactory, client: StreamingClient, backend: str
) -> None:
    topic = await make_topic()
    admin = await _admin(client)
    error = expect_failure(
        await admin.create_topics([TopicConfig(topic)]),
        "STREAMING_TOPIC_ALREADY_EXISTS",
        implementation=backend,
    )
    assert tuple(error.context["topics"]) == (topic,)
    expect_broker_error(error)


async def test_mixed_create_creates_the_valid_topics_and_names_the_rest(
    make_topic: TopicFactory, client: StreamingClient, backend: str
) -> None:
    existing = await make_topic()
    fresh = unique("fresh")
    admin = await _admin(client)
    try:
        result = await admin.create_topics(
            [TopicConfig(fresh, num_partitions=2), TopicConfig(existing)]
        )
        error = expect_failure(result, "STREAMING_TOPIC_ALREADY_EXISTS", implementation=backend)
        assert tuple(error.context["topics"]) == (existing,)
        assert fresh in ok(await admin.list_topics())
        (metadata,) = ok(await admin.get_topic_metadata([fresh]))
        assert len(metadata.partitions) == 2
    finally:
        await admin.delete_topics([fresh])


async def test_invalid_topic_configs_do_not_stop_the_valid_ones(
    client: StreamingClient, backend: str
) -> None:
    admin = await _admin(client)
    fresh = unique("fresh")
    try:
        for bad, code in (
            (TopicConfig("not a valid name"), "STREAMING_INVALID_TOPIC"),
            (TopicConfig(unique("zero"), num_partitions=0), "STREAMING_INVALID_CONFIG"),
            (TopicConfig(unique("zero"), replication_factor=0), "STREAMING_INVALID_CONFIG"),
            (cast(Any, "just-a-name"), "STREAMING_INVALID_CONFIG"),
        ):
            error = expect_failure(await admin.create_topics([bad]), code, implementation=backend)
            assert len(error.context["topics"]) == 1
        result = await admin.create_topics([TopicConfig("bad name"), TopicConfig(fresh)])
        assert isinstance(result, Failure)
        assert fresh in ok(await admin.list_topics())
    finally:
        await admin.delete_topics([fresh])


async def test_delete_missing_topic_is_topic_not_found(
    make_topic: TopicFactory, client: StreamingClient, backend: str
) -> None:
    admin = await _admin(client)
    missing = unique("missing")
    error = expect_failure(
        await admin.delete_topics([missing]), "STREAMING_TOPIC_NOT_FOUND", implementation=backend
    )
    assert tuple(error.context["topics"]) == (missing,)
    expect_broker_error(error)

    existing = await make_topic()
    error = expect_failure(
        await admin.delete_topics([existing, missing]),
        "STREAMING_TOPIC_NOT_FOUND",
        implementation=backend,
    )
    assert tuple(error.context["topics"]) == (missing,)
    await wait_until(lambda: _gone(admin, existing), f"{existing} to disappear", within=15.0)


async def test_describe_missing_topic_is_topic_not_found(
    make_topic: TopicFactory, client: StreamingClient, backend: str
) -> None:
    admin = await _admin(client)
    existing = await make_topic()
    missing = unique("missing")
    for names in ([missing], [existing, missing]):
        error = expect_failure(
            await admin.get_topic_metadata(names),
            "STREAMING_TOPIC_NOT_FOUND",
            implementation=backend,
        )
        assert tuple(error.context["topics"]) == (missing,)


async def test_list_topics_leaves_out_internal_topics(
    make_topic: TopicFactory, client: StreamingClient
) -> None:
    internal = await make_topic(name="__" + unique("internal"))
    visible = await make_topic()
    admin = await _admin(client)
    names = ok(await admin.list_topics())
    assert visible in names
    assert internal not in names
    assert not any(name.startswith("__") for name in names)
    # Left out of the listing, but still a topic that can be described.
    (metadata,) = ok(await admin.get_topic_metadata([internal]))
    assert metadata.name == internal


async def test_not_connected_after_disconnect_and_connect_again(
    client: StreamingClient, backend: str
) -> None:
    admin = await _admin(client)
    ok(await admin.disconnect())
    ok(await admin.disconnect())
    assert not admin.is_connected()
    topic = unique("t")
    for result in (
        await admin.create_topics([TopicConfig(topic)]),
        await admin.delete_topics([topic]),
        await admin.list_topics(),
        await admin.get_topic_metadata([topic]),
        await admin.get_topic_offsets(topic),
        await admin.list_groups(),
        await admin.describe_group("group"),
        await admin.get_group_lag("group"),
        await admin.reset_group_offsets("group", topic, "earliest"),
        await admin.delete_group("group"),
        admin.get_native_client(),
    ):
        expect_failure(result, "STREAMING_NOT_CONNECTED", implementation=backend)
    ok(await admin.connect())
    ok(await admin.connect())
    assert admin.is_connected()
    ok(await admin.list_topics())
    assert ok(admin.get_native_client()) is not None
