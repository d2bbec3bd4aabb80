"""The ``qi-stream`` command group and its entry point.

``main`` runs click in non-standalone mode so that every error, click's own
usage errors included, is printed as one ``error: ...`` line:

    0    success             1    an operation failed
    2    bad command line    130  Ctrl-C (143: SIGTERM)
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

import click

from qi.base.streaming.cli._bench import bench
from qi.base.streaming.cli._broker import broker
from qi.base.streaming.cli._consume import consume
from qi.base.streaming.cli._demo import demo
from qi.base.streaming.cli._groups import groups
from qi.base.streaming.cli._output import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    print_error,
    silence_stdout,
    stderr,
    verbosity,
)
from qi.base.streaming.cli._produce import produce
from qi.base.streaming.cli._topics import topics

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=_CONTEXT)
@click.version_option(package_name="qi-base", prog_name="qi-stream")
def cli() -> None:
    """Produce, consume and manage Kafka topics through qi-base.

    \b
    Every command takes the connection options after its name:
      qi-stream topics list --brokers 127.0.0.1:9092    (or set QI_BROKERS)
    No cluster? 'qi-stream broker' runs a development broker;
    'qi-stream demo' and 'qi-stream bench' start their own.

    \b
    Exit status: 0 success, 1 an operation failed, 2 bad command line,
    130 interrupted by Ctrl-C (143 by SIGTERM).
    """


cli.add_command(broker)
cli.add_command(topics)
cli.add_command(groups)
cli.add_command(produce)
cli.add_command(consume)
cli.add_command(bench)
cli.add_command(demo)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return its exit status."""
    try:
        outcome = cli.main(args=argv, prog_name="qi-stream", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message(), err=True)
        return EXIT_USAGE
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        print_error(f"{exc.format_message()}{hint}")
        return EXIT_USAGE
    except CliError as exc:
        print_error(exc.message)
        return exc.exit_code
    except click.ClickException as exc:
        print_error(exc.format_message())
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        silence_stdout()
        return EXIT_OK
    except Exception as exc:  # a bug: short line by default, the traceback with -v
        if verbosity() > 0:
            stderr.print(traceback.format_exc(), markup=False, highlight=False)
            print_error(f"unexpected {type(exc).__name__}: {exc}")
        else:
            print_error(f"unexpected {type(exc).__name__}: {exc} (run with -v for the traceback)")
        return EXIT_FAILURE
    return outcome if isinstance(outcome, int) else EXIT_OK


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``qi-stream`` console script."""
    sys.exit(run(argv))
