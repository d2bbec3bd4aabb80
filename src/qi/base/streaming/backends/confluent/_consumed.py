"""librdkafka's fetched messages as the contract's ConsumedMessages, thousands at a time.

Built through the slot setters and the last-timestamp cache of
``qi.base.streaming._fast_values`` (the two costs that dominate once the thread
hops are batched).

Converting never raises for a record's contents: librdkafka has already moved past
the whole fetch, so a message that could not be built would take the others with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import cast

from confluent_kafka import KafkaError, Message

from qi.base.streaming import ConsumedMessage
from qi.base.streaming._fast_values import (
    CONSUMED_MESSAGE_SETTERS,
    LastTimestamp,
    consumed_headers,
    datetime_from_millis,
)

_NativeHeaders = list[tuple[str, str | bytes | None]]


def consumed(
    messages: list[Message],
    last_timestamp: LastTimestamp,
    no_headers: Mapping[str, bytes],
    on_error: Callable[[KafkaError], None],
) -> dict[tuple[str, int], list[ConsumedMessage]]:
    """ConsumedMessages by partition, in the order librdkafka returned them.

    ``on_error`` is called with the KafkaError of every error event among ``messages``.
    """
    fetched: dict[tuple[str, int], list[ConsumedMessage]] = {}
    set_topic, set_partition, set_offset, set_key, set_value, set_stamp, set_headers = (
        CONSUMED_MESSAGE_SETTERS
    )
    new = object.__new__
    to_datetime = datetime_from_millis
    last_millis, last_stamp = last_timestamp.millis, last_timestamp.stamp
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
        kind, millis = message.timestamp()
        if not kind:  # TIMESTAMP_NOT_AVAILABLE
            stamp = None
        elif millis == last_millis:
            stamp = last_stamp
        else:
            stamp = last_stamp = to_datetime(millis)
            last_millis = millis
        built = new(ConsumedMessage)
        set_topic(built, key[0])
        set_partition(built, partition)
        set_offset(built, message.offset())
        set_key(built, message.key())
        set_value(built, message.value())
        set_stamp(built, stamp)
        set_headers(
            built, consumed_headers(cast(_NativeHeaders, headers)) if headers else no_headers
        )
        bucket.append(built)
    last_timestamp.millis, last_timestamp.stamp = last_millis, last_stamp
    return fetched
