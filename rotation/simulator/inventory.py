"""The inventory ``rotation simulator --write-config F`` writes: ready for a first rotation as it is.

Besides the cluster's entry (``ClusterSimulator.inventory_entry``) a rotation needs an issuer, so
the file also gets an ``internal`` issuer of ``type: internal_ca`` backed by a CA beside it:
``pki/ca.pem`` and ``pki/ca-key.pem`` (0600), the files and format ``rotation ca init --dir pki``
writes. An existing pair is reused (the CA outlives a simulator restart); an ``internal`` issuer
already in the file is the operator's and is kept as it is. The cluster's ``issuer:`` names it,
``verify:`` is the simulator's CA bundle, and the password comes from ``RS_SIM_PASSWORD`` when the
simulator took it from there (``password_env``), else from its 0600 file (``password_file``).

The simulator stays a leaf: the CA is its own ``tls.CertificateAuthority``, not ``rotation.issuers``.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .tls import CertificateAuthority, _key_pem

PASSWORD_ENV = "RS_SIM_PASSWORD"
ISSUER = "internal"
CA_DIR = "pki"
CA_LABEL = "rotation simulator internal"  # the CA's CN: "<label> self-signed CA"
CA_VALIDITY = dt.timedelta(days=3650)
CLOCK_SKEW = dt.timedelta(minutes=5)  # notBefore in the past: certificates issued at once are valid


def read_inventory(path: Path) -> dict[str, Any]:
    """The mapping in ``path`` (empty when the file does not exist); ValueError when it is not one."""
    if not path.exists():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read it as YAML ({type(exc).__name__})") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: not a YAML mapping")
    return loaded


def write_inventory(path: Path, name: str, entry: dict[str, Any],
                    issuers: dict[str, Any] | None = None) -> None:
    """Create or merge ``{issuers: ..., clusters: {name: entry}}``: other keys, issuers and clusters
    are kept; the file is replaced atomically (a reader never sees half of it)."""
    data = read_inventory(path)
    clusters = data.pop("clusters", None)
    clusters = clusters if isinstance(clusters, dict) else {}
    if issuers:
        known = data.get("issuers")
        data["issuers"] = {**issuers, **known} if isinstance(known, dict) else dict(issuers)
    clusters[name] = entry
    data["clusters"] = clusters
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)


@dataclass(frozen=True)
class ReadyInventory:
    """What ``--write-config`` adds to the cluster entry; ``prepare`` before serving, ``write`` once ready."""

    path: Path
    issuer: dict[str, Any] | None  # None: the file already has an `internal` issuer (kept)

    @classmethod
    def prepare(cls, path: Path, now: dt.datetime) -> ReadyInventory:
        """Check the file and create the CA files if needed, before the simulator serves: a problem
        (not a mapping, half a CA) is a ValueError naming the file, and nothing is written."""
        issuers = read_inventory(path).get("issuers")
        if isinstance(issuers, dict) and ISSUER in issuers:
            return cls(path, None)
        cert, key = ensure_ca(path.parent / CA_DIR, now)
        return cls(path, {"type": "internal_ca", "ca_cert": f"{CA_DIR}/{cert.name}",
                          "ca_key_file": f"{CA_DIR}/{key.name}"})

    def write(self, name: str, entry: dict[str, Any], password: str | None) -> str:
        """Write cluster ``name``; returns the line to print."""
        entry = {**entry, "issuer": ISSUER}
        if "password_file" in entry and password and os.environ.get(PASSWORD_ENV) == password:
            # the workers get the same variable: nothing to share but its name
            entry = dict(("password_env", PASSWORD_ENV) if key == "password_file" else (key, value)
                         for key, value in entry.items())
        write_inventory(self.path, name, entry, {ISSUER: self.issuer} if self.issuer else None)
        issuer = (f"issuer {ISSUER}: internal CA {self.issuer['ca_cert']}" if self.issuer
                  else f"issuer {ISSUER}: kept as the file had it")
        return (f"Wrote cluster {name!r} to {self.path} ({issuer}); try: "
                f"rotation rotate {name} proxy --dry-run -c {self.path}")


def ensure_ca(directory: Path, now: dt.datetime) -> tuple[Path, Path]:
    """``ca.pem`` + ``ca-key.pem`` in ``directory``: both reused, or both created (key 0600, never
    through a symlink); one without the other is a ValueError (which key signs, which CA?)."""
    cert_path, key_path = directory / "ca.pem", directory / "ca-key.pem"
    present = [path for path in (cert_path, key_path) if path.exists()]
    if len(present) == 2:
        return cert_path, key_path
    if present:
        missing = key_path if present[0] == cert_path else cert_path
        raise ValueError(f"{present[0]} exists but {missing} is missing: "
                         "restore it, or remove both to create a new internal CA")
    ca = CertificateAuthority.create(CA_LABEL, now - CLOCK_SKEW, now + CA_VALIDITY)
    directory.mkdir(parents=True, exist_ok=True)
    _write_new(key_path, _key_pem(ca.key), 0o600)
    _write_new(cert_path, ca.pem, 0o644)
    return cert_path, key_path


def _write_new(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), mode)  # the umask does not widen or narrow it
        handle.write(text)


__all__ = ["PASSWORD_ENV", "ReadyInventory", "ensure_ca", "read_inventory", "write_inventory"]
