"""Exactly-once on the memory backend: a consume-transform-produce group, checked with I7.

Members write each input's transformation in the run loop's transactions while a seeded
schedule adds members, disconnects and reconnects them, and crashes them (a crashed
member comes back under its transactional id, which aborts what it left open); some
handlers are slow and some fail (aborting their transaction). Once quiet, the output
topic read with read_committed must hold exactly one output per input, and the history
must keep every other invariant in its group-wide form.

``make test`` sends 3,000 messages; ``QI_LONG=1`` 30,000 through more faults.
``QI_SEED`` picks the schedule.
"""

from __future__ import annotations

import os
import random
from typing import Final

import pytest

from ._checker import Checker
from ._events import Produced
from ._memory_cluster import Member, MemoryCluster
from ._recorder import Plan

LONG: Final = os.environ.get("QI_LONG") == "1"
MESSAGES: Final = 30_000 if LONG else 3_000
BATCH: Final = 50
FAULTS: Final = ("join", "leave", "rejoin", "crash")
SLOW_MS: Final = 300
"""The zombie's slow message: long enough to pause its member in the middle of it."""


def _plans(cluster: MemoryCluster, rng: random.Random) -> list[Plan]:
    """Mostly plain; 2% failing once or twice; 5% slow (a few ms)."""
    plans = []
    for _ in range(BATCH):
        roll = rng.random()
        fails = 1 if roll < 0.015 else 2 if roll < 0.02 else 0
        delay = rng.choice((1, 3)) if 0.02 <= roll < 0.07 else 0
        plans.append(cluster.plan(fails, delay))
    return plans


def _fault(cluster: MemoryCluster, rng: random.Random) -> str:
    """One fault of a random kind among those the group can take now."""
    running = [member for member in cluster.members if member.state == "running"]
    stopped = [member for member in cluster.members if member.state == "stopped"]
    for action in rng.sample(FAULTS, len(FAULTS)):
        if action == "join" and len(running) < 4:
            cluster.add_member(each_batch=rng.random() < 0.3, auto_commit=False)
        elif action == "leave" and len(running) >= 2:
            cluster.disconnect(rng.choice(running))
        elif action == "rejoin" and stopped:
            cluster.start(rng.choice(stopped))
        elif action == "crash" and len(running) >= 2:
            victim = rng.choice(running)
            cluster.crash(victim)
            cluster.replace(victim)
        else:
            continue
        return action
    raise AssertionError("no fault applies")  # join always does below four members


def _check(cluster: MemoryCluster, described: str) -> Checker:
    cluster.settle()
    problems = cluster.failed_calls()
    if cluster.checker.violations:
        problems.append(cluster.checker.report())
    assert not problems, f"{described}:\n" + "\n".join(problems)
    return cluster.checker


@pytest.mark.timeout(1800 if LONG else 120)
def test_an_exactly_once_pipeline_through_joins_leaves_and_crashes_shows_each_output_once() -> None:
    seed = int(os.environ.get("QI_SEED", "13"))
    rng = random.Random(seed)
    cluster = MemoryCluster(transactional=True)
    actions: list[str] = []
    try:
        cluster.add_member(each_batch=False, auto_commit=False)
        cluster.add_member(each_batch=True, auto_commit=False)
        batches = MESSAGES // BATCH
        for index in range(batches):
            cluster.produce(f"{cluster.prefix}-base", None, _plans(cluster, rng))
            if index % 6 == 3:
                actions.append(_fault(cluster, rng))
            cluster.wait(0.01)
            cluster.feed()
        checker = _check(cluster, f"seed {seed}, {MESSAGES} messages, faults {actions}")
    finally:
        cluster.close()
    shown = {(out.partition, out.offset) for found in checker.outputs.values() for out in found}
    hidden = [wrote for wrote in checker.written if (wrote.partition, wrote.offset) not in shown]
    assert len(shown) == MESSAGES
    assert hidden, "no transaction aborted: the planned failures should have aborted some"
    assert "crash" in actions and "join" in actions, actions


@pytest.mark.timeout(120)
def test_a_paused_member_resumed_after_its_replacement_started_is_fenced() -> None:
    """The zombie: a member frozen (its loop gets no turns) in the middle of a transaction,
    its output of a slow message written; a replacement registers its transactional id;
    the frozen one carries on. It is fenced and stops, what it wrote never shows, and
    the replacement, once the zombie has left, handles that message again, once."""
    cluster = MemoryCluster(transactional=True)
    try:
        zombie = cluster.add_member(each_batch=False, auto_commit=False)
        cluster.add_member(each_batch=False, auto_commit=False)
        topic = f"{cluster.prefix}-base"
        for partition in range(3):
            cluster.produce(topic, partition, [cluster.plan() for _ in range(20)])
        cluster.wait(0.2)
        cluster.feed()
        held = cluster.checker.held_by(zombie.name)
        assert held, "the zombie-to-be holds no partition"
        partition = held[0][1]
        slow = cluster.plan(0, SLOW_MS)
        cluster.produce(topic, partition, [slow, *(cluster.plan() for _ in range(10))])
        source = _wait_for_write(cluster, zombie, slow)
        cluster.pause(zombie)
        replacement = cluster.new_member(each_batch=False, auto_commit=False, replacing=zombie)
        cluster.resume(zombie)
        assert cluster.loops.run_until(lambda: _fenced(cluster, zombie), 10), "never fenced"
        cluster.disconnect(zombie)
        cluster.start(replacement)
        checker = _check(cluster, f"{zombie.name} paused holding {source}")
    finally:
        cluster.close()
    writes = [(w.partition, w.offset) for w in checker.written if w.member == zombie.name]
    (shown,) = checker.outputs[source]  # I7 held: exactly one
    assert (shown.partition, shown.offset) not in writes, f"{zombie.name}'s write is visible"
    assert set(checker.fenced) == {zombie.name}


def _fenced(cluster: MemoryCluster, member: Member) -> bool:
    cluster.feed()
    return member.name in cluster.checker.fenced


def _wait_for_write(cluster: MemoryCluster, member: Member, plan: Plan) -> tuple[str, int, int]:
    """Run until ``member`` wrote the output of ``plan``'s message; that message."""
    value = plan.value().decode()
    produced = next(e for e in cluster.history if isinstance(e, Produced) and e.value == value)
    source = (produced.topic, produced.partition, produced.offset)

    def written() -> bool:
        cluster.feed()
        return any(w.member == member.name and w.source == source for w in cluster.checker.written)

    assert cluster.loops.run_until(written, 10), f"{member.name} never wrote {source}'s output"
    return source
