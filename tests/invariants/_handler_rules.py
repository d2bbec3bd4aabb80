"""The checker's rules for handler calls: overlaps (I3), sequences (I4), restarts (I5)."""

from __future__ import annotations

from ._events import HandlerEnded, HandlerStarted
from ._report import offsets, ranges, stamp
from ._state import HistoryState, Lane, Partition


class HandlerRules(HistoryState):
    """Checks each handler call's start against what the member was doing on the partition."""

    def _started(self, event: HandlerStarted) -> None:
        member, key, first = event.member, (event.topic, event.partition), event.first
        part, lane = self._part(key), self._lane(member, key)
        part.recent.append(event)
        self._last_call[member] = event.call
        span = offsets(first, event.last)
        if member in self._crashed:
            self._violate("I3", event, f"started {span} after it crashed", member, key)
        for other, running in part.running.items():
            since = stamp(running.at, self._origin)
            whose = "its own call" if other == member else other
            self._violate(
                "I3",
                event,
                f"started {span} while {whose} still ran "
                f"{offsets(running.first, running.last)} (started {since})",
                member,
                key,
            )
        if self.exact and not lane.owned:
            holder = f"held by {part.owner}" if part.owner else "held by nobody"
            self._violate(
                "I3", event, f"started {span} without holding the partition ({holder})", member, key
            )
        if self.exact and lane.revoking_since is not None:
            since = stamp(lane.revoking_since, self._origin)
            self._violate(
                "I3",
                event,
                f"started {span} after the revocation of the partition began at {since}: "
                "the next owner may run it at the same time",
                member,
                key,
            )
        self._check_sequence(event, part, lane)
        lane.last, lane.last_outcome = event, None
        part.running[member] = event

    def _check_sequence(self, event: HandlerStarted, part: Partition, lane: Lane) -> None:
        member, key, first = event.member, (event.topic, event.partition), event.first
        if lane.reset is not None:
            reason, expected, since = lane.reset
            lane.reset = None
            lane.progress = first
            if first == expected:
                return
            when = stamp(since, self._origin)
            if reason == "seek":
                self._violate(
                    "I4",
                    event,
                    f"handled {first} first after a seek to {expected} at {when}",
                    member,
                    key,
                )
            elif first < expected:
                by = f"by {part.committed_by} " if part.committed_by else ""
                self._violate(
                    "I5",
                    event,
                    f"restarted at {first} after its assignment at {when}, but the group had "
                    f"committed {expected} {by}before: {offsets(first, expected - 1)} came again",
                    member,
                    key,
                )
            else:
                self._violate(
                    "I4",
                    event,
                    f"started at {first} after its assignment at {when}, skipping "
                    f"{offsets(expected, first - 1)} (the committed position was {expected})",
                    member,
                    key,
                )
            return
        last = lane.last
        if last is not None:
            expected = last.last + 1 if lane.last_outcome in ("ok", None) else last.first
            if first == expected:
                return
            if self.exact:
                previous = f"{offsets(last.first, last.last)} ({lane.last_outcome or 'running'})"
                if first > expected:
                    what = f"skipped {offsets(expected, first - 1)}"
                else:
                    what = f"went back to {first} without a seek, a failure or an assignment"
                self._violate("I4", event, f"{what} after {previous}", member, key)
                return
        elif self.exact:
            return  # started without an assignment: reported as I3 already
        self._restart(event, part, lane)

    def _restart(self, event: HandlerStarted, part: Partition, lane: Lane) -> None:
        """A jump in a history without assignments: valid only if it skips and repeats nothing."""
        member, key, first = event.member, (event.topic, event.partition), event.first
        lane.progress = first
        if first > part.frontier:
            self._violate(
                "I4",
                event,
                f"jumped to {first}, but {ranges(range(part.frontier, first))} had not been "
                "handled by any member",
                member,
                key,
            )
        elif part.committed is not None and first < part.committed:
            read = stamp(part.committed_at, self._origin)
            self._violate(
                "I5",
                event,
                f"restarted at {first}, but the group's committed offset was already "
                f"{part.committed} (read at {read}): "
                f"{offsets(first, part.committed - 1)} came again",
                member,
                key,
            )

    def _ended(self, event: HandlerEnded) -> None:
        member, key = event.member, (event.topic, event.partition)
        part, lane = self._part(key), self._lane(member, key)
        part.recent.append(event)
        started = part.running.get(member)
        if started is None or started.call != event.call:
            if member in self._crashed:
                return
            raise ValueError(f"malformed history: {event} ends a call that did not start")
        del part.running[member]
        if event.outcome == "ok":
            part.handled.update(range(event.first, event.last + 1))
            while part.frontier in part.handled:
                part.frontier += 1
        if event.call <= lane.stale_through:
            return  # started before a seek or a revocation: the engine ignores its end
        lane.last_outcome = event.outcome
        if event.outcome == "ok" and lane.progress == event.first:
            lane.progress = event.last + 1
            if lane.committable is None or lane.progress > lane.committable:
                lane.committable = lane.progress
        if self.transactional and event.outcome != "ok":
            self._aborted(member)

    def _aborted(self, member: str) -> None:
        """The member's open transaction aborted: what it handled since its last commit is
        void, and each partition it covered starts again at the committed offset (checked
        as a restart: it may repeat what was not committed, never skip)."""
        for (name, _), lane in self._lanes.items():
            if name == member:
                lane.last, lane.last_outcome, lane.progress = None, None, None
