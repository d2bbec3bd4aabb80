"""A consumer run as a separate process, so a test can kill it with SIGKILL mid-processing.

    python _child_consumer.py BACKEND BROKERS TOPIC GROUP OUTFILE [defaults]

It appends one line per handled message to OUTFILE, "partition offset unix_time",
written with a single os.write so a kill never leaves half a line, and runs until
it is killed. With ``defaults`` it uses the library's default timeouts (a 30 s
session) instead of short test ones, as a service would.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from qi.base.streaming import (
    ConsumerConfig,
    ConsumerRunConfig,
    EachMessagePayload,
    StreamingConfig,
    SubscriptionConfig,
    create_streaming_client,
)
from qi.base.streaming.devbroker import kind_from_environment

AUTO_COMMIT_INTERVAL = 0.3
"""Seconds between the child's commits: what bounds the redelivery after a kill."""

# As _support.short_session_timeout(): brokers other than Tansu refuse less than 6 s.
_ON_TANSU = not os.environ.get("QI_TEST_BROKERS") and kind_from_environment() == "tansu"
_SESSION_TIMEOUT = 3.0 if _ON_TANSU else 6.0


async def main(
    backend: str, brokers: str, topic: str, group: str, outfile: str, timeouts: str = "short"
) -> None:
    descriptor = os.open(outfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    if timeouts == "defaults":
        config = StreamingConfig("qi-killed-child", tuple(brokers.split(",")))
        consumer_config = ConsumerConfig(group_id=group)
    else:
        config = StreamingConfig("qi-killed-child", tuple(brokers.split(",")), 3.0, 5.0)
        consumer_config = ConsumerConfig(
            group_id=group,
            session_timeout=_SESSION_TIMEOUT,
            heartbeat_interval=0.3,
            auto_commit_interval=AUTO_COMMIT_INTERVAL,
        )
    client = create_streaming_client(backend, config)
    consumer = (await client.get_consumer(consumer_config)).unwrap()
    (await consumer.subscribe(SubscriptionConfig(topics=(topic,), from_beginning=True))).unwrap()

    async def handle(payload: EachMessagePayload) -> None:
        await asyncio.sleep(0.002)  # slow enough to be killed in the middle
        line = f"{payload.partition} {payload.message.offset} {time.time():.6f}\n"
        os.write(descriptor, line.encode())

    (await consumer.run(ConsumerRunConfig(each_message=handle))).unwrap()
    await asyncio.Event().wait()  # until SIGKILL


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
