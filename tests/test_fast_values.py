"""The hot-path helpers of ``_fast_values``: every branch they keep.

The slot shortcut has no fallback: ``slot_setters`` refuses, at import, a class whose
``__init__`` does more than set its slots. So each refusal is tested here, and values
built through the shortcut must equal constructed ones field for field.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from qi.base.streaming import ConsumedMessage, EachMessagePayload, ProduceResult
from qi.base.streaming._fast_values import (
    CONSUMED_MESSAGE_SETTERS,
    EACH_MESSAGE_SETTERS,
    PRODUCE_RESULT_SETTERS,
    LastTimestamp,
    consumed_headers,
    datetime_from_millis,
    millis_from_datetime,
    produce_result,
    slot_setters,
)

STAMP = datetime(2024, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
STAMP_MS = 1_704_164_645_678


@dataclasses.dataclass(frozen=True, slots=True)
class _Plain:
    first: int
    second: str = "default"


def test_slot_setters_build_what_the_constructor_builds() -> None:
    set_first, set_second = slot_setters(_Plain, ("first", "second"))
    built = object.__new__(_Plain)
    set_first(built, 5)
    set_second(built, "x")
    assert built == _Plain(5, "x")


def test_slot_setters_refuse_a_class_that_is_not_a_dataclass() -> None:
    class Slotted:
        __slots__ = ("first",)

    with pytest.raises(TypeError, match="not a dataclass"):
        slot_setters(Slotted, ("first",))


def test_slot_setters_refuse_a_class_with_post_init() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError("negative")

    with pytest.raises(TypeError, match="__post_init__"):
        slot_setters(Checked, ("value",))


@pytest.mark.parametrize("names", [("second", "first"), ("first",), ("first", "second", "third")])
def test_slot_setters_refuse_other_fields_or_another_order(names: tuple[str, ...]) -> None:
    with pytest.raises(TypeError, match="fields"):
        slot_setters(_Plain, names)


def test_slot_setters_refuse_fields_outside_slots() -> None:
    @dataclasses.dataclass(frozen=True)
    class Unslotted:
        value: int

    with pytest.raises(TypeError, match="outside slots"):
        slot_setters(Unslotted, ("value",))


def _built(cls: type, setters: tuple[Any, ...], values: tuple[object, ...]) -> Any:
    built: Any = object.__new__(cls)
    for setter, value in zip(setters, values, strict=True):
        setter(built, value)
    return built


def test_the_contract_values_built_through_their_slots_equal_constructed_ones() -> None:
    message_fields = ("t", 1, 7, b"k", b"v", STAMP, {"h": b"1"})
    message = _built(ConsumedMessage, CONSUMED_MESSAGE_SETTERS, message_fields)
    assert message == ConsumedMessage(*message_fields)
    result_fields = ("t", 1, 7, STAMP)
    assert _built(ProduceResult, PRODUCE_RESULT_SETTERS, result_fields) == ProduceResult(
        *result_fields
    )
    payload_fields = ("t", 1, message, None)
    assert _built(EachMessagePayload, EACH_MESSAGE_SETTERS, payload_fields) == (
        EachMessagePayload(*payload_fields)
    )
    assert produce_result(*result_fields) == ProduceResult(*result_fields)


def test_milliseconds_convert_both_ways() -> None:
    assert datetime_from_millis(STAMP_MS) == STAMP
    assert millis_from_datetime(STAMP) == STAMP_MS
    assert datetime_from_millis(0) == datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("millis", [2**62, -(2**62)])
def test_a_timestamp_no_datetime_holds_converts_to_none(millis: int) -> None:
    assert datetime_from_millis(millis) is None


def test_last_timestamp_converts_again_only_for_a_new_millisecond() -> None:
    last = LastTimestamp()
    assert (last.millis, last.stamp) == (None, None)
    first = last(STAMP_MS)
    assert first == STAMP
    assert last(STAMP_MS) is first  # remembered, not converted again
    assert last(STAMP_MS + 1) == datetime_from_millis(STAMP_MS + 1)
    remembered: tuple[int | None, datetime | None] = (last.millis, last.stamp)
    assert remembered == (STAMP_MS + 1, datetime_from_millis(STAMP_MS + 1))
    assert last(2**62) is None
    assert last(STAMP_MS) == STAMP


def test_consumed_headers_are_bytes_and_the_last_repeated_name_wins() -> None:
    native: list[tuple[str, str | bytes | None]] = [("a", b"1"), ("b", "2"), ("c", None)]
    assert consumed_headers([*native, ("a", b"3")]) == {"a": b"3", "b": b"2", "c": b""}
