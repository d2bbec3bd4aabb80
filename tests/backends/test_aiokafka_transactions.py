"""The aiokafka backend's transactions: offsets fenced by the group's generation (KIP-447).

aiokafka sends TxnOffsetCommit without the member's generation (aiokafka issue 844);
the backend replaces its sender's offset commit with version 3, which carries it.
These tests pin the internals it replaces and prove the broker now refuses a zombie.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from typing import Any

import pytest
from aiokafka import TopicPartition as NativePartition
from aiokafka import errors as kafka
from aiokafka.producer.producer import AIOKafkaProducer
from aiokafka.producer.sender import Sender, TxnOffsetCommitHandler
from aiokafka.producer.transaction_manager import TransactionState
from aiokafka.structs import OffsetAndMetadata

from qi.base.streaming import (
    ConsumerConfig,
    ConsumerRunConfig,
    EachMessagePayload,
    ProducerConfig,
    StreamingConfig,
    SubscriptionConfig,
    TopicConfig,
    create_streaming_client,
)
from qi.base.streaming._codes import ErrorCode
from qi.base.streaming.backend import OperationFailed
from qi.base.streaming.backends.aiokafka import _private
from qi.base.streaming.backends.aiokafka._errors import translate
from qi.base.streaming.backends.aiokafka._transactions import (
    AiokafkaGroupMetadata,
    AiokafkaTransactions,
    FencedGroupId,
    _FencedTxnOffsetCommitHandler,
    _TxnOffsetCommitResponseV3,
)
from testkit import ok, unique

from ._source_text import class_source


def test_the_sender_still_commits_offsets_in_one_replaceable_method() -> None:
    assert list(inspect.signature(Sender._do_txn_offset_commit).parameters) == [
        "self",
        "offsets",
        "group_id",
    ]
    assert "TxnOffsetCommitHandler(self, offsets, group_id)" in class_source(Sender)
    assert "self._do_txn_offset_commit(offsets, group_id)" in class_source(Sender)
    # The group id reaches the sender as given, so it can carry the generation.
    source = inspect.getsource(AIOKafkaProducer.send_offsets_to_transaction)
    assert "add_offsets_to_txn(formatted_offsets, group_id)" in source
    assert "resp.errors" in inspect.getsource(TxnOffsetCommitHandler.handle_response)


class _Manager:
    transactional_id = "txn"
    producer_id = 4
    producer_epoch = 2

    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def error_transaction(self, exc: BaseException) -> None:
        self.errors.append(exc)


class _Sender:
    _retry_backoff = 0.1

    def __init__(self) -> None:
        self._txn_manager = _Manager()


def _handler(sender: Any) -> Any:
    group = FencedGroupId(AiokafkaGroupMetadata("group", 7, "member-1"))
    offsets = {NativePartition("orders", 0): OffsetAndMetadata(5, "")}
    return _FencedTxnOffsetCommitHandler(sender, offsets, group)


def test_offsets_go_with_the_generation_and_the_member_id() -> None:
    request = _handler(_Sender()).create_request()
    struct = request.prepare({28: (0, 3)})
    assert (struct.group_id, struct.generation_id, struct.member_id) == ("group", 7, "member-1")
    assert (struct.producer_id, struct.producer_epoch) == (4, 2)
    assert struct.topics[0][0] == "orders"
    assert struct.topics[0][1][0][:2] == (0, 5)
    assert struct.encode()  # the flexible version-3 schema encodes
    with pytest.raises(kafka.IncompatibleBrokerVersion, match="KIP-447"):
        request.prepare({28: (0, 2)})


def test_a_fenced_member_makes_the_transaction_abortable() -> None:
    sender = _Sender()
    response = _TxnOffsetCommitResponseV3(0, [("orders", [(0, 22, {})], {})], {})
    assert _handler(sender).handle_response(response) is None
    (error,) = sender._txn_manager.errors
    assert isinstance(error, kafka.IllegalGenerationError)


@pytest.mark.broker
@pytest.mark.skipif(
    not os.environ.get("QI_TEST_BROKERS"),
    reason="needs a Kafka cluster (QI_TEST_BROKERS): neither development broker checks "
    "TxnOffsetCommit's generation and member id (noida-db 0.2.3 accepts any)",
)
async def test_the_broker_refuses_the_offsets_of_a_stale_generation(kafka_bootstrap: str) -> None:
    config = StreamingConfig("txn-test", (kafka_bootstrap,), request_timeout=10.0)
    client = create_streaming_client("aiokafka", config)
    topic, group_id = unique("txn"), unique("group")
    try:
        ok(await ok(await client.get_admin()).create_topics([TopicConfig(topic)]))
        consumer = ok(
            await client.get_consumer(
                ConsumerConfig(group_id, session_timeout=6.0, heartbeat_interval=0.5)
            )
        )

        async def handle(payload: EachMessagePayload) -> None:
            return None

        ok(await consumer.subscribe(SubscriptionConfig(topics=(topic,))))
        ok(await consumer.run(ConsumerRunConfig(each_message=handle)))
        coordinator = ok(consumer.get_native_client())._coordinator  # type: ignore[attr-defined]
        producer = ok(await client.get_producer(ProducerConfig(transactional_id=group_id)))
        txn = ok(await producer.transaction())
        native = AiokafkaTransactions(ok(producer.get_native_client()), 5.0)
        zombie = AiokafkaGroupMetadata(group_id, coordinator.generation - 1, coordinator.member_id)
        with pytest.raises(OperationFailed) as refused:
            await native.send_offsets({(topic, 0): 1}, zombie)
        error = refused.value.error
        assert error.code == "STREAMING_TRANSACTION_FAILED"
        assert error.context["kafka_error"] == "ILLEGAL_GENERATION"
        ok(await txn.abort())
        # The live member's own offsets still go through.
        txn = ok(await producer.transaction())
        ok(await txn.send_offsets(consumer, {(topic, 0): 1}))
        ok(await txn.commit())
    finally:
        await client.disconnect()


@pytest.mark.parametrize(
    ("exception", "code", "flag"),
    [
        (kafka.ProducerFenced(), "STREAMING_PRODUCER_FENCED", "fatal"),
        (kafka.TransactionCoordinatorFenced(), "STREAMING_PRODUCER_FENCED", "fatal"),
        (kafka.InvalidTxnState(), "STREAMING_TRANSACTION_FAILED", "abortable"),
        (kafka.ConcurrentTransactions(), "STREAMING_TRANSACTION_FAILED", "abortable"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_transactional_errors_by_class(exception: Exception, code: str, flag: str) -> None:
    error = translate(
        exception, "transaction.commit", ErrorCode.TRANSACTION_FAILED, implementation="aiokafka"
    )
    assert error.code == code
    assert error.context[flag] is True


class _FailingProducer:
    def __init__(self, state: TransactionState) -> None:
        self._txn_manager = type("Manager", (), {"state": state})()

    async def commit_transaction(self) -> None:
        raise kafka.InvalidProducerEpoch()


@pytest.mark.parametrize(
    ("state", "code"),
    [
        (TransactionState.FATAL_ERROR, "STREAMING_PRODUCER_FENCED"),
        (TransactionState.ABORTABLE_ERROR, "STREAMING_TRANSACTION_FAILED"),
        (TransactionState.COMMITTING_TRANSACTION, "STREAMING_PRODUCE_FAILED"),
    ],
)
async def test_what_the_transaction_manager_is_left_in_decides_the_code(
    state: TransactionState, code: str
) -> None:
    with pytest.raises(OperationFailed) as failed:
        await AiokafkaTransactions(_FailingProducer(state), 1.0).commit()
    assert failed.value.error.code == code
    assert failed.value.error.context["kafka_error"] == "INVALID_PRODUCER_EPOCH"


class _SilentCoordinator:
    """A producer whose transaction coordinator never answers: aiokafka waits forever."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._txn_manager = self
        self.state = TransactionState.IN_TRANSACTION

    async def commit_transaction(self) -> None:
        self.calls.append("commit_transaction")
        self.state = TransactionState.COMMITTING_TRANSACTION
        await asyncio.Event().wait()

    async def wait_for_transaction_end(self) -> None:
        self.calls.append("wait_for_transaction_end")
        await asyncio.Event().wait()

    async def send_offsets_to_transaction(self, offsets: object, group_id: str) -> None:
        self.calls.append("send_offsets_to_transaction")
        await asyncio.Event().wait()


async def test_a_commit_without_an_answer_times_out_and_can_be_called_again() -> None:
    producer = _SilentCoordinator()
    transactions = AiokafkaTransactions(producer, 0.1)
    for _ in range(2):
        with pytest.raises(OperationFailed) as failed:
            await asyncio.wait_for(transactions.commit(), 5)
        assert failed.value.error.code == "STREAMING_TIMEOUT"
    # The second call waits for the commit aiokafka still runs rather than start another.
    assert producer.calls == ["commit_transaction", "wait_for_transaction_end"]


async def test_offsets_without_an_answer_time_out() -> None:
    transactions = AiokafkaTransactions(_SilentCoordinator(), 0.1)
    group = AiokafkaGroupMetadata("g", 1, "member")
    with pytest.raises(OperationFailed) as failed:
        await asyncio.wait_for(transactions.send_offsets({("t", 0): 1}, group), 5)
    assert failed.value.error.code == "STREAMING_TIMEOUT"


async def test_a_fenced_producer_cannot_begin_and_is_told_so() -> None:
    with pytest.raises(OperationFailed) as failed:
        await AiokafkaTransactions(_FailingProducer(TransactionState.FATAL_ERROR), 1.0).begin()
    assert failed.value.error.code == "STREAMING_PRODUCER_FENCED"
    assert failed.value.error.context["fatal"] is True


class _EndingProducer:
    """A producer whose abort timed out: aiokafka still runs it, then is ready again."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._txn_manager = self
        self.state = TransactionState.ABORTING_TRANSACTION

    async def wait_for_transaction_end(self) -> None:
        self.calls.append("wait_for_transaction_end")
        self.state = TransactionState.READY

    async def begin_transaction(self) -> None:
        assert self.state is TransactionState.READY, "aiokafka's AssertionError"
        self.calls.append("begin_transaction")


async def test_a_transaction_begun_while_an_abort_still_runs_waits_for_it() -> None:
    producer = _EndingProducer()
    await AiokafkaTransactions(producer, 1.0).begin()
    assert producer.calls == ["wait_for_transaction_end", "begin_transaction"]


async def test_stopping_retrieves_the_failures_of_batches_nobody_drains() -> None:
    loop = asyncio.get_running_loop()
    failed, pending = loop.create_future(), loop.create_future()
    failed.set_exception(kafka.ProducerFenced())
    batch = type("Batch", (), {"_drain_waiter": failed})()
    waiting = type("Batch", (), {"_drain_waiter": pending})()
    failures: list[Exception] = []
    accumulator = type(
        "Accumulator",
        (),
        {
            "_batches": {"tp": [batch]},
            "_pending_batches": [waiting],
            "fail_all": staticmethod(failures.append),
        },
    )()
    producer = type("Producer", (), {"_message_accumulator": accumulator})()
    disconnected = kafka.KafkaConnectionError("the producer was disconnected")
    _private.fail_queued(producer, disconnected)
    assert failures == [disconnected]
    # Retrieved: asyncio will not log it as "Future exception was never retrieved".
    assert failed._log_traceback is False
    assert not pending.done()
    pending.cancel()
