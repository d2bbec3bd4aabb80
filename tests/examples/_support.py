"""Names and configs the example tests share."""

from __future__ import annotations

from dataclasses import dataclass

from qi.base.streaming import ConsumerConfig, StreamingClient
from qi.base.streaming.backends.memory import MemoryBroker


@dataclass(frozen=True, slots=True)
class ExampleRun:
    """A client to run an example on, and its memory broker's fault hooks (None elsewhere)."""

    client: StreamingClient
    memory_broker: MemoryBroker | None


def quick_group(group_id: str, *, auto_commit: bool = True) -> ConsumerConfig:
    """A consumer config whose joins settle fast (noida-db refuses sessions below 6 s)."""
    return ConsumerConfig(
        group_id,
        session_timeout=6.0,
        heartbeat_interval=0.5,
        auto_commit=auto_commit,
        auto_commit_interval=0.1,
    )
