"""Topic storage: append-only partition logs.

A partition is a list whose index is the offset, so offsets start at 0, grow by
one per message and reading is a slice. A record is a plain tuple of key,
value, timestamp and headers (None when there are none): such tuples hold no
reference the garbage collector must follow, so millions of stored messages
cost the collector nothing. Consumers get :class:`ConsumedMessage` objects,
built when fetched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from qi.base.streaming import ConsumedMessage, PartitionMetadata, PartitionOffsets, TopicMetadata
from qi.base.streaming.backend import EMPTY_MAPPING, NO_CONSUMED_HEADERS, ReadOnlyMapping
from qi.base.streaming.backends.memory._consumed import Record, consumed_messages
from qi.base.streaming.backends.memory._topic_configs import TopicSettings

# The memory broker is broker 0 and the only replica of every partition.
BROKER_ID: Final = 0


def encode_headers(headers: Mapping[str, str | bytes]) -> Mapping[str, bytes] | None:
    """Header values as bytes, in a read-only mapping shared by every reader; None if empty."""
    if not headers:
        return None
    encoded = {
        name: value.encode() if isinstance(value, str) else value for name, value in headers.items()
    }
    return ReadOnlyMapping(encoded)


@dataclass(slots=True, eq=False)
class Topic:
    """A topic: its partitions' logs and the settings it was created with."""

    name: str
    logs: list[list[Record]]
    """One log per partition; a record's index in its log is its offset."""
    replication_factor: int = 1
    config_entries: Mapping[str, str] = field(default_factory=lambda: EMPTY_MAPPING)
    settings: TopicSettings = field(default_factory=TopicSettings)
    """What of ``config_entries`` the broker acts on."""
    marks: dict[int, TransactionMarks] = field(default_factory=dict)
    """Per partition ever written by a transaction: what readers must skip or wait for."""

    @classmethod
    def create(
        cls,
        name: str,
        partitions: int,
        replication_factor: int,
        config: Mapping[str, str],
        settings: TopicSettings,
    ) -> Topic:
        """An empty topic with ``partitions`` partitions."""
        return cls(
            name,
            [[] for _ in range(partitions)],
            replication_factor,
            ReadOnlyMapping(config),
            settings,
        )

    def metadata(self) -> TopicMetadata:
        """Its partitions as a client sees them: broker 0 leads and is the only replica."""
        return TopicMetadata(
            self.name,
            tuple(
                PartitionMetadata(index, BROKER_ID, (BROKER_ID,), (BROKER_ID,))
                for index in range(len(self.logs))
            ),
        )

    def offsets(self) -> tuple[PartitionOffsets, ...]:
        """Start and end of each partition: nothing is ever removed, so every log starts at 0."""
        return tuple(
            PartitionOffsets(self.name, index, 0, len(log)) for index, log in enumerate(self.logs)
        )

    def first_offset_at(self, partition: int, timestamp_ms: int) -> int | None:
        """The first offset of a partition stamped at or after ``timestamp_ms``, if any."""
        for offset, record in enumerate(self.logs[partition]):
            if record[2] >= timestamp_ms:
                return offset
        return None

    def read(
        self, partition: int, start: int, stop: int, committed_only: bool = False
    ) -> list[ConsumedMessage]:
        """Messages ``start`` to ``stop`` (exclusive) of a partition, as consumers see them.

        Control records are never shown; with ``committed_only`` (read_committed) neither
        are records of aborted transactions.
        """
        records = self.logs[partition][start:stop]
        messages = consumed_messages(self.name, partition, start, records, NO_CONSUMED_HEADERS)
        marks = self.marks.get(partition)
        if marks is None:
            return messages
        hidden = marks.control | marks.aborted if committed_only else marks.control
        return [message for message in messages if message.offset not in hidden]

    def readable_end(self, partition: int, committed_only: bool) -> int:
        """Where reading must stop: the end of the log, or for read_committed its last stable
        offset (the first record of a transaction still open)."""
        end = len(self.logs[partition])
        marks = self.marks.get(partition)
        if not committed_only or marks is None or not marks.open_first:
            return end
        return min(end, *marks.open_first.values())

    def transaction_marks(self, partition: int) -> TransactionMarks:
        """The marks of a partition a transaction writes to, created on first use."""
        marks = self.marks.get(partition)
        if marks is None:
            marks = self.marks[partition] = TransactionMarks()
        return marks


@dataclass(slots=True, eq=False)
class TransactionMarks:
    """What transactions left in one partition, as offsets: a record's offset is its index."""

    control: set[int] = field(default_factory=set)
    """Commit and abort markers: they take an offset, as in Kafka, but no reader sees them."""
    aborted: set[int] = field(default_factory=set)
    """Records of aborted transactions: hidden from read_committed readers."""
    open_first: dict[int, int] = field(default_factory=dict)
    """First offset written here by each producer id whose transaction is still open."""
