"""The streaming error codes: one table, used by every backend.

Every Failure the streaming layer produces carries one of these codes, the
category the table assigns it, and a context with at least ``operation`` and
``implementation``. Errors that come from a broker also carry ``kafka_error``
(the broker's or client's error name) and ``retriable``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final

from qi.base import ErrorCategory, QiError


class ErrorCode(StrEnum):
    """A contract error code; its value is the code string carried by QiError."""

    INVALID_CONFIG = "STREAMING_INVALID_CONFIG"
    UNKNOWN_IMPLEMENTATION = "STREAMING_UNKNOWN_IMPLEMENTATION"
    INVALID_MESSAGE = "STREAMING_INVALID_MESSAGE"
    INVALID_TOPIC = "STREAMING_INVALID_TOPIC"
    MESSAGE_TOO_LARGE = "STREAMING_MESSAGE_TOO_LARGE"
    TOPIC_ALREADY_EXISTS = "STREAMING_TOPIC_ALREADY_EXISTS"
    NOT_SUBSCRIBED = "STREAMING_NOT_SUBSCRIBED"
    INVALID_ARGUMENT = "STREAMING_INVALID_ARGUMENT"
    TOPIC_NOT_FOUND = "STREAMING_TOPIC_NOT_FOUND"
    QUEUE_FULL = "STREAMING_QUEUE_FULL"
    NOT_CONNECTED = "STREAMING_NOT_CONNECTED"
    CONNECTION_FAILED = "STREAMING_CONNECTION_FAILED"
    PRODUCE_FAILED = "STREAMING_PRODUCE_FAILED"
    BATCH_PARTIAL_FAILURE = "STREAMING_BATCH_PARTIAL_FAILURE"
    COMMIT_FAILED = "STREAMING_COMMIT_FAILED"
    TIMEOUT = "STREAMING_TIMEOUT"
    AUTHENTICATION_FAILED = "STREAMING_AUTHENTICATION_FAILED"
    AUTHORIZATION_FAILED = "STREAMING_AUTHORIZATION_FAILED"
    ADMIN_FAILED = "STREAMING_ADMIN_FAILED"
    HANDLER_FAILED = "STREAMING_HANDLER_FAILED"
    TRANSACTION_FAILED = "STREAMING_TRANSACTION_FAILED"
    PRODUCER_FENCED = "STREAMING_PRODUCER_FENCED"

    @property
    def category(self) -> ErrorCategory:
        """The category the contract assigns to this code."""
        return CATEGORY_OF[self]


CATEGORY_OF: Final[dict[ErrorCode, ErrorCategory]] = {
    ErrorCode.INVALID_CONFIG: ErrorCategory.CONFIGURATION,
    ErrorCode.UNKNOWN_IMPLEMENTATION: ErrorCategory.CONFIGURATION,
    ErrorCode.INVALID_MESSAGE: ErrorCategory.VALIDATION,
    ErrorCode.INVALID_TOPIC: ErrorCategory.VALIDATION,
    ErrorCode.MESSAGE_TOO_LARGE: ErrorCategory.VALIDATION,
    ErrorCode.TOPIC_ALREADY_EXISTS: ErrorCategory.VALIDATION,
    ErrorCode.NOT_SUBSCRIBED: ErrorCategory.VALIDATION,
    ErrorCode.INVALID_ARGUMENT: ErrorCategory.VALIDATION,
    ErrorCode.TOPIC_NOT_FOUND: ErrorCategory.RESOURCE,
    ErrorCode.QUEUE_FULL: ErrorCategory.RESOURCE,
    ErrorCode.NOT_CONNECTED: ErrorCategory.SYSTEM,
    ErrorCode.CONNECTION_FAILED: ErrorCategory.NETWORK,
    ErrorCode.PRODUCE_FAILED: ErrorCategory.NETWORK,
    ErrorCode.BATCH_PARTIAL_FAILURE: ErrorCategory.NETWORK,
    ErrorCode.COMMIT_FAILED: ErrorCategory.CONCURRENCY,
    ErrorCode.TIMEOUT: ErrorCategory.TIMEOUT,
    ErrorCode.AUTHENTICATION_FAILED: ErrorCategory.AUTHENTICATION,
    ErrorCode.AUTHORIZATION_FAILED: ErrorCategory.AUTHORIZATION,
    ErrorCode.ADMIN_FAILED: ErrorCategory.SYSTEM,
    ErrorCode.HANDLER_FAILED: ErrorCategory.BUSINESS,
    ErrorCode.TRANSACTION_FAILED: ErrorCategory.CONCURRENCY,
    ErrorCode.PRODUCER_FENCED: ErrorCategory.CONCURRENCY,
}

# What each transactional code promises in its context (contract section 9): a failed
# transaction must be aborted and may be retried; a fenced producer is done for.
TRANSACTION_CONTEXT: Final[dict[ErrorCode, dict[str, bool]]] = {
    ErrorCode.TRANSACTION_FAILED: {"abortable": True},
    ErrorCode.PRODUCER_FENCED: {"fatal": True},
}

# Values of context["delivery"] on produce failures: whether a resend could duplicate.
NOT_WRITTEN: Final = "not_written"
DELIVERY_UNKNOWN: Final = "unknown"


def streaming_error(
    code: ErrorCode,
    message: str,
    *,
    operation: str,
    implementation: str,
    **context: Any,
) -> QiError:
    """Build a QiError for ``code`` with its contract category and the required context."""
    return QiError(
        code=code.value,
        message=message,
        category=CATEGORY_OF[code],
        context={
            "operation": operation,
            "implementation": implementation,
            **TRANSACTION_CONTEXT.get(code, {}),
            **context,
        },
    )
