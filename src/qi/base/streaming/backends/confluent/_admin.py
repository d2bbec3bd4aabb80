"""The confluent admin: AdminClient futures awaited on the loop, metadata on a worker thread.

AdminClient results arrive on librdkafka's background thread as
``concurrent.futures.Future``s, which ``asyncio.wrap_future`` brings to the loop
without a thread of ours. Metadata requests block, so they run on the admin's
worker thread. Kafka creates and deletes topics asynchronously; both calls wait
until the cluster metadata agrees before returning.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

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
from qi.base.streaming.backend import AdminBackend
from qi.base.streaming.backend import TopicPartition as TopicPartitionKey
from qi.base.streaming.backends.confluent._connect import (
    ClientErrors,
    client_settings,
    prove_broker,
)
from qi.base.streaming.backends.confluent._errors import (
    contract_error,
    kafka_error,
    translate_exception,
)
from qi.base.streaming.backends.confluent._group_admin import ConfluentGroupAdmin
from qi.base.streaming.backends.confluent._settings import admin_settings, redacted
from qi.base.streaming.backends.confluent._worker import BlockingWorker

if TYPE_CHECKING:
    from confluent_kafka.admin._metadata import ClusterMetadata

# How long disconnect() waits for the metadata thread to finish what it is doing.
_WORKER_PATIENCE: Final = 1.0
# Pause between metadata requests while waiting for a topic change to show.
_METADATA_POLL: Final = 0.05


class ConfluentAdmin(AdminBackend):
    """The admin backend over ``confluent_kafka.admin.AdminClient``."""

    def __init__(self, config: StreamingConfig, logger: logging.Logger) -> None:
        self._config = config
        self._logger = logger
        self._admin: AdminClient | None = None
        self._worker: BlockingWorker | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        settings = admin_settings(self._config)
        self._logger.debug("creating a confluent admin with %s", redacted(settings))
        errors = ClientErrors(self._logger)
        admin = AdminClient(client_settings(settings, self._logger, errors))
        self._admin = admin
        self._worker = BlockingWorker("qi-confluent-admin", threads=4)
        await prove_broker(
            self._worker,
            admin.list_topics,
            self._config.connection_timeout,
            errors,
            serve=admin.poll,
        )

    async def close(self) -> None:
        worker, self._worker = self._worker, None
        self._admin = None
        # A metadata request may still run (bounded by request_timeout); do not wait it out.
        if worker is not None and not await worker.close(_WORKER_PATIENCE):
            self._logger.debug("a confluent admin metadata request is still running")

    def native_client(self) -> object:
        return self._admin

    # -- operations ----------------------------------------------------------------------------

    async def create_topics(self, topics: Sequence[TopicConfig]) -> Mapping[str, QiError]:
        admin = self._client()
        timeout = self._config.request_timeout
        futures = admin.create_topics(
            [
                NewTopic(
                    topic.topic,
                    num_partitions=topic.num_partitions,
                    replication_factor=topic.replication_factor,
                    config=dict(topic.config_entries),
                )
                for topic in topics
            ],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        errors = await self._outcomes("create_topics", futures)
        created = {
            topic.topic: topic.num_partitions for topic in topics if topic.topic not in errors
        }
        if created:
            await self._await_metadata(
                lambda metadata: all(
                    _partition_count(metadata, name) == count for name, count in created.items()
                )
            )
        return errors

    async def delete_topics(self, names: Sequence[str]) -> Mapping[str, QiError]:
        admin = self._client()
        timeout = self._config.request_timeout
        futures = admin.delete_topics(
            list(names), operation_timeout=timeout, request_timeout=timeout
        )
        errors = await self._outcomes("delete_topics", futures)
        deleted = [name for name in names if name not in errors]
        if deleted:
            await self._await_metadata(
                lambda metadata: all(name not in metadata.topics for name in deleted)
            )
        return errors

    async def list_topics(self) -> Sequence[str]:
        return list((await self._metadata()).topics)

    async def describe_topics(self, names: Sequence[str]) -> Mapping[str, TopicMetadata]:
        # All topics, not the named ones: a metadata request naming a missing topic
        # could make a broker with automatic creation create it.
        topics = (await self._metadata()).topics
        described: dict[str, TopicMetadata] = {}
        for name in names:
            topic = topics.get(name)
            if topic is None or topic.error is not None:
                continue
            described[name] = TopicMetadata(
                name=name,
                partitions=tuple(
                    PartitionMetadata(
                        partition_id=partition.id,
                        leader=partition.leader,
                        replicas=tuple(partition.replicas),
                        isr=tuple(partition.isrs),
                    )
                    for _, partition in sorted(topic.partitions.items())
                ),
            )
        return described

    async def topic_offsets(self, topic: str) -> tuple[PartitionOffsets, ...] | None:
        partitions = await self._partitions_of(topic)
        if partitions is None:
            return None
        return await self._groups().topic_offsets(topic, partitions)

    async def list_groups(self) -> Sequence[str]:
        return await self._groups().list_groups()

    async def describe_group(self, group_id: str) -> GroupDescription:
        return await self._groups().describe_group(group_id)

    async def committed_offsets(self, group_id: str) -> Mapping[TopicPartitionKey, int]:
        return await self._groups().committed_offsets(group_id)

    async def offsets_at(self, topic: str, timestamp_ms: int) -> Mapping[int, int | None]:
        partitions = await self._partitions_of(topic)
        if partitions is None:
            return {}
        return await self._groups().offsets_at(topic, partitions, timestamp_ms)

    async def alter_offsets(self, group_id: str, offsets: Mapping[TopicPartitionKey, int]) -> None:
        await self._groups().alter_offsets(group_id, offsets)

    async def delete_group(self, group_id: str) -> None:
        await self._groups().delete_group(group_id)

    # -- helpers -------------------------------------------------------------------------------

    def _groups(self) -> ConfluentGroupAdmin:
        return ConfluentGroupAdmin(self._client(), self._config.request_timeout)

    async def _partitions_of(self, topic: str) -> list[int] | None:
        """The topic's partition numbers, or None when it does not exist."""
        described = (await self.describe_topics([topic])).get(topic)
        if described is None:
            return None
        return [partition.partition_id for partition in described.partitions]

    def _client(self) -> AdminClient:
        if self._admin is None:
            raise RuntimeError("the admin client is closed")
        return self._admin

    async def _metadata(self) -> ClusterMetadata:
        admin, worker = self._client(), self._worker
        assert worker is not None
        metadata = await worker.run(
            functools.partial(admin.list_topics, timeout=self._config.request_timeout)
        )
        admin.poll(0)  # serve queued librdkafka log lines and error callbacks
        return metadata

    async def _outcomes(
        self, operation: str, futures: Mapping[str, concurrent.futures.Future[Any]]
    ) -> dict[str, QiError]:
        """Await AdminClient futures (within request_timeout); errors by topic name."""
        waiting = {name: asyncio.wrap_future(future) for name, future in futures.items()}
        if waiting:
            await asyncio.wait(waiting.values(), timeout=self._config.request_timeout + 1.0)
        errors: dict[str, QiError] = {}
        for name, future in waiting.items():
            if not future.done():
                future.cancel()
                errors[name] = contract_error(
                    ErrorCode.TIMEOUT,
                    f"{operation} got no answer within {self._config.request_timeout:.1f}s",
                    operation,
                    topic=name,
                )
                continue
            failure = future.exception()
            if failure is None:
                continue
            if isinstance(failure, KafkaException) and isinstance(failure.args[0], KafkaError):
                errors[name] = kafka_error(
                    failure.args[0], operation, ErrorCode.ADMIN_FAILED, topic=name
                )
            else:
                errors[name] = translate_exception(
                    failure, operation, ErrorCode.ADMIN_FAILED
                ).with_context(topic=name)
        return errors

    async def _await_metadata(self, settled: Callable[[ClusterMetadata], bool]) -> None:
        """Poll cluster metadata until ``settled`` holds, at most request_timeout."""
        deadline = time.monotonic() + self._config.request_timeout
        while not settled(await self._metadata()):
            if time.monotonic() >= deadline:
                self._logger.warning("the cluster metadata did not settle in time")
                return
            await asyncio.sleep(_METADATA_POLL)


def _partition_count(metadata: ClusterMetadata, name: str) -> int:
    topic = metadata.topics.get(name)
    if topic is None or topic.error is not None:
        return -1
    return len(topic.partitions)
