"""adapt_group_coordinator: closing abandons a group join instead of waiting for the broker,
leaves the group whenever the broker gave the member an id, and a member that owns nothing
stays in it."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.protocol.group import LeaveGroupRequest

from qi.base.streaming import SubscriptionConfig
from qi.base.streaming.backends.aiokafka._consumer import _AiokafkaSource
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
        self.generation = -1
        self.member_id = ""
        self.sent: list[Any] = []

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

    # What the adapted _maybe_leave_group uses.
    group_id = "group"
    _group_instance_id = None

    async def _send_req(self, request: Any) -> None:
        self.sent.append(request)

    def reset_generation(self) -> None:
        self.generation, self.member_id = -1, ""


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


async def test_a_member_leaves_whenever_the_broker_gave_it_an_id() -> None:
    # Tansu numbers generations from 0; a join stop() abandoned has an id and generation -1.
    for generation in (-1, 0, 3):
        coordinator, _ = _adapted(True)
        coordinator.generation, coordinator.member_id = generation, "member-1"
        await coordinator._maybe_leave_group()
        (leave,) = coordinator.sent
        assert isinstance(leave, LeaveGroupRequest)
        assert vars(leave) == {"_group": "group", "_member_id": "member-1"}
        assert (coordinator.generation, coordinator.member_id) == (-1, "")


async def test_a_member_without_an_id_sends_nothing() -> None:
    coordinator, _ = _adapted(True)
    await coordinator._maybe_leave_group()
    assert coordinator.sent == []


class _IdleConsumer:
    """The parts of AIOKafkaConsumer a fetch of a member that owns nothing touches."""

    def __init__(self) -> None:
        self._subscription = SubscriptionState()
        self._coordinator = self

    def check_errors(self) -> None:
        return None


async def test_a_member_that_owns_nothing_still_counts_as_polling() -> None:
    # aiokafka's heartbeat leaves the group (and does not rejoin) once its fetcher has been
    # idle for max_poll_interval_ms: waiting for partitions must not count as idle.
    consumer = _IdleConsumer()
    source = _AiokafkaSource(
        cast(Any, None), SubscriptionConfig(topics=("t",)), request_timeout=1.0
    )
    source._consumer = consumer
    fetching = asyncio.ensure_future(source.fetch(10, 0.3))
    await asyncio.sleep(0.1)
    assert consumer._subscription.fetcher_idle_time == 0, "idle while waiting for partitions"
    assert await fetching == {}
    assert consumer._subscription.fetcher_idle_time < 0.1, "the wait did not count as a poll"
