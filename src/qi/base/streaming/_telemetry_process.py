"""Spans and metrics of a consumer's handler calls, linked to their producers' spans."""

from __future__ import annotations

import dataclasses
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.metrics import Observation
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Link, SpanKind

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming._codes import ErrorCode
from qi.base.streaming._config import ConsumerConfig, ConsumerRunConfig, StreamingConfig
from qi.base.streaming._telemetry import (
    SYSTEM,
    Attributes,
    client_attributes,
    instruments_for,
    key_attribute,
    mark_failed,
    mark_raised,
    tracer_for,
)
from qi.base.streaming._types import (
    ConsumedMessage,
    EachBatchPayload,
    EachMessagePayload,
    PartitionPosition,
)


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


def _producer_links(messages: Sequence[ConsumedMessage]) -> tuple[Link, ...]:
    """One link per producer span among ``messages``.

    The messages of one send_batch carry the same context: each distinct one (as the
    propagator's headers hold it) is read once, not once per message.
    """
    fields = tuple(propagate.get_global_textmap().fields)
    links: dict[tuple[object, ...], Link | None] = {}
    for message in messages:
        headers = message.headers
        carried = tuple(headers.get(name) for name in fields) if headers else ()
        if carried not in links:
            links[carried] = _producer_link(message)
    return tuple(link for link in links.values() if link is not None)


class ConsumerTelemetry:
    """Spans and metrics of one consumer's handler calls, and its lag for the gauge."""

    def __init__(
        self,
        config: StreamingConfig,
        consumer_config: ConsumerConfig,
        positions: Callable[[], Result[tuple[PartitionPosition, ...], QiError]],
    ) -> None:
        assert config.telemetry is not None
        instruments = instruments_for(config.telemetry)
        self._tracer = tracer_for(config.telemetry)
        self._duration = instruments.process_duration
        self._consumed = instruments.consumed
        group = consumer_config.group_id
        self._span_attributes = {
            **client_attributes(config),
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.consumer.group.name": group,
        }
        self._metric_attributes: Attributes = {
            "messaging.system": SYSTEM,
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.consumer.group.name": group,
        }
        self._lag_attributes: Attributes = {
            "messaging.system": SYSTEM,
            "messaging.consumer.group.name": group,
        }
        # Weakly: the consumer holds this object, and the gauge must not keep it alive.
        self._positions = weakref.WeakMethod(positions)
        instruments.add_consumer(self)

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
            key = key_attribute(message.key)
            if key is not None:
                attributes["messaging.kafka.message.key"] = key
            if message.value is None:
                attributes["messaging.kafka.message.tombstone"] = True
            else:
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
            return await self._process(
                payload.topic,
                attributes,
                _producer_links(messages),
                len(messages),
                handler,
                payload,
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
            # An empty parent context: the run loop's tasks inherit whatever was current when
            # run() was called (a service's startup span, say), which is no parent of the
            # messages handled for the consumer's whole life. The producer's span is linked.
            with self._tracer.start_as_current_span(
                f"process {topic}",
                context=Context(),
                kind=SpanKind.CONSUMER,
                attributes=attributes,
                links=links,
            ) as span:
                try:
                    outcome = await handler(payload)
                except Exception:
                    # What on_error will be told: the handler failed.
                    error_type = str(ErrorCode.HANDLER_FAILED)
                    span.set_attribute("error.type", error_type)
                    raise
                except BaseException as exc:  # cancelled: by disconnect() or a revocation
                    error_type = mark_raised(span, exc)
                    raise
                if isinstance(outcome, Failure):
                    error_type = mark_failed(span, outcome.error)
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
