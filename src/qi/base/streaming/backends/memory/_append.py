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
from collections.abc import Callable, Sequence

from qi.base.streaming import ProduceResult, StreamingMessage
from qi.base.streaming._fast_values import (
    PRODUCE_RESULT_SETTERS,
    datetime_from_millis,
    millis_from_datetime,
)
from qi.base.streaming.backend import NOT_WRITTEN, partition_for_key
from qi.base.streaming.backends.memory._errors import BrokerError, MemoryBrokerError
from qi.base.streaming.backends.memory._log import Topic, encode_headers
from qi.base.streaming.backends.memory._records import (
    MOST_FRAMING_BYTES,
    StickyPartitions,
    record_batch_bytes,
)

Injector = Callable[[int], MemoryBrokerError | None]
"""An injected failure for the next message, given its partition (None: no failure)."""

Outcomes = list[ProduceResult | MemoryBrokerError]
"""One outcome per message, in input order: its result, or the broker's refusal."""


def append_messages(
    topic: Topic,
    messages: Sequence[StreamingMessage],
    sticky: StickyPartitions,
    acks_none: bool,
    inject: Injector | None,
) -> tuple[Outcomes, int]:
    """Append ``messages`` in order: one outcome per message, and how many failed (so that
    a call without failures costs no second pass)."""
    name, logs, settings = topic.name, topic.logs, topic.settings
    count = len(logs)
    limit = settings.max_batch_bytes
    within_any_framing = limit - MOST_FRAMING_BYTES
    now_millis = time.time_ns() // 1_000_000
    now = datetime_from_millis(now_millis)
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
    outcomes: Outcomes = []
    append = outcomes.append
    failures = 0
    new = object.__new__
    set_topic, set_partition, set_offset, set_stamp = PRODUCE_RESULT_SETTERS
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
            append(_bad_partition(name, partition, count))
            failures += 1
            continue
        value = message.value
        if value is not None and type(value) is not bytes:
            value = bytes(value)
        headers = message.headers
        stored_headers = encode_headers(headers) if headers else None
        # The exact count only near the limit (or with headers): most records are far below.
        if (
            stored_headers is not None
            or (0 if key is None else len(key)) + (0 if value is None else len(value))
            > within_any_framing
        ):
            size = record_batch_bytes(key, value, stored_headers)
            if size > limit:
                append(_too_large(name, partition, size, limit))
                failures += 1
                continue
        if refused and partition in refused:
            append(_keyless_on_compacted(name, partition))
            failures += 1
            continue
        failed = None if inject is None else inject(partition)
        if failed is not None and failed.context["delivery"] == NOT_WRITTEN:
            append(failed)
            failures += 1
            continue
        log = logs[partition]
        offset = len(log)
        if message.timestamp is None or settings.log_append_time:
            millis, stamp = now_millis, now
        else:
            millis = millis_from_datetime(message.timestamp)
            stamp = datetime_from_millis(millis)
        log.append((key, value, millis, stored_headers))
        if failed is not None:
            append(failed)
            failures += 1
        else:  # produce_result() written out: the call cost more than the building
            result = new(ProduceResult)
            set_topic(result, name)
            set_partition(result, partition)
            set_offset(result, -1 if acks_none else offset)
            set_stamp(result, stamp)
            append(result)
    return outcomes, failures


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
