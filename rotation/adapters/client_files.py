"""The files of the tool's own client certificate: written when it renews it (``rest_client``).

How they are owned and replaced (README "The tool's own client certificate"):

* They belong to the user the workers run as, in a folder that user may write (the inventory's
  folder is often read-only, e.g. ``/config`` in compose: put them on a volume such as ``/state``).
  Every worker of one inventory reads the same files (one shared volume), so a renewal is seen by
  all at the next session.
* Each file is replaced atomically: the new content goes to a temporary file in the same folder
  (the key created 0600, never through a symlink), is flushed to disk, and is renamed over the old
  one. The certificate is replaced after the key; a reader that falls between the two sees a pair
  that does not match, and reads again (``config.login.read_client_certificate``).
* The previous pair is kept beside them as ``<file>.previous`` (key 0600) until the new one is
  proven on every node, then removed; a rollback writes the previous pair back.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from rotation.core.errors import ConfigError
from rotation.core.model import ClientCertificate

PREVIOUS = ".previous"


def _write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags, mode)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            os.fchmod(handle.fileno(), mode)  # the umask neither widens nor narrows it
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ConfigError(f"{path}: cannot write the client certificate ({exc.strerror or exc}); the files "
                          "of a managed rest_client must be writable by the tool") from None


class ClientFiles:
    """The certificate and key files ``client_cert_file`` / ``client_key_file`` name."""

    def __init__(self, cert_path: Path, key_path: Path) -> None:
        self.cert_path, self.key_path = cert_path, key_path

    def _previous(self, path: Path) -> Path:
        return path.with_name(path.name + PREVIOUS)

    def switch(self, new: ClientCertificate, old: ClientCertificate) -> None:
        """Keep ``old`` as ``*.previous``, then put ``new`` in place (the key first)."""
        _write(self._previous(self.key_path), old.key.reveal(), 0o600)
        _write(self._previous(self.cert_path), old.certificate, 0o644)
        self.write(new)

    def write(self, pair: ClientCertificate) -> None:
        _write(self.key_path, pair.key.reveal(), 0o600)
        _write(self.cert_path, pair.certificate, 0o644)

    def unwritable(self) -> str | None:
        """Why the tool could not replace these files (None when it can): `rotation config check` asks
        before a renewal finds out."""
        for path in (self.cert_path, self.key_path):
            folder = path.parent
            if not os.access(folder, os.W_OK | os.X_OK):
                return f"{folder}: this user ({os.getuid()}) may not create files there to replace {path.name}"
            if path.exists() and not os.access(path, os.R_OK):
                return f"{path}: not readable by this user ({os.getuid()})"
        return None

    def drop_previous(self) -> None:
        for path in (self.key_path, self.cert_path):
            with contextlib.suppress(FileNotFoundError):
                self._previous(path).unlink()

    def __repr__(self) -> str:
        return f"ClientFiles({str(self.cert_path)!r})"


__all__ = ["PREVIOUS", "ClientFiles"]
