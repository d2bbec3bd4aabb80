"""The memory broker's error names and the one table that turns them into QiErrors.

The broker answers with Kafka's own error names (and librdkafka's local
``_``-prefixed ones where Kafka has none), so a failure reads the same as it
would from a real cluster: ``context["kafka_error"]`` is the name and
``context["retriable"]`` says whether trying again can help.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Final

from qi.base import QiError
from qi.base.streaming import ErrorCode, ProduceResult, StreamingConfig
from qi.base.streaming.backend import streaming_error, unexpected_error

IMPLEMENTATION: Final = "memory"


class BrokerError(StrEnum):
    """An error the memory broker can answer with; the value is its Kafka name."""

    UNKNOWN_TOPIC_OR_PART = "UNKNOWN_TOPIC_OR_PART"
    """The topic does not exist."""
    UNKNOWN_PARTITION = "_UNKNOWN_PARTITION"
    """The topic exists but has no such partition (librdkafka's local name)."""
    TOPIC_ALREADY_EXISTS = "TOPIC_ALREADY_EXISTS"
    """create_topics named an existing topic."""
    TRANSPORT = "_TRANSPORT"
    """The broker is unreachable (``MemoryBroker.set_unreachable``)."""
    REQUEST_TIMED_OUT = "REQUEST_TIMED_OUT"
    """The broker did not answer within ``request_timeout``."""
    ILLEGAL_GENERATION = "ILLEGAL_GENERATION"
    """A commit named a partition the member no longer owns."""
    INJECTED_FAULT = "INJECTED_FAULT"
    """A failure scheduled through a fault-injection hook (which may choose the code)."""
    INVALID_PARTITIONS = "INVALID_PARTITIONS"
    """More partitions than the in-process broker keeps for one topic."""
    INVALID_REPLICATION_FACTOR = "INVALID_REPLICATION_FACTOR"
    """More replicas than brokers: the memory broker is one broker."""
    INVALID_CONFIG = "INVALID_CONFIG"
    """A topic config Kafka does not know, or a value it refuses."""
    MSG_SIZE_TOO_LARGE = "MSG_SIZE_TOO_LARGE"
    """A record batch over the topic's ``max.message.bytes`` (or the broker's limit)."""
    INVALID_RECORD = "INVALID_RECORD"
    """A record the broker's validation refuses: no key on a compacted topic."""
    PRODUCER_FENCED = "PRODUCER_FENCED"
    """Another producer initialised the same transactional id, or the coordinator aborted
    this producer's transaction after ``transaction_timeout`` and bumped its epoch."""
    INVALID_TXN_STATE = "INVALID_TXN_STATE"
    """A transactional request out of order (no transaction open, or one still open)."""
    UNKNOWN_MEMBER_ID = "UNKNOWN_MEMBER_ID"
    """Offsets sent in a transaction name a member that is no longer in its group."""
    TRANSACTION_ABORTABLE = "TRANSACTION_ABORTABLE"
    """The transaction cannot commit: a message of it was not written. Abort it."""
    INVALID_TRANSACTION_TIMEOUT = "INVALID_TRANSACTION_TIMEOUT"
    """A transaction_timeout above the broker's ``transaction.max.timeout.ms``."""


# BrokerError -> (contract code, retriable). Every member must have an entry (a test checks).
ERROR_TABLE: Final[dict[BrokerError, tuple[ErrorCode, bool]]] = {
    BrokerError.UNKNOWN_TOPIC_OR_PART: (ErrorCode.TOPIC_NOT_FOUND, False),
    BrokerError.UNKNOWN_PARTITION: (ErrorCode.INVALID_MESSAGE, False),
    BrokerError.TOPIC_ALREADY_EXISTS: (ErrorCode.TOPIC_ALREADY_EXISTS, False),
    BrokerError.TRANSPORT: (ErrorCode.CONNECTION_FAILED, True),
    BrokerError.REQUEST_TIMED_OUT: (ErrorCode.TIMEOUT, True),
    BrokerError.ILLEGAL_GENERATION: (ErrorCode.COMMIT_FAILED, False),
    BrokerError.INJECTED_FAULT: (ErrorCode.PRODUCE_FAILED, True),
    BrokerError.INVALID_PARTITIONS: (ErrorCode.INVALID_CONFIG, False),
    BrokerError.INVALID_REPLICATION_FACTOR: (ErrorCode.INVALID_CONFIG, False),
    BrokerError.INVALID_CONFIG: (ErrorCode.INVALID_CONFIG, False),
    BrokerError.MSG_SIZE_TOO_LARGE: (ErrorCode.MESSAGE_TOO_LARGE, False),
    BrokerError.INVALID_RECORD: (ErrorCode.INVALID_MESSAGE, False),
    BrokerError.PRODUCER_FENCED: (ErrorCode.PRODUCER_FENCED, False),
    BrokerError.INVALID_TXN_STATE: (ErrorCode.TRANSACTION_FAILED, False),
    BrokerError.UNKNOWN_MEMBER_ID: (ErrorCode.TRANSACTION_FAILED, False),
    BrokerError.TRANSACTION_ABORTABLE: (ErrorCode.TRANSACTION_FAILED, False),
    BrokerError.INVALID_TRANSACTION_TIMEOUT: (ErrorCode.INVALID_CONFIG, False),
}


class MemoryBrokerError(Exception):
    """The memory broker's native error: raised by its requests, or returned as the outcome
    of a message it refused. Turned into a QiError only by :func:`translate` (the table)."""

    def __init__(
        self, error: BrokerError, message: str, code: ErrorCode | None = None, **context: Any
    ) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.code = code
        """The contract code when not the table's (set by fault-injection hooks)."""
        self.context = context
        """What the QiError's context says besides the table's (topic, partition, delivery;
        ``retriable`` when a fault-injection hook chose it)."""


def broker_error(
    error: BrokerError,
    message: str,
    operation: str,
    *,
    code: ErrorCode | None = None,
    **context: Any,
) -> QiError:
    """The QiError for a broker answer: the table's code (unless ``code``), name and retriable
    (unless ``context`` says)."""
    mapped, retriable = ERROR_TABLE[error]
    return streaming_error(
        mapped if code is None else code,
        message,
        operation=operation,
        implementation=IMPLEMENTATION,
        **{"kafka_error": error.value, "retriable": retriable, **context},
    )


def translate(exc: BaseException, operation: str, fallback: ErrorCode) -> QiError:
    """Any exception escaping the memory backend as a QiError: broker errors by the table."""
    if isinstance(exc, MemoryBrokerError):
        return broker_error(exc.error, exc.message, operation, code=exc.code, **exc.context)
    return unexpected_error(exc, operation, fallback, IMPLEMENTATION)


def produce_outcomes(
    outcomes: Sequence[ProduceResult | MemoryBrokerError], operation: str
) -> list[ProduceResult | QiError]:
    """A produce call's outcomes with each message the broker refused as its QiError."""
    return [
        translate(outcome, operation, ErrorCode.PRODUCE_FAILED)
        if isinstance(outcome, MemoryBrokerError)
        else outcome
        for outcome in outcomes
    ]


def unreachable(config: StreamingConfig, operation: str, **context: Any) -> QiError:
    """The error of a request to a broker made unreachable by ``set_unreachable``."""
    timeout = config.connection_timeout if operation == "connect" else config.request_timeout
    return broker_error(
        BrokerError.TRANSPORT,
        f"no broker of {', '.join(config.brokers)} answered within {timeout:.1f}s",
        operation,
        **context,
    )
