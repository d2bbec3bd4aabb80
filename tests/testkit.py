"""Helpers every test suite here shares: Result checks, polling, collecting, unique names.

What users of the library get for their own tests lives in ``qi.base.streaming.testing``
(the pytest plugin); the suites use it where it fits. These are the helpers the
library's own suites need besides, written once so that each has one signature.
"""

from __future__ import annotations

from typing import TypeVar

from qi.base import QiError, Result, Success

T = TypeVar("T")


def ok(result: Result[T, QiError]) -> T:
    """The value of a Success; fails the test with the error otherwise."""
    assert isinstance(result, Success), f"expected a Success, got {result!r}"
    return result.value
