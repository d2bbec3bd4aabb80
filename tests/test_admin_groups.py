"""The group admin's contract layer: its time bound and how it names a group that changed.

The contract suite (tests/contract/test_groups_admin.py) shows the behaviour on every
backend; these tests reach the cases a healthy broker does not produce on demand: a
backend that never answers, and a broker refusing because a member joined meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from qi.base import Failure
from qi.base.streaming import (
    ErrorCode,
    GroupDescription,
    StreamingAdmin,
    StreamingConfig,
    StreamingConnector,
)
from qi.base.streaming.backend import AdminBackend, OperationFailed, streaming_error
from qi.base.streaming.backends.memory import MemoryBackend, discard_broker
from qi.base.streaming.backends.memory._admin import MemoryAdmin
from qi.base.streaming.testing._cluster import private_memory_brokers


def _config() -> StreamingConfig:
    return StreamingConfig("group-admin-test", private_memory_brokers(), request_timeout=0.3)


class _SilentAdmin(MemoryAdmin):
    """A backend whose group description never comes."""

    async def describe_group(self, group_id: str) -> GroupDescription:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class _RacedAdmin(MemoryAdmin):
    """A backend that finds the group idle, then meets the broker's refusal: a member joined."""

    async def describe_group(self, group_id: str) -> GroupDescription:
        return GroupDescription(group_id, "empty", ())

    async def delete_group(self, group_id: str) -> None:
        raise OperationFailed(
            streaming_error(
                ErrorCode.COMMIT_FAILED,
                "the group is not empty",
                operation="delete_group",
                implementation="memory",
                kafka_error="NON_EMPTY_GROUP",
                retriable=False,
            )
        )

    async def alter_offsets(self, group_id: str, offsets: Mapping[tuple[str, int], int]) -> None:
        raise AssertionError("not reached")


class _AdminOf(MemoryBackend):
    """The memory backend, with a given admin backend."""

    def __init__(self, config: StreamingConfig, admin: AdminBackend) -> None:
        super().__init__(config)
        self._admin = admin

    def admin(self) -> AdminBackend:
        return self._admin


def _public_admin(config: StreamingConfig, backend: AdminBackend) -> StreamingAdmin:
    return StreamingConnector(config, _AdminOf(config, backend)).create_admin().unwrap()


async def test_a_group_call_that_gets_no_answer_times_out_with_the_group_named() -> None:
    config = _config()
    admin = _public_admin(config, _SilentAdmin(config))
    assert (await admin.connect()).is_success()
    try:
        for outcome in (
            await admin.describe_group("quiet"),
            await admin.delete_group("quiet"),
            await admin.get_group_lag("quiet"),
        ):
            assert isinstance(outcome, Failure)
            assert outcome.error.code == ErrorCode.TIMEOUT
            assert outcome.error.context["group_id"] == "quiet"
    finally:
        await admin.disconnect()
        discard_broker(config.brokers)


async def test_a_broker_refusing_a_group_that_became_busy_is_an_invalid_argument() -> None:
    config = _config()
    admin = _public_admin(config, _RacedAdmin(config))
    assert (await admin.connect()).is_success()
    try:
        outcome = await admin.delete_group("raced")
        assert isinstance(outcome, Failure)
        assert outcome.error.code == ErrorCode.INVALID_ARGUMENT
        assert outcome.error.context["kafka_error"] == "NON_EMPTY_GROUP"
        assert outcome.error.context["group_id"] == "raced"
        assert outcome.error.context["operation"] == "delete_group"
    finally:
        await admin.disconnect()
        discard_broker(config.brokers)
