"""Reading the files the inventory names (CA certificates, bundles, keys): one error per file, naming it."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from cryptography import x509

from rotation.core import certs
from rotation.core.errors import CertificateError, ConfigError


def read_regular(path: Path, limit: int = -1) -> bytes:
    """The bytes of ``path`` (at most ``limit`` of them unless it is negative), refused (OSError, its
    ``strerror`` saying why) unless it is a regular file: reading a FIFO nobody writes to would wait
    forever, and a device such as /dev/zero never ends. Opened without blocking, checked, then read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, socket or device)", str(path))
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as file:
            fd = -1  # the file object closes it
            return file.read(limit)
    finally:
        if fd >= 0:
            os.close(fd)


def read_file(path: Path, *, what: str) -> bytes:
    """The bytes of a file the inventory (or an option) names; ConfigError naming it otherwise."""
    try:
        return read_regular(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: {what} is a directory, expected a file") from None
    except PermissionError:
        raise ConfigError(f"{path}: {what} file is not readable (permission denied)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} file ({exc.strerror})") from None


def read_secret_text(path: Path, where: str) -> str:
    """A secret kept in a file (a password, the service key) as stripped text; a ConfigError starting with
    ``where`` when it cannot be read or is not UTF-8 (naming the position only, never the bytes)."""
    try:
        return read_regular(path).decode("utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path} ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: {path} is not UTF-8 text (byte {exc.start})") from None


def read_certificates(path: Path, *, what: str) -> list[x509.Certificate]:
    """The certificates of a PEM file; ConfigError naming the file when it cannot be read or parsed."""
    try:
        return certs.load_certificates(read_file(path, what=what), where=str(path))
    except CertificateError as exc:
        raise ConfigError(exc.message) from exc


__all__ = ["read_certificates", "read_file", "read_regular", "read_secret_text"]
