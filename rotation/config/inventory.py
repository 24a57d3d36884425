"""The inventory: one YAML file listing issuers, clusters and chat-ops access.

This package is the only reader of the inventory file and of the environment variables and
secret files it names. Secrets never sit in the file in clear: ``password_env`` /
``password_file``, ``ca_key_file`` (+ ``ca_key_password_env``), ``eab_hmac_key_env``.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from rotation.config._base import Renewal, _Strict
from rotation.config.chatops import ChatOpsSettings
from rotation.config.clusters import ClusterSettings
from rotation.config.issuers import IssuerSettings
from rotation.durations import RenewBefore
from rotation.errors import ConfigError
from rotation.model import CertName, CertRequest, KeyType

CONFIG_ENV = "ROTATION_CONFIG"
DEFAULT_CONFIG = Path("rotation.yaml")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # used in Redis keys and metric labels



class Inventory(_Strict):
    renew_before: Renewal = RenewBefore(absolute=timedelta(days=30))
    issuers: dict[str, IssuerSettings] = Field(default_factory=dict)
    clusters: dict[str, ClusterSettings] = Field(default_factory=dict)
    chatops: ChatOpsSettings = ChatOpsSettings()
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("clusters", "issuers")
    @classmethod
    def _plain_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not _NAME.fullmatch(name):
                raise ValueError(f"{name!r}: names may use letters, digits, '.', '_' and '-' only")
        return value

    @model_validator(mode="after")
    def _chatops_clusters_exist(self) -> Inventory:
        for index, grant in enumerate(self.chatops.allow):
            unknown = sorted(set(grant.clusters) - set(self.clusters) - {"*"})
            if unknown:
                raise ValueError(f"chatops.allow.{index}.clusters: unknown cluster(s) {', '.join(unknown)}")
        return self

    @model_validator(mode="after")
    def _issuers_exist(self) -> Inventory:
        for name, cluster in self.clusters.items():
            for cert_name, cert in cluster.certificates.items():
                issuer = cert.issuer or cluster.issuer
                where = f"clusters.{name}.certificates.{cert_name}.issuer" if cert.issuer else (
                    f"clusters.{name}.issuer"
                )
                if issuer is not None and issuer not in self.issuers:
                    known = ", ".join(sorted(self.issuers)) or "none defined"
                    raise ValueError(f"{where}: unknown issuer {issuer!r} (issuers: {known})")
        return self

    def cluster(self, name: str) -> ClusterSettings:
        try:
            return self.clusters[name]
        except KeyError:
            known = ", ".join(sorted(self.clusters)) or "none"
            raise ConfigError(f"unknown cluster {name!r} (clusters in the inventory: {known})") from None

    def plan(self, cluster_name: str, cert_name: str | CertName) -> CertPlan:
        """Everything needed to renew one certificate, with overrides resolved."""
        cluster = self.cluster(cluster_name)
        try:
            name = CertName(cert_name)
        except ValueError:
            known = ", ".join(c.value for c in CertName)
            raise ConfigError(f"unknown certificate name {cert_name!r} (known: {known})") from None
        if name not in cluster.certificates:
            managed = ", ".join(str(c) for c in cluster.certificates) or "none"
            raise ConfigError(
                f"clusters.{cluster_name}: certificate {name} is not managed (managed: {managed})"
            )
        cert = cluster.certificates[name]
        issuer = cert.issuer or cluster.issuer or (next(iter(self.issuers)) if len(self.issuers) == 1 else None)
        return CertPlan(
            cluster=cluster_name,
            cert_name=name,
            issuer=issuer,
            key_type=cert.key_type or cluster.key_type,
            renew_before=cert.renew_before or cluster.renew_before or self.renew_before,
            hosts=cert.hosts or cluster.default_hosts(),
        )


@dataclass(frozen=True)
class CertPlan:
    cluster: str
    cert_name: CertName
    issuer: str | None
    key_type: KeyType | None
    renew_before: RenewBefore
    hosts: tuple[str, ...]

    def request(self, default_key_type: KeyType) -> CertRequest:
        return CertRequest(
            cluster=self.cluster,
            cert_name=self.cert_name,
            hosts=self.hosts,
            key_type=self.key_type or default_key_type,
        )


def _resolve_paths(data: Any, base: Path) -> Any:
    """Relative paths in the file are relative to the file, not to the working directory."""
    path_keys = {"ca_cert", "ca_key_file", "password_file", "ca_key_password_file", "cert_file",
                 "key_file", "key_password_file", "ca_bundle", "verify", "eab_hmac_key_file",
                 "account_key_file", "tsig_secret_file", "trust_roots",
                 "signing_secret_file", "token_file", "secret_file", "url_file"}
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if key in path_keys and isinstance(value, str):
                out[key] = str((base / value).resolve()) if not os.path.isabs(value) else value
            elif key in path_keys and isinstance(value, list):
                out[key] = [str((base / v).resolve()) if not os.path.isabs(v) else v for v in value]
            else:
                out[key] = _resolve_paths(value, base)
        return out
    return data


def _format_error(path: Path, exc: PydanticValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-"))
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {loc}: {message}" if loc else f"{path}: {message}")
    return "\n".join(lines)


def resolve_config_path(path: Path | str | None) -> Path:
    if path:
        return Path(path)
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else DEFAULT_CONFIG


def load_inventory(path: Path | str | None = None) -> Inventory:
    """Read and check the inventory. Every problem is a ConfigError naming the file and field."""
    config_path = resolve_config_path(path)
    try:
        text = config_path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"{config_path}: inventory file not found (pass --config or set {CONFIG_ENV})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{config_path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{config_path}:{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{config_path}: the inventory must be a mapping with issuers and clusters")
    data = _resolve_paths(data, config_path.resolve().parent)
    try:
        inventory = Inventory.model_validate(data)
    except PydanticValidationError as exc:
        raise ConfigError(_format_error(config_path, exc)) from None
    for name, cluster in inventory.clusters.items():
        if cluster.verify is False:
            warnings.warn(
                f"clusters.{name}.verify is false: TLS to the REST API of {name} is NOT verified; "
                "anyone on the path can read the admin password and the private keys",
                stacklevel=2,
            )
    return inventory.model_copy(update={"source": config_path})
