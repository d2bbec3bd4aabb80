"""The consumer contract: subscription, the at-least-once run loop, commits and seeks."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Final, final

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming._boundary import boundary, sync_boundary
from qi.base.streaming._codes import ErrorCode
from qi.base.streaming._config import (
    ConsumerConfig,
    ConsumerRunConfig,
    StreamingConfig,
    SubscriptionConfig,
)
from qi.base.streaming._endpoint import Endpoint, State, disconnect_caller
from qi.base.streaming._engine import ConsumerEngine
from qi.base.streaming._types import PartitionPosition
from qi.base.streaming._validation import (
    parse_offset,
    partition_problem,
    run_config_problem,
    subscription_problem,
    subscription_topic_problem,
    topic_problem,
    transaction_offsets,
)
from qi.base.streaming.backend import ConsumerBackend, ErrorTranslation, TopicPartition

if TYPE_CHECKING:
    from qi.base.streaming._telemetry_process import ConsumerTelemetry

# Seconds a run() that failed to start gives the commit and the leave before returning.
_FAILED_RUN_PATIENCE: Final = 1.0


@final
class StreamingConsumer(Endpoint):
    """Reads topics as a member of a consumer group, at least once.

    It holds a :class:`~qi.base.streaming.backend.ConsumerBackend` (the native
    client), whose :class:`~qi.base.streaming.backend.PartitionSource` the run loop
    drives; the run loop and its guarantees are shared by every backend.
    """

    _kind = "consumer"
    _backend: ConsumerBackend

    def __init__(
        self,
        config: StreamingConfig,
        consumer_config: ConsumerConfig,
        backend: ConsumerBackend,
        *,
        implementation: str,
        translate: ErrorTranslation,
        logger: logging.Logger | None = None,
    ) -> None:
        super().__init__(
            config, backend, implementation=implementation, translate=translate, logger=logger
        )
        self._consumer_config = consumer_config
        self._subscription: SubscriptionConfig | None = None
        self._engine: ConsumerEngine | None = None
        # Once its offsets went through a transaction, no run of this consumer commits by
        # itself again (contract section 9), even after disconnect() and connect().
        self._progress_in_transactions = False
        # run()'s join of the group, while it is under way: disconnect() cancels it.
        self._starting: asyncio.Task[Result[None, QiError]] | None = None
        # The engine disconnect() is stopping, while it does.
        self._stopping: ConsumerEngine | None = None
        # A run() that failed to start and is still leaving the group: its source gives
        # back "the" native consumer the backend lent last, so no new run may borrow one
        # until it has (it would be the one closed).
        self._failed_run_leaving = False
        self._telemetry: ConsumerTelemetry | None = None
        if config.telemetry is not None:
            # Imported only here: without telemetry, OpenTelemetry is never imported.
            from qi.base.streaming._telemetry_process import ConsumerTelemetry

            self._telemetry = ConsumerTelemetry(config, consumer_config, self.get_positions)

    @boundary("subscribe", ErrorCode.CONNECTION_FAILED)
    async def subscribe(self, config: SubscriptionConfig) -> Result[None, QiError]:
        """Choose the topics (names and/or a pattern) that ``run`` will read.

        Failures: STREAMING_INVALID_CONFIG, STREAMING_INVALID_TOPIC,
        STREAMING_INVALID_ARGUMENT while running.
        """
        problem = subscription_problem(config)
        if problem is not None:
            return Failure(self._error(ErrorCode.INVALID_CONFIG, problem, "subscribe"))
        assert isinstance(config, SubscriptionConfig)
        problem = subscription_topic_problem(config)
        if problem is not None:
            return Failure(self._error(ErrorCode.INVALID_TOPIC, problem, "subscribe"))
        if self._engine is not None:
            return Failure(
                self._error(
                    ErrorCode.INVALID_ARGUMENT,
                    "the consumer is running: disconnect it before changing its subscription",
                    "subscribe",
                )
            )
        self._subscription = config
        return Success(None)

    @boundary("run", ErrorCode.CONNECTION_FAILED)
    async def run(self, config: ConsumerRunConfig) -> Result[None, QiError]:
        """Start handling messages in the background; return once the group assigned partitions.

        With ``config.transactional_producer`` it runs exactly-once: see ``ConsumerRunConfig``.

        Failures: STREAMING_INVALID_CONFIG (not exactly one handler; a transactional
        producer without a ``transactional_id``, of another backend, or with
        ``auto_commit=True`` on this consumer), STREAMING_NOT_SUBSCRIBED,
        STREAMING_INVALID_ARGUMENT (already running),
        STREAMING_TIMEOUT (no assignment within 2 * session_timeout + connection_timeout:
        a member that crashed holds its partitions until its session expires, and the
        rebalance that follows must finish too), STREAMING_NOT_CONNECTED (disconnect() was
        called meanwhile: the join ends and the member leaves the group).
        """
        problem = run_config_problem(config)
        if problem is None:
            problem = self._transactional_problem(config)
        if problem is not None:
            return Failure(self._error(ErrorCode.INVALID_CONFIG, problem, "run"))
        if self._subscription is None:
            return Failure(
                self._error(ErrorCode.NOT_SUBSCRIBED, "call subscribe() before run()", "run")
            )
        if self._engine is not None or self._failed_run_leaving:
            return Failure(
                self._error(ErrorCode.INVALID_ARGUMENT, "the consumer is already running", "run")
            )
        if self._telemetry is not None:
            config = self._telemetry.instrument(config)
        engine = ConsumerEngine(
            self._backend.partition_source(self._subscription),
            config,
            self._consumer_config,
            request_timeout=self._config.request_timeout,
            error=self._error,
            translate=self._translate,
            logger=self._logger,
        )
        if self._progress_in_transactions:
            engine.leave_progress_to_transactions()
        self._engine = engine
        startup = 2 * self._consumer_config.session_timeout + self._config.connection_timeout
        starting = self._starting = asyncio.ensure_future(engine.start(startup))
        started: Result[None, QiError] | None = None
        try:
            started = await starting
        except asyncio.CancelledError:
            if self._engine is engine:  # run() itself was cancelled
                raise
            return Failure(
                self._error(
                    ErrorCode.NOT_CONNECTED,
                    "disconnect() was called while run() was joining the group",
                    "run",
                )
            )
        finally:
            self._starting = None
            # Whatever went wrong (a Failure, or an exception the boundary translates),
            # a consumer that did not start must not look like it is running. Its handler
            # gets no grace and leaving the group no more than a moment: run() has used its
            # time; what is left of leaving goes on in the background. An engine that
            # disconnect() took over is disconnect()'s to stop.
            if self._engine is engine and (started is None or started.is_failure()):
                self._engine = None
                self._failed_run_leaving = True
                try:
                    await engine.stop(0.0, _FAILED_RUN_PATIENCE)
                finally:
                    self._failed_run_leaving = False
        return started

    @boundary("commit_offsets", ErrorCode.COMMIT_FAILED)
    async def commit_offsets(self) -> Result[None, QiError]:
        """Commit the offsets of every message handled so far; nothing to commit is a Success.

        Failures: STREAMING_COMMIT_FAILED, STREAMING_TIMEOUT.
        """
        if self._engine is None:
            return Success(None)
        return await self._engine.commit("commit_offsets")

    @boundary("seek", ErrorCode.INVALID_ARGUMENT)
    async def seek(self, topic: str, partition: int, offset: int | str) -> Result[None, QiError]:
        """Make the next message handled on an assigned partition come from ``offset``.

        ``offset`` is an int >= 0, a decimal string, "earliest" or "latest". Commits
        nothing by itself. Failures: STREAMING_INVALID_TOPIC, STREAMING_INVALID_ARGUMENT
        (bad partition or offset, or a partition not assigned to this consumer),
        STREAMING_TIMEOUT (not done within request_timeout).
        """
        problem = topic_problem(topic)
        if problem is not None:
            return Failure(self._error(ErrorCode.INVALID_TOPIC, problem, "seek"))
        problem = partition_problem(partition)
        target = parse_offset(offset)
        if problem is None and target is None:
            problem = (
                "offset must be an int >= 0, a decimal string, 'earliest' or 'latest', "
                f"got {offset!r}"
            )
        if problem is not None:
            return Failure(self._error(ErrorCode.INVALID_ARGUMENT, problem, "seek"))
        assert target is not None
        if self._engine is None:
            return Failure(
                self._error(
                    ErrorCode.INVALID_ARGUMENT,
                    "seek needs a running consumer: partitions are assigned by run()",
                    "seek",
                    topic=topic,
                    partition=partition,
                )
            )
        return await self._engine.seek((topic, partition), target)

    @sync_boundary("get_positions", ErrorCode.CONNECTION_FAILED)
    def get_positions(self) -> Result[tuple[PartitionPosition, ...], QiError]:
        """Where the running consumer stands on each assigned partition, as it last knew.

        Answered from what the consumer already knows, without asking a broker: its
        position, last commit, the partition's end as the last fetch saw it, and the lag
        between them. A consumer that is not running has no partitions: Success(()).
        Failures: STREAMING_NOT_CONNECTED.
        """
        if self._state is not State.CONNECTED:
            return Failure(self._not_connected("get_positions"))
        engine = self._engine
        if engine is None:
            return Success(())
        # The boundary turns a backend client failing to say (closing, say) into a Failure.
        return Success(engine.positions())

    def _transactional_problem(self, config: ConsumerRunConfig) -> str | None:
        """Whether the run loop can commit this consumer's progress in the named producer's
        transactions."""
        producer = config.transactional_producer
        if producer is None:
            return None
        # Imported here: the producer's module imports this one (through transactions).
        from qi.base.streaming._producer import StreamingProducer

        if not isinstance(producer, StreamingProducer):
            return (
                f"transactional_producer must be a StreamingProducer, got {type(producer).__name__}"
            )
        if not producer._transactional:
            return "transactional_producer needs a ProducerConfig with a transactional_id"
        if producer.implementation != self.implementation:
            return (
                f"a {producer.implementation} transactional_producer cannot commit the offsets "
                f"of a {self.implementation} consumer"
            )
        if self._consumer_config.auto_commit:
            return (
                "a consumer run with a transactional_producer needs auto_commit=False: "
                "its offsets are committed by the transactions"
            )
        return None

    async def _offsets_for_transaction(
        self, implementation: str, offsets: object
    ) -> Result[tuple[object, dict[TopicPartition, int]], QiError]:
        """The group metadata and the offsets a transaction commits for this consumer.

        None means what the run loop has processed so far. From now on the run loop
        commits nothing by itself: the transactions own this consumer's progress.
        """
        operation = "transaction.send_offsets"
        if self.implementation != implementation:
            return Failure(
                self._error(
                    ErrorCode.INVALID_ARGUMENT,
                    f"a {implementation} transaction cannot carry the offsets of a "
                    f"{self.implementation} consumer",
                    operation,
                )
            )
        if self._state is not State.CONNECTED:
            return Failure(self._not_connected(operation))
        engine = self._engine
        if engine is None:
            return Failure(
                self._error(
                    ErrorCode.INVALID_ARGUMENT,
                    "the consumer is not running: only a group member's offsets can be sent",
                    operation,
                )
            )
        if offsets is None:
            chosen = engine.processed_offsets()
        else:
            checked = transaction_offsets(offsets)
            if isinstance(checked, str):
                return Failure(self._error(ErrorCode.INVALID_ARGUMENT, checked, operation))
            chosen = checked
        group = await engine.hand_progress_to_transactions()
        self._progress_in_transactions = True
        return Success((group, chosen))

    # -- lifecycle -----------------------------------------------------------------------------

    async def _close(self) -> None:
        engine, self._engine = self._engine, None
        timeout = self._config.request_timeout
        deadline = time.monotonic() + timeout
        try:
            starting = self._starting
            if starting is not None and not starting.done():
                # A join under way would otherwise go on after disconnect() returned (and
                # leave a member behind in the group): end it, then stop what it started.
                starting.cancel()
                await asyncio.wait({starting})
            if engine is not None:
                self._stopping = engine
                try:
                    deadline = await engine.stop(timeout, timeout, disconnect_caller())
                finally:
                    self._stopping = None
        finally:
            await self._backend.close(deadline)

    def _disconnect_called(self) -> bool:
        # The running handler's own disconnect() while another one stops the engine waits
        # for that one to finish: the stop must not wait for the handler any more. An
        # on_error call the stop waits for (it hears of the stop's failed commit) must not
        # wait for the stop at all.
        engine = self._stopping
        if engine is None:
            return False
        engine.handler_may_await_stop(disconnect_caller())
        return engine.awaits_caller()

    def _close_bound(self) -> float:
        # The running handler may take request_timeout; committing, leaving the group and
        # releasing the native client share the rest (see ConsumerEngine.stop).
        return 2 * self._config.request_timeout

    def _abandon(self) -> ConsumerBackend:
        """Stop as a killed process stops: no commit, no leaving the group (``abandon``)."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.abandon()
        self._set_state(State.CLOSED)
        return self._backend
