"""Consumer groups and offsets through ``AdminClient``: one request per call, awaited on the loop.

Every AdminClient call here answers with ``concurrent.futures.Future``s that
librdkafka resolves on its own thread; ``asyncio.wrap_future`` brings them to the
loop. The contract layer bounds each public call by ``request_timeout``; the
requests carry the same timeout so librdkafka gives up too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Mapping, Sequence
from typing import Any, Final

from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # OffsetSpec: no re-export
    AdminClient,
    OffsetSpec,
)

from qi.base.streaming import GroupDescription, GroupMember, PartitionOffsets
from qi.base.streaming.backend import TopicPartition as TopicPartitionKey

# Kafka's state names in the contract's snake case (see GroupDescription.state).
_STATES: Final[Mapping[ConsumerGroupState, str]] = {
    ConsumerGroupState.STABLE: "stable",
    ConsumerGroupState.PREPARING_REBALANCING: "preparing_rebalance",
    ConsumerGroupState.COMPLETING_REBALANCING: "completing_rebalance",
    ConsumerGroupState.EMPTY: "empty",
    ConsumerGroupState.DEAD: "dead",
}


class ConfluentGroupAdmin:
    """The group and offset requests of one AdminClient, with ``timeout`` seconds each."""

    def __init__(self, admin: AdminClient, timeout: float) -> None:
        self._admin = admin
        self._timeout = timeout

    async def topic_offsets(
        self, topic: str, partitions: Sequence[int]
    ) -> tuple[PartitionOffsets, ...]:
        """Log start and high watermark of each of the topic's ``partitions``."""
        # earliest() and latest() carry no annotations in confluent-kafka 2.x.
        earliest = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        starts = await self._list_offsets(topic, partitions, earliest)
        ends = await self._list_offsets(topic, partitions, latest)
        return tuple(
            PartitionOffsets(topic, partition, starts[partition], ends[partition])
            for partition in partitions
        )

    async def offsets_at(
        self, topic: str, partitions: Sequence[int], timestamp_ms: int
    ) -> dict[int, int | None]:
        """The first offset stamped at or after ``timestamp_ms`` per partition (None: none)."""
        found = await self._list_offsets(topic, partitions, OffsetSpec.for_timestamp(timestamp_ms))
        return {partition: offset if offset >= 0 else None for partition, offset in found.items()}

    async def list_groups(self) -> list[str]:
        listed = await _answer(self._admin.list_consumer_groups(request_timeout=self._timeout))
        if listed.errors:
            raise listed.errors[0]
        return [listing.group_id for listing in listed.valid]

    async def describe_group(self, group_id: str) -> GroupDescription:
        futures = self._admin.describe_consumer_groups([group_id], request_timeout=self._timeout)
        try:
            described = await _answer(futures[group_id])
        except KafkaException as exc:
            if _error_code(exc) == KafkaError.GROUP_ID_NOT_FOUND:
                return GroupDescription(group_id, "dead", ())
            raise
        members = tuple(
            GroupMember(
                member.member_id,
                member.client_id,
                member.host,
                tuple(
                    sorted(
                        (assigned.topic, assigned.partition)
                        for assigned in (
                            member.assignment.topic_partitions if member.assignment else ()
                        )
                    )
                ),
            )
            for member in sorted(described.members, key=lambda member: member.member_id)
        )
        return GroupDescription(group_id, _STATES.get(described.state, "unknown"), members)

    async def committed_offsets(self, group_id: str) -> dict[TopicPartitionKey, int]:
        request = [ConsumerGroupTopicPartitions(group_id)]
        futures = self._admin.list_consumer_group_offsets(request, request_timeout=self._timeout)
        answer = await _answer(futures[group_id])
        committed: dict[TopicPartitionKey, int] = {}
        for entry in answer.topic_partitions or ():
            if entry.error is not None:
                raise KafkaException(entry.error)
            if entry.offset >= 0:  # OFFSET_INVALID (-1001): no commit on this partition
                committed[(entry.topic, entry.partition)] = entry.offset
        return committed

    async def alter_offsets(self, group_id: str, offsets: Mapping[TopicPartitionKey, int]) -> None:
        partitions = [
            TopicPartition(topic, partition, offset)
            for (topic, partition), offset in sorted(offsets.items())
        ]
        request = [ConsumerGroupTopicPartitions(group_id, partitions)]
        futures = self._admin.alter_consumer_group_offsets(request, request_timeout=self._timeout)
        answer = await _answer(futures[group_id])
        for entry in answer.topic_partitions or ():
            if entry.error is not None:
                raise KafkaException(entry.error)

    async def delete_group(self, group_id: str) -> None:
        futures = self._admin.delete_consumer_groups([group_id], request_timeout=self._timeout)
        await _answer(futures[group_id])

    async def _list_offsets(
        self, topic: str, partitions: Sequence[int], spec: OffsetSpec
    ) -> dict[int, int]:
        futures = self._admin.list_offsets(
            {TopicPartition(topic, partition): spec for partition in partitions},
            request_timeout=self._timeout,
        )
        answers = await asyncio.gather(*(_answer(future) for future in futures.values()))
        return {
            asked.partition: answer.offset for asked, answer in zip(futures, answers, strict=True)
        }


async def _answer(future: concurrent.futures.Future[Any]) -> Any:
    return await asyncio.wrap_future(future)


def _error_code(exc: KafkaException) -> int | None:
    error = exc.args[0] if exc.args else None
    return error.code() if isinstance(error, KafkaError) else None
