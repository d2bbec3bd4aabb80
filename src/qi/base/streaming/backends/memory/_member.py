"""A consumer's membership of a group on the memory broker: its PartitionSource.

The source keeps a fetch position per owned partition and reads by slicing
the partition logs. A fetch with nothing to return waits on the source's own
event, which the broker sets when a topic it reads grows: no polling.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Final

from qi.base.streaming import ConsumedMessage, ErrorCode, SubscriptionConfig
from qi.base.streaming.backend import (
    PartitionSource,
    RebalanceListener,
    SeekTarget,
    TopicPartition,
    is_internal_topic,
)
from qi.base.streaming.backends.memory._broker import MemoryBroker
from qi.base.streaming.backends.memory._errors import BrokerError, MemoryBrokerError
from qi.base.streaming.backends.memory._group import ConsumerGroup
from qi.base.streaming.backends.memory._transactions import MemoryGroupMetadata


class MemberSource(PartitionSource):
    """One member of a consumer group on the memory broker."""

    def __init__(
        self,
        broker: MemoryBroker,
        group_id: str,
        member_id: str,
        subscription: SubscriptionConfig,
        request_timeout: float,
        session_timeout: float,
        read_committed: bool,
        *,
        client_id: str,
    ) -> None:
        self._broker = broker
        self._read_committed = read_committed
        self.client_id: Final = client_id
        """The ``client_id`` of the consumer this member belongs to (for describe_group)."""
        self._group: ConsumerGroup = broker.group(group_id)
        self._member_id: Final = member_id
        self._topics = frozenset(subscription.topics)
        self._pattern = None if subscription.pattern is None else re.compile(subscription.pattern)
        self._from_beginning = subscription.from_beginning
        self._request_timeout = request_timeout
        self._session_timeout = session_timeout
        self._crashed = False  # crash() was called: the member answers nothing any more
        self._session_over = False  # and session_timeout has passed since: it is evicted
        self._listener: RebalanceListener | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._owned: frozenset[TopicPartition] = frozenset()
        # Fetch positions of owned partitions that may be fetched (not being revoked).
        self._positions: dict[TopicPartition, int] = {}
        # Where each of them started (assignment or last seek), for rewinds.
        self._starts: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        # Where the last fetch left the partitions it read, markers included.
        self._fetched_to: dict[TopicPartition, int] = {}
        self._assigned_once = False
        self._rotation = 0
        self._stopped = False
        # Bumped by every assignment change and seek. The engine drops what a fetch returns
        # for a partition assigned or sought while that fetch was pending (it cannot tell
        # such messages from stale ones), so a fetch that sees a bump returns empty handed
        # and the engine's next fetch reads them instead: nothing is skipped.
        self._epoch = 0
        # The group generation this member last took part in (see assign).
        self._generation = 0

    # -- GroupMember ---------------------------------------------------------------------------

    @property
    def member_id(self) -> str:
        """Unique id of this member within its group."""
        return self._member_id

    def wants(self, topic: str) -> bool:
        """Whether the subscription names ``topic`` or its pattern matches it (never ``__*``)."""
        if topic in self._topics:
            return True
        pattern = self._pattern
        return pattern is not None and not is_internal_topic(topic) and bool(pattern.match(topic))

    def owned(self) -> frozenset[TopicPartition]:
        """Partitions this member holds."""
        return self._owned

    def alive(self) -> bool:
        """Whether the member's event loop still runs and its session has not expired."""
        loop = self._loop
        return not (self._stopped or self._session_over or loop is None or loop.is_closed())

    async def revoke(self, partitions: frozenset[TopicPartition]) -> None:
        """Let the engine finish with ``partitions``, commit what it processed, then drop them."""
        partitions = partitions & self._owned
        if not partitions or self._listener is None or self._crashed:
            return  # a crashed member answers nothing: it holds them until it is evicted
        for key in partitions:
            self._positions.pop(key, None)
            self._starts.pop(key, None)
        self._epoch += 1
        offsets = await self._listener.partitions_revoked(partitions)
        if offsets:
            try:
                self._commit_now(offsets)
            except Exception as exc:
                self._listener.report_commit_failure(exc)
        self._owned -= partitions
        self._paused -= partitions

    async def assign(self, partitions: frozenset[TopicPartition]) -> None:
        """Take ``partitions``, starting at the committed offset or per ``from_beginning``."""
        if self._crashed:
            return  # it answers nothing: its generation stays behind, and it is fenced
        # Every live member is called in each rebalance round, which completes as the next
        # generation: that is the generation this member's offsets are fenced by.
        self._generation = self._group.generation + 1
        if self._listener is None or (not partitions and self._assigned_once):
            return
        self._assigned_once = True
        await self._listener.partitions_assigned(partitions)
        # Positions only after the engine knows the partitions, so nothing fetched is dropped.
        self._owned |= partitions
        committed = self._group.committed
        for key in partitions:
            offset = committed.get(key)
            start = self._reset_position(key) if offset is None else offset
            self._positions[key] = self._starts[key] = start
        self._epoch += 1
        self.wake()

    def crash(self) -> None:
        """Stop as a killed process does: no fetch, commit, heartbeat or goodbye from now on.

        The group keeps the member, and its partitions, until ``session_timeout`` has passed
        without a heartbeat; then a rebalance evicts it and the others share them.
        """
        loop = self._loop
        if self._stopped or self._crashed or loop is None or loop.is_closed():
            return
        self._crashed = True
        self._positions.clear()
        self._broker.remove_reader(self)
        loop.call_later(self._session_timeout, self._session_expired)

    def _session_expired(self) -> None:
        self._session_over = True
        self._group.request_rebalance()

    # -- Reader --------------------------------------------------------------------------------

    def reads(self, topic: str) -> bool:
        """Whether this member fetches from ``topic``."""
        return any(key[0] == topic for key in self._positions)

    def wake(self) -> bool:
        """Wake a pending fetch; False when this member's loop has closed."""
        if self._loop is None or self._loop.is_closed():
            return False
        if self._wakeup is not None:
            self._wakeup.set()
        return True

    # -- PartitionSource -----------------------------------------------------------------------

    async def start(self, listener: RebalanceListener) -> None:
        self._listener = listener
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._broker.add_reader(self)
        self._group.join(self)

    async def fetch(
        self, max_messages: int, max_wait: float
    ) -> Mapping[TopicPartition, Sequence[ConsumedMessage]]:
        self._group.ensure_rebalanced()
        # A transaction past its timeout holds read_committed readers back until aborted.
        self._broker.transactions.expire_overdue()
        wakeup = self._wakeup
        assert wakeup is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        epoch = self._epoch
        self._fetched_to = {}
        while True:
            wakeup.clear()
            if self._epoch != epoch:
                return {}
            fetched = self._collect(max_messages)
            if fetched:
                if self._broker.take_fetch_fault(self._group.group_id):
                    # As a Kafka client that could not build what it fetched: moved past it.
                    raise MemoryBrokerError(
                        BrokerError.INJECTED_FAULT,
                        f"injected fetch failure for group {self._group.group_id!r}",
                        ErrorCode.CONNECTION_FAILED,
                    )
                return fetched
            remaining = deadline - loop.time()
            if remaining <= 0:
                return {}
            try:
                async with asyncio.timeout(remaining):
                    await wakeup.wait()
            except TimeoutError:
                return {}

    def fetch_positions(self) -> Mapping[TopicPartition, int]:
        return self._fetched_to

    def end_offsets(self) -> Mapping[TopicPartition, int]:
        ends: dict[TopicPartition, int] = {}
        for key in self._owned:
            topic = self._broker.topic(key[0])
            if topic is not None and key[1] < len(topic.logs):
                ends[key] = topic.readable_end(key[1], committed_only=False)
        return ends

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if self._crashed:
            raise MemoryBrokerError(BrokerError.ILLEGAL_GENERATION, "the member crashed")
        if not await self._broker.wait_reachable(self._request_timeout):
            raise MemoryBrokerError(BrokerError.TRANSPORT, "the broker is unreachable")
        self._commit_now(offsets)

    async def seek(self, partition: TopicPartition, target: SeekTarget) -> None:
        if partition not in self._owned:
            raise MemoryBrokerError(
                BrokerError.ILLEGAL_GENERATION, f"{partition} is not assigned to this member"
            )
        if target == "earliest":
            start = 0
        elif target == "latest":
            start = self._end(partition)
        else:
            start = target
        self._positions[partition] = self._starts[partition] = start
        self._epoch += 1
        self.wake()

    async def rewind(self, positions: Mapping[TopicPartition, int | None]) -> None:
        for key, offset in positions.items():
            if key in self._positions:
                self._positions[key] = self._starts[key] if offset is None else offset

    def pause(self, partitions: Collection[TopicPartition]) -> None:
        self._paused.update(partitions)

    def resume(self, partitions: Collection[TopicPartition]) -> None:
        self._paused.difference_update(partitions)
        self.wake()

    async def group_metadata(self) -> object:
        return MemoryGroupMetadata(self._group.group_id, self._member_id, self._generation)

    async def stop(self, patience: float) -> None:
        if self._stopped:
            return
        try:
            await self._group.leave(self)
        finally:
            self._stopped = True
            self._broker.remove_reader(self)
            self._positions.clear()
            self._starts.clear()

    # -- internals -----------------------------------------------------------------------------

    def _commit_now(self, offsets: Mapping[TopicPartition, int]) -> None:
        if self._broker.take_commit_fault(self._group.group_id):
            raise MemoryBrokerError(
                BrokerError.INJECTED_FAULT,
                f"injected commit failure for group {self._group.group_id!r}",
                ErrorCode.COMMIT_FAILED,
            )
        self._group.commit(self, offsets)

    def _collect(self, budget: int) -> dict[TopicPartition, Sequence[ConsumedMessage]]:
        """Up to ``budget`` messages, starting from a rotating partition so none starves."""
        if not self._broker.reachable or not self._positions:
            return {}
        keys = list(self._positions)
        self._rotation = (self._rotation + 1) % len(keys)
        fetched: dict[TopicPartition, Sequence[ConsumedMessage]] = {}
        for key in keys[self._rotation :] + keys[: self._rotation]:
            if key in self._paused:
                continue
            topic = self._broker.topic(key[0])
            if topic is None or key[1] >= len(topic.logs):
                continue
            position = self._positions[key]
            if position > len(topic.logs[key[1]]):  # out of range: auto.offset.reset
                position = self._positions[key] = self._reset_position(key)
            end = topic.readable_end(key[1], self._read_committed)
            if position < end:
                stop = min(end, position + budget)
                # Transaction markers (and, read_committed, aborted records) are skipped,
                # so a read may come back empty although the position moved.
                messages = topic.read(key[1], position, stop, self._read_committed)
                if messages:
                    fetched[key] = messages
                self._positions[key] = self._fetched_to[key] = stop
                budget -= stop - position
                if budget <= 0:
                    break
        return fetched

    def _reset_position(self, key: TopicPartition) -> int:
        return 0 if self._from_beginning else self._end(key)

    def _end(self, key: TopicPartition) -> int:
        """The latest offset as this member's isolation level sees it (read_committed: the
        last stable offset)."""
        topic = self._broker.topic(key[0])
        if topic is None or key[1] >= len(topic.logs):
            return 0
        return topic.readable_end(key[1], self._read_committed)
