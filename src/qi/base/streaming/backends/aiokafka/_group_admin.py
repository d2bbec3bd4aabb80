"""Consumer groups and offsets over aiokafka: its admin calls where it has them, protocol
requests where it has not.

``AIOKafkaAdminClient`` lists groups, describes them, finds their coordinator and
fetches their committed offsets. It cannot list a partition's offsets, commit a
group's offsets from outside the group, or delete a group, so those are the Kafka
protocol requests aiokafka ships (``ListOffsets``, ``OffsetCommit`` with generation
-1 and no member, as Kafka's own admin sends it, and ``DeleteGroups``) sent through
``AIOKafkaClient.send``. The client is the admin's own (see ``_private.admin_client``).
The contract layer bounds each public call by ``request_timeout``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import for_code
from aiokafka.protocol.admin import DeleteGroupsRequest
from aiokafka.protocol.commit import OffsetCommitRequest
from aiokafka.protocol.offset import OffsetRequest

from qi.base.streaming import GroupDescription, GroupMember, PartitionOffsets
from qi.base.streaming.backend import TopicPartition as TopicPartitionKey
from qi.base.streaming.backends.aiokafka import _private

# ListOffsets' special timestamps: the log start and the high watermark.
_EARLIEST: Final = -2
_LATEST: Final = -1
_READ_UNCOMMITTED: Final = 0
_GROUP_ID_NOT_FOUND: Final = 69


class AiokafkaGroupAdmin:
    """The group and offset requests of one ``AIOKafkaAdminClient``."""

    def __init__(self, admin: AIOKafkaAdminClient) -> None:
        self._admin = admin
        self._client: AIOKafkaClient = _private.admin_client(admin)

    async def topic_offsets(
        self, topic: str, leaders: Mapping[int, int]
    ) -> tuple[PartitionOffsets, ...]:
        """Log start and high watermark of each partition (``leaders``: partition to leader)."""
        starts = await self._list_offsets(topic, leaders, _EARLIEST)
        ends = await self._list_offsets(topic, leaders, _LATEST)
        return tuple(
            PartitionOffsets(topic, partition, starts[partition], ends[partition])
            for partition in sorted(leaders)
        )

    async def offsets_at(
        self, topic: str, leaders: Mapping[int, int], timestamp_ms: int
    ) -> dict[int, int | None]:
        """The first offset stamped at or after ``timestamp_ms`` per partition (None: none)."""
        found = await self._list_offsets(topic, leaders, timestamp_ms)
        return {partition: offset if offset >= 0 else None for partition, offset in found.items()}

    async def list_groups(self) -> list[str]:
        return [str(listed[0]) for listed in await self._admin.list_consumer_groups()]

    async def describe_group(self, group_id: str) -> GroupDescription:
        responses = await self._admin.describe_consumer_groups([group_id])
        for response in responses:
            for described in response.to_object()["groups"]:
                if described["group"] == group_id:
                    return _description(group_id, described)
        return GroupDescription(group_id, "dead", ())

    async def committed_offsets(self, group_id: str) -> dict[TopicPartitionKey, int]:
        committed = await self._admin.list_consumer_group_offsets(group_id)
        return {
            (partition.topic, partition.partition): answer.offset
            for partition, answer in committed.items()
            if answer.offset >= 0  # -1: no commit on this partition
        }

    async def alter_offsets(self, group_id: str, offsets: Mapping[TopicPartitionKey, int]) -> None:
        by_topic: dict[str, list[tuple[int, int, str]]] = {}
        for (topic, partition), offset in sorted(offsets.items()):
            by_topic.setdefault(topic, []).append((partition, offset, ""))
        request = OffsetCommitRequest(
            group_id,
            OffsetCommitRequest.DEFAULT_GENERATION_ID,  # not a member: an admin commit
            "",
            OffsetCommitRequest.DEFAULT_RETENTION_TIME,
            list(by_topic.items()),
        )
        coordinator = await self._admin.find_coordinator(group_id)
        answer = (await self._client.send(coordinator, request)).to_object()
        for topic in answer["topics"]:
            for partition in topic["partitions"]:
                _raise_for(partition["error_code"], f"{topic['topic']}[{partition['partition']}]")

    async def delete_group(self, group_id: str) -> None:
        coordinator = await self._admin.find_coordinator(group_id)
        answer = (await self._client.send(coordinator, DeleteGroupsRequest([group_id]))).to_object()
        for result in answer["results"]:
            _raise_for(result["error_code"], f"group {result['group_id']!r}")

    async def _list_offsets(
        self, topic: str, leaders: Mapping[int, int], timestamp: int
    ) -> dict[int, int]:
        by_leader: dict[int, list[tuple[int, int]]] = {}
        for partition, leader in sorted(leaders.items()):
            by_leader.setdefault(leader, []).append((partition, timestamp))
        offsets: dict[int, int] = {}
        for leader, partitions in by_leader.items():
            request = OffsetRequest(-1, _READ_UNCOMMITTED, [(topic, partitions)])
            answer = (await self._client.send(leader, request)).to_object()
            for answered in answer["topics"]:
                for partition in answered["partitions"]:
                    _raise_for(partition["error_code"], f"{topic}[{partition['partition']}]")
                    offsets[partition["partition"]] = _offset_of(partition)
        return offsets


def _offset_of(partition: Mapping[str, Any]) -> int:
    if "offset" in partition:
        return int(partition["offset"])
    found = partition["offsets"]  # ListOffsets v0 answers a list of offsets
    return int(found[0]) if found else -1


def _raise_for(error_code: int, what: str) -> None:
    if error_code:
        raise for_code(error_code)(what)


def _description(group_id: str, described: Mapping[str, Any]) -> GroupDescription:
    if described["error_code"] == _GROUP_ID_NOT_FOUND:
        return GroupDescription(group_id, "dead", ())
    _raise_for(described["error_code"], f"group {group_id!r}")
    members = tuple(
        GroupMember(
            member["member_id"],
            member["client_id"],
            member["client_host"],
            _assignment(member["member_assignment"]),
        )
        for member in sorted(described["members"], key=lambda member: member["member_id"])
    )
    return GroupDescription(group_id, _snake_case(described["state"]), members)


def _assignment(encoded: bytes) -> tuple[tuple[str, int], ...]:
    if not encoded:
        return ()
    decoded = ConsumerProtocolMemberAssignment.decode(encoded)
    return tuple(
        sorted(
            (topic, partition)
            for topic, partitions in decoded.assignment
            for partition in partitions
        )
    )


def _snake_case(state: str) -> str:
    """Kafka's ``PreparingRebalance`` as ``preparing_rebalance``; empty is ``unknown``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", state).lower() if state else "unknown"
