"""Two per-instance changes to aiokafka's group coordinator, made when a consumer starts.

aiokafka offers no setting for either: they go through ``_private``, whose guard
tests fail loudly when an aiokafka upgrade moves what they replace.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from aiokafka.errors import KafkaError
from aiokafka.protocol.group import LeaveGroupRequest

from qi.base.streaming.backends.aiokafka import _private

_LOGGER: Final = logging.getLogger(__name__)


async def _leave_group(coordinator: Any) -> None:
    # aiokafka 0.14's GroupCoordinator._maybe_leave_group, but it leaves whenever the broker gave
    # this member an id, as the Java client does, not only once a join finished with generation
    # > 0: Kafka numbers generations from 1, Tansu from 0, and a join abandoned by stop() has an
    # id but no generation yet. A member that never says goodbye holds its partitions for a
    # whole session timeout before the next member of the group gets them. aiokafka also
    # keeps static members (group.instance.id) in the group; the backend never makes one.
    if coordinator.member_id:
        try:
            await _private.send_to_coordinator(
                coordinator, LeaveGroupRequest(coordinator.group_id, coordinator.member_id)
            )
        except KafkaError as exc:
            _LOGGER.debug("LeaveGroup failed: %s", exc)
    coordinator.reset_generation()


def _rejoin_unless_closing(rejoin: Any, closing: asyncio.Future[None]) -> Any:
    """``_do_rejoin_group`` that gives up as soon as the coordinator is closing.

    aiokafka's close() waits for its coordination task, and that task, once a rebalance
    began, sends JoinGroup and SyncGroup even when close() was called meanwhile: the broker
    may hold a JoinGroup for up to the rebalance timeout (half a session on Tansu), all to
    be given partitions the member leaves at once. Deleting a subscribed topic starts such
    a rebalance. Returning False ("join failed") sends the task back to its loop, which
    sees the close and ends; close() then leaves the group as usual.
    """

    async def rejoin_unless_closing(subscription: Any) -> bool:
        if closing.done():
            return False
        joining = asyncio.ensure_future(rejoin(subscription))
        try:
            await asyncio.wait({joining, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not joining.done():
                joining.cancel()
                await asyncio.wait({joining})
        if joining.cancelled():
            return False
        return bool(joining.result())

    return rejoin_unless_closing


def adapt_group_coordinator(consumer: Any) -> None:
    """On a started consumer: leave the group on stop() whatever its generation number, and
    let stop() abandon a join in progress instead of waiting for the broker to answer it."""
    coordinator = _private.group_coordinator(consumer)
    if coordinator is None:
        return
    _private.replace_leave_group(coordinator, _leave_group)
    _private.wrap_rejoin(coordinator, _rejoin_unless_closing)
