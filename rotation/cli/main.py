"""``rotation``: the domain commands (check, links, rotate, history, status, retry, policy, ca, simulator).

Each command parses options, calls one use case, and formats the result: rich tables for
people, ``--json`` for scripts. Exit codes: 0 fine, 1 something due / failed / rolled back,
2 errors (bad config, unreachable cluster, bad input). One module per command group; shared
input in ``options``, output in ``render`` (every value from outside printed as text, never
rich markup, never a terminal escape). ``workers.main`` adds the service processes.
"""

from __future__ import annotations

import typer

from rotation.cli import ca, check, config, history, links, policy, rotate, status

app = typer.Typer(
    help="Rotate and verify the TLS certificates of Redis Enterprise Software clusters.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: `rotation --help` and each command's help never import rich
)
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
