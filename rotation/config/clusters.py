"""Cluster sections of the inventory: REST API access, certificates, ports, TLS policy."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, field_validator, model_validator

from rotation.config._base import Duration, Renewal, _secret, _Strict
from rotation.config.login import RestClientSettings, login_problems, read_client_certificate
from rotation.core.errors import ConfigError
from rotation.core.model import CertName, ClientCertificate, KeyType
from rotation.core.targets import DATABASE_KEY
from rotation.core.topology import Layout, is_host


class CertificateSettings(_Strict):
    """Per-certificate overrides; anything unset comes from the cluster or the top level."""

    issuer: str | None = None
    key_type: KeyType | None = None
    renew_before: Renewal | None = None
    hosts: tuple[str, ...] | None = None

    @field_validator("hosts")
    @classmethod
    def _names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for host in value or ():
            if not is_host(host.removeprefix("*.")):
                raise ValueError(f"{host!r} is not a DNS name, a wildcard *.NAME or an IP address")
        return value


Port = Annotated[int, Field(ge=1, le=65535)]  # refused at load, not shown later as "unreachable"


class Ports(_Strict):
    cm: Port | None = None  # default: the cluster object's cm_port (8443)
    api: Port | None = None  # default: the cluster object's cnm_https_port, else the port of ``url``
    metrics_exporter: Port = 8070
    discovery: Port | None = 8001  # discovery service (Sentinel API) for `rotation policy audit`; null: skip


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
    """The TLS policy wanted for a cluster (any subset); see ``rotation.core.tls_rules`` for the rules."""

    min_control_tls: TLSVersionValue | None = None
    min_data_tls: TLSVersionValue | None = None
    min_sentinel_tls: TLSVersionValue | None = None
    sentinel_tls_mode: Literal["allowed", "disabled", "required"] | None = None
    control_cipher_suites: str | None = None
    data_cipher_list: str | None = None
    data_cipher_suites_tls_1_3: str | None = None


class ClusterSettings(_Strict):
    url: str
    username: str | None = None  # with password_env/_file; optional with a client certificate
    password_env: str | None = None
    password_file: Path | None = None
    # certificate login (RS 7.8.4+): instead of, or beside, username and password (config/login.py)
    client_cert_file: Path | None = None
    client_cert_env: str | None = None
    client_key_file: Path | None = None
    client_key_env: str | None = None
    basic_auth: bool | None = None  # `rotation policy apply` sets control_plane_basic_authentication (8.2+)
    rest_client: RestClientSettings | None = None  # the tool's own client certificate, managed
    databases: dict[str, CertificateSettings] = Field(default_factory=dict)  # own certificates, by name or uid
    # RS's client certificate towards LDAP servers: managed when present (`ldap_client: {}`), bulk PUT from 7.22.2
    ldap_client: CertificateSettings | None = None
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
    # OCSP stapling on and a new proxy certificate without OCSP URL: refuse the rotation, or turn
    # stapling off as part of it (rotation/usecases/rotate/ocsp.py)
    ocsp: Literal["refuse", "disable_when_missing"] = "refuse"
    # the full documented RS profile (both EKUs, CN = FQDN, keyEncipherment for RSA, the four SANs) refused
    # before push when missed; otherwise what is missing is a warning on the rotation (core/slot_rules.py)
    strict_profile: bool = False
    certificates: dict[CertName, CertificateSettings] = Field(
        default_factory=lambda: {name: CertificateSettings() for name in CertName}
    )

    @field_validator("url")
    @classmethod
    def _https_url(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("must be an https:// URL (the RS REST API, usually port 9443)")
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port outside 0-65535
        except ValueError:
            raise ValueError("the port must be a number from 1 to 65535") from None
        if not parts.hostname:
            raise ValueError("names no host (https://HOST:9443)")
        if not is_host(parts.hostname):  # dialled as it is written: an empty label fails deep in idna
            raise ValueError("names no usable host: a DNS name (letters, digits, '-', non-empty labels) or an "
                             "IP address")
        if parts.query or parts.fragment:  # the API paths are appended to the URL
            raise ValueError("must not have a query or fragment (https://HOST:9443)")
        if parts.port == 0:
            raise ValueError("the port must be a number from 1 to 65535")
        return value.rstrip("/")

    @field_validator("fqdn", "tls_server_name")
    @classmethod
    def _host_name(cls, value: str | None) -> str | None:
        if value is not None and not is_host(value):  # sent in SNI and put in SANs: idna refuses it there
            raise ValueError(f"{value!r} is not a DNS name (letters, digits, '-', non-empty labels)")
        return value

    @field_validator("certificates", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (v if v is not None else {}) for k, v in value.items()}
        if isinstance(value, list):  # `certificates: [cm, api]` is accepted too
            return {k: {} for k in value}
        return value

    @field_validator("databases", mode="before")
    @classmethod
    def _database_keys(cls, value: Any) -> Any:
        if isinstance(value, list):  # `databases: [orders, 7]`
            value = {str(k): {} for k in value}
        if isinstance(value, dict):
            value = {str(k): (v if v is not None else {}) for k, v in value.items()}
            bad = [k for k in value if not DATABASE_KEY.match(k)]
            if bad:
                raise ValueError(f"{bad[0]!r}: a database's name or uid (letters, digits, '.', '_', '-')")
        return value

    @model_validator(mode="after")
    def _login(self) -> ClusterSettings:
        problems = login_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # --- derived values ----------------------------------------------------------------
    def password(self, cluster: str) -> str:
        source = _secret(self.password_env, self.password_file)
        if source is None:
            raise ConfigError(f"{self.where(f'clusters.{cluster}')}: no password configured (certificate login only)")
        return source.read(self.where(f"clusters.{cluster}.password"))

    def basic_credentials(self, cluster: str) -> tuple[str, str] | None:
        """(username, password) for Basic, or None when the cluster logs in with a certificate only."""
        return (self.username, self.password(cluster)) if self.username else None

    def client_certificate(self, cluster: str) -> ClientCertificate | None:
        """The client certificate for certificate login, read now (the tool may have renewed it)."""
        return read_client_certificate(self, cluster)

    @property
    def verify_paths(self) -> tuple[Path, ...]:
        if isinstance(self.verify, bool):
            return ()
        return self.verify if isinstance(self.verify, tuple) else (self.verify,)

    @property
    def identity(self) -> str:
        """The cluster as locks know it: its REST API's ``host:port`` (one spelling of each), so two inventory
        names (or two inventories) for one cluster share one lock."""
        parts = urlsplit(self.url)
        host = (parts.hostname or "").lower().rstrip(".")  # `rs.example.com.` is `rs.example.com`
        try:  # one address, however it is written (`[0:0::1]`, `[::ffff:10.0.0.1]`)
            address = ipaddress.ip_address(host)
            host = str(getattr(address, "ipv4_mapped", None) or address)
        except ValueError:
            pass  # a DNS name
        host = f"[{host}]" if ":" in host else host
        return f"{host}:{parts.port or 443}"

    @property
    def layout(self) -> Layout:
        """Where this cluster's certificates are served, as far as the inventory says."""
        return Layout(fqdn=self.fqdn, url=self.url, cm_port=self.ports.cm, api_port=self.ports.api,
                      metrics_port=self.ports.metrics_exporter, discovery_port=self.ports.discovery,
                      node_address=self.node_address)

    @property
    def server_name(self) -> str:
        """The name the REST client verifies: ``tls_server_name``, else the URL's host."""
        return self.tls_server_name or urlsplit(self.url).hostname or ""

    def default_hosts(self) -> tuple[str, ...]:
        hosts = [self.fqdn, f"*.{self.fqdn}"]
        if self.private_endpoints or self.strict_profile:  # the documented profile has all four
            hosts += [f"internal.{self.fqdn}", f"*.internal.{self.fqdn}"]
        return tuple(hosts)


