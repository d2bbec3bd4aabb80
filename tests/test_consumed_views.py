"""The confluent and aiokafka backends hand over views that read each field from the
client's own record when asked: everywhere the contract looks, such a view is the
ordinary ConsumedMessage with the same fields."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from confluent_kafka import Message

from qi.base.streaming import ConsumedMessage
from qi.base.streaming._types import NO_CONSUMED_HEADERS
from qi.base.streaming.backends.aiokafka._consumer import consumed_messages
from qi.base.streaming.backends.confluent._consumed import consumed

MILLIS = 1_700_000_000_123
STAMP = datetime.fromtimestamp(MILLIS / 1000, tz=UTC)
FAR_FUTURE = 2**62  # milliseconds no datetime holds

NativeHeaders = list[tuple[str, str | bytes | None]]


def aiokafka_view(
    offset: int, key: bytes | None, value: bytes | None, millis: int | None, headers: NativeHeaders
) -> ConsumedMessage:
    record = ConsumerRecord("t", 2, offset, millis, 0, key, value, None, 1, 1, tuple(headers))
    (view,) = consumed_messages([record])
    return view


def confluent_view(
    offset: int, key: bytes | None, value: bytes | None, millis: int | None, headers: NativeHeaders
) -> ConsumedMessage:
    stamp = (0, 0) if millis is None else (1, millis)  # kind 0: no timestamp
    native = Message(
        topic="t",
        partition=2,
        offset=offset,
        key=key,
        value=value,
        headers=headers or None,
        timestamp=stamp,
    )
    errors: list[object] = []
    fetched = consumed([native], errors.append)
    assert not errors
    (view,) = fetched[("t", 2)]
    return view


VIEWS = [pytest.param(aiokafka_view, id="aiokafka"), pytest.param(confluent_view, id="confluent")]
MakeView = Callable[..., ConsumedMessage]


def both(make: MakeView, *, headers: NativeHeaders | None = None) -> tuple[Any, ConsumedMessage]:
    """A view and the ordinary message with the same fields."""
    native_headers = [("h", b"x"), ("n", None), ("h", b"y")] if headers is None else headers
    view = make(7, b"k", b"v", MILLIS, native_headers)
    expected_headers = {"h": b"y", "n": b""} if native_headers else NO_CONSUMED_HEADERS
    return view, ConsumedMessage("t", 2, 7, b"k", b"v", STAMP, expected_headers)


def outcome(action: Callable[[Any], Any], message: ConsumedMessage) -> tuple[str, Any]:
    """What ``action(message)`` returns, or the type of what it raises."""
    try:
        return "returned", action(message)
    except Exception as exc:
        return "raised", type(exc)


@pytest.mark.parametrize("make", VIEWS)
def test_a_view_reads_as_the_ordinary_message_with_its_fields(make: MakeView) -> None:
    view, eager = both(make)
    assert isinstance(view, ConsumedMessage)
    assert type(view) is not ConsumedMessage  # a view indeed: the rest is not vacuous
    assert view == eager and eager == view
    assert not (view != eager) and not (eager != view)
    assert repr(view) == repr(eager)
    assert view.headers is view.headers  # converted once: the same mapping on each read
    other = dataclasses.replace(eager, offset=8)
    assert view != other and other != view


@pytest.mark.parametrize("make", VIEWS)
def test_a_view_without_headers_has_the_shared_empty_mapping(make: MakeView) -> None:
    view, eager = both(make, headers=[])
    assert view.headers is NO_CONSUMED_HEADERS
    assert view == eager and repr(view) == repr(eager)


@pytest.mark.parametrize("make", VIEWS)
@pytest.mark.parametrize("headers", [None, []], ids=["headers", "no-headers"])
def test_the_dataclass_tools_copying_pickling_and_hashing_treat_a_view_as_its_message(
    make: MakeView, headers: NativeHeaders | None
) -> None:
    # Whatever each does with an ordinary message (hash raises: the headers are a mapping),
    # it does with a view; what it builds is an ordinary message.
    view, eager = both(make, headers=headers)
    actions: dict[str, Callable[[Any], Any]] = {
        "fields": lambda m: [f.name for f in dataclasses.fields(m)],
        "asdict": dataclasses.asdict,
        "astuple": dataclasses.astuple,
        "replace": lambda m: dataclasses.replace(m, value=b"w"),
        "copy": copy.copy,
        "deepcopy": copy.deepcopy,
        "pickle": lambda m: pickle.loads(pickle.dumps(m)),
        "hash": hash,
    }
    for name, action in actions.items():
        assert outcome(action, view) == outcome(action, eager), name
    for name in ("replace", "copy"):
        assert type(actions[name](view)) is ConsumedMessage, name
    assert dataclasses.replace(view, value=b"w").value == b"w"
    assert pickle.loads(pickle.dumps(view)) == eager
    assert type(pickle.loads(pickle.dumps(view))) is ConsumedMessage
    assert copy.deepcopy(view) == eager
    expected = {"h": b"y", "n": b""} if headers is None else {}
    assert dataclasses.asdict(view)["headers"] == expected


@pytest.mark.parametrize("make", VIEWS)
def test_a_view_is_frozen_as_an_ordinary_message_is(make: MakeView) -> None:
    view, eager = both(make)
    for message in (view, eager):
        for field in dataclasses.fields(ConsumedMessage):
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(message, field.name, None)
            with pytest.raises(dataclasses.FrozenInstanceError):
                delattr(message, field.name)
        # Other names raise too (a TypeError from Python 3.11's slotted frozen dataclass).
        for name in ("_native", "other"):
            with pytest.raises((dataclasses.FrozenInstanceError, TypeError)):
                setattr(message, name, None)
    assert view == eager


@pytest.mark.parametrize("make", VIEWS)
@pytest.mark.parametrize("millis", [FAR_FUTURE, -(2**62)])
def test_a_timestamp_no_datetime_holds_reads_as_none(make: MakeView, millis: int) -> None:
    view = make(7, b"k", b"v", millis, [])
    assert view.timestamp is None
    assert view == ConsumedMessage("t", 2, 7, b"k", b"v", None)


@pytest.mark.parametrize("make", VIEWS)
def test_a_record_without_timestamp_key_or_value_reads_none(make: MakeView) -> None:
    view = make(0, None, None, None, [])
    assert (view.key, view.value, view.timestamp) == (None, None, None)
    assert view == ConsumedMessage("t", 2, 0, None, None, None)


@pytest.mark.parametrize("make", VIEWS)
def test_consecutive_views_convert_each_distinct_millisecond(make: MakeView) -> None:
    # Views share the last conversion: a new millisecond must not read as the previous one.
    stamps = [make(i, None, b"v", millis, []).timestamp for i, millis in enumerate((1, 1, 2, 1))]
    assert [round(stamp.timestamp() * 1000) for stamp in stamps if stamp] == [1, 1, 2, 1]


def test_calling_the_view_class_gives_an_ordinary_message() -> None:
    view, eager = both(aiokafka_view)
    built = type(view)(*dataclasses.astuple(eager))
    assert type(built) is ConsumedMessage and built == eager
