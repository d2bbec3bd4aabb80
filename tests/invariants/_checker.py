"""The checker: reads a history in time order and reports every broken invariant.

    I1 every acknowledged message is handled at least once by the group once it is quiet;
    I2 no commit exceeds one past the highest offset whose handler returned, contiguously,
       on the committing member (``exact``), and none ever exceeds what the whole group
       handled contiguously from the start of the partition (always);
    I3 no two handler calls run for the same partition at overlapping times, and (``exact``)
       none starts on a partition the member does not hold or is giving up;
    I4 per partition, a member's handled offsets go up by one, restarting only at a seek
       target, a redelivery after failure, or the committed position after an assignment;
    I5 after a crash or rebalance, only what was handled after the last successful commit
       comes again;
    I6 every call returns within its bound (plus ``slack``); no task or thread outlives
       disconnect();
    I7 (exactly-once pipelines) the output topic, read with read_committed, holds exactly
       one transformed record per acknowledged input record (``_output_rules``).

``transactional`` histories (exactly-once members) treat a failed handler call, and
any other error their run loop reports, as an abort: the member's progress since its
last commit is void, and its next call on each partition is checked as a restart.

``exact`` histories know every assignment, revocation and commit of every member (the
memory broker's observers tell them). Histories of real brokers do not: commits are
read group-wide at snapshots, so I2 and I5 are checked in their group-wide form, and a
member's jump to another offset counts as a restart after an unseen assignment, valid
when nothing below it was left unhandled (I4) and nothing the group had already
committed comes again (I5).

The checker is incremental (``feed`` one event at a time), so a driver can check after
every step; ``violations`` grows as they are found.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._events import (
    Assigned,
    Call,
    CommitSnapshot,
    Committed,
    Crashed,
    Event,
    Evicted,
    Fault,
    HandlerEnded,
    HandlerStarted,
    Holding,
    Leftovers,
    Output,
    OutputsRead,
    Produced,
    Quiet,
    Reported,
    Revoked,
    Revoking,
    Sought,
    TopicPartition,
    Wrote,
)
from ._handler_rules import HandlerRules
from ._output_rules import OutputRules
from ._report import offsets, ranges, report, stamp


class Checker(HandlerRules, OutputRules):
    """Checks a history event by event; see the module docstring for what it asserts."""

    # -- reading -------------------------------------------------------------------------------

    def feed_all(self, events: Iterable[Event]) -> None:
        """Feed events in the order given (a merged history must be sorted by ``at`` first)."""
        for event in events:
            self.feed(event)

    def feed(self, event: Event) -> None:
        """Take the next event of the history."""
        if self.origin is None:
            self.origin = event.at
        match event:
            case HandlerStarted():
                self._started(event)
            case HandlerEnded():
                self._ended(event)
            case Produced(topic=topic, partition=partition, offset=offset, value=value):
                part = self._part((topic, partition))
                part.produced[offset] = value
            case Committed(member=member, offsets=stored):
                for topic, partition, offset in stored:
                    self._committed(event, member, (topic, partition), offset)
            case CommitSnapshot(offsets=read):
                for topic, partition, offset in read:
                    self._snapshot(event, (topic, partition), offset)
            case Assigned(member=member, partitions=keys):
                for key in keys:
                    self._assigned(event, member, key)
            case Revoking(member=member, partitions=keys):
                for key in keys:
                    self._lane(member, key).revoking_since = event.at
                    self._part(key).recent.append(event)
            case Revoked(member=member, partitions=keys):
                for key in keys:
                    self._revoked(event, member, key)
            case Evicted(member=member):
                self._evicted(member)
            case Holding(member=member, partitions=keys):
                self._holding(event, member, keys)
            case Sought(member=member, topic=topic, partition=partition, offset=offset):
                lane = self._lane(member, (topic, partition))
                lane.reset = ("seek", offset, event.at)
                lane.stale_through = self._last_call.get(member, -1)
                lane.last = None
                self._part((topic, partition)).recent.append(event)
            case Crashed(member=member):
                self._crash(event, member)
            case Call():
                self._call(event)
            case Leftovers(member=member, tasks=tasks, threads=threads):
                if tasks or threads:
                    left = [*(f"task {name}" for name in tasks), *(f"thread {n}" for n in threads)]
                    self._violate("I6", event, f"still alive after disconnect(): {left}", member)
            case Fault():
                pass  # context for the report only
            case Quiet():
                self._quiet(event)
            case Wrote():
                self.written.append(event)
            case Output():
                self._output(event)
            case OutputsRead():
                self._outputs_read(event)
            case Reported(member=member, code=code):
                self.reported.append(event)
                if self.transactional and code != "STREAMING_HANDLER_FAILED":
                    self._aborted(member)  # a failed transaction call: it may have aborted

    # -- what the drivers ask ------------------------------------------------------------------

    def unhandled(self) -> dict[TopicPartition, list[int]]:
        """Acknowledged offsets no handler has returned for yet, by partition."""
        missing = {
            key: sorted(set(part.produced) - part.handled) for key, part in self._partitions.items()
        }
        return {key: values for key, values in missing.items() if values}

    def uncommitted(self) -> int:
        """Acknowledged messages at or past their partition's last commit seen."""
        return sum(
            sum(1 for offset in part.produced if offset >= (part.committed or 0))
            for part in self._partitions.values()
        )

    def frontier(self, key: TopicPartition) -> int:
        """Every offset below it was handled by the group: a seek there skips nothing."""
        return self._part(key).frontier

    def held_by(self, member: str) -> list[TopicPartition]:
        """Partitions the coordinator says ``member`` holds (exact histories)."""
        return sorted(
            key for (name, key), lane in self._lanes.items() if name == member and lane.owned
        )

    def report(self) -> str:
        """Every violation found so far, explained."""
        return report(self.violations, self.origin or 0.0)

    # -- commits -------------------------------------------------------------------------------

    def _committed(self, event: Committed, member: str, key: TopicPartition, offset: int) -> None:
        part, lane = self._part(key), self._lane(member, key)
        part.recent.append(event)
        if offset > part.frontier:
            never = set(range(part.frontier, offset)) - part.handled
            self._violate(
                "I2",
                event,
                f"committed {offset}, but {ranges(never)} had not been handled by any member",
                member,
                key,
            )
        elif self.exact and (lane.committable is None or offset > lane.committable):
            done = "nothing" if lane.committable is None else f"up to {lane.committable - 1}"
            self._violate(
                "I2",
                event,
                f"committed {offset}, but its own handlers had returned contiguously {done}",
                member,
                key,
            )
        part.committed, part.committed_at, part.committed_by = offset, event.at, member

    def _snapshot(self, event: CommitSnapshot, key: TopicPartition, offset: int) -> None:
        part = self._part(key)
        part.recent.append(event)
        # Snapshots repeat: a gap already reported is not news until the frontier moves.
        if offset > part.frontier and part.frontier != part.gap_reported:
            part.gap_reported = part.frontier
            self._violate(
                "I2",
                event,
                f"the group's committed offset was {offset}, but "
                f"{ranges(set(range(part.frontier, offset)) - part.handled)} had not been handled",
                None,
                key,
            )
        if part.committed is not None and offset < part.committed:
            self._violate(
                "I5",
                event,
                f"the group's committed offset went back from {part.committed} (read at "
                f"{stamp(part.committed_at, self._origin)}) to {offset}: "
                f"{offsets(offset, part.committed - 1)} will come again",
                None,
                key,
            )
        part.committed, part.committed_at, part.committed_by = offset, event.at, ""

    # -- membership ----------------------------------------------------------------------------

    def _assigned(self, event: Assigned, member: str, key: TopicPartition) -> None:
        part, lane = self._part(key), self._lane(member, key)
        part.recent.append(event)
        if part.owner is not None and part.owner != member:
            self._violate("I3", event, f"assigned while {part.owner} still held it", member, key)
        part.owner = member
        position = part.committed if part.committed is not None else 0
        lane.owned, lane.revoking_since = True, None
        lane.reset = ("assignment", position, event.at)
        lane.stale_through = self._last_call.get(member, -1)
        lane.last, lane.last_outcome = None, None
        lane.progress, lane.committable = None, position

    def _revoked(self, event: Revoked, member: str, key: TopicPartition) -> None:
        part, lane = self._part(key), self._lane(member, key)
        part.recent.append(event)
        committed = part.committed if part.committed is not None else 0
        if lane.progress is not None and committed < lane.progress:
            self._violate(
                "I5",
                event,
                f"gave the partition up with {offsets(committed, lane.progress - 1)} handled but "
                f"not committed (committed: {committed}): they will come again",
                member,
                key,
            )
        self._release(member, key)

    def _holding(self, event: Holding, member: str, keys: tuple[TopicPartition, ...]) -> None:
        """Polled from a native client: only the explanations of an inexact history use it."""
        if self.exact:
            return
        held = set(keys)
        for key, part in self._partitions.items():
            if key in held and part.owner != member:
                part.owner = member
                part.recent.append(event)
            elif key not in held and part.owner == member:
                part.owner = None
                part.recent.append(event)

    def _evicted(self, member: str) -> None:
        for name, key in [lane for lane in self._lanes if lane[0] == member]:
            self._release(name, key)

    def _release(self, member: str, key: TopicPartition) -> None:
        part, lane = self._part(key), self._lane(member, key)
        if part.owner == member:
            part.owner = None
        lane.owned, lane.revoking_since, lane.reset = False, None, None
        lane.stale_through = self._last_call.get(member, -1)
        lane.last, lane.progress, lane.committable = None, None, None

    def _crash(self, event: Crashed, member: str) -> None:
        self._crashed.add(member)
        for part in self._partitions.values():
            if part.running.pop(member, None) is not None:
                part.recent.append(event)

    # -- calls and the end ---------------------------------------------------------------------

    def _call(self, event: Call) -> None:
        took = event.at - event.started
        if took > event.bound + self.slack:
            self._violate(
                "I6",
                event,
                f"{event.name}() took {took:.3f}s (-> {event.outcome}); its bound is "
                f"{event.bound:.3f}s ({event.bound_rule}) plus {self.slack:.2f}s of slack",
                event.member,
            )

    def _quiet(self, event: Quiet) -> None:
        for key, missing in sorted(self.unhandled().items()):
            part = self._part(key)
            holder = part.owner or "nobody"
            running = ", ".join(
                f"{name} on {offsets(call.first, call.last)}" for name, call in part.running.items()
            )
            self._violate(
                "I1",
                event,
                f"{len(missing)} acknowledged message(s) never handled: {ranges(missing)} "
                f"(held by {holder}; running: {running or 'nothing'}; committed: {part.committed})",
                None,
                key,
            )
