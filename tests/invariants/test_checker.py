"""The checker, on hand-made histories: correct ones pass, and each broken invariant is
reported with who, where, which offsets and when."""

from __future__ import annotations

import pytest

from ._checker import Checker
from ._events import (
    Call,
    CommitSnapshot,
    Committed,
    Event,
    HandlerEnded,
    HandlerStarted,
    Leftovers,
    Output,
    OutputsRead,
    Produced,
    Quiet,
    Reported,
    Sought,
    Wrote,
    from_line,
    read_lines,
    to_line,
)
from ._report import Violation
from ._story import T0, T1, Story


def _check(story: Story, *, exact: bool) -> list[Violation]:
    checker = Checker(exact=exact, slack=0.5)
    checker.feed_all(story.events)
    return checker.violations


def _only(violations: list[Violation], invariant: str) -> str:
    """The one violation expected, explained; fails with every violation otherwise."""
    text = "\n".join(violation.explain(1000.0) for violation in violations)
    assert [violation.invariant for violation in violations] == [invariant], text
    return text


def _exact_story() -> Story:
    """Two members share a partition through a rebalance, a failure, a seek and a crash."""
    story = Story()
    story.produce(T0, 6)
    story.produce(T1, 2)
    story.assign("m1#1", T0, T1)
    story.handle("m1#1", T0, 0, 1)
    story.handle("m1#1", T0, 2, outcome="failed")
    story.handle("m1#1", T0, 2)  # the redelivery of the failed message
    story.handle("m1#1", T1, 0, 1)
    story.commit("m1#1", T0, 3)
    story.give_up("m1#1", T1, commit=2)
    story.assign("m2#1", T1)
    story.handle("m1#1", T0, 3)
    story.seek("m1#1", T0, 1)
    story.handle("m1#1", T0, 1, 2)  # the replay the seek asked for
    story.crash("m1#1")  # processed 3 but committed 3: nothing older comes again
    story.evict("m1#1")
    story.assign("m2#1", T0)
    story.handle("m2#1", T0, 3, 4, 5)
    story.commit("m2#1", T0, 6)
    story.call("m2#1", "disconnect", took=0.2, bound=1.0)
    story.leftovers("m2#1", (), ())
    story.quiet()
    return story


def test_a_correct_exact_history_passes() -> None:
    assert _check(_exact_story(), exact=True) == []


def test_a_correct_history_without_assignments_passes() -> None:
    story = Story()
    story.produce(T0, 5)
    story.handle("m1#1", T0, 0, 1, 2)
    story.snapshot(T0, 2)
    story.crash("m1#1")
    story.handle("m2#1", T0, 2, 3, 4)  # from the group's commit: 2 came again, allowed
    story.snapshot(T0, 5)
    story.quiet()
    assert _check(story, exact=False) == []


def test_i1_a_message_never_handled_is_reported_with_its_partition_and_offsets() -> None:
    story = Story()
    story.produce(T0, 5)
    story.assign("m1#1", T0)
    story.handle("m1#1", T0, 0, 1)
    story.quiet()
    text = _only(_check(story, exact=True), "I1")
    assert "t[0]" in text and "3 acknowledged message(s) never handled: 2..4" in text
    assert "held by m1#1" in text and "broken at +0.100s on t[0]" in text


def test_i2_a_commit_past_what_the_group_handled() -> None:
    story = Story()
    story.produce(T0, 5)
    story.assign("m1#1", T0)
    story.handle("m1#1", T0, 0, 1)
    story.commit("m1#1", T0, 4)
    text = _only(_check(story, exact=True), "I2")
    assert "by m1#1 on t[0]: committed 4, but 2..3 had not been handled by any member" in text


def test_i2_a_commit_past_what_the_committing_member_handled() -> None:
    story = Story()
    story.produce(T0, 5)
    story.assign("m1#1", T0)
    story.handle("m1#1", T0, 0, 1, 2, 3, 4)
    story.give_up("m1#1", T0, commit=2)
    story.assign("m2#1", T0)
    story.handle("m2#1", T0, 2)
    story.commit("m2#1", T0, 5)  # the group handled 0..4, but m2 only 2
    violations = _check(story, exact=True)
    # m1 gave up 2..4 uncommitted (I5), and m2 committed what it did not handle (I2).
    assert [violation.invariant for violation in violations] == ["I5", "I2"]
    text = violations[1].explain(1000.0)
    assert "by m2#1 on t[0]: committed 5, but its own handlers had returned" in text
    assert "contiguously up to 2" in text


def test_i2_group_wide_a_snapshot_past_what_the_group_handled() -> None:
    story = Story()
    story.produce(T0, 10)
    story.handle("m1#1", T0, 0, 1, 2)
    story.snapshot(T0, 7)
    story.snapshot(T0, 8)  # the same gap, read again: reported once
    text = _only(_check(story, exact=False), "I2")
    assert "the group's committed offset was 7, but 3..6 had not been handled" in text


def test_i3_two_members_overlapping_on_one_partition() -> None:
    story = Story()
    story.produce(T0, 3)
    first = story.start("m1#1", T0, 0)
    second = story.start("m2#1", T0, 0)
    story.end("m1#1", T0, first, 0)
    story.end("m2#1", T0, second, 0)
    text = _only(_check(story, exact=False), "I3")
    assert "by m2#1 on t[0]: started 0 while m1#1 still ran 0 (started +0.030s)" in text


def test_i3_a_handler_started_after_the_revocation_began() -> None:
    story = Story()
    story.produce(T0, 3)
    story.assign("m1#1", T0)
    call = story.start("m1#1", T0, 0)
    story.revoking("m1#1", T0)
    story.end("m1#1", T0, call, 0)
    story.handle("m1#1", T0, 1)
    story.commit("m1#1", T0, 2)
    story.revoked("m1#1", T0)
    text = _only(_check(story, exact=True), "I3")
    assert "by m1#1 on t[0]: started 1 after the revocation of the partition began" in text
    assert "began at +0.050s" in text


def test_i3_a_handler_on_a_partition_the_member_does_not_hold() -> None:
    story = Story()
    story.produce(T0, 1)
    story.assign("m1#1", T1)
    story.handle("m1#1", T0, 0)
    text = _only(_check(story, exact=True), "I3")
    assert "started 0 without holding the partition (held by nobody)" in text


def test_i3_an_assignment_while_another_member_holds_the_partition() -> None:
    story = Story()
    story.assign("m1#1", T0)
    story.assign("m2#1", T0)
    text = _only(_check(story, exact=True), "I3")
    assert "by m2#1 on t[0]: assigned while m1#1 still held it" in text


@pytest.mark.parametrize(
    ("offsets", "expected"),
    [
        ((0, 1, 3), "skipped 2 after 1 (ok)"),
        ((0, 1, 2, 1), "went back to 1 without a seek, a failure or an assignment after 2 (ok)"),
    ],
)
def test_i4_a_member_skipping_or_going_back(offsets: tuple[int, ...], expected: str) -> None:
    story = Story()
    story.produce(T0, 4)
    story.assign("m1#1", T0)
    story.handle("m1#1", T0, *offsets)
    assert expected in _only(_check(story, exact=True), "I4")


def test_i4_the_next_message_after_a_failure_is_not_the_failed_one() -> None:
    story = Story()
    story.produce(T0, 3)
    story.assign("m1#1", T0)
    story.handle("m1#1", T0, 0)
    story.handle("m1#1", T0, 1, outcome="failed")
    story.handle("m1#1", T0, 2)
    text = _only(_check(story, exact=True), "I4")
    assert "by m1#1 on t[0]: skipped 1 after 1 (failed)" in text


def test_i4_the_next_message_after_a_seek_is_not_its_target() -> None:
    story = Story()
    story.produce(T0, 5)
    story.assign("m1#1", T0)
    story.handle("m1#1", T0, 0, 1, 2)
    story.seek("m1#1", T0, 1)
    story.handle("m1#1", T0, 3)
    text = _only(_check(story, exact=True), "I4")
    assert "handled 3 first after a seek to 1 at +0.120s" in text


def test_i4_after_an_assignment_a_member_starts_past_the_committed_position() -> None:
    story = Story()
    story.produce(T0, 5)
    story.assign("m1#1", T0)
    story.handle("m1#1", T0, 0)
    story.commit("m1#1", T0, 1)
    story.crash("m1#1")
    story.evict("m1#1")
    story.assign("m2#1", T0)
    story.handle("m2#1", T0, 3)
    text = _only(_check(story, exact=True), "I4")
    assert "started at 3 after its assignment at +0.110s, skipping 1..2" in text


def test_i4_group_wide_a_jump_over_messages_nobody_handled() -> None:
    story = Story()
    story.produce(T0, 9)
    story.handle("m1#1", T0, 0, 1)
    story.handle("m2#1", T0, 5)
    text = _only(_check(story, exact=False), "I4")
    assert "by m2#1 on t[0]: jumped to 5, but 2..4 had not been handled by any member" in text


def test_i5_after_a_crash_more_than_the_uncommitted_work_comes_again() -> None:
    story = Story()
    story.produce(T0, 5)
    story.assign("m1#1", T0)
    story.handle("m1#1", T0, 0, 1, 2, 3)
    story.commit("m1#1", T0, 3)
    story.crash("m1#1")
    story.evict("m1#1")
    story.assign("m2#1", T0)
    story.handle("m2#1", T0, 1, 2, 3, 4)
    text = _only(_check(story, exact=True), "I5")
    assert "restarted at 1 after its assignment at +0.170s, but the group had committed 3" in text
    assert "by m1#1 before: 1..2 came again" in text


def test_i5_a_rebalance_that_gives_up_processed_work_uncommitted() -> None:
    story = Story()
    story.produce(T0, 4)
    story.assign("m1#1", T0)
    story.handle("m1#1", T0, 0, 1, 2)
    story.give_up("m1#1", T0, commit=1)
    text = _only(_check(story, exact=True), "I5")
    assert "gave the partition up with 1..2 handled but not committed (committed: 1)" in text


def test_i5_group_wide_a_restart_below_a_commit_already_read() -> None:
    story = Story()
    story.produce(T0, 5)
    story.handle("m1#1", T0, 0, 1, 2, 3)
    story.snapshot(T0, 3)
    story.handle("m2#1", T0, 1, 2, 3, 4)
    text = _only(_check(story, exact=False), "I5")
    assert "restarted at 1, but the group's committed offset was already 3" in text
    assert "1..2 came again" in text


def test_i5_group_wide_a_committed_offset_going_back() -> None:
    story = Story()
    story.produce(T0, 5)
    story.handle("m1#1", T0, 0, 1, 2, 3)
    story.snapshot(T0, 4)
    story.snapshot(T0, 2)
    text = _only(_check(story, exact=False), "I5")
    assert "the group's committed offset went back from 4 (read at +0.130s) to 2" in text


def test_i6_a_call_past_its_bound_and_what_outlives_disconnect() -> None:
    story = Story()
    story.call("m1#1", "commit_offsets", took=1.7, bound=1.0)
    story.call("m1#1", "seek", took=1.4, bound=1.0)  # within the slack
    story.leftovers("m1#1", ("qi-consumer-fetch",), ("qi-confluent-consumer",))
    violations = _check(story, exact=True)
    assert [violation.invariant for violation in violations] == ["I6", "I6"]
    text = "\n".join(violation.explain(1000.0) for violation in violations)
    assert "commit_offsets() took 1.700s (-> ok); its bound is 1.000s (request_timeout)" in text
    assert "still alive after disconnect(): ['task qi-consumer-fetch'" in text
    assert "'thread qi-confluent-consumer'" in text


def _pipeline_story() -> Story:
    """An exactly-once member: a failure on T1 aborts its transaction, which had handled
    T0 too, so both partitions restart at their committed offsets."""
    story = Story()
    story.produce(T0, 3)
    story.produce(T1, 2)
    story.handle("m1#1", T0, 0, 1)
    story.handle("m1#1", T1, 0, outcome="failed")
    story.snapshot(T0, 0)
    story.handle("m1#1", T0, 0, 1, 2)  # the abort rewound T0 as well
    story.handle("m1#1", T1, 0, 1)
    story.snapshot(T0, 3)
    story.snapshot(T1, 2)
    story.quiet()
    return story


def test_a_correct_exactly_once_history_passes() -> None:
    story = _pipeline_story()
    story.output(T0, 0, 1, 2)
    story.output(T1, 0, 1)
    story.outputs_read()
    assert _check(story, exact=False) == []


def test_a_transactional_member_giving_up_what_an_abort_voided_breaks_nothing() -> None:
    """A failure aborts the member's transaction: what it handled on every partition since
    its last commit is void, so giving the partitions up without committing it is right."""
    story = Story()
    story.produce(T0, 3)
    story.produce(T1, 1)
    story.assign("m1#1", T0, T1)
    story.handle("m1#1", T0, 0, 1)
    story.handle("m1#1", T1, 0, outcome="failed")
    story.give_up("m1#1", T0, commit=None)
    story.give_up("m1#1", T1, commit=None)
    story.assign("m2#1", T0, T1)
    story.handle("m2#1", T0, 0, 1, 2)
    story.handle("m2#1", T1, 0)
    story.commit("m2#1", T0, 3)
    story.commit("m2#1", T1, 1)
    story.quiet()
    checker = Checker(exact=False, slack=0.5, transactional=True)
    checker.feed_all(story.events)
    assert checker.violations == []
    text = _only(_check(story, exact=False), "I5")  # at-least-once, that would be lost work
    assert "gave the partition up with 0..1 handled but not committed" in text


def test_i7_an_input_without_output_and_one_shown_twice() -> None:
    story = _pipeline_story()
    story.output(T0, 0, 1, 1)
    story.output(T1, 1)
    story.outputs_read()
    violations = _check(story, exact=False)
    text = "\n".join(violation.explain(1000.0) for violation in violations)
    assert [violation.invariant for violation in violations] == ["I7"] * 3, text
    assert "on t[0]: input 1 shows 2 times: [0]@1, [0]@2" in text
    assert "on t[0]: 1 input record(s) without an output: 2" in text
    assert "on t[1]: 1 input record(s) without an output: 0" in text


def test_i7_an_output_carrying_another_value() -> None:
    story = _pipeline_story()
    story.output(T0, 0, 1)
    story.output(T0, 2, value="v7")
    story.output(T1, 0, 1)
    story.outputs_read()
    text = _only(_check(story, exact=False), "I7")
    assert "the output of input 2 carries 'v7', not 'v2'" in text


def test_i7_an_output_topic_not_read_to_its_end() -> None:
    story = _pipeline_story()
    story.output(T0, 0, 1, 2)
    story.output(T1, 0, 1)
    story.outputs_read(complete=False)
    assert "could not be read to its end" in _only(_check(story, exact=False), "I7")


def test_a_violation_explains_the_partitions_recent_history() -> None:
    story = Story()
    story.produce(T0, 2)
    story.assign("m1#1", T0)
    story.handle("m1#1", T0, 1)
    text = _only(_check(story, exact=True), "I4")
    assert "recent history of the partition:" in text
    assert "+0.020s m1#1 assigned" in text and "+0.030s m1#1 started 1" in text


def test_a_report_counts_violations_by_invariant() -> None:
    story = Story()
    story.produce(T0, 3)
    story.quiet()
    checker = Checker(exact=False, slack=0.5)
    checker.feed_all(story.events)
    assert checker.report().startswith("1 violation(s): I1 x1\nI1 broken at +0.030s on t[0]")
    assert Checker(exact=False, slack=0.5).report() == "every invariant holds"


def test_an_end_without_its_start_is_a_malformed_history() -> None:
    checker = Checker(exact=False, slack=0.5)
    with pytest.raises(ValueError, match="did not start"):
        checker.feed(HandlerEnded(1.0, "m1#1", "t", 0, 0, 0, 7, "ok"))


def test_every_event_survives_a_line_of_json() -> None:
    events: list[Event] = [
        Produced(1.0, "t", 0, 3, "v"),
        HandlerStarted(1.5, "m1#1", "t", 0, 3, 5, 1),
        HandlerEnded(2.0, "m1#1", "t", 0, 3, 5, 1, "failed"),
        Committed(2.5, "m1#1", (("t", 0, 3),)),
        CommitSnapshot(3.0, 2.9, (("t", 0, 3), ("t", 1, 0))),
        Sought(3.5, "m1#1", "t", 0, 0),
        Call(4.0, 3.0, "m1#1", "run", "STREAMING_TIMEOUT", 9.0, "2 * session_timeout"),
        Leftovers(4.5, "m1#1", ("task",), ()),
        Quiet(5.0),
        Wrote(5.5, "m1#1", 2, 9, ("t", 0, 3)),
        Reported(6.0, "m1#1", "STREAMING_PRODUCER_FENCED"),
        Output(6.5, 2, 9, ("t", 0, 3), "v"),
        OutputsRead(7.0, True),
        *_exact_story().events,
    ]
    lines = b"".join(to_line(event) for event in events)
    assert lines.count(b"\n") == len(events)
    assert read_lines(lines) == events
    assert from_line(to_line(events[0]).decode()) == events[0]
