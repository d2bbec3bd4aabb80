"""Waiting until a consumer group has processed what its topics hold."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final

from qi.base import Failure, QiError
from qi.base.streaming import PartitionLag, StreamingClient
from qi.base.streaming.testing._expect import expect_success

_POLL_INTERVAL: Final = 0.05


async def wait_for_group(
    client: StreamingClient, group_id: str, topics: str | Sequence[str], *, within: float = 10.0
) -> tuple[PartitionLag, ...]:
    """Wait until ``group_id`` has committed the end offset of every partition of ``topics``
    (one topic's name, or several).

    Returns the group's lag (every ``lag`` 0) once its committed offsets reach the end
    offsets, which is when the group's handlers have returned for every message there
    and their offsets were committed (with ``auto_commit`` that takes up to
    ``auto_commit_interval``). A group not known yet (its consumers are still joining)
    is waited for. After ``within`` seconds it raises AssertionError listing the
    committed and end offsets of each partition still behind, or the admin's last error.
    """
    names = [topics] if isinstance(topics, str) else list(topics)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    admin = expect_success(await client.get_admin(), f"waiting for group {group_id!r}")
    while True:
        measured = await admin.get_group_lag(group_id, names)
        last = measured.error if isinstance(measured, Failure) else measured.value
        if not isinstance(last, QiError) and all(part.lag == 0 for part in last):
            return last
        if loop.time() >= deadline:
            raise AssertionError(_not_done(group_id, names, within, last))
        await asyncio.sleep(_POLL_INTERVAL)  # the lag is polled until the deadline


def _not_done(
    group_id: str,
    topics: Sequence[str],
    within: float,
    last: QiError | tuple[PartitionLag, ...],
) -> str:
    headline = f"group {group_id!r} did not process {list(topics)!r} within {within}s"
    if isinstance(last, QiError):
        return f"{headline}: {last}"
    lines = [f"{headline}; its lag:"]
    lines.extend(
        f"  {part.topic}[{part.partition}]: committed {part.committed}, end {part.end}, "
        f"lag {part.lag}"
        for part in last
        if part.lag
    )
    return "\n".join(lines)
