"""The events of a history: what a recorder logs and the checker reads.

Every event carries ``at``, a ``time.monotonic()`` reading: on Linux that clock is
shared by every process of the machine, so histories written by child processes
merge into one timeline. Members are named ``label#incarnation`` (``m1#2`` is the
second run of member ``m1``: a reconnect or a restarted process is a new member).
Partitions are ``(topic, partition)`` pairs.

An event is one line of JSON (``to_line``/``from_line``), so a child process can
append each with a single ``os.write`` and a kill never leaves half of one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

TopicPartition = tuple[str, int]
Outcome = Literal["ok", "failed", "cancelled"]


@dataclass(frozen=True, slots=True)
class Produced:
    """A message the broker acknowledged, as its ProduceResult said."""

    kind: ClassVar[str] = "produced"
    at: float
    topic: str
    partition: int
    offset: int
    value: str


@dataclass(frozen=True, slots=True)
class HandlerStarted:
    """A handler call began on ``first..last`` (one offset for each_message)."""

    kind: ClassVar[str] = "started"
    at: float
    member: str
    topic: str
    partition: int
    first: int
    last: int
    call: int
    """Unique per member: pairs the start with its end."""


@dataclass(frozen=True, slots=True)
class HandlerEnded:
    """A handler call returned (``ok``), failed (raised or returned a Failure) or was cancelled."""

    kind: ClassVar[str] = "ended"
    at: float
    member: str
    topic: str
    partition: int
    first: int
    last: int
    call: int
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Committed:
    """Offsets (next to read) a member's commit stored, as the coordinator reported them."""

    kind: ClassVar[str] = "committed"
    at: float
    member: str
    offsets: tuple[tuple[str, int, int], ...]


@dataclass(frozen=True, slots=True)
class CommitSnapshot:
    """The group's committed offsets, read by an outside client asked at ``asked``."""

    kind: ClassVar[str] = "snapshot"
    at: float
    asked: float
    offsets: tuple[tuple[str, int, int], ...]


@dataclass(frozen=True, slots=True)
class Assigned:
    """The coordinator gave ``partitions`` to a member."""

    kind: ClassVar[str] = "assigned"
    at: float
    member: str
    partitions: tuple[TopicPartition, ...]


@dataclass(frozen=True, slots=True)
class Revoking:
    """The coordinator asked a member to give ``partitions`` up."""

    kind: ClassVar[str] = "revoking"
    at: float
    member: str
    partitions: tuple[TopicPartition, ...]


@dataclass(frozen=True, slots=True)
class Revoked:
    """A member gave ``partitions`` up (after committing what it processed of them)."""

    kind: ClassVar[str] = "revoked"
    at: float
    member: str
    partitions: tuple[TopicPartition, ...]


@dataclass(frozen=True, slots=True)
class Holding:
    """What a member's native client said it was assigned, polled: for explanations only."""

    kind: ClassVar[str] = "holding"
    at: float
    member: str
    partitions: tuple[TopicPartition, ...]


@dataclass(frozen=True, slots=True)
class Evicted:
    """The coordinator dropped a dead member; what it held is free."""

    kind: ClassVar[str] = "evicted"
    at: float
    member: str


@dataclass(frozen=True, slots=True)
class Sought:
    """``seek`` returned Success: the next message handled on the partition is ``offset``."""

    kind: ClassVar[str] = "sought"
    at: float
    member: str
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Crashed:
    """The member died without disconnecting (its loop closed, or SIGKILL)."""

    kind: ClassVar[str] = "crashed"
    at: float
    member: str


@dataclass(frozen=True, slots=True)
class Call:
    """A public call returned after ``at - started`` seconds; ``bound`` is its contract's."""

    kind: ClassVar[str] = "call"
    at: float
    started: float
    member: str
    name: str
    outcome: str
    """"ok", or the error code of the Failure."""
    bound: float
    bound_rule: str
    """Where the bound comes from, e.g. "request_timeout"."""


@dataclass(frozen=True, slots=True)
class Leftovers:
    """Tasks and threads of the library still alive when disconnect() returned."""

    kind: ClassVar[str] = "leftovers"
    at: float
    member: str
    tasks: tuple[str, ...]
    threads: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Fault:
    """The driver did something to the group or its connections ("cut", "kill", ...)."""

    kind: ClassVar[str] = "fault"
    at: float
    action: str


@dataclass(frozen=True, slots=True)
class Quiet:
    """The driver stopped every fault and producer and let the group settle."""

    kind: ClassVar[str] = "quiet"
    at: float


@dataclass(frozen=True, slots=True)
class Wrote:
    """A handler's send in the loop's open transaction was acknowledged: output ``offset``
    of ``partition`` transforms input ``source`` (visible only if the transaction commits)."""

    kind: ClassVar[str] = "wrote"
    at: float
    member: str
    partition: int
    offset: int
    source: tuple[str, int, int]


@dataclass(frozen=True, slots=True)
class Reported:
    """The run loop told ``on_error`` about ``code`` (the transactional members log every one)."""

    kind: ClassVar[str] = "reported"
    at: float
    member: str
    code: str


@dataclass(frozen=True, slots=True)
class Output:
    """A record of the output topic, read with read_committed once the group was quiet."""

    kind: ClassVar[str] = "output"
    at: float
    partition: int
    offset: int
    source: tuple[str, int, int]
    """The input record (topic, partition, offset) it says it transforms."""
    value: str
    """The input's value, as the transformation carried it over."""


@dataclass(frozen=True, slots=True)
class OutputsRead:
    """The output topic was read to its end (``complete``) or as far as the reader got."""

    kind: ClassVar[str] = "outputs-read"
    at: float
    complete: bool


Event = (
    Produced
    | HandlerStarted
    | HandlerEnded
    | Committed
    | CommitSnapshot
    | Assigned
    | Revoking
    | Revoked
    | Holding
    | Evicted
    | Sought
    | Crashed
    | Call
    | Leftovers
    | Fault
    | Quiet
    | Wrote
    | Reported
    | Output
    | OutputsRead
)

_TYPES: Final[dict[str, type[Any]]] = {
    cls.kind: cls
    for cls in (
        Produced,
        HandlerStarted,
        HandlerEnded,
        Committed,
        CommitSnapshot,
        Assigned,
        Revoking,
        Revoked,
        Holding,
        Evicted,
        Sought,
        Crashed,
        Call,
        Leftovers,
        Fault,
        Quiet,
        Wrote,
        Reported,
        Output,
        OutputsRead,
    )
}


def to_line(event: Event) -> bytes:
    """One line of JSON, newline included."""
    fields = {field.name: getattr(event, field.name) for field in dataclasses.fields(event)}
    return (json.dumps({"kind": event.kind, **fields}, separators=(",", ":")) + "\n").encode()


def from_line(line: bytes | str) -> Event:
    """The event a line of :func:`to_line` describes."""
    raw = json.loads(line)
    cls = _TYPES[raw.pop("kind")]
    event: Event = cls(**{key: _tuples(value) for key, value in raw.items()})
    return event


def _tuples(value: object) -> object:
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value


def read_lines(data: bytes) -> list[Event]:
    """Every complete line of a history file (a killed writer may leave nothing half-written)."""
    return [from_line(line) for line in data.splitlines() if line.strip()]
