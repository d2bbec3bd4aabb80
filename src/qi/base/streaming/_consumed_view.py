"""ConsumedMessages that read their fields from the client's own record when asked.

The fetch paths run once per message, and building a ConsumedMessage field by field
(seven native reads, seven slot writes, a timestamp conversion) was most of what a
fetch cost beyond the client itself. A view is built with one write: a reference to
the record, which the client built for this message alone and never reuses (the
backend modules say why for each client). A field is read from it when asked, so a
handler that reads only ``value`` pays for little else.

A view is a ConsumedMessage in every way the contract sees: ``isinstance`` holds;
equality and repr are those of an ordinary message with the same fields (so is
``hash``, which raises as it does there, the headers being a mapping); it is frozen;
``dataclasses.fields``/``asdict`` read it like any other; ``dataclasses.replace``,
copying and pickling give an ordinary ConsumedMessage.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from qi.base.streaming._fast_values import datetime_from_millis
from qi.base.streaming._types import ConsumedMessage

_FIELDS: Callable[[ConsumedMessage], tuple[Any, ...]] = attrgetter(
    "topic", "partition", "offset", "key", "value", "timestamp", "headers"
)

_HEADERS_SLOT = ConsumedMessage.__dict__["headers"]
"""The ``headers`` slot views inherit: where a view keeps its headers once converted."""

_last_stamp: tuple[int | None, datetime | None] = (None, None)
"""The last millisecond a view converted, and its datetime: records of one batch mostly
share it. One tuple, replaced whole, so threads reading views never see half of it."""


def stamp_from_millis(millis: int) -> datetime | None:
    """``datetime_from_millis(millis)``, converted again only for a new millisecond."""
    global _last_stamp
    last = _last_stamp
    if last[0] == millis:
        return last[1]
    stamp = datetime_from_millis(millis)
    _last_stamp = (millis, stamp)
    return stamp


def cached_headers(view: ConsumedMessage, convert: Callable[[], Mapping[str, bytes]]) -> Any:
    """The view's headers: converted by ``convert`` on the first read, then kept, so a
    handler sees the same mapping each time (as an ordinary message's)."""
    try:
        return _HEADERS_SLOT.__get__(view, ConsumedMessage)
    except AttributeError:
        headers = convert()
        _HEADERS_SLOT.__set__(view, headers)
        return headers


class ConsumedView(ConsumedMessage):
    """A ConsumedMessage over a client's record; each backend adds the field properties.

    Built by ``object.__new__`` and ``NATIVE_SETTER`` only: calling the class (as
    ``dataclasses.replace`` does) gives an ordinary ConsumedMessage.
    """

    __slots__ = ("_native",)

    if not TYPE_CHECKING:  # the subclasses' properties would clash with the fields' types

        def __new__(cls, *args: Any, **kwargs: Any) -> ConsumedMessage:
            return ConsumedMessage(*args, **kwargs)

        def __eq__(self, other: object) -> bool:
            if isinstance(other, ConsumedMessage):
                return _FIELDS(self) == _FIELDS(other)
            return NotImplemented

        __hash__ = ConsumedMessage.__hash__

        def __repr__(self) -> str:
            return repr(ConsumedMessage(*_FIELDS(self)))

        def __reduce__(self) -> tuple[Any, ...]:
            return ConsumedMessage, _FIELDS(self)

        def __setattr__(self, name: str, value: object) -> None:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

        def __delattr__(self, name: str) -> None:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


NATIVE_SETTER: Callable[[ConsumedView, object], None] = ConsumedView.__dict__["_native"].__set__
"""Sets a view's record: ``NATIVE_SETTER(object.__new__(ViewClass), record)``."""
