"""What the checker remembers of a history: per partition, and per member and partition.

``HistoryState`` holds it and words violations; the rules live in ``_handler_rules``
(handler calls: I3, I4 and the restarts of I5) and ``_checker`` (the rest).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

from ._events import Event, HandlerStarted, Outcome, TopicPartition
from ._report import Violation, describe

_CONTEXT: Final = 12
"""Events of a partition remembered for a violation's explanation."""


@dataclass(slots=True)
class Partition:
    """What the group did with one partition."""

    produced: dict[int, str] = field(default_factory=dict)
    handled: set[int] = field(default_factory=set)
    frontier: int = 0
    """Every offset below it was handled with success by some member."""
    committed: int | None = None
    committed_at: float = 0.0
    committed_by: str = ""
    gap_reported: int | None = None
    """The frontier at the last I2 report from a snapshot."""
    owner: str | None = None
    running: dict[str, HandlerStarted] = field(default_factory=dict)
    recent: deque[Event] = field(default_factory=lambda: deque(maxlen=_CONTEXT))


@dataclass(slots=True)
class Lane:
    """One member's work on one partition."""

    owned: bool = False
    revoking_since: float | None = None
    reset: tuple[str, int, float] | None = None
    """A pending restart: ("assignment" | "seek", the offset the next call must start at, when)."""
    stale_through: int = -1
    """Calls with ids up to this one started before the last reset: their ends change nothing."""
    last: HandlerStarted | None = None
    last_outcome: Outcome | None = None
    progress: int | None = None
    """One past the last offset handled contiguously since the run began."""
    committable: int | None = None
    """The highest commit allowed: the best ``progress`` since the partition was assigned."""


class HistoryState:
    """The checker's memory of the history so far, and the violations found in it."""

    def __init__(self, *, exact: bool, slack: float, transactional: bool = False) -> None:
        self.exact: Final = exact
        self.transactional: Final = transactional
        """Members handle in transactions: a failure voids their progress since the last commit."""
        self.slack: Final = slack
        self.violations: list[Violation] = []
        self.origin: float | None = None
        self._partitions: dict[TopicPartition, Partition] = {}
        self._lanes: dict[tuple[str, TopicPartition], Lane] = {}
        self._last_call: dict[str, int] = {}
        self._crashed: set[str] = set()

    @property
    def _origin(self) -> float:
        return self.origin or 0.0

    def _part(self, key: TopicPartition) -> Partition:
        part = self._partitions.get(key)
        if part is None:
            part = self._partitions[key] = Partition()
        return part

    def _lane(self, member: str, key: TopicPartition) -> Lane:
        lane = self._lanes.get((member, key))
        if lane is None:
            lane = self._lanes[(member, key)] = Lane()
        return lane

    def _violate(
        self,
        invariant: str,
        event: Event,
        message: str,
        member: str | None = None,
        key: TopicPartition | None = None,
    ) -> None:
        context: tuple[str, ...] = ()
        if key is not None:
            context = tuple(describe(seen, self._origin) for seen in self._part(key).recent)
        self.violations.append(Violation(invariant, event.at, message, member, key, context))
