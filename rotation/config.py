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


@dataclass(frozen=True)
class ServiceSettings:
    """Settings of the running service, from the environment (12-factor; same names in compose)."""

    redis_url: str = "redis://localhost:6379/0"
    store: str = "redis"  # "redis" (the service) or "local" (JSON lines + flock, one host, no queue)
    scan_interval: timedelta = timedelta(hours=1)
    rotation_jitter: timedelta = timedelta(seconds=60)
    backoff_base: timedelta = timedelta(minutes=5)
    backoff_max: timedelta = timedelta(hours=6)
    lock_lease: timedelta = timedelta(seconds=30)
    task_time_limit: timedelta = timedelta(minutes=15)
    # Unacked tasks of a dead worker are redelivered after this; must exceed task_time_limit.
    visibility_timeout: timedelta = timedelta(minutes=20)
    notify_url: str | None = None
    policy_audit_hour: int = 3

    @classmethod
    def from_env(cls) -> ServiceSettings:
        env = os.environ

        def duration(name: str, default: timedelta) -> timedelta:
            raw = env.get(name)
            if not raw:
                return default
            try:
                return parse_duration(raw)
            except ValueError as exc:
                raise ConfigError(f"{name}: {exc}") from None

        store = env.get("ROTATION_STORE", "redis")
        if store not in ("redis", "local"):
            raise ConfigError(f"ROTATION_STORE: {store!r} is not one of redis, local")
        try:
            audit_hour = int(env.get("ROTATION_POLICY_AUDIT_HOUR", "3"))
        except ValueError:
            raise ConfigError("ROTATION_POLICY_AUDIT_HOUR: not an hour (0-23)") from None
        return cls(
            redis_url=env.get("ROTATION_REDIS_URL", cls.redis_url),
            store=store,
            scan_interval=duration("ROTATION_SCAN_INTERVAL", cls.scan_interval),
            rotation_jitter=duration("ROTATION_JITTER", cls.rotation_jitter),
            backoff_base=duration("ROTATION_BACKOFF_BASE", cls.backoff_base),
            backoff_max=duration("ROTATION_BACKOFF_MAX", cls.backoff_max),
            lock_lease=duration("ROTATION_LOCK_LEASE", cls.lock_lease),
            task_time_limit=duration("ROTATION_TASK_TIME_LIMIT", cls.task_time_limit),
            visibility_timeout=duration("ROTATION_VISIBILITY_TIMEOUT", cls.visibility_timeout),
            notify_url=env.get("ROTATION_NOTIFY_URL") or None,
            policy_audit_hour=audit_hour,
        )

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


class AcmeDNSSettings(_Strict):
    """DNS-01: where TXT records are published (RFC 2136 + TSIG today; more providers plug in)."""

    provider: str = "rfc2136"
    server: str  # "host", "host:port" or "[v6]:port": receives the dynamic updates
    zone: str | None = None  # default: found by asking ``server`` for the SOA
    tsig_key_name: str | None = None
    tsig_algorithm: str = "hmac-sha256"
    tsig_secret_env: str | None = None
    tsig_secret_file: Path | None = None
    propagation_servers: tuple[str, ...] | None = None  # default: the zone's NS
    propagation_timeout: Duration = timedelta(seconds=120)

    def provider_kwargs(self, where: str) -> dict[str, Any]:
        source = _secret(self.tsig_secret_env, self.tsig_secret_file)
        if self.tsig_key_name and source is None:
            raise ConfigError(f"{where}: tsig_key_name is set but neither tsig_secret_env nor tsig_secret_file")
        return {
            "provider": self.provider,
            "server": self.server,
            "zone": self.zone,
            "tsig_key_name": self.tsig_key_name,
            "tsig_algorithm": self.tsig_algorithm,
            "tsig_secret": source.read(f"{where}.tsig_secret") if source else None,
            "propagation_servers": self.propagation_servers,
        }


class AcmeHTTP01Settings(_Strict):
    """HTTP-01: the standalone responder the service runs while an order is open."""

    address: str = "0.0.0.0"
    port: int = Field(default=80, ge=1, le=65535)


class AcmeSettings(_Strict):
    """Any ACME CA: Let's Encrypt, ZeroSSL, Google Trust Services, step-ca, Vault, EJBCA..."""

    type: Literal["acme"]
    directory: str
    email: str | None = None
    eab_kid: str | None = None
    eab_hmac_key_env: str | None = None
    eab_hmac_key_file: Path | None = None
    eab_hmac_alg: Literal["HS256", "HS384", "HS512"] = "HS256"
    key_type: KeyType = KeyType.ECDSA_P256
    challenge: Literal["dns-01", "http-01"] = "dns-01"
    profile: str | None = None
    ca_bundle: Path | None = None  # trust for the directory's own HTTPS (private CAs)
    trust_roots: Path | None = None  # roots issued chains lead to (validation + the REST client)
    dns: AcmeDNSSettings | None = None
    http01: AcmeHTTP01Settings = AcmeHTTP01Settings()
    order_timeout: Duration = timedelta(seconds=180)

    @field_validator("directory")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be the URL of the ACME directory (https://.../directory)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AcmeSettings:
        if self.challenge == "dns-01" and self.dns is None:
            raise ValueError("challenge dns-01 needs a dns: section (provider, server, tsig_key_name...)")
        has_hmac = bool(self.eab_hmac_key_env or self.eab_hmac_key_file)
        if bool(self.eab_kid) != has_hmac:
            raise ValueError("external account binding needs both eab_kid and eab_hmac_key_env/eab_hmac_key_file")
        return self

    def factory_kwargs(self, where: str) -> dict[str, Any]:
        eab = _secret(self.eab_hmac_key_env, self.eab_hmac_key_file)
        return {
            "directory": self.directory,
            "email": self.email,
            "eab_kid": self.eab_kid,
            "eab_hmac_key": eab.read(f"{where}.eab_hmac_key") if eab else None,
            "eab_hmac_alg": self.eab_hmac_alg,
            "key_type": self.key_type,
            "challenge": self.challenge,
            "profile": self.profile,
            "ca_bundle": self.ca_bundle,
            "trust_roots": self.trust_roots,
            "dns": self.dns.provider_kwargs(f"{where}.dns") if self.dns else None,
            "propagation_timeout": self.dns.propagation_timeout.total_seconds() if self.dns else 120.0,
            "http01_address": self.http01.address,
            "http01_port": self.http01.port,
            "order_timeout": self.order_timeout,
        }


IssuerSettings = Annotated[InternalCASettings | FilesSettings | AcmeSettings, Field(discriminator="type")]


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
    discovery: int | None = 8001  # discovery service (Sentinel API) for `rotation policy audit`; null: skip


def _tls_version(value: Any) -> Any:
    """YAML reads ``1.2`` as a float and people write ``1.0`` or ``TLSv1.2``: normalise to RS's spelling."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        value = f"{value:g}"
    if isinstance(value, str):
        text = value.strip().lower().removeprefix("tlsv").removeprefix("tls")
        return "1" if text in ("1", "1.0") else text
    return value


TLSVersionValue = Annotated[Literal["1", "1.1", "1.2", "1.3"], BeforeValidator(_tls_version)]


class TLSPolicySettings(_Strict):
    """The TLS policy wanted for a cluster (any subset); see ``rotation.tls_policy`` for the rules."""

    min_control_tls: TLSVersionValue | None = None
    min_data_tls: TLSVersionValue | None = None
    min_sentinel_tls: TLSVersionValue | None = None
    sentinel_tls_mode: Literal["allowed", "disabled", "required"] | None = None
    control_cipher_suites: str | None = None
    data_cipher_list: str | None = None
    data_cipher_suites_tls_1_3: str | None = None


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
    tls_policy: TLSPolicySettings | None = None
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


# --- chat-ops (the webhook) -------------------------------------------------------------------
ChatPermission = Literal["read", "rotate"]


class ChatOpsGrant(_Strict):
    """One allow-list entry: an immutable chat user id (never a display name), optionally pinned
    to a team/workspace, a channel and a platform, with permissions per cluster (``*``: any)."""

    user: str = Field(min_length=1)
    team: str | None = None
    channel: str | None = None
    platform: Literal["slack", "mattermost", "generic"] | None = None
    clusters: dict[str, tuple[ChatPermission, ...]]


def _exactly_one(env: str | None, file: Path | None, name: str) -> SecretSource:
    if bool(env) == bool(file):
        raise ValueError(f"set exactly one of {name}_env or {name}_file")
    return SecretSource(env=env, file=file)


class SlackSettings(_Strict):
    signing_secret_env: str | None = None
    signing_secret_file: Path | None = None
    team_id: str | None = None  # pin the workspace: requests from another one are refused
    api_app_id: str | None = None  # pin the app

    @model_validator(mode="after")
    def _one_source(self) -> SlackSettings:
        _exactly_one(self.signing_secret_env, self.signing_secret_file, "signing_secret")
        return self

    def signing_secret(self) -> str:
        source = _exactly_one(self.signing_secret_env, self.signing_secret_file, "signing_secret")
        return source.read("chatops.slack.signing_secret")


class MattermostSettings(_Strict):
    token_env: str | None = None
    token_file: Path | None = None
    team_id: str | None = None  # pin the team

    @model_validator(mode="after")
    def _one_source(self) -> MattermostSettings:
        _exactly_one(self.token_env, self.token_file, "token")
        return self

    def token(self) -> str:
        return _exactly_one(self.token_env, self.token_file, "token").read("chatops.mattermost.token")


class GenericSettings(_Strict):
    secret_env: str | None = None
    secret_file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> GenericSettings:
        _exactly_one(self.secret_env, self.secret_file, "secret")
        return self

    def secret(self) -> str:
        return _exactly_one(self.secret_env, self.secret_file, "secret").read("chatops.generic.secret")


class NotifySettings(_Strict):
    """The notification webhook (Slack/Mattermost incoming webhook or any JSON receiver).
    The URL is usually a secret itself: prefer url_env or url_file to url."""

    url_env: str | None = None
    url_file: Path | None = None
    url: str | None = None

    def resolve(self) -> str | None:
        if self.url:
            return self.url
        source = _secret(self.url_env, self.url_file)
        return source.read("chatops.notify.url") if source else None


class ChatOpsSettings(_Strict):
    allow: tuple[ChatOpsGrant, ...] = ()
    slack: SlackSettings | None = None
    mattermost: MattermostSettings | None = None
    generic: GenericSettings | None = None
    notify: NotifySettings | None = None
    confirm_ttl: Duration = timedelta(minutes=5)
    # Where progress and results may be posted back (a response_url elsewhere is not used).
    reply_url_prefixes: tuple[str, ...] = ("https://hooks.slack.com/",)

    def notify_url(self) -> str | None:
        return self.notify.resolve() if self.notify else None


class Inventory(_Strict):
    renew_before: Renewal = RenewBefore(absolute=timedelta(days=30))
    issuers: dict[str, IssuerSettings] = Field(default_factory=dict)
    clusters: dict[str, ClusterSettings] = Field(default_factory=dict)
    chatops: ChatOpsSettings = ChatOpsSettings()
    source: Path | None = Field(default=None, exclude=True)

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
