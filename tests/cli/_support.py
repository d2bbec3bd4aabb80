"""Running the real ``qi-stream`` in a subprocess, the way a user's shell does."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache

from qi.base import Success
from qi.base.streaming import StreamingConfig, create_connector

CLI = [sys.executable, "-m", "qi.base.streaming.cli"]


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a CLI run: no inherited QI_* settings, no colour, and the width
    of output written to a pipe (a ``COLUMNS`` set by the test runner would narrow it)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("QI_") and key not in ("COLUMNS", "LINES")
    }
    env["NO_COLOR"] = "1"
    env.update(extra or {})
    return env


def run_cli(
    *args: str,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``qi-stream ARGS`` to completion and return what it printed and its status."""
    return subprocess.run(
        [*CLI, *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=cli_env(env),
        timeout=timeout,
        check=False,
    )


def start_cli(cluster: Mapping[str, str], *args: str) -> subprocess.Popen[bytes]:
    """Start ``qi-stream ARGS`` with the cluster's Kafka backend, its output piped back."""
    return subprocess.Popen(
        [*CLI, *args, "--backend", cluster["QI_TEST_BACKEND"]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(cluster),
    )


def cluster_env(bootstrap: str, backend: str) -> dict[str, str]:
    """Environment pointing the CLI at ``bootstrap`` (QI_BROKERS), naming the Kafka backend
    to run it with (QI_TEST_BACKEND, read by :func:`run_on_cluster` and :func:`start_cli`)."""
    return {"QI_BROKERS": bootstrap, "QI_TEST_BACKEND": backend}


def run_on_cluster(
    cluster: Mapping[str, str],
    *args: str,
    stdin: bytes | None = None,
    extra: Sequence[str] = (),
) -> subprocess.CompletedProcess[bytes]:
    """Run ``qi-stream ARGS --backend <the cluster's backend> EXTRA`` in the cluster's env."""
    return run_cli(*args, "--backend", cluster["QI_TEST_BACKEND"], *extra, stdin=stdin, env=cluster)


def created_topic(
    cli: Callable[..., subprocess.CompletedProcess[bytes]], name: str, *options: str
) -> Iterator[str]:
    """For a fixture: the topic ``name`` made by ``cli("topics", "create", name, *options)``,
    deleted through ``cli`` after the test."""
    created = cli("topics", "create", name, *options)
    assert created.returncode == 0, created.stderr.decode()
    yield name
    cli("topics", "delete", name)


def stderr_lines(completed: subprocess.CompletedProcess[bytes]) -> list[str]:
    """The non-empty lines the command wrote on stderr."""
    return [line for line in completed.stderr.decode().splitlines() if line.strip()]


@cache
def loadable_backend(name: str) -> bool:
    """True when the named backend's library is installed and the backend itself loads."""
    connector = create_connector(name, StreamingConfig("probe", ("127.0.0.1:9",)))
    return isinstance(connector, Success)


def kafka_backend() -> str | None:
    """A Kafka backend to drive the CLI with: $QI_CLI_TEST_BACKEND, confluent, aiokafka, or None."""
    forced = os.environ.get("QI_CLI_TEST_BACKEND")
    for name in (forced,) if forced else ("confluent", "aiokafka"):
        try:
            if loadable_backend(name):
                return name
        except Exception:  # a backend still being written may fail to import at all
            continue
    return None
