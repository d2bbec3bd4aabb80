"""Turning librdkafka's messages into the contract's frozen values, thousands at a time.

Two costs dominate the hot paths once the thread hops are batched: a frozen
dataclass's ``__init__`` (it assigns every field through ``object.__setattr__``)
and ``datetime.fromtimestamp``. The first is avoided by calling the slot
descriptors directly (``slot_setters`` of the seam, which
falls back to the constructor unless that is provably equivalent); the second
by remembering the last millisecond converted: consecutive messages mostly
carry the same one, since a batch is stamped within a few milliseconds.

Converting never raises for a record's contents: librdkafka has already moved past
the whole fetch, so a message that could not be built would take the others with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import cast

from confluent_kafka import KafkaError, Message

from qi.base.streaming import ConsumedMessage
from qi.base.streaming._build import (
    CONSUMED_MESSAGE_SETTERS,
    consumed_headers,
    datetime_from_millis,
)

_NativeHeaders = list[tuple[str, str | bytes | None]]


class Stamps:
    """Milliseconds since the epoch -> aware UTC datetime, remembering the last one.

    Not thread-safe by design: each thread that converts owns its own instance.
    """

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: tuple[int, datetime | None] = (0, datetime.fromtimestamp(0, tz=UTC))
        """The last conversion: (milliseconds, datetime)."""


def consumed(
    messages: list[Message],
    stamps: Stamps,
    no_headers: Mapping[str, bytes],
    on_error: Callable[[KafkaError], None],
) -> dict[tuple[str, int], list[ConsumedMessage]]:
    """ConsumedMessages by partition, in the order librdkafka returned them.

    ``on_error`` is called with the KafkaError of every error event among ``messages``.
    """
    fetched: dict[tuple[str, int], list[ConsumedMessage]] = {}
    setters = CONSUMED_MESSAGE_SETTERS
    new = object.__new__
    to_datetime = datetime_from_millis
    last_millis, last_stamp = stamps.last
    key: tuple[str, int] | None = None
    bucket: list[ConsumedMessage] = []
    for message in messages:
        error = message.error()
        if error is not None:
            on_error(error)
            continue
        topic = cast(str, message.topic())
        partition = cast(int, message.partition())
        # librdkafka hands out a partition's messages in runs: look the bucket up per run.
        if key is None or partition != key[1] or topic != key[0]:
            key = (topic, partition)
            found = fetched.get(key)
            if found is None:
                found = fetched[key] = []
            bucket = found
        headers = message.headers()
        mapping = consumed_headers(cast(_NativeHeaders, headers)) if headers else no_headers
        kind, millis = message.timestamp()
        if not kind:  # TIMESTAMP_NOT_AVAILABLE
            stamp = None
        elif millis == last_millis:
            stamp = last_stamp
        else:
            stamp = last_stamp = to_datetime(millis)
            last_millis = millis
        if setters is None:
            bucket.append(
                ConsumedMessage(
                    key[0],
                    partition,
                    cast(int, message.offset()),
                    message.key(),
                    message.value(),
                    stamp,
                    mapping,
                )
            )
            continue
        set_topic, set_partition, set_offset, set_key, set_value, set_stamp, set_headers = setters
        built = new(ConsumedMessage)
        set_topic(built, key[0])
        set_partition(built, partition)
        set_offset(built, message.offset())
        set_key(built, message.key())
        set_value(built, message.value())
        set_stamp(built, stamp)
        set_headers(built, mapping)
        bucket.append(built)
    stamps.last = (last_millis, last_stamp)
    return fetched
