"""How many bytes a record takes on a Kafka broker, and where an unkeyed record goes.

Kafka limits record *batches*, not payloads: ``message.max.bytes`` (the broker's) and
``max.message.bytes`` (the topic's) bound the size of a v2 record batch, header
included. A client sends a record that does not fit with others alone, so the memory
broker checks each record as the one-record batch a client would send uncompressed:
the 61-byte batch header, then the record's length as a varint and the record itself
(attributes, timestamp and offset deltas, key, value and headers, each length a
zig-zag varint, -1 for a null key or value).

Unkeyed records are placed the way Kafka's clients place them since KIP-480 (and
librdkafka with its default ``sticky.partitioning.linger.ms``): a producer sticks to
one partition of a topic for a while, then moves on to another chosen at random, so
records sent close together share a partition instead of going round robin.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Final

BATCH_HEADER_BYTES: Final = 61
"""A v2 record batch header: base offset, length, epoch, magic, CRC, attributes, offsets,
timestamps, producer id, epoch and sequence, record count."""
# The three one-byte fields of a lone record: attributes and its (zero) timestamp and
# offset deltas.
_RECORD_FIXED_BYTES: Final = 3
MOST_FRAMING_BYTES: Final = BATCH_HEADER_BYTES + 5 + _RECORD_FIXED_BYTES + 5 + 5 + 1
"""The most a lone record without headers adds to its key and value in its batch: the
header, the record's length, its fixed fields, the key and value lengths and the header
count. A record whose key and value leave this much room under a limit fits."""


def _varint_bytes(value: int) -> int:
    """Bytes of ``value`` as Kafka's zig-zag varint."""
    zigzag = (value << 1) ^ (value >> 63)
    size = 1
    while zigzag >= 0x80:
        zigzag >>= 7
        size += 1
    return size


def _field_bytes(length: int | None) -> int:
    """A length-prefixed field: the varint of its length (-1 for null), then its bytes."""
    return 1 if length is None else _varint_bytes(length) + length


def record_batch_bytes(
    key: bytes | None, value: bytes | None, headers: Mapping[str, bytes] | None
) -> int:
    """Bytes of the uncompressed v2 record batch holding this one record."""
    record = _RECORD_FIXED_BYTES + _field_bytes(None if key is None else len(key))
    record += _field_bytes(None if value is None else len(value))
    # Through the items view: the stored headers are a ReadOnlyMapping, whose own truth
    # test and len are Python-level calls (a tenth of a send with headers, three a record).
    items = () if headers is None else headers.items()
    record += _varint_bytes(len(items))
    for name, header_value in items:
        record += _field_bytes(len(name.encode())) + _field_bytes(len(header_value))
    return BATCH_HEADER_BYTES + _varint_bytes(record) + record


class StickyPartitions:
    """A producer's partition for unkeyed records, per topic, kept for ``window`` seconds.

    One produce call (a batch, or the sends of one moment) goes to one partition; the
    next call after the window has passed goes to another, chosen at random.
    """

    def __init__(self, window: float) -> None:
        self._window = window
        self._chosen: dict[str, tuple[int, float]] = {}

    def partition(self, topic: str, count: int) -> int:
        """The partition for the unkeyed records of this call to ``topic``."""
        now = time.monotonic()
        chosen = self._chosen.get(topic)
        if chosen is not None:
            partition, since = chosen
            if partition < count and now - since < self._window:
                return partition
            if count > 1:
                # Another partition than the last, so that a window ending always moves.
                partition = (partition + random.randrange(1, count)) % count
            else:
                partition = 0
        else:
            partition = random.randrange(count)
        self._chosen[topic] = (partition, now)
        return partition
