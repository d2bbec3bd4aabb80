"""The consumer run loop, shared by every backend: at-least-once, in order, bounded.

Two tasks cooperate. The *fetcher* pulls messages from the backend's
:class:`PartitionSource` into one buffer per partition, pausing a partition
whose buffer is full (so a slow handler bounds memory). The *dispatcher*
(``_dispatch``) calls the user's handler one call at a time, taking partitions
round-robin. Offsets are recorded as processed only after the handler
returned, and only processed offsets are ever committed.

A partition's ``generation`` changes when it is sought or revoked, so a
handler call that started before the change records nothing, and messages of
a fetch that was under way when the partition was sought are dropped (the
source already moved to the new position). A partition assigned during a
fetch is new state: what the fetch returns for it is current and is kept.
Once a revocation of a partition has begun, no handler call for it starts
here: the next owner may start on it as soon as the revocation returns. So a
handler call on it still running ``request_timeout`` into the revocation is
cancelled then, as ``disconnect()`` cancels one.

A native client moves past what it fetched before the source builds the
messages, so a fetch that fails has moved past messages nobody will handle:
the engine then rewinds every partition to the first offset it was not given.

Transaction markers (and aborted records, read_committed) take offsets no message
shows. The source reports with each fetch how far it moved, invisible records
included; once everything handed over of a partition was handled, the engine
commits that position, as Kafka's own clients commit theirs, so a group that
handled everything of a transactional topic has no lag left.

With a transactional producer in the run config the dispatcher is the
exactly-once one (``_exactly_once``): the engine then commits nothing itself,
and a revocation waits for the open transaction instead of the running handler.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming._codes import ErrorCode
from qi.base.streaming._config import ConsumerConfig, ConsumerRunConfig
from qi.base.streaming._dispatch import ErrorFactory, PartitionState
from qi.base.streaming._exactly_once import Translate, dispatcher_for
from qi.base.streaming._types import PartitionPosition
from qi.base.streaming.backend import PartitionSource, SeekTarget, TopicPartition

# How long one fetch may block: short, so stop() and pauses take effect promptly.
_FETCH_WAIT: Final = 0.25
# Most messages taken from the source in one fetch.
_FETCH_MAX: Final = 10_000
# Pause after a fetch error before fetching again, so a dead broker is not hammered.
_FETCH_ERROR_BACKOFF: Final = 0.5
# The least time stop() gives the source to leave the group, even when the rest used it all.
_MIN_LEAVE: Final = 0.5
# How long a revocation waits for a handler it cancelled to end.
_CANCEL_GRACE: Final = 1.0


@dataclass(slots=True, eq=False)
class _OnErrorCall:
    """The mark of one on_error call (see ``_report``)."""

    task: asyncio.Task[Any] | None
    """The task calling on_error, until on_error returned: then None, as a task on_error
    started may outlive it, carrying its mark (which must not keep that loop task, and
    what its context holds, alive)."""


_ON_ERROR_CALL: contextvars.ContextVar[_OnErrorCall | None] = contextvars.ContextVar(
    "qi_on_error_call", default=None
)
"""The on_error call the calling code runs in: set around each call, and so inherited by
the tasks on_error starts (disconnect() runs its close in one)."""


def _reporting_task() -> asyncio.Task[Any] | None:
    """The task whose on_error call (still under way) the calling code runs in, if any."""
    call = _ON_ERROR_CALL.get()
    return None if call is None else call.task


class ConsumerEngine:
    """Runs a consumer's handler over a :class:`PartitionSource` with at-least-once semantics."""

    def __init__(
        self,
        source: PartitionSource,
        run_config: ConsumerRunConfig,
        consumer_config: ConsumerConfig,
        *,
        request_timeout: float,
        error: ErrorFactory,
        translate: Translate,
        logger: logging.Logger,
    ) -> None:
        self._source = source
        self._run = run_config
        self._config = consumer_config
        self._request_timeout = request_timeout
        self._error = error
        self._translate = translate
        self._logger = logger
        # Per-partition bound on buffered messages: enough for two full batches, so the
        # dispatcher rarely waits on the fetcher, and never unbounded behind a slow handler.
        self.buffer_limit = max(2 * consumer_config.max_batch_size, 1_000)
        self._partitions: dict[TopicPartition, PartitionState] = {}
        self._dispatcher = dispatcher_for(
            self._partitions,
            run_config,
            source,
            batch_size=consumer_config.max_batch_size,
            buffer_limit=self.buffer_limit,
            error=error,
            report=self._report,
            translate=translate,
        )
        self._assigned = asyncio.Event()
        # Set by the fetcher when the broker refuses to let this member in at all.
        self._refused: asyncio.Future[QiError] | None = None
        self._stopping = False
        self._stopped_by_handler = False
        # Set when the running handler awaits a stop that is waiting for it (see stop()).
        self._handler_awaits_stop: asyncio.Future[None] | None = None
        # Set once offsets of this consumer went through a transaction: its progress is
        # the transactions' to commit, so the loop commits nothing by itself any more.
        self._progress_in_transactions = run_config.transactional_producer is not None
        self._commit_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        # Reports of failed rebalance commits (and of stop()'s own failed commit), each
        # forgotten once on_error has heard it.
        self._reports: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, startup_timeout: float) -> Result[None, QiError]:
        """Join the group and start the loops; wait for the first assignment.

        A join the broker refuses for good (a session timeout outside its bounds, say)
        fails at once with the broker's answer rather than waiting out the bound.
        """
        refused = self._refused = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(startup_timeout):
                await self._source.start(self)
                self._tasks = [
                    asyncio.create_task(self._fetch_loop(), name="qi-consumer-fetch"),
                    self._dispatcher.start(),
                ]
                if self._config.auto_commit:
                    self._tasks.append(
                        asyncio.create_task(self._auto_commit_loop(), name="qi-consumer-commit")
                    )
                assigned = asyncio.ensure_future(self._assigned.wait())
                try:
                    await asyncio.wait({assigned, refused}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    assigned.cancel()
                if not self._assigned.is_set():
                    return Failure(refused.result())
        except TimeoutError:
            return Failure(
                self._error(
                    ErrorCode.TIMEOUT,
                    f"no partitions were assigned within {startup_timeout:.1f}s",
                    "run",
                    group_id=self._config.group_id,
                )
            )
        return Success(None)

    async def stop(
        self, handler_patience: float, patience: float, caller: asyncio.Task[Any] | None = None
    ) -> float:
        """Stop the loops, let a running handler finish, commit, leave.

        A running handler gets ``handler_patience`` seconds (then it is cancelled and its
        message stays uncommitted); committing what was processed, telling on_error about
        a failure, and leaving the group then share what is left of ``handler_patience +
        patience``. Returns that deadline (``time.monotonic()``), which whatever the
        consumer still has to release should keep too. ``caller`` is the task the
        disconnect() was called in.
        """
        deadline = time.monotonic() + handler_patience + patience
        self._stopping = self._dispatcher.stopping = True
        self._dispatcher.work.set()
        # disconnect() awaited by the running handler itself cannot wait for that handler:
        # it would wait for itself. What was handled before is committed below; the
        # handler's own message stays uncommitted (its next owner gets it), and no handler
        # call starts once it returns. One in a task the handler started waits, as any.
        # So does disconnect() awaited by on_error: the loop task calling on_error (the
        # dispatcher's after a failed handler, the fetcher's, the auto-commit loop's) is
        # neither waited for nor cancelled; it ends by itself once on_error returns.
        reporting = _reporting_task()
        if reporting not in (*self._tasks, *self._reports):
            reporting = None  # another consumer's on_error: its loop is none of ours
        self._stopped_by_handler = self._dispatcher_awaits_caller(caller)
        if self._tasks:
            fetcher, dispatcher, *others = self._tasks
            # A pending fetch holds nothing we owe anyone: what it would return is uncommitted.
            for task in (fetcher, *others):
                if task is not reporting:
                    task.cancel()
            if not self._stopped_by_handler:
                # Until the running handler returns, or itself calls disconnect() (which
                # then waits for this stop: see handler_may_await_stop).
                awaited = self._handler_awaits_stop = asyncio.get_running_loop().create_future()
                done, _ = await asyncio.wait(
                    {dispatcher, awaited},
                    timeout=handler_patience,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                self._handler_awaits_stop = None
                self._stopped_by_handler = awaited in done
                if not done:
                    self._logger.warning(
                        "a handler still ran after %.1fs: cancelled, its message stays uncommitted",
                        handler_patience,
                    )
                    dispatcher.cancel()
            ended = [fetcher, *others] if self._stopped_by_handler else list(self._tasks)
            ending = {task for task in ended if task is not reporting}
            if ending:
                # Bounded: a cancelled handler may not end before this stop does (it awaits
                # a disconnect() of its own in a task it started, which waits for this
                # stop). What was handled is committed and the group left all the same.
                grace = min(_CANCEL_GRACE, max(deadline - time.monotonic(), _MIN_LEAVE) / 2)
                _, late = await asyncio.wait(ending, timeout=grace)
                if late:
                    self._logger.warning(
                        "%s did not end %.1fs after its cancellation: stopping without it",
                        ", ".join(sorted(task.get_name() for task in late)),
                        grace,
                    )
                # Nor may the revocation of leaving wait for such a handler once more.
                self._stopped_by_handler = self._stopped_by_handler or dispatcher in late
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), _MIN_LEAVE)):
                await self._dispatcher.after_stop()
        except TimeoutError:
            self._logger.warning("ending the run loop's open transaction did not finish in time")
        if self._stopped_by_handler:
            # A revocation under way waits for this handler: the native client cannot leave
            # the group before it ends, so it must not wait out request_timeout.
            self._dispatcher.handler_awaits_stop()
        committed = await self.commit("disconnect", max(deadline - time.monotonic(), 0.0))
        if isinstance(committed, Failure):
            self._start_report(committed.error)
        reports = self._reports - {reporting}
        if reports:
            _, late = await asyncio.wait(reports, timeout=max(deadline - time.monotonic(), 0))
            for report in late:
                report.cancel()
        await self._source.stop(max(deadline - time.monotonic(), _MIN_LEAVE))
        closing = max(deadline - time.monotonic(), 0.0)
        for caller in {reporting, self._tasks[1] if self._stopped_by_handler else None}:
            if caller is not None:
                self._cancel_when_late(caller, closing)
        return deadline

    def _cancel_when_late(self, caller: asyncio.Task[Any], closing: float) -> None:
        """The task whose handler or on_error call stopped this engine (on_error: or started
        the task that did) was neither waited for nor cancelled: give it ``request_timeout`` once
        the consumer is closed (within ``closing`` seconds: the call's own disconnect()
        must not be cancelled), then cancel it, as disconnect() does any other late
        handler. Without it, a call that goes on after its disconnect() would keep that
        task running forever."""

        def cancel() -> None:
            if not caller.done():
                self._logger.warning(
                    "%s still ran %.1fs after its call disconnected the consumer: cancelled",
                    caller.get_name(),
                    self._request_timeout,
                )
                caller.cancel()

        if not caller.done():
            asyncio.get_running_loop().call_later(closing + self._request_timeout, cancel)

    def handler_may_await_stop(self, caller: asyncio.Task[Any] | None) -> None:
        """disconnect() was called again, in ``caller``, while this engine stops: if by the
        running handler, that handler now waits for the stop, which must stop waiting for
        it."""
        awaited = self._handler_awaits_stop
        if awaited is not None and not awaited.done() and self._dispatcher_awaits_caller(caller):
            awaited.set_result(None)

    def _dispatcher_awaits_caller(self, caller: asyncio.Task[Any] | None) -> bool:
        """Whether the dispatcher's task waits for a disconnect() called in ``caller``: the
        running handler awaits it itself, or on_error told of a failed handler call does
        (or a task that on_error call started)."""
        if self._dispatcher.called_by_handler(caller):
            return True
        return bool(self._tasks) and _reporting_task() is self._tasks[1]

    def awaits_caller(self) -> bool:
        """Whether the calling code runs in an on_error call this stop waits for (hearing
        of a failed rebalance commit, or of the stop's own failed commit): a disconnect()
        it awaits cannot wait for this stop."""
        return _reporting_task() in self._reports

    def abandon(self) -> None:
        """End every task at once, as a killed process would: no commit, no goodbye."""
        self._stopping = self._dispatcher.stopping = True
        for task in (*self._tasks, *self._reports):
            task.cancel()

    # -- operations ----------------------------------------------------------------------------

    async def commit(self, operation: str, within: float | None = None) -> Result[None, QiError]:
        """Commit the processed offsets not committed yet, within ``within`` s (request_timeout)."""
        bound = self._request_timeout if within is None else within
        try:
            async with asyncio.timeout(bound):
                return await self._commit(operation)
        except TimeoutError:
            return Failure(
                self._error(
                    ErrorCode.TIMEOUT, f"commit did not finish within {bound:.1f}s", operation
                )
            )

    async def _commit(self, operation: str) -> Result[None, QiError]:
        if self._progress_in_transactions:
            return Success(None)
        async with self._commit_lock:
            pending: dict[TopicPartition, int] = {}
            for key, state in self._partitions.items():
                progress = state.progress()
                if progress is not None and progress != state.committed:
                    pending[key] = progress
            if not pending:
                return Success(None)
            try:
                await self._source.commit(pending)
            except Exception as exc:
                return Failure(self._translate(exc, operation, ErrorCode.COMMIT_FAILED))
            for key, offset in pending.items():
                part = self._partitions.get(key)
                if part is not None:
                    part.committed = offset
            return Success(None)

    async def seek(self, key: TopicPartition, target: SeekTarget) -> Result[None, QiError]:
        """Reposition an assigned partition; what was buffered for it is dropped."""
        part = self._partitions.get(key)
        if part is None:
            return Failure(
                self._error(
                    ErrorCode.INVALID_ARGUMENT,
                    f"partition {key[1]} of {key[0]!r} is not assigned to this consumer",
                    "seek",
                    topic=key[0],
                    partition=key[1],
                    assigned=tuple(sorted(self._partitions)),
                )
            )
        part.generation += 1
        part.buffer.clear()
        part.fetched_to = None  # what was dropped was not handled: commit no further
        part.retry_at = 0.0
        part.attempts = 0
        if part.revoking:
            # It leaves this member as soon as the running handler returns; its next owner
            # starts from the committed offset, so there is nothing to reposition.
            return Success(None)
        # Known before the source moves, so a rewind after a failed fetch cannot undo the seek.
        part.next_offset = target if isinstance(target, int) else None
        try:
            async with asyncio.timeout(self._request_timeout):
                await self._source.seek(key, target)
        except TimeoutError:
            return Failure(
                self._error(
                    ErrorCode.TIMEOUT,
                    f"seek did not finish within {self._request_timeout:.1f}s",
                    "seek",
                    topic=key[0],
                    partition=key[1],
                )
            )
        if part.paused:
            part.paused = False
            self._source.resume([key])
        return Success(None)

    def processed_offsets(self) -> dict[TopicPartition, int]:
        """Next offset to read of every assigned partition the handler has made progress on,
        or whose fetches moved past invisible records only (see ``PartitionState.progress``)."""
        offsets: dict[TopicPartition, int] = {}
        for key, part in self._partitions.items():
            progress = part.progress()
            if progress is not None:
                offsets[key] = progress
        return offsets

    async def hand_progress_to_transactions(self) -> object:
        """From now on commit nothing by ourselves; return the group metadata to commit with."""
        metadata = await self._source.group_metadata()
        self.leave_progress_to_transactions()
        return metadata

    def leave_progress_to_transactions(self) -> None:
        """Commit nothing by ourselves: the consumer's offsets went through a transaction."""
        self._progress_in_transactions = True

    def positions(self) -> tuple[PartitionPosition, ...]:
        """Where the handler stands on each assigned partition, from what is known already.

        The position is the head of the buffer, else the first offset not handed over;
        unknown after a seek to "earliest" or "latest" until a fetch says where that is (the
        offset handled before the seek is no position any more). The end is the source's
        last-fetched high watermark.
        """
        ends = self._source.end_offsets()
        positions: list[PartitionPosition] = []
        for key, part in sorted(tuple(self._partitions.items())):
            buffer = part.buffer
            head = buffer[0] if buffer else None
            position = part.next_offset if head is None else head.offset
            end = ends.get(key)
            lag = None if end is None or position is None else max(end - position, 0)
            positions.append(PartitionPosition(*key, position, part.committed, end, lag))
        return tuple(positions)

    def assignment(self) -> frozenset[TopicPartition]:
        """Partitions currently assigned to this consumer."""
        return frozenset(self._partitions)

    # -- RebalanceListener ---------------------------------------------------------------------

    async def partitions_assigned(self, partitions: Collection[TopicPartition]) -> None:
        for key in partitions:
            if key not in self._partitions:
                self._partitions[key] = PartitionState(key)
                self._dispatcher.add(key)
        self._assigned.set()

    async def partitions_revoked(
        self, partitions: Collection[TopicPartition]
    ) -> Mapping[TopicPartition, int]:
        revoked = set(partitions)
        for key in revoked:
            part = self._partitions.get(key)
            if part is not None:
                part.revoking = True
        running = (
            None  # the handler is waiting for this very stop (see stop())
            if self._stopped_by_handler
            else await self._dispatcher.before_revocation(revoked, self._request_timeout)
        )
        if running is not None:
            self._logger.warning(
                "handler on %s still running %.1fs into its revocation: cancelled, its message "
                "stays uncommitted",
                running,
                self._request_timeout,
            )
            await self._cancel_handler()
        to_commit: dict[TopicPartition, int] = {}
        for key in revoked:
            part = self._partitions.pop(key, None)
            if part is None:
                continue
            part.generation += 1
            progress = part.progress()
            if (
                progress is not None
                and progress != part.committed
                and not self._progress_in_transactions
            ):
                to_commit[key] = progress
        self._dispatcher.forget(revoked)
        return to_commit

    async def _cancel_handler(self) -> None:
        """End the running handler call, as disconnect() does, and dispatch on without it.

        Its partition goes to another member as soon as the revocation returns: left
        running, the call would overlap with the next owner's.
        """
        if self._stopping or len(self._tasks) < 2:
            return
        dispatcher = self._tasks[1]
        dispatcher.cancel()
        await asyncio.wait({dispatcher}, timeout=_CANCEL_GRACE)
        if not dispatcher.done():  # the handler ignored its cancellation: it goes on
            return
        if not self._stopping:
            self._tasks[1] = self._dispatcher.start()

    def report_commit_failure(self, exc: BaseException) -> None:
        """Backends call this when committing revoked partitions failed."""
        self._start_report(self._translate(exc, "rebalance_commit", ErrorCode.COMMIT_FAILED))

    def _start_report(self, error: QiError) -> None:
        """Tell on_error in a task of its own, which stop() waits for."""
        task = asyncio.get_running_loop().create_task(self._report(error))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    # -- loops -------------------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        # The dispatcher stops by itself when a transactional producer was fenced.
        while not self._stopping and not self._dispatcher.stopping:
            before = {key: (part, part.generation) for key, part in self._partitions.items()}
            try:
                fetched = await self._source.fetch(_FETCH_MAX, _FETCH_WAIT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = self._translate(exc, "fetch", ErrorCode.CONNECTION_FAILED)
                refused = self._refused
                if refused is not None and not self._assigned.is_set() and not refused.done():
                    if error.context.get("retriable") is False:  # it will not let us in
                        refused.set_result(self._translate(exc, "run", ErrorCode.CONNECTION_FAILED))
                        return
                await self._rewind()
                await self._report(error)
                if not self._stopping:  # on_error may have disconnected: end at once then
                    await asyncio.sleep(_FETCH_ERROR_BACKOFF)
                continue
            positions = self._source.fetch_positions()
            if not fetched and not positions:
                continue
            full: list[TopicPartition] = []
            for key, messages in fetched.items():
                part = self._partitions.get(key)
                if part is None or not messages:
                    continue  # revoked while the fetch ran: the next owner reads them
                seen = before.get(key)
                if seen is not None and seen[0] is part and seen[1] != part.generation:
                    continue  # sought while the fetch ran: these are from the old position
                part.buffer.extend(messages)
                part.next_offset = messages[-1].offset + 1
                if not part.paused and len(part.buffer) >= self.buffer_limit:
                    part.paused = True
                    full.append(key)
            for key, position in positions.items():
                moved = self._partitions.get(key)
                seen = before.get(key)
                if moved is None or (
                    seen is not None and seen[0] is moved and seen[1] != moved.generation
                ):
                    continue  # revoked or sought while the fetch ran, as above
                if moved.fetched_to is None or position > moved.fetched_to:
                    moved.fetched_to = position
                if moved.next_offset is None or position > moved.next_offset:
                    moved.next_offset = position  # a rewind need not fetch markers again
            if full:
                self._source.pause(full)
            self._dispatcher.work.set()

    async def _rewind(self) -> None:
        """After a failed fetch: put every partition back at the first offset not handed over."""
        positions = {
            key: part.next_offset for key, part in self._partitions.items() if not part.revoking
        }
        if not positions:
            return
        try:
            async with asyncio.timeout(self._request_timeout):
                await self._source.rewind(positions)
        except Exception as exc:
            await self._report(self._translate(exc, "fetch", ErrorCode.CONNECTION_FAILED))

    async def _auto_commit_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self._config.auto_commit_interval)
            committed = await self.commit("auto_commit")
            if isinstance(committed, Failure):
                await self._report(committed.error)

    async def _report(self, error: QiError) -> None:
        """Tell on_error (sync or async); a failing on_error is logged, never propagated."""
        self._logger.debug("consumer error: %s", error)
        on_error = self._run.on_error
        if on_error is None:
            if error.code != ErrorCode.HANDLER_FAILED:
                self._logger.warning("%s", error)
            return
        # Marked, so that a disconnect() it awaits does not wait for the task calling it.
        call = _OnErrorCall(asyncio.current_task())
        marked = _ON_ERROR_CALL.set(call)
        try:
            outcome = on_error(error)
            if inspect.isawaitable(outcome):
                await outcome
        except asyncio.CancelledError:
            raise
        except Exception:
            self._logger.exception("on_error raised while reporting %s", error.code)
        finally:
            _ON_ERROR_CALL.reset(marked)
            call.task = None
