"""The one translation table from librdkafka errors to contract error codes.

Every ``confluent_kafka.KafkaError`` code is listed, by name: either in
``ERROR_CODES`` with the contract code it becomes, or in ``OPERATION_FALLBACK``,
the codes that say nothing more precise than "this operation failed" and so take
the failing operation's own fallback code (STREAMING_PRODUCE_FAILED for a send,
STREAMING_ADMIN_FAILED for an admin call, ...). A test fails when confluent-kafka
grows a code that is in neither.
"""

from __future__ import annotations

from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException

from qi.base import QiError
from qi.base.streaming import ErrorCode
from qi.base.streaming.backend import (
    DELIVERY_UNKNOWN,
    NOT_WRITTEN,
    streaming_error,
    unexpected_error,
)

IMPLEMENTATION: Final = "confluent"


def _codes(code: ErrorCode, names: str) -> dict[str, ErrorCode]:
    return dict.fromkeys(names.split(), code)


ERROR_CODES: Final[dict[str, ErrorCode]] = {
    **_codes(
        ErrorCode.CONNECTION_FAILED,
        "_TRANSPORT _FAIL _RESOLVE _ALL_BROKERS_DOWN _SSL _DESTROY _DESTROY_BROKER "
        "_UNKNOWN_BROKER _NODE_UPDATE _UNKNOWN_PROTOCOL BROKER_NOT_AVAILABLE NETWORK_EXCEPTION "
        "LISTENER_NOT_FOUND REBOOTSTRAP_REQUIRED",
    ),
    **_codes(
        ErrorCode.TIMEOUT,
        "_TIMED_OUT _MSG_TIMED_OUT _TIMED_OUT_QUEUE REQUEST_TIMED_OUT",
    ),
    **_codes(
        ErrorCode.AUTHENTICATION_FAILED,
        "_AUTHENTICATION SASL_AUTHENTICATION_FAILED UNSUPPORTED_SASL_MECHANISM "
        "ILLEGAL_SASL_STATE UNACCEPTABLE_CREDENTIAL PRINCIPAL_DESERIALIZATION_FAILURE "
        "SECURITY_DISABLED DELEGATION_TOKEN_AUTH_DISABLED DELEGATION_TOKEN_NOT_FOUND "
        "DELEGATION_TOKEN_OWNER_MISMATCH DELEGATION_TOKEN_REQUEST_NOT_ALLOWED "
        "DELEGATION_TOKEN_EXPIRED INVALID_PRINCIPAL_TYPE",
    ),
    **_codes(
        ErrorCode.AUTHORIZATION_FAILED,
        "TOPIC_AUTHORIZATION_FAILED GROUP_AUTHORIZATION_FAILED CLUSTER_AUTHORIZATION_FAILED "
        "TRANSACTIONAL_ID_AUTHORIZATION_FAILED DELEGATION_TOKEN_AUTHORIZATION_FAILED",
    ),
    **_codes(
        ErrorCode.TOPIC_NOT_FOUND,
        "UNKNOWN_TOPIC_OR_PART _UNKNOWN_TOPIC UNKNOWN_TOPIC_ID INCONSISTENT_TOPIC_ID",
    ),
    **_codes(ErrorCode.TOPIC_ALREADY_EXISTS, "TOPIC_ALREADY_EXISTS"),
    **_codes(ErrorCode.INVALID_TOPIC, "TOPIC_EXCEPTION"),
    **_codes(
        ErrorCode.MESSAGE_TOO_LARGE,
        "MSG_SIZE_TOO_LARGE INVALID_MSG_SIZE RECORD_LIST_TOO_LARGE",
    ),
    **_codes(
        ErrorCode.INVALID_MESSAGE,
        "_UNKNOWN_PARTITION _BAD_MSG INVALID_MSG INVALID_RECORD INVALID_TIMESTAMP "
        "_INVALID_DIFFERENT_RECORD _KEY_SERIALIZATION _VALUE_SERIALIZATION "
        "_KEY_DESERIALIZATION _VALUE_DESERIALIZATION UNSUPPORTED_FOR_MESSAGE_FORMAT",
    ),
    **_codes(ErrorCode.QUEUE_FULL, "_QUEUE_FULL"),
    **_codes(
        ErrorCode.INVALID_CONFIG,
        "_INVALID_ARG _NOT_CONFIGURED INVALID_CONFIG INVALID_PARTITIONS "
        "INVALID_REPLICATION_FACTOR INVALID_REPLICA_ASSIGNMENT INVALID_REQUIRED_ACKS "
        "INVALID_SESSION_TIMEOUT INVALID_GROUP_ID INVALID_TRANSACTION_TIMEOUT "
        "UNSUPPORTED_COMPRESSION_TYPE POLICY_VIOLATION INVALID_REGULAR_EXPRESSION",
    ),
    # Group membership and offset storage: what makes a commit fail.
    **_codes(
        ErrorCode.COMMIT_FAILED,
        "ILLEGAL_GENERATION UNKNOWN_MEMBER_ID REBALANCE_IN_PROGRESS OFFSET_METADATA_TOO_LARGE "
        "INVALID_COMMIT_OFFSET_SIZE UNSTABLE_OFFSET_COMMIT FENCED_INSTANCE_ID "
        "STALE_MEMBER_EPOCH FENCED_MEMBER_EPOCH UNRELEASED_INSTANCE_ID MEMBER_ID_REQUIRED "
        "GROUP_MAX_SIZE_REACHED INCONSISTENT_GROUP_PROTOCOL UNSUPPORTED_ASSIGNOR "
        "COORDINATOR_LOAD_IN_PROGRESS COORDINATOR_NOT_AVAILABLE NOT_COORDINATOR "
        "GROUP_ID_NOT_FOUND NON_EMPTY_GROUP GROUP_SUBSCRIBED_TO_TOPIC "
        "_WAIT_COORD _UNKNOWN_GROUP _NO_OFFSET _ASSIGNMENT_LOST _MAX_POLL_EXCEEDED "
        "_ASSIGN_PARTITIONS _REVOKE_PARTITIONS",
    ),
    # Errors only a write can meet: leadership, replication, idempotence. The producer-id
    # ones are a transaction's to report when librdkafka flags them (see kafka_error).
    **_codes(
        ErrorCode.PRODUCE_FAILED,
        "LEADER_NOT_AVAILABLE NOT_LEADER_FOR_PARTITION REPLICA_NOT_AVAILABLE "
        "NOT_ENOUGH_REPLICAS NOT_ENOUGH_REPLICAS_AFTER_APPEND _ISR_INSUFF "
        "OUT_OF_ORDER_SEQUENCE_NUMBER DUPLICATE_SEQUENCE_NUMBER INVALID_PRODUCER_EPOCH "
        "INVALID_PRODUCER_ID_MAPPING UNKNOWN_PRODUCER_ID "
        "_GAPLESS_GUARANTEE _PURGE_QUEUE _PURGE_INFLIGHT _BAD_COMPRESSION "
        "KAFKA_STORAGE_ERROR FENCED_LEADER_EPOCH UNKNOWN_LEADER_EPOCH",
    ),
    # A transaction that must be aborted (and may be retried).
    **_codes(
        ErrorCode.TRANSACTION_FAILED,
        "INVALID_TXN_STATE CONCURRENT_TRANSACTIONS TRANSACTION_ABORTABLE",
    ),
    # Another producer took the transactional id over, or the coordinator fenced this one.
    **_codes(
        ErrorCode.PRODUCER_FENCED,
        "PRODUCER_FENCED _FENCED TRANSACTION_COORDINATOR_FENCED",
    ),
}
"""Codes with a precise contract meaning, by ``KafkaError`` name."""

OPERATION_FALLBACK: Final[frozenset[str]] = frozenset(
    (
        "UNKNOWN NO_ERROR _FATAL _CRIT_SYS_RESOURCE _FS _STATE _CONFLICT _IN_PROGRESS "
        "_PREV_IN_PROGRESS _EXISTING_SUBSCRIPTION _INCONSISTENT _OUTDATED _INTR _PARTIAL "
        "_READ_ONLY _NOENT _UNDERFLOW _INVALID_TYPE _RETRY _NOOP _APPLICATION "
        "_NOT_IMPLEMENTED _UNSUPPORTED_FEATURE _WAIT_CACHE _PARTITION_EOF _AUTO_OFFSET_RESET "
        "_LOG_TRUNCATION OFFSET_OUT_OF_RANGE OFFSET_NOT_AVAILABLE UNSUPPORTED_VERSION "
        "INVALID_REQUEST OPERATION_NOT_ATTEMPTED THROTTLING_QUOTA_EXCEEDED NOT_CONTROLLER "
        "STALE_CTRL_EPOCH STALE_BROKER_EPOCH TOPIC_DELETION_DISABLED REASSIGNMENT_IN_PROGRESS "
        "NO_REASSIGNMENT_IN_PROGRESS PREFERRED_LEADER_NOT_AVAILABLE "
        "ELIGIBLE_LEADERS_NOT_AVAILABLE ELECTION_NOT_NEEDED LOG_DIR_NOT_FOUND "
        "RESOURCE_NOT_FOUND DUPLICATE_RESOURCE INCONSISTENT_VOTER_SET INVALID_UPDATE_VERSION "
        "FEATURE_UPDATE_FAILED INVALID_REGISTRATION UNKNOWN_CONTROLLER_ID "
        "FETCH_SESSION_ID_NOT_FOUND INVALID_FETCH_SESSION_EPOCH MISMATCHED_ENDPOINT_TYPE "
        "UNSUPPORTED_ENDPOINT_TYPE UNKNOWN_SUBSCRIPTION_ID TELEMETRY_TOO_LARGE "
        "INVALID_RECORD_STATE SHARE_SESSION_NOT_FOUND INVALID_SHARE_SESSION_EPOCH "
        "FENCED_STATE_EPOCH INVALID_VOTER_KEY DUPLICATE_VOTER VOTER_NOT_FOUND "
        "SHARE_SESSION_LIMIT_REACHED STREAMS_INVALID_TOPOLOGY STREAMS_INVALID_TOPOLOGY_EPOCH "
        "STREAMS_TOPOLOGY_FENCED"
    ).split()
)
"""Codes that take the failing operation's fallback code."""

RETRIABLE: Final[frozenset[str]] = frozenset(
    (
        "_TRANSPORT _FAIL _RESOLVE _ALL_BROKERS_DOWN _TIMED_OUT _MSG_TIMED_OUT _TIMED_OUT_QUEUE "
        "_QUEUE_FULL _WAIT_COORD _RETRY _NODE_UPDATE REQUEST_TIMED_OUT BROKER_NOT_AVAILABLE "
        "NETWORK_EXCEPTION LEADER_NOT_AVAILABLE NOT_LEADER_FOR_PARTITION REPLICA_NOT_AVAILABLE "
        "NOT_ENOUGH_REPLICAS NOT_ENOUGH_REPLICAS_AFTER_APPEND COORDINATOR_LOAD_IN_PROGRESS "
        "COORDINATOR_NOT_AVAILABLE NOT_COORDINATOR REBALANCE_IN_PROGRESS KAFKA_STORAGE_ERROR "
        "FENCED_LEADER_EPOCH UNKNOWN_LEADER_EPOCH OFFSET_NOT_AVAILABLE "
        "THROTTLING_QUOTA_EXCEEDED UNSTABLE_OFFSET_COMMIT NOT_CONTROLLER "
        "PREFERRED_LEADER_NOT_AVAILABLE ELIGIBLE_LEADERS_NOT_AVAILABLE"
    ).split()
)
"""Transient by nature; librdkafka's own flag is set only on some error instances."""

NOT_WRITTEN_CODES: Final[frozenset[str]] = frozenset(
    (
        "_UNKNOWN_PARTITION _UNKNOWN_TOPIC UNKNOWN_TOPIC_OR_PART UNKNOWN_TOPIC_ID TOPIC_EXCEPTION "
        "MSG_SIZE_TOO_LARGE INVALID_MSG_SIZE RECORD_LIST_TOO_LARGE _QUEUE_FULL _PURGE_QUEUE "
        "INVALID_MSG INVALID_RECORD INVALID_TIMESTAMP _INVALID_DIFFERENT_RECORD _BAD_MSG "
        "_KEY_SERIALIZATION _VALUE_SERIALIZATION _INVALID_ARG INVALID_REQUIRED_ACKS "
        "UNSUPPORTED_FOR_MESSAGE_FORMAT UNSUPPORTED_COMPRESSION_TYPE POLICY_VIOLATION "
        "TOPIC_AUTHORIZATION_FAILED CLUSTER_AUTHORIZATION_FAILED "
        "TRANSACTIONAL_ID_AUTHORIZATION_FAILED _AUTHENTICATION SASL_AUTHENTICATION_FAILED"
    ).split()
)
"""Produce failures after which the message is certainly not in the log, when librdkafka
sent it at most once (see ``reported_delivery``)."""

NEVER_SENT_CODES: Final[frozenset[str]] = frozenset(
    (
        "_INVALID_ARG _BAD_MSG _KEY_SERIALIZATION _VALUE_SERIALIZATION "
        "_INVALID_DIFFERENT_RECORD _QUEUE_FULL"
    ).split()
)
"""Delivery-report errors librdkafka gives only to a message it never sent."""

RECORD_REFUSALS: Final[frozenset[str]] = frozenset(
    (
        "MSG_SIZE_TOO_LARGE INVALID_MSG_SIZE RECORD_LIST_TOO_LARGE INVALID_MSG INVALID_RECORD "
        "INVALID_TIMESTAMP UNSUPPORTED_FOR_MESSAGE_FORMAT"
    ).split()
)
"""A broker's refusal of a record batch for what its bytes are (size, a keyless record on
a compacted topic, a timestamp): the same bytes are refused on every attempt."""

FENCING: Final[frozenset[str]] = frozenset(
    "PRODUCER_FENCED _FENCED TRANSACTION_COORDINATOR_FENCED INVALID_PRODUCER_EPOCH".split()
)
"""What a transactional producer's delivery reports say once it was fenced: librdkafka
raises the fencing itself as a fatal error from poll(), while each message's report
carries the broker's answer (INVALID_PRODUCER_EPOCH: the id's epoch moved on)."""

# Contract codes a connect attempt reports as such; anything else means "no broker answered".
_CONNECT_KEEPS: Final = frozenset(
    {ErrorCode.AUTHENTICATION_FAILED, ErrorCode.AUTHORIZATION_FAILED, ErrorCode.INVALID_CONFIG}
)


def error_name(error: KafkaError) -> str:
    """The librdkafka name of an error code, e.g. ``UNKNOWN_TOPIC_OR_PART``."""
    try:
        return str(error.name())
    except Exception:  # a code newer than the bundled librdkafka has no name
        return f"ERROR_{error.code()}"


def contract_code(name: str, fallback: ErrorCode) -> ErrorCode:
    """The contract code for a librdkafka error name; ``fallback`` for the unspecific ones."""
    return ERROR_CODES.get(name, fallback)


def reported_delivery(error: KafkaError, *, retries: bool, idempotent: bool) -> str:
    """The ``delivery`` verdict on a message librdkafka reported failed with ``error``.

    confluent-kafka does not expose librdkafka's verdict (``rd_kafka_message_status``:
    not, possibly or certainly persisted). A producer that sends a message at most once
    can trust the error: a broker's refusal or a purge from the queue means not written.
    One that ``retries`` cannot: librdkafka retries a request whose answer was lost, that
    attempt may have been written, and the last error (a refusal, a topic or partition
    gone from the metadata, a purge of the retry) says nothing about it. Only errors
    librdkafka gives to messages it never sent are certain then, and, for the
    ``idempotent`` producer, which retries a batch byte for byte (the broker could not
    match its sequence numbers otherwise), a refusal of the batch's bytes: an earlier
    attempt of the same bytes was refused too.
    """
    name = error_name(error)
    if not retries:
        return NOT_WRITTEN if name in NOT_WRITTEN_CODES else DELIVERY_UNKNOWN
    if name in NEVER_SENT_CODES or (idempotent and name in RECORD_REFUSALS):
        return NOT_WRITTEN
    return DELIVERY_UNKNOWN


def kafka_error(
    error: KafkaError,
    operation: str,
    fallback: ErrorCode,
    *,
    transactional: bool = False,
    **context: Any,
) -> QiError:
    """Translate a librdkafka error; produce failures pass their verdict in ``delivery``.

    ``transactional``: the error came to a transactional producer's send, where a fatal
    error or a fencing answer means the producer was fenced (contract section 9).
    """
    name = error_name(error)
    code = contract_code(name, fallback)
    if operation == "connect" and code not in _CONNECT_KEEPS:
        code = ErrorCode.CONNECTION_FAILED
    # librdkafka says per error instance what a transactional producer must do next,
    # whatever the code: abort the transaction, or give up the producer (a fatal error of
    # a transactional producer is its fencing, by another instance or by the broker).
    if error.txn_requires_abort():
        code = ErrorCode.TRANSACTION_FAILED
    elif (transactional or operation.startswith("transaction")) and (
        error.fatal() or name in FENCING
    ):
        code = ErrorCode.PRODUCER_FENCED
    return streaming_error(
        code,
        f"{operation} failed: {error.str()}",
        operation=operation,
        implementation=IMPLEMENTATION,
        kafka_error=name,
        retriable=bool(error.retriable()) or name in RETRIABLE,
        fatal=bool(error.fatal()) or code is ErrorCode.PRODUCER_FENCED,
        **context,
    )


def contract_error(code: ErrorCode, message: str, operation: str, **context: Any) -> QiError:
    """A QiError the confluent backend builds itself (not from a librdkafka error)."""
    return streaming_error(
        code, message, operation=operation, implementation=IMPLEMENTATION, **context
    )


def translate_exception(exc: BaseException, operation: str, fallback: ErrorCode) -> QiError:
    """Translate anything confluent-kafka raises into a QiError."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return kafka_error(exc.args[0], operation, fallback)
    if isinstance(exc, BufferError):
        return streaming_error(
            ErrorCode.QUEUE_FULL,
            f"{operation} failed: the local producer queue is full",
            operation=operation,
            implementation=IMPLEMENTATION,
            kafka_error="_QUEUE_FULL",
            retriable=True,
        )
    return unexpected_error(exc, operation, fallback, IMPLEMENTATION)
