"""The producer contract: validation at the boundary, delivery by the backend."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Final, cast, final

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming._boundary import boundary, with_verdict
from qi.base.streaming._codes import NOT_WRITTEN, ErrorCode
from qi.base.streaming._config import ProducerConfig, StreamingConfig
from qi.base.streaming._endpoint import Endpoint
from qi.base.streaming._fast_values import DeferredResults, deferred_batch_result
from qi.base.streaming._transaction import Transaction
from qi.base.streaming._types import (
    BatchProduceResult,
    MessageBatch,
    ProduceResult,
    StreamingMessage,
)
from qi.base.streaming._validation import checked_message_size, topic_problem
from qi.base.streaming.backend import ErrorTranslation, ProducerBackend

if TYPE_CHECKING:
    from qi.base.streaming._telemetry_send import ProducerTelemetry

_ALL_ACKNOWLEDGED: Final = frozenset({ProduceResult})
"""The outcome types of a batch whose every message was acknowledged."""
_VALID_TOPICS_KEPT: Final = 1_000
"""Most valid topic names a producer remembers (it forgets them all, then starts again)."""


@final
class StreamingProducer(Endpoint):
    """Writes messages to topics; every message ends acknowledged or reported failed.

    It holds a :class:`~qi.base.streaming.backend.ProducerBackend`, which receives
    only messages that passed validation here.
    """

    _kind = "producer"
    _backend: ProducerBackend

    def __init__(
        self,
        config: StreamingConfig,
        producer_config: ProducerConfig,
        backend: ProducerBackend,
        *,
        implementation: str,
        translate: ErrorTranslation,
        logger: logging.Logger | None = None,
    ) -> None:
        super().__init__(
            config, backend, implementation=implementation, translate=translate, logger=logger
        )
        self._producer_config = producer_config
        # The backend's two delivery methods, bound once: send() is the hot path.
        self._send = backend.send
        self._send_batch = backend.send_batch
        self._native_transactions = backend.transactions
        # Topic names already found valid: a service sends to a few topics many times,
        # and the name check (a regular expression) cost more than the rest of send's
        # validation. Bounded, so a caller inventing names cannot grow it without end.
        self._valid_topics: set[str] = set()
        self._transactional = producer_config.transactional_id is not None
        self._refuses_some_calls = self._transactional  # its sends go through transactions
        self._open_transaction: Transaction | None = None
        self._telemetry: ProducerTelemetry | None = None
        if config.telemetry is not None:
            # Imported only here: without telemetry, OpenTelemetry is never imported.
            from qi.base.streaming._telemetry_send import ProducerTelemetry

            self._telemetry = ProducerTelemetry(config)

    def _topic_problem(self, topic: object) -> str | None:
        if type(topic) is str and topic in self._valid_topics:
            return None
        problem = topic_problem(topic)
        if problem is None:
            if len(self._valid_topics) >= _VALID_TOPICS_KEPT:
                self._valid_topics.clear()
            self._valid_topics.add(cast(str, topic))
        return problem

    if TYPE_CHECKING:
        # What type checkers see: the boundary makes the plain function below a coroutine.

        async def send(
            self, topic: str, message: StreamingMessage
        ) -> Result[ProduceResult, QiError]:
            raise NotImplementedError

    else:

        @boundary("send", ErrorCode.PRODUCE_FAILED, produces=True)
        def send(
            self, topic: str, message: StreamingMessage
        ) -> Failure[QiError] | Awaitable[Result[ProduceResult, QiError]]:
            """Send one message and wait for the broker's acknowledgement (per ``acks``).

            Failures: STREAMING_INVALID_TOPIC, STREAMING_INVALID_MESSAGE,
            STREAMING_MESSAGE_TOO_LARGE, STREAMING_TOPIC_NOT_FOUND, STREAMING_QUEUE_FULL,
            STREAMING_PRODUCE_FAILED, STREAMING_TIMEOUT, STREAMING_NOT_CONNECTED; each
            says in ``context["delivery"]`` whether the message may have been written.
            """
            # A plain function returning the backend's awaitable: the boundary's wrapper is
            # then the one coroutine of a send (concurrent senders, a gather of thousands,
            # went 20-35% faster without a second coroutine per call).
            telemetry = self._telemetry
            if telemetry is not None:
                return telemetry.send(topic, message, "send", self._delivered)
            return self._checked_send(topic, message, "send")

    @boundary("send_batch", ErrorCode.PRODUCE_FAILED, produces=True)
    async def send_batch(self, batch: MessageBatch) -> Result[BatchProduceResult, QiError]:
        """Send a batch; Success only when every message was acknowledged.

        When some (or all) messages fail, the Failure is
        STREAMING_BATCH_PARTIAL_FAILURE with ``context["results"]``: each message's
        own Result, in input order. A batch that is wrong as a whole (not a
        MessageBatch, an invalid topic) fails whole with that code instead.
        """
        return await self._send_batch_checked(batch, "send_batch")

    @boundary("transaction", ErrorCode.TRANSACTION_FAILED)
    async def transaction(self) -> Result[Transaction, QiError]:
        """Begin a transaction; its sends and consumer offsets commit or abort together.

        Failures: STREAMING_INVALID_ARGUMENT (no ``transactional_id``, or a transaction
        of this producer is still open), STREAMING_PRODUCER_FENCED (another producer
        with the same ``transactional_id`` took over: disconnect this one),
        STREAMING_TRANSACTION_FAILED.
        """
        if not self._transactional:
            return Failure(
                self._error(
                    ErrorCode.INVALID_ARGUMENT,
                    "transaction() needs a producer whose ProducerConfig has a transactional_id",
                    "transaction",
                )
            )
        if self._open_transaction is not None:
            return Failure(
                self._error(
                    ErrorCode.INVALID_ARGUMENT,
                    "a transaction of this producer is still open: commit or abort it first",
                    "transaction",
                )
            )
        native = self._native_transactions()
        # Taken before beginning, so a concurrent transaction() is refused here too.
        transaction = self._open_transaction = Transaction(self, native, self._transaction_ended)
        try:
            await native.begin()
        except BaseException:
            self._open_transaction = None
            raise
        return Success(transaction)

    async def _send_batch_checked(
        self, batch: MessageBatch, operation: str
    ) -> Result[BatchProduceResult, QiError]:
        """send_batch's work, for the producer and for its transactions."""
        telemetry = self._telemetry
        if telemetry is not None:
            return await telemetry.send_batch(batch, operation, self._send_batch_validated)
        return await self._send_batch_validated(batch, operation)

    async def _send_batch_validated(
        self, batch: MessageBatch, operation: str
    ) -> Result[BatchProduceResult, QiError]:
        """Validate a batch and hand its valid messages to the backend."""
        if not isinstance(batch, MessageBatch):
            return Failure(
                self._error(
                    ErrorCode.INVALID_MESSAGE,
                    f"send_batch needs a MessageBatch, got {type(batch).__name__}",
                    operation,
                    delivery=NOT_WRITTEN,
                )
            )
        topic = batch.topic
        problem = self._topic_problem(topic)
        if problem is not None:
            return Failure(self._rejected(ErrorCode.INVALID_TOPIC, problem, operation, topic))
        messages = batch.messages
        if not isinstance(messages, tuple | list):
            return Failure(
                self._rejected(
                    ErrorCode.INVALID_MESSAGE,
                    "batch messages must be a tuple of StreamingMessage",
                    operation,
                    topic,
                )
            )
        # The common case, every message fine, costs one size check per message and nothing
        # more; the per-message bookkeeping below runs only when something was rejected.
        limit = self._producer_config.max_message_bytes
        for message in messages:
            size = checked_message_size(message)
            if type(size) is not int or size > limit:
                break
        else:
            return self._batch_outcome(topic, await self._send_batch(topic, messages))
        outcomes: list[ProduceResult | QiError | None] = [None] * len(messages)
        valid: list[int] = []
        for index, message in enumerate(messages):
            rejection = self._message_rejection(message, operation, topic)
            if rejection is None:
                valid.append(index)
            else:
                outcomes[index] = rejection
        if valid:
            sent = await self._send_batch(topic, [messages[index] for index in valid])
            for index, outcome in zip(valid, sent, strict=True):
                outcomes[index] = outcome
        return self._batch_outcome(topic, [outcome for outcome in outcomes if outcome is not None])

    @boundary("disconnect", ErrorCode.TIMEOUT, refuse=False)
    async def disconnect(self) -> Result[None, QiError]:
        """Flush and release everything; a transaction still open is aborted first.

        Aborting it at once spares read_committed readers the wait for the broker to
        abort it after ``transaction_timeout``. Disconnecting twice does nothing.
        """
        transaction = self._open_transaction
        if transaction is not None:
            aborted = await transaction.abort()  # ends it, whatever the broker answers
            if isinstance(aborted, Failure):
                self._logger.warning("aborting the open transaction failed: %s", aborted.error)
        return await super().disconnect()

    def _send_in_transaction(
        self, topic: str, message: StreamingMessage
    ) -> Failure[QiError] | Awaitable[Result[ProduceResult, QiError]]:
        """A transaction's send: a refusal, or the delivery (traced when telemetry is on)."""
        telemetry = self._telemetry
        if telemetry is not None:
            return telemetry.send(topic, message, "transaction.send", self._delivered)
        return self._checked_send(topic, message, "transaction.send")

    async def _delivered(
        self, topic: str, message: StreamingMessage, operation: str
    ) -> Result[ProduceResult, QiError]:
        """:meth:`_checked_send` awaited: what a traced send's span waits for."""
        sent = self._checked_send(topic, message, operation)
        return sent if isinstance(sent, Failure) else await sent

    def _checked_send(
        self, topic: str, message: StreamingMessage, operation: str
    ) -> Failure[QiError] | Awaitable[Result[ProduceResult, QiError]]:
        """send's work, for the producer and its transactions: a refusal, or the delivery."""
        if type(topic) is not str or topic not in self._valid_topics:  # else known valid
            problem = self._topic_problem(topic)
            if problem is not None:
                return Failure(self._rejected(ErrorCode.INVALID_TOPIC, problem, operation, topic))
        rejection = self._message_rejection(message, operation, topic)
        if rejection is not None:
            return Failure(rejection)
        return self._send(topic, message)

    def _transaction_ended(self, transaction: Transaction) -> None:
        if self._open_transaction is transaction:
            self._open_transaction = None

    async def _close(self) -> None:
        await self._backend.close()

    # -- helpers -----------------------------------------------------------------------------

    def _refusal(self, operation: str) -> QiError | None:
        refusal = super()._refusal(operation)
        if refusal is None and self._transactional and operation in ("send", "send_batch"):
            return self._outside_transaction(operation)
        return refusal

    def _outside_transaction(self, operation: str) -> QiError:
        """Why a transactional producer refuses a send of its own."""
        open_now = (
            "a transaction is open: send with it"
            if self._open_transaction
            else ("send within a transaction: begin one with transaction()")
        )
        return self._error(
            ErrorCode.INVALID_ARGUMENT,
            f"a producer with a transactional_id sends only within transactions; {open_now}",
            operation,
            delivery=NOT_WRITTEN,
        )

    def _message_rejection(self, message: object, operation: str, topic: str) -> QiError | None:
        size = checked_message_size(message)
        if type(size) is str:
            return self._rejected(ErrorCode.INVALID_MESSAGE, size, operation, topic)
        assert type(size) is int
        limit = self._producer_config.max_message_bytes
        if size > limit:
            return self._rejected(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"message of {size} bytes exceeds max_message_bytes={limit}",
                operation,
                topic,
                size=size,
                limit=limit,
            )
        return None

    def _rejected(
        self, code: ErrorCode, message: str, operation: str, topic: object, **context: object
    ) -> QiError:
        shown = topic if isinstance(topic, str) and len(topic) <= 300 else repr(topic)[:300]
        return self._error(code, message, operation, topic=shown, delivery=NOT_WRITTEN, **context)

    def _batch_outcome(
        self, topic: str, outcomes: Sequence[ProduceResult | QiError]
    ) -> Result[BatchProduceResult, QiError]:
        if isinstance(outcomes, DeferredResults):  # all acknowledged, results built when read
            return Success(deferred_batch_result(topic, outcomes))
        if set(map(type, outcomes)) <= _ALL_ACKNOWLEDGED:
            # Every outcome is a ProduceResult (checked at C speed): no second pass to filter.
            results = cast(tuple[ProduceResult, ...], tuple(outcomes))
            return Success(BatchProduceResult(topic=topic, results=results))
        failed = sum(1 for outcome in outcomes if isinstance(outcome, QiError))
        # Each failure says which message of the caller's batch it is (the backend saw only
        # the messages that passed validation, so only here are the positions right).
        per_message: tuple[Result[ProduceResult, QiError], ...] = tuple(
            Failure(with_verdict(outcome).with_context(index=index))
            if isinstance(outcome, QiError)
            else Success(outcome)
            for index, outcome in enumerate(outcomes)
        )
        return Failure(
            self._error(
                ErrorCode.BATCH_PARTIAL_FAILURE,
                f"{failed} of {len(outcomes)} messages to {topic!r} failed",
                "send_batch",
                topic=topic,
                results=per_message,
                failed=failed,
            )
        )
