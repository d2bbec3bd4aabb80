"""QiError: the one error value every qi-base operation reports.

Errors are data, not exceptions: a ``QiError`` travels inside a ``Failure`` and
is inspected, logged or retried by the caller. ``UnwrapError`` is the single
exception of the Result core, raised only by ``Failure.unwrap()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

__all__ = [
    "ErrorCategory",
    "QiError",
    "RetryStrategy",
    "UnwrapError",
    "create_error",
    "from_exception",
    "from_string",
]

RetryStrategy: TypeAlias = Literal["never", "exponential_backoff", "linear_backoff"]


class ErrorCategory(StrEnum):
    """The kind of failure, which decides whether and how a caller should retry."""

    VALIDATION = "VALIDATION"
    NETWORK = "NETWORK"
    SYSTEM = "SYSTEM"
    BUSINESS = "BUSINESS"
    AUTHENTICATION = "AUTHENTICATION"
    AUTHORIZATION = "AUTHORIZATION"
    CONFIGURATION = "CONFIGURATION"
    TIMEOUT = "TIMEOUT"
    RESOURCE = "RESOURCE"
    CONCURRENCY = "CONCURRENCY"
    LOGGER = "LOGGER"


# The same table as @qi/base: transient transport trouble backs off exponentially,
# local contention backs off linearly, and a retry cannot fix anything else.
_RETRY_STRATEGIES: Mapping[ErrorCategory, RetryStrategy] = MappingProxyType(
    {
        ErrorCategory.NETWORK: "exponential_backoff",
        ErrorCategory.TIMEOUT: "exponential_backoff",
        ErrorCategory.SYSTEM: "linear_backoff",
        ErrorCategory.RESOURCE: "linear_backoff",
        ErrorCategory.CONCURRENCY: "linear_backoff",
    }
)


def _empty_context() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, repr=False)
class QiError:
    """An immutable description of what went wrong: a code, a message, a category and context."""

    code: str
    """A stable, machine-readable identifier such as ``STREAMING_TIMEOUT``."""
    message: str
    """A human-readable explanation."""
    category: ErrorCategory
    """The kind of failure; decides `retry_strategy`."""
    # Left out of the hash so that an error whose context holds unhashable values
    # (lists, dicts, results) can still live inside a hashable Success or Failure.
    context: Mapping[str, Any] = field(default_factory=_empty_context, hash=False)
    """Extra details (operation, topic, native error, ...); a read-only mapping."""

    def __post_init__(self) -> None:
        # Copy, then freeze: neither the caller's dict nor this error can change later.
        object.__setattr__(self, "context", MappingProxyType(dict(self.context)))

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"

    def __repr__(self) -> str:
        category = self.category
        shown = (
            f"ErrorCategory.{category.name}"
            if isinstance(category, ErrorCategory)
            else repr(category)
        )
        return (
            f"QiError(code={self.code!r}, message={self.message!r}, "
            f"category={shown}, context={dict(self.context)!r})"
        )

    def __reduce__(self) -> tuple[type[QiError], tuple[str, str, ErrorCategory, dict[str, Any]]]:
        # mappingproxy cannot be pickled; rebuild from a plain dict instead.
        return (QiError, (self.code, self.message, self.category, dict(self.context)))

    @property
    def retry_strategy(self) -> RetryStrategy:
        """How a caller should retry this error, decided by its category.

        | category                                       | retry strategy          |
        |------------------------------------------------|-------------------------|
        | NETWORK, TIMEOUT                               | `"exponential_backoff"` |
        | SYSTEM, RESOURCE, CONCURRENCY                  | `"linear_backoff"`      |
        | VALIDATION, BUSINESS, AUTHENTICATION,          | `"never"`               |
        | AUTHORIZATION, CONFIGURATION, LOGGER           | `"never"`               |
        """
        return _RETRY_STRATEGIES.get(self.category, "never")

    def with_context(self, **more: Any) -> QiError:
        """Return a copy whose context is this context updated with `more`."""
        return replace(self, context={**self.context, **more})


class UnwrapError(Exception):
    """Raised by ``Failure.unwrap()``; carries the failure's error in `error`."""

    error: QiError

    def __init__(self, error: QiError) -> None:
        super().__init__(f"called unwrap() on a Failure: {error}")
        self.error = error


def create_error(
    code: str,
    message: str,
    category: ErrorCategory,
    context: Mapping[str, Any] | None = None,
) -> QiError:
    """Build a QiError, with an empty context unless one is given."""
    return QiError(code, message, category, {} if context is None else context)


def from_exception(exc: BaseException, category: ErrorCategory = ErrorCategory.SYSTEM) -> QiError:
    """Turn an exception into an ``UNKNOWN_ERROR`` QiError that names the exception type."""
    exception_type = type(exc).__name__
    return QiError(
        "UNKNOWN_ERROR",
        str(exc) or exception_type,
        category,
        {"exception_type": exception_type},
    )


def from_string(message: str, category: ErrorCategory = ErrorCategory.SYSTEM) -> QiError:
    """Turn a plain message into an ``UNKNOWN_ERROR`` QiError."""
    return QiError("UNKNOWN_ERROR", message, category)
