"""Hand-written histories for testing the checker: a clock that ticks and one call per event."""

from __future__ import annotations

import itertools

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
    Leftovers,
    Outcome,
    Output,
    OutputsRead,
    Produced,
    Quiet,
    Revoked,
    Revoking,
    Sought,
    TopicPartition,
)

ORIGIN = 1000.0
"""The history's first instant: violations say "+0.010s" for ORIGIN + 0.01."""

T0: TopicPartition = ("t", 0)
T1: TopicPartition = ("t", 1)


class Story:
    """Builds a history; every event happens 10 ms after the previous one."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.now = ORIGIN
        self._calls = itertools.count()

    def _at(self) -> float:
        at, self.now = self.now, round(self.now + 0.01, 6)
        return at

    def produce(self, key: TopicPartition, count: int) -> None:
        """``count`` acknowledged messages at offsets 0..count-1."""
        for offset in range(count):
            self.events.append(Produced(self._at(), key[0], key[1], offset, f"v{offset}"))

    def assign(self, member: str, *keys: TopicPartition) -> None:
        self.events.append(Assigned(self._at(), member, keys))

    def revoking(self, member: str, *keys: TopicPartition) -> None:
        self.events.append(Revoking(self._at(), member, keys))

    def revoked(self, member: str, *keys: TopicPartition) -> None:
        self.events.append(Revoked(self._at(), member, keys))

    def give_up(self, member: str, key: TopicPartition, commit: int | None) -> None:
        """A revocation, with the commit of what was processed."""
        self.revoking(member, key)
        if commit is not None:
            self.commit(member, key, commit)
        self.revoked(member, key)

    def commit(self, member: str, key: TopicPartition, offset: int) -> None:
        self.events.append(Committed(self._at(), member, ((key[0], key[1], offset),)))

    def snapshot(self, key: TopicPartition, offset: int) -> None:
        at = self._at()
        self.events.append(CommitSnapshot(at, at - 0.005, ((key[0], key[1], offset),)))

    def start(self, member: str, key: TopicPartition, first: int, last: int | None = None) -> int:
        call = next(self._calls)
        last = first if last is None else last
        self.events.append(HandlerStarted(self._at(), member, key[0], key[1], first, last, call))
        return call

    def end(
        self,
        member: str,
        key: TopicPartition,
        call: int,
        first: int,
        last: int | None = None,
        outcome: Outcome = "ok",
    ) -> None:
        last = first if last is None else last
        at = self._at()
        self.events.append(HandlerEnded(at, member, key[0], key[1], first, last, call, outcome))

    def handle(
        self, member: str, key: TopicPartition, *offsets: int, outcome: Outcome = "ok"
    ) -> None:
        """One complete each_message call per offset."""
        for offset in offsets:
            call = self.start(member, key, offset)
            self.end(member, key, call, offset, outcome=outcome)

    def seek(self, member: str, key: TopicPartition, offset: int) -> None:
        self.events.append(Sought(self._at(), member, key[0], key[1], offset))

    def crash(self, member: str) -> None:
        self.events.append(Crashed(self._at(), member))

    def evict(self, member: str) -> None:
        self.events.append(Evicted(self._at(), member))

    def call(self, member: str, name: str, took: float, bound: float) -> None:
        at = self._at()
        self.events.append(Call(at, at - took, member, name, "ok", bound, "request_timeout"))

    def leftovers(self, member: str, tasks: tuple[str, ...], threads: tuple[str, ...]) -> None:
        self.events.append(Leftovers(self._at(), member, tasks, threads))

    def quiet(self) -> None:
        self.events.append(Quiet(self._at()))

    def output(self, key: TopicPartition, *sources: int, value: str | None = None) -> None:
        """Records of the output topic (same partition) transforming ``sources`` of ``key``."""
        for source in sources:
            carried = f"v{source}" if value is None else value
            offset = sum(1 for event in self.events if isinstance(event, Output))
            self.events.append(
                Output(self._at(), key[1], offset, (key[0], key[1], source), carried)
            )

    def outputs_read(self, complete: bool = True) -> None:
        self.events.append(OutputsRead(self._at(), complete))
