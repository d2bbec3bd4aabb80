"""The group half of the admin contract (section 10): consumer groups and their offsets.

:class:`~qi.base.streaming.StreamingAdmin` inherits it. It also holds the argument
helpers the topic half uses, so that both halves check names the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming._boundary import boundary
from qi.base.streaming._codes import ErrorCode
from qi.base.streaming._endpoint import Endpoint
from qi.base.streaming._group_offsets import (
    GROUP_ANSWER_CODES,
    ResetTarget,
    TopicPartitionKey,
    fixed_targets,
    partition_lag,
    reset_target_problem,
    time_targets,
    timestamp_millis,
)
from qi.base.streaming._types import GroupDescription, PartitionLag, PartitionOffsets
from qi.base.streaming._validation import topic_problem
from qi.base.streaming.backend import AdminBackend

T = TypeVar("T")


class GroupAdmin(Endpoint):
    """Offsets of topics, and consumer groups: listed, described, measured, reset, deleted.

    Every call finishes within ``request_timeout`` (STREAMING_TIMEOUT otherwise), and
    every error of a call about a group carries ``context["group_id"]``.
    """

    _backend: AdminBackend

    @boundary("get_topic_offsets", ErrorCode.ADMIN_FAILED)
    async def get_topic_offsets(self, topic: str) -> Result[tuple[PartitionOffsets, ...], QiError]:
        """Log start and end (high watermark) of each partition of ``topic``; a missing
        topic gives STREAMING_TOPIC_NOT_FOUND."""
        if (problem := topic_problem(topic)) is not None:
            return Failure(self._error(ErrorCode.INVALID_TOPIC, problem, "get_topic_offsets"))
        return await self._timed("get_topic_offsets", {}, lambda: self._offsets_of(topic))

    @boundary("list_groups", ErrorCode.ADMIN_FAILED)
    async def list_groups(self) -> Result[tuple[str, ...], QiError]:
        """Ids of the cluster's consumer groups (with members or committed offsets), sorted."""

        async def listed() -> Result[tuple[str, ...], QiError]:
            return Success(tuple(sorted(set(await self._backend.list_groups()))))

        return await self._timed("list_groups", {}, listed)

    @boundary("describe_group", ErrorCode.ADMIN_FAILED)
    async def describe_group(self, group_id: str) -> Result[GroupDescription, QiError]:
        """State and active members of a group; an unknown group is state ``"dead"``
        with no members, as Kafka says."""
        if (refused := self._group_id_problem("describe_group", group_id)) is not None:
            return Failure(refused)

        async def described() -> Result[GroupDescription, QiError]:
            return Success(await self._backend.describe_group(group_id))

        return await self._timed("describe_group", {"group_id": group_id}, described)

    @boundary("get_group_lag", ErrorCode.ADMIN_FAILED)
    async def get_group_lag(
        self, group_id: str, topics: Sequence[str] | None = None
    ) -> Result[tuple[PartitionLag, ...], QiError]:
        """Committed offset, log start and end, and lag of each partition of ``topics``
        (None: every topic the group has committed offsets for), sorted by topic and
        partition. An unknown group gives STREAMING_ADMIN_FAILED, a missing topic
        STREAMING_TOPIC_NOT_FOUND."""
        if (refused := self._group_id_problem("get_group_lag", group_id)) is not None:
            return Failure(refused)
        named: list[str] | None = None
        if topics is not None:
            valid, problems = self._split_names("get_group_lag", topics)
            if isinstance(valid, QiError):
                return Failure(valid)
            if problems:
                return Failure(self._per_topic_error("get_group_lag", problems))
            named = list(dict.fromkeys(valid))

        async def measured() -> Result[tuple[PartitionLag, ...], QiError]:
            if (unknown := await self._unknown_group("get_group_lag", group_id)) is not None:
                return Failure(unknown)
            committed = await self._backend.committed_offsets(group_id)
            lags: list[PartitionLag] = []
            for topic in named if named is not None else sorted({key[0] for key in committed}):
                partitions = await self._backend.topic_offsets(topic)
                if partitions is None:
                    if named is None:
                        continue  # a deleted topic whose offsets the broker still keeps
                    return Failure(self._topic_not_found("get_group_lag", topic))
                lags.extend(
                    partition_lag(offsets, committed.get((topic, offsets.partition)))
                    for offsets in partitions
                )
            return Success(tuple(lags))

        return await self._timed("get_group_lag", {"group_id": group_id}, measured)

    @boundary("reset_group_offsets", ErrorCode.ADMIN_FAILED)
    async def reset_group_offsets(
        self, group_id: str, topic: str, to: ResetTarget
    ) -> Result[None, QiError]:
        """Move a group's committed offsets on every partition of ``topic`` to the log
        start, the end, an offset (kept within the log) or the first message stamped at or
        after a time. A group with active members is refused (STREAMING_INVALID_ARGUMENT)."""
        operation_name = "reset_group_offsets"
        if (refused := self._group_id_problem(operation_name, group_id)) is not None:
            return Failure(refused)
        if (problem := topic_problem(topic)) is not None:
            return Failure(self._error(ErrorCode.INVALID_TOPIC, problem, operation_name))
        if (problem := reset_target_problem(to)) is not None:
            return Failure(self._error(ErrorCode.INVALID_ARGUMENT, problem, operation_name))

        async def reset() -> Result[None, QiError]:
            if (refused := await self._idle_group(operation_name, group_id)) is not None:
                return Failure(refused)
            partitions = await self._backend.topic_offsets(topic)
            if partitions is None:
                return Failure(self._topic_not_found(operation_name, topic))
            targets: dict[TopicPartitionKey, int]
            if isinstance(to, datetime):
                found = await self._backend.offsets_at(topic, timestamp_millis(to))
                targets = time_targets(partitions, found)
            else:
                targets = fixed_targets(partitions, to)
            await self._backend.alter_offsets(group_id, targets)
            return Success(None)

        return await self._timed(operation_name, {"group_id": group_id}, reset)

    @boundary("delete_group", ErrorCode.ADMIN_FAILED)
    async def delete_group(self, group_id: str) -> Result[None, QiError]:
        """Delete a group and its committed offsets; a group with active members is refused
        (STREAMING_INVALID_ARGUMENT), an unknown one is STREAMING_ADMIN_FAILED."""
        if (refused := self._group_id_problem("delete_group", group_id)) is not None:
            return Failure(refused)

        async def deleted() -> Result[None, QiError]:
            if (refused := await self._idle_group("delete_group", group_id)) is not None:
                return Failure(refused)
            await self._backend.delete_group(group_id)
            return Success(None)

        return await self._timed("delete_group", {"group_id": group_id}, deleted)

    # -- helpers -----------------------------------------------------------------------------

    async def _timed(
        self,
        operation: str,
        context: Mapping[str, Any],
        body: Callable[[], Awaitable[Result[T, QiError]]],
    ) -> Result[T, QiError]:
        """Run ``body`` within request_timeout; every error it ends with carries ``context``."""
        timeout = self._config.request_timeout
        try:
            async with asyncio.timeout(timeout):
                result = await body()
        except TimeoutError:
            return Failure(
                self._error(
                    ErrorCode.TIMEOUT,
                    f"{operation} did not finish within {timeout:.1f}s",
                    operation,
                    **context,
                )
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = self._escaped(exc, operation, ErrorCode.ADMIN_FAILED)
            code = GROUP_ANSWER_CODES.get(str(error.context.get("kafka_error")))
            if code is not None and code.value != error.code:
                kept = {
                    key: value
                    for key, value in error.context.items()
                    if key not in ("operation", "implementation")
                }
                error = self._error(code, error.message, operation, **kept)
            return Failure(error.with_context(**context))
        if isinstance(result, Failure) and context:
            return Failure(result.error.with_context(**context))
        return result

    async def _offsets_of(self, topic: str) -> Result[tuple[PartitionOffsets, ...], QiError]:
        partitions = await self._backend.topic_offsets(topic)
        if partitions is None:
            return Failure(self._topic_not_found("get_topic_offsets", topic))
        return Success(partitions)

    def _topic_not_found(self, operation: str, topic: str) -> QiError:
        return self._error(
            ErrorCode.TOPIC_NOT_FOUND,
            f"topic {topic!r} does not exist",
            operation,
            topic=topic,
            topics=(topic,),
        )

    def _group_id_problem(self, operation: str, group_id: object) -> QiError | None:
        if isinstance(group_id, str) and group_id:
            return None
        return self._bad_argument(operation, "a non-empty group id", group_id)

    async def _unknown_group(self, operation: str, group_id: str) -> QiError | None:
        """STREAMING_ADMIN_FAILED when the cluster does not know the group."""
        description = await self._backend.describe_group(group_id)
        return self._dead_group(operation, description)

    async def _idle_group(self, operation: str, group_id: str) -> QiError | None:
        """Why the group's offsets cannot be changed now: unknown, or members still active."""
        description = await self._backend.describe_group(group_id)
        if (unknown := self._dead_group(operation, description)) is not None:
            return unknown
        if not description.members:
            return None
        members = tuple(member.member_id for member in description.members)
        return self._error(
            ErrorCode.INVALID_ARGUMENT,
            f"group {group_id!r} has active members ({', '.join(members)}): "
            "stop its consumers first",
            operation,
            members=members,
        )

    def _dead_group(self, operation: str, description: GroupDescription) -> QiError | None:
        if description.state != "dead":
            return None
        return self._error(
            ErrorCode.ADMIN_FAILED,
            f"consumer group {description.group_id!r} does not exist",
            operation,
            kafka_error="GROUP_ID_NOT_FOUND",
            retriable=False,
        )

    def _split_names(
        self, operation: str, names: object
    ) -> tuple[list[str] | QiError, dict[str, QiError]]:
        if not is_sequence(names):
            return self._bad_argument(operation, "a sequence of topic names", names), {}
        valid: list[str] = []
        problems: dict[str, QiError] = {}
        for name in names:  # type: ignore[attr-defined]
            problem = topic_problem(name)
            if problem is None:
                valid.append(name)
            else:
                problems[repr(name)[:300]] = self._error(
                    ErrorCode.INVALID_TOPIC, problem, operation
                )
        return valid, problems

    def _bad_argument(self, operation: str, expected: str, given: object) -> QiError:
        return self._error(
            ErrorCode.INVALID_ARGUMENT,
            f"{operation} needs {expected}, got {type(given).__name__}",
            operation,
        )

    def _per_topic_error(self, operation: str, problems: Mapping[str, QiError]) -> QiError:
        """One error for a call whose topics failed one by one: the shared code, or ADMIN_FAILED."""
        codes = {error.code for error in problems.values()}
        first = next(iter(problems.values()))
        if len(codes) == 1:
            code = ErrorCode(first.code)
            message = (
                first.message
                if len(problems) == 1
                else f"{len(problems)} topics failed: {', '.join(problems)}"
            )
        else:
            code = ErrorCode.ADMIN_FAILED
            message = f"{len(problems)} topics failed with different errors: {', '.join(problems)}"
        context = {
            key: value
            for key, value in first.context.items()
            if key not in ("operation", "implementation") and len(problems) == 1
        }
        return self._error(
            code, message, operation, **context, topics=tuple(problems), errors=dict(problems)
        )


def is_sequence(value: object) -> bool:
    """Whether an argument is a sequence of items (a str or bytes is not)."""
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)
