"""Secrets at rest: previous certificate keys (for rollback) and ACME account keys.

Everything stored goes through ``SecretBox`` (Fernet: AES-128-CBC + HMAC-SHA256) with a key
from the environment (``ROTATION_SECRET_KEY``, or a key file: read by ``rotation.config``). Stores only ever see
ciphertext; a wrong or missing key is a clear ConfigError, never a silent plaintext fallback.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Protocol

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from rotation.config.service import SECRET_KEY_ENV, secret_key_setting, secret_key_text
from rotation.core.errors import ConfigError


class SecretBox:
    """Encrypt/decrypt with one or more Fernet keys (the first encrypts; all decrypt: key rotation)."""

    def __init__(self, keys: list[bytes], *, setting: str = SECRET_KEY_ENV) -> None:
        """``setting``: where the keys came from, for messages (never the keys themselves)."""
        if not keys:
            raise ConfigError(f"no encryption key: set {SECRET_KEY_ENV} (generate one with `rotation secret-key`)")
        try:
            self._current = Fernet(keys[0])
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except (ValueError, TypeError):
            raise ConfigError(
                f"{setting}: not a Fernet key (32 url-safe base64 bytes; `rotation secret-key` makes one)"
            ) from None

    @classmethod
    def configured(cls, *, state_dir: Path | None = None) -> SecretBox:
        """The keys the environment names (``rotation.config.service.secret_key_text``); failing that,
        a key file generated once in ``state_dir`` (0600) for single-host use."""
        raw, setting = secret_key_text(), secret_key_setting()
        if not raw and state_dir is not None:
            raw, setting = _local_key(state_dir), str(state_dir / "secret.key")
        return cls([k.strip().encode() for k in (raw or "").split(",") if k.strip()], setting=setting)

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, plaintext: bytes) -> bytes:
        return self._fernet.encrypt(plaintext)

    def decrypt(self, token: bytes, *, what: str = "secret") -> bytes:
        try:
            return self._fernet.decrypt(token)
        except InvalidToken:
            raise ConfigError(
                f"{what}: cannot decrypt with {SECRET_KEY_ENV} (key changed? add the old key after a comma)"
            ) from None

    def unseal(self, token: bytes, *, what: str = "secret") -> tuple[bytes, bytes | None]:
        """The plaintext, and ``token`` sealed again with the first key when an older one sealed it (else
        None): stores write that back, so every secret read after a key rotation leaves the old key."""
        try:
            return self._current.decrypt(token), None
        except InvalidToken:
            plaintext = self.decrypt(token, what=what)
            return plaintext, self._current.encrypt(plaintext)


def _local_key(state_dir: Path) -> str:
    path = state_dir / "secret.key"
    if path.exists():
        return _read_local_key(path)
    state_dir.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode()
    # Written whole to a file of this process, then linked in place: another process (or a later run, after a
    # write that failed) never finds the key file empty, and a failed write leaves no file behind.
    tmp = path.with_name(f".secret.key.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, path)
    except FileExistsError:  # another process made it first: theirs is the key
        return _read_local_key(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the generated encryption key ({exc.strerror or exc}); "
                          f"set {SECRET_KEY_ENV} instead") from None
    finally:
        tmp.unlink(missing_ok=True)
    return key


def _read_local_key(path: Path) -> str:
    key = path.read_text().strip()
    if not key:  # written by an older version that died half-way: say which file, not "set the variable"
        raise ConfigError(f"{path}: the generated encryption key is empty (remove it to generate another, "
                          f"or set {SECRET_KEY_ENV})")
    return key


class SecretStore(Protocol):
    """Key/value storage of encrypted blobs. Values passed in are plaintext; stored ciphertext."""

    def put(self, key: str, value: bytes, *, ttl_seconds: int | None = None) -> None: ...

    def get(self, key: str) -> bytes | None: ...

    def delete(self, key: str) -> None: ...


def _file_name(key: str) -> str:
    digest = hashlib.sha256(key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=") + ".enc"


class LocalSecretStore:
    """Encrypted files under ``<dir>/secrets`` (0600): for the CLI and single-host use."""

    def __init__(self, directory: Path, box: SecretBox) -> None:
        self.directory = directory / "secrets"
        self.box = box

    def put(self, key: str, value: bytes, *, ttl_seconds: int | None = None) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / _file_name(key)
        # A temporary file of this write alone (mkstemp: 0600, never an existing file): a worker's threads
        # writing at once never truncate or rename each other's; a crash leaves the old value or the new one.
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{path.stem}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(self.box.encrypt(value))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def get(self, key: str) -> bytes | None:
        path = self.directory / _file_name(key)
        if not path.exists():
            return None
        token = path.read_bytes()
        plaintext, resealed = self.box.unseal(token, what=f"secret {key!r}")
        if resealed is not None:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.reseal")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(resealed)
            if path.exists() and path.read_bytes() == token:  # not replaced by a put meanwhile
                os.replace(tmp, path)
            tmp.unlink(missing_ok=True)
        return plaintext

    def delete(self, key: str) -> None:
        (self.directory / _file_name(key)).unlink(missing_ok=True)
