"""Names and configs the example tests share."""

from __future__ import annotations

import uuid

from qi.base.streaming import ConsumerConfig


def unique(name: str) -> str:
    """A topic or group name no other test uses."""
    return f"{name}-{uuid.uuid4().hex[:10]}"


def quick_group(group_id: str) -> ConsumerConfig:
    """A consumer config whose joins settle fast (noida-db refuses sessions below 6 s)."""
    return ConsumerConfig(
        group_id, session_timeout=6.0, heartbeat_interval=0.5, auto_commit_interval=0.1
    )
