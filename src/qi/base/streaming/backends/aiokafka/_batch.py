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
from datetime import UTC, datetime
from typing import Any, Final

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import TopicPartition

from qi.base.streaming import ProduceResult, StreamingMessage
from qi.base.streaming._build import PRODUCE_RESULT_SETTERS
from qi.base.streaming.backend import NO_HEADERS

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


def milliseconds(stamp: datetime) -> int:
    """A message timestamp as Kafka's milliseconds since the epoch."""
    return int(stamp.timestamp() * 1000)


Appender = Callable[[int, int, bytes | None, bytes | None, Any], object]
"""``append(position, timestamp_ms, key, value, headers)``: None when the batch is full."""


def record_appender(builder: Any) -> tuple[Appender, bool]:
    """How to add records to a ``create_batch()`` builder, and whether that is direct.

    ``BatchBuilder.append`` is a Python wrapper that only counts records and forwards them
    to its compiled record builder, at about half the cost of a whole send: we call the
    record builder directly, and :meth:`QueuedBatch.close` sets the count once. The public
    method stays the fallback should aiokafka move these (the backend's hook tests say so
    first).
    """
    native = getattr(builder, "_builder", None)
    if native is not None and hasattr(builder, "_relative_offset"):
        return native.append, True

    def append(
        position: int, stamp: int, key: bytes | None, value: bytes | None, headers: Any
    ) -> object:
        return builder.append(timestamp=stamp, key=key, value=value, headers=headers)

    return append, False


@dataclass(slots=True)
class QueuedBatch:
    """One record batch of ours: where its records came from and how it was queued."""

    partition: int
    builder: Any
    append: Appender = field(init=False)
    """Adds a record at the next position (see :func:`record_appender`)."""
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
        self.append, self.direct = record_appender(self.builder)

    def close(self) -> None:
        """No more records: aiokafka sends it at once instead of lingering for more."""
        if self.direct:
            self.builder._relative_offset = len(self.indexes)  # what append() would have counted
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
            stamp_ms = now if stamp is None else milliseconds(stamp)
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
            "timestamp_ms": now if stamp is None else milliseconds(stamp),
            "headers": _native_headers(message.headers),
        }

    def last_queued(self, topic: str, partition: int) -> Any:
        """aiokafka's batch into which ``send()``/``send_batch()`` has just queued records
        for ``partition``: the last of the partition, as long as the loop has not run since."""
        return self._producer._message_accumulator._batches[TopicPartition(topic, partition)][-1]

    def queued_anything(self, topic: str) -> bool:
        """Whether aiokafka still holds an unsent batch for a partition of ``topic``."""
        batches = getattr(getattr(self._producer, "_message_accumulator", None), "_batches", None)
        if not batches:
            return False
        return any(batches.get(TopicPartition(topic, partition)) for partition in self.every)


class Stamps:
    """Milliseconds to aware datetimes; the records of a send mostly share one millisecond."""

    __slots__ = ("_last_ms", "_last")

    def __init__(self) -> None:
        self._last_ms = -1
        self._last: datetime | None = None

    def __call__(self, ms: int) -> datetime | None:
        if ms == self._last_ms:
            return self._last
        self._last_ms = ms
        self._last = None if ms < 0 else datetime.fromtimestamp(ms / 1000, tz=UTC)
        return self._last


def acknowledged(
    topic: str,
    batch: QueuedBatch,
    metadata: Any,
    results: list[Any],
    stamps: Stamps,
) -> None:
    """Store the ProduceResult of every record of an acknowledged batch in ``results``."""
    partition, indexes, records = batch.partition, batch.indexes, batch.stamps
    if metadata is None:  # acks=0: the broker does not answer, offsets are unknown
        base, appended = None, -1
    else:
        base = metadata.offset
        appended = metadata.timestamp
        if appended is None:
            appended = -1
    if PRODUCE_RESULT_SETTERS is None:
        for position, index in enumerate(indexes):
            stamp = stamps(records[position] if appended < 0 else appended)
            offset = -1 if base is None else base + position
            results[index] = ProduceResult(topic, partition, offset, stamp)
        return
    set_topic, set_partition, set_offset, set_stamp = PRODUCE_RESULT_SETTERS
    new = object.__new__
    # Stamps' cache written out: a call per record cost as much as building the result.
    last_ms, last = stamps._last_ms, stamps._last
    for position, index in enumerate(indexes):
        # -1 (CreateTime) means the record keeps its own timestamp; else the broker's log time.
        ms = records[position] if appended < 0 else appended
        if ms != last_ms:
            last_ms, last = ms, stamps(ms)
        result = new(ProduceResult)
        set_topic(result, topic)
        set_partition(result, partition)
        set_offset(result, -1 if base is None else base + position)
        set_stamp(result, last)
        results[index] = result
