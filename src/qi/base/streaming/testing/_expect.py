"""How the testing helpers turn a library Failure into a failed test."""

from __future__ import annotations

from typing import TypeVar

from qi.base import Failure, QiError, Result

T = TypeVar("T")


def expect_success(result: Result[T, QiError], doing: str) -> T:
    """The value of ``result``; raises AssertionError naming what was being done otherwise.

    The helpers are test code: a Failure of the library fails the test, as pytest expects.
    """
    if isinstance(result, Failure):
        raise AssertionError(f"{doing} failed: {result.error}")
    return result.value
