"""The lag gauge's list of consumers, read by a metric reader's thread while the loop changes it."""

from __future__ import annotations

import threading
import time

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider

from qi.base.streaming import TelemetryConfig
from qi.base.streaming._telemetry import instruments_for


class _Consumer:
    def lag_observations(self) -> list[Observation]:
        return [Observation(1)]


def test_the_gauge_reads_its_consumers_while_they_come_and_go() -> None:
    # A WeakSet failed the read ("Set changed size during iteration") whenever a consumer was
    # made or collected meanwhile, and the SDK dropped that collection's lag altogether.
    meter_provider = MeterProvider()
    instruments = instruments_for(TelemetryConfig(meter_provider=meter_provider))
    failures: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                list(instruments._observe_lag(CallbackOptions()))
            except Exception as exc:  # what the SDK would log and drop
                failures.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    living: list[_Consumer] = []
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            consumer = _Consumer()
            instruments.add_consumer(consumer)
            living.append(consumer)
            if len(living) > 50:
                living.clear()  # collected: each drops out of the gauge
    finally:
        done.set()
        reader.join()
        meter_provider.shutdown()
    assert failures == []
    living.clear()
    del consumer
    assert list(instruments._observe_lag(CallbackOptions())) == []
