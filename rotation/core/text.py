"""Text that came from outside, made safe to show: in a terminal, a table, a log line or chat.

Chat fields (user names, command text), RS answers (error descriptions, node addresses), CA
problem documents and the audit entries built from them are shown as *text*: never as rich
markup (``[link=…]``, ``[/oops]``), never with terminal control sequences (ANSI colours and
cursor moves, OSC 8 hyperlinks, C0/C1 controls) and never with bidi overrides that reorder what
the reader sees. :func:`clean` does the removing; :func:`chat` escapes what Slack and Mattermost
would read as a mention or a link; ``rotation.cli.render`` wraps clean text in rich ``Text`` so that
a table or ``console.print`` cannot read markup into it.
"""

from __future__ import annotations

import re
from datetime import datetime

# Whole escape sequences first (so that an OSC 8 link loses its URL too), then lone controls.
_SEQUENCES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"  # CSI (colours, cursor moves)
    r"|\x9b[0-?]*[ -/]*[@-~]?"  # 8-bit CSI
    r"|[\x1b][\]PX^_][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC (hyperlinks, titles), DCS, PM, APC, SOS
    r"|[\x90\x98\x9d\x9e\x9f][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # their 8-bit forms
    r"|\x1b[ -~]?"  # any other escape and the character it introduces
)
# C0 (but tab and newline), DEL, C1, the bidi controls of "Trojan source", the Unicode line and
# paragraph separators, and lone surrogates (which no terminal or log file can encode).
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
                       "\u2066-\u2069\ud800-\udfff]")
_SPACES = re.compile(r"[\t\n]")


def clean(value: object, *, multiline: bool = False) -> str:
    """``value`` as plain text: escape sequences and control characters removed; tabs (and, unless
    ``multiline``, newlines) become spaces, so one value stays on one line of a table or a log."""
    text = value if isinstance(value, str) else str(value)
    if text.isascii() and text.isprintable():
        return text  # the common case, at the cost of two C loops
    text = _CONTROLS.sub("", _SEQUENCES.sub("", text))
    if multiline:
        return text.replace("\t", " ")
    return _SPACES.sub(" ", text)


_CHAT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
# Both platforms read a plain @channel, @here, @all (and Mattermost @everyone) as a mention of everyone in
# the channel; a word joiner after the '@' keeps the text as written but no longer a mention. An '@' after
# a letter or digit (an e-mail address) mentions nobody and stays as it is.
_EVERYONE = re.compile(r"(?<![\w.@])@(?=(?:channel|here|all|everyone)\b)", re.IGNORECASE)


def chat(value: object) -> str:
    """``clean(value)`` for a chat message: ``<!channel>``, ``<@U123>`` and ``<http://x|y>`` stay
    text (the three escapes Slack documents; Mattermost shows them as written), and a plain ``@channel``,
    ``@here``, ``@all`` or ``@everyone`` mentions nobody."""
    text = clean(value).translate(_CHAT)
    return _EVERYONE.sub("@\u2060", text) if "@" in text else text


FOREIGN_TEXT = 300  # characters kept of one foreign text shown in an error (an RS description, a CA's detail)


def shortened(text: str, limit: int = FOREIGN_TEXT) -> str:
    """``text`` cut at ``limit`` characters, marked when cut: foreign text comes in any size."""
    return text if len(text) <= limit else text[:limit] + "…"


def days_text(days: float | None) -> str:
    """Days left as every table and message shows them: one decimal, ``-`` when unknown."""
    return "-" if days is None else f"{days:.1f}"


def when_text(moment: datetime) -> str:
    """A moment as messages name it (UTC)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


__all__ = ["FOREIGN_TEXT", "chat", "clean", "days_text", "shortened", "when_text"]
