"""The aiokafka backend's error table: complete, and faithful to aiokafka's errors."""

from __future__ import annotations

import inspect
import ssl

import pytest
from aiokafka import errors as kafka

from qi.base import ErrorCategory
from qi.base.streaming._codes import DELIVERY_UNKNOWN, NOT_WRITTEN, ErrorCode
from qi.base.streaming.backends.aiokafka._errors import (
    ERROR_TABLE,
    REGISTERED,
    delivery_after,
    describe,
    entry_for,
    rejects,
    translate,
)


def _aiokafka_exception_classes() -> set[type[BaseException]]:
    """Every exception class defined in aiokafka.errors (aliases count once)."""
    return {
        value
        for _, value in inspect.getmembers(kafka, inspect.isclass)
        if issubclass(value, Exception) and value.__module__ == kafka.__name__
    }


def test_every_aiokafka_exception_class_has_its_own_entry() -> None:
    classes = _aiokafka_exception_classes()
    assert len(classes) > 90  # the walk really found aiokafka's classes, numbered ones included
    unlisted = {cls.__name__ for cls in classes if cls not in ERROR_TABLE}
    assert not unlisted, f"aiokafka exceptions missing from the table: {sorted(unlisted)}"


def test_every_numbered_broker_error_has_its_own_entry() -> None:
    for errno, cls in kafka.kafka_errors.items():
        assert cls in ERROR_TABLE, f"broker error {errno} ({cls.__name__}) has no entry"


def test_the_table_names_only_aiokafka_classes_and_the_ones_registered_with_it() -> None:
    assert set(ERROR_TABLE) <= _aiokafka_exception_classes() | set(REGISTERED)


def test_a_broker_error_aiokafka_lacks_is_known_by_its_number() -> None:
    # A keyless record on a compacted topic: without the registration aiokafka reports
    # UnknownError, and the send could not say the message was refused.
    error = translate(kafka.for_code(87)(), "send", ErrorCode.PRODUCE_FAILED, implementation="x")
    assert (error.code, error.context["kafka_error"]) == (
        "STREAMING_INVALID_MESSAGE",
        "INVALID_RECORD",
    )
    assert rejects(kafka.for_code(87)())


def test_a_new_subclass_falls_back_to_its_parent_entry() -> None:
    # Completeness is checked above; at run time an unknown subclass still reads sensibly.
    class FutureTimeout(kafka.KafkaTimeoutError):  # type: ignore[misc]
        pass

    assert entry_for(FutureTimeout()) == ERROR_TABLE[kafka.KafkaTimeoutError]


Code = ErrorCode
_TOPIC_NOT_FOUND = ErrorCode.TOPIC_NOT_FOUND
_AUTHENTICATION = Code.AUTHENTICATION_FAILED
_AUTHORIZATION = Code.AUTHORIZATION_FAILED


@pytest.mark.parametrize(
    ("exc", "code", "kafka_error", "retriable"),
    [
        (kafka.UnknownTopicOrPartitionError(), _TOPIC_NOT_FOUND, "UNKNOWN_TOPIC_OR_PARTITION", 1),
        (kafka.TopicAlreadyExistsError(), Code.TOPIC_ALREADY_EXISTS, "TOPIC_ALREADY_EXISTS", 0),
        (kafka.KafkaConnectionError("down"), Code.CONNECTION_FAILED, "KafkaConnectionError", 1),
        (kafka.KafkaTimeoutError(), Code.TIMEOUT, "KafkaTimeoutError", False),
        (kafka.RequestTimedOutError(), Code.TIMEOUT, "REQUEST_TIMED_OUT", True),
        (kafka.CommitFailedError(), Code.COMMIT_FAILED, "CommitFailedError", False),
        (kafka.RebalanceInProgressError(), Code.COMMIT_FAILED, "REBALANCE_IN_PROGRESS", False),
        (kafka.SaslAuthenticationFailed(), _AUTHENTICATION, "SASL_AUTHENTICATION_FAILED", False),
        (kafka.UnsupportedSaslMechanismError(), _AUTHENTICATION, "UNSUPPORTED_SASL_MECHANISM", 0),
        (kafka.TopicAuthorizationFailedError(), _AUTHORIZATION, "TOPIC_AUTHORIZATION_FAILED", 0),
        (kafka.MessageSizeTooLargeError(), Code.MESSAGE_TOO_LARGE, "MESSAGE_SIZE_TOO_LARGE", 0),
        (kafka.InvalidPartitionsError(), Code.INVALID_CONFIG, "INVALID_PARTITIONS", False),
        (kafka.InvalidTopicError(), Code.INVALID_TOPIC, "INVALID_TOPIC", False),
        (kafka.NotEnoughReplicasError(), Code.PRODUCE_FAILED, "NOT_ENOUGH_REPLICAS", True),
        (ssl.SSLCertVerificationError(), _AUTHENTICATION, "SSLCertVerificationError", True),
    ],
)
def test_translation_keeps_the_broker_name_and_retriable_flag(
    exc: Exception, code: ErrorCode, kafka_error: str, retriable: int
) -> None:
    error = translate(exc, "send", ErrorCode.PRODUCE_FAILED, implementation="aiokafka")
    assert error.code == code.value
    assert error.category is code.category
    assert error.context["kafka_error"] == kafka_error
    assert error.context["retriable"] is bool(retriable)
    assert error.context["operation"] == "send"
    assert error.context["implementation"] == "aiokafka"


@pytest.mark.parametrize(
    ("operation", "fallback"),
    [
        ("send", ErrorCode.PRODUCE_FAILED),
        ("create_topics", ErrorCode.ADMIN_FAILED),
        ("fetch", ErrorCode.CONNECTION_FAILED),
    ],
)
def test_operation_errors_take_the_code_of_the_operation(
    operation: str, fallback: ErrorCode
) -> None:
    for exc in (kafka.NotLeaderForPartitionError(), kafka.UnknownError(), kafka.KafkaError()):
        error = translate(exc, operation, fallback, implementation="aiokafka")
        assert error.code == fallback.value
        assert "kafka_error" in error.context


def test_exceptions_from_outside_aiokafka() -> None:
    timeout = translate(
        TimeoutError(), "commit", ErrorCode.COMMIT_FAILED, implementation="aiokafka"
    )
    assert timeout.code == ErrorCode.TIMEOUT.value
    assert timeout.category is ErrorCategory.TIMEOUT
    refused = translate(
        ConnectionRefusedError(111, "refused"), "connect", ErrorCode.CONNECTION_FAILED,
        implementation="aiokafka",
    )  # fmt: skip
    assert refused.code == ErrorCode.CONNECTION_FAILED.value
    unknown = translate(
        ValueError("odd"), "send", ErrorCode.PRODUCE_FAILED, implementation="aiokafka"
    )
    assert unknown.code == ErrorCode.PRODUCE_FAILED.value
    assert "kafka_error" not in unknown.context
    assert unknown.context["exception_type"] == "ValueError"


def test_only_definite_broker_refusals_say_not_written() -> None:
    assert rejects(kafka.MessageSizeTooLargeError())
    assert rejects(kafka.UnknownTopicOrPartitionError())
    assert rejects(kafka.TopicAuthorizationFailedError())
    # The request may have reached the log: a resend could duplicate.
    assert not rejects(kafka.RequestTimedOutError())
    assert not rejects(kafka.KafkaConnectionError())
    assert not rejects(kafka.NotEnoughReplicasAfterAppendError())
    assert not rejects(kafka.KafkaTimeoutError())


def test_a_refusal_is_certain_only_on_the_first_attempt() -> None:
    refusal = kafka.UnknownTopicOrPartitionError()
    assert delivery_after(refusal, attempts=1) == NOT_WRITTEN
    # Sent before: that attempt may have been written (its answer was lost), whatever the
    # broker said to the retry.
    assert delivery_after(refusal, attempts=2) == DELIVERY_UNKNOWN
    assert delivery_after(kafka.NotEnoughReplicasError(), attempts=3) == DELIVERY_UNKNOWN
    assert delivery_after(kafka.KafkaConnectionError(), attempts=1) == DELIVERY_UNKNOWN


def test_descriptions_are_one_line() -> None:
    text = describe(kafka.CommitFailedError())
    assert "\n" not in text
    assert text.startswith("CommitFailedError")
    assert describe(OSError("boom")) == "OSError: boom"
