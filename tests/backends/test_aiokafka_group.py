"""adapt_group_coordinator: closing abandons a group join instead of waiting for the broker."""

from __future__ import annotations

import asyncio
from typing import Any

from qi.base.streaming.backends.aiokafka._group import adapt_group_coordinator


class _Coordinator:
    """The parts of aiokafka's GroupCoordinator that adapt_group_coordinator touches."""

    def __init__(self, answer: bool) -> None:
        self._closing: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.answer = answer
        self.broker_answers = asyncio.Event()
        self.joins: list[object] = []
        self.join_sent = asyncio.Event()
        self.cancelled = False

    async def _do_rejoin_group(self, subscription: object) -> bool:
        self.joins.append(subscription)
        self.join_sent.set()
        try:
            await self.broker_answers.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return self.answer

    async def _maybe_leave_group(self) -> None:
        return None


class _Consumer:
    def __init__(self, coordinator: _Coordinator) -> None:
        self._coordinator = coordinator


def _adapted(answer: bool) -> tuple[_Coordinator, Any]:
    coordinator = _Coordinator(answer)
    adapt_group_coordinator(_Consumer(coordinator))
    return coordinator, coordinator._do_rejoin_group


async def _join_sent(coordinator: _Coordinator) -> None:
    await asyncio.wait_for(coordinator.join_sent.wait(), 1)


async def test_a_join_the_broker_answers_keeps_its_outcome() -> None:
    for answer in (True, False):
        coordinator, rejoin = _adapted(answer)
        joining = asyncio.ensure_future(rejoin("subscription"))
        await _join_sent(coordinator)
        coordinator.broker_answers.set()
        assert await asyncio.wait_for(joining, 1) is answer
        assert coordinator.joins == ["subscription"] and not coordinator.cancelled


async def test_closing_abandons_a_pending_join_at_once() -> None:
    coordinator, rejoin = _adapted(True)
    joining = asyncio.ensure_future(rejoin("subscription"))
    await _join_sent(coordinator)
    coordinator._closing.set_result(None)
    assert await asyncio.wait_for(joining, 1) is False
    assert coordinator.cancelled


async def test_no_join_starts_once_closing() -> None:
    coordinator, rejoin = _adapted(True)
    coordinator._closing.set_result(None)
    assert await rejoin("subscription") is False
    assert coordinator.joins == []
