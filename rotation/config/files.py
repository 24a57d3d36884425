"""Reading the files the inventory names (CA certificates, bundles, keys): one error per file, naming it."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from rotation.core import certs
from rotation.core.errors import CertificateError, ConfigError


def read_file(path: Path, *, what: str) -> bytes:
    """The bytes of a file the inventory (or an option) names; ConfigError naming it otherwise."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: {what} is a directory, expected a file") from None
    except PermissionError:
        raise ConfigError(f"{path}: {what} file is not readable (permission denied)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} file ({exc.strerror})") from None


def read_certificates(path: Path, *, what: str) -> list[x509.Certificate]:
    """The certificates of a PEM file; ConfigError naming the file when it cannot be read or parsed."""
    try:
        return certs.load_certificates(read_file(path, what=what), where=str(path))
    except CertificateError as exc:
        raise ConfigError(exc.message) from exc


__all__ = ["read_certificates", "read_file"]
