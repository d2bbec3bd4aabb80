"""Pure rules of group admin: what a reset target means and how lag is measured.

Kept apart from the admin class so that each rule is a small function every backend
shares: the backends only fetch offsets, the arithmetic lives here once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Final, Literal, TypeAlias

from qi.base.streaming._codes import ErrorCode
from qi.base.streaming._types import PartitionLag, PartitionOffsets

ResetTarget: TypeAlias = Literal["earliest", "latest"] | int | datetime
"""Where ``reset_group_offsets`` moves a group: the log start, the end, an offset or a time."""

TopicPartitionKey: TypeAlias = tuple[str, int]

GROUP_ANSWER_CODES: Final[Mapping[str, ErrorCode]] = {
    "NON_EMPTY_GROUP": ErrorCode.INVALID_ARGUMENT,
    "GROUP_SUBSCRIBED_TO_TOPIC": ErrorCode.INVALID_ARGUMENT,
    "UNKNOWN_MEMBER_ID": ErrorCode.INVALID_ARGUMENT,
    "GROUP_ID_NOT_FOUND": ErrorCode.ADMIN_FAILED,
}
"""Broker answers (``kafka_error``) that mean the group changed under a group admin call,
with the code the contract gives that case: a member joined after the call checked
(refused like active members), or the group went away (an unknown group). The error
tables give them commit codes, which is what they mean to a consumer."""


def reset_target_problem(to: object) -> str | None:
    """Why ``to`` is not a reset target, or None when it is one."""
    if isinstance(to, str):
        return None if to in ("earliest", "latest") else f"unknown reset target {to!r}"
    if isinstance(to, bool) or not isinstance(to, int | datetime):
        return f'"earliest", "latest", an offset or a datetime, not {type(to).__name__}'
    if isinstance(to, int) and to < 0:
        return f"an offset must be >= 0, got {to}"
    return None


def timestamp_millis(moment: datetime) -> int:
    """The milliseconds since the epoch a reset to ``moment`` asks the broker for.

    Never below 0: Kafka's ListOffsets reads -1 and -2 as "latest" and "earliest", and a
    time before 1970 finds the same first message as the epoch. A naive time is local
    time, except at the ends of datetime's range, where local time cannot be computed:
    there it is taken as UTC (a few hours change nothing in year 1 or 9999).
    """
    try:
        seconds = moment.timestamp()
    except (OverflowError, ValueError, OSError):
        seconds = moment.replace(tzinfo=UTC).timestamp()
    return max(0, round(seconds * 1000))


def fixed_targets(
    partitions: Sequence[PartitionOffsets], to: Literal["earliest", "latest"] | int
) -> dict[TopicPartitionKey, int]:
    """New committed offsets for an end or an offset; an offset outside a partition's log
    is moved to the nearest end of it, as Kafka's ``kafka-consumer-groups`` tool does."""
    targets: dict[TopicPartitionKey, int] = {}
    for offsets in partitions:
        if to == "earliest":
            target = offsets.start
        elif to == "latest":
            target = offsets.end
        else:
            target = min(max(to, offsets.start), offsets.end)
        targets[(offsets.topic, offsets.partition)] = target
    return targets


def time_targets(
    partitions: Sequence[PartitionOffsets], found: Mapping[int, int | None]
) -> dict[TopicPartitionKey, int]:
    """New committed offsets for a time: the first offset stamped at or after it per
    partition (``found``), or the end where every message is older."""
    targets: dict[TopicPartitionKey, int] = {}
    for offsets in partitions:
        offset = found.get(offsets.partition)
        targets[(offsets.topic, offsets.partition)] = offsets.end if offset is None else offset
    return targets


def partition_lag(offsets: PartitionOffsets, committed: int | None) -> PartitionLag:
    """The lag of one partition: from the committed offset, or from the log start without
    one; never negative (franz-go's kadm measures it so)."""
    base = committed if committed is not None else offsets.start
    return PartitionLag(
        topic=offsets.topic,
        partition=offsets.partition,
        committed=committed,
        start=offsets.start,
        end=offsets.end,
        lag=max(0, offsets.end - base),
    )
