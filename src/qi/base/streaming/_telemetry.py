"""OpenTelemetry spans and metrics of producers and consumers (the ``otel`` extra).

Imported only for a ``StreamingConfig`` with ``telemetry``. An endpoint without it holds
``_telemetry = None``: a send pays one attribute check, a consumed message nothing (run()
wraps the handler once, in ``_telemetry_process``, only when telemetry is on).

Names and attributes follow OpenTelemetry's messaging semantic conventions for Kafka::

    send {topic}     PRODUCER  per send(), per send_batch() (messaging.batch.message_count);
                               its trace context goes into every message's headers
    process {topic}  CONSUMER  per handler call, current while the handler runs, and
                               linked to the span of each message's producer

Metrics: ``messaging.client.operation.duration`` (s, per send or batch),
``messaging.client.sent.messages``, ``messaging.client.consumed.messages``,
``messaging.process.duration`` (s, per handler call) and ``messaging.kafka.consumer.lag``
per assigned partition of a running consumer (the conventions name no lag metric: it
takes their Kafka namespace). ``error.type`` is the contract's error code.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Final, Protocol, cast

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.trace import Span, StatusCode, Tracer, TracerProvider
from opentelemetry.util.types import AttributeValue

from qi.base import QiError
from qi.base.streaming._config import StreamingConfig, TelemetryConfig

Attributes = dict[str, AttributeValue]

_SCOPE: Final = "qi.base.streaming"
SYSTEM: Final = "kafka"
# The semantic conventions' advice for messaging durations, in seconds.
_DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
_LONGEST_TOPIC: Final = 249
"""Kafka's limit: a longer "topic" (refused by validation) does not name the span."""


class LagSource(Protocol):
    """A consumer the lag gauge reads."""

    def lag_observations(self) -> list[Observation]:
        """The running consumer's lag per partition, as it last knew it."""


class Instruments:
    """The metric instruments of one meter provider, made once.

    A meter hands back an instrument already made under the same name, and ignores a
    second one's gauge callbacks: so instruments are made once per meter provider (not
    per TelemetryConfig, which may share one with another), and one lag gauge reads every
    running consumer reporting to it.
    """

    def __init__(self, meter_provider: MeterProvider | None) -> None:
        meter = metrics.get_meter(_SCOPE, meter_provider=meter_provider)
        self.operation_duration = meter.create_histogram(
            "messaging.client.operation.duration",
            unit="s",
            description="Duration of a send operation (one message or one batch).",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.sent = meter.create_counter(
            "messaging.client.sent.messages",
            unit="{message}",
            description="Messages a producer sent, or failed to send (error.type).",
        )
        self.consumed = meter.create_counter(
            "messaging.client.consumed.messages",
            unit="{message}",
            description="Messages delivered to a consumer's handler (again when redelivered).",
        )
        self.process_duration = meter.create_histogram(
            "messaging.process.duration",
            unit="s",
            description="Duration of a handler call (one message or one batch).",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        # Weak references by id, not a WeakSet: the metric reader's thread reads them while
        # the loop adds consumers and the collector drops them, and iterating a WeakSet
        # then fails (set changed size); a copy of a dict's values is taken at once.
        self._consumers: dict[int, weakref.ref[LagSource]] = {}
        meter.create_observable_gauge(
            "messaging.kafka.consumer.lag",
            callbacks=[self._observe_lag],
            unit="{message}",
            description="Messages of an assigned partition a running consumer has not handled.",
        )

    def add_consumer(self, consumer: LagSource) -> None:
        """Have the lag gauge read ``consumer`` for as long as it lives."""
        key = id(consumer)
        self._consumers[key] = weakref.ref(consumer, lambda _: self._consumers.pop(key, None))

    def _observe_lag(self, options: CallbackOptions) -> Iterable[Observation]:
        observations: list[Observation] = []
        for reference in list(self._consumers.values()):
            consumer = reference()
            if consumer is not None:
                observations.extend(consumer.lag_observations())
        return observations


# Kept for the process's life: a meter provider's instruments cannot be made a second time.
# Keyed by the provider (None: the global one).
_INSTRUMENTS: dict[object, Instruments] = {}


def instruments_for(config: TelemetryConfig) -> Instruments:
    found = _INSTRUMENTS.get(config.meter_provider)
    if found is None:
        provider = cast(MeterProvider | None, config.meter_provider)
        found = _INSTRUMENTS[config.meter_provider] = Instruments(provider)
    return found


def tracer_for(config: TelemetryConfig) -> Tracer:
    provider = cast(TracerProvider | None, config.tracer_provider)
    return trace.get_tracer(_SCOPE, tracer_provider=provider)


def client_attributes(config: StreamingConfig) -> Attributes:
    host, _, port = config.brokers[0].rpartition(":")
    if host.startswith("[") and host.endswith("]"):  # an IPv6 address, as [::1]:9092
        host = host[1:-1]
    attributes: Attributes = {
        "messaging.system": SYSTEM,
        "messaging.client.id": config.client_id,
        "server.address": host,
    }
    if port.isdigit():
        attributes["server.port"] = int(port)
    return attributes


def key_attribute(key: object) -> str | None:
    """The key as the conventions want it: a string, left out when it has no string form."""
    if isinstance(key, str):
        return key if _encodable(key) else None
    if isinstance(key, bytes):
        try:
            return key.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def destination(topic: object) -> str:
    """The topic as an attribute: whatever the caller passed, as text, cut short."""
    text = (topic if isinstance(topic, str) else str(topic))[:300]
    return text if _encodable(text) else text.encode("utf-8", "replace").decode("utf-8")


def span_name(operation: str, topic: object) -> str:
    if isinstance(topic, str) and 0 < len(topic) <= _LONGEST_TOPIC and _encodable(topic):
        return f"{operation} {topic}"
    return operation


def _encodable(text: str) -> bool:
    """Whether an exporter can send ``text``: OTLP's protobuf refuses a str with a lone
    surrogate (a key or topic that validation refuses), failing the whole export."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def mark_failed(span: Span, error: QiError) -> str:
    """Mark the span failed with the error's code; the code, for the metrics."""
    code = str(error.code)
    span.set_attribute("error.type", code)
    span.set_status(StatusCode.ERROR, error.message)
    return code


def mark_raised(span: Span, exc: BaseException) -> str:
    """Mark the span failed with what was raised; the type's name, for the metrics.

    OpenTelemetry marks a span failed only for an Exception: a cancelled send or handler
    call (asyncio.CancelledError is a BaseException) would count as failed in the metrics
    and look fine in its span.
    """
    error_type = type(exc).__qualname__
    span.set_attribute("error.type", error_type)
    span.set_status(StatusCode.ERROR, f"{error_type}: {exc}")
    return error_type
