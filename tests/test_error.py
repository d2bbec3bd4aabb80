"""QiError, ErrorCategory, UnwrapError and the error constructors."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import pytest

from qi.base import (
    ErrorCategory,
    Failure,
    QiError,
    Success,
    UnwrapError,
    create_error,
    failure,
    from_exception,
    from_string,
)

ALL_CATEGORIES = [
    "VALIDATION",
    "NETWORK",
    "SYSTEM",
    "BUSINESS",
    "AUTHENTICATION",
    "AUTHORIZATION",
    "CONFIGURATION",
    "TIMEOUT",
    "RESOURCE",
    "CONCURRENCY",
    "LOGGER",
]


def test_error_category_members_and_values() -> None:
    assert [member.name for member in ErrorCategory] == ALL_CATEGORIES
    assert [member.value for member in ErrorCategory] == ALL_CATEGORIES
    assert ErrorCategory.NETWORK == "NETWORK"
    assert ErrorCategory("TIMEOUT") is ErrorCategory.TIMEOUT
    assert f"{ErrorCategory.LOGGER}" == "LOGGER"


def test_create_error_fields_and_str() -> None:
    error = create_error("E_CODE", "it broke", ErrorCategory.VALIDATION, {"field": "name"})
    assert error.code == "E_CODE"
    assert error.message == "it broke"
    assert error.category is ErrorCategory.VALIDATION
    assert error.context == {"field": "name"}
    assert str(error) == "[E_CODE] it broke"


def test_context_defaults_to_empty() -> None:
    assert create_error("C", "m", ErrorCategory.SYSTEM).context == {}
    assert QiError("C", "m", ErrorCategory.SYSTEM).context == {}


def test_context_is_a_read_only_copy() -> None:
    source: dict[str, Any] = {"topic": "orders"}
    error = create_error("C", "m", ErrorCategory.SYSTEM, source)
    source["topic"] = "changed"
    assert error.context["topic"] == "orders"
    with pytest.raises(TypeError):
        error.context["topic"] = "x"  # type: ignore[index]


def test_qi_error_is_frozen() -> None:
    error = from_string("m")
    with pytest.raises(dataclasses.FrozenInstanceError):
        error.code = "OTHER"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        error.context = {}  # type: ignore[misc]


def test_equality_includes_context() -> None:
    first = create_error("C", "m", ErrorCategory.NETWORK, {"a": 1})
    assert first == create_error("C", "m", ErrorCategory.NETWORK, {"a": 1})
    assert first != create_error("C", "m", ErrorCategory.NETWORK, {"a": 2})
    assert first != create_error("D", "m", ErrorCategory.NETWORK, {"a": 1})
    assert first != create_error("C", "n", ErrorCategory.NETWORK, {"a": 1})
    assert first != create_error("C", "m", ErrorCategory.SYSTEM, {"a": 1})


def test_hash_works_with_unhashable_context() -> None:
    error = create_error("C", "m", ErrorCategory.NETWORK, {"results": [1, 2], "more": {"x": 1}})
    twin = create_error("C", "m", ErrorCategory.NETWORK, {"results": [1, 2], "more": {"x": 1}})
    assert hash(error) == hash(twin)
    assert len({error, twin}) == 1
    # It can live inside a hashable Failure.
    assert hash(failure(error)) == hash(Failure(twin))


def test_repr_shows_fields_and_plain_context() -> None:
    error = create_error("C", "m", ErrorCategory.TIMEOUT, {"a": 1})
    assert repr(error) == (
        "QiError(code='C', message='m', category=ErrorCategory.TIMEOUT, context={'a': 1})"
    )


@pytest.mark.parametrize(
    ("category", "strategy"),
    [
        (ErrorCategory.NETWORK, "exponential_backoff"),
        (ErrorCategory.TIMEOUT, "exponential_backoff"),
        (ErrorCategory.SYSTEM, "linear_backoff"),
        (ErrorCategory.RESOURCE, "linear_backoff"),
        (ErrorCategory.CONCURRENCY, "linear_backoff"),
        (ErrorCategory.VALIDATION, "never"),
        (ErrorCategory.BUSINESS, "never"),
        (ErrorCategory.AUTHENTICATION, "never"),
        (ErrorCategory.AUTHORIZATION, "never"),
        (ErrorCategory.CONFIGURATION, "never"),
        (ErrorCategory.LOGGER, "never"),
    ],
)
def test_retry_strategy_by_category(category: ErrorCategory, strategy: str) -> None:
    assert create_error("C", "m", category).retry_strategy == strategy


def test_retry_strategy_table_covers_every_category() -> None:
    strategies = {create_error("C", "m", category).retry_strategy for category in ErrorCategory}
    assert strategies == {"never", "exponential_backoff", "linear_backoff"}


def test_with_context_returns_a_merged_copy() -> None:
    original = create_error("C", "m", ErrorCategory.NETWORK, {"a": 1, "b": 2})
    updated = original.with_context(b=3, c=4)
    assert updated.context == {"a": 1, "b": 3, "c": 4}
    assert original.context == {"a": 1, "b": 2}
    assert (updated.code, updated.message, updated.category) == ("C", "m", ErrorCategory.NETWORK)
    with pytest.raises(TypeError):
        updated.context["a"] = 0  # type: ignore[index]


def test_from_exception_defaults() -> None:
    error = from_exception(ValueError("bad value"))
    assert error.code == "UNKNOWN_ERROR"
    assert error.message == "bad value"
    assert error.category is ErrorCategory.SYSTEM
    assert error.context == {"exception_type": "ValueError"}


def test_from_exception_with_empty_message_uses_type_name() -> None:
    error = from_exception(KeyboardInterrupt(), ErrorCategory.BUSINESS)
    assert error.message == "KeyboardInterrupt"
    assert error.category is ErrorCategory.BUSINESS
    assert error.context["exception_type"] == "KeyboardInterrupt"


def test_from_string() -> None:
    assert from_string("oops") == QiError("UNKNOWN_ERROR", "oops", ErrorCategory.SYSTEM)
    assert from_string("late", ErrorCategory.TIMEOUT).category is ErrorCategory.TIMEOUT


def test_pickle_and_copy_round_trip() -> None:
    error = create_error("C", "m", ErrorCategory.NETWORK, {"a": [1, 2]})
    for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error), copy.deepcopy(error)):
        assert clone == error
        with pytest.raises(TypeError):
            clone.context["a"] = 0  # type: ignore[index]


def test_unwrap_error_carries_the_error() -> None:
    error = create_error("NOPE", "no value", ErrorCategory.RESOURCE)
    exc = UnwrapError(error)
    assert exc.error is error
    assert "[NOPE] no value" in str(exc)
    assert isinstance(exc, Exception)


def test_failure_unwrap_raises_unwrap_error() -> None:
    error = create_error("NOPE", "no value", ErrorCategory.RESOURCE)
    with pytest.raises(UnwrapError) as caught:
        Failure(error).unwrap()
    assert caught.value.error is error
    assert "[NOPE] no value" in str(caught.value)


def test_failure_unwrap_with_a_foreign_error_keeps_it_in_context() -> None:
    with pytest.raises(UnwrapError) as caught:
        Failure("plain text").unwrap()
    assert caught.value.error.message == "plain text"
    assert caught.value.error.context["error"] == "plain text"


def test_success_unwrap_does_not_raise() -> None:
    assert Success(5).unwrap() == 5
