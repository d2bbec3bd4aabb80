"""The in-process broker: topics, produce, consumer groups and fault injection.

One :class:`MemoryBroker` exists per ``brokers`` value per process (see
:func:`broker_for`), so every client configured with the same brokers shares
its topics, offsets and groups, as clients of one Kafka cluster do. It lives
until :func:`discard_broker` or the end of the process, like a running server.

Everything runs on the caller's event loop and thread; no call blocks. The
broker holds no event-loop-bound primitive across calls (one broker outlives
the event loops of many tests): waiters are futures created per wait, and
readers own their wake-up events.

Fault injection, for tests (franz-go's kfake control hooks play the same role)::

    broker = broker_for(("memory:9092",))
    broker.fail_next_produces("orders", 2)          # the next 2 messages fail
    broker.fail_next_fetches("group", 1)            # the next fetch reads, then fails
    broker.delay_deliveries(0.5)                    # acknowledgements take 0.5 s
    broker.set_unreachable(True)                    # connects and requests fail
    broker.reset()                                  # all faults cleared, data kept
    broker.append_record("orders", 0, b"v", timestamp_ms=2**62)   # a foreign producer's record

and, to record what consumer groups do (joins, assignments, revocations, commits)::

    stop = broker.observe_groups(history.append)    # called with each GroupEvent
    stop()                                          # no longer called
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from qi.base.streaming import (
    ConsumedMessage,
    ErrorCode,
    StreamingMessage,
    TopicConfig,
    TopicMetadata,
)
from qi.base.streaming.backend import NOT_WRITTEN
from qi.base.streaming.backends.memory._append import Outcomes, append_messages
from qi.base.streaming.backends.memory._errors import BrokerError, MemoryBrokerError
from qi.base.streaming.backends.memory._group import ConsumerGroup, GroupObserver
from qi.base.streaming.backends.memory._log import Topic
from qi.base.streaming.backends.memory._records import StickyPartitions
from qi.base.streaming.backends.memory._topic_configs import topic_settings
from qi.base.streaming.backends.memory._transactions import TransactionCoordinator

Delivery = Literal["not_written", "unknown"]


# Each partition is a Python list; a broker in the test process keeps the count sane.
MAX_PARTITIONS: Final = 10_000


class Reader(Protocol):
    """A consumer waiting for data; the broker wakes it when a topic it reads grows."""

    def reads(self, topic: str) -> bool:
        """Whether it fetches from ``topic``."""
        ...

    def wake(self) -> bool:
        """Wake a pending fetch; False when its event loop has closed (it is dropped)."""
        ...


@dataclass(slots=True)
class _ProduceFault:
    remaining: int
    code: ErrorCode
    delivery: Delivery
    retriable: bool


class MemoryBroker:
    """A Kafka-like broker in this process: the object the ``memory`` backend talks to.

    It is also the fault-injection hook for tests: ``fail_next_produces``,
    ``fail_next_commits``, ``fail_next_fetches``, ``delay_deliveries``,
    ``set_unreachable``, ``reset`` and ``append_record``; ``observe_groups`` tells a test
    what its consumer groups do.
    """

    def __init__(self, brokers: tuple[str, ...]) -> None:
        self.brokers: Final = brokers
        """The ``brokers`` value this broker answers for."""
        self._topics: dict[str, Topic] = {}
        self._groups: dict[str, ConsumerGroup] = {}
        self._readers: list[Reader] = []
        self._reachable_waiters: list[asyncio.Future[None]] = []
        self._unreachable = False
        self._delivery_delay = 0.0
        self._produce_faults: dict[str, _ProduceFault] = {}
        self._commit_faults: dict[str, int] = {}
        self._fetch_faults: dict[str, int] = {}
        self._group_observers: list[GroupObserver] = []
        self.transactions: Final = TransactionCoordinator(self)
        """The transaction coordinator: producer ids, epochs, markers and timeouts."""

    def __repr__(self) -> str:
        return f"MemoryBroker(brokers={self.brokers!r}, topics={len(self._topics)})"

    # -- fault injection -----------------------------------------------------------------------

    def fail_next_produces(
        self,
        topic: str,
        count: int = 1,
        *,
        error_code: ErrorCode = ErrorCode.PRODUCE_FAILED,
        delivery: Delivery = NOT_WRITTEN,
        retriable: bool = True,
    ) -> None:
        """Make the next ``count`` messages produced to ``topic`` fail with ``error_code``.

        Each message counts once, whether sent alone or in a batch (so a batch can
        partially fail). With ``delivery="unknown"`` the messages ARE written and
        only their acknowledgement is lost, as after a broker timeout: resending
        them duplicates them. The failure's ``kafka_error`` is ``"INJECTED_FAULT"``.
        Replaces any pending produce fault of ``topic``; ``count=0`` clears it.
        """
        if count <= 0:
            self._produce_faults.pop(topic, None)
        else:
            self._produce_faults[topic] = _ProduceFault(count, error_code, delivery, retriable)

    def fail_next_commits(self, group_id: str, count: int = 1) -> None:
        """Make the next ``count`` commits of ``group_id`` fail (STREAMING_COMMIT_FAILED)."""
        if count <= 0:
            self._commit_faults.pop(group_id, None)
        else:
            self._commit_faults[group_id] = count

    def fail_next_fetches(self, group_id: str, count: int = 1) -> None:
        """Make the next ``count`` fetches of ``group_id`` that read messages fail after reading.

        The member moves past what it read, as a Kafka client does once a fetch came
        back, and then raises, as when a fetched record cannot be built: what was
        read is lost unless the run loop puts the member back where it was.
        """
        if count <= 0:
            self._fetch_faults.pop(group_id, None)
        else:
            self._fetch_faults[group_id] = count

    def delay_deliveries(self, seconds: float) -> None:
        """Delay every produce acknowledgement by ``seconds`` (0 to stop).

        Messages are written at once and visible to consumers; the producer
        waits (unless ``acks=0``: it never waits for acknowledgements). A delay
        beyond ``request_timeout`` makes sends fail with STREAMING_TIMEOUT and
        ``delivery="unknown"`` (they were written).
        """
        self._delivery_delay = max(0.0, float(seconds))

    def set_unreachable(self, unreachable: bool = True) -> None:
        """Make the broker unreachable (True) or reachable again (False).

        While unreachable: ``connect()`` waits up to ``connection_timeout`` and fails
        with STREAMING_CONNECTION_FAILED, ``is_healthy()`` is False, sends and admin
        calls wait up to ``request_timeout`` and fail with STREAMING_CONNECTION_FAILED
        (``delivery="not_written"``), consumers fetch nothing and commits wait.
        Anything still waiting when it becomes reachable again proceeds.
        """
        self._unreachable = unreachable
        if not unreachable:
            waiters, self._reachable_waiters = self._reachable_waiters, []
            for waiter in waiters:
                if not waiter.done() and not waiter.get_loop().is_closed():
                    waiter.set_result(None)
            self._wake_readers(None)

    def reset(self) -> None:
        """Clear every fault (reachable, no delay, no pending failures); data and groups stay."""
        self._produce_faults.clear()
        self._commit_faults.clear()
        self._fetch_faults.clear()
        self._delivery_delay = 0.0
        self.set_unreachable(False)

    @property
    def reachable(self) -> bool:
        """Whether clients can reach the broker (see :meth:`set_unreachable`)."""
        return not self._unreachable

    @property
    def delivery_delay(self) -> float:
        """Seconds every produce acknowledgement is delayed."""
        return self._delivery_delay

    async def wait_reachable(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the broker to be reachable; whether it is."""
        if not self._unreachable:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reachable_waiters.append(waiter)
        try:
            async with asyncio.timeout(seconds):
                await waiter
        except TimeoutError:
            return False
        finally:
            if waiter in self._reachable_waiters:
                self._reachable_waiters.remove(waiter)
        return not self._unreachable

    def take_commit_fault(self, group_id: str) -> bool:
        """Consume one pending commit failure of ``group_id``; whether there was one."""
        return _take(self._commit_faults, group_id)

    def take_fetch_fault(self, group_id: str) -> bool:
        """Consume one pending fetch failure of ``group_id``; whether there was one."""
        return _take(self._fetch_faults, group_id)

    def observe_groups(self, observer: GroupObserver) -> Callable[[], None]:
        """Call ``observer`` with every GroupEvent of every group; returns the way to stop.

        Events are told synchronously, in the order the coordinator acts: a member is
        told ``revoking`` before its handler is waited for and ``assigned`` before it
        can fetch, so a recorded history can be checked against them.
        """
        self._group_observers.append(observer)

        def stop() -> None:
            if observer in self._group_observers:
                self._group_observers.remove(observer)

        return stop

    # -- topics --------------------------------------------------------------------------------

    def create_topic(self, config: TopicConfig) -> tuple[BrokerError, str] | None:
        """Create a topic, or say why Kafka would not (its error and its words).

        Refused: an existing name, more replicas than this one broker, a config Kafka
        does not know or a value it refuses. Matching groups rebalance.
        """
        name = config.topic
        if name in self._topics:
            return BrokerError.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists."
        if config.num_partitions > MAX_PARTITIONS:
            return (
                BrokerError.INVALID_PARTITIONS,
                f"the memory broker keeps at most {MAX_PARTITIONS} partitions a topic",
            )
        if config.replication_factor > 1:
            return BrokerError.INVALID_REPLICATION_FACTOR, (
                f"Unable to replicate the partition {config.replication_factor} time(s): "
                "the memory broker is one broker"
            )
        settings = topic_settings(config.config_entries)
        if isinstance(settings, str):
            return BrokerError.INVALID_CONFIG, settings
        self._topics[name] = Topic.create(
            name,
            config.num_partitions,
            config.replication_factor,
            config.config_entries,
            settings,
        )
        self._topics_changed(name)
        return None

    def delete_topic(self, name: str) -> BrokerError | None:
        """Delete a topic, its messages and committed offsets; UNKNOWN_TOPIC_OR_PART if absent."""
        if self._topics.pop(name, None) is None:
            return BrokerError.UNKNOWN_TOPIC_OR_PART
        for group in self._groups.values():
            group.forget_topic(name)
        self._topics_changed(name)
        return None

    def topic_names(self) -> list[str]:
        """Every topic, internal ones included."""
        return list(self._topics)

    def topic(self, name: str) -> Topic | None:
        """The named topic, or None."""
        return self._topics.get(name)

    def describe(self, name: str) -> TopicMetadata | None:
        """Partitions of the named topic, or None when it does not exist."""
        topic = self._topics.get(name)
        return None if topic is None else topic.metadata()

    def topic_config(self, name: str) -> Mapping[str, str] | None:
        """The ``config_entries`` the topic was created with, or None when it does not exist."""
        topic = self._topics.get(name)
        return None if topic is None else topic.config_entries

    def end_offsets(self, name: str) -> tuple[int, ...] | None:
        """The next offset to be written in each partition, or None when the topic is absent."""
        topic = self._topics.get(name)
        return None if topic is None else tuple(len(log) for log in topic.logs)

    def messages(self, name: str, partition: int) -> Sequence[ConsumedMessage]:
        """A partition's messages in offset order (a snapshot, transaction markers left out,
        aborted records kept: read_uncommitted), for inspection by tests."""
        topic = self._topics.get(name)
        if topic is None or not 0 <= partition < len(topic.logs):
            return ()
        return tuple(topic.read(partition, 0, len(topic.logs[partition])))

    def append_record(self, topic: str, partition: int, value: bytes, *, timestamp_ms: int) -> int:
        """Append a record as any Kafka client could have written it; return its offset.

        For tests: the timestamp is stored as given, so a record stamped in microseconds
        by mistake (or beyond the year 9999) reaches consumers as it would from Kafka.
        Raises KeyError or IndexError for a missing topic or partition.
        """
        log = self._topics[topic].logs[partition]
        log.append((None, value, timestamp_ms, None))
        self._wake_readers(topic)
        return len(log) - 1

    def _partition_counts(self) -> dict[str, int]:
        return {name: len(topic.logs) for name, topic in self._topics.items()}

    def _topics_changed(self, topic: str) -> None:
        for group in self._groups.values():
            if any(member.wants(topic) for member in group.members):
                group.request_rebalance()

    # -- produce -------------------------------------------------------------------------------

    def produce(
        self,
        topic_name: str,
        messages: Sequence[StreamingMessage],
        sticky: StickyPartitions,
        acks_none: bool,
    ) -> tuple[Outcomes, int] | MemoryBrokerError:
        """Append messages in order: one outcome per message and how many failed, or one
        error for all (native errors: the producer translates them).

        ``sticky`` places messages with neither key nor partition. The whole call
        fails when the topic does not exist; a message fails alone when Kafka would
        refuse it (too large a record batch, no key on a compacted topic, a partition
        the topic lacks) or an injected fault says so.
        """
        topic = self._topics.get(topic_name)
        if topic is None:
            return MemoryBrokerError(
                BrokerError.UNKNOWN_TOPIC_OR_PART,
                f"topic {topic_name!r} does not exist (topics are never created automatically)",
                topic=topic_name,
                delivery=NOT_WRITTEN,
            )
        fault = self._produce_faults.get(topic_name)
        outcomes = append_messages(
            topic,
            messages,
            sticky,
            acks_none,
            None if fault is None else self._fault_injector(fault, topic_name),
        )
        self._wake_readers(topic_name)
        return outcomes

    def _fault_injector(
        self, fault: _ProduceFault, topic: str
    ) -> Callable[[int], MemoryBrokerError | None]:
        """The injected failure of each next message (to ``partition``) while ``fault`` lasts."""

        def inject(partition: int) -> MemoryBrokerError | None:
            if fault.remaining <= 0:
                return None
            fault.remaining -= 1
            if fault.remaining == 0 and self._produce_faults.get(topic) is fault:
                del self._produce_faults[topic]
            return MemoryBrokerError(
                BrokerError.INJECTED_FAULT,
                f"injected produce failure on {topic}[{partition}]",
                fault.code,
                topic=topic,
                partition=partition,
                delivery=fault.delivery,
                retriable=fault.retriable,
            )

        return inject

    # -- consumers -----------------------------------------------------------------------------

    def group(self, group_id: str) -> ConsumerGroup:
        """The named consumer group, created empty on first use (as Kafka does)."""
        group = self._groups.get(group_id)
        if group is None:
            group = self._groups[group_id] = ConsumerGroup(
                group_id, self._partition_counts, self._group_observers
            )
        return group

    def known_group(self, group_id: str) -> ConsumerGroup | None:
        """The named group if it has members or committed offsets (Kafka forgets the others)."""
        group = self._groups.get(group_id)
        return group if group is not None and group.state() != "dead" else None

    def group_ids(self) -> list[str]:
        """Ids of the groups Kafka would list: those with members or committed offsets."""
        return [group_id for group_id in self._groups if self.known_group(group_id) is not None]

    def delete_group(self, group_id: str) -> None:
        """Forget a group and its committed offsets; its next member starts it anew."""
        self._groups.pop(group_id, None)

    def committed(self, group_id: str) -> dict[tuple[str, int], int]:
        """A group's committed offsets (next offset to read), for inspection by tests."""
        group = self._groups.get(group_id)
        return {} if group is None else dict(group.committed)

    def add_reader(self, reader: Reader) -> None:
        """Wake ``reader`` whenever a topic it reads grows."""
        self._readers.append(reader)

    def remove_reader(self, reader: Reader) -> None:
        """Stop waking ``reader``."""
        if reader in self._readers:
            self._readers.remove(reader)

    def wake_readers(self, topic: str) -> None:
        """Wake the readers of ``topic``: it grew, or records of it became readable."""
        self._wake_readers(topic)

    def _wake_readers(self, topic: str | None) -> None:
        dead = [
            reader
            for reader in self._readers
            if (topic is None or reader.reads(topic)) and not reader.wake()
        ]
        for reader in dead:
            self._readers.remove(reader)


def _take(faults: dict[str, int], group_id: str) -> bool:
    remaining = faults.get(group_id, 0)
    if remaining <= 0:
        return False
    if remaining == 1:
        del faults[group_id]
    else:
        faults[group_id] = remaining - 1
    return True


_BROKERS: dict[tuple[str, ...], MemoryBroker] = {}


def broker_for(brokers: Sequence[str]) -> MemoryBroker:
    """The process's broker for a ``brokers`` value, created on first use.

    This is the fault-injection hook for tests: every memory client configured
    with ``brokers`` talks to the returned broker.
    """
    key = tuple(brokers)
    broker = _BROKERS.get(key)
    if broker is None:
        broker = _BROKERS[key] = MemoryBroker(key)
    return broker


def discard_broker(brokers: Sequence[str]) -> None:
    """Forget the broker of ``brokers``: the next client to use that value starts empty.

    Clients still connected keep the old broker object.
    """
    _BROKERS.pop(tuple(brokers), None)
