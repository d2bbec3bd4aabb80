"""What each member process last said it held, read from the members' history files.

Read incrementally (a member's file grows to tens of thousands of lines in the long
run), so a schedule can ask "is the group formed?" every tenth of a second.
"""

from __future__ import annotations

from pathlib import Path

from ._events import Holding, from_line

_HOLDING: bytes = b'"kind":"holding"'


class Holdings:
    """The last ``Holding`` of each member file, kept up to date on ``refresh``."""

    def __init__(self) -> None:
        self._read_to: dict[Path, int] = {}
        self._last: dict[Path, frozenset[tuple[str, int]]] = {}

    def formed(self, histories: list[Path], partitions: frozenset[tuple[str, int]]) -> bool:
        """Whether the members writing ``histories`` share ``partitions`` between them, each
        holding some and none holding the same: a generation has formed and no member
        (a new one, or one whose partitions were revoked) waits for an assignment."""
        held: set[tuple[str, int]] = set()
        count = 0
        for path in histories:
            mine = self._refresh(path)
            if not mine:
                return False
            held |= mine
            count += len(mine)
        return held == partitions and count == len(partitions)

    def _refresh(self, path: Path) -> frozenset[tuple[str, int]]:
        if not path.exists():
            return frozenset()
        with path.open("rb") as file:
            file.seek(self._read_to.get(path, 0))
            data = file.read()
        complete = data.rfind(b"\n") + 1  # a line being written is read next time
        self._read_to[path] = self._read_to.get(path, 0) + complete
        for line in data[:complete].splitlines():
            if _HOLDING in line:
                event = from_line(line)
                assert isinstance(event, Holding)
                self._last[path] = frozenset(event.partitions)
        return self._last.get(path, frozenset())
