"""The checker's rule for exactly-once pipelines (I7): one visible output per input.

Members of a transactional group send, for each input record, one output record
whose key names the input (``topic:partition:offset``) and whose value carries the
input's value (``_recorder.transformed``). Once the group is quiet the driver reads
the output topic with read_committed (``Output`` events, then ``OutputsRead``): every
acknowledged input must show exactly once, carrying its own value; an output naming
an input nobody acknowledged (a produce whose answer a cut lost) may show, but once.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Final

from ._events import Output, OutputsRead, Reported, Wrote
from ._report import offsets, ranges
from ._state import HistoryState

Source = tuple[str, int, int]
FENCED: Final = "STREAMING_PRODUCER_FENCED"


class OutputRules(HistoryState):
    """Collects what the pipeline wrote and what a read_committed reader saw; checks I7."""

    def __init__(self, *, exact: bool, slack: float, transactional: bool = False) -> None:
        super().__init__(exact=exact, slack=slack, transactional=transactional)
        self.outputs: dict[Source, list[Output]] = defaultdict(list)
        self.written: list[Wrote] = []
        self.reported: list[Reported] = []
        """What transactional members' run loops told on_error."""

    @property
    def fenced(self) -> list[str]:
        """Members whose run loop stopped on STREAMING_PRODUCER_FENCED, in order."""
        return [event.member for event in self.reported if event.code == FENCED]

    def _output(self, event: Output) -> None:
        self.outputs[event.source].append(event)

    def _outputs_read(self, event: OutputsRead) -> None:
        if not event.complete:
            self._violate(
                "I7",
                event,
                "the output topic could not be read to its end with read_committed "
                "(an open transaction holds it back, or the broker did not answer)",
            )
        shown = dict(self.outputs)
        for key, part in sorted(self._partitions.items()):
            missing: list[int] = []
            for offset, value in sorted(part.produced.items()):
                found = shown.pop((key[0], key[1], offset), [])
                if not found:
                    missing.append(offset)
                    continue
                if len(found) > 1:
                    where = ", ".join(f"[{out.partition}]@{out.offset}" for out in found)
                    self._violate(
                        "I7", event, f"input {offset} shows {len(found)} times: {where}", None, key
                    )
                wrong = [out for out in found if out.value != value]
                if wrong:
                    self._violate(
                        "I7",
                        event,
                        f"the output of input {offset} carries {wrong[0].value!r}, not {value!r}",
                        None,
                        key,
                    )
            if missing:
                self._violate(
                    "I7",
                    event,
                    f"{len(missing)} input record(s) without an output: {ranges(missing)}",
                    None,
                    key,
                )
        for (topic, partition, offset), found in sorted(shown.items()):
            if len(found) > 1:
                self._violate(
                    "I7",
                    event,
                    f"input {offsets(offset, offset)} (never acknowledged) shows "
                    f"{len(found)} times",
                    None,
                    (topic, partition),
                )
