"""librdkafka's fetched messages as the contract's ConsumedMessages, thousands at a time.

Each message is a view over its Message, built with one slot write on the worker
thread; its fields are read on the loop when a handler (or the engine) asks.

Converting never raises for a record's contents: librdkafka has already moved past
the whole fetch, so a message that could not be built would take the others with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from confluent_kafka import KafkaError, Message

from qi.base.streaming import ConsumedMessage
from qi.base.streaming._consumed_view import (
    NATIVE_SETTER,
    ConsumedView,
    cached_headers,
    stamp_from_millis,
)
from qi.base.streaming._fast_values import consumed_headers
from qi.base.streaming.backend import NO_CONSUMED_HEADERS

_NativeHeaders = list[tuple[str, str | bytes | None]]


def _message_timestamp(view: Any) -> datetime | None:
    kind, millis = view._native.timestamp()
    return stamp_from_millis(millis) if kind else None  # kind 0: TIMESTAMP_NOT_AVAILABLE


def _message_headers(view: Any) -> Mapping[str, bytes]:
    headers = view._native.headers()
    if not headers:
        return NO_CONSUMED_HEADERS
    return cached_headers(view, lambda: consumed_headers(cast(_NativeHeaders, headers)))  # type: ignore[no-any-return]


class _MessageView(ConsumedView):
    """A ConsumedMessage over confluent-kafka's Message. A Message owns Python copies of
    its topic, key and value and the headers librdkafka detached for it (freed with the
    Message): nothing of the fetch buffers librdkafka reuses, and nothing of the consumer."""

    __slots__ = ()

    if not TYPE_CHECKING:  # properties in place of the fields' slots
        topic = property(lambda view: view._native.topic())
        partition = property(lambda view: view._native.partition())
        offset = property(lambda view: view._native.offset())
        key = property(lambda view: view._native.key())
        value = property(lambda view: view._native.value())
        timestamp = property(_message_timestamp)
        headers = property(_message_headers)


def consumed(
    messages: list[Message], on_error: Callable[[KafkaError], None]
) -> dict[tuple[str, int], list[ConsumedMessage]]:
    """ConsumedMessages by partition, in the order librdkafka returned them: views that
    read each field from their Message when asked (see ``_consumed_view``).

    ``on_error`` is called with the KafkaError of every error event among ``messages``.
    """
    fetched: dict[tuple[str, int], list[ConsumedMessage]] = {}
    new = object.__new__
    set_message = NATIVE_SETTER
    last_topic: str | None = None
    last_partition = -1
    bucket: list[ConsumedMessage] = []
    for message in messages:
        error = message.error()
        if error is not None:
            on_error(error)
            continue
        # No cast() here: it is a call per message, a third of what the rest costs.
        topic: str = message.topic()  # type: ignore[assignment]
        partition: int = message.partition()  # type: ignore[assignment]
        # librdkafka hands out a partition's messages in runs: look the bucket up per run.
        if partition != last_partition or topic != last_topic:
            last_topic, last_partition = topic, partition
            key = (topic, partition)
            found = fetched.get(key)
            if found is None:
                found = fetched[key] = []
            bucket = found
        built = new(_MessageView)
        set_message(built, message)
        bucket.append(built)
    return fetched
