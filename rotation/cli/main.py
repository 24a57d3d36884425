"""``rotation``: the domain commands (check, links, rotate, history, status, retry, policy, ca, simulator).

Each command parses options, calls one use case, and formats the result: rich tables for
people, ``--json`` for scripts. Exit codes: 0 fine, 1 something due / failed / rolled back,
2 errors (bad config, unreachable cluster, bad input). One module per command group; shared
input in ``options``, output in ``render`` (every value from outside printed as text, never
rich markup, never a terminal escape). ``workers.main`` adds the service processes.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from rotation.cli import ca, check, config, history, links, policy, rotate, status

app = typer.Typer(
    help="Rotate and verify the TLS certificates of Redis Enterprise Software clusters.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"rotation {version('rotation')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            print("rotation (not installed)")
        raise typer.Exit()


class OneLineWarnings(logging.Handler):
    """``warning: ...`` on stderr, one line, for a command that set up no logging of its own (a
    service process does: then this handler stays silent and the process's own handlers print)."""

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers:
            return
        import sys

        from rotation.adapters.logs import safe_message

        sys.stderr.write(f"{record.levelname.lower()}: {safe_message(record)}\n")


def _one_line_warnings() -> None:
    logger = logging.getLogger("rotation")
    if not any(isinstance(h, OneLineWarnings) for h in logger.handlers):
        logger.addHandler(OneLineWarnings(logging.WARNING))


@app.callback()
def main(
    _version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                           help="Print the version of rotation and exit.")] = False,
) -> None:
    """Rotate and verify the TLS certificates of Redis Enterprise Software clusters."""
    _one_line_warnings()


app.add_typer(ca.ca_app, name="ca")
app.add_typer(policy.policy_app, name="policy")
app.add_typer(config.config_app, name="config")
app.command()(check.check)
app.command()(links.links)
app.command()(rotate.rotate)
app.command()(history.history)
app.command()(status.status)
app.command()(status.retry)
app.command("secret-key")(ca.secret_key)


def _register_simulator() -> None:
    from rotation.simulator.command import simulator

    app.command("simulator", help="Run a simulated RS cluster on loopback (real TLS listeners and REST API).")(
        simulator
    )


_register_simulator()


__all__ = ["app"]
