"""What the runner asks a worker to do, and what a worker answers (both travel as JSON)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["ok", "unavailable", "error"]

MEMORY_BROKERS = ("qi-bench-memory:9092",)
"""The memory backend ignores the address; it only names the in-process broker."""


@dataclass(frozen=True, slots=True)
class Job:
    """One measurement of one subject in one scenario, run in a fresh worker process."""

    scenario: str
    """Scenario name, e.g. ``produce-batch``."""
    operation: str
    """What the worker does: produce, produce-concurrent, latency, consume, outage, slow-consumer,
    prefill."""
    subject: str
    """Subject id, e.g. ``raw-confluent`` or ``qi-aiokafka/each_batch``."""
    bootstrap: str
    """``host:port`` of the broker (unused by the memory backend)."""
    topic: str
    """Topic to use; it exists already unless the subject is the memory backend."""
    messages: int
    """Messages to produce or consume."""
    size: int
    """Value size in bytes."""
    partitions: int
    """Partitions of the topic."""
    chunk: int = 10_000
    """Messages per ``send_batch`` call."""
    timeout: float = 300.0
    """Seconds the whole job may take before the worker gives up."""
    options: dict[str, Any] = field(default_factory=dict)
    """Scenario-specific knobs (request_timeout, handler delay, sampling window...)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        return cls(**json.loads(text))


@dataclass(slots=True)
class Measurement:
    """What a worker measured; the worker adds peak RSS before sending it back."""

    messages: int
    """Messages that went through the timed region."""
    seconds: float
    """Wall-clock seconds of the timed region."""
    cpu_seconds: float
    """``time.process_time`` delta of the timed region (all threads, librdkafka's too)."""
    value_bytes: int = 0
    """Payload bytes that went through (messages x size)."""
    latencies_ms: list[float] | None = None
    """Per-operation latencies, for latency scenarios."""
    failed: int = 0
    """Messages reported failed (or not delivered) in the timed region."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Scenario-specific facts (RSS samples, error codes, ...)."""


class Unavailable(Exception):
    """The subject cannot run here (library or backend missing); not a measurement error."""


class BenchError(Exception):
    """The subject ran but the measurement went wrong (a Failure, a timeout, lost messages)."""
