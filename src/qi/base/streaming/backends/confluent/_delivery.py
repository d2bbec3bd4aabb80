"""Delivery reports from librdkafka's thread world back to the event loop, in batches.

One *poll thread* per producer serves librdkafka's delivery reports. A report
records its message's outcome (where it was written, kept as three ints from
which its ProduceResult is built when read (see ``_delivered``), or librdkafka's
KafkaError, turned into a QiError later on the loop) in the :class:`Sends` slot of
the ``send``/``send_batch`` call it belongs to; when a slot's last report arrives,
the slot (not the message) is queued for the loop, and the loop is woken once,
only if no wake-up is already pending, so a burst of ten thousand reports
costs one thread hop.

    loop: produce() x N ──> librdkafka ──> poll thread: report x N ──┐
    loop: slot.future resolved  <── drain() <── one call_soon_threadsafe ┘

Every call waits for its messages, so while one waits the poll thread calls
``flush()`` rather than ``poll()``: librdkafka then sends at once instead of
lingering (``linger``) for more messages that are not coming. A batch is all
queued before its call waits, so it loses nothing by that; an idle producer's
thread sleeps on an event the loop sets when a call starts waiting.

Each message's delivery callback is the bound method of a reusable
:class:`_Report` (which call, which index), taken from a free list: building a
new callable per message, and collecting it afterwards, cost more than the rest
of the per-message work. A report returns to the free list only from its own
callback, which librdkafka calls once for each message it accepted, or when
``produce()`` refused its message, so it never serves two messages at once. A
single ``send`` needs neither a Sends nor a pooled report: its :class:`OneSend` is
both its slot and its callback, one object per send.

A batch acknowledged without a base offset (``acks=0``, or an idempotent retry
that the broker answers DUPLICATE_SEQUENCE_NUMBER with offset -1, as the
development broker does) is numbered -1, 0, 1, ... by librdkafka; every message
of it is reported at offset -1, "not said", instead.

Every call returns within its bound, whatever librdkafka does: librdkafka reports each
message within ``message.timeout.ms`` of taking it, and a sweep on the loop completes
any call still waiting well past that (:data:`_REPORT_GRACE`) with its missing
messages timed out, delivery unknown, and logs what it found; ``stop()`` is bounded
the same way. A call must never wait for ever on a report that does not come.

Threads: a slot's ``delivered`` counter is written only by the poll thread;
``expected`` only by the loop, once everything was handed to librdkafka. Both
sides check for completion after their own write, so a slot is completed at
least once, and completing is idempotent on the loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from qi.base import QiError
from qi.base.streaming import ProduceResult, StreamingMessage
from qi.base.streaming._fast_values import (
    PRODUCE_RESULT_SETTERS,
    LastTimestamp,
    datetime_from_millis,
)
from qi.base.streaming.backends.confluent._delivered import NOT_STAMPED, Acks

# flush() slice while a call waits: only bounds how quickly the thread notices a stop
# request, since flush() returns as soon as librdkafka has nothing left to deliver.
_FLUSH_SECONDS: Final = 0.1
# Sleep of an idle poll thread between poll(0) calls (client errors, log lines).
_IDLE_SECONDS: Final = 0.1
# flush() step while closing, so reports reach the loop while the flush goes on.
_FLUSH_STEP: Final = 0.1
# Most spare report callbacks kept for reuse; more are built when more are in flight.
_SPARE_REPORTS: Final = 20_000
# How long past message.timeout.ms a call may still wait for a report before the hub
# gives up on librdkafka: its timeout scan runs once a second, and a loaded machine can
# delay the poll thread by more.
_REPORT_GRACE: Final = 5.0
# How often the loop looks for calls overdue, while any call waits.
_SWEEP_SECONDS: Final = 1.0
STOP_GRACE: Final = 1.0
"""How long past its flush a stop() waits for the poll thread: purging and serving the last
reports take milliseconds, so a thread not back by then is stuck inside librdkafka."""
_new: Final = object.__new__

Outcome = ProduceResult | KafkaError | QiError | None
"""A message's outcome: acknowledged, failed by librdkafka, failed before it, or pending."""


class Sends:
    """The outcomes of one send or send_batch call, filled in by delivery callbacks."""

    __slots__ = (
        "delivered",
        "expected",
        "failed",
        "finish",
        "future",
        "acks",
        "messages",
        "outcomes",
        "sweep",
        "topic",
    )

    def __init__(
        self,
        topic: str,
        size: int,
        future: asyncio.Future[Any],
        finish: Callable[[Sends], object] | None = None,
        messages: Sequence[StreamingMessage] | None = None,
    ) -> None:
        self.topic = topic
        self.messages = messages
        """The messages, when ``finish`` needs them to explain a failure."""
        self.outcomes: list[Outcome] = [None] * size
        """Per message, why it failed (None: acknowledged, see ``acks``, or pending)."""
        self.acks = Acks(topic, size)
        """What the acknowledged messages' reports said."""
        self.delivered = 0
        self.failed = 0
        self.expected: int | None = None
        self.sweep = 0
        """The hub's sweep count when the call started waiting (see DeliveryHub._sweep)."""
        self.future = future
        """Resolved once every outcome is known: with ``finish(self)`` (or what the future
        it returns resolves to), else with None."""
        self.finish = finish


class _Report:
    """A reusable delivery callback: records one message's outcome in its Sends."""

    __slots__ = ("deliver", "hub", "index", "sends")

    def __init__(self, hub: DeliveryHub) -> None:
        self.hub = hub
        self.sends: Sends | None = None
        self.index = 0
        # Bound once: librdkafka keeps a reference to the callable per message.
        self.deliver = self._deliver

    def _deliver(self, error: KafkaError | None, message: Message) -> None:
        sends, index, hub = self.sends, self.index, self.hub
        self.sends = None
        # Read everything first: once back on the free list the loop may reuse it.
        spare = hub.spare
        if len(spare) < _SPARE_REPORTS:
            spare.append(self)
        if sends is None:  # cannot happen; never let poll() raise
            return
        if error is not None:
            sends.outcomes[index] = error
            sends.failed += 1
        else:
            # Only what the ProduceResult needs, built when read (see _delivered).
            acks = sends.acks
            partition = message.partition()
            offset = message.offset()
            if offset is None or offset < 0 or hub.unplaced:
                offset = _placed(hub, sends.topic, partition, offset)
            kind, millis = message.timestamp()
            acks.offsets[index] = offset
            acks.stamps[index] = millis if kind else NOT_STAMPED
            # The partition last: the loop's sweep reads it as "acknowledged" (see
            # _time_out_missing) and may run between these writes.
            acks.partitions[index] = partition
        sends.delivered += 1
        if sends.delivered == sends.expected:
            hub.completed(sends)
        elif hub.space_wanted:
            hub.completed(None)


class OneSend:
    """One ``send`` call: its own slot and its own delivery callback.

    A service's sends are mostly single messages, thousands at a time: one object per
    send (librdkafka calls it with the report) instead of a :class:`Sends`, its lists
    and a pooled report, so fewer objects to build and for the collector to walk.
    """

    __slots__ = ("finish", "future", "handed", "hub", "message", "outcome", "sweep", "topic")

    def __init__(
        self,
        hub: DeliveryHub,
        topic: str,
        message: StreamingMessage,
        future: asyncio.Future[Any],
        finish: Callable[[OneSend], object],
    ) -> None:
        self.hub = hub
        self.topic = topic
        self.message = message
        self.future = future
        self.finish = finish
        self.outcome: Outcome = None
        self.sweep = 0
        self.handed = False
        """Set by the loop once librdkafka took the message (see handed_over_one)."""

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        hub = self.hub
        self.outcome = error if error is not None else _acknowledged(hub, self.topic, message)
        if self.handed:
            hub.completed(self)
        elif hub.space_wanted:
            hub.completed(None)


Slot = Sends | OneSend
"""What the hub completes: a send_batch's (or a slow send's) Sends, or one send."""


class DeliveryHub:
    """Owns a producer's poll thread and brings completed sends back to the loop."""

    def __init__(
        self,
        producer: Producer,
        loop: asyncio.AbstractEventLoop,
        logger: logging.Logger,
        name: str,
        *,
        lingers: bool = True,
        report_timeout: float = 300.0,
    ) -> None:
        self._producer = producer
        # Without linger librdkafka sends at once: the idle thread may wait in poll()
        # then, and serve a report without first being woken by the loop.
        self._lingers = lingers
        self._loop = loop
        self._logger = logger
        self._completed: deque[Slot] = deque()
        self._wake_pending = False
        self._stop_at: float | None = None
        self._stopped: asyncio.Future[None] = loop.create_future()
        self.space_wanted = False
        """Whether a producer waits for room in librdkafka's queue."""
        # Set by the loop when a call starts waiting (or wants queue space): wakes an
        # idle poll thread at once.
        self._waiting = threading.Event()
        self._wake_scheduled = False
        # The last timestamp converted (poll thread only): a batch mostly shares one.
        self.last_timestamp = LastTimestamp()
        self.unplaced: dict[tuple[str, int | None], int] = {}
        """Per partition, the offset librdkafka gives the next message of a batch whose
        offsets the broker did not say (poll thread only, within one poll or flush)."""
        self.spare: deque[_Report] = deque()
        """Report callbacks free for reuse (taken by the loop, returned by the poll thread)."""
        self.space = asyncio.Event()
        """Set when librdkafka served reports after a producer found its queue full."""
        self.pending: set[Slot] = set()
        """Slots whose outcomes are not all known yet (loop thread only)."""
        self._report_timeout = report_timeout
        """librdkafka's message.timeout.ms, in seconds: when every report is due."""
        self._sweeps = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self.served_at = time.monotonic()
        """When the poll thread last came back from librdkafka (for the overdue warning)."""
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    # -- loop side -----------------------------------------------------------------------------

    def callback(self, sends: Sends, index: int) -> Callable[[KafkaError | None, Message], None]:
        """The delivery callback for message ``index`` of ``sends``."""
        spare = self.spare
        report = spare.pop() if spare else _Report(self)
        report.sends = sends
        report.index = index
        return report.deliver

    def release(self, callback: Callable[[KafkaError | None, Message], None]) -> None:
        """Take back a callback librdkafka refused (its message was never queued)."""
        report = getattr(callback, "__self__", None)
        if isinstance(report, _Report):
            report.sends = None
            self.spare.append(report)

    @property
    def closing(self) -> bool:
        """Whether stop() was called: nothing new should be produced."""
        return self._stop_at is not None

    def handed_over(self, sends: Sends, produced: int) -> None:
        """All of ``sends`` was given to librdkafka, ``produced`` messages of it accepted.

        After stop() no report will come any more, so ``sends`` completes at once
        with what it has.
        """
        sends.expected = produced
        if sends.delivered == produced or self._stopped.done():
            self._complete(sends)
        else:
            self._wait_for(sends)

    def handed_over_one(self, one: OneSend) -> None:
        """librdkafka took ``one``'s message: complete it when its report comes.

        Its report may come first (served by the poll thread meanwhile): each side checks
        for completion after its own write, as for a Sends.
        """
        one.handed = True
        if one.outcome is not None or self._stopped.done():
            self._complete(one)
        else:
            self._wait_for(one)

    def _wait_for(self, sends: Slot) -> None:
        sends.sweep = self._sweeps
        # Once stop() began, it bounds every call still waiting (and cancelled the sweeper):
        # a sweep timer started now would outlive the disconnect.
        if self._sweeper is None and self._stop_at is None:
            self._sweeper = self._loop.call_later(_SWEEP_SECONDS, self._sweep)
        if not self.pending:
            # The first call to wait: the poll thread is idle, wake it now.
            self.pending.add(sends)
            self._waiting.set()
        else:
            self.pending.add(sends)
            if not self._wake_scheduled:
                # Once per loop iteration: a burst of sends (a gather) wakes the poll
                # thread when the burst is over, not while it still competes for the GIL.
                self._wake_scheduled = True
                self._loop.call_soon(self._wake_thread)

    def _wake_thread(self) -> None:
        self._wake_scheduled = False
        self._waiting.set()

    def _sweep(self) -> None:
        """Complete the calls librdkafka left without a report well past its own timeout."""
        self._sweeps += 1
        # Sweeps are _SWEEP_SECONDS apart (or more): a slot that has waited through this
        # many has waited at least the report timeout and its grace.
        patience = 1 + int((self._report_timeout + _REPORT_GRACE) / _SWEEP_SECONDS)
        overdue = [slot for slot in self.pending if self._sweeps - slot.sweep > patience]
        if overdue:
            self._give_up_on(overdue)
        self._sweeper = self._loop.call_later(_SWEEP_SECONDS, self._sweep) if self.pending else None

    def _give_up_on(self, overdue: list[Slot]) -> None:
        missing = 0
        for slot in overdue:
            missing += _time_out_missing(slot, self._report_timeout + _REPORT_GRACE)
            self._complete(slot)
        self._logger.warning(
            "confluent producer: librdkafka gave no delivery report for %d message(s) of "
            "%d call(s) within %.1fs (message.timeout.ms and %.0fs of grace); they are "
            "reported timed out, delivery unknown. librdkafka holds %d message(s); the poll "
            "thread last came back from it %.1fs ago",
            missing,
            len(overdue),
            self._report_timeout + _REPORT_GRACE,
            _REPORT_GRACE,
            len(self._producer),
            time.monotonic() - self.served_at,
        )

    def want_space(self) -> None:
        """Ask to have ``space`` set when librdkafka next serves delivery reports."""
        self.space.clear()
        self.space_wanted = True
        self._waiting.set()

    async def stop(self, flush_seconds: float) -> bool:
        """Flush for up to ``flush_seconds``, purge the rest (reported failed), end the thread;
        say whether the thread ended.

        Bounded even if librdkafka never gives the thread back: then every call still
        waiting completes with what it has, and the thread is left to end on its own.
        """
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._thread.ident is None:
            return True
        self._stop_at = time.monotonic() + flush_seconds
        self._waiting.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._stopped), flush_seconds + STOP_GRACE)
        except TimeoutError:
            self._logger.error(
                "confluent producer: the poll thread did not come back from librdkafka "
                "within %.1fs of the close (last came back %.1fs ago); %d call(s) still "
                "waiting are completed with what they have",
                flush_seconds + STOP_GRACE,
                time.monotonic() - self.served_at,
                len(self.pending),
            )
            self._stopped_on_loop()
            return False
        except asyncio.CancelledError:
            # Cut short (disconnect's own bound is shorter than this one): the sweep is
            # cancelled already, and the thread may never come back to complete the calls
            # still waiting, so they complete now with what they have.
            self._stopped_on_loop()
            raise
        self._thread.join(timeout=1.0)
        return True

    def _drain(self) -> None:
        self._wake_pending = False
        completed = self._completed
        while completed:
            self._complete(completed.popleft())

    def _complete(self, sends: Slot) -> None:
        self.pending.discard(sends)
        future = sends.future
        if future.done():  # its caller was cancelled
            return
        if sends.finish is None:
            future.set_result(None)
            return
        try:
            result = sends.finish(sends)  # type: ignore[arg-type]  # each its own kind
        except Exception as exc:  # reaches the awaiting caller, whose boundary reports it
            future.set_exception(exc)
        else:
            if isinstance(result, asyncio.Future):  # finish must ask the broker first
                result.add_done_callback(functools.partial(_settle, future))
            else:
                future.set_result(result)

    # -- poll thread ---------------------------------------------------------------------------

    def completed(self, sends: Slot | None) -> None:
        """Queue ``sends`` (if any) for the loop; wake it unless a wake-up is on its way.

        Called from the delivery callbacks, so a loop waiting on a call (or on queue
        space) hears of it while ``flush()`` goes on delivering other messages.
        """
        if sends is not None:
            self._completed.append(sends)
        self._hand_back(True)

    def _hand_back(self, served: bool) -> None:
        try:
            if self._completed and not self._wake_pending:
                self._wake_pending = True
                self._loop.call_soon_threadsafe(self._drain)
            if self.space_wanted and (served or self._completed):
                self.space_wanted = False
                self._loop.call_soon_threadsafe(self.space.set)
        except RuntimeError:  # the loop is closed; nobody waits for these any more
            pass

    def _main(self) -> None:
        producer = self._producer
        waiting = self._waiting
        try:
            while self._stop_at is None:
                try:
                    self._serve(producer, waiting)
                except KafkaException as exc:
                    if not _fatal(exc):
                        raise
                    # confluent-kafka raises librdkafka's fatal error (a fenced transactional
                    # producer, say) from poll() once; the reports still owed come with the
                    # next polls, so this thread must go on serving them.
                    self._logger.warning("confluent producer: %s", exc.args[0].str())
            self._finish(producer)
        except Exception:
            self._logger.exception("confluent producer poll thread failed")
        finally:
            self._signal_stopped()

    def _serve(self, producer: Producer, waiting: threading.Event) -> None:
        # One batch's reports are all served by one poll() or flush() call.
        self.unplaced.clear()
        if (self.pending or self.space_wanted) and len(producer):
            # Someone waits for what librdkafka holds: send it now, no linger.
            producer.flush(_FLUSH_SECONDS)
            self.served_at = time.monotonic()
            self._hand_back(True)
            return
        if self._lingers:
            waiting.wait(_IDLE_SECONDS)
            waiting.clear()
            served = producer.poll(0) > 0
        else:
            served = producer.poll(_IDLE_SECONDS) > 0
        self.served_at = time.monotonic()
        self._hand_back(served)

    def _finish(self, producer: Producer) -> None:
        assert self._stop_at is not None
        while (remaining := self._stop_at - time.monotonic()) > 0:
            self.unplaced.clear()
            left = producer.flush(min(_FLUSH_STEP, remaining))
            self._hand_back(True)
            if not left:
                return
        # Out of time: fail what is left. librdkafka reports each purged message
        # (_PURGE_QUEUE: never sent; _PURGE_INFLIGHT: sent, fate unknown).
        producer.purge(in_queue=True, in_flight=True)
        producer.poll(0)
        self._hand_back(True)

    def _signal_stopped(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._stopped_on_loop)
        except RuntimeError:
            pass

    def _stopped_on_loop(self) -> None:
        # No report comes any more: what is still pending completes with what it has
        # (its missing outcomes read as "delivery unknown").
        self._drain()
        for sends in list(self.pending):
            self._complete(sends)
        if not self._stopped.done():
            self._stopped.set_result(None)


def _time_out_missing(slot: Slot, waited: float) -> int:
    """Mark each message of ``slot`` still without a report timed out; return how many.

    A report may still come while this runs (the poll thread is slow, not stuck): then a
    message acknowledged meanwhile may read as timed out, which its "delivery unknown"
    verdict allows. Nothing reads as written that was not.
    """
    timed_out = KafkaError(
        KafkaError._MSG_TIMED_OUT, f"librdkafka gave no delivery report within {waited:.1f}s"
    )
    if isinstance(slot, OneSend):
        if slot.outcome is not None:
            return 0
        slot.outcome = timed_out
        return 1
    missing = 0
    outcomes, acknowledged = slot.outcomes, slot.acks.partitions
    for index, outcome in enumerate(outcomes):
        if outcome is None and acknowledged[index] is None:
            outcomes[index] = timed_out
            missing += 1
    return missing


def _settle(future: asyncio.Future[Any], finished: asyncio.Future[Any]) -> None:
    """Resolve ``future`` as ``finished`` was resolved (unless its caller gave up)."""
    if future.done():
        return
    if finished.cancelled():
        future.cancel()
    elif (exc := finished.exception()) is not None:
        future.set_exception(exc)
    else:
        future.set_result(finished.result())


def _fatal(exc: KafkaException) -> bool:
    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and bool(error.fatal())


def _acknowledged(hub: DeliveryHub, topic: str, message: Message) -> ProduceResult:
    """The ProduceResult of an acknowledged message's report.

    Built in the report, so librdkafka's Message (and its copy of key and value) is freed
    at once: keeping thousands for the loop cost more. The fields are set directly: this
    runs once per message, under the GIL.
    """
    offset = message.offset()
    partition = message.partition()
    if offset is None or offset < 0 or hub.unplaced:
        offset = _placed(hub, topic, partition, offset)
    kind, millis = message.timestamp()
    last = hub.last_timestamp
    if not kind:  # TIMESTAMP_NOT_AVAILABLE
        stamp = None
    elif millis == last.millis:
        stamp = last.stamp
    else:
        stamp = last.stamp = datetime_from_millis(millis)
        last.millis = millis
    set_topic, set_partition, set_offset, set_stamp = PRODUCE_RESULT_SETTERS
    result = _new(ProduceResult)
    set_topic(result, topic)
    set_partition(result, partition)
    set_offset(result, offset)
    set_stamp(result, stamp)
    return result


def _placed(hub: DeliveryHub, topic: str, partition: int | None, offset: int | None) -> int:
    """A reported offset as the contract gives it: -1 for a message of a batch the broker
    acknowledged without saying where (only called for a report without an offset, or
    while such a batch is being reported)."""
    if offset is None or offset < 0:
        # A batch acknowledged without a base offset (-1: acks=0, or a duplicate of a batch
        # the broker already wrote): librdkafka numbers its messages -1, 0, 1, ...
        # (rd_kafka_msgq_set_metadata), reported one after another.
        hub.unplaced[(topic, partition)] = 0
        return -1
    # The rest of that batch, if this report continues the numbering. A report of a later
    # batch cannot: the unplaced batch of n messages lies at n - 1 or beyond, so the next
    # one starts past the n - 2 the numbering reached.
    key = (topic, partition)
    if hub.unplaced.get(key) == offset:
        hub.unplaced[key] = offset + 1
        return -1
    hub.unplaced.pop(key, None)
    return offset
