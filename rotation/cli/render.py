"""Printing for people: rich text built so that values from outside stay text.

Every value that came from outside (RS answers, CA problems, chat fields, records built from
them) goes through :func:`cell` or :func:`line`: cleaned by ``rotation.core.text.clean`` and
wrapped in a rich ``Text``, so it is never read as markup and never drives the terminal.

rich is imported on first use, not with this module: ``rotation --help`` and a command that
fails before printing never pay for it (``console`` and ``err_console`` are made then too).
:func:`say` and :func:`print_table` write what rich would write without importing it at all when
rich would print plain text (no terminal, no forced colours, one cell per character; lines and table
cells wrapped as rich wraps them): ``rotation rotate`` into a pipe or a log never loads rich (~30 ms
of its start-up, benchmarks/rotate_latency.py).
"""

from __future__ import annotations

import builtins
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any, cast

import typer

from rotation.core.text import clean

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
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


def say(*parts: str | tuple[object, str], err: bool = False, soft_wrap: bool = False) -> None:
    """Print ``line(*parts)`` on stdout (stderr with ``err``) as ``console.print(..., highlight=False)``
    would: written here, rich never imported, when rich would write the same plain text."""
    stream = sys.stderr if err else sys.stdout
    text = "".join(part if isinstance(part, str) else clean(part[0]) for part in parts)
    width = _plain_width(stream)
    if width is not None and text.isascii() and text.isprintable():  # one character, one cell
        stream.write(text + "\n" if soft_wrap or len(text) <= width else _wrapped(text, width))
        stream.flush()  # as rich does after each print: stdout and stderr keep their order in one pipe
        return
    (err_console if err else console).print(line(*parts), highlight=False, soft_wrap=soft_wrap)


_WORD = re.compile(r"\s*\S+\s*")
_TRAILING_SPACE = re.compile(r"\s+$")


def _wrapped(text: str, width: int) -> str:
    """TEXT (ASCII, one line) wrapped at WIDTH as rich wraps a ``Text`` (``rich._wrap.divide_line``, words
    longer than a line folded; then ``Text.rstrip_end``), one newline after each line."""
    breaks: list[int] = []
    offset = 0
    for found in _WORD.finditer(text):
        start, word = found.start(), found.group(0)
        length = len(word.rstrip())
        if width - offset >= length:
            offset += len(word)
        elif length > width:
            chunks = [word[i:i + width] for i in range(0, len(word), width)]
            for index, chunk in enumerate(chunks):
                if start:
                    breaks.append(start)
                if index == len(chunks) - 1:
                    offset = len(chunk)
                else:
                    start += len(chunk)
        elif offset and start:
            breaks.append(start)
            offset = len(word)
    out = []
    for begin, end in zip([0, *breaks], [*breaks, len(text)], strict=True):
        piece = text[begin:end]
        if len(piece) > width and (space := _TRAILING_SPACE.search(piece)):
            piece = piece[:len(piece) - min(len(space.group(0)), len(piece) - width)]
        out.append(piece + "\n")
    return "".join(out)


def print_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A table on stdout with a header and no box, as rich's ``Table(box=None, pad_edge=False)`` of
    :func:`cell` values prints it: written here when rich would print plain text, its columns narrowed
    and their cells wrapped as rich does when the table is wider than the terminal (see :func:`_fitted`)."""
    cells = [list(columns), *([clean("" if value is None else value) for value in row] for row in rows)]
    width = _plain_width(sys.stdout)
    fitted = None
    if width is not None and all(c.isascii() and c.isprintable() for row in cells for c in row):
        fitted = _fitted(cells, width)
    if fitted is not None:
        last = len(fitted) - 1
        out = []
        for texts in cells:
            pieces = [_wrapped(value, fitted[index]).splitlines() for index, value in enumerate(texts)]
            for number in range(max(map(len, pieces))):
                out.append("".join((" " if index else "")
                                   + (lines[number] if number < len(lines) else "").ljust(fitted[index])
                                   + (" " if index < last else "") for index, lines in enumerate(pieces)) + "\n")
        sys.stdout.write("".join(out))
        sys.stdout.flush()
        return
    console.print(rich_table(columns, rows))


def rich_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    """The table as rich prints it (the reference the plain path above must match byte for byte)."""
    from rich.table import Table

    table = Table(show_header=True, box=None, pad_edge=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*map(cell, row))
    return table


def _fitted(cells: list[list[str]], width: int) -> list[int] | None:
    """The text width of each column of CELLS (one line each) as rich's table sets it for WIDTH
    (``Table._calculate_column_widths``: each column as wide as its widest cell; when the table is wider,
    ``_collapse_widths`` narrows the widest columns, every column may wrap). None where rich would do more
    than wrap words: shrink every column evenly, or cut a word longer than its column with an ellipsis."""
    count = len(cells[0])
    pads = [(1 if index else 0) + (1 if index < count - 1 else 0) for index in range(count)]
    widths = [min(max(max(len(row[index]) for row in cells) + pads[index], 1), width) for index in range(count)]
    if sum(widths) > width:
        widths = _collapsed(widths, width)
        if sum(widths) > width:
            return None
    fitted = [max(column - pad, 0) for column, pad in zip(widths, pads, strict=True)]
    if any(len(word) > fitted[index] for row in cells for index, value in enumerate(row) for word in value.split()):
        return None
    return fitted


def _collapsed(widths: list[int], width: int) -> list[int]:
    """rich's ``Table._collapse_widths`` (every column wrapable), with ``rich._ratio.ratio_reduce`` inlined."""
    excess = sum(widths) - width
    while excess > 0:
        widest = max(widths)
        second = max((w for w in widths if w != widest), default=0)
        if not widest - second:
            break
        total, left = excess, sum(1 for w in widths if w == widest)
        reduced = []
        for value in widths:
            if value == widest and left > 0:
                cut = min(min(excess, widest - second), round(total / left))
                reduced.append(value - cut)
                total -= cut
                left -= 1
            else:
                reduced.append(value)
        widths = reduced
        excess = sum(widths) - width
    return widths


def _plain_width(stream: IO[str]) -> int | None:
    """The width rich's ``Console`` would wrap at on STREAM when it writes plain text there; None when it
    would not (a terminal, TTY_COMPATIBLE=1 or FORCE_COLOR, Jupyter, Windows): then rich prints.
    Mirrors ``rich.console.Console.is_terminal`` and ``.size``."""
    if sys.platform == "win32" or hasattr(builtins, "get_ipython") or \
            getattr(sys.stdin, "__module__", "").startswith("idlelib"):
        return None
    tty_compatible = os.environ.get("TTY_COMPATIBLE", "")
    force_color = os.environ.get("FORCE_COLOR")
    if tty_compatible == "1" or (tty_compatible != "0" and force_color):
        return None
    if tty_compatible != "0" and force_color is None:
        try:
            if stream.isatty():
                return None
        except (AttributeError, ValueError):  # no isatty, or a closed stream: rich says "no terminal" too
            pass
    columns = os.environ.get("COLUMNS")
    if columns is not None and columns.isdigit():
        return int(columns) or None  # COLUMNS=0: whatever rich makes of it, rich prints
    for fd in _STD_FDS:
        try:
            return os.get_terminal_size(fd).columns or 80
        except (AttributeError, ValueError, OSError):  # not a terminal
            continue
    return 80


def _fd(stream: IO[str] | None, default: int) -> int:
    try:
        return stream.fileno()  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - no stream, or one without a descriptor: rich takes the default too
        return default


# the descriptors rich asks for the terminal's size, in its order
_STD_FDS = (_fd(sys.__stdin__, 0), _fd(sys.__stdout__, 1), _fd(sys.__stderr__, 2))


def fail(problem: str | BaseException, code: int = 2, *, as_json: bool = False) -> typer.Exit:
    """The one way a command stops on an error: ``error: ...`` on stderr and, under ``--json``, a JSON
    object on stdout too (``error``, ``problems``: one per ``file: field: message`` line, ``exit_code``),
    so a script reading stdout learns why. Returns the ``typer.Exit`` to raise."""
    message = getattr(problem, "message", None) or str(problem)
    if as_json:
        print_json_error(message, code)
    err_console.print(line(("error: ", "bold red"), cell(message, multiline=True)), highlight=False,
                      soft_wrap=True)
    return typer.Exit(code)


def print_json_error(message: str, code: int = 2) -> None:
    """The error object ``--json`` puts on stdout: ``error``, ``problems`` (one per line), ``exit_code``."""
    print(json.dumps({"error": message, "problems": [_problem(text) for text in message.splitlines()],
                      "exit_code": code}, indent=2))


_WHERE = re.compile(r"^(?P<file>[^\s:]+\.ya?ml): (?:(?P<field>[\w.\[\]*-]+): )?(?P<message>.*)$")


def _problem(text: str) -> dict[str, str | None]:
    """``rotation.yaml: clusters.east.url: must be ...`` -> its file, field and message."""
    found = _WHERE.match(text)
    if found is None:
        return {"file": None, "field": None, "message": text}
    return {"file": found["file"], "field": found["field"], "message": found["message"]}


__all__ = ["cell", "console", "err_console", "fail", "line", "print_json_error", "print_table", "say"]
