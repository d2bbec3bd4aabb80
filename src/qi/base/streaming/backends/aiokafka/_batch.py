"""A batch of ours laid out as aiokafka record batches, one open batch per partition.

aiokafka's batch API (``create_batch``/``send_batch``) is about three times as
fast as one ``send()`` per message, but it reports per partition batch: the
broker answers with the batch's base offset. Each message remembers its batch
and its position in it, so its own offset is the base offset plus that position.
Messages of one partition go into its batches in input order and the batches
are queued in order, so a partition receives the messages in input order.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner

_PARTITIONER: Final = DefaultPartitioner()


@dataclass(slots=True)
class Placement:
    """Where a message waits for its acknowledgement."""

    future: asyncio.Future[Any]
    """Resolves to RecordMetadata: the message's own, or its batch's (see ``position``)."""
    partition: int
    """Partition the message was queued for; -1 when aiokafka chose and has not said."""
    position: int | None = None
    """Index within its record batch; None when ``future`` is the message's own."""
    timestamp_ms: int | None = None
    """Timestamp the record carries, as queued."""


@dataclass(slots=True)
class _OpenBatch:
    builder: Any
    members: list[tuple[int, int, int]] = field(default_factory=list)
    """(message index, position, timestamp) of each record appended so far."""


def choose_partition(producer: Any, topic: str, key: bytes | None) -> int:
    """The partition aiokafka's default partitioner would choose for ``key``."""
    cluster = producer.client.cluster
    every = sorted(cluster.partitions_for_topic(topic) or ())
    available = sorted(cluster.available_partitions_for_topic(topic) or ())
    chosen: int = _PARTITIONER(key, every, available)
    return chosen


class BatchLayout:
    """Appends messages to per-partition record batches and queues full ones."""

    def __init__(self, producer: Any, topic: str, deadline: float) -> None:
        self._producer = producer
        self._topic = topic
        self._deadline = deadline
        self._open: dict[int, _OpenBatch] = {}
        self.placements: dict[int, Placement] = {}
        """Message index -> where it waits; filled as batches are queued."""
        self.refused: dict[int, Exception] = {}
        """Message index -> why its batch could not be queued (nothing was sent)."""

    async def add(self, index: int, partition: int, native: dict[str, Any]) -> None:
        """Append one message; queue its partition's batch first if the batch is full."""
        batch = self._open.get(partition)
        if batch is None:
            batch = self._open[partition] = _OpenBatch(self._producer.create_batch())
        record = self._append(batch, native)
        if record is None:  # full: queue it, start the next one (a first record always fits)
            await self._queue(partition)
            batch = self._open[partition] = _OpenBatch(self._producer.create_batch())
            record = self._append(batch, native)
            assert record is not None
        batch.members.append((index, record.offset, record.timestamp))

    async def finish(self) -> None:
        """Queue every batch still open."""
        for partition in list(self._open):
            await self._queue(partition)

    async def _queue(self, partition: int) -> None:
        batch = self._open.pop(partition)
        # Closed, so aiokafka sends it at once instead of lingering for more records.
        batch.builder.close()
        remaining = self._deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise KafkaTimeoutError("request_timeout passed before the batch was queued")
            # aiokafka waits (up to its request timeout) for the partition's previous batch.
            async with asyncio.timeout(remaining):
                future = await self._producer.send_batch(
                    batch.builder, self._topic, partition=partition
                )
        except (TimeoutError, KafkaError) as exc:
            for index, _, _ in batch.members:
                self.refused[index] = exc
            return
        for index, position, timestamp in batch.members:
            self.placements[index] = Placement(future, partition, position, timestamp)

    @staticmethod
    def _append(batch: _OpenBatch, native: dict[str, Any]) -> Any:
        return batch.builder.append(
            timestamp=native["timestamp_ms"],
            key=native["key"],
            value=native["value"],
            headers=native["headers"],
        )
