"""Messages laid out as aiokafka record batches, and each message's result read back.

aiokafka's batch API (``create_batch``/``send_batch``) is several times as fast
as one ``send()`` per message, but it reports per record batch: the broker
answers with the batch's base offset. A record's position in its batch is its
offset relative to that base, so each batch remembers which message sits at
which position. Messages of one partition go into its batches in input order
and the batches are queued in order, so a partition receives them in input
order. This module is the hot loop of every send: one pass per message, no
per-message futures, coroutines or dicts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka.partitioner import DefaultPartitioner

from qi.base.streaming import ProduceResult, StreamingMessage
from qi.base.streaming._fast_values import (
    PRODUCE_RESULT_SETTERS,
    DeferredResults,
    datetime_from_millis,
    millis_from_datetime,
)
from qi.base.streaming.backend import NO_HEADERS
from qi.base.streaming.backends.aiokafka import _private

_PARTITIONER: Final = DefaultPartitioner()
# aiokafka wants a list; its builder only reads it, so all header-less records share this one.
_NO_NATIVE_HEADERS: Final[list[tuple[str, bytes]]] = []


class UnknownPartition(Exception):
    """A message names a partition the cached metadata does not list: refresh, then lay out
    again (once), so that partitions added since the metadata was cached are accepted."""


def _encoded(value: str | bytes | bytearray) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def _native_headers(headers: Any) -> Any:
    if headers is NO_HEADERS or not headers:
        return _NO_NATIVE_HEADERS
    return [(name, _encoded(value)) for name, value in headers.items()]


Appender = Callable[[int, int, bytes | None, bytes | None, Any], object]
"""``append(position, timestamp_ms, key, value, headers)``: None when the batch is full."""


@dataclass(slots=True)
class QueuedBatch:
    """One record batch of ours: where its records came from and how it was queued."""

    partition: int
    builder: Any
    append: Appender = field(init=False)
    """Adds a record at the next position (see ``_private.record_appender``)."""
    direct: bool = field(init=False)
    """Whether ``append`` bypasses the builder's own count (then ``close`` sets it)."""
    indexes: list[int] = field(default_factory=list)
    """Message index of the record at each position."""
    stamps: list[int] = field(default_factory=list)
    """Timestamp (ms) of the record at each position."""
    future: asyncio.Future[Any] | None = None
    """aiokafka's delivery future, once queued."""
    native: Any = None
    """aiokafka's own batch, once queued: its ``retry_count`` says how often it was sent."""
    refused: Exception | None = None
    """Why aiokafka would not queue it (nothing of it was sent)."""

    def __post_init__(self) -> None:
        self.append, self.direct = _private.record_appender(self.builder)

    def close(self) -> None:
        """No more records: aiokafka sends it at once instead of lingering for more."""
        if self.direct:
            _private.set_record_count(self.builder, len(self.indexes))
        self.builder.close()


class Layout:
    """Lays out messages of one topic as closed record batches, one open batch per partition."""

    def __init__(self, producer: Any, topic: str, rotation: int) -> None:
        cluster = producer.client.cluster
        self._producer = producer
        self.every = sorted(cluster.partitions_for_topic(topic) or ())
        available = sorted(cluster.available_partitions_for_topic(topic) or ())
        self._available = available or self.every
        self.known = frozenset(self.every)
        self.rotation = rotation
        """Where keyless messages continue the round-robin over the available partitions."""

    def build(
        self, messages: Sequence[StreamingMessage], start: int, stop: int, *, strict: bool
    ) -> tuple[list[QueuedBatch], list[int]]:
        """Batches for ``messages[start:stop]`` in the order to queue them, and the indexes of
        messages naming a partition the topic does not have (raises UnknownPartition
        instead unless ``strict``)."""
        create = self._producer.create_batch
        every, available, known = self.every, self._available, self.known
        rotation, spread = self.rotation, len(available)
        partitioner = _PARTITIONER
        now = int(time.time() * 1000)
        open_batches: dict[int, QueuedBatch] = {}
        ready: list[QueuedBatch] = []
        unknown: list[int] = []
        for index in range(start, stop):
            message = messages[index]
            key = message.key
            if key is not None and type(key) is not bytes:
                key = _encoded(key)
            partition = message.partition
            if partition is None:
                if key is None:
                    partition = available[rotation % spread]
                    rotation += 1
                else:
                    partition = partitioner(key, every, available)
            elif partition not in known:
                if not strict:
                    raise UnknownPartition(partition)
                unknown.append(index)
                continue
            stamp = message.timestamp
            stamp_ms = now if stamp is None else millis_from_datetime(stamp)
            value = message.value
            if type(value) is not bytes and value is not None:
                value = _encoded(value)
            headers = _native_headers(message.headers)
            batch = open_batches.get(partition)
            if batch is None:
                batch = open_batches[partition] = QueuedBatch(partition, create())
            indexes = batch.indexes
            if batch.append(len(indexes), stamp_ms, key, value, headers) is None:
                # Full: it goes first, the next one starts (a first record always fits).
                ready.append(batch)
                batch = open_batches[partition] = QueuedBatch(partition, create())
                indexes = batch.indexes
                batch.append(0, stamp_ms, key, value, headers)
            indexes.append(index)
            batch.stamps.append(stamp_ms)
        self.rotation = rotation
        ready.extend(open_batches.values())
        for batch in ready:
            batch.close()
        return ready, unknown

    def native(self, message: StreamingMessage, now: int) -> tuple[int, dict[str, Any]] | None:
        """The partition and ``send()`` arguments of one message; None when it names a
        partition the topic does not have."""
        key = message.key
        if key is not None and type(key) is not bytes:
            key = _encoded(key)
        partition = message.partition
        if partition is None:
            if key is None:
                partition = self._available[self.rotation % len(self._available)]
                self.rotation += 1
            else:
                partition = _PARTITIONER(key, self.every, self._available)
        elif partition not in self.known:
            return None
        stamp = message.timestamp
        value = message.value
        return partition, {
            "value": value if type(value) is bytes or value is None else _encoded(value),
            "key": key,
            "partition": partition,
            "timestamp_ms": now if stamp is None else millis_from_datetime(stamp),
            "headers": _native_headers(message.headers),
        }


class Acknowledged(DeferredResults):
    """The results of a send's acknowledged record batches, built when first read.

    Each record batch is one append on the broker: its records sit at the batch's base
    offset (from the produce response) plus their position in it. Nothing is assumed
    across batches: a partition's messages may span several, each with its own base.
    """

    __slots__ = ("_appends", "_count", "_topic", "messages")

    def __init__(self, topic: str, count: int) -> None:
        super().__init__()
        self._topic = topic
        self._count = count
        self._appends: list[tuple[int, int, int, list[int], list[int]]] = []
        """Per acknowledged batch: partition, base offset (-1: unknown), the broker's log
        append time (-1: the records keep their own), message indexes, record timestamps."""
        self.messages = 0
        """How many messages the acknowledged batches hold."""

    def add(self, batch: QueuedBatch, metadata: Any) -> None:
        """An acknowledged batch and aiokafka's answer for it (None with ``acks=0``)."""
        if metadata is None:  # acks=0: the broker does not answer, offsets are unknown
            base, appended = -1, -1
        else:
            # A negative base: a retry the broker answered as a duplicate, offsets unknown.
            base = max(metadata.offset, -1)
            appended = -1 if metadata.timestamp is None else metadata.timestamp
        self._appends.append((batch.partition, base, appended, batch.indexes, batch.stamps))
        self.messages += len(batch.indexes)

    def __len__(self) -> int:
        return self._count

    def partition_counts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for partition, _, _, indexes, _ in self._appends:
            counts[partition] = counts.get(partition, 0) + len(indexes)
        return counts

    def _build(self) -> tuple[ProduceResult, ...]:
        results: list[Any] = [None] * self._count
        self.fill(results)
        return tuple(results)

    def fill(self, results: list[Any]) -> None:
        """Store the ProduceResult of every message of the acknowledged batches in ``results``."""
        topic = self._topic
        set_topic, set_partition, set_offset, set_stamp = PRODUCE_RESULT_SETTERS
        new = object.__new__
        to_datetime = datetime_from_millis
        last_ms: int | None = None
        last = None
        for partition, base, appended, indexes, stamps in self._appends:
            for position, index in enumerate(indexes):
                # -1 (CreateTime): the record keeps its own timestamp; else the broker's.
                ms = stamps[position] if appended < 0 else appended
                if ms != last_ms:
                    last_ms, last = ms, to_datetime(ms)
                result = new(ProduceResult)
                set_topic(result, topic)
                set_partition(result, partition)
                set_offset(result, -1 if base < 0 else base + position)
                set_stamp(result, last)
                results[index] = result
