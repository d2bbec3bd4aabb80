"""The one translation table from aiokafka's exceptions to the contract's error codes.

Every exception class aiokafka defines in ``aiokafka.errors`` has an entry (a test
walks the module and fails on a new, unlisted class). An entry's code may be
None: such errors say "this operation failed" and take the operation's own
code (STREAMING_PRODUCE_FAILED for a send, STREAMING_ADMIN_FAILED for an admin
call, ...). ``rejects`` marks broker answers that certainly refused a produce
request, so a failed send can say its message was not written (when that request
was the batch's first attempt: see ``delivery_after``).

The original name travels in ``context["kafka_error"]`` (the broker's error name
for numbered errors, such as ``UNKNOWN_TOPIC_OR_PARTITION``, else the class
name) with aiokafka's ``retriable`` flag.
"""

from __future__ import annotations

import ssl
from typing import Any, Final, NamedTuple

from aiokafka import errors as kafka

from qi.base import QiError
from qi.base.streaming import ErrorCode
from qi.base.streaming.backend import DELIVERY_UNKNOWN, NOT_WRITTEN, streaming_error

IMPLEMENTATION: Final = "aiokafka"


class InvalidRecordError(kafka.BrokerResponseError):  # type: ignore[misc]
    """Broker error 87, INVALID_RECORD: the broker's validation refused a record (a record
    without a key on a compacted topic, for one)."""

    errno = 87
    message = "INVALID_RECORD"
    description = "This record has failed the validation on broker and hence will be rejected."


# aiokafka 0.14 has no class for error 87 and turns it into UnknownError, losing what the
# broker said; its registry of numbered errors gets ours (a later aiokafka's own wins).
REGISTERED: Final[tuple[type[kafka.BrokerResponseError], ...]] = (
    kafka.kafka_errors.setdefault(InvalidRecordError.errno, InvalidRecordError),
)


class Entry(NamedTuple):
    """How one aiokafka exception class reads in the contract."""

    code: ErrorCode | None
    """Contract code; None means the code of the operation that failed."""
    rejects: bool = False
    """A produce request failing with it was certainly not written."""


_OPERATION: Final = Entry(None)
_CONNECTION: Final = Entry(ErrorCode.CONNECTION_FAILED)
_TIMEOUT: Final = Entry(ErrorCode.TIMEOUT)
_CONFIG: Final = Entry(ErrorCode.INVALID_CONFIG, rejects=True)
_COMMIT: Final = Entry(ErrorCode.COMMIT_FAILED)
_AUTHENTICATION: Final = Entry(ErrorCode.AUTHENTICATION_FAILED, rejects=True)
_AUTHORIZATION: Final = Entry(ErrorCode.AUTHORIZATION_FAILED, rejects=True)
_PRODUCE: Final = Entry(ErrorCode.PRODUCE_FAILED)
_TOO_LARGE: Final = Entry(ErrorCode.MESSAGE_TOO_LARGE, rejects=True)
_TRANSACTION: Final = Entry(ErrorCode.TRANSACTION_FAILED)
_FENCED: Final = Entry(ErrorCode.PRODUCER_FENCED)

ERROR_TABLE: Final[dict[type[BaseException], Entry]] = {
    # -- aiokafka's own errors -------------------------------------------------------------
    kafka.KafkaError: _OPERATION,
    kafka.IllegalStateError: _OPERATION,
    kafka.IllegalArgumentError: Entry(ErrorCode.INVALID_ARGUMENT, rejects=True),
    kafka.IllegalOperation: Entry(ErrorCode.INVALID_ARGUMENT, rejects=True),
    kafka.NoBrokersAvailable: _CONNECTION,
    kafka.NodeNotReadyError: _CONNECTION,
    kafka.KafkaProtocolError: _CONNECTION,
    kafka.CorrelationIdError: _CONNECTION,
    kafka.KafkaConnectionError: _CONNECTION,
    kafka.KafkaUnavailableError: _CONNECTION,
    kafka.MetadataEmptyBrokerList: _CONNECTION,
    kafka.Cancelled: _OPERATION,
    kafka.TooManyInFlightRequests: _OPERATION,
    kafka.StaleMetadata: _OPERATION,
    kafka.UnrecognizedBrokerVersion: _CONFIG,
    kafka.IncompatibleBrokerVersion: _CONFIG,
    kafka.UnsupportedCodecError: _CONFIG,
    kafka.KafkaConfigurationError: _CONFIG,
    kafka.CommitFailedError: _COMMIT,
    kafka.AuthenticationMethodNotSupported: _AUTHENTICATION,
    kafka.AuthenticationFailedError: _AUTHENTICATION,
    kafka.KafkaTimeoutError: _TIMEOUT,
    kafka.QuotaViolationError: _OPERATION,
    kafka.ConsumerStoppedError: Entry(ErrorCode.NOT_CONNECTED),
    kafka.NoOffsetForPartitionError: _OPERATION,
    kafka.RecordTooLargeError: _TOO_LARGE,
    kafka.ProducerClosed: Entry(ErrorCode.NOT_CONNECTED, rejects=True),
    kafka.ProducerFenced: _FENCED,
    kafka.BrokerResponseError: _OPERATION,
    # -- numbered broker errors --------------------------------------------------------------
    kafka.NoError: _OPERATION,  # 0: never raised; listed so the table is complete
    kafka.UnknownError: _OPERATION,  # -1
    kafka.OffsetOutOfRangeError: _OPERATION,  # 1
    kafka.CorruptRecordException: Entry(ErrorCode.INVALID_MESSAGE, rejects=True),  # 2
    kafka.UnknownTopicOrPartitionError: Entry(ErrorCode.TOPIC_NOT_FOUND, rejects=True),  # 3
    kafka.InvalidFetchRequestError: _OPERATION,  # 4
    kafka.LeaderNotAvailableError: _OPERATION,  # 5
    kafka.NotLeaderForPartitionError: _OPERATION,  # 6
    kafka.RequestTimedOutError: _TIMEOUT,  # 7
    kafka.BrokerNotAvailableError: _CONNECTION,  # 8
    kafka.ReplicaNotAvailableError: _OPERATION,  # 9
    kafka.MessageSizeTooLargeError: _TOO_LARGE,  # 10
    kafka.StaleControllerEpochError: _OPERATION,  # 11
    kafka.OffsetMetadataTooLargeError: _COMMIT,  # 12
    kafka.StaleLeaderEpochCodeError: _OPERATION,  # 13
    kafka.GroupLoadInProgressError: _COMMIT,  # 14
    kafka.GroupCoordinatorNotAvailableError: _COMMIT,  # 15
    kafka.NotCoordinatorForGroupError: _COMMIT,  # 16
    kafka.InvalidTopicError: Entry(ErrorCode.INVALID_TOPIC, rejects=True),  # 17
    kafka.RecordListTooLargeError: _TOO_LARGE,  # 18
    kafka.NotEnoughReplicasError: Entry(None, rejects=True),  # 19
    kafka.NotEnoughReplicasAfterAppendError: _OPERATION,  # 20: written, but under-replicated
    kafka.InvalidRequiredAcksError: _CONFIG,  # 21
    kafka.IllegalGenerationError: _COMMIT,  # 22
    kafka.InconsistentGroupProtocolError: _CONFIG,  # 23
    kafka.InvalidGroupIdError: _CONFIG,  # 24
    kafka.UnknownMemberIdError: _COMMIT,  # 25
    kafka.InvalidSessionTimeoutError: _CONFIG,  # 26
    kafka.RebalanceInProgressError: _COMMIT,  # 27
    kafka.InvalidCommitOffsetSizeError: _COMMIT,  # 28
    kafka.TopicAuthorizationFailedError: _AUTHORIZATION,  # 29
    kafka.GroupAuthorizationFailedError: _AUTHORIZATION,  # 30
    kafka.ClusterAuthorizationFailedError: _AUTHORIZATION,  # 31
    kafka.InvalidTimestampError: Entry(ErrorCode.INVALID_MESSAGE, rejects=True),  # 32
    kafka.UnsupportedSaslMechanismError: _AUTHENTICATION,  # 33
    kafka.IllegalSaslStateError: _AUTHENTICATION,  # 34
    kafka.UnsupportedVersionError: _CONFIG,  # 35
    kafka.TopicAlreadyExistsError: Entry(ErrorCode.TOPIC_ALREADY_EXISTS),  # 36
    kafka.InvalidPartitionsError: _CONFIG,  # 37
    kafka.InvalidReplicationFactorError: _CONFIG,  # 38
    kafka.InvalidReplicationAssignmentError: _CONFIG,  # 39
    kafka.InvalidConfigurationError: _CONFIG,  # 40
    kafka.NotControllerError: _OPERATION,  # 41
    kafka.InvalidRequestError: _OPERATION,  # 42
    kafka.UnsupportedForMessageFormatError: _CONFIG,  # 43
    kafka.PolicyViolationError: _CONFIG,  # 44
    kafka.OutOfOrderSequenceNumber: _PRODUCE,  # 45
    kafka.DuplicateSequenceNumber: _PRODUCE,  # 46
    kafka.InvalidProducerEpoch: _PRODUCE,  # 47
    kafka.InvalidTxnState: _TRANSACTION,  # 48
    kafka.InvalidProducerIdMapping: _PRODUCE,  # 49
    kafka.InvalidTransactionTimeout: _CONFIG,  # 50
    kafka.ConcurrentTransactions: _TRANSACTION,  # 51
    kafka.TransactionCoordinatorFenced: _FENCED,  # 52
    kafka.TransactionalIdAuthorizationFailed: _AUTHORIZATION,  # 53
    kafka.SecurityDisabled: _CONFIG,  # 54
    kafka.OperationNotAttempted: _OPERATION,  # 55
    kafka.KafkaStorageError: _OPERATION,  # 56
    kafka.LogDirNotFound: _OPERATION,  # 57
    kafka.SaslAuthenticationFailed: _AUTHENTICATION,  # 58
    kafka.UnknownProducerId: _PRODUCE,  # 59
    kafka.ReassignmentInProgress: _OPERATION,  # 60
    kafka.DelegationTokenAuthDisabled: _AUTHENTICATION,  # 61
    kafka.DelegationTokenNotFound: _AUTHENTICATION,  # 62
    kafka.DelegationTokenOwnerMismatch: _AUTHENTICATION,  # 63
    kafka.DelegationTokenRequestNotAllowed: _AUTHENTICATION,  # 64
    kafka.DelegationTokenAuthorizationFailed: _AUTHORIZATION,  # 65
    kafka.DelegationTokenExpired: _AUTHENTICATION,  # 66
    kafka.InvalidPrincipalType: _AUTHORIZATION,  # 67
    kafka.NonEmptyGroup: _COMMIT,  # 68
    kafka.GroupIdNotFound: _COMMIT,  # 69
    kafka.FetchSessionIdNotFound: _OPERATION,  # 70
    kafka.InvalidFetchSessionEpoch: _OPERATION,  # 71
    kafka.ListenerNotFound: _CONNECTION,  # 72
    kafka.MemberIdRequired: _COMMIT,  # 79
    # -- numbered broker errors aiokafka lacks, registered above -----------------------------
    InvalidRecordError: Entry(ErrorCode.INVALID_MESSAGE, rejects=True),  # 87
}

# Exceptions from outside aiokafka that its calls let through.
_BUILTIN_TABLE: Final[dict[type[BaseException], Entry]] = {
    ssl.SSLCertVerificationError: _AUTHENTICATION,  # the broker's certificate was not trusted
    ssl.SSLError: _CONNECTION,
    TimeoutError: _TIMEOUT,  # asyncio.TimeoutError is the same class since Python 3.11
    ConnectionError: _CONNECTION,
    OSError: _CONNECTION,
}


def entry_for(exc: BaseException) -> Entry | None:
    """The entry of the most specific class of ``exc`` that has one."""
    for cls in type(exc).__mro__:
        entry = ERROR_TABLE.get(cls) or _BUILTIN_TABLE.get(cls)
        if entry is not None:
            return entry
    return None


def kafka_error_name(exc: BaseException) -> str:
    """The broker's name for a numbered error, else the exception's class name."""
    if isinstance(exc, kafka.BrokerResponseError):
        return str(exc.message)
    return type(exc).__name__


def is_retriable(exc: BaseException) -> bool:
    """aiokafka's own verdict; for other exceptions, whether waiting might help."""
    if isinstance(exc, kafka.KafkaError):
        return bool(exc.retriable)
    return isinstance(exc, TimeoutError | OSError)


def describe(exc: BaseException) -> str:
    """A one-line description; aiokafka's messages never carry credentials."""
    text = " ".join(str(exc).split())
    if isinstance(exc, kafka.KafkaError):
        return text  # KafkaError.__str__ already names the class
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def translate(
    exc: BaseException,
    operation: str,
    fallback: ErrorCode,
    *,
    implementation: str,
    code: ErrorCode | None = None,
    **context: Any,
) -> QiError:
    """Turn an exception raised by aiokafka (or let through by it) into a QiError.

    ``code`` overrides the table when the caller knows better (a transaction's state).
    """
    entry = entry_for(exc)
    if code is None:
        code = fallback if entry is None or entry.code is None else entry.code
    extra: dict[str, Any] = {"exception_type": type(exc).__name__}
    if entry is not None:
        extra["kafka_error"] = kafka_error_name(exc)
        extra["retriable"] = is_retriable(exc)
    return streaming_error(
        code,
        f"{operation} failed: {describe(exc)}",
        operation=operation,
        implementation=implementation,
        **extra,
        **context,
    )


class TopicsGone(Exception):
    """Offsets of topics the cluster no longer has: they can never be committed."""

    def __init__(self, topics: tuple[str, ...]) -> None:
        super().__init__(f"cannot commit offsets of deleted topic(s) {', '.join(topics)}")
        self.topics = topics


def translate_native(exc: BaseException, operation: str, fallback: ErrorCode) -> QiError:
    """The backend's error table, applied: what the boundary calls for anything raised."""
    if isinstance(exc, TopicsGone):
        return contract_error(
            ErrorCode.COMMIT_FAILED,
            f"{operation} failed: {exc}",
            operation,
            kafka_error="UNKNOWN_TOPIC_OR_PART",
            retriable=False,
            topics=exc.topics,
        )
    return translate(exc, operation, fallback, implementation=IMPLEMENTATION)


def contract_error(code: ErrorCode, message: str, operation: str, **context: Any) -> QiError:
    """A QiError the aiokafka backend builds itself (not from an aiokafka exception)."""
    return streaming_error(
        code, message, operation=operation, implementation=IMPLEMENTATION, **context
    )


def rejects(exc: BaseException) -> bool:
    """Whether a produce request that failed with ``exc`` was certainly not written."""
    entry = entry_for(exc)
    return entry is not None and entry.rejects


def delivery_after(exc: BaseException, attempts: int) -> str:
    """The ``delivery`` verdict of a record batch that failed with ``exc`` after aiokafka
    took it for sending ``attempts`` times: a refusal proves nothing about an earlier
    attempt, whose answer was lost (that is why aiokafka retried) and which may have
    been written."""
    return NOT_WRITTEN if attempts <= 1 and rejects(exc) else DELIVERY_UNKNOWN
