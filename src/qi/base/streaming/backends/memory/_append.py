"""Appending produced messages to a topic's logs, refusing what Kafka's broker refuses.

This is the memory broker's produce path, one synchronous loop per call. Each
message is placed (explicit partition, key hash, or the producer's sticky partition
for unkeyed ones), then checked as Kafka checks a record: its one-record batch must
fit the topic's ``max.message.bytes`` (the broker's ``message.max.bytes`` by
default), and a compacted topic takes only keyed records: like Kafka, which refuses
a record batch with a keyless record whole, the memory broker refuses every record
of the call sent to that partition. A refused message fails ``not_written``, as in a
real produce response. Failures are the broker's native errors (``MemoryBrokerError``);
the producer turns them into QiErrors through the backend's table.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from itertools import repeat
from typing import cast

from qi.base.streaming import ProduceResult, StreamingMessage
from qi.base.streaming._fast_values import (
    PRODUCE_RESULT_SETTERS,
    DeferredResults,
    datetime_from_millis,
    millis_from_datetime,
    produce_result,
)
from qi.base.streaming.backend import NO_HEADERS, NOT_WRITTEN, partition_for_key
from qi.base.streaming.backends.memory._errors import BrokerError, MemoryBrokerError
from qi.base.streaming.backends.memory._log import Topic, encode_headers
from qi.base.streaming.backends.memory._records import (
    MOST_FRAMING_BYTES,
    StickyPartitions,
    record_batch_bytes,
)

Injector = Callable[[int], MemoryBrokerError | None]
"""An injected failure for the next message, given its partition (None: no failure)."""

Outcomes = Sequence[ProduceResult | MemoryBrokerError]
"""One outcome per message, in input order: its result, or the broker's refusal."""


class Appended(DeferredResults):
    """What one produce call appended, from which its ProduceResults are built when read.

    The call is one synchronous loop: between its first and its last append nothing else
    appends to the topic's logs, so each partition's messages of the call sit at
    consecutive offsets from the offset its first one got, in input order. What is kept
    per message is its partition (or the broker's refusal), not a result.
    """

    __slots__ = ("_topic", "_placed", "_firsts", "_now", "_own_stamps", "_acks_none")

    def __init__(
        self,
        topic: str,
        placed: list[int | MemoryBrokerError],
        firsts: dict[int, int],
        now: datetime | None,
        own_stamps: Sequence[StreamingMessage] | None,
        acks_none: bool,
    ) -> None:
        super().__init__()
        self._topic = topic
        self._placed = placed
        """Per message: the partition it was appended to, or why it failed."""
        self._firsts = firsts
        """Partition to the offset its first message of the call got."""
        self._now = now
        """The timestamp of the messages that carry none (or of all, with LogAppendTime)."""
        self._own_stamps = own_stamps
        """The messages, when some carry their own timestamp kept by the log (else None)."""
        self._acks_none = acks_none

    def __len__(self) -> int:
        return len(self._placed)

    def _build(self) -> tuple[ProduceResult, ...]:
        # Built only for a call without failures: every outcome is a ProduceResult.
        if len(self._firsts) != 1 or self._own_stamps is not None:
            return tuple(cast(list[ProduceResult], self.outcomes()))
        # Every message in one partition, stamped alike (unkeyed messages stick to one
        # partition per call): consecutive offsets from its first, without a lookup each.
        ((partition, first),) = self._firsts.items()
        name, stamp = self._topic, self._now
        total = len(self._placed)
        offsets = repeat(-1, total) if self._acks_none else range(first, first + total)
        new = object.__new__
        set_topic, set_partition, set_offset, set_stamp = PRODUCE_RESULT_SETTERS
        results: list[ProduceResult] = []
        append = results.append
        for offset in offsets:
            result = new(ProduceResult)
            set_topic(result, name)
            set_partition(result, partition)
            set_offset(result, offset)
            set_stamp(result, stamp)
            append(result)
        return tuple(results)

    def partition_counts(self) -> dict[int, int]:
        # Built only for a call without failures: every message has its partition.
        return Counter(cast(list[int], self._placed))

    def outcomes(self) -> list[ProduceResult | MemoryBrokerError]:
        """One outcome per message, in input order."""
        name, now, messages, acks_none = self._topic, self._now, self._own_stamps, self._acks_none
        following = dict(self._firsts)  # partition -> the offset of its next message
        new = object.__new__
        set_topic, set_partition, set_offset, set_stamp = PRODUCE_RESULT_SETTERS
        outcomes: list[ProduceResult | MemoryBrokerError] = []
        append = outcomes.append
        for index, partition in enumerate(self._placed):
            if type(partition) is not int:
                assert isinstance(partition, MemoryBrokerError)
                if partition.context["delivery"] != NOT_WRITTEN:  # failed after its append
                    following[partition.context["partition"]] += 1
                append(partition)
                continue
            offset = following[partition]
            following[partition] = offset + 1
            stamp = now
            if messages is not None:
                own = messages[index].timestamp
                if own is not None:
                    stamp = datetime_from_millis(millis_from_datetime(own))
            result = new(ProduceResult)
            set_topic(result, name)
            set_partition(result, partition)
            set_offset(result, -1 if acks_none else offset)
            set_stamp(result, stamp)
            append(result)
        return outcomes


def append_messages(
    topic: Topic,
    messages: Sequence[StreamingMessage],
    sticky: StickyPartitions,
    acks_none: bool,
    inject: Injector | None,
) -> tuple[Outcomes, int]:
    """Append ``messages`` in order: one outcome per message, and how many failed. Without
    failures the outcomes are an :class:`Appended`, whose results are built when read."""
    name, logs, settings = topic.name, topic.logs, topic.settings
    count = len(logs)
    limit = settings.max_batch_bytes
    within_any_framing = limit - MOST_FRAMING_BYTES
    now_millis = time.time_ns() // 1_000_000
    log_append_time = settings.log_append_time
    unkeyed: int | None = None  # this call's partition for unkeyed messages, once needed
    # Kafka refuses a record batch with a keyless record on a compacted topic whole, and a
    # client sends a call's records of one partition as one batch: those partitions fail.
    refused: set[int] = set()
    if settings.compact:
        for message in messages:
            if message.key is None:
                partition = message.partition
                if partition is None:
                    if unkeyed is None:
                        unkeyed = sticky.partition(name, count)
                    partition = unkeyed
                refused.add(partition)
    placed: list[int | MemoryBrokerError] = []
    place = placed.append
    firsts: dict[int, int] = {}
    own_stamps = False
    failures = 0
    for message in messages:
        key = message.key
        if key is not None and isinstance(key, str):
            key = key.encode()
        partition = message.partition
        if partition is None:
            if key is not None:
                partition = partition_for_key(key, count)
            else:
                if unkeyed is None:
                    unkeyed = sticky.partition(name, count)
                partition = unkeyed
        elif partition >= count:
            place(_bad_partition(name, partition, count))
            failures += 1
            continue
        value = message.value
        if value is not None and type(value) is not bytes:
            value = bytes(value)
        headers = message.headers
        # By identity first: the shared empty headers are a Python-level mapping, whose
        # truth test costs a tenth of this loop's time per message.
        stored_headers = None if headers is NO_HEADERS or not headers else encode_headers(headers)
        # The exact count only near the limit (or with headers): most records are far below.
        if (
            stored_headers is not None
            or (0 if key is None else len(key)) + (0 if value is None else len(value))
            > within_any_framing
        ):
            size = record_batch_bytes(key, value, stored_headers)
            if size > limit:
                place(_too_large(name, partition, size, limit))
                failures += 1
                continue
        if refused and partition in refused:
            place(_keyless_on_compacted(name, partition))
            failures += 1
            continue
        failed = None if inject is None else inject(partition)
        if failed is not None and failed.context["delivery"] == NOT_WRITTEN:
            place(failed)
            failures += 1
            continue
        log = logs[partition]
        if partition not in firsts:
            firsts[partition] = len(log)
        if message.timestamp is None or log_append_time:
            millis = now_millis
        else:
            millis = millis_from_datetime(message.timestamp)
            own_stamps = True
        log.append((key, value, millis, stored_headers))
        if failed is not None:
            place(failed)
            failures += 1
        else:
            place(partition)
    if not failures and len(placed) == 1:  # a send(): its one result costs less built now
        only = cast(int, placed[0])
        offset = -1 if acks_none else firsts[only]
        return [produce_result(name, only, offset, datetime_from_millis(millis))], 0
    appended = Appended(
        name,
        placed,
        firsts,
        datetime_from_millis(now_millis),
        (messages if type(messages) is tuple else tuple(messages)) if own_stamps else None,
        acks_none,
    )
    if failures:
        return appended.outcomes(), failures
    return appended, 0


def _bad_partition(topic: str, partition: int, count: int) -> MemoryBrokerError:
    return MemoryBrokerError(
        BrokerError.UNKNOWN_PARTITION,
        f"topic {topic!r} has {count} partition(s): partition {partition} does not exist",
        topic=topic,
        partition=partition,
        delivery=NOT_WRITTEN,
    )


def _too_large(topic: str, partition: int, size: int, limit: int) -> MemoryBrokerError:
    return MemoryBrokerError(
        BrokerError.MSG_SIZE_TOO_LARGE,
        f"the record batch of {size} bytes exceeds the {limit} bytes {topic!r} accepts "
        "(its max.message.bytes, or the broker's message.max.bytes)",
        topic=topic,
        partition=partition,
        size=size,
        limit=limit,
        delivery=NOT_WRITTEN,
    )


def _keyless_on_compacted(topic: str, partition: int) -> MemoryBrokerError:
    return MemoryBrokerError(
        BrokerError.INVALID_RECORD,
        "Compacted topic cannot accept message without key in topic partition "
        f"{topic}-{partition}.",
        topic=topic,
        partition=partition,
        delivery=NOT_WRITTEN,
    )
