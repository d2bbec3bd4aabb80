"""A consumer group of child processes on a real broker (behind the fault proxy), recorded.

Each member is a child process (``_child_member``) writing its own history file; this
process records what it produced, the kills, and the group's committed offsets, read
at snapshots by a raw librdkafka consumer (histories are not ``exact``: the checker
uses the group-wide forms). All histories share CLOCK_MONOTONIC and merge by time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from qi.base import Success
from qi.base.streaming import (
    ErrorCode,
    MessageBatch,
    ProducerConfig,
    ProduceResult,
    StreamingClient,
    StreamingConfig,
    StreamingMessage,
    TopicConfig,
    create_streaming_client,
)
from reliability._proxy import FaultProxy
from reliability._support import producer_config_for
from testkit import ok

from ._events import (
    Call,
    CommitSnapshot,
    Crashed,
    Event,
    Fault,
    OutputsRead,
    Produced,
    Quiet,
    read_lines,
)
from ._holdings import Holdings
from ._output_reader import read_committed_outputs
from ._recorder import Plan, now, record_produced, timed

SESSION_TIMEOUT: Final = 4.0
"""Members' session timeout on Tansu; noida-db, like Kafka, refuses less than 6 s
(``group.min.session.timeout.ms``)."""
NOIDA_SESSION_TIMEOUT: Final = 6.0
REQUEST_TIMEOUT: Final = 5.0
CONNECTION_TIMEOUT: Final = 3.0
COMMIT_INTERVAL: Final = 0.3
STUCK_SESSIONS: Final = 4
"""Session timeouts without progress after which a settling group counts as stuck: a dead
member's session expires and the rebalance that follows ends well within them."""
TRANSACTION_TIMEOUT: Final = 20.0
"""Exactly-once members' transactions: a killed member's open one ends by then at worst."""
SLACK: Final = 2.0
"""Seconds a call may outlive its bound on a real broker (scheduling of three processes)."""
UNREPRESENTABLE_MS: Final = 2**62
"""A record timestamp Python's datetime cannot hold (year ~146 million)."""
_TESTS: Final = Path(__file__).resolve().parent.parent


@dataclass(eq=False)
class Child:
    """One member process."""

    name: str
    process: asyncio.subprocess.Process
    history: Path
    stderr: Path

    def log_tail(self) -> str:
        text = self.stderr.read_text(errors="replace") if self.stderr.exists() else ""
        return f"--- {self.name} (exit {self.process.returncode}) ---\n{text[-1500:]}"


@dataclass(frozen=True)
class Cluster:
    """Where members connect, what the broker can take, and the fault proxy in front of it.

    Tansu sits behind the proxy; noida-db always advertises its own listener, so on it
    the schedules cut and stall nothing. noida-db 0.2.3 never evicts a member that died
    without leaving (its session timeout is not enforced: the group's next rebalance
    waits for it for ever), so on it members are added and stopped, never killed.
    """

    bootstrap: str
    proxy: FaultProxy | None
    session_timeout: float = SESSION_TIMEOUT
    evicts_dead_members: bool = True
    keeps_departed_leader: bool = False
    """Tansu 0.6: a leader that leaves while a rebalance forms stays the forming group's
    leader, so the group cannot form (see ``_fault`` in test_real_schedules)."""


@dataclass(eq=False)
class RealGroup:
    """Three (or so) member processes sharing a topic, with a producer and fault switches."""

    backend: str
    cluster: Cluster
    workdir: Path
    seed: int
    partitions: int = 6
    transactional: bool = False
    """Exactly-once members: each input's transformation goes to ``output_topic``."""
    history: list[Event] = field(default_factory=list)
    children: list[Child] = field(default_factory=list)
    run_failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        run = uuid.uuid4().hex[:10]
        self.topic = f"inv-{run}"
        self.group = f"inv-{run}-group"
        self.output_topic = f"inv-{run}-out" if self.transactional else None
        self.random = random.Random(self.seed)
        self._labels = 0
        self._seq = 0
        self._client: StreamingClient | None = None
        self._snapshots: asyncio.Task[None] | None = None
        self._stopped_at: dict[str, float] = {}
        self._holdings = Holdings()

    # -- set-up ----------------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the topic and the producer; start taking snapshots of the group's offsets."""
        config = StreamingConfig(
            client_id=f"{self.topic}-producer",
            brokers=(self.cluster.bootstrap,),
            connection_timeout=CONNECTION_TIMEOUT,
            request_timeout=REQUEST_TIMEOUT,
        )
        self._client = create_streaming_client(self.backend, config)
        admin = ok(await self._client.get_admin())
        topics = [self.topic] if self.output_topic is None else [self.topic, self.output_topic]
        ok(await admin.create_topics([TopicConfig(name, self.partitions) for name in topics]))
        self._snapshots = asyncio.create_task(self._snapshot_loop())

    async def close(self) -> None:
        """Kill what is left and disconnect; idempotent."""
        for child in self.children:
            if child.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
                await child.process.wait()
        if self._snapshots is not None:
            self._snapshots.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._snapshots
        if self._client is not None:
            await self._client.disconnect()

    # -- members ---------------------------------------------------------------------------------

    def live(self) -> list[Child]:
        """Members whose process runs."""
        return [child for child in self.children if child.process.returncode is None]

    async def start_member(self, replacing: Child | None = None) -> Child:
        """A new member process (its run() is recorded by the child); ``replacing`` a member
        it is the next incarnation of, with the same transactional id."""
        if replacing is None:
            self._labels += 1
            label, incarnation = f"m{self._labels}", 1
        else:
            label, before = replacing.name.split("#")
            incarnation = int(before) + 1
        name = f"{label}#{incarnation}"
        history = self.workdir / f"{name}.jsonl"
        stderr = self.workdir / f"{name}.err"
        settings: dict[str, Any] = {
            "backend": self.backend,
            "brokers": [self.cluster.bootstrap],
            "topic": self.topic,
            "group": self.group,
            "member": name,
            "outfile": str(history),
            "each_batch": self.random.random() < 0.3,
            # Drawn either way: the seed's schedule stays the same.
            "auto_commit": self.random.random() < 0.5 and not self.transactional,
            "commit_interval": COMMIT_INTERVAL,
            "max_batch_size": 20,
            "retry_backoff": 0.05,
            "session_timeout": self.cluster.session_timeout,
            "request_timeout": REQUEST_TIMEOUT,
            "connection_timeout": CONNECTION_TIMEOUT,
            "output_topic": self.output_topic,
            "transactional_id": f"{self.group}-{label}",
            "transaction_timeout": TRANSACTION_TIMEOUT,
        }
        with stderr.open("wb") as errors:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "invariants._child_member",
                json.dumps(settings),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=errors,
                env={**os.environ, "PYTHONPATH": os.pathsep.join([str(_TESTS), *sys.path])},
            )
        child = Child(name, process, history, stderr)
        self.children.append(child)
        return child

    async def running(self, children: Sequence[Child], within: float) -> None:
        """Wait until each child's run() returned (or it exited), at most ``within`` s."""

        def started(child: Child) -> bool:
            if child.process.returncode is not None or not child.history.exists():
                return child.process.returncode is not None
            return b'"name":"run"' in child.history.read_bytes()

        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if all(started(child) for child in children):
                return
            await asyncio.sleep(0.1)

    async def formed(self, within: float) -> bool:
        """Wait until the live members share every partition (a generation formed, no
        member waiting for an assignment), at most ``within`` s; whether they did."""
        every = frozenset((self.topic, partition) for partition in range(self.partitions))
        deadline = time.monotonic() + within
        while True:
            live = [child.history for child in self.live()]
            if live and self._holdings.formed(live, every):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.1)

    async def kill(self, child: Child) -> None:
        """SIGKILL: the member dies mid-whatever, its session expires later."""
        with contextlib.suppress(ProcessLookupError):
            child.process.send_signal(signal.SIGKILL)
        await child.process.wait()
        self.history.append(Crashed(now(), child.name))

    async def take_transactional_id(self, child: Child) -> None:
        """Register ``child``'s transactional id from this process, as a new instance of it
        starting elsewhere would: the broker fences ``child``'s producer and aborts its
        open transaction."""
        assert self._client is not None
        label = child.name.split("#")[0]
        config = ProducerConfig(
            transactional_id=f"{self.group}-{label}", transaction_timeout=TRANSACTION_TIMEOUT
        )
        producer = ok(await self._client.get_producer(config))
        await producer.disconnect()

    def pause(self, child: Child) -> None:
        """SIGSTOP: the member freezes mid-whatever, connections open (a long GC pause)."""
        child.process.send_signal(signal.SIGSTOP)

    def resume(self, child: Child) -> None:
        """SIGCONT: the paused member carries on as if nothing happened."""
        child.process.send_signal(signal.SIGCONT)

    async def stop(self, child: Child) -> None:
        """SIGTERM: the member disconnects (recording how long that took) and exits."""
        self._stopped_at.setdefault(child.name, now())
        # A child still starting has no SIGTERM handler yet (its history file appears
        # once it has one): the default action would kill it instead of asking it.
        async with asyncio.timeout(2 * REQUEST_TIMEOUT + 15):
            # Another process's file: there is nothing to await but its appearance.
            while not child.history.exists() and child.process.returncode is None:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            child.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(2 * REQUEST_TIMEOUT + 15):
                await child.process.wait()
        except TimeoutError:
            await self.kill(child)
            self.run_failures.append(f"{child.name} did not exit after SIGTERM")

    # -- messages --------------------------------------------------------------------------------

    def plans(self, count: int) -> list[Plan]:
        """Mostly plain messages; some slow (a few ms), some failing once or twice."""
        plans = []
        for _ in range(count):
            self._seq += 1
            roll = self.random.random()
            fails = 1 if roll < 0.02 else 2 if roll < 0.03 else 0
            delay = self.random.choice((1, 3)) if 0.03 <= roll < 0.08 else 0
            plans.append(Plan(self._seq, fails, delay))
        return plans

    async def produce(self, plans: Sequence[Plan], partition: int | None = None) -> int:
        """One send_batch (to ``partition``, or spread); record what was acknowledged."""
        assert self._client is not None
        producer = ok(await self._client.get_producer(producer_config_for(self.backend)))
        values = [plan.value() for plan in plans]
        messages = tuple(StreamingMessage(value, partition=partition) for value in values)
        result = await timed(
            self.history.append,
            "producer",
            "send_batch",
            REQUEST_TIMEOUT,
            "request_timeout",
            producer.send_batch(MessageBatch(self.topic, messages)),
        )
        acknowledged: list[tuple[ProduceResult, bytes]] = []
        if isinstance(result, Success):
            acknowledged = list(zip(result.value.results, values, strict=True))
        elif result.error.code == ErrorCode.BATCH_PARTIAL_FAILURE:
            outcomes = result.error.context["results"]
            acknowledged = [
                (outcome.value, value)
                for outcome, value in zip(outcomes, values, strict=True)
                if isinstance(outcome, Success)
            ]
        record_produced(
            self.history.append, [a for a, _ in acknowledged], [v for _, v in acknowledged]
        )
        return len(acknowledged)

    async def produce_unrepresentable(self, count: int) -> None:
        """Messages whose timestamp Python cannot represent, written by raw librdkafka."""
        plans = self.plans(count)

        def write() -> list[tuple[int, int, bytes]]:
            written: list[tuple[int, int, bytes]] = []

            def delivered(error: object, message: Any) -> None:
                if error is None:
                    written.append((message.partition(), message.offset(), message.value()))

            producer = Producer({"bootstrap.servers": self.cluster.bootstrap, "linger.ms": 0})
            for index, plan in enumerate(plans):
                producer.produce(
                    self.topic,
                    plan.value(),
                    partition=index % self.partitions,
                    timestamp=UNREPRESENTABLE_MS,
                    on_delivery=delivered,
                )
            producer.flush(REQUEST_TIMEOUT)
            return written

        for partition, offset, value in await asyncio.to_thread(write):
            result = ProduceResult(self.topic, partition, offset, None)
            record_produced(self.history.append, [result], [value])

    # -- the end ---------------------------------------------------------------------------------

    def merged(self) -> list[Event]:
        """This process's events and every child's, in time order."""
        events = list(self.history)
        for child in self.children:
            if child.history.exists():
                events.extend(read_lines(child.history.read_bytes()))
        return sorted(events, key=lambda event: event.at)

    def unhandled(self) -> int:
        """Acknowledged messages no member has handled yet (cheaply, from the files)."""
        produced = {(e.partition, e.offset) for e in self.history if isinstance(e, Produced)}
        for child in self.children:
            if not child.history.exists():
                continue
            for line in child.history.read_bytes().splitlines():
                if b'"ok"' in line and b'"kind":"ended"' in line:
                    event = json.loads(line)
                    for offset in range(event["first"], event["last"] + 1):
                        produced.discard((event["partition"], offset))
        return len(produced)

    def uncommitted(self) -> int:
        """Acknowledged messages at or past the group's last committed offsets (read at the
        last snapshot): what an exactly-once group has yet to commit with its outputs."""
        snapshots = [event for event in self.history if isinstance(event, CommitSnapshot)]
        committed = {(t, p): o for t, p, o in snapshots[-1].offsets} if snapshots else {}
        return sum(
            1
            for event in self.history
            if isinstance(event, Produced)
            and event.offset >= committed.get((event.topic, event.partition), 0)
        )

    async def read_outputs(self, within: float) -> None:
        """Read the output topic with read_committed, into the history (``Output`` events)."""
        assert self.output_topic is not None
        outputs, complete = await asyncio.to_thread(
            read_committed_outputs,
            self.cluster.bootstrap,
            self.output_topic,
            self.partitions,
            within,
        )
        self.history.extend(outputs)
        self.history.append(OutputsRead(now(), complete))

    async def settle(self, within: float) -> None:
        """Let the group finish the work, mark quiet, stop every member.

        The group has until nothing is left, or until it made no progress for STUCK_SESSIONS
        session timeouts, or ``within`` seconds in all.
        """
        if self.cluster.proxy is not None:
            self.cluster.proxy.restore()
        if not self.live():
            await self.start_member()
        deadline = time.monotonic() + within
        missing, since = -1, time.monotonic()
        stuck = STUCK_SESSIONS * self.cluster.session_timeout
        while time.monotonic() < deadline and time.monotonic() - since < stuck:
            left = self.uncommitted() if self.transactional else self.unhandled()
            if not left:
                break
            if left != missing:
                missing, since = left, time.monotonic()
            await asyncio.sleep(0.5)
        await self._snapshot()
        self.history.append(Quiet(now()))
        await asyncio.gather(*(self.stop(child) for child in self.live()))
        await self._snapshot()
        for child in self.children:
            if child.process.returncode not in (0, -signal.SIGKILL):
                self.run_failures.append(child.log_tail())
        merged = self.merged()
        disturbances = [event.at for event in merged if isinstance(event, Fault | Crashed)]
        for event in merged:
            if isinstance(event, Call) and event.name == "run" and event.outcome != "ok":
                # A member told to leave while it joined may see its run() fail: it asked to.
                if event.at >= self._stopped_at.get(event.member, event.at + 1):
                    continue
                # The join bound covers one crash before the join. A fault while the member
                # joined restarts the rebalance: the member joins again (the child retries
                # as a service would), and only a member that never joined fails the run.
                disturbed = any(event.started < at <= event.at for at in disturbances)
                if not (event.outcome == ErrorCode.TIMEOUT.value and disturbed):
                    self.run_failures.append(f"{event.member}: run() -> {event.outcome}")

    # -- snapshots of the group's commits --------------------------------------------------------

    async def _snapshot_loop(self) -> None:
        while True:
            await self._snapshot()
            await asyncio.sleep(0.5)

    async def _snapshot(self) -> None:
        asked = now()
        try:
            committed = await asyncio.to_thread(self._read_committed)
        except KafkaException:
            return  # a cut or a stall: the next one will tell
        self.history.append(CommitSnapshot(now(), asked, committed))

    def _read_committed(self) -> tuple[tuple[str, int, int], ...]:
        reader = Consumer(
            {
                "bootstrap.servers": self.cluster.bootstrap,
                "group.id": self.group,
                "enable.auto.commit": False,
            }
        )
        try:
            keys = [TopicPartition(self.topic, partition) for partition in range(self.partitions)]
            found = reader.committed(keys, timeout=3.0)
        finally:
            reader.close()
        return tuple((key.topic, key.partition, key.offset) for key in found if key.offset >= 0)
