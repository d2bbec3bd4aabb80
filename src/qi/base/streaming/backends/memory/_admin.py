"""The memory admin: topic management on the in-process broker.

Topics are created and deleted synchronously, so a created topic is visible
to every client of the same broker as soon as the call returns.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from qi.base import QiError
from qi.base.streaming._admin import StreamingAdmin
from qi.base.streaming._codes import ErrorCode
from qi.base.streaming._config import StreamingConfig, TopicConfig
from qi.base.streaming._endpoint import OperationFailed
from qi.base.streaming._types import TopicMetadata
from qi.base.streaming.backends.memory._broker import MemoryBroker, broker_for
from qi.base.streaming.backends.memory._errors import (
    IMPLEMENTATION,
    broker_error,
    translate,
    unreachable,
)


class MemoryAdmin(StreamingAdmin):
    """Creates, deletes, lists and describes topics of the in-process broker."""

    def __init__(self, config: StreamingConfig, logger: logging.Logger | None = None) -> None:
        super().__init__(config, implementation=IMPLEMENTATION, logger=logger)
        self._broker: MemoryBroker | None = None

    async def _open(self) -> None:
        broker = broker_for(self._config.brokers)
        if not await broker.wait_reachable(self._config.connection_timeout):
            raise OperationFailed(unreachable(self._config, "connect"))
        self._broker = broker

    async def _close(self) -> None:
        self._broker = None

    def _native_client(self) -> object:
        return self._broker

    def _translate(self, exc: BaseException, operation: str, fallback: ErrorCode) -> QiError:
        return translate(exc, operation, fallback)

    async def _reach(self, operation: str) -> MemoryBroker:
        """The broker, once reachable; STREAMING_CONNECTION_FAILED after request_timeout."""
        broker = self._broker
        assert broker is not None
        if not await broker.wait_reachable(self._config.request_timeout):
            raise OperationFailed(unreachable(self._config, operation))
        return broker

    async def _create_topics(self, topics: Sequence[TopicConfig]) -> Mapping[str, QiError]:
        broker = await self._reach("create_topics")
        errors: dict[str, QiError] = {}
        for config in topics:
            refused = broker.create_topic(config)
            if refused is not None:
                error, reason = refused
                errors[config.topic] = broker_error(
                    error, f"create_topics failed: {reason}", "create_topics", topic=config.topic
                )
        return errors

    async def _delete_topics(self, names: Sequence[str]) -> Mapping[str, QiError]:
        broker = await self._reach("delete_topics")
        errors: dict[str, QiError] = {}
        for name in names:
            error = broker.delete_topic(name)
            if error is not None:
                errors[name] = broker_error(
                    error, f"topic {name!r} does not exist", "delete_topics"
                )
        return errors

    async def _list_topics(self) -> Sequence[str]:
        broker = await self._reach("list_topics")
        return broker.topic_names()

    async def _describe_topics(self, names: Sequence[str]) -> Mapping[str, TopicMetadata]:
        broker = await self._reach("get_topic_metadata")
        found: dict[str, TopicMetadata] = {}
        for name in names:
            metadata = broker.describe(name)
            if metadata is not None:
                found[name] = metadata
        return found
