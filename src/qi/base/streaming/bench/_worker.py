"""One measurement in a fresh process, ``python -m qi.base.streaming.bench._worker``.

JSON in, JSON out.

Protocol: the runner writes one :class:`Job` as a JSON line on stdin. The worker
answers with JSON lines on stdout: ``{"event": "ready"}`` when a job needs the
runner to act (the outage check waits for a ``go`` line on stdin after it), and
finally ``{"event": "result", ...}``. Logs go to stderr.

A fresh process per measurement makes ``ru_maxrss`` (a process-wide high-water
mark) and ``process_time`` belong to one subject only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import sys
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from qi.base.streaming.bench._measure import peak_rss_mb
from qi.base.streaming.bench._model import BenchError, Job, Measurement, Status, Unavailable


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


async def _ready() -> None:
    _emit({"event": "ready"})
    answer = await asyncio.to_thread(sys.stdin.readline)
    if answer.strip() != "go":
        raise BenchError(f"the runner answered {answer.strip()!r} instead of 'go'")


async def _run_qi(job: Job) -> Measurement:
    backend, _, variant = job.subject.removeprefix("qi-").partition("/")
    # Imported here so a backend that fails to import is a per-subject verdict.
    from qi.base.streaming.bench import _bounded, _qi
    from qi.base.streaming.bench._scenarios import TRACED

    parts = variant.split("/")
    if TRACED in parts:  # the client gets telemetry on; the rest of the variant as usual
        variant = "/".join(part for part in parts if part != TRACED)
        job = dataclasses.replace(job, options={**job.options, _qi.TELEMETRY_OPTION: True})

    if job.operation == "produce":
        return await _qi.produce_batch(job, backend)
    if job.operation == "produce-concurrent":
        return await _qi.produce_concurrent(job, backend)
    if job.operation == "latency":
        return await _qi.send_latency(job, backend, variant)
    if job.operation == "consume":
        return await _qi.consume(job, backend, variant)
    if job.operation == "transactions":
        return await _qi.produce_transactions(job, backend)
    if job.operation == "outage":
        return await _bounded.outage(job, backend, _ready)
    if job.operation == "slow-consumer":
        return await _bounded.slow_consumer(job, backend)
    raise BenchError(f"no qi measurement for operation {job.operation!r}")


async def _bounded_run(job: Job) -> Measurement:
    async with asyncio.timeout(job.timeout):
        return await _run_qi(job)


def measure(job: Job) -> Measurement:
    """Run the job's measurement; raises Unavailable or BenchError."""
    if job.subject.startswith("qi-"):
        try:
            return asyncio.run(_bounded_run(job))
        except TimeoutError:
            raise BenchError(f"did not finish within {job.timeout}s") from None
    from qi.base.streaming.bench._raw import RAW

    runner = RAW.get((job.operation, job.subject))
    if runner is None:
        raise BenchError(f"no raw measurement for {job.operation!r} / {job.subject!r}")
    try:
        if inspect.iscoroutinefunction(runner):
            return asyncio.run(runner(job))  # type: ignore[no-any-return]
        return runner(job)  # type: ignore[return-value]
    except ImportError as exc:
        raise Unavailable(f"{exc.name or exc} is not installed") from exc


def profiled(job: Job) -> Measurement:
    """``measure(job)``, under pyinstrument when the job names a profile file (``--profile``)."""
    target = job.options.get("profile")
    if not target:
        return measure(job)
    try:
        from pyinstrument import Profiler  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        print("pyinstrument is not installed: running without the profiler", file=sys.stderr)
        return measure(job)
    profiler = Profiler(interval=0.0005)
    profiler.start()
    try:
        return measure(job)
    finally:
        profiler.stop()
        Path(target).write_text(profiler.output_text(unicode=True, show_all=False))
        Path(target).with_suffix(".html").write_text(profiler.output_html())


def main() -> int:
    job = Job.from_json(sys.stdin.readline())
    status: Status = "ok"
    reason = ""
    measurement: Measurement | None = None
    try:
        measurement = profiled(job)
    except Unavailable as exc:
        status, reason = "unavailable", str(exc)
    except BenchError as exc:
        status, reason = "error", str(exc)
    except Exception as exc:
        traceback.print_exc()
        status, reason = "error", f"{type(exc).__name__}: {exc}"
    result: dict[str, Any] = {
        "event": "result",
        "status": status,
        "reason": reason,
        "rss_peak_mb": round(peak_rss_mb(), 1),
    }
    if measurement is not None:
        fields = asdict(measurement)
        fields.pop("latencies_ms")  # p50/p99 travel in ``extra``; the raw list is long
        result["measurement"] = fields
    _emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
