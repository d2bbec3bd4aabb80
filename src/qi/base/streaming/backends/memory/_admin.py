"""The memory admin: topics and consumer groups of the in-process broker.

Topics are created and deleted synchronously, so a created topic is visible
to every client of the same broker as soon as the call returns. Group admin
reads and changes the broker's own group and log state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from qi.base import QiError
from qi.base.streaming import (
    GroupDescription,
    GroupMember,
    PartitionOffsets,
    StreamingConfig,
    TopicConfig,
    TopicMetadata,
)
from qi.base.streaming.backend import AdminBackend, OperationFailed, TopicPartition
from qi.base.streaming.backends.memory._broker import MemoryBroker, broker_for
from qi.base.streaming.backends.memory._errors import (
    BrokerError,
    MemoryBrokerError,
    broker_error,
    unreachable,
)

# Where memory members connect from, as describe_group reports it.
_MEMBER_HOST: Final = "in-process"


class MemoryAdmin(AdminBackend):
    """Manages topics and consumer groups of the in-process broker."""

    def __init__(self, config: StreamingConfig) -> None:
        self._config = config
        self._broker: MemoryBroker | None = None

    async def open(self) -> None:
        broker = broker_for(self._config.brokers)
        if not await broker.wait_reachable(self._config.connection_timeout):
            raise OperationFailed(unreachable(self._config, "connect"))
        self._broker = broker

    async def close(self) -> None:
        self._broker = None

    def native_client(self) -> object:
        return self._broker

    async def _reach(self, operation: str) -> MemoryBroker:
        """The broker, once reachable; STREAMING_CONNECTION_FAILED after request_timeout."""
        broker = self._broker
        assert broker is not None
        if not await broker.wait_reachable(self._config.request_timeout):
            raise OperationFailed(unreachable(self._config, operation))
        return broker

    async def create_topics(self, topics: Sequence[TopicConfig]) -> Mapping[str, QiError]:
        broker = await self._reach("create_topics")
        errors: dict[str, QiError] = {}
        for config in topics:
            refused = broker.create_topic(config)
            if refused is not None:
                error, reason = refused
                errors[config.topic] = broker_error(
                    error, f"create_topics failed: {reason}", "create_topics", topic=config.topic
                )
        return errors

    async def delete_topics(self, names: Sequence[str]) -> Mapping[str, QiError]:
        broker = await self._reach("delete_topics")
        errors: dict[str, QiError] = {}
        for name in names:
            error = broker.delete_topic(name)
            if error is not None:
                errors[name] = broker_error(
                    error, f"topic {name!r} does not exist", "delete_topics"
                )
        return errors

    async def list_topics(self) -> Sequence[str]:
        broker = await self._reach("list_topics")
        return broker.topic_names()

    async def describe_topics(self, names: Sequence[str]) -> Mapping[str, TopicMetadata]:
        broker = await self._reach("get_topic_metadata")
        found: dict[str, TopicMetadata] = {}
        for name in names:
            metadata = broker.describe(name)
            if metadata is not None:
                found[name] = metadata
        return found

    async def topic_offsets(self, topic: str) -> tuple[PartitionOffsets, ...] | None:
        found = (await self._reach("get_topic_offsets")).topic(topic)
        return None if found is None else found.offsets()

    async def list_groups(self) -> Sequence[str]:
        return (await self._reach("list_groups")).group_ids()

    async def describe_group(self, group_id: str) -> GroupDescription:
        group = (await self._reach("describe_group")).known_group(group_id)
        if group is None:
            return GroupDescription(group_id, "dead", ())
        members = tuple(
            GroupMember(
                member.member_id, member.client_id, _MEMBER_HOST, tuple(sorted(member.owned()))
            )
            for member in sorted(group.members, key=lambda member: member.member_id)
        )
        return GroupDescription(group_id, group.state(), members)

    async def committed_offsets(self, group_id: str) -> Mapping[TopicPartition, int]:
        return (await self._reach("get_group_lag")).committed(group_id)

    async def offsets_at(self, topic: str, timestamp_ms: int) -> Mapping[int, int | None]:
        found = (await self._reach("reset_group_offsets")).topic(topic)
        if found is None:
            raise MemoryBrokerError(BrokerError.UNKNOWN_TOPIC_OR_PART, f"no topic {topic!r}")
        return {
            partition: found.first_offset_at(partition, timestamp_ms)
            for partition in range(len(found.logs))
        }

    async def alter_offsets(self, group_id: str, offsets: Mapping[TopicPartition, int]) -> None:
        (await self._reach("reset_group_offsets")).group(group_id).reset_offsets(offsets)

    async def delete_group(self, group_id: str) -> None:
        (await self._reach("delete_group")).delete_group(group_id)
