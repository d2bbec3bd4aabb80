"""A noida-db broker for the session: the development broker that enforces Kafka's rules.

Tansu, the default development broker, accepts what Kafka refuses (oversized record
batches, keyless records on compacted topics, unknown topic configs, more replicas
than brokers) and keeps answering for deleted topics. noida-db (``pip install
noida-db``) answers as Kafka does, so the tests of those rules run the real backends
against it: started on a free loopback port with a temporary data directory, and
killed by its process id at the end.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from qi.base.streaming._probe import probe

_READY_WITHIN: Final = 30.0
_STOP_WITHIN: Final = 5.0


def noida_binary() -> str | None:
    """The noida-db server binary of the installed ``noida-db`` package, if any."""
    spec = importlib.util.find_spec("noida_db")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(spec.submodule_search_locations[0]) / "noida-db"
    return str(binary) if binary.is_file() and os.access(binary, os.X_OK) else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class NoidaBroker:
    """One noida-db process serving only Kafka on 127.0.0.1, in a data directory of its own."""

    def __init__(self, binary: str) -> None:
        self._binary = binary
        self._port = _free_port()
        self._data_dir = tempfile.mkdtemp(prefix="qi-noida-")
        self._log_path = Path(self._data_dir) / "broker.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self._port}"

    def __enter__(self) -> Self:
        with self._log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    self._binary,
                    "start",
                    "--only",
                    "kafka",
                    "--kafka-port",
                    str(self._port),
                    "--data-dir",
                    str(Path(self._data_dir) / "data"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + _READY_WITHIN
        while not probe(self.bootstrap, 0.5):
            if self._process.poll() is not None or time.monotonic() > deadline:
                log_text = self._log_path.read_text(errors="replace")[-2000:]
                self._stop()
                raise RuntimeError(f"noida-db did not start on {self.bootstrap}:\n{log_text}")
            time.sleep(0.1)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()  # by its own pid: its data is temporary, nothing to flush
            process.wait(_STOP_WITHIN)
        shutil.rmtree(self._data_dir, ignore_errors=True)
