"""The admin contract: topics with per-topic outcomes, as Kafka does it; consumer groups and
offsets come from :class:`~qi.base.streaming._admin_groups.GroupAdmin`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import final

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming._admin_groups import GroupAdmin, is_sequence
from qi.base.streaming._boundary import boundary
from qi.base.streaming._codes import ErrorCode
from qi.base.streaming._config import TopicConfig
from qi.base.streaming._types import TopicMetadata
from qi.base.streaming._validation import is_internal_topic, topic_config_problem, topic_problem


@final
class StreamingAdmin(GroupAdmin):
    """Creates, deletes, lists and describes topics; describes, measures, resets and
    deletes consumer groups.

    Topics are handled one by one: the valid ones are still created or deleted
    when others fail, and the Failure's ``context["topics"]`` names the
    offending ones. It holds a :class:`~qi.base.streaming.backend.AdminBackend`,
    which returns a per-topic error map and never sees an invalid name. Group calls
    finish within ``request_timeout`` (STREAMING_TIMEOUT otherwise).
    """

    _kind = "admin"

    @boundary("create_topics", ErrorCode.ADMIN_FAILED)
    async def create_topics(self, topics: Sequence[TopicConfig]) -> Result[None, QiError]:
        """Create topics; existing ones give STREAMING_TOPIC_ALREADY_EXISTS, bad ones
        STREAMING_INVALID_TOPIC or STREAMING_INVALID_CONFIG."""
        if not is_sequence(topics):
            return Failure(self._bad_argument("create_topics", "a sequence of TopicConfig", topics))
        problems: dict[str, QiError] = {}
        valid: list[TopicConfig] = []
        for config in topics:
            name = config.topic if isinstance(config, TopicConfig) else repr(config)[:300]
            problem = topic_config_problem(config)
            if problem is not None:
                problems[name] = self._error(ErrorCode.INVALID_CONFIG, problem, "create_topics")
            elif (problem := topic_problem(config.topic)) is not None:
                problems[repr(name)[:300]] = self._error(
                    ErrorCode.INVALID_TOPIC, problem, "create_topics"
                )
            else:
                valid.append(config)
        if valid:
            # A name given twice is created once, with its first config.
            unique = {config.topic: config for config in reversed(valid)}
            problems.update(await self._backend.create_topics(list(reversed(unique.values()))))
        return (
            Failure(self._per_topic_error("create_topics", problems)) if problems else Success(None)
        )

    @boundary("delete_topics", ErrorCode.ADMIN_FAILED)
    async def delete_topics(self, names: Sequence[str]) -> Result[None, QiError]:
        """Delete topics; missing ones give STREAMING_TOPIC_NOT_FOUND."""
        valid, problems = self._split_names("delete_topics", names)
        if isinstance(valid, QiError):
            return Failure(valid)
        if valid:
            # A name given twice is deleted once.
            problems.update(await self._backend.delete_topics(list(dict.fromkeys(valid))))
        return (
            Failure(self._per_topic_error("delete_topics", problems)) if problems else Success(None)
        )

    @boundary("list_topics", ErrorCode.ADMIN_FAILED)
    async def list_topics(self) -> Result[tuple[str, ...], QiError]:
        """Names of the cluster's topics, sorted, without internal ``__*`` topics."""
        names = await self._backend.list_topics()
        return Success(tuple(sorted(name for name in names if not is_internal_topic(name))))

    @boundary("get_topic_metadata", ErrorCode.ADMIN_FAILED)
    async def get_topic_metadata(
        self, names: Sequence[str]
    ) -> Result[tuple[TopicMetadata, ...], QiError]:
        """Partitions of the named topics, in the order asked; missing ones give
        STREAMING_TOPIC_NOT_FOUND naming them in ``context["topics"]``."""
        valid, problems = self._split_names("get_topic_metadata", names)
        if isinstance(valid, QiError):
            return Failure(valid)
        if problems:
            return Failure(self._per_topic_error("get_topic_metadata", problems))
        found = await self._backend.describe_topics(valid)
        missing = {
            name: self._error(
                ErrorCode.TOPIC_NOT_FOUND, f"topic {name!r} does not exist", "get_topic_metadata"
            )
            for name in valid
            if name not in found
        }
        if missing:
            return Failure(self._per_topic_error("get_topic_metadata", missing))
        return Success(tuple(found[name] for name in valid))

    async def _close(self) -> None:
        await self._backend.close()
