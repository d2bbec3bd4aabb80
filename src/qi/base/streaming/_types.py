"""Messages and results: the values that move through the streaming API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from qi.base.streaming._read_only import ReadOnlyMapping

if TYPE_CHECKING:
    from qi.base.streaming._transaction import Transaction

# The shared default: producers recognise it by identity and skip checking headers.
NO_HEADERS: Mapping[str, str | bytes] = ReadOnlyMapping()
NO_CONSUMED_HEADERS: Mapping[str, bytes] = ReadOnlyMapping()
"""The headers of every consumed message that has none: one shared empty mapping."""


@dataclass(frozen=True, slots=True)
class StreamingMessage:
    """A message to produce: raw bytes plus optional key, timestamp, partition and headers."""

    value: bytes | None
    """The payload; the library never looks inside. None is a tombstone: the delete marker
    of its key on a compacted topic."""
    key: str | bytes | None = None
    """Partitioning key; str is encoded as UTF-8. Same key, same partition."""
    timestamp: datetime | None = None
    """Event time; None lets the producer stamp it."""
    partition: int | None = None
    """Explicit partition; None lets the key (or the partitioner) choose."""
    headers: Mapping[str, str | bytes] = field(default_factory=lambda: NO_HEADERS)
    """Header names to values; str values are encoded as UTF-8."""


@dataclass(frozen=True, slots=True)
class MessageBatch:
    """Messages for one topic, sent together."""

    topic: str
    """Destination topic."""
    messages: tuple[StreamingMessage, ...]
    """The messages, in the order they should be written per partition."""


@dataclass(frozen=True, slots=True)
class ProduceResult:
    """Where an acknowledged message was written."""

    topic: str
    """Topic written to."""
    partition: int
    """Partition written to."""
    offset: int
    """Offset of the message; -1 when the broker does not say (``acks=0``, or a retry it
    answered as a duplicate of a batch it had already written)."""
    timestamp: datetime | None
    """Timestamp the message carries, when known."""


class _DeferredResults:
    """The slot a BatchProduceResult keeps its unbuilt results in (a base class, so that it
    is no dataclass field: ``fields``, equality, hashing and repr see only the contract's)."""

    __slots__ = ("_deferred",)


@dataclass(frozen=True, slots=True)
class BatchProduceResult(_DeferredResults):
    """Results of a fully acknowledged batch, in input order."""

    topic: str
    """Topic written to."""
    results: tuple[ProduceResult, ...]
    """One result per message of the batch, in input order."""

    if not TYPE_CHECKING:  # hidden from type checkers: it would accept any attribute name

        def __getattr__(self, name: str) -> object:
            # Called only for a slot never set: the send paths leave ``results`` unset and
            # keep what builds it (``_fast_values.deferred_batch_result``), so that a caller
            # who never reads it pays for no ProduceResult per message. Built once, then
            # held as any other result's tuple; equality, hash, repr and replace() read it.
            if name == "results":
                deferred = object.__getattribute__(self, "_deferred")
                if deferred is None:  # another thread built it meanwhile
                    return object.__getattribute__(self, "results")
                results = deferred.results()
                object.__setattr__(self, "results", results)
                object.__setattr__(self, "_deferred", None)
                return results
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


@dataclass(frozen=True, slots=True)
class ConsumedMessage:
    """A message as read from a partition."""

    topic: str
    """Topic it was read from."""
    partition: int
    """Partition it was read from."""
    offset: int
    """Its offset in the partition."""
    key: bytes | None
    """Key bytes, or None."""
    value: bytes | None
    """Payload bytes, or None for a tombstone."""
    timestamp: datetime | None
    """Timestamp it carries, when known."""
    headers: Mapping[str, bytes] = field(default_factory=lambda: NO_CONSUMED_HEADERS)
    """Header names to values; the last value wins when a name repeats."""


@dataclass(frozen=True, slots=True)
class EachMessagePayload:
    """What ``each_message`` receives."""

    topic: str
    """Topic of the message."""
    partition: int
    """Partition of the message."""
    message: ConsumedMessage
    """The message itself."""
    transaction: Transaction | None = None
    """The run loop's open transaction when it runs exactly-once (send with it, so the
    output commits with the message's offset), else None."""

    if not TYPE_CHECKING:  # hidden from type checkers: it would accept any attribute name

        def __getattr__(self, name: str) -> object:
            # Called only for a slot never set: the at-least-once run loop builds millions of
            # payloads a second through the slots (_fast_values) and leaves ``transaction`` unset,
            # which must read as its default.
            if name == "transaction":
                return None
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


@dataclass(frozen=True, slots=True)
class EachBatchPayload:
    """What ``each_batch`` receives: consecutive messages of one partition."""

    topic: str
    """Topic of the messages."""
    partition: int
    """Partition of the messages."""
    messages: tuple[ConsumedMessage, ...]
    """The messages, in offset order."""
    transaction: Transaction | None = None
    """The run loop's open transaction when it runs exactly-once (send with it, so the
    output commits with the messages' offsets), else None."""


@dataclass(frozen=True, slots=True)
class PartitionMetadata:
    """Leader and replicas of one partition."""

    partition_id: int
    """Partition number."""
    leader: int
    """Broker id of the leader; -1 when there is none."""
    replicas: tuple[int, ...]
    """Broker ids holding a replica."""
    isr: tuple[int, ...]
    """Broker ids of the in-sync replicas."""


@dataclass(frozen=True, slots=True)
class TopicMetadata:
    """A topic's partitions."""

    name: str
    """Topic name."""
    partitions: tuple[PartitionMetadata, ...]
    """Its partitions, by partition number."""


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    """Where a partition's log starts and ends."""

    topic: str
    """Topic of the partition."""
    partition: int
    """Partition number."""
    start: int
    """Log start: the oldest offset still stored."""
    end: int
    """High watermark: the offset the next message will get."""


@dataclass(frozen=True, slots=True)
class GroupMember:
    """One active member of a consumer group."""

    member_id: str
    """The id the group coordinator gave the member."""
    client_id: str
    """The ``client_id`` of the member's client."""
    host: str
    """Where the member connects from, as the coordinator sees it."""
    assignment: tuple[tuple[str, int], ...]
    """The ``(topic, partition)`` pairs it holds, sorted."""


@dataclass(frozen=True, slots=True)
class GroupDescription:
    """A consumer group's state and members."""

    group_id: str
    """The group's id."""
    state: str
    """Kafka's group state in snake case: ``"stable"``, ``"preparing_rebalance"``,
    ``"completing_rebalance"``, ``"empty"`` (no members, offsets kept), ``"dead"`` (no such
    group) or ``"unknown"``."""
    members: tuple[GroupMember, ...]
    """Its active members, by member id."""


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """How far a consumer group is behind on one partition."""

    topic: str
    """Topic of the partition."""
    partition: int
    """Partition number."""
    committed: int | None
    """The group's committed offset (the next to read), or None when it has none."""
    start: int
    """Log start of the partition."""
    end: int
    """High watermark of the partition."""
    lag: int
    """Messages left to read: ``end - (committed if not None else start)``, never negative."""


@dataclass(frozen=True, slots=True)
class PartitionPosition:
    """Where a running consumer stands on one assigned partition, as it last knew."""

    topic: str
    """Topic of the partition."""
    partition: int
    """Partition number."""
    position: int | None
    """Offset of the next message the handler gets, None until the first fetch said (and
    after a seek to "earliest" or "latest", until a fetch says where that is)."""
    committed: int | None
    """Offset this consumer last committed (the next to read), None until it committed."""
    end: int | None
    """High watermark as the last fetch saw it, None until a fetch said."""
    lag: int | None
    """Messages not handled yet: ``end - position`` (never negative), None while either
    is unknown."""
