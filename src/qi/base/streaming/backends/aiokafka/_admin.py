"""The aiokafka admin: topic management through AIOKafkaAdminClient, each call bounded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import for_code

from qi.base import QiError
from qi.base.streaming import (
    ErrorCode,
    GroupDescription,
    PartitionMetadata,
    PartitionOffsets,
    StreamingConfig,
    TopicConfig,
    TopicMetadata,
)
from qi.base.streaming.backend import AdminBackend, OperationFailed
from qi.base.streaming.backend import TopicPartition as TopicPartitionKey
from qi.base.streaming.backends.aiokafka import _errors, _private
from qi.base.streaming.backends.aiokafka._connect import bootstrap_to_its_end, start_within
from qi.base.streaming.backends.aiokafka._group_admin import AiokafkaGroupAdmin
from qi.base.streaming.backends.aiokafka._metadata import (
    forbid_topic_auto_creation,
    topic_metadata,
)
from qi.base.streaming.backends.aiokafka._settings import admin_settings

# Pause between metadata polls while waiting for a created or deleted topic to show.
_VISIBILITY_POLL: Final = 0.05
_CLOSE_GRACE: Final = 2.0


class AiokafkaAdmin(AdminBackend):
    """The admin backend over ``aiokafka.admin.AIOKafkaAdminClient``."""

    def __init__(self, config: StreamingConfig, logger: logging.Logger) -> None:
        self._config = config
        self._logger = logger
        self._admin: Any = None

    async def open(self) -> None:
        admin = AIOKafkaAdminClient(**admin_settings(self._config))
        self._admin = admin
        # Describing a missing topic must not create it (see _metadata).
        client = _private.admin_client(admin)
        forbid_topic_auto_creation(client)
        bootstrap_to_its_end(client)
        await start_within(self._config, admin.start)

    async def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is None:
            return
        try:
            async with asyncio.timeout(_CLOSE_GRACE):
                await admin.close()
        except TimeoutError:
            self._logger.warning("aiokafka admin did not close within %.1fs", _CLOSE_GRACE)

    def native_client(self) -> object:
        return self._admin

    # -- operations ----------------------------------------------------------------------------

    async def create_topics(self, topics: Sequence[TopicConfig]) -> Mapping[str, QiError]:
        new_topics = [
            NewTopic(
                topic.topic,
                topic.num_partitions,
                topic.replication_factor,
                topic_configs=dict(topic.config_entries),
            )
            for topic in topics
        ]
        async with self._bounded("create_topics"):
            response = await self._admin.create_topics(new_topics, timeout_ms=self._timeout_ms())
            errors = self._topic_errors(response.topic_errors, "create_topics")
            created = [topic.topic for topic in topics if topic.topic not in errors]
            # The contract: a created topic is visible to list/describe when this returns.
            await self._wait_until(created, visible=True)
        return errors

    async def delete_topics(self, names: Sequence[str]) -> Mapping[str, QiError]:
        async with self._bounded("delete_topics"):
            response = await self._admin.delete_topics(list(names), timeout_ms=self._timeout_ms())
            errors = self._topic_errors(response.topic_error_codes, "delete_topics")
            await self._wait_until([name for name in names if name not in errors], visible=False)
        return errors

    async def list_topics(self) -> Sequence[str]:
        async with self._bounded("list_topics"):
            metadata = await topic_metadata(_private.admin_client(self._admin), None)
        return [entry["topic"] for entry in metadata["topics"] if entry["error_code"] == 0]

    async def describe_topics(self, names: Sequence[str]) -> Mapping[str, TopicMetadata]:
        async with self._bounded("get_topic_metadata"):
            metadata = await topic_metadata(_private.admin_client(self._admin), list(names))
        found: dict[str, TopicMetadata] = {}
        for entry in metadata["topics"]:
            error = for_code(entry["error_code"])
            if error.errno == 3:  # UNKNOWN_TOPIC_OR_PARTITION: absent, the base reports it
                continue
            if error.errno != 0:
                raise error()
            found[entry["topic"]] = _topic_metadata(entry)
        return found

    async def topic_offsets(self, topic: str) -> tuple[PartitionOffsets, ...] | None:
        leaders = await self._leaders(topic)
        if leaders is None:
            return None
        return await AiokafkaGroupAdmin(self._admin).topic_offsets(topic, leaders)

    async def list_groups(self) -> Sequence[str]:
        return await AiokafkaGroupAdmin(self._admin).list_groups()

    async def describe_group(self, group_id: str) -> GroupDescription:
        return await AiokafkaGroupAdmin(self._admin).describe_group(group_id)

    async def committed_offsets(self, group_id: str) -> Mapping[TopicPartitionKey, int]:
        return await AiokafkaGroupAdmin(self._admin).committed_offsets(group_id)

    async def offsets_at(self, topic: str, timestamp_ms: int) -> Mapping[int, int | None]:
        leaders = await self._leaders(topic)
        if leaders is None:
            return {}
        return await AiokafkaGroupAdmin(self._admin).offsets_at(topic, leaders, timestamp_ms)

    async def alter_offsets(self, group_id: str, offsets: Mapping[TopicPartitionKey, int]) -> None:
        await AiokafkaGroupAdmin(self._admin).alter_offsets(group_id, offsets)

    async def delete_group(self, group_id: str) -> None:
        await AiokafkaGroupAdmin(self._admin).delete_group(group_id)

    # -- helpers -------------------------------------------------------------------------------

    async def _leaders(self, topic: str) -> dict[int, int] | None:
        """Each partition's leader, or None when the topic does not exist."""
        described = (await self.describe_topics([topic])).get(topic)
        if described is None:
            return None
        return {partition.partition_id: partition.leader for partition in described.partitions}

    def _timeout_ms(self) -> int:
        return max(1, round(self._config.request_timeout * 1000))

    @contextlib.asynccontextmanager
    async def _bounded(self, operation: str) -> AsyncIterator[None]:
        """The body must finish within request_timeout, else STREAMING_TIMEOUT."""
        try:
            async with asyncio.timeout(self._config.request_timeout):
                yield
        except TimeoutError as exc:
            raise OperationFailed(
                _errors.contract_error(
                    ErrorCode.TIMEOUT,
                    f"{operation} did not finish within {self._config.request_timeout:.1f}s",
                    operation,
                )
            ) from exc

    def _topic_errors(self, answers: Sequence[Any], operation: str) -> dict[str, QiError]:
        """Per-topic errors of a create/delete answer (tuples starting with topic, code)."""
        errors: dict[str, QiError] = {}
        for answer in answers:
            name, code = answer[0], answer[1]
            if code == 0:
                continue
            detail = answer[2] if len(answer) > 2 and answer[2] else None
            exc = for_code(code)(detail) if detail else for_code(code)()
            errors[name] = _errors.translate_native(
                exc, operation, ErrorCode.ADMIN_FAILED
            ).with_context(topic=name)
        return errors

    async def _wait_until(self, names: Sequence[str], *, visible: bool) -> None:
        """Poll metadata until every name is (or is no longer) a topic with partitions."""
        pending = set(names)
        while pending:
            metadata = await topic_metadata(_private.admin_client(self._admin), sorted(pending))
            present = {
                entry["topic"]
                for entry in metadata["topics"]
                if entry["error_code"] == 0 and entry["partitions"]
            }
            pending = pending & present if not visible else pending - present
            if pending:
                await asyncio.sleep(_VISIBILITY_POLL)


def _topic_metadata(entry: Mapping[str, Any]) -> TopicMetadata:
    partitions = sorted(
        (
            PartitionMetadata(
                partition_id=part["partition"],
                leader=part["leader"],
                replicas=tuple(part["replicas"]),
                isr=tuple(part["isr"]),
            )
            for part in entry["partitions"]
        ),
        key=lambda part: part.partition_id,
    )
    return TopicMetadata(name=entry["topic"], partitions=tuple(partitions))
