"""Success, Failure and the module functions of qi.base, example by example."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import pytest

from qi.base import (
    ErrorCategory,
    Failure,
    QiError,
    Result,
    Success,
    UnwrapError,
    create_error,
    failure,
    flat_map,
    flat_map_async,
    from_async_try_catch,
    from_try_catch,
    is_failure,
    is_success,
    map,
    map_async,
    map_error,
    match,
    sequence,
    success,
    unwrap_or,
)

ERR = create_error("E1", "first", ErrorCategory.VALIDATION)
ERR2 = create_error("E2", "second", ErrorCategory.NETWORK)


def ok(value: int) -> Result[int, QiError]:
    return success(value)


def bad(error: QiError = ERR) -> Result[int, QiError]:
    return failure(error)


# --- construction, tags, equality, hashing, frozenness, repr ---------------------------


def test_constructors_and_tags() -> None:
    assert success(1) == Success(1)
    assert failure(ERR) == Failure(ERR)
    assert Success(1).tag == "success"
    assert Failure(ERR).tag == "failure"
    assert Success(1).value == 1
    assert Failure(ERR).error is ERR


def test_is_success_and_is_failure() -> None:
    assert Success(1).is_success() is True
    assert Success(1).is_failure() is False
    assert Failure(ERR).is_success() is False
    assert Failure(ERR).is_failure() is True
    assert is_success(ok(1)) and not is_failure(ok(1))
    assert is_failure(bad()) and not is_success(bad())


def test_equality_by_contents_and_kind() -> None:
    assert Success([1, 2]) == Success([1, 2])
    assert Success(1) != Success(2)
    assert Failure(ERR) == Failure(create_error("E1", "first", ErrorCategory.VALIDATION))
    assert Failure(ERR) != Failure(ERR2)
    # Same payload, different kind: never equal.
    same_payload: list[object] = [Success("x"), Failure("x"), "x"]
    assert same_payload[0] != same_payload[1]
    assert same_payload[0] != same_payload[2]


def test_hash_by_contents() -> None:
    assert hash(Success(1)) == hash(Success(1))
    assert hash(Failure(ERR)) == hash(Failure(ERR))
    assert len({Success(1), Success(1), Success(2), Failure(ERR), Failure(ERR)}) == 3
    assert {Success("a"): 1}[Success("a")] == 1


def test_unhashable_contents_make_an_unhashable_result() -> None:
    with pytest.raises(TypeError):
        hash(Success([1]))


def test_frozen() -> None:
    good = Success(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        good.value = 2  # type: ignore[misc]
    broken = Failure(ERR)
    with pytest.raises(dataclasses.FrozenInstanceError):
        broken.error = ERR2  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        good.extra = 3  # type: ignore[attr-defined]


def test_slots_and_match_args() -> None:
    assert Success.__slots__ == ("value",)
    assert Failure.__slots__ == ("error",)
    assert Success.__match_args__ == ("value",)
    assert Failure.__match_args__ == ("error",)
    assert not hasattr(Success(1), "__dict__")


def test_repr() -> None:
    assert repr(Success(1)) == "Success(1)"
    assert repr(Success("a")) == "Success('a')"
    assert repr(Success(None)) == "Success(None)"
    assert repr(Failure("boom")) == "Failure('boom')"
    assert repr(Failure(ERR)) == f"Failure({ERR!r})"


def describe(result: Result[int, QiError]) -> str:
    match result:
        case Success(value=0):
            return "zero"
        case Success(value=v):
            return f"value {v}"
        case Failure(error=QiError(code=code)):
            return f"error {code}"


def describe_positional(result: Result[int, QiError]) -> str:
    match result:
        case Success(v):
            return f"value {v}"
        case Failure(e):
            return f"error {e.code}"


def test_pattern_matching() -> None:
    assert describe(ok(0)) == "zero"
    assert describe(ok(7)) == "value 7"
    assert describe(bad(ERR2)) == "error E2"
    assert describe_positional(ok(7)) == "value 7"
    assert describe_positional(bad()) == "error E1"


# --- methods -----------------------------------------------------------------------------


def test_map() -> None:
    assert ok(2).map(lambda v: v * 10) == Success(20)
    calls: list[int] = []
    assert bad().map(lambda v: calls.append(v)) == Failure(ERR)
    assert calls == []


def test_map_error() -> None:
    assert bad().map_error(lambda e: e.code) == Failure("E1")
    calls: list[object] = []
    assert ok(1).map_error(lambda e: calls.append(e)) == Success(1)
    assert calls == []


def test_flat_map() -> None:
    def halve(value: int) -> Result[int, QiError]:
        return success(value // 2) if value % 2 == 0 else failure(ERR2)

    assert ok(8).flat_map(halve) == Success(4)
    assert ok(3).flat_map(halve) == Failure(ERR2)
    assert bad().flat_map(halve) == Failure(ERR)


def test_unwrap_and_unwrap_or() -> None:
    assert ok(3).unwrap() == 3
    with pytest.raises(UnwrapError) as caught:
        bad().unwrap()
    assert caught.value.error is ERR
    assert ok(3).unwrap_or(0) == 3
    assert bad().unwrap_or(0) == 0


def test_match_method() -> None:
    assert ok(3).match(lambda v: f"ok {v}", lambda e: f"bad {e.code}") == "ok 3"
    assert bad().match(lambda v: f"ok {v}", lambda e: f"bad {e.code}") == "bad E1"


def test_inspect_and_inspect_error() -> None:
    seen: list[object] = []
    good = ok(5)
    broken = bad()
    assert good.inspect(seen.append) is good
    assert broken.inspect(seen.append) is broken
    assert seen == [5]
    assert good.inspect_error(seen.append) is good
    assert broken.inspect_error(seen.append) is broken
    assert seen == [5, ERR]


# --- module functions ------------------------------------------------------------------


def test_module_map_map_error_flat_map() -> None:
    assert map(lambda v: v + 1, ok(1)) == Success(2)
    assert map(lambda v: v + 1, bad()) == Failure(ERR)
    assert map_error(lambda e: e.message, bad()) == Failure("first")
    assert map_error(lambda e: e.message, ok(1)) == Success(1)
    assert flat_map(lambda v: ok(v * 3), ok(2)) == Success(6)
    assert flat_map(lambda v: bad(ERR2), ok(2)) == Failure(ERR2)
    assert flat_map(lambda v: ok(v * 3), bad()) == Failure(ERR)


def test_module_match_and_unwrap_or() -> None:
    assert match(lambda v: v * 2, lambda e: -1, ok(4)) == 8
    assert match(lambda v: v * 2, lambda e: -1, bad()) == -1
    assert unwrap_or(9, ok(4)) == 4
    assert unwrap_or(9, bad()) == 9


def test_from_try_catch_success() -> None:
    assert from_try_catch(lambda: 42) == Success(42)


def test_from_try_catch_default_error() -> None:
    def explode() -> int:
        raise ValueError("kaboom")

    result = from_try_catch(explode)
    assert isinstance(result, Failure)
    assert result.error.code == "UNKNOWN_ERROR"
    assert result.error.message == "kaboom"
    assert result.error.category is ErrorCategory.SYSTEM
    assert result.error.context["exception_type"] == "ValueError"


def test_from_try_catch_on_error() -> None:
    def explode() -> int:
        raise KeyError("k")

    seen: list[Exception] = []

    def to_error(exc: Exception) -> QiError:
        seen.append(exc)
        return ERR2

    assert from_try_catch(explode, to_error) == Failure(ERR2)
    assert len(seen) == 1 and isinstance(seen[0], KeyError)
    assert from_try_catch(explode, on_error=lambda exc: type(exc).__name__) == Failure("KeyError")


def test_from_try_catch_lets_base_exceptions_through() -> None:
    def interrupt() -> int:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        from_try_catch(interrupt)


async def test_from_async_try_catch() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def explode() -> int:
        await asyncio.sleep(0)
        raise RuntimeError("async kaboom")

    assert await from_async_try_catch(answer) == Success(42)
    default = await from_async_try_catch(explode)
    assert isinstance(default, Failure)
    assert default.error.message == "async kaboom"
    assert default.error.context == {"exception_type": "RuntimeError"}
    custom = await from_async_try_catch(explode, on_error=lambda exc: str(exc).upper())
    assert custom == Failure("ASYNC KABOOM")


async def test_from_async_try_catch_propagates_cancellation() -> None:
    async def cancelled() -> int:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await from_async_try_catch(cancelled)


async def test_map_async() -> None:
    calls: list[int] = []

    async def double(value: int) -> int:
        calls.append(value)
        await asyncio.sleep(0)
        return value * 2

    assert await map_async(double, ok(4)) == Success(8)
    assert await map_async(double, bad()) == Failure(ERR)
    assert calls == [4]


async def test_flat_map_async() -> None:
    calls: list[int] = []

    async def check(value: int) -> Result[str, QiError]:
        calls.append(value)
        await asyncio.sleep(0)
        return success(str(value)) if value > 0 else failure(ERR2)

    assert await flat_map_async(check, ok(4)) == Success("4")
    assert await flat_map_async(check, ok(-1)) == Failure(ERR2)
    assert await flat_map_async(check, bad()) == Failure(ERR)
    assert calls == [4, -1]


def test_sequence() -> None:
    assert sequence([ok(1), ok(2), ok(3)]) == Success([1, 2, 3])
    assert sequence([]) == Success([])
    assert sequence([ok(1), bad(ERR), bad(ERR2)]) == Failure(ERR)
    assert sequence([bad(ERR2), ok(1), bad(ERR)]) == Failure(ERR2)


def test_sequence_stops_at_the_first_failure() -> None:
    consumed: list[int] = []

    def results() -> Iterator[Result[int, QiError]]:
        for index in range(5):
            consumed.append(index)
            yield bad() if index == 1 else ok(index)

    assert sequence(results()) == Failure(ERR)
    assert consumed == [0, 1]


def test_result_alias_is_subscriptable_at_runtime() -> None:
    alias = Result[int, QiError]
    assert Success[int] in alias.__args__
    assert Failure[QiError] in alias.__args__
