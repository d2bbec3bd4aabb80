"""The aiokafka backend's transactions: its transactional producer, with group fencing.

aiokafka's ``send_offsets_to_transaction(offsets, group_id)`` sends TxnOffsetCommit
version 0, which carries only the group id: the broker cannot tell a member that
lost its partitions in a rebalance from their new owner, so a zombie's offsets
would be committed (aiokafka issue 844). This backend closes the hole. The group
id it hands aiokafka is a :class:`FencedGroupId`, a ``str`` that also carries the
member's generation and id, and each transactional producer's sender commits
offsets with TxnOffsetCommit version 3 (KIP-447), which carries them, so the
group coordinator refuses a fenced member (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID):
the transaction then fails abortably. A broker without version 3 gets no
offsets at all: a clear STREAMING_INVALID_CONFIG, never an unfenced commit.

tests/backends/test_aiokafka_hooks.py fails loudly when an aiokafka upgrade moves
what this replaces.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiokafka import TopicPartition as NativePartition
from aiokafka import errors as kafka
from aiokafka.client import CoordinationType
from aiokafka.producer.sender import TxnOffsetCommitHandler
from aiokafka.producer.transaction_manager import TransactionState
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Int64,
    Schema,
    TaggedFields,
)

from qi.base.streaming import ErrorCode
from qi.base.streaming.backend import OperationFailed, TopicPartition, streaming_error
from qi.base.streaming.backends.aiokafka import _errors, _private

_TXN_OFFSET_COMMIT: Final = 28
_FENCED_VERSION: Final = 3
"""The first TxnOffsetCommit version with the generation and member id (KIP-447)."""
_NO_LEADER_EPOCH: Final = -1
_ENDING: Final = (TransactionState.COMMITTING_TRANSACTION, TransactionState.ABORTING_TRANSACTION)
# The group coordinator's answers that mean: this member no longer owns what it commits.
_MEMBER_FENCED: Final = (kafka.IllegalGenerationError, kafka.UnknownMemberIdError)


@dataclass(frozen=True, slots=True)
class AiokafkaGroupMetadata:
    """What an aiokafka consumer hands a transaction: who it is in its group (KIP-447)."""

    group_id: str
    generation: int
    member_id: str


class FencedGroupId(str):
    """A consumer group id that also carries its member's generation and id.

    aiokafka passes the group id it is given through to the sender unchanged; the
    sender's replaced offset commit reads these to send TxnOffsetCommit version 3.
    """

    generation: int
    member_id: str

    def __new__(cls, metadata: AiokafkaGroupMetadata) -> FencedGroupId:
        group_id = super().__new__(cls, metadata.group_id)
        group_id.generation = metadata.generation
        group_id.member_id = metadata.member_id
        return group_id


class _TxnOffsetCommitResponseV3(Response):  # type: ignore[misc]
    API_KEY = _TXN_OFFSET_COMMIT
    API_VERSION = _FENCED_VERSION
    FLEXIBLE_VERSION = True
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                (
                    "partitions",
                    CompactArray(
                        ("partition_index", Int32),
                        ("error_code", Int16),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _TxnOffsetCommitRequestV3(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = _TXN_OFFSET_COMMIT
    API_VERSION = _FENCED_VERSION
    RESPONSE_TYPE = _TxnOffsetCommitResponseV3
    SCHEMA = Schema(
        ("transactional_id", CompactString("utf-8")),
        ("group_id", CompactString("utf-8")),
        ("producer_id", Int64),
        ("producer_epoch", Int16),
        ("generation_id", Int32),
        ("member_id", CompactString("utf-8")),
        ("group_instance_id", CompactString("utf-8")),
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                (
                    "partitions",
                    CompactArray(
                        ("partition_index", Int32),
                        ("committed_offset", Int64),
                        ("committed_leader_epoch", Int32),
                        ("committed_metadata", CompactString("utf-8")),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _FencedTxnOffsetCommitRequest(Request[_TxnOffsetCommitRequestV3]):  # type: ignore[misc]
    """TxnOffsetCommit with the member's generation and id; only version 3 will do."""

    API_KEY = _TXN_OFFSET_COMMIT

    def __init__(self, fields: tuple[Any, ...]) -> None:
        self._fields = fields

    def build(self, request_struct_class: type[_TxnOffsetCommitRequestV3]) -> Any:
        return request_struct_class(*self._fields)

    def prepare(self, versions: dict[int, tuple[int, int]]) -> Any:
        low, high = versions.get(_TXN_OFFSET_COMMIT, (0, -1))
        if not low <= _FENCED_VERSION <= high:
            raise kafka.IncompatibleBrokerVersion(
                "the broker does not offer TxnOffsetCommit version 3 (KIP-447, Kafka 2.5): "
                "offsets sent in a transaction could not be fenced by the consumer group's "
                "generation, so none are sent"
            )
        return self.build(_TxnOffsetCommitRequestV3)


class _V0Errors:
    """A version 3 response, read as the version 0 one aiokafka's handler understands."""

    def __init__(self, response: Any) -> None:
        self.errors = [
            (name, [(partition, error_code) for partition, error_code, _ in partitions])
            for name, partitions, _ in response.topics
        ]


class _FencedTxnOffsetCommitHandler(TxnOffsetCommitHandler):  # type: ignore[misc]
    """aiokafka's offset commit handler, sending the member's generation and id."""

    def create_request(self) -> Any:
        manager = _private.sender_transaction_manager(self._sender)
        group_id = self._group_id
        by_topic: dict[str, list[tuple[Any, ...]]] = collections.defaultdict(list)
        for native, offset in sorted(self._offsets.items()):
            by_topic[native.topic].append(
                (native.partition, offset.offset, _NO_LEADER_EPOCH, offset.metadata, {})
            )
        return _FencedTxnOffsetCommitRequest(
            (
                manager.transactional_id,
                str(group_id),
                manager.producer_id,
                manager.producer_epoch,
                group_id.generation,
                group_id.member_id,
                None,
                [(topic, partitions, {}) for topic, partitions in by_topic.items()],
                {},
            )
        )

    def handle_response(self, response: Any) -> Any:
        for _, partitions, _ in response.topics:
            for _, error_code, _ in partitions:
                error = kafka.for_code(error_code)
                if error in _MEMBER_FENCED:
                    # The member lost these partitions: abortable, as the Java client has it.
                    _private.sender_transaction_manager(self._sender).error_transaction(
                        error(f"member of group {self._group_id!s} is fenced")
                    )
                    return None
        return super().handle_response(_V0Errors(response))


async def _fenced_offset_commit(sender: Any, offsets: Any, group_id: Any) -> None:
    # aiokafka 0.14's Sender._do_txn_offset_commit, with the fenced handler.
    if not offsets:
        return
    try:
        node_id = await _private.find_coordinator(sender, CoordinationType.GROUP, group_id)
    except kafka.GroupAuthorizationFailedError as exc:
        _private.sender_transaction_manager(sender).error_transaction(exc)
        return
    await _FencedTxnOffsetCommitHandler(sender, offsets, group_id).do(node_id)


def fence_offset_commits(producer: Any) -> None:
    """Make a started transactional producer commit offsets with the generation (KIP-447)."""
    _private.replace_txn_offset_commit(producer, _fenced_offset_commit)


class AiokafkaTransactions:
    """A transactional ``AIOKafkaProducer``'s begin, offsets, commit and abort.

    aiokafka's transaction manager knows what a failure leaves behind: an abortable
    error (the transaction must be aborted) or a fatal one (the producer is done,
    fenced by another instance or by the coordinator); its state decides the code.
    """

    def __init__(self, producer: Any, timeout: float) -> None:
        self._producer = producer
        self._timeout = timeout
        # The end (committing or aborting) whose call timed out: aiokafka still runs it.
        self._unfinished: TransactionState | None = None

    async def begin(self) -> None:
        if _private.transaction_manager(self._producer).state is TransactionState.FATAL_ERROR:
            # aiokafka would refuse the transition with an AssertionError, which says nothing
            # of the producer being done for.
            raise OperationFailed(
                streaming_error(
                    ErrorCode.PRODUCER_FENCED,
                    "the producer was fenced (another producer took its transactional_id "
                    "over, or a transaction outlived transaction_timeout): create a new one",
                    operation="transaction",
                    implementation="aiokafka",
                )
            )
        manager = _private.transaction_manager(self._producer)
        if manager.state in _ENDING:
            # An end whose call timed out still runs in aiokafka (it shields it), and aiokafka
            # refuses to begin meanwhile with an AssertionError: wait for that end first.
            await self._bounded("transaction", manager.wait_for_transaction_end)
        await self._call("transaction", self._producer.begin_transaction)

    async def send_offsets(self, offsets: Mapping[TopicPartition, int], group: object) -> None:
        assert isinstance(group, AiokafkaGroupMetadata)
        native = {NativePartition(*key): offset for key, offset in offsets.items()}

        def send() -> Awaitable[None]:
            fenced_group = FencedGroupId(group)
            return self._producer.send_offsets_to_transaction(native, fenced_group)  # type: ignore[no-any-return]

        await self._bounded("transaction.send_offsets", send)

    async def commit(self) -> None:
        await self._ending(
            "transaction.commit",
            self._producer.commit_transaction,
            TransactionState.COMMITTING_TRANSACTION,
        )

    async def abort(self) -> None:
        await self._ending(
            "transaction.abort",
            self._producer.abort_transaction,
            TransactionState.ABORTING_TRANSACTION,
        )

    async def _ending(
        self, operation: str, call: Callable[[], Awaitable[None]], ending: TransactionState
    ) -> None:
        """Commit or abort, bounded.

        What aiokafka started goes on after a timeout (it shields the wait), so the same
        call made again while that end still runs waits for it instead of asking aiokafka
        for a transition it refuses.
        """
        manager = _private.transaction_manager(self._producer)
        if self._unfinished is ending and manager.state is ending:
            call = manager.wait_for_transaction_end
        try:
            await self._bounded(operation, call)
        except OperationFailed as failed:
            if failed.error.code == ErrorCode.TIMEOUT:
                self._unfinished = ending
            raise

    async def _bounded(self, operation: str, call: Callable[[], Awaitable[None]]) -> None:
        """``_call`` within the timeout: aiokafka waits for the coordinator forever."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._call(operation, call)
        except TimeoutError as exc:
            raise OperationFailed(
                streaming_error(
                    ErrorCode.TIMEOUT,
                    f"{operation} got no answer from the transaction coordinator within "
                    f"{self._timeout:.1f}s: its outcome is unknown",
                    operation=operation,
                    implementation="aiokafka",
                )
            ) from exc

    async def _call(self, operation: str, call: Callable[[], Awaitable[None]]) -> None:
        try:
            await call()
        except AssertionError as exc:
            # aiokafka's state machine refuses any way out of FATAL_ERROR (begin, abort) by
            # an assertion: the producer was fenced, and that is what the caller must hear.
            manager = _private.transaction_manager(self._producer)
            if manager.state is not TransactionState.FATAL_ERROR:
                raise
            raise OperationFailed(
                _errors.translate(
                    _private.transaction_failure(manager) or exc,
                    operation,
                    ErrorCode.PRODUCER_FENCED,
                    implementation="aiokafka",
                    code=ErrorCode.PRODUCER_FENCED,
                )
            ) from exc
        except kafka.KafkaError as exc:
            state = _private.transaction_manager(self._producer).state
            if state is TransactionState.FATAL_ERROR:
                code: ErrorCode | None = ErrorCode.PRODUCER_FENCED
            elif state is TransactionState.ABORTABLE_ERROR:
                code = ErrorCode.TRANSACTION_FAILED
            else:
                code = None
            raise OperationFailed(
                _errors.translate(
                    exc,
                    operation,
                    ErrorCode.TRANSACTION_FAILED,
                    implementation="aiokafka",
                    code=code,
                )
            ) from exc
