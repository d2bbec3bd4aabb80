"""Violations and how the checker words them: which invariant, member, partition, offsets, when."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from ._events import (
    Assigned,
    Call,
    CommitSnapshot,
    Committed,
    Crashed,
    Event,
    Evicted,
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

INVARIANTS: Final = {
    "I1": "every acknowledged message is handled at least once by the group once it is quiet",
    "I2": "no commit exceeds one past the highest offset whose handler returned, contiguously, "
    "on the committing member (on a real broker: on the group)",
    "I3": "no two handler calls run for the same partition at overlapping times",
    "I4": "per partition, a member's handled offsets go up by one, restarting only at a seek "
    "target, a redelivery after failure, or the committed position after an assignment",
    "I5": "after a crash or rebalance, only what was handled after the last successful commit "
    "comes again",
    "I6": "every call returns within its bound; no task or thread outlives disconnect()",
    "I7": "exactly-once: the output topic, read with read_committed, holds exactly one "
    "transformed record per acknowledged input record, none missing and none twice",
}


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant, in words, with the partition's recent history for context."""

    invariant: str
    at: float
    message: str
    member: str | None = None
    partition: TopicPartition | None = None
    context: tuple[str, ...] = ()

    def explain(self, origin: float) -> str:
        """A paragraph: the invariant, what broke it, and what led there (times from origin)."""
        where = f" on {self.partition[0]}[{self.partition[1]}]" if self.partition else ""
        who = f" by {self.member}" if self.member else ""
        lines = [
            f"{self.invariant} broken at {stamp(self.at, origin)}{who}{where}: {self.message}",
            f"    ({self.invariant}: {INVARIANTS[self.invariant]})",
        ]
        if self.context:
            lines.append("    recent history of the partition:")
            lines.extend(f"      {line}" for line in self.context)
        return "\n".join(lines)


def stamp(at: float, origin: float) -> str:
    """A time as seconds since the history began."""
    return f"+{at - origin:.3f}s"


def offsets(first: int, last: int) -> str:
    """``5`` or ``5..9``."""
    return str(first) if first == last else f"{first}..{last}"


def ranges(values: Iterable[int], limit: int = 8) -> str:
    """Sorted offsets as compact ranges: ``0..4, 7, 9..12`` (the first ``limit`` ranges)."""
    spans: list[tuple[int, int]] = []
    for value in sorted(values):
        if spans and value == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], value)
        else:
            spans.append((value, value))
    shown = ", ".join(offsets(first, last) for first, last in spans[:limit])
    return shown + (f", ... ({len(spans) - limit} more ranges)" if len(spans) > limit else "")


def describe(event: Event, origin: float) -> str:
    """One line for one event, as it appears in a violation's context."""
    at = stamp(event.at, origin)
    match event:
        case HandlerStarted(member=member, first=first, last=last):
            return f"{at} {member} started {offsets(first, last)}"
        case HandlerEnded(member=member, first=first, last=last, outcome=outcome):
            return f"{at} {member} {outcome} {offsets(first, last)}"
        case Produced(offset=offset, value=value):
            return f"{at} produced {offset} ({value})"
        case Committed(member=member, offsets=stored):
            return f"{at} {member} committed " + ", ".join(f"{t}[{p}]={o}" for t, p, o in stored)
        case CommitSnapshot(offsets=read):
            return f"{at} group committed (read) " + ", ".join(f"{t}[{p}]={o}" for t, p, o in read)
        case Assigned(member=member) | Revoking(member=member) | Revoked(member=member):
            return f"{at} {member} {event.kind}"
        case Holding(member=member, partitions=keys):
            return f"{at} {member} reports holding " + ", ".join(f"{t}[{p}]" for t, p in keys)
        case Sought(member=member, offset=offset):
            return f"{at} {member} sought {offset}"
        case Crashed(member=member) | Evicted(member=member):
            return f"{at} {member} {event.kind}"
        case Call(member=member, name=name, outcome=outcome, started=started):
            return f"{at} {member} {name}() -> {outcome} after {event.at - started:.3f}s"
        case Leftovers(member=member, tasks=tasks, threads=threads):
            return f"{at} {member} left tasks {list(tasks)} threads {list(threads)}"
        case Quiet():
            return f"{at} quiet"
        case Wrote(member=member, partition=partition, offset=offset, source=(_, _, source)):
            return f"{at} {member} wrote {source} as output [{partition}]@{offset}"
        case Reported(member=member, code=code):
            return f"{at} {member} on_error {code}"
        case Output(partition=partition, offset=offset, source=(_, _, source)):
            return f"{at} output [{partition}]@{offset} transforms {source}"
        case OutputsRead(complete=complete):
            return f"{at} output read {'to its end' if complete else 'in part'}"
    raise AssertionError(f"unknown event {event!r}")


def report(violations: Sequence[Violation], origin: float, limit: int = 12) -> str:
    """Every violation explained (the first ``limit`` in full), ready for an assertion message."""
    if not violations:
        return "every invariant holds"
    counts: dict[str, int] = {}
    for violation in violations:
        counts[violation.invariant] = counts.get(violation.invariant, 0) + 1
    summary = ", ".join(f"{name} x{count}" for name, count in sorted(counts.items()))
    shown = [violation.explain(origin) for violation in violations[:limit]]
    more = len(violations) - limit
    tail = [f"... and {more} more"] if more > 0 else []
    return "\n".join([f"{len(violations)} violation(s): {summary}", *shown, *tail])
