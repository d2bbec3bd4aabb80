"""Clocks, percentiles and memory readings shared by every subject."""

from __future__ import annotations

import math
import os
import resource
import sys
import threading
import time
from collections.abc import Sequence
from types import TracebackType

from qi.base.streaming.bench._model import Measurement

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_MIB = 1024 * 1024


class Stopwatch:
    """Wall-clock and process CPU time of one timed region."""

    def __init__(self) -> None:
        self._wall_start: float | None = None
        self._cpu_start = 0.0
        self.seconds = 0.0
        self.cpu_seconds = 0.0

    @property
    def started(self) -> bool:
        return self._wall_start is not None

    def start(self) -> None:
        self._cpu_start = time.process_time()
        self._wall_start = time.perf_counter()

    def stop(self) -> None:
        if self._wall_start is None:
            raise RuntimeError("stopwatch stopped before it was started")
        self.seconds = time.perf_counter() - self._wall_start
        # process_time covers every thread of the process, so librdkafka's own threads
        # (and aiokafka's none) are charged to the subject, as they should be.
        self.cpu_seconds = time.process_time() - self._cpu_start

    def measurement(self, messages: int, size: int, **fields: object) -> Measurement:
        result = Measurement(
            messages=messages,
            seconds=self.seconds,
            cpu_seconds=self.cpu_seconds,
            value_bytes=messages * size,
        )
        for name, value in fields.items():
            setattr(result, name, value)
        return result


class ConsumeClock:
    """Times consumption from the first delivery to the last expected message (issue 4).

    Every message counts, including those of the first delivery, which were fetched
    before the clock started: so for every subject one fetch (at most 10,000
    messages, the batch size of every consumer measured) lies outside the clock.
    That bias is the same for all subjects and shrinks as the topic grows.
    """

    def __init__(self, expected: int) -> None:
        self.watch = Stopwatch()
        self.expected = expected
        self.received = 0
        self.first = 0
        self.done = False

    def arrived(self, count: int) -> bool:
        """Record ``count`` more messages; True once every expected message arrived."""
        if not self.watch.started:
            self.watch.start()
            self.first = count
        self.received += count
        if not self.done and self.received >= self.expected:
            self.watch.stop()
            self.done = True
        return self.done

    def measurement(self, size: int, **extra: object) -> Measurement:
        return self.watch.measurement(
            self.received,
            size,
            extra={"first_delivery": self.first, "received": self.received, **extra},
        )


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (p99 of 2,000 samples is the 1,980th smallest)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / _MIB if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> float:
    """Resident set size right now, in MiB (falls back to the peak off Linux)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident_pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()
    return resident_pages * _PAGE_SIZE / _MIB


class RssSampler:
    """Samples this process's RSS from a thread, so a busy event loop cannot skip peaks."""

    def __init__(self, interval: float = 0.05) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)
        self._started = time.perf_counter()
        self.samples: list[tuple[float, float]] = []
        """(seconds since start, RSS MiB) pairs."""

    def __enter__(self) -> RssSampler:
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.samples.append((time.perf_counter() - self._started, current_rss_mb()))
            if self._stop.wait(self._interval):
                self.samples.append((time.perf_counter() - self._started, current_rss_mb()))
                return

    @property
    def peak_mb(self) -> float:
        return max((rss for _, rss in self.samples), default=math.nan)

    def timeline(self, points: int = 40) -> list[tuple[float, float]]:
        """At most ``points`` samples, evenly spread, each the peak of its stretch."""
        if len(self.samples) <= points:
            return [(round(at, 2), round(rss, 1)) for at, rss in self.samples]
        stretch = len(self.samples) / points
        out: list[tuple[float, float]] = []
        for index in range(points):
            part = self.samples[int(index * stretch) : int((index + 1) * stretch)] or [
                self.samples[-1]
            ]
            at = part[-1][0]
            out.append((round(at, 2), round(max(rss for _, rss in part), 1)))
        return out


def payload(size: int) -> bytes:
    """One value shared by every message of a run, so test data does not swamp the RSS."""
    return os.urandom(size)


def latency_measurement(watch: Stopwatch, latencies: list[float], size: int) -> Measurement:
    """The measurement of a run of one-at-a-time sends: every latency, p50/p99 in ``extra``."""
    return watch.measurement(
        len(latencies),
        size,
        latencies_ms=latencies,
        extra={"p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99)},
    )
