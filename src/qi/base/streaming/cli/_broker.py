"""``qi-stream broker``: run the development broker in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Final

import click

from qi.base.streaming.cli._options import BROKERS_ENV, CommonOptions, common_options
from qi.base.streaming.cli._output import (
    EXIT_FAILURE,
    EXIT_OK,
    CliError,
    one_line,
    print_note,
    print_result,
    verbosity,
)
from qi.base.streaming.cli._runner import exit_with
from qi.base.streaming.devbroker import BROKER_KINDS, BrokerKind, DevBroker, DevBrokerError

_WATCH_INTERVAL: Final = 0.5


def start_dev_broker(port: int | None = None, kind: BrokerKind = "tansu") -> DevBroker:
    """Start a development broker on 127.0.0.1, or exit with one line saying why it failed.

    The broker's log tail (part of the library's message) is shown only with -v.
    """
    broker = DevBroker(port, kind=kind)
    try:
        broker.start()
    except DevBrokerError as exc:
        summary, _, details = str(exc).partition("\n")
        if details and verbosity() > 0:
            print_note(details)
        raise CliError(f"cannot start the development broker: {one_line(summary)}") from None
    return broker


@click.command()
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="TCP port on 127.0.0.1 (default: a free one).",
)
@click.option(
    "--kind",
    type=click.Choice(BROKER_KINDS),
    default="tansu",
    show_default=True,
    help="Which broker: Tansu (in memory) or noida-db (a temporary data directory).",
)
@common_options
def broker(options: CommonOptions, port: int | None, kind: BrokerKind) -> None:
    """Run a development broker (Tansu or noida-db) on 127.0.0.1 until Ctrl-C.

    It needs the broker extra (pip install 'qi-base[broker]'); nothing is kept
    after it stops. Point the other commands at it with the printed QI_BROKERS
    line. Of the shared options only -v matters here.

    \b
    Example:
      qi-stream broker --port 9092
      qi-stream broker --kind noida
    """
    del options  # accepted like everywhere else; a broker has nothing to connect to
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    # Installed before the broker starts, so a Ctrl-C during startup still stops it cleanly.
    previous = {
        signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    dev_broker: DevBroker | None = None
    try:
        dev_broker = start_dev_broker(port, kind)
        print_result(f"development broker listening on {dev_broker.bootstrap}")
        print_note(f"export {BROKERS_ENV}={dev_broker.bootstrap}", style="bold")
        print_note("press Ctrl-C to stop it (its topics and messages are not kept)")
        while not stop.wait(_WATCH_INTERVAL):
            if not dev_broker.is_running():
                # Ctrl-C in a terminal reaches the broker too; give our handler a moment.
                if stop.wait(_WATCH_INTERVAL):
                    break
                raise CliError("the development broker exited unexpectedly", EXIT_FAILURE)
    finally:
        if dev_broker is not None:
            dev_broker.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print_note("development broker stopped")
    exit_with(EXIT_OK)
