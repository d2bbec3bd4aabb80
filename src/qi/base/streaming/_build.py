"""Building many frozen values quickly, for the hot produce and fetch paths.

A frozen dataclass's ``__init__`` assigns each field through
``object.__setattr__``, which costs about twice as much as calling the slot
descriptors directly. Backends that build one ``ConsumedMessage`` or
``ProduceResult`` per message use the slot descriptors, but only when that is
provably what ``__init__`` would do (slotted fields, in this order, and no
``__post_init__``); otherwise :func:`slot_setters` says no and they fall back
to the constructor.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Final

from qi.base.streaming._types import ConsumedMessage, EachMessagePayload, ProduceResult

Setter = Callable[[object, object], None]
"""Sets one slot of an instance: ``setter(instance, value)``."""


def slot_setters(cls: type, names: tuple[str, ...]) -> tuple[Setter, ...] | None:
    """The slot setters of ``cls``'s fields, if setting them is all its ``__init__`` does."""
    if not dataclasses.is_dataclass(cls) or hasattr(cls, "__post_init__"):
        return None
    if tuple(field.name for field in dataclasses.fields(cls)) != names:
        return None
    descriptors = [cls.__dict__.get(name) for name in names]
    if not all(isinstance(d, types.MemberDescriptorType) for d in descriptors):
        return None
    return tuple(d.__set__ for d in descriptors)  # type: ignore[union-attr]


CONSUMED_MESSAGE_SETTERS: Final = slot_setters(
    ConsumedMessage, ("topic", "partition", "offset", "key", "value", "timestamp", "headers")
)
"""For the fetch paths, which build one ConsumedMessage per message inline."""

PRODUCE_RESULT_SETTERS: Final = slot_setters(
    ProduceResult, ("topic", "partition", "offset", "timestamp")
)
"""For hot loops that build ProduceResults inline; None means: call the constructor."""


def produce_result(
    topic: str, partition: int, offset: int, timestamp: datetime | None
) -> ProduceResult:
    """A ProduceResult, built through its slots when that is what ``__init__`` would do."""
    if PRODUCE_RESULT_SETTERS is None:
        return ProduceResult(topic, partition, offset, timestamp)
    set_topic, set_partition, set_offset, set_timestamp = PRODUCE_RESULT_SETTERS
    result = object.__new__(ProduceResult)
    set_topic(result, topic)
    set_partition(result, partition)
    set_offset(result, offset)
    set_timestamp(result, timestamp)
    return result


def datetime_from_millis(millis: int) -> datetime | None:
    """Kafka's milliseconds since the epoch as an aware UTC datetime, None if unrepresentable.

    A record's timestamp is whatever its producer wrote: microseconds by mistake, or
    any int64 beyond the year 9999. One such record must not make a whole fetch fail.
    """
    try:
        return datetime.fromtimestamp(millis / 1000, tz=UTC)
    except (OverflowError, ValueError, OSError):
        return None


EACH_MESSAGE_SETTERS: Final = slot_setters(
    EachMessagePayload, ("topic", "partition", "message", "transaction")
)
"""For the run loop, which builds one EachMessagePayload per message inline. The
at-least-once loop sets the first three only: an unset ``transaction`` reads as None."""


def consumed_headers(headers: Iterable[tuple[str, str | bytes | None]]) -> dict[str, bytes]:
    """Native (name, value) headers as the contract wants them: bytes values (a null value
    becomes b""), the last of repeated names wins."""
    return {
        name: value if isinstance(value, bytes) else b"" if value is None else value.encode()
        for name, value in headers
    }
