"""Building blocks of the inventory models: strict models, durations, secret sources."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PrivateAttr

from rotation.config.files import read_secret_text
from rotation.core.durations import RenewBefore, parse_duration
from rotation.core.errors import ConfigError


def _positive_duration(value: Any) -> timedelta:
    """A timeout, deadline or lifetime: zero or less would make every call time out (or every
    certificate expire at once) far from the field that caused it, so it is refused here."""
    duration = parse_duration(value)  # anything else: its ValueError names the accepted forms
    if duration <= timedelta(0):
        raise ValueError(f"{value!r}: must be longer than zero (e.g. 30s, 5m)")
    return duration


Duration = Annotated[timedelta, BeforeValidator(_positive_duration)]
Renewal = Annotated[RenewBefore, BeforeValidator(RenewBefore.parse)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    _source: Path | None = PrivateAttr(default=None)  # the inventory file this came from, for messages

    def located_in(self, source: Path) -> None:
        """Remember the inventory file, here and in every section inside (their secrets name it)."""
        self._source = source
        for value in self.__dict__.values():
            for part in value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple) \
                    else (value,):
                if isinstance(part, _Strict):
                    part.located_in(source)

    def where(self, field: str) -> str:
        """``field`` as messages name it: ``rotation.yaml: clusters.east.password``."""
        return f"{self._source}: {field}" if self._source else field


class SecretSource(_Strict):
    """Where a secret comes from: an environment variable or a file (never the YAML itself)."""

    env: str | None = None
    file: Path | None = None

    def read(self, where: str) -> str:
        """The secret; a ConfigError naming the variable or file when it is unset, unreadable or empty
        (an empty secret is no secret: an HMAC keyed with it is anyone's to compute)."""
        if self.env:
            value = os.environ.get(self.env)
            if value is None:
                raise ConfigError(f"{where}: environment variable {self.env} is not set")
        elif self.file:
            value = read_secret_text(self.file, where)
        else:
            raise ConfigError(f"{where}: no secret configured")
        if not value.strip():
            raise ConfigError(f"{where}: {self.describe()} is empty")
        return value

    def describe(self) -> str:
        """Where the secret comes from, for messages (never the value)."""
        return f"environment variable {self.env}" if self.env else f"file {self.file}"


def _secret(env: str | None, file: Path | None) -> SecretSource | None:
    return SecretSource(env=env, file=file) if (env or file) else None



def _exactly_one(env: str | None, file: Path | None, name: str) -> SecretSource:
    if bool(env) == bool(file):
        raise ValueError(f"set exactly one of {name}_env or {name}_file")
    return SecretSource(env=env, file=file)


