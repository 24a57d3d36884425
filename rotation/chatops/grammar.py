"""The chat command grammar: text after the slash command -> a typed ``Command``.

::

    help
    status [CLUSTER]
    check CLUSTER
    rotate CLUSTER CERT|all [--dry-run]
    history CLUSTER [CERT]
    confirm NONCE              (the text form of the confirmation button, for Mattermost/scripts)

``parse`` is total: it returns a ``Command`` or raises ``UsageError`` (with a short usage answer)
and nothing else, whatever the input. Names are checked for shape only (the inventory is checked
by the use case); certificate names are RS's fixed names, ``rest_client`` (the tool's own client
certificate) and ``db:<database>`` (a database's own certificate, by name or uid).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rotation.core.errors import RotationError
from rotation.core.model import CertName
from rotation.core.targets import target_name

MAX_TEXT = 1000  # Slack sends up to ~4000 characters; a command needs far fewer
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")

USAGE = """\
`help` this text
`status [CLUSTER]` certificates as the service last saw them
`check CLUSTER` handshake every node now (answer follows)
`rotate CLUSTER CERT|all [--dry-run]` CERT is one of cm, api, proxy, syncer, metrics_exporter, \
rest_client, db:DATABASE
`history CLUSTER [CERT]` recent rotations"""


class UsageError(RotationError):
    """The text is not a command: ``message`` says why, ``usage`` is the short answer to give."""

    def __init__(self, message: str, usage: str = USAGE) -> None:
        super().__init__(message)
        self.usage = usage

    @property
    def answer(self) -> str:
        return f"{self.message}\n{self.usage}" if self.usage else self.message


@dataclass(frozen=True)
class Help:
    verb = "help"


@dataclass(frozen=True)
class Status:
    cluster: str | None = None
    verb = "status"


@dataclass(frozen=True)
class Check:
    cluster: str
    verb = "check"


@dataclass(frozen=True)
class Rotate:
    cluster: str
    certs: tuple[CertName | str, ...] = ()  # empty: every certificate the inventory manages (``all``)
    dry_run: bool = False
    verb = "rotate"

    @property
    def all(self) -> bool:
        return not self.certs

    @property
    def target(self) -> str:
        return "all" if self.all else ", ".join(str(c) for c in self.certs)


@dataclass(frozen=True)
class History:
    cluster: str
    cert: CertName | str | None = None
    verb = "history"


@dataclass(frozen=True)
class Confirm:
    nonce: str
    verb = "confirm"


Command = Help | Status | Check | Rotate | History | Confirm

_SYNTAX = {
    "status": "`status [CLUSTER]`",
    "check": "`check CLUSTER`",
    "rotate": "`rotate CLUSTER CERT|all [--dry-run]`",
    "history": "`history CLUSTER [CERT]`",
    "confirm": "`confirm NONCE`",
}


def _bad(verb: str, why: str) -> UsageError:
    return UsageError(f"{why}. Usage: {_SYNTAX[verb]}", usage="")


def _cluster(verb: str, token: str) -> str:
    if not _NAME.match(token):
        raise _bad(verb, f"{_show(token)} is not a cluster name")
    return token


def _cert(verb: str, token: str) -> CertName | str:
    """A slot, ``rest_client`` or ``db:<database>`` (``rotation.core.targets``)."""
    try:
        return target_name(token)
    except ValueError:
        known = ", ".join(c.value for c in CertName)
        raise _bad(verb, f"unknown certificate {_show(token)} (known: {known}, rest_client, db:DATABASE)") from None


def _show(token: str) -> str:
    """A token as it may be echoed back: printable, short, no markup that pings people."""
    clean = "".join(ch if ch.isprintable() and ch not in "<>&`*_~@!" else "?" for ch in token[:40])
    return f"'{clean}'" + ("..." if len(token) > 40 else "")


def _arity(verb: str, args: list[str], low: int, high: int) -> None:
    if not low <= len(args) <= high:
        raise _bad(verb, "wrong number of arguments")


def parse(text: str) -> Command:
    """Parse the text after the slash command. Raises UsageError (only) when it is not a command."""
    if not isinstance(text, str):
        raise UsageError("no command given")
    if len(text) > MAX_TEXT:
        raise UsageError(f"command too long ({len(text)} characters)")
    tokens = text.split()
    if not tokens:
        raise UsageError("no command given")
    verb, args = tokens[0].lower(), tokens[1:]
    if verb in ("help", "-h", "--help", "?"):
        return Help()
    if verb == "status":
        _arity(verb, args, 0, 1)
        return Status(_cluster(verb, args[0]) if args else None)
    if verb == "check":
        _arity(verb, args, 1, 1)
        return Check(_cluster(verb, args[0]))
    if verb == "history":
        _arity(verb, args, 1, 2)
        return History(_cluster(verb, args[0]), _cert(verb, args[1]) if len(args) > 1 else None)
    if verb == "rotate":
        return _rotate(args)
    if verb == "confirm":
        _arity(verb, args, 1, 1)
        if not _NONCE.match(args[0]):
            raise _bad(verb, "that is not a confirmation code")
        return Confirm(args[0])
    raise UsageError(f"unknown command {_show(tokens[0])}")


def _rotate(args: list[str]) -> Rotate:
    flags = [a for a in args if a.startswith("--")]
    words = [a for a in args if not a.startswith("--")]
    unknown = [f for f in flags if f.lower() != "--dry-run"]
    if unknown:
        raise _bad("rotate", f"unknown option {_show(unknown[0])}")
    if len(flags) > 1:
        raise _bad("rotate", "--dry-run given twice")
    if len(words) < 2:
        raise _bad("rotate", "name a cluster and a certificate (or all)")
    cluster = _cluster("rotate", words[0])
    if [w.lower() for w in words[1:]] == ["all"]:
        return Rotate(cluster, (), dry_run=bool(flags))
    if any(w.lower() == "all" for w in words[1:]):
        raise _bad("rotate", "`all` stands alone")
    certs: list[CertName | str] = []
    for word in words[1:]:
        cert = _cert("rotate", word)
        if cert not in certs:
            certs.append(cert)
    return Rotate(cluster, tuple(certs), dry_run=bool(flags))


def render(command: Command) -> str:
    """The canonical text of a command (what the audit log and the confirmation show)."""
    match command:
        case Help():
            return "help"
        case Status(cluster=cluster):
            return f"status {cluster}" if cluster else "status"
        case Check(cluster=cluster):
            return f"check {cluster}"
        case Rotate():
            return f"rotate {command.cluster} {' '.join(map(str, command.certs)) or 'all'}" + (
                " --dry-run" if command.dry_run else "")
        case History(cluster=cluster, cert=cert):
            return f"history {cluster}" + (f" {cert}" if cert else "")
        case Confirm():
            return "confirm"
    return "?"


__all__ = ["Check", "Command", "Confirm", "Help", "History", "Rotate", "Status", "USAGE", "UsageError", "parse",
           "render"]
