"""What mypy (strict) infers for Results; this file fails `mypy` if narrowing breaks.

Each function below both runs under pytest and is type-checked: ``assert_type``
is a no-op at runtime but an error for mypy when the inferred type differs,
and reading ``.value`` / ``.error`` on an un-narrowed ``Result`` is an error too.

mypy narrows a Result on ``isinstance``, on ``match``, on ``result.tag ==
"success"`` and on the module functions ``is_success`` / ``is_failure``
(``TypeIs``). It cannot narrow on the methods ``result.is_success()``: mypy
does not narrow a union by a method's ``Literal[True]`` return type
(python/mypy#13530), and ``TypeIs`` needs an argument besides ``self``.
The methods' return types are still precise once narrowed (``Literal[True]``).
"""

from __future__ import annotations

from typing import Literal, assert_never, assert_type

from qi.base import (
    ErrorCategory,
    Failure,
    QiError,
    Result,
    Success,
    create_error,
    failure,
    flat_map,
    from_try_catch,
    is_failure,
    is_success,
    map,
    map_error,
    match,
    sequence,
    success,
    unwrap_or,
)

ERR = create_error("E", "boom", ErrorCategory.NETWORK)


def make(flag: bool) -> Result[int, QiError]:
    return success(1) if flag else failure(ERR)


def value_or_code(result: Result[int, QiError]) -> int | str:
    if is_success(result):
        assert_type(result, Success[int])
        return result.value
    assert_type(result, Failure[QiError])
    return result.error.code


def value_or_code_via_is_failure(result: Result[int, QiError]) -> int | str:
    if is_failure(result):
        assert_type(result, Failure[QiError])
        return result.error.code
    assert_type(result, Success[int])
    return result.value


def value_or_code_via_tag(result: Result[int, QiError]) -> int | str:
    if result.tag == "success":
        assert_type(result, Success[int])
        return result.value
    assert_type(result, Failure[QiError])
    return result.error.code


def value_or_code_via_isinstance(result: Result[int, QiError]) -> int | str:
    if isinstance(result, Success):
        assert_type(result, Success[int])
        return result.value
    assert_type(result, Failure[QiError])
    return result.error.code


def value_or_code_via_match(result: Result[int, QiError]) -> int | str:
    match result:
        case Success(value=value):
            assert_type(value, int)
            return value
        case Failure(error=error):
            assert_type(error, QiError)
            return error.code
        case _:
            assert_never(result)


def test_narrowing_functions_agree() -> None:
    for narrow in (
        value_or_code,
        value_or_code_via_is_failure,
        value_or_code_via_tag,
        value_or_code_via_isinstance,
        value_or_code_via_match,
    ):
        assert narrow(make(True)) == 1
        assert narrow(make(False)) == "E"


def test_method_return_types_are_literal_once_narrowed() -> None:
    good = success(1)
    broken = failure(ERR)
    assert assert_type(good.is_success(), Literal[True]) is True
    assert assert_type(good.is_failure(), Literal[False]) is False
    assert assert_type(broken.is_success(), Literal[False]) is False
    assert assert_type(broken.is_failure(), Literal[True]) is True
    # On the union the methods are plain bools (no narrowing, see module docstring).
    assert assert_type(make(True).is_success(), bool) is True


def test_method_types_on_the_union() -> None:
    result = make(True)
    assert_type(result.map(str), Success[str] | Failure[QiError])
    assert_type(result.map_error(lambda e: e.code), Success[int] | Failure[str])
    assert_type(result.flat_map(lambda v: make(v > 0)), Success[int] | Failure[QiError])
    assert_type(result.unwrap(), int)
    assert_type(result.unwrap_or(None), int | None)
    assert_type(result.match(str, lambda e: e.category), str | ErrorCategory)
    assert_type(result.inspect(print), Success[int] | Failure[QiError])
    assert_type(result.inspect_error(print), Success[int] | Failure[QiError])
    assert result.map(str) == Success("1")


def test_module_function_types() -> None:
    result = make(False)
    assert_type(map(str, result), Result[str, QiError])
    assert_type(map_error(lambda e: e.code, result), Result[int, str])
    assert_type(flat_map(lambda v: make(v > 0), result), Result[int, QiError])
    assert_type(match(str, lambda e: e.code, result), str)
    assert_type(unwrap_or("none", result), int | str)
    assert_type(sequence([result, make(True)]), Result[list[int], QiError])
    assert_type(from_try_catch(lambda: 3), Result[int, QiError])
    assert_type(from_try_catch(lambda: 3, lambda exc: str(exc)), Result[int, str])
    assert unwrap_or("none", result) == "none"


def test_results_are_covariant() -> None:
    # A Success[bool] is a Result[int, QiError]: bool is an int and Results are immutable.
    widened: Result[int, QiError] = success(True)
    wider: Result[object, object] = make(True)
    assert widened == Success(True)
    assert wider == Success(1)
