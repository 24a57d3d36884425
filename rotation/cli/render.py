"""Printing for people: rich text built so that values from outside stay text.

Every value that came from outside (RS answers, CA problems, chat fields, records built from
them) goes through :func:`cell` or :func:`line`: cleaned by ``rotation.core.text.clean`` and
wrapped in a rich ``Text``, so it is never read as markup and never drives the terminal.

rich is imported on first use, not with this module: ``rotation --help`` and a command that
fails before printing never pay for it (``console`` and ``err_console`` are made then too).
"""

from __future__ import annotations

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


def fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(line(("error: ", "bold red"), cell(message, multiline=True)), highlight=False,
                      soft_wrap=True)
    return typer.Exit(code)


__all__ = ["cell", "console", "err_console", "fail", "line"]
