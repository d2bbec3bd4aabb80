"""The memory broker's transaction coordinator: producer ids, epochs, markers, timeouts.

As in Kafka, a transactional id maps to one producer id and an epoch. Initialising
the id again (a new producer, or a restart) aborts whatever transaction it left
open and bumps the epoch, which fences every older instance: its next request is
PRODUCER_FENCED. A transaction open longer than its ``transaction_timeout`` is
aborted by the coordinator, which bumps the epoch too, so its producer is fenced.

A transaction's records are appended to the partition logs at once, at real
offsets; each partition remembers the first offset of every open transaction (the
last stable offset, where read_committed readers stop) and, on abort, which
records to hide. Ending a transaction appends a control record (a commit or abort
marker) to each partition it wrote: it takes an offset as in Kafka, so offsets seen
by consumers skip it. Consumer offsets sent with a transaction are checked against
the group (member still there, a generation the group has not moved past, partitions
still owned: KIP-447) when sent, ownership again when committed, and are stored only
when it commits.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from qi.base.streaming import ErrorCode, ProduceResult, StreamingMessage
from qi.base.streaming.backend import TopicPartition
from qi.base.streaming.backends.memory._errors import BrokerError, MemoryBrokerError
from qi.base.streaming.backends.memory._group import ConsumerGroup
from qi.base.streaming.backends.memory._records import StickyPartitions

if TYPE_CHECKING:
    from qi.base.streaming.backends.memory._append import Outcomes
    from qi.base.streaming.backends.memory._broker import MemoryBroker
    from qi.base.streaming.backends.memory._log import Topic

MAX_TRANSACTION_TIMEOUT: Final = 900.0
"""Kafka's default ``transaction.max.timeout.ms`` (15 minutes), in seconds: a producer
asking for more is refused when it initialises, as Kafka refuses it."""
_PRODUCER_IDS: Final = itertools.count(1000)
"""Producer ids, unique in the process (so across memory brokers too)."""


@dataclass(frozen=True, slots=True)
class MemoryGroupMetadata:
    """What a memory consumer hands a transaction: who it is in its group (KIP-447)."""

    group_id: str
    member_id: str
    generation: int


@dataclass(frozen=True, slots=True)
class ProducerSession:
    """A producer's identity as the coordinator gave it at initialisation."""

    transactional_id: str
    producer_id: int
    epoch: int


@dataclass(slots=True, eq=False)
class _TransactionalState:
    """The coordinator's record of one transactional id."""

    producer_id: int
    epoch: int
    timeout: float
    started: float | None = None
    """``time.monotonic()`` when the open transaction began; None when none is open."""
    written: dict[TopicPartition, list[int]] = field(default_factory=dict)
    """Offsets the open transaction wrote, per partition."""
    topics: dict[str, Topic] = field(default_factory=dict)
    """The topics it wrote to: a topic deleted and created again under the same name is
    another topic, whose records its markers must not touch."""
    offsets: dict[str, tuple[MemoryGroupMetadata, dict[TopicPartition, int]]] = field(
        default_factory=dict
    )
    """Consumer offsets to commit with the open transaction, per group."""
    lost: MemoryBrokerError | None = None
    """The first message of the open transaction that was not written: as in Kafka's
    clients, the transaction can then only abort (what it holds is not what was sent)."""


class TransactionCoordinator:
    """One broker's transaction coordinator. Methods raise MemoryBrokerError."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker
        self._states: dict[str, _TransactionalState] = {}
        self._open: set[str] = set()

    def init_producer(self, transactional_id: str, timeout: float) -> ProducerSession:
        """Register a producer for ``transactional_id``, fencing any older one."""
        if timeout > MAX_TRANSACTION_TIMEOUT:
            raise MemoryBrokerError(
                BrokerError.INVALID_TRANSACTION_TIMEOUT,
                f"transaction_timeout={timeout:g}s is larger than the maximum the broker "
                f"allows (transaction.max.timeout.ms, {MAX_TRANSACTION_TIMEOUT:g}s)",
            )
        self.expire_overdue()
        state = self._states.get(transactional_id)
        if state is None:
            state = self._states[transactional_id] = _TransactionalState(
                next(_PRODUCER_IDS), 0, timeout
            )
        else:
            self._end(transactional_id, state, commit=False)
            state.epoch += 1
            state.timeout = timeout
        return ProducerSession(transactional_id, state.producer_id, state.epoch)

    def begin(self, session: ProducerSession) -> None:
        """Open a transaction; the coordinator aborts it after its timeout."""
        state = self._current(session)
        if state.started is not None:
            raise MemoryBrokerError(
                BrokerError.INVALID_TXN_STATE, "a transaction of this producer is already open"
            )
        started = state.started = time.monotonic()
        self._open.add(session.transactional_id)
        # Enforced by a timer while this loop runs, and on every later request in any case.
        asyncio.get_running_loop().call_later(
            state.timeout, self._expire, session.transactional_id, state, started
        )

    def produce(
        self,
        session: ProducerSession,
        topic: str,
        messages: Sequence[StreamingMessage],
        sticky: StickyPartitions,
    ) -> tuple[Outcomes, int] | MemoryBrokerError:
        """Append messages within the open transaction, hidden from read_committed readers."""
        state = self._open_state(session)
        produced = self._broker.produce(topic, messages, sticky, False)
        if isinstance(produced, MemoryBrokerError):
            if state.lost is None:
                state.lost = produced
            return produced
        outcomes, failures = produced
        if failures and state.lost is None:
            state.lost = next(item for item in outcomes if isinstance(item, MemoryBrokerError))
        stored = self._broker.topic(topic)
        assert stored is not None
        if state.topics.get(topic) is not stored:
            # A topic created anew under a name this transaction wrote to: the offsets
            # written to the deleted one mean nothing in it.
            for key in [key for key in state.written if key[0] == topic]:
                del state.written[key]
            state.topics[topic] = stored
        for outcome in outcomes:
            if isinstance(outcome, ProduceResult):
                key = (topic, outcome.partition)
                written = state.written.setdefault(key, [])
                if not written:
                    marks = stored.transaction_marks(outcome.partition)
                    marks.open_first[session.producer_id] = outcome.offset
                written.append(outcome.offset)
        return produced

    def add_offsets(
        self,
        session: ProducerSession,
        group: MemoryGroupMetadata,
        offsets: Mapping[TopicPartition, int],
    ) -> None:
        """Add a group's offsets to the open transaction, if its member still owns them."""
        state = self._open_state(session)
        self._check_member(group, offsets, check_generation=True)
        pending = state.offsets.get(group.group_id)
        merged = {} if pending is None else pending[1]
        merged.update(offsets)
        state.offsets[group.group_id] = (group, merged)

    def commit(self, session: ProducerSession) -> None:
        """Commit: markers to every partition written, offsets to their groups."""
        state = self._open_state(session)
        if state.lost is not None:
            raise MemoryBrokerError(
                BrokerError.TRANSACTION_ABORTABLE,
                f"a message of this transaction was not written ({state.lost.error.value}: "
                f"{state.lost.message}): abort it and retry the work",
            )
        # A member that lost partitions since it sent their offsets must not commit them:
        # checked before anything is written, so the transaction stays whole (and abortable).
        for group, offsets in state.offsets.values():
            self._check_member(group, offsets, check_generation=False)
        for group, offsets in state.offsets.values():
            consumer_group = self._broker.group(group.group_id)
            member = consumer_group.member(group.member_id)
            assert member is not None
            consumer_group.commit(member, offsets)
        self._end(session.transactional_id, state, commit=True)

    def abort(self, session: ProducerSession) -> None:
        """Abort: its records are hidden from read_committed readers, its offsets dropped."""
        state = self._open_state(session)
        self._end(session.transactional_id, state, commit=False)

    def expire_overdue(self) -> None:
        """Abort every transaction older than its timeout and fence its producer."""
        if not self._open:
            return
        now = time.monotonic()
        for transactional_id in list(self._open):
            state = self._states[transactional_id]
            if state.started is not None and now - state.started >= state.timeout:
                self._end(transactional_id, state, commit=False)
                state.epoch += 1

    # -- internals -----------------------------------------------------------------------------

    def _expire(self, transactional_id: str, state: _TransactionalState, started: float) -> None:
        """The timer of a transaction: abort it, if it is still the one open, and fence."""
        if state.started == started:
            self._end(transactional_id, state, commit=False)
            state.epoch += 1

    def _current(self, session: ProducerSession) -> _TransactionalState:
        self.expire_overdue()
        state = self._states.get(session.transactional_id)
        if state is None or (state.producer_id, state.epoch) != (
            session.producer_id,
            session.epoch,
        ):
            raise MemoryBrokerError(
                BrokerError.PRODUCER_FENCED,
                f"producer of transactional id {session.transactional_id!r} was fenced: another "
                "producer took the id over, or its transaction exceeded transaction_timeout",
            )
        return state

    def _open_state(self, session: ProducerSession) -> _TransactionalState:
        state = self._current(session)
        if state.started is None:
            raise MemoryBrokerError(
                BrokerError.INVALID_TXN_STATE, "no transaction of this producer is open"
            )
        return state

    def _check_member(
        self,
        group: MemoryGroupMetadata,
        offsets: Mapping[TopicPartition, int],
        *,
        check_generation: bool,
    ) -> None:
        consumer_group: ConsumerGroup = self._broker.group(group.group_id)
        member = consumer_group.member(group.member_id)
        if member is None:
            raise MemoryBrokerError(
                BrokerError.UNKNOWN_MEMBER_ID,
                f"member {group.member_id} is no longer in group {group.group_id!r}",
            )
        lost = sorted(key for key in offsets if key not in member.owned())
        # A member sees the generation of a round as soon as the round calls it, before the
        # round completes: only a generation the group has moved past is stale.
        if (check_generation and group.generation < consumer_group.generation) or lost:
            raise MemoryBrokerError(
                BrokerError.ILLEGAL_GENERATION,
                f"member {group.member_id} of group {group.group_id!r} is fenced: "
                + (
                    f"it no longer owns {lost}"
                    if lost
                    else f"generation {group.generation} is over (now {consumer_group.generation})"
                ),
                ErrorCode.TRANSACTION_FAILED,
            )

    def _end(self, transactional_id: str, state: _TransactionalState, *, commit: bool) -> None:
        """Write a marker to every partition the open transaction wrote, and forget it."""
        if state.started is None:
            return
        millis = time.time_ns() // 1_000_000
        for (topic_name, partition), offsets in state.written.items():
            topic = state.topics[topic_name]
            if self._broker.topic(topic_name) is not topic:
                continue  # deleted meanwhile (perhaps created anew): nothing left to mark
            marks = topic.transaction_marks(partition)
            marks.open_first.pop(state.producer_id, None)
            if not commit:
                marks.aborted.update(offsets)
            log = topic.logs[partition]
            marks.control.add(len(log))
            log.append((None, None, millis, None))
        touched = {topic for topic, _ in state.written}
        state.started = None
        state.written = {}
        state.topics = {}
        state.offsets = {}
        state.lost = None
        self._open.discard(transactional_id)
        for topic_name in touched:
            self._broker.wake_readers(topic_name)
