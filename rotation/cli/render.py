"""Printing for people: rich text built so that values from outside stay text.

Every value that came from outside (RS answers, CA problems, chat fields, records built from
them) goes through :func:`cell` or :func:`line`: cleaned by ``rotation.core.text.clean`` and
wrapped in a rich ``Text``, so it is never read as markup and never drives the terminal.

rich is imported on first use, not with this module: ``rotation --help`` and a command that
fails before printing never pay for it (``console`` and ``err_console`` are made then too).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, cast

import typer

from rotation.core.text import clean

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text


class _LazyConsole:
    """A rich ``Console`` made (and rich imported) the first time one of its attributes is used."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return getattr(self._console, name)


console = cast("Console", _LazyConsole())
err_console = cast("Console", _LazyConsole(stderr=True))


def cell(value: object, style: str = "", *, multiline: bool = False) -> Text:
    """A rich ``Text`` of ``clean(value)``: printed as it reads, whatever brackets it holds."""
    from rich.text import Text

    return Text(clean("" if value is None else value, multiline=multiline), style=style)


def line(*parts: str | tuple[object, str] | Text) -> Text:
    """One printable line from pieces: ``"literal"``, ``(external value, style)`` or a ``Text``.
    Literal pieces are ours; every other value goes through :func:`clean`."""
    from rich.text import Text

    out = Text()
    for part in parts:
        if isinstance(part, tuple):
            out.append(clean(part[0]), style=part[1] or None)
        elif isinstance(part, Text):
            out.append_text(part)
        else:
            out.append(part)
    return out


def fail(problem: str | BaseException, code: int = 2, *, as_json: bool = False) -> typer.Exit:
    """The one way a command stops on an error: ``error: ...`` on stderr and, under ``--json``, a JSON
    object on stdout too (``error``, ``problems``: one per ``file: field: message`` line, ``exit_code``),
    so a script reading stdout learns why. Returns the ``typer.Exit`` to raise."""
    message = getattr(problem, "message", None) or str(problem)
    if as_json:
        print(json.dumps({"error": message, "problems": [_problem(text) for text in message.splitlines()],
                          "exit_code": code}, indent=2))
    err_console.print(line(("error: ", "bold red"), cell(message, multiline=True)), highlight=False,
                      soft_wrap=True)
    return typer.Exit(code)


_WHERE = re.compile(r"^(?P<file>[^\s:]+\.ya?ml): (?:(?P<field>[\w.\[\]*-]+): )?(?P<message>.*)$")


def _problem(text: str) -> dict[str, str | None]:
    """``rotation.yaml: clusters.east.url: must be ...`` -> its file, field and message."""
    found = _WHERE.match(text)
    if found is None:
        return {"file": None, "field": None, "message": text}
    return {"file": found["file"], "field": found["field"], "message": found["message"]}


__all__ = ["cell", "console", "err_console", "fail", "line"]
