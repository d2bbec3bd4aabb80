"""The options every subcommand accepts after its name, and the configuration built from them.

``qi-stream topics list --brokers host:9092`` works because each command carries
these options itself (through :func:`common_options`) instead of the top-level
group, which is how people type them.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar, cast

import click

from qi.base.streaming import SecurityConfig, StreamingConfig
from qi.base.streaming.cli._output import EXIT_USAGE, CliError, configure_logging

BACKENDS: Final = ("confluent", "aiokafka", "memory")
BROKERS_ENV: Final = "QI_BROKERS"
PASSWORD_ENV: Final = "QI_PASSWORD"
DEFAULT_CLIENT_ID: Final = "qi-stream"
MEMORY_BROKERS: Final = ("memory:9092",)
"""The in-process name the memory backend uses when no brokers are given."""

# backend -> the third-party module it needs (memory needs none)
_BACKEND_LIBRARY: Final = {"confluent": "confluent_kafka", "aiokafka": "aiokafka"}

NO_BROKERS_HINT: Final = (
    f"no brokers given: pass --brokers host:port or set {BROKERS_ENV}, "
    "or start a development broker with 'qi-stream broker'"
)

F = TypeVar("F", bound=Callable[..., Any])


def backend_installed(name: str) -> bool:
    """True when the library the named backend needs is importable (memory always is)."""
    library = _BACKEND_LIBRARY.get(name)
    return library is None or importlib.util.find_spec(library) is not None


def default_backend() -> str:
    """confluent when confluent-kafka is installed, else aiokafka when aiokafka is, else memory."""
    for name in BACKENDS:
        if backend_installed(name):
            return name
    return "memory"  # unreachable: memory needs nothing


@dataclass(frozen=True, slots=True)
class CommonOptions:
    """What the shared options said: where the cluster is and how to reach it."""

    backend: str | None
    """Backend named by --backend; None means "the default" (see ``default_backend``)."""
    brokers: tuple[str, ...]
    """Bootstrap servers from --brokers or QI_BROKERS; empty when neither was given."""
    client_id: str
    """Client id reported to the brokers."""
    security: SecurityConfig | None
    """SASL and TLS settings; None for plaintext without SASL."""
    verbose: int
    """How many -v were given."""

    @property
    def chosen_backend(self) -> str:
        """The backend to use: the one named, else the default."""
        return self.backend if self.backend is not None else default_backend()

    def streaming_config(self, brokers: tuple[str, ...] | None = None) -> StreamingConfig:
        """The client configuration, for ``brokers`` when given (e.g. an embedded broker)."""
        return StreamingConfig(
            client_id=self.client_id,
            brokers=self.brokers if brokers is None else brokers,
            security=self.security,
        )

    def require_brokers(self) -> StreamingConfig:
        """The configuration for commands that need a cluster; exit 2 with a hint without one.

        The memory backend needs no brokers: it runs an in-process broker under a fixed
        name, which lives only as long as this command.
        """
        if self.brokers:
            return self.streaming_config()
        if self.chosen_backend == "memory":
            return self.streaming_config(MEMORY_BROKERS)
        raise CliError(NO_BROKERS_HINT, EXIT_USAGE)


def format_option(command: F) -> F:
    """``--format table|json``: a table for people (default), JSON on stdout for scripts."""
    option = click.option(
        "--format",
        "output_format",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="Output: a table, or JSON for scripts.",
    )
    return option(command)


def _split_brokers(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


_OPTIONS: Final[tuple[Callable[[F], F], ...]] = (
    click.option(
        "--backend",
        type=click.Choice(BACKENDS),
        default=None,
        help="Client library: confluent (default when installed), aiokafka (else), or memory "
        "(an in-process broker that lives only inside this one command).",
    ),
    click.option(
        "--brokers",
        envvar=BROKERS_ENV,
        show_envvar=True,
        callback=_split_brokers,
        metavar="HOST:PORT[,...]",
        help="Bootstrap brokers.",
    ),
    click.option("--client-id", default=DEFAULT_CLIENT_ID, show_default=True, help="Client id."),
    click.option(
        "--sasl-mechanism",
        type=click.Choice(["plain", "scram-sha-256", "scram-sha-512"]),
        help="SASL mechanism (needs --username and a password).",
    ),
    click.option("--username", help="SASL user name."),
    click.option(
        "--password-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help=f"File holding the SASL password (else ${PASSWORD_ENV}); never a password flag.",
    ),
    click.option("--tls", is_flag=True, help="Connect over TLS."),
    click.option(
        "--tls-ca",
        type=click.Path(exists=True, dir_okay=False),
        help="PEM file of CAs to trust (implies --tls).",
    ),
    click.option(
        "--tls-cert",
        type=click.Path(exists=True, dir_okay=False),
        help="PEM client certificate (implies --tls).",
    ),
    click.option(
        "--tls-key",
        type=click.Path(exists=True, dir_okay=False),
        help="PEM client key (implies --tls).",
    ),
    click.option(
        "-v",
        "--verbose",
        count=True,
        help="Library logs on stderr (-v: INFO; -vv: DEBUG, client libraries too).",
    ),
)

_OPTION_NAMES: Final = (
    "backend",
    "brokers",
    "client_id",
    "sasl_mechanism",
    "username",
    "password_file",
    "tls",
    "tls_ca",
    "tls_cert",
    "tls_key",
    "verbose",
)


def _security(values: dict[str, Any]) -> SecurityConfig | None:
    mechanism = values["sasl_mechanism"]
    username = values["username"]
    password: str | None = None
    password_file: Path | None = values["password_file"]
    if password_file is not None:
        try:
            password = password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read --password-file: {exc}", EXIT_USAGE) from None
    elif os.environ.get(PASSWORD_ENV):
        password = os.environ[PASSWORD_ENV]
    if mechanism is not None and (username is None or password is None):
        raise CliError(
            f"--sasl-mechanism needs --username and a password (--password-file or "
            f"${PASSWORD_ENV})",
            EXIT_USAGE,
        )
    tls_files = (values["tls_ca"], values["tls_cert"], values["tls_key"])
    ssl = bool(values["tls"]) or any(path is not None for path in tls_files)
    if mechanism is None and not ssl and username is None:
        return None
    return SecurityConfig(
        mechanism=mechanism,
        username=username,
        password=password,
        ssl=ssl,
        ssl_ca_file=tls_files[0],
        ssl_cert_file=tls_files[1],
        ssl_key_file=tls_files[2],
    )


def common_options(command: F) -> F:
    """Add the shared options to a command and hand them to it as ``options: CommonOptions``.

    Put it right above the function (below the command's own options), so that
    ``--help`` lists the command's options first. Also sets up logging per ``-v``.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in _OPTION_NAMES}
        configure_logging(values["verbose"])
        options = CommonOptions(
            backend=values["backend"],
            brokers=values["brokers"],
            client_id=values["client_id"],
            security=_security(values),
            verbose=values["verbose"],
        )
        return command(*args, options=options, **kwargs)

    decorated: Callable[..., Any] = wrapper
    for option in reversed(_OPTIONS):
        decorated = option(decorated)
    return cast(F, decorated)
