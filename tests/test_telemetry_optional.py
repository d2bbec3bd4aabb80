"""Telemetry is optional: off, OpenTelemetry is never imported; on, it must be installed.

Each case runs in a fresh interpreter, since this one has imported OpenTelemetry already.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

_SEND_AND_CONSUME = """
import asyncio, sys
{prelude}
from qi.base.streaming import (
    ConsumerConfig, ConsumerRunConfig, StreamingConfig, StreamingMessage,
    SubscriptionConfig, TelemetryConfig, TopicConfig, create_streaming_client,
)

async def main():
    config = StreamingConfig("app", ("memory-optional:9092",), telemetry={telemetry})
    client = create_streaming_client("memory", config)
    producer = await client.get_producer()
    if producer.is_failure():
        print(producer.error.code, producer.error.message)
        return
    admin = (await client.get_admin()).unwrap()
    (await admin.create_topics([TopicConfig("t")])).unwrap()
    (await producer.value.send("t", StreamingMessage(b"x"))).unwrap()
    seen = asyncio.Event()

    async def handle(payload):
        seen.set()

    consumer = (await client.get_consumer(ConsumerConfig("g"))).unwrap()
    (await consumer.subscribe(SubscriptionConfig(("t",), from_beginning=True))).unwrap()
    (await consumer.run(ConsumerRunConfig(each_message=handle))).unwrap()
    await asyncio.wait_for(seen.wait(), 10)
    await client.disconnect()
    print("imported" if any(name.startswith("opentelemetry") for name in sys.modules)
          else "not imported")

asyncio.run(main())
"""


def _run(telemetry: str, prelude: str = "") -> str:
    script = _SEND_AND_CONSUME.format(telemetry=telemetry, prelude=prelude)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_without_telemetry_opentelemetry_is_never_imported() -> None:
    assert _run("None") == "not imported"


def test_with_telemetry_it_is_imported_and_used() -> None:
    assert _run("TelemetryConfig()") == "imported"


def test_telemetry_without_opentelemetry_installed_says_what_to_install() -> None:
    # A None entry in sys.modules is how Python marks a module as not importable.
    shown = _run("TelemetryConfig()", prelude="sys.modules['opentelemetry'] = None")
    assert shown.startswith("STREAMING_INVALID_CONFIG")
    assert "pip install 'qi-base[otel]'" in shown


@pytest.mark.parametrize(
    "telemetry",
    ["True", "TelemetryConfig(tracer_provider=object())", "TelemetryConfig(meter_provider=1)"],
)
def test_a_wrong_telemetry_setting_is_an_invalid_config(telemetry: str) -> None:
    assert _run(telemetry).startswith("STREAMING_INVALID_CONFIG")
