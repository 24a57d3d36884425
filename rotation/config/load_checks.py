"""What the loader checks beyond the model: the files and variables the inventory names.

Found at load, in the ``file: field: problem`` form, rather than the first time a rotation needs them:

- **Errors** (the inventory does not load): a file every process reads is missing, a directory, or
  unreadable: CA certificates and keys, bundles, the ``verify`` bundle, a files issuer's pair.
- **Warnings** (logged once per load, one line each): a secret that only some processes hold is
  missing: a ``*_env`` variable that is not set, a secret file (password, TSIG, EAB, chat secrets).
  docker-compose gives cluster passwords and secret files to the workers only, so beat and the
  webhook load the same inventory without them; whatever uses the secret still refuses it, with the
  same ``file: field:`` prefix.

Files the tool writes itself (an ACME account key, the ``rest_client`` certificate files) may be
missing until it does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Read by every process that loads the inventory (or by the first rotation): must exist at load.
REQUIRED_FILES = frozenset({"ca_cert", "ca_key_file", "cert_file", "key_file", "ca_bundle", "verify", "trust_roots"})
# Secrets, often mounted only where they are used: a warning at load.
SECRET_FILES = frozenset({"password_file", "ca_key_password_file", "key_password_file", "eab_hmac_key_file",
                          "tsig_secret_file", "signing_secret_file", "token_file", "secret_file", "url_file"})
SECRET_VARIABLES = frozenset({"password_env", "ca_key_password_env", "key_password_env", "eab_hmac_key_env",
                              "url_env", "signing_secret_env", "token_env", "secret_env", "client_cert_env",
                              "client_key_env", "tsig_secret_env"})


def _named(data: Any, where: str = "") -> Iterator[tuple[str, str, str]]:
    """(field path, key, value) of every string (or string in a list) in the inventory's mappings."""
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{where}.{key}" if where else str(key)
            if isinstance(value, str):
                yield path, str(key), value
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                for index, item in enumerate(value):
                    yield f"{path}.{index}", str(key), item
            else:
                yield from _named(value, path)


def _file_problem(value: str) -> str | None:
    path = Path(value)
    try:
        if not path.exists():
            return f"file not found ({value})"
        if path.is_dir():
            return f"is a directory, expected a file ({value})"
        if not path.is_file():  # a FIFO nobody writes to would stop every reader; a device never ends
            return f"not a regular file: a FIFO, socket or device ({value})"
        if not os.access(path, os.R_OK):
            return f"file not readable by this user, uid {os.getuid()} ({value})"
    except (OSError, ValueError) as exc:  # a name too long, a loop of links
        return f"cannot be read ({getattr(exc, 'strerror', None) or exc}) ({value[:200]})"
    return None


_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def variable_name_problems(data: dict[str, Any], config_path: Path) -> list[str]:
    """Errors for ``*_env`` values that are no environment variable name: most likely the secret itself,
    which every later message ("environment variable X is not set") would repeat. Never shows the value."""
    return [f"{config_path}: {where}: not an environment variable name (letters, digits and '_'); the secret "
            "itself goes into the environment, never into the inventory"
            for where, key, value in _named(data)
            if key in SECRET_VARIABLES and value and not _VARIABLE.fullmatch(value)]


def load_problems(data: dict[str, Any], config_path: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) about the files and variables ``data`` (paths already resolved) names."""
    errors: list[str] = []
    warnings: list[str] = []
    for where, key, value in _named(data):
        if key in REQUIRED_FILES or key in SECRET_FILES:
            problem = _file_problem(value)
            if problem:
                (errors if key in REQUIRED_FILES else warnings).append(f"{config_path}: {where}: {problem}")
        elif key in SECRET_VARIABLES and value and _VARIABLE.fullmatch(value) and os.environ.get(value) is None:
            warnings.append(f"{config_path}: {where}: environment variable {value} is not set "
                            "(only a process that uses it needs it)")
    return errors, warnings


__all__ = ["REQUIRED_FILES", "SECRET_FILES", "SECRET_VARIABLES", "load_problems", "variable_name_problems"]
