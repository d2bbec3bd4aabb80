"""A consumer group on the memory broker, each member on its own event loop, fully recorded.

The driver (a hypothesis state machine) calls these operations; every one is recorded
in ``history`` and the checker reads it. The broker's group observers supply the
exact assignments, revocations and commits (histories are ``exact``).

Timeouts are short, so a schedule that hangs fails in seconds; handlers sleep at most
a tenth of ``request_timeout``, so a revocation never gives up waiting for one.

A ``transactional`` cluster is an exactly-once pipeline: each member runs with a
transactional producer (its id follows the member's label, so a replacement fences
the member it replaces), writes each input's transformation to ``output_topic`` in
the run loop's transactions, and records what ``on_error`` hears; once quiet, the
output topic is read with read_committed for I7. Its history is checked in the
group-wide form: an abort sends every partition its transaction covered back to the
committed offset, which the recorder cannot tell from a skip without the engine.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, TypeVar

from qi.base import QiError, Result, Success
from qi.base.streaming import (
    ConsumerConfig,
    MessageBatch,
    ProducerConfig,
    StreamingClient,
    StreamingConfig,
    StreamingConsumer,
    StreamingMessage,
    StreamingProducer,
    SubscriptionConfig,
    TopicConfig,
    create_streaming_client,
)
from qi.base.streaming.backends.memory import GroupEvent, broker_for, discard_broker
from testkit import ok

from ._checker import Checker
from ._events import (
    Assigned,
    Call,
    Committed,
    Crashed,
    Event,
    Evicted,
    OutputsRead,
    Quiet,
    Reported,
    Revoked,
    Revoking,
    Sought,
)
from ._recorder import (
    Plan,
    PlannedHandler,
    library_leftovers,
    now,
    output_of,
    record_produced,
    timed,
)
from ._stepped import SteppedLoops

T = TypeVar("T")

REQUEST_TIMEOUT: Final = 1.0
CONNECTION_TIMEOUT: Final = 1.0
SESSION_TIMEOUT: Final = 2.0
MAX_BATCH_SIZE: Final = 4
"""Small, so the pause threshold is its floor: max(2 * 4, 1000) = 1000 buffered messages."""
RETRY_BACKOFF: Final = 0.02
AUTO_COMMIT_INTERVAL: Final = 0.05
SLACK: Final = 0.5
"""Seconds a call may outlive its bound here: loop turns, garbage collection."""
STUCK: Final = 3.0
"""Once the schedule ends, seconds without progress after which the group counts as stuck
(the longest legitimate pause is a revocation waiting request_timeout for a crashed handler)."""
SETTLE: Final = 120.0
"""At most this long for the group to finish, however slowly it progresses."""
_HANG: Final = 10.0
"""Beyond its bound, how long the driver waits for a call before calling it a hang."""

RUN_BOUND: Final = 2 * SESSION_TIMEOUT + CONNECTION_TIMEOUT
DISCONNECT_BOUND: Final = 2 * REQUEST_TIMEOUT


@dataclass(eq=False)
class Member:
    """One consumer of the group, on its own loop; each run() is a new incarnation."""

    label: str
    loop: asyncio.AbstractEventLoop
    client: StreamingClient
    consumer: StreamingConsumer
    each_batch: bool
    incarnation: int = 0
    state: Literal["running", "stopped", "crashed"] = "stopped"
    producer: StreamingProducer | None = None
    """An exactly-once member's transactional producer."""

    @property
    def name(self) -> str:
        """How the history names the current incarnation."""
        return f"{self.label}#{self.incarnation}"


@dataclass(eq=False)
class MemoryCluster:
    """A private memory broker, a producer, and a group whose members come, go and crash."""

    loops: SteppedLoops = field(default_factory=SteppedLoops)
    history: list[Event] = field(default_factory=list)
    checker: Checker = field(default_factory=lambda: Checker(exact=True, slack=SLACK))
    members: list[Member] = field(default_factory=list)
    transactional: bool = False

    def __post_init__(self) -> None:
        if self.transactional:
            self.checker = Checker(exact=False, slack=SLACK, transactional=True)
        run = uuid.uuid4().hex[:10]
        self.prefix = f"inv-{run}"
        self.brokers = (f"memory-{self.prefix}:9092",)
        self.group = f"{self.prefix}-group"
        self.topics: dict[str, int] = {}
        self.broker = broker_for(self.brokers)
        self._threads_before = frozenset(threading.enumerate())
        self._stop_observing = self.broker.observe_groups(self._observe)
        self._names: dict[str, str] = {}
        self._observer_errors: list[str] = []
        self._joining: dict[str, str] = {}
        self._attempts: dict[tuple[str, int, int], int] = {}
        self._seq = itertools.count()
        self._labels = itertools.count(1)
        self._fed = 0
        self.control = self.loops.new_loop()
        self._client = create_streaming_client("memory", self._config("control"))
        self._producer = self._on_control(self._client.get_producer(), "get_producer")
        self._admin = self._on_control(self._client.get_admin(), "get_admin")
        self.new_topic(3)
        self.output_topic: str | None = None
        if self.transactional:
            self.output_topic = f"{self.prefix}-out"
            # As many partitions as any input topic: an output goes to its input's partition.
            self._on_control(
                self._admin.create_topics([TopicConfig(self.output_topic, 3)]), "create_topics"
            )

    # -- the schedule's operations -------------------------------------------------------------

    def new_topic(self, partitions: int) -> str:
        """A topic the group's subscription covers: the first by name, the others by pattern."""
        name = (
            f"{self.prefix}-base" if not self.topics else f"{self.prefix}-extra-{len(self.topics)}"
        )
        self._on_control(
            self._admin.create_topics([TopicConfig(name, partitions)]), "create_topics"
        )
        self.topics[name] = partitions
        return name

    def produce(self, topic: str, partition: int | None, plans: Sequence[Plan]) -> None:
        """Send one message (``send``) or a batch (``send_batch``); record what was acknowledged."""
        messages = [StreamingMessage(plan.value(), partition=partition) for plan in plans]
        if len(messages) == 1:
            sent = self._on_control(
                self._timed_send(self._producer.send(topic, messages[0])), "send"
            )
            record_produced(self.record, [sent], [messages[0].value or b""])
            return
        batch = self._on_control(
            self._timed_send(self._producer.send_batch(MessageBatch(topic, tuple(messages)))),
            "send_batch",
        )
        record_produced(self.record, batch.results, [message.value or b"" for message in messages])

    def plan(self, fails: int = 0, delay_ms: int = 0) -> Plan:
        """A plan with the next sequence number."""
        return Plan(next(self._seq), fails, delay_ms)

    def add_member(self, each_batch: bool, auto_commit: bool) -> Member:
        """A new consumer on a loop of its own, started (run() returned)."""
        member = self.new_member(each_batch, auto_commit)
        self.start(member)
        return member

    def new_member(
        self, each_batch: bool, auto_commit: bool, replacing: Member | None = None
    ) -> Member:
        """A consumer on a loop of its own, connected, not started; ``replacing`` a member,
        the next incarnation of its label (an exactly-once one fences it, here and now)."""
        label = f"m{next(self._labels)}" if replacing is None else replacing.label
        loop = self.loops.new_loop()
        client = create_streaming_client("memory", self._config(label))
        settings = ConsumerConfig(
            group_id=self.group,
            session_timeout=SESSION_TIMEOUT,
            heartbeat_interval=SESSION_TIMEOUT / 4,
            auto_commit=auto_commit and not self.transactional,
            auto_commit_interval=AUTO_COMMIT_INTERVAL,
            max_batch_size=MAX_BATCH_SIZE,
        )
        consumer = self._run(
            loop, client.get_consumer(settings), "get_consumer", CONNECTION_TIMEOUT
        )
        member = Member(label, loop, client, ok(consumer), each_batch)
        if replacing is not None:
            member.incarnation = replacing.incarnation
        if self.transactional:
            config = ProducerConfig(transactional_id=self._client_id(label))
            producer = self._run(loop, client.get_producer(config), "get_producer", REQUEST_TIMEOUT)
            member.producer = ok(producer)
        self.members.append(member)
        return member

    def start(self, member: Member) -> None:
        """Connect (again), subscribe and run: a new incarnation of ``member``."""
        member.incarnation += 1
        name = member.name
        consumer = member.consumer
        self._call(member, "connect", CONNECTION_TIMEOUT, "connection_timeout", consumer.connect())
        subscription = SubscriptionConfig(
            topics=(f"{self.prefix}-base",),
            pattern=rf"{self.prefix}-extra-\d+",
            from_beginning=True,
        )
        ok(self._run(member.loop, consumer.subscribe(subscription), "subscribe", REQUEST_TIMEOUT))
        self._joining[self._client_id(member.label)] = name
        handler = PlannedHandler(self.record, name, self._attempts, self.output_topic)

        def report(error: QiError) -> None:
            if member.producer is not None:
                self.record(Reported(now(), name, error.code))

        config = handler.run_config(member.each_batch, RETRY_BACKOFF, report, member.producer)
        started = self._call(
            member,
            "run",
            RUN_BOUND,
            "2 * session_timeout + connection_timeout",
            consumer.run(config),
        )
        member.state = "running" if isinstance(started, Success) else "stopped"

    def disconnect(self, member: Member) -> None:
        """A clean leave: disconnect(), then whatever of the library is still alive."""
        self._call(
            member,
            "disconnect",
            DISCONNECT_BOUND,
            "2 * request_timeout",
            member.consumer.disconnect(),
        )

        async def leftovers() -> None:
            self.record(
                library_leftovers(
                    member.name,
                    ignore_tasks=("qi-memory-rebalance",),
                    ignore_threads=self._threads_before,
                )
            )

        self._run(member.loop, leftovers(), "leftovers", REQUEST_TIMEOUT)
        member.state = "stopped"

    def crash(self, member: Member) -> None:
        """Close the member's loop as it stands; the coordinator evicts it at once."""
        # In memory the coordinator's rebalance runs as a task on the loop of the member that
        # asked for it; a real coordinator does not die with a member, so let it finish first.
        self.loops.run_until(lambda: not _rebalancing_on(member.loop), REQUEST_TIMEOUT * 3)
        self.record(Crashed(now(), member.name))
        member.state = "crashed"
        # Only the graveyard keeps it now: nothing of it runs or is collected mid-test.
        self.members.remove(member)
        self.loops.crash(member.loop, member)
        # reset() wakes every reader, and the broker drops those whose loop is closed: then
        # only the graveyard keeps the crashed member (no faults are set here to clear).
        self.broker.reset()
        self.expire_sessions()

    def replace(self, member: Member) -> Member:
        """Start the next incarnation of a crashed ``member`` (its transactional id too)."""
        replacement = self.new_member(member.each_batch, auto_commit=False, replacing=member)
        self.start(replacement)
        return replacement

    def pause(self, member: Member) -> None:
        """Freeze the member mid-flight: its loop gets no turns (a SIGSTOP)."""
        self.loops.pause(member.loop)

    def resume(self, member: Member) -> None:
        """Let a paused member carry on."""
        self.loops.resume(member.loop)

    def expire_sessions(self) -> None:
        """Make the coordinator notice dead members now (Kafka would after session_timeout)."""

        async def rebalance() -> None:
            self.broker.group(self.group).request_rebalance()

        self._run(self.control, rebalance(), "request_rebalance", REQUEST_TIMEOUT)

    def seek(self, member: Member, key: tuple[str, int], target: int | str) -> None:
        """seek(); a Success is recorded with the offset it resolved to."""
        sought = self._call(
            member,
            "seek",
            REQUEST_TIMEOUT,
            "request_timeout",
            member.consumer.seek(key[0], key[1], target),
        )
        if isinstance(sought, Success):
            offset = 0 if target == "earliest" else int(target)
            self.record(Sought(now(), member.name, key[0], key[1], offset))

    def commit(self, member: Member) -> None:
        """commit_offsets()."""
        self._call(
            member,
            "commit_offsets",
            REQUEST_TIMEOUT,
            "request_timeout",
            member.consumer.commit_offsets(),
        )

    def wait(self, seconds: float) -> None:
        """Let every loop run."""
        self.loops.run_for(seconds)

    def settle(self) -> None:
        """End the schedule: a live member, everything handled (or no progress), then quiet."""
        if not any(member.state == "running" for member in self.members):
            self.add_member(each_batch=False, auto_commit=True)
        self.expire_sessions()
        self.loops.run_until(_Progress(self).finished_or_stuck, SETTLE)
        self.record(Quiet(now()))
        for member in self.members:
            if member.state == "running":
                self.disconnect(member)
        if self.output_topic is not None:
            self.read_outputs(self.output_topic)
        self.feed()

    def read_outputs(self, topic: str) -> None:
        """What a read_committed consumer of ``topic`` sees, straight from the broker's log,
        and whether a transaction still open holds any of it back."""
        log = self.broker.topic(topic)
        assert log is not None
        complete = True
        for partition in range(len(log.logs)):
            end = log.readable_end(partition, committed_only=True)
            complete = complete and end == len(log.logs[partition])
            for message in log.read(partition, 0, end, committed_only=True):
                self.record(output_of(partition, message.offset, message.key, message.value))
        self.record(OutputsRead(now(), complete))

    def close(self) -> None:
        """Disconnect what is left, close every loop, forget the broker."""
        try:
            for member in self.members:  # stopped ones too: a run() that failed stays connected
                self._run(
                    member.loop, member.client.disconnect(), "disconnect", DISCONNECT_BOUND + _HANG
                )
            self._run(
                self.control, self._client.disconnect(), "disconnect", REQUEST_TIMEOUT + _HANG
            )
        finally:
            self._stop_observing()
            discard_broker(self.brokers)
            self.loops.close()

    def failed_calls(self) -> list[str]:
        """Lifecycle calls that failed: on memory, connect, run and disconnect always succeed."""
        return [
            f"{event.member}: {event.name}() -> {event.outcome}"
            for event in self.history
            if isinstance(event, Call)
            and event.name in ("connect", "run", "disconnect")
            and event.outcome != "ok"
        ]

    # -- the history ---------------------------------------------------------------------------

    def record(self, event: Event) -> None:
        """Append an event (they arrive in time order: one thread, one clock)."""
        self.history.append(event)

    def feed(self) -> bool:
        """Give the checker what it has not seen; whether a violation is known."""
        if self._observer_errors:
            raise AssertionError(f"the recorder failed on group events: {self._observer_errors}")
        new, self._fed = self.history[self._fed :], len(self.history)
        self.checker.feed_all(new)
        return bool(self.checker.violations)

    def _observe(self, event: GroupEvent) -> None:
        # The broker logs and swallows an observer's exception: keep it for feed() to raise.
        try:
            self._translate(event)
        except Exception as exc:
            self._observer_errors.append(f"{event}: {exc!r}")

    def _translate(self, event: GroupEvent) -> None:
        if event.group_id != self.group:
            return
        if event.kind == "joined":
            client_id = event.member_id.rsplit("-", 1)[0]
            self._names[event.member_id] = self._joining[client_id]
            return
        name = self._names[event.member_id]
        keys = tuple(sorted(event.partitions))
        at = now()
        match event.kind:
            case "assigned":
                self.record(Assigned(at, name, keys))
            case "revoking":
                self.record(Revoking(at, name, keys))
            case "revoked":
                self.record(Revoked(at, name, keys))
            case "committed":
                offsets = tuple(
                    (topic, part, offset) for (topic, part), offset in sorted(event.offsets.items())
                )
                self.record(Committed(at, name, offsets))
            case "evicted":
                self.record(Evicted(at, name))

    # -- running calls -------------------------------------------------------------------------

    def _config(self, label: str) -> StreamingConfig:
        return StreamingConfig(
            client_id=self._client_id(label),
            brokers=self.brokers,
            connection_timeout=CONNECTION_TIMEOUT,
            request_timeout=REQUEST_TIMEOUT,
        )

    def _client_id(self, label: str) -> str:
        return f"{self.prefix}-{label}"

    def _call(
        self,
        member: Member,
        name: str,
        bound: float,
        rule: str,
        call: Awaitable[Result[T, QiError]],
    ) -> Result[T, QiError]:
        return self._run(
            member.loop, timed(self.record, member.name, name, bound, rule, call), name, bound
        )

    def _run(
        self, loop: asyncio.AbstractEventLoop, call: Awaitable[T], what: str, bound: float
    ) -> T:
        async def wait() -> T:
            return await call

        return self.loops.run(loop, wait(), bound + _HANG, what)

    def _on_control(self, call: Awaitable[Result[T, QiError]], what: str) -> T:
        return ok(self._run(self.control, call, what, REQUEST_TIMEOUT))

    def _timed_send(self, call: Awaitable[Result[T, QiError]]) -> Awaitable[Result[T, QiError]]:
        return timed(self.record, "producer", "send", REQUEST_TIMEOUT, "request_timeout", call)


class _Progress:
    """Whether a settling group is done: everything handled, or no progress for STUCK s."""

    def __init__(self, cluster: MemoryCluster) -> None:
        self._cluster = cluster
        self._missing = -1
        self._since = now()
        self._checked = 0.0

    def finished_or_stuck(self) -> bool:
        at = now()
        if at - self._checked < 0.05:  # counting what is missing walks the whole history
            return False
        self._checked = at
        self._cluster.feed()
        checker = self._cluster.checker
        if self._cluster.transactional:  # handled is not enough: committed with its outputs
            missing = checker.uncommitted()
        else:
            missing = sum(len(offsets) for offsets in checker.unhandled().values())
        if missing != self._missing:
            self._missing, self._since = missing, at
        return missing == 0 or at - self._since > STUCK


def _rebalancing_on(loop: asyncio.AbstractEventLoop) -> bool:
    return any(task.get_name() == "qi-memory-rebalance" for task in asyncio.all_tasks(loop))
