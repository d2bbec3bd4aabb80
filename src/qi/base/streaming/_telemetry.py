"""OpenTelemetry spans and metrics of producers and consumers (the ``otel`` extra).

Imported only for a ``StreamingConfig`` with ``telemetry``. An endpoint without it holds
``_telemetry = None``: a send pays one attribute check, a consumed message nothing (run()
wraps the handler once, here, only when telemetry is on).

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

import dataclasses
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, cast

from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Link, Span, SpanKind, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming._codes import ErrorCode
from qi.base.streaming._config import (
    ConsumerConfig,
    ConsumerRunConfig,
    StreamingConfig,
    TelemetryConfig,
)
from qi.base.streaming._types import (
    BatchProduceResult,
    ConsumedMessage,
    EachBatchPayload,
    EachMessagePayload,
    MessageBatch,
    PartitionPosition,
    ProduceResult,
    StreamingMessage,
)

Attributes = dict[str, AttributeValue]
SendOne = Callable[[str, Any, str], Awaitable[Result[ProduceResult, QiError]]]
"""The producer's send after its state checks: (topic, message, operation)."""
SendBatch = Callable[[Any, str], Awaitable[Result[BatchProduceResult, QiError]]]
"""The producer's send_batch after its state checks: (batch, operation)."""

_SCOPE: Final = "qi.base.streaming"
_SYSTEM: Final = "kafka"
# The semantic conventions' advice for messaging durations, in seconds.
_DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
_LONGEST_TOPIC: Final = 249
"""Kafka's limit: a longer "topic" (refused by validation) does not name the span."""


class _Instruments:
    """The tracer and metric instruments of one TelemetryConfig, made once.

    A meter hands back an instrument already made under the same name, and ignores a
    second one's gauge callbacks: so one lag gauge reads every running consumer.
    """

    def __init__(self, config: TelemetryConfig) -> None:
        tracer_provider = cast(TracerProvider | None, config.tracer_provider)
        meter_provider = cast(MeterProvider | None, config.meter_provider)
        self.tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)
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
        self.consumers: weakref.WeakSet[ConsumerTelemetry] = weakref.WeakSet()
        meter.create_observable_gauge(
            "messaging.kafka.consumer.lag",
            callbacks=[self._observe_lag],
            unit="{message}",
            description="Messages of an assigned partition a running consumer has not handled.",
        )

    def _observe_lag(self, options: CallbackOptions) -> Iterable[Observation]:
        observations: list[Observation] = []
        for consumer in list(self.consumers):
            observations.extend(consumer.lag_observations())
        return observations


# Kept for the process's life: a config's instruments cannot be made a second time.
_INSTRUMENTS: dict[TelemetryConfig, _Instruments] = {}


def _instruments(config: TelemetryConfig) -> _Instruments:
    found = _INSTRUMENTS.get(config)
    if found is None:
        found = _INSTRUMENTS[config] = _Instruments(config)
    return found


def _client_attributes(config: StreamingConfig) -> Attributes:
    host, _, port = config.brokers[0].rpartition(":")
    attributes: Attributes = {
        "messaging.system": _SYSTEM,
        "messaging.client.id": config.client_id,
        "server.address": host,
    }
    if port.isdigit():
        attributes["server.port"] = int(port)
    return attributes


def _key_attribute(key: object) -> str | None:
    """The key as the conventions want it: a string, left out when it has no string form."""
    if isinstance(key, str):
        return key
    if isinstance(key, bytes):
        try:
            return key.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def _span_name(operation: str, topic: object) -> str:
    if isinstance(topic, str) and 0 < len(topic) <= _LONGEST_TOPIC:
        return f"{operation} {topic}"
    return operation


def _failed(span: Span, error: QiError) -> str:
    """Mark the span failed with the error's code; the code, for the metrics."""
    code = str(error.code)
    span.set_attribute("error.type", code)
    span.set_status(StatusCode.ERROR, error.message)
    return code


class ProducerTelemetry:
    """Spans and metrics of one producer's sends; the trace context rides in the headers."""

    def __init__(self, config: StreamingConfig) -> None:
        assert config.telemetry is not None
        instruments = _instruments(config.telemetry)
        self._tracer = instruments.tracer
        self._duration = instruments.operation_duration
        self._sent = instruments.sent
        self._span_attributes = {
            **_client_attributes(config),
            "messaging.operation.name": "send",
            "messaging.operation.type": "send",
        }
        self._metric_attributes: Attributes = {
            "messaging.system": _SYSTEM,
            "messaging.operation.name": "send",
            "messaging.operation.type": "send",
        }

    async def send(
        self, topic: str, message: object, operation: str, deliver: SendOne
    ) -> Result[ProduceResult, QiError]:
        """``deliver`` one message inside a PRODUCER span, its context in the headers."""
        attributes = self._span_attributes | {"messaging.destination.name": str(topic)[:300]}
        if isinstance(message, StreamingMessage):
            key = _key_attribute(message.key)
            if key is not None:
                attributes["messaging.kafka.message.key"] = key
            if isinstance(message.partition, int):
                attributes["messaging.destination.partition.id"] = str(message.partition)
        error_type: str | None = None
        partition: int | None = None
        started = time.perf_counter()
        try:
            with self._tracer.start_as_current_span(
                _span_name("send", topic), kind=SpanKind.PRODUCER, attributes=attributes
            ) as span:
                outcome = await deliver(topic, _carrying_context(message), operation)
                if isinstance(outcome, Success):
                    partition = outcome.value.partition
                    span.set_attribute("messaging.destination.partition.id", str(partition))
                    span.set_attribute("messaging.kafka.offset", outcome.value.offset)
                else:
                    error_type = _failed(span, outcome.error)
        except BaseException as exc:
            error_type = type(exc).__qualname__
            raise
        finally:
            metric = self._metric_attributes | {"messaging.destination.name": str(topic)[:300]}
            if partition is not None:
                metric["messaging.destination.partition.id"] = str(partition)
            if error_type is not None:
                metric["error.type"] = error_type
            self._duration.record(time.perf_counter() - started, metric)
            self._sent.add(1, metric)
        return outcome

    async def send_batch(
        self, batch: object, operation: str, deliver: SendBatch
    ) -> Result[BatchProduceResult, QiError]:
        """``deliver`` a batch inside one PRODUCER span whose context every message carries."""
        if not isinstance(batch, MessageBatch) or not isinstance(batch.messages, tuple | list):
            return await deliver(batch, operation)  # refused whole, as without telemetry
        topic, count = batch.topic, len(batch.messages)
        attributes = self._span_attributes | {
            "messaging.destination.name": str(topic)[:300],
            "messaging.batch.message_count": count,
        }
        metric = self._metric_attributes | {"messaging.destination.name": str(topic)[:300]}
        started = time.perf_counter()
        outcome: Result[BatchProduceResult, QiError] | None = None
        try:
            with self._tracer.start_as_current_span(
                _span_name("send", topic), kind=SpanKind.PRODUCER, attributes=attributes
            ) as span:
                carrier = _current_context()
                carried = MessageBatch(
                    topic,
                    tuple(
                        cast(StreamingMessage, _with_headers(message, carrier))
                        for message in batch.messages
                    ),
                )
                outcome = await deliver(carried, operation)
                if isinstance(outcome, Failure):
                    metric["error.type"] = _failed(span, outcome.error)
        except BaseException as exc:
            metric["error.type"] = type(exc).__qualname__
            raise
        finally:
            self._duration.record(time.perf_counter() - started, metric)
            for attributes_of_some, sent in _sent_counts(outcome, count, metric):
                self._sent.add(sent, attributes_of_some)
        return outcome


def _sent_counts(
    outcome: Result[BatchProduceResult, QiError] | None, count: int, metric: Attributes
) -> Iterator[tuple[Attributes, int]]:
    """How many messages of a batch went to which partition, or failed with which code."""
    if isinstance(outcome, Success):
        results: Sequence[Result[ProduceResult, QiError]] = [
            Success(result) for result in outcome.value.results
        ]
    elif isinstance(outcome, Failure) and outcome.error.code == ErrorCode.BATCH_PARTIAL_FAILURE:
        results = cast(Sequence[Result[ProduceResult, QiError]], outcome.error.context["results"])
    else:  # failed whole (or raised): every message failed alike
        yield metric, count
        return
    counts: dict[tuple[str, str], int] = {}
    for result in results:
        if isinstance(result, Success):
            group = ("messaging.destination.partition.id", str(result.value.partition))
        else:
            group = ("error.type", str(result.error.code))
        counts[group] = counts.get(group, 0) + 1
    base = {name: value for name, value in metric.items() if name != "error.type"}
    for (name, value), sent in counts.items():
        yield base | {name: value}, sent


def _current_context() -> Mapping[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def _with_headers(message: object, carrier: Mapping[str, str]) -> object:
    """The message with the trace context in its headers; anything else as it is, for
    validation to refuse."""
    if not carrier or not isinstance(message, StreamingMessage):
        return message
    headers = message.headers
    if not isinstance(headers, Mapping):
        return message
    return dataclasses.replace(message, headers={**headers, **carrier})


def _carrying_context(message: object) -> object:
    return _with_headers(message, _current_context())


class _HeaderGetter(Getter[Mapping[str, bytes]]):
    """Reads a trace context from consumed headers (bytes values)."""

    def get(self, carrier: Mapping[str, bytes], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            return None
        return [value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)]

    def keys(self, carrier: Mapping[str, bytes]) -> list[str]:
        return list(carrier)


_HEADERS: Final = _HeaderGetter()


def _producer_link(message: ConsumedMessage) -> Link | None:
    """A link to the span that sent ``message``, when its headers carry one."""
    headers = message.headers
    if not headers:
        return None
    context = propagate.extract(headers, context=Context(), getter=_HEADERS)
    span_context = trace.get_current_span(context).get_span_context()
    return Link(span_context) if span_context.is_valid else None


class ConsumerTelemetry:
    """Spans and metrics of one consumer's handler calls, and its lag for the gauge."""

    def __init__(
        self,
        config: StreamingConfig,
        consumer_config: ConsumerConfig,
        positions: Callable[[], Result[tuple[PartitionPosition, ...], QiError]],
    ) -> None:
        assert config.telemetry is not None
        instruments = _instruments(config.telemetry)
        self._tracer = instruments.tracer
        self._duration = instruments.process_duration
        self._consumed = instruments.consumed
        group = consumer_config.group_id
        self._span_attributes = {
            **_client_attributes(config),
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.consumer.group.name": group,
        }
        self._metric_attributes: Attributes = {
            "messaging.system": _SYSTEM,
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.consumer.group.name": group,
        }
        self._lag_attributes: Attributes = {
            "messaging.system": _SYSTEM,
            "messaging.consumer.group.name": group,
        }
        # Weakly: the consumer holds this object, and the gauge must not keep it alive.
        self._positions = weakref.WeakMethod(positions)
        instruments.consumers.add(self)

    def instrument(self, run: ConsumerRunConfig) -> ConsumerRunConfig:
        """The run config with its handler called inside a CONSUMER span."""
        if run.each_message is not None:
            return dataclasses.replace(run, each_message=self._traced_message(run.each_message))
        assert run.each_batch is not None
        return dataclasses.replace(run, each_batch=self._traced_batch(run.each_batch))

    def lag_observations(self) -> list[Observation]:
        """The running consumer's lag per partition, as it last knew it."""
        positions = self._positions()
        if positions is None:
            return []
        try:
            outcome = positions()
        except Exception:  # read from the metric reader's thread while the loop moves on
            return []
        if not isinstance(outcome, Success):
            return []
        return [
            Observation(
                position.lag,
                self._lag_attributes
                | {
                    "messaging.destination.name": position.topic,
                    "messaging.destination.partition.id": str(position.partition),
                },
            )
            for position in outcome.value
            if position.lag is not None
        ]

    def _traced_message(
        self, handler: Callable[[EachMessagePayload], Awaitable[object]]
    ) -> Callable[[EachMessagePayload], Awaitable[object]]:
        async def traced(payload: EachMessagePayload) -> object:
            message = payload.message
            attributes = self._partition_attributes(payload.topic, payload.partition)
            attributes["messaging.kafka.offset"] = message.offset
            key = _key_attribute(message.key)
            if key is not None:
                attributes["messaging.kafka.message.key"] = key
            if message.value is not None:
                attributes["messaging.message.body.size"] = len(message.value)
            link = _producer_link(message)
            return await self._process(
                payload.topic, attributes, () if link is None else (link,), 1, handler, payload
            )

        return traced

    def _traced_batch(
        self, handler: Callable[[EachBatchPayload], Awaitable[object]]
    ) -> Callable[[EachBatchPayload], Awaitable[object]]:
        async def traced(payload: EachBatchPayload) -> object:
            messages = payload.messages
            attributes = self._partition_attributes(payload.topic, payload.partition)
            attributes["messaging.batch.message_count"] = len(messages)
            links: dict[tuple[int, int], Link] = {}  # one per producer span
            for message in messages:
                link = _producer_link(message)
                if link is not None:
                    links.setdefault((link.context.trace_id, link.context.span_id), link)
            return await self._process(
                payload.topic, attributes, tuple(links.values()), len(messages), handler, payload
            )

        return traced

    def _partition_attributes(self, topic: str, partition: int) -> Attributes:
        return self._span_attributes | {
            "messaging.destination.name": topic,
            "messaging.destination.partition.id": str(partition),
        }

    async def _process(
        self,
        topic: str,
        attributes: Attributes,
        links: Sequence[Link],
        count: int,
        handler: Callable[[Any], Awaitable[object]],
        payload: object,
    ) -> object:
        error_type: str | None = None
        started = time.perf_counter()
        try:
            with self._tracer.start_as_current_span(
                f"process {topic}", kind=SpanKind.CONSUMER, attributes=attributes, links=links
            ) as span:
                try:
                    outcome = await handler(payload)
                except Exception:
                    # What on_error will be told: the handler failed.
                    error_type = str(ErrorCode.HANDLER_FAILED)
                    span.set_attribute("error.type", error_type)
                    raise
                if isinstance(outcome, Failure):
                    error_type = _failed(span, outcome.error)
        except BaseException as exc:
            if error_type is None:
                error_type = type(exc).__qualname__
            raise
        finally:
            metric = self._metric_attributes | {
                "messaging.destination.name": topic,
                "messaging.destination.partition.id": attributes[
                    "messaging.destination.partition.id"
                ],
            }
            if error_type is not None:
                metric["error.type"] = error_type
            self._duration.record(time.perf_counter() - started, metric)
            self._consumed.add(count, metric)
        return outcome
