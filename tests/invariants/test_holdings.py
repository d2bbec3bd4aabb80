"""The real schedules' "has the group formed?" on hand-written member files."""

from __future__ import annotations

from pathlib import Path

from ._events import HandlerStarted, Holding, to_line
from ._holdings import Holdings

EVERY = frozenset(("t", partition) for partition in range(4))


def _write(path: Path, *events: Holding | HandlerStarted) -> None:
    with path.open("ab") as file:
        file.write(b"".join(to_line(event) for event in events))


def test_the_group_has_formed_once_live_members_share_every_partition_once(
    tmp_path: Path,
) -> None:
    one, two = tmp_path / "m1.jsonl", tmp_path / "m2.jsonl"
    holdings = Holdings()
    assert not holdings.formed([one, two], EVERY)  # nobody wrote anything yet

    _write(one, Holding(1.0, "m1", (("t", 0), ("t", 1))))
    _write(two, HandlerStarted(1.1, "m2", "t", 0, 5, 5, 1))
    assert not holdings.formed([one, two], EVERY)  # m2 waits for an assignment

    _write(two, Holding(1.2, "m2", (("t", 2), ("t", 3))))
    assert holdings.formed([one, two], EVERY)

    _write(one, Holding(2.0, "m1", ()))  # revoked: a rebalance is on
    assert not holdings.formed([one, two], EVERY)

    _write(one, Holding(2.5, "m1", (("t", 0), ("t", 1), ("t", 2))))
    assert not holdings.formed([one, two], EVERY)  # m2 still holds partition 2 as well

    _write(two, Holding(2.6, "m2", (("t", 3),)))
    assert holdings.formed([one, two], EVERY)
    assert not holdings.formed([one], EVERY)  # m2 died: its partition is nobody's yet


def test_a_line_still_being_written_is_read_once_it_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "m1.jsonl"
    line = to_line(Holding(1.0, "m1", tuple(sorted(EVERY))))
    path.write_bytes(line[:20])
    holdings = Holdings()
    assert not holdings.formed([path], EVERY)
    with path.open("ab") as file:
        file.write(line[20:])
    assert holdings.formed([path], EVERY)
