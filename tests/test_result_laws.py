"""Property tests: Result obeys the functor and monad laws, and sequence behaves as specified."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from qi.base import (
    ErrorCategory,
    Failure,
    QiError,
    Result,
    Success,
    create_error,
    failure,
    flat_map,
    map,
    map_error,
    sequence,
    success,
)

errors: st.SearchStrategy[QiError] = st.builds(
    create_error,
    code=st.text(min_size=1, max_size=12),
    message=st.text(max_size=20),
    category=st.sampled_from(ErrorCategory),
    context=st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
results: st.SearchStrategy[Result[int, QiError]] = st.one_of(
    st.integers().map(success), errors.map(failure)
)

# Plain functions drawn from a small family, so composition is exercised on real variety.
int_functions: st.SearchStrategy[Callable[[int], int]] = st.sampled_from(
    [lambda v: v + 1, lambda v: v * 2, lambda v: -v, lambda v: v % 7, lambda v: v * v]
)


def _even_only(value: int) -> Result[int, QiError]:
    if value % 2:
        return failure(create_error("ODD", "odd", ErrorCategory.SYSTEM))
    return success(value // 2)


def _non_negative(value: int) -> Result[int, QiError]:
    if value < 0:
        return failure(create_error("NEG", "negative", ErrorCategory.VALIDATION))
    return success(value + 3)


def _always_fails(value: int) -> Result[int, QiError]:
    return failure(create_error("ALWAYS", str(value), ErrorCategory.BUSINESS))


kleisli_functions: st.SearchStrategy[Callable[[int], Result[int, QiError]]] = st.sampled_from(
    [success, _even_only, _non_negative, _always_fails]
)


def identity(value: object) -> object:
    return value


@given(results)
def test_map_identity(result: Result[int, QiError]) -> None:
    assert map(identity, result) == result
    assert result.map(identity) == result


@given(results, int_functions, int_functions)
def test_map_composition(
    result: Result[int, QiError], f: Callable[[int], int], g: Callable[[int], int]
) -> None:
    assert map(lambda v: g(f(v)), result) == map(g, map(f, result))


@given(results)
def test_map_error_identity(result: Result[int, QiError]) -> None:
    assert map_error(identity, result) == result
    assert result.map_error(identity) == result


@given(results)
def test_map_error_composition(result: Result[int, QiError]) -> None:
    def code(error: QiError) -> str:
        return error.code

    def length(text: str) -> int:
        return len(text)

    assert map_error(lambda e: length(code(e)), result) == map_error(
        length, map_error(code, result)
    )


@given(st.integers(), kleisli_functions)
def test_flat_map_left_identity(value: int, f: Callable[[int], Result[int, QiError]]) -> None:
    assert flat_map(f, success(value)) == f(value)
    assert success(value).flat_map(f) == f(value)


@given(results)
def test_flat_map_right_identity(result: Result[int, QiError]) -> None:
    assert flat_map(success, result) == result
    assert result.flat_map(success) == result


@given(results, kleisli_functions, kleisli_functions)
def test_flat_map_associativity(
    result: Result[int, QiError],
    f: Callable[[int], Result[int, QiError]],
    g: Callable[[int], Result[int, QiError]],
) -> None:
    assert flat_map(g, flat_map(f, result)) == flat_map(lambda v: flat_map(g, f(v)), result)


@given(results, int_functions)
def test_map_is_flat_map_of_success(result: Result[int, QiError], f: Callable[[int], int]) -> None:
    assert map(f, result) == flat_map(lambda v: success(f(v)), result)


@given(st.lists(results, max_size=8))
def test_sequence_semantics(items: list[Result[int, QiError]]) -> None:
    failures = [item for item in items if isinstance(item, Failure)]
    outcome = sequence(items)
    if failures:
        assert outcome is failures[0]
    else:
        assert outcome == Success([item.value for item in items if isinstance(item, Success)])


@given(st.lists(st.integers(), max_size=8))
def test_sequence_of_successes_keeps_order(values: list[int]) -> None:
    assert sequence([success(v) for v in values]) == Success(values)


@given(results)
def test_equal_results_hash_equal(result: Result[int, QiError]) -> None:
    twin: Result[int, QiError] = (
        Success(result.value)
        if isinstance(result, Success)
        else Failure(
            create_error(
                result.error.code,
                result.error.message,
                result.error.category,
                dict(result.error.context),
            )
        )
    )
    assert twin == result
    assert hash(twin) == hash(result)
