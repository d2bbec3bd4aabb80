"""Consumer groups: membership, sticky balanced assignment, rebalances and committed offsets.

A rebalance runs as one asyncio task per group, in two phases: first every
member gives up the partitions it loses (its engine finishes the running
handler and the offsets it returns are committed), then members receive the
partitions they gain. A partition is never handed to a new owner while an old
owner (even one that is leaving) still holds it, so two members never process
the same partition at once. Requests that arrive during a rebalance mark the
group dirty and run another round.

Nothing here holds an event-loop-bound primitive across calls, because one
broker outlives the event loops of many tests: the rebalance task is created
in whichever loop asks, and members whose loop has closed are evicted, as are
members that crashed once their session has expired (until then they keep
their partitions, as on Kafka).

Observers (``MemoryBroker.observe_groups``) are told what the coordinator does, as
:class:`GroupEvent` values, when it does it: tests record them in a history and
check it (who held which partition when, and who committed what).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, Protocol

from qi.base.streaming.backend import TopicPartition
from qi.base.streaming.backends.memory._errors import BrokerError, MemoryBrokerError

_LOGGER: Final = logging.getLogger("qi.base.streaming.memory")

_NO_OFFSETS: Final[Mapping[TopicPartition, int]] = MappingProxyType({})

GroupEventKind = Literal[
    "joined", "left", "evicted", "revoking", "revoked", "assigned", "committed"
]


@dataclass(frozen=True, slots=True)
class GroupEvent:
    """One thing a group's coordinator did, as told to observers.

    ``joined``/``left``: a member came or asked to go; ``evicted``: a member of a
    closed event loop was dropped without revoking anything; ``revoking``: the
    member was asked to give up ``partitions`` (its handler may still be running);
    ``revoked``: it gave them up; ``assigned``: it received ``partitions``;
    ``committed``: ``offsets`` of the member were stored (refused ones are not told).
    """

    kind: GroupEventKind
    """What happened."""
    group_id: str
    """The group it happened in."""
    member_id: str
    """The member it happened to."""
    partitions: frozenset[TopicPartition] = frozenset()
    """The partitions revoked, assigned or committed; empty for the other kinds."""
    offsets: Mapping[TopicPartition, int] = field(default_factory=lambda: _NO_OFFSETS)
    """For ``committed``: the next offsets to read, as stored."""


GroupObserver = Callable[[GroupEvent], None]
"""Called synchronously with each :class:`GroupEvent`; what it raises is logged and ignored."""


class GroupMember(Protocol):
    """What the coordinator needs from a member (the consumer's partition source)."""

    @property
    def member_id(self) -> str:
        """Unique id within the group."""
        ...

    @property
    def client_id(self) -> str:
        """The ``client_id`` of the member's client."""
        ...

    def wants(self, topic: str) -> bool:
        """Whether its subscription (names and pattern) covers ``topic``."""
        ...

    def owned(self) -> frozenset[TopicPartition]:
        """Partitions it holds now."""
        ...

    def alive(self) -> bool:
        """False once its event loop has closed or its session expired: it is evicted."""
        ...

    async def revoke(self, partitions: frozenset[TopicPartition]) -> None:
        """Give up ``partitions``: finish work on them and commit what was processed."""
        ...

    async def assign(self, partitions: frozenset[TopicPartition]) -> None:
        """Take ``partitions`` (possibly none: the first assignment is always reported)."""
        ...


class ConsumerGroup:
    """One consumer group: its members, its assignment and its committed offsets."""

    def __init__(
        self,
        group_id: str,
        topics: Callable[[], Mapping[str, int]],
        observers: Sequence[GroupObserver] = (),
    ) -> None:
        self.group_id = group_id
        self._observers = observers
        """Told every GroupEvent; the broker's own list, so observers added later count."""
        self._topics = topics
        """Partition count of every existing topic, from the broker."""
        self.committed: dict[TopicPartition, int] = {}
        """Next offset to read, per partition, as last committed."""
        self.generation = 0
        """Completed rebalance rounds."""
        self._members: dict[str, GroupMember] = {}
        self._leaving: dict[str, GroupMember] = {}
        self._dirty = False
        self._task: asyncio.Task[None] | None = None

    @property
    def members(self) -> tuple[GroupMember, ...]:
        """Current members, in join order."""
        return tuple(self._members.values())

    def member(self, member_id: str) -> GroupMember | None:
        """The current member with this id, or None (it left or was evicted)."""
        return self._members.get(member_id)

    def assignment(self) -> dict[str, frozenset[TopicPartition]]:
        """What each member holds now, by member id."""
        return {member_id: member.owned() for member_id, member in self._members.items()}

    def rebalancing(self) -> bool:
        """Whether a rebalance is pending or running."""
        return self._dirty or (self._task is not None and not self._task.done())

    def join(self, member: GroupMember) -> None:
        """Add a member; it receives its partitions from the rebalance this schedules."""
        self._members[member.member_id] = member
        self._tell("joined", member.member_id)
        self.request_rebalance()

    async def leave(self, member: GroupMember) -> None:
        """Remove a member after it gave up its partitions; the others then share them."""
        if self._members.pop(member.member_id, None) is None:
            return
        self._leaving[member.member_id] = member
        self._tell("left", member.member_id)
        try:
            await self._revoke(member, member.owned())
        finally:
            self._leaving.pop(member.member_id, None)
            self.request_rebalance()

    def commit(self, member: GroupMember, offsets: Mapping[TopicPartition, int]) -> None:
        """Store next offsets to read; partitions the member does not own are refused."""
        owned = member.owned()
        existing = self._topics()
        refused = [key for key in offsets if key not in owned]
        stored = {
            key: offset for key, offset in offsets.items() if key in owned and key[0] in existing
        }
        self.committed.update(stored)
        if stored:
            self._tell("committed", member.member_id, frozenset(stored), MappingProxyType(stored))
        if refused:
            raise MemoryBrokerError(
                BrokerError.ILLEGAL_GENERATION,
                f"member {member.member_id} of group {self.group_id!r} does not own "
                f"{sorted(refused)}: they were reassigned by a rebalance",
            )

    def state(self) -> str:
        """Kafka's name for where the group is, in snake case (see GroupDescription)."""
        if self._members:
            return "preparing_rebalance" if self.rebalancing() else "stable"
        return "empty" if self.committed else "dead"

    def reset_offsets(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Store committed offsets from an admin (the group has no members to own them)."""
        self.committed.update(offsets)

    def forget_topic(self, topic: str) -> None:
        """Drop the committed offsets of a deleted topic."""
        for key in [key for key in self.committed if key[0] == topic]:
            del self.committed[key]

    def request_rebalance(self) -> None:
        """Schedule a rebalance round in the running loop (or the next one that asks)."""
        self._dirty = True
        task = self._task
        if task is not None and not task.done() and not task.get_loop().is_closed():
            return  # the running task sees the dirty flag and runs another round
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # called outside a loop: the next member call schedules it
        self._task = loop.create_task(self._rebalance_loop(), name="qi-memory-rebalance")

    def ensure_rebalanced(self) -> None:
        """Start a pending rebalance whose request came from outside an event loop."""
        if self._dirty:
            self.request_rebalance()

    async def _rebalance_loop(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                await self._rebalance_once()
            except Exception:  # a bug here must not kill the group: log, retry next request
                _LOGGER.exception("rebalance of group %r failed", self.group_id)
            self.generation += 1

    async def _rebalance_once(self) -> None:
        for member_id in [key for key, member in self._members.items() if not member.alive()]:
            _LOGGER.debug("evicting member %s: its loop closed or its session expired", member_id)
            del self._members[member_id]
            self._tell("evicted", member_id)
        members = list(self._members.values())
        target = sticky_assignment(members, self._topics())
        revocations = [
            self._revoke(member, lost)
            for member in members
            if (lost := member.owned() - target[member.member_id])
        ]
        if revocations:
            for outcome in await asyncio.gather(*revocations, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    _LOGGER.error("revocation failed in group %r: %r", self.group_id, outcome)
        holders = [*self._members.values(), *self._leaving.values()]
        for member in members:
            if self._members.get(member.member_id) is not member:
                continue  # left while the others were revoking
            held_elsewhere = frozenset().union(
                *(other.owned() for other in holders if other is not member)
            )
            gained = target[member.member_id] - member.owned() - held_elsewhere
            await member.assign(gained)
            if gained:
                self._tell("assigned", member.member_id, gained)

    async def _revoke(self, member: GroupMember, partitions: frozenset[TopicPartition]) -> None:
        if not partitions:
            await member.revoke(partitions)
            return
        self._tell("revoking", member.member_id, partitions)
        await member.revoke(partitions)
        self._tell("revoked", member.member_id, partitions)

    def _tell(
        self,
        kind: GroupEventKind,
        member_id: str,
        partitions: frozenset[TopicPartition] = frozenset(),
        offsets: Mapping[TopicPartition, int] = _NO_OFFSETS,
    ) -> None:
        if not self._observers:
            return
        event = GroupEvent(kind, self.group_id, member_id, partitions, offsets)
        for observer in tuple(self._observers):
            try:
                observer(event)
            except Exception:  # a test's observer must not break the group it watches
                _LOGGER.exception("group observer %r failed on %s", observer, kind)


def sticky_assignment(
    members: Sequence[GroupMember], topics: Mapping[str, int]
) -> dict[str, frozenset[TopicPartition]]:
    """A balanced assignment that keeps partitions where they are when it can.

    Each member may keep what it owns and still wants, up to its fair share
    (the partition count divided by the member count, the first members in
    ownership order getting the remainder); the rest go, one by one, to the
    least loaded member that wants them, earlier joiners first on ties.
    """
    result: dict[str, set[TopicPartition]] = {member.member_id: set() for member in members}
    if not members:
        return {member_id: frozenset() for member_id in result}
    wanted = {
        member.member_id: {topic for topic in topics if member.wants(topic)} for member in members
    }
    partitions = sorted(
        (topic, index) for topic in set().union(*wanted.values()) for index in range(topics[topic])
    )
    base, extra = divmod(len(partitions), len(members))
    by_ownership = sorted(members, key=lambda member: -len(member.owned()))
    taken: set[TopicPartition] = set()
    for rank, member in enumerate(by_ownership):
        quota = base + (1 if rank < extra else 0)
        keep = sorted(key for key in member.owned() if key[0] in wanted[member.member_id])
        for key in keep[:quota]:
            if key not in taken and key[1] < topics[key[0]]:
                result[member.member_id].add(key)
                taken.add(key)
    order = {member.member_id: rank for rank, member in enumerate(members)}
    for key in partitions:
        if key in taken:
            continue
        candidates = [member_id for member_id in result if key[0] in wanted[member_id]]
        chosen = min(candidates, key=lambda member_id: (len(result[member_id]), order[member_id]))
        result[chosen].add(key)
    return {member_id: frozenset(keys) for member_id, keys in result.items()}


def owners(members: Collection[GroupMember]) -> dict[TopicPartition, str]:
    """Which member holds each partition (for diagnostics and tests)."""
    return {key: member.member_id for member in members for key in member.owned()}
