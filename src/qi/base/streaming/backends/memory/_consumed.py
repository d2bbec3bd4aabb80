"""Stored records as the contract's ConsumedMessages, for the fetch path.

Built through the slot setters of ``qi.base.streaming._fast_values``; consecutive
records mostly share a millisecond, so each distinct timestamp becomes a datetime once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TypeAlias

from qi.base.streaming import ConsumedMessage
from qi.base.streaming._fast_values import CONSUMED_MESSAGE_SETTERS, datetime_from_millis

Record: TypeAlias = tuple[bytes | None, bytes | None, int, Mapping[str, bytes] | None]
"""A stored message: key, value (None for a tombstone), timestamp (milliseconds, as Kafka
stores it), headers (None when empty)."""


def consumed_messages(
    topic: str,
    partition: int,
    start: int,
    records: Sequence[Record],
    no_headers: Mapping[str, bytes],
) -> list[ConsumedMessage]:
    """ConsumedMessages of consecutive records of one partition, the first at offset ``start``;
    a timestamp ``datetime`` cannot hold is None."""
    set_topic, set_partition, set_offset, set_key, set_value, set_stamp, set_headers = (
        CONSUMED_MESSAGE_SETTERS
    )
    new = object.__new__
    last_millis: int | None = None
    last_stamp: datetime | None = None
    built: list[ConsumedMessage] = []
    append = built.append
    for offset, (key, value, millis, headers) in enumerate(records, start):
        if millis != last_millis:
            last_millis, last_stamp = millis, datetime_from_millis(millis)
        message = new(ConsumedMessage)
        set_topic(message, topic)
        set_partition(message, partition)
        set_offset(message, offset)
        set_key(message, key)
        set_value(message, value)
        set_stamp(message, last_stamp)
        set_headers(message, no_headers if headers is None else headers)
        append(message)
    return built
