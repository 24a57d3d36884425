"""``rotation``: the domain commands (check, links, rotate, history, status, retry, policy, ca, simulator).

Each command parses options, calls one use case, and formats the result: rich tables for
people, ``--json`` for scripts. Exit codes: 0 fine, 1 something due / failed / rolled back,
2 errors (bad config, unreachable cluster, bad input). One module per command group; shared
input in ``options``, output in ``render`` (every value from outside printed as text, never
rich markup, never a terminal escape). ``workers.main`` adds the service processes.

Start-up: a command's module is imported, and its options built, only when that command runs
(or when ``--help`` lists it): ``rotation check`` does not load ``rotate``, ``policy`` or the
simulator. Each module imports what is heavy (rich, httpx, the models, the pipeline) inside
the function that uses it. A new command goes into ``COMMANDS`` or ``GROUPS`` below.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.core

if TYPE_CHECKING:
    from typer import _click as click  # typer carries its own click; its types have no public name

# name -> (module, function, options for ``Typer.command``), in the order `rotation --help` lists them
COMMANDS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "check": ("rotation.cli.check", "check", {}),
    "links": ("rotation.cli.links", "links", {}),
    "rotate": ("rotation.cli.rotate", "rotate", {}),
    "history": ("rotation.cli.history", "history", {}),
    "status": ("rotation.cli.status", "status", {}),
    "retry": ("rotation.cli.status", "retry", {}),
    "secret-key": ("rotation.cli.ca", "secret_key", {}),
    "simulator": ("rotation.simulator.command", "simulator",
                  {"help": "Run a simulated RS cluster on loopback (real TLS listeners and REST API)."}),
}
# name -> (module, Typer app): command groups, listed after the commands
GROUPS: dict[str, tuple[str, str]] = {
    "ca": ("rotation.cli.ca", "ca_app"),
    "policy": ("rotation.cli.policy", "policy_app"),
    "config": ("rotation.cli.config", "config_app"),
}
_SETTINGS: dict[str, Any] = {"pretty_exceptions_enable": False,
                             "rich_markup_mode": None}  # plain click help: no rich for --help


def _build(name: str) -> click.Command:
    """The click command for ``name``, made by typer exactly as ``app.command()`` / ``app.add_typer`` would."""
    holder = typer.Typer(**_SETTINGS)
    if name in COMMANDS:
        module, function, options = COMMANDS[name]
        holder.command(name, **options)(getattr(importlib.import_module(module), function))
    else:
        module, attribute = GROUPS[name]
        holder.add_typer(getattr(importlib.import_module(module), attribute), name=name)
    return typer.main.get_group(holder).commands[name]


class _Commands(MutableMapping[str, "click.Command"]):
    """A group's commands: those typer built (``workers.main``'s services) and, built on first
    access, the lazy ones above."""

    def __init__(self, built: MutableMapping[str, click.Command]) -> None:
        self._built = dict(built)
        self._order = [*COMMANDS, *(n for n in self._built if n not in COMMANDS and n not in GROUPS), *GROUPS]

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._built:
            if name not in COMMANDS and name not in GROUPS:
                raise KeyError(name)
            self._built[name] = _build(name)
        return self._built[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        if name not in self._order:
            self._order.append(name)
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        self._order.remove(name)
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, name: object) -> bool:
        return name in self._order


class LazyGroup(typer.core.TyperGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = _Commands(self.commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # names only: nothing is built to be listed

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["rotation.args"] = list(args)  # for ``invoke``: whether ``--json`` was asked for
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        """A usage error (an unknown option, a missing or malformed value) under ``--json`` is also the JSON
        error object on stdout, as every other error is (``render.fail``); click still prints its text."""
        from typer._click.exceptions import UsageError  # typer's own click: no public name

        try:
            return super().invoke(ctx)
        except UsageError as exc:
            if "--json" in ctx.meta.get("rotation.args", ()):
                from rotation.cli.render import print_json_error

                print_json_error(exc.format_message(), exc.exit_code)
            raise


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


def main(
    _version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                           help="Print the version of rotation and exit.")] = False,
) -> None:
    """Rotate and verify the TLS certificates of Redis Enterprise Software clusters."""
    _one_line_warnings()


app = typer.Typer(
    cls=LazyGroup,
    callback=main,
    help="Rotate and verify the TLS certificates of Redis Enterprise Software clusters.",
    no_args_is_help=True,
    **_SETTINGS,
)


__all__ = ["COMMANDS", "GROUPS", "LazyGroup", "app"]
