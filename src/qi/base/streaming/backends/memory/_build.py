"""Building many frozen result objects quickly, for the hot produce and fetch paths.

A frozen dataclass's ``__init__`` assigns each field through
``object.__setattr__``, which costs about twice as much as calling the slot
descriptors directly. The memory backend builds one :class:`ConsumedMessage`
per message fetched, so it uses the slot descriptors when that is provably
equivalent to ``__init__`` (slotted fields, in this order, and no
``__post_init__``) and falls back to the constructor otherwise.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Final, TypeAlias

from qi.base.streaming._types import ConsumedMessage

_Setter = Callable[[object, object], None]
_FIELDS: Final = ("topic", "partition", "offset", "key", "value", "timestamp", "headers")
Record: TypeAlias = tuple[bytes | None, bytes, datetime, Mapping[str, bytes] | None]
"""A stored message: key, value, timestamp, headers (None when empty)."""


def slot_setters(cls: type, names: tuple[str, ...]) -> tuple[_Setter, ...] | None:
    """The slot setters of ``cls``'s fields, if setting them is all its ``__init__`` does."""
    if not dataclasses.is_dataclass(cls) or hasattr(cls, "__post_init__"):
        return None
    if tuple(field.name for field in dataclasses.fields(cls)) != names:
        return None
    descriptors = [cls.__dict__.get(name) for name in names]
    if not all(isinstance(d, types.MemberDescriptorType) for d in descriptors):
        return None
    return tuple(d.__set__ for d in descriptors)  # type: ignore[union-attr]


_SETTERS: Final = slot_setters(ConsumedMessage, _FIELDS)


def consumed_messages(
    topic: str,
    partition: int,
    start: int,
    records: Sequence[Record],
    no_headers: Mapping[str, bytes],
) -> list[ConsumedMessage]:
    """ConsumedMessages of consecutive records of one partition, the first at offset ``start``."""
    if _SETTERS is None:
        return [
            ConsumedMessage(
                topic, partition, offset, key, value, stamp, no_headers if hdrs is None else hdrs
            )
            for offset, (key, value, stamp, hdrs) in enumerate(records, start)
        ]
    set_topic, set_partition, set_offset, set_key, set_value, set_stamp, set_headers = _SETTERS
    new = object.__new__
    built: list[ConsumedMessage] = []
    append = built.append
    for offset, (key, value, stamp, headers) in enumerate(records, start):
        message = new(ConsumedMessage)
        set_topic(message, topic)
        set_partition(message, partition)
        set_offset(message, offset)
        set_key(message, key)
        set_value(message, value)
        set_stamp(message, stamp)
        set_headers(message, no_headers if headers is None else headers)
        append(message)
    return built
