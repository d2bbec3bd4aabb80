"""The confluent backend's error table: complete, and faithful to librdkafka's errors."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from qi.base import ErrorCategory
from qi.base.streaming._codes import DELIVERY_UNKNOWN, NOT_WRITTEN, ErrorCode
from qi.base.streaming.backends.confluent._errors import (
    ERROR_CODES,
    NEVER_SENT_CODES,
    NOT_WRITTEN_CODES,
    OPERATION_FALLBACK,
    RECORD_REFUSALS,
    RETRIABLE,
    kafka_error,
    reported_delivery,
    translate_exception,
)


def _kafka_error_names() -> set[str]:
    return {
        name
        for name, value in vars(KafkaError).items()
        if isinstance(value, int) and not isinstance(value, bool) and not name.startswith("__")
    }


def test_every_kafka_error_code_has_an_entry() -> None:
    names = _kafka_error_names()
    assert len(names) > 150  # the enumeration really found confluent-kafka's codes
    unlisted = names - set(ERROR_CODES) - OPERATION_FALLBACK
    assert not unlisted, f"KafkaError codes missing from the table: {sorted(unlisted)}"


def test_no_code_is_both_mapped_and_a_fallback() -> None:
    assert not set(ERROR_CODES) & OPERATION_FALLBACK


def test_the_table_names_only_real_codes() -> None:
    names = _kafka_error_names()
    for listed in (
        set(ERROR_CODES),
        OPERATION_FALLBACK,
        RETRIABLE,
        NOT_WRITTEN_CODES,
        NEVER_SENT_CODES,
    ):
        assert listed <= names, sorted(listed - names)


@pytest.mark.parametrize(
    ("code", "expected", "category"),
    [
        (KafkaError._AUTHENTICATION, ErrorCode.AUTHENTICATION_FAILED, ErrorCategory.AUTHENTICATION),
        (
            KafkaError.SASL_AUTHENTICATION_FAILED,
            ErrorCode.AUTHENTICATION_FAILED,
            ErrorCategory.AUTHENTICATION,
        ),
        (
            KafkaError.TOPIC_AUTHORIZATION_FAILED,
            ErrorCode.AUTHORIZATION_FAILED,
            ErrorCategory.AUTHORIZATION,
        ),
        (
            KafkaError.GROUP_AUTHORIZATION_FAILED,
            ErrorCode.AUTHORIZATION_FAILED,
            ErrorCategory.AUTHORIZATION,
        ),
        (KafkaError.UNKNOWN_TOPIC_OR_PART, ErrorCode.TOPIC_NOT_FOUND, ErrorCategory.RESOURCE),
        (KafkaError.TOPIC_ALREADY_EXISTS, ErrorCode.TOPIC_ALREADY_EXISTS, ErrorCategory.VALIDATION),
        (KafkaError._MSG_TIMED_OUT, ErrorCode.TIMEOUT, ErrorCategory.TIMEOUT),
        (KafkaError._TRANSPORT, ErrorCode.CONNECTION_FAILED, ErrorCategory.NETWORK),
        (KafkaError._QUEUE_FULL, ErrorCode.QUEUE_FULL, ErrorCategory.RESOURCE),
        (KafkaError.MSG_SIZE_TOO_LARGE, ErrorCode.MESSAGE_TOO_LARGE, ErrorCategory.VALIDATION),
        (KafkaError._UNKNOWN_PARTITION, ErrorCode.INVALID_MESSAGE, ErrorCategory.VALIDATION),
        (KafkaError.ILLEGAL_GENERATION, ErrorCode.COMMIT_FAILED, ErrorCategory.CONCURRENCY),
    ],
)
def test_codes_map_to_their_contract_code_and_category(
    code: int, expected: ErrorCode, category: ErrorCategory
) -> None:
    error = kafka_error(KafkaError(code), "send", ErrorCode.PRODUCE_FAILED)
    assert error.code == expected.value
    assert error.category is category
    assert error.context["operation"] == "send"
    assert error.context["implementation"] == "confluent"


def test_context_keeps_the_librdkafka_name_and_retriable_flag() -> None:
    error = kafka_error(
        KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART), "send", ErrorCode.PRODUCE_FAILED
    )
    assert error.context["kafka_error"] == "UNKNOWN_TOPIC_OR_PART"
    assert error.context["retriable"] is False
    flagged = kafka_error(
        KafkaError(KafkaError.INVALID_MSG, retriable=True), "send", ErrorCode.PRODUCE_FAILED
    )
    assert flagged.context["retriable"] is True  # librdkafka's own flag wins
    transient = kafka_error(KafkaError(KafkaError._TRANSPORT), "send", ErrorCode.PRODUCE_FAILED)
    assert transient.context["retriable"] is True


def test_unspecific_codes_take_the_operation_fallback() -> None:
    for operation, fallback in (
        ("send", ErrorCode.PRODUCE_FAILED),
        ("create_topics", ErrorCode.ADMIN_FAILED),
        ("commit_offsets", ErrorCode.COMMIT_FAILED),
    ):
        error = kafka_error(KafkaError(KafkaError._STATE), operation, fallback)
        assert error.code == fallback.value
        assert error.context["kafka_error"] == "_STATE"


def test_connecting_reports_a_connection_failure_unless_it_is_about_identity() -> None:
    timed_out = kafka_error(
        KafkaError(KafkaError._TIMED_OUT), "connect", ErrorCode.CONNECTION_FAILED
    )
    assert timed_out.code == ErrorCode.CONNECTION_FAILED.value
    refused = kafka_error(
        KafkaError(KafkaError._AUTHENTICATION), "connect", ErrorCode.CONNECTION_FAILED
    )
    assert refused.code == ErrorCode.AUTHENTICATION_FAILED.value


def test_produce_failures_say_whether_the_message_may_be_written() -> None:
    def once(code: int) -> str:
        return reported_delivery(KafkaError(code), retries=False, idempotent=False)

    def retried(code: int) -> str:
        return reported_delivery(KafkaError(code), retries=True, idempotent=False)

    def idempotent(code: int) -> str:
        return reported_delivery(KafkaError(code), retries=True, idempotent=True)

    # Sent at most once: a refusal or a purge from the queue means never written.
    assert once(KafkaError._UNKNOWN_PARTITION) == NOT_WRITTEN
    assert once(KafkaError.UNKNOWN_TOPIC_OR_PART) == NOT_WRITTEN
    assert once(KafkaError._PURGE_QUEUE) == NOT_WRITTEN
    assert once(KafkaError._MSG_TIMED_OUT) == DELIVERY_UNKNOWN
    assert once(KafkaError._PURGE_INFLIGHT) == DELIVERY_UNKNOWN
    assert once(KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND) == DELIVERY_UNKNOWN
    # Retried: an earlier attempt whose answer was lost may have been written, whatever
    # happened to the retry (refused, purged, its topic or partition gone).
    assert retried(KafkaError.UNKNOWN_TOPIC_OR_PART) == DELIVERY_UNKNOWN
    assert retried(KafkaError._PURGE_QUEUE) == DELIVERY_UNKNOWN
    assert retried(KafkaError._UNKNOWN_PARTITION) == DELIVERY_UNKNOWN
    assert retried(KafkaError.MSG_SIZE_TOO_LARGE) == DELIVERY_UNKNOWN
    assert retried(KafkaError._VALUE_SERIALIZATION) == NOT_WRITTEN
    # The idempotent producer retries a batch byte for byte: a refusal of its bytes was
    # the answer to every attempt; anything else stays as uncertain as above.
    assert idempotent(KafkaError.MSG_SIZE_TOO_LARGE) == NOT_WRITTEN
    assert idempotent(KafkaError.INVALID_RECORD) == NOT_WRITTEN
    assert idempotent(KafkaError.UNKNOWN_TOPIC_OR_PART) == DELIVERY_UNKNOWN
    assert idempotent(KafkaError._PURGE_QUEUE) == DELIVERY_UNKNOWN
    # Every certainty with retries is one without them.
    assert NEVER_SENT_CODES | RECORD_REFUSALS <= NOT_WRITTEN_CODES


def test_exceptions_are_translated() -> None:
    raised = translate_exception(
        KafkaException(KafkaError(KafkaError._TIMED_OUT)), "list_topics", ErrorCode.ADMIN_FAILED
    )
    assert raised.code == ErrorCode.TIMEOUT.value
    assert raised.context["kafka_error"] == "_TIMED_OUT"
    full = translate_exception(BufferError("queue full"), "send", ErrorCode.PRODUCE_FAILED)
    assert full.code == ErrorCode.QUEUE_FULL.value
    other = translate_exception(ValueError("odd"), "send", ErrorCode.PRODUCE_FAILED)
    assert other.code == ErrorCode.PRODUCE_FAILED.value
    assert other.context["exception_type"] == "ValueError"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("PRODUCER_FENCED", ErrorCode.PRODUCER_FENCED),
        ("_FENCED", ErrorCode.PRODUCER_FENCED),
        ("TRANSACTION_COORDINATOR_FENCED", ErrorCode.PRODUCER_FENCED),
        ("INVALID_TXN_STATE", ErrorCode.TRANSACTION_FAILED),
        ("CONCURRENT_TRANSACTIONS", ErrorCode.TRANSACTION_FAILED),
        ("TRANSACTION_ABORTABLE", ErrorCode.TRANSACTION_FAILED),
    ],
)
def test_transactional_codes_by_name(name: str, expected: ErrorCode) -> None:
    error = kafka_error(
        KafkaError(getattr(KafkaError, name)), "transaction.commit", ErrorCode.TRANSACTION_FAILED
    )
    assert error.code == expected.value
    assert error.category == ErrorCategory.CONCURRENCY
    if expected is ErrorCode.PRODUCER_FENCED:
        assert error.context["fatal"] is True
    else:
        assert error.context["abortable"] is True


def test_an_error_that_requires_an_abort_is_a_failed_transaction_whatever_its_code() -> None:
    native = KafkaError(KafkaError.INVALID_PRODUCER_EPOCH, "bumped", txn_requires_abort=True)
    error = translate_exception(
        KafkaException(native), "transaction.send_offsets", ErrorCode.TRANSACTION_FAILED
    )
    assert error.code == ErrorCode.TRANSACTION_FAILED.value
    assert error.context["abortable"] is True
    assert error.context["kafka_error"] == "INVALID_PRODUCER_EPOCH"


def test_a_fatal_error_of_a_transaction_fences_the_producer() -> None:
    native = KafkaError(KafkaError.INVALID_PRODUCER_EPOCH, "epoch gone", fatal=True)
    error = kafka_error(native, "transaction.commit", ErrorCode.TRANSACTION_FAILED)
    assert error.code == ErrorCode.PRODUCER_FENCED.value
    assert error.context["fatal"] is True
    # Outside a transaction the same error keeps its own code: the producer is idempotent.
    plain = kafka_error(native, "send", ErrorCode.PRODUCE_FAILED)
    assert plain.code == ErrorCode.PRODUCE_FAILED.value
