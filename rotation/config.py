"""The inventory: one YAML file listing issuers and clusters.

This module is the only reader of the inventory file and of the environment variables and
secret files it names. Secrets never sit in the file in clear: ``password_env`` /
``password_file``, ``ca_key_file`` (+ ``ca_key_password_env``), ``eab_hmac_key_env``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from rotation.durations import RenewBefore, parse_duration
from rotation.errors import ConfigError
from rotation.model import CertName, CertRequest, KeyType

CONFIG_ENV = "ROTATION_CONFIG"
STATE_DIR_ENV = "ROTATION_STATE_DIR"
DEFAULT_CONFIG = Path("rotation.yaml")


def local_state_dir() -> Path:
    """Where the local (non-Redis) history and locks live."""
    return Path(os.environ.get(STATE_DIR_ENV) or ".rotation")

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Renewal = Annotated[RenewBefore, BeforeValidator(RenewBefore.parse)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class SecretSource(_Strict):
    """Where a secret comes from: an environment variable or a file (never the YAML itself)."""

    env: str | None = None
    file: Path | None = None

    def read(self, where: str) -> str:
        if self.env:
            value = os.environ.get(self.env)
            if value is None:
                raise ConfigError(f"{where}: environment variable {self.env} is not set")
            return value
        if self.file:
            try:
                return self.file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"{where}: cannot read {self.file}: {exc.strerror}") from None
        raise ConfigError(f"{where}: no secret configured")


def _secret(env: str | None, file: Path | None) -> SecretSource | None:
    return SecretSource(env=env, file=file) if (env or file) else None


class InternalCASettings(_Strict):
    type: Literal["internal_ca"]
    ca_cert: Path
    ca_key_file: Path
    ca_key_password_env: str | None = None
    ca_key_password_file: Path | None = None
    validity: Duration = timedelta(days=90)
    key_type: KeyType = KeyType.ECDSA_P256

    def factory_kwargs(self, where: str) -> dict[str, Any]:
        source = _secret(self.ca_key_password_env, self.ca_key_password_file)
        return {
            "ca_cert": self.ca_cert,
            "ca_key_file": self.ca_key_file,
            "ca_key_password": source.read(f"{where}.ca_key_password").encode() if source else None,
            "validity": self.validity,
            "key_type": self.key_type,
        }


class FilesSettings(_Strict):
    """Bring your own certificate: files renewed by another PKI process."""

    type: Literal["files"]
    cert_file: Path
    key_file: Path
    key_password_env: str | None = None
    key_password_file: Path | None = None
    ca_bundle: Path | None = None
    key_type: KeyType = KeyType.ECDSA_P256

    def factory_kwargs(self, where: str) -> dict[str, Any]:
        source = _secret(self.key_password_env, self.key_password_file)
        return {
            "cert_file": self.cert_file,
            "key_file": self.key_file,
            "key_password": source.read(f"{where}.key_password").encode() if source else None,
            "ca_bundle": self.ca_bundle,
        }


IssuerSettings = Annotated[InternalCASettings | FilesSettings, Field(discriminator="type")]


class CertificateSettings(_Strict):
    """Per-certificate overrides; anything unset comes from the cluster or the top level."""

    issuer: str | None = None
    key_type: KeyType | None = None
    renew_before: Renewal | None = None
    hosts: tuple[str, ...] | None = None


class Ports(_Strict):
    cm: int | None = None  # default: the cluster object's cm_port (8443)
    api: int | None = None  # default: the port of ``url``
    metrics_exporter: int = 8070


class ClusterSettings(_Strict):
    url: str
    username: str
    password_env: str | None = None
    password_file: Path | None = None
    verify: bool | Path | tuple[Path, ...] = True
    tls_server_name: str | None = None
    fqdn: str
    issuer: str | None = None
    renew_before: Renewal | None = None
    key_type: KeyType | None = None
    private_endpoints: bool = False
    node_address: Literal["addr", "external_addr"] = "addr"
    ports: Ports = Ports()
    concurrency: int = Field(default=16, ge=1, le=512)
    handshake_timeout: Duration = timedelta(seconds=5)
    request_timeout: Duration = timedelta(seconds=60)
    verify_deadline: Duration = timedelta(seconds=90)
    confirm: bool = False
    certificates: dict[CertName, CertificateSettings] = Field(
        default_factory=lambda: {name: CertificateSettings() for name in CertName}
    )

    @field_validator("url")
    @classmethod
    def _https_url(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("must be an https:// URL (the RS REST API, usually port 9443)")
        return value.rstrip("/")

    @field_validator("certificates", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (v if v is not None else {}) for k, v in value.items()}
        if isinstance(value, list):  # `certificates: [cm, api]` is accepted too
            return {k: {} for k in value}
        return value

    @model_validator(mode="after")
    def _one_password_source(self) -> ClusterSettings:
        if bool(self.password_env) == bool(self.password_file):
            raise ValueError("set exactly one of password_env or password_file")
        return self

    # --- derived values ----------------------------------------------------------------
    def password(self, cluster: str) -> str:
        source = _secret(self.password_env, self.password_file)
        assert source is not None
        return source.read(f"clusters.{cluster}.password")

    @property
    def verify_paths(self) -> tuple[Path, ...]:
        if isinstance(self.verify, bool):
            return ()
        return self.verify if isinstance(self.verify, tuple) else (self.verify,)

    def default_hosts(self) -> tuple[str, ...]:
        hosts = [self.fqdn, f"*.{self.fqdn}"]
        if self.private_endpoints:
            hosts += [f"internal.{self.fqdn}", f"*.internal.{self.fqdn}"]
        return tuple(hosts)


class Inventory(_Strict):
    renew_before: Renewal = RenewBefore(absolute=timedelta(days=30))
    issuers: dict[str, IssuerSettings] = Field(default_factory=dict)
    clusters: dict[str, ClusterSettings] = Field(default_factory=dict)
    source: Path | None = Field(default=None, exclude=True)

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
                 "account_key_file"}
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
