"""How the tool logs in to a cluster's REST API: Basic credentials, a client certificate (RS
certificate login, 7.8.4+), or both; and the tool's own client certificate as a managed one.

``client_cert_file`` / ``client_key_file`` (or ``client_cert_env`` / ``client_key_env``: the PEM
itself in the variable) replace or join ``username`` and ``password_*``. ``rest_client`` makes
the certificate one the tool renews itself: it then writes the files the inventory points at,
so those two must be files it may replace (see README "Certificate login").
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pydantic import field_validator

from rotation.config._base import Renewal, SecretSource, _Strict
from rotation.config.files import read_file
from rotation.core import certs
from rotation.core.client_cert import subject_line_problem
from rotation.core.errors import CertificateError, ConfigError
from rotation.core.model import ClientCertificate, KeyType, SecretPEM


class RestClientSettings(_Strict):
    """The tool's own client certificate, renewed like the cluster's (``rotation rotate X rest_client``)."""

    issuer: str | None = None  # an internal_ca (or files) issuer whose CA the cluster's mtls_trusted_ca holds
    subject: str  # the certificate user's certificate_subject_line, byte for byte
    key_type: KeyType | None = None
    renew_before: Renewal | None = None
    # mtls_trusted_ca follows the client CA: a new CA is added first, the old one removed once the
    # new certificate logs in on every node (union first, never a bundle without the CA in use)
    manage_trusted_ca: bool = False

    @field_validator("subject")
    @classmethod
    def _rs_subject(cls, value: str) -> str:
        problem = subject_line_problem(value)
        if problem:
            raise ValueError(f"{value!r}: {problem}")
        return value


class ClusterSettings(Protocol):
    """The login fields of a cluster entry (``rotation.config.clusters.ClusterSettings``, which calls
    into this module, so it is described here rather than imported)."""

    username: str | None
    password_env: str | None
    password_file: Path | None
    client_cert_file: Path | None
    client_cert_env: str | None
    client_key_file: Path | None
    client_key_env: str | None
    basic_auth: bool | None
    rest_client: RestClientSettings | None

    def where(self, field: str) -> str: ...


def login_problems(cluster: ClusterSettings) -> list[str]:
    """What is wrong with how a cluster entry logs in (empty when usable)."""
    problems = []
    basic_sources = [cluster.password_env, cluster.password_file]
    if cluster.username and sum(map(bool, basic_sources)) != 1:
        problems.append("set exactly one of password_env or password_file with username")
    if not cluster.username and any(basic_sources):
        problems.append("password_env/password_file need a username")
    for part in ("cert", "key"):
        env, file = getattr(cluster, f"client_{part}_env"), getattr(cluster, f"client_{part}_file")
        if env and file:
            problems.append(f"set one of client_{part}_env or client_{part}_file, not both")
    has_cert = bool(cluster.client_cert_env or cluster.client_cert_file)
    has_key = bool(cluster.client_key_env or cluster.client_key_file)
    if has_cert != has_key:
        problems.append("a client certificate needs both its certificate (client_cert_*) and its key (client_key_*)")
    if not cluster.username and not has_cert:
        problems.append("set username and password_env/password_file, or client_cert_file and client_key_file "
                        "(certificate login), or both")
    if cluster.rest_client is not None and not (cluster.client_cert_file and cluster.client_key_file):
        problems.append("rest_client needs client_cert_file and client_key_file: the tool writes the renewed "
                        "certificate there")
    if cluster.basic_auth is False and not has_cert:
        problems.append("basic_auth: false needs certificate login (client_cert_file and client_key_file): "
                        "with Basic off nothing else logs in")
    return problems


def _pem(env: str | None, file: Path | None, where: str) -> str:
    if file is not None:
        return read_file(file, what="client certificate").decode("utf-8", "replace")
    return SecretSource(env=env).read(where)


def read_client_certificate(cluster: ClusterSettings, name: str) -> ClientCertificate | None:
    """The client certificate and key a cluster entry names (None without one); ConfigError naming the
    file or variable. A pair that does not match is read again once: the tool's own rotation replaces
    the two files one after the other, and a reader may fall between them."""
    if not (cluster.client_cert_env or cluster.client_cert_file):
        return None
    for attempt in (1, 2):
        cert_pem = _pem(cluster.client_cert_env, cluster.client_cert_file,
                        cluster.where(f"clusters.{name}.client_cert"))
        key_pem = _pem(cluster.client_key_env, cluster.client_key_file, cluster.where(f"clusters.{name}.client_key"))
        where = str(cluster.client_cert_file or f"clusters.{name}.client_cert_env")
        key_where = str(cluster.client_key_file or f"clusters.{name}.client_key_env")
        try:
            leaf = certs.load_certificates(cert_pem, where=where)[0]
            key = certs.load_private_key(key_pem, where=key_where)
        except CertificateError as exc:
            raise ConfigError(exc.message) from None
        if certs.key_matches(key, leaf):
            return ClientCertificate(cert_pem, SecretPEM(key_pem))
        if attempt == 2:
            raise ConfigError(f"clusters.{name}: the client key does not match the client certificate ({where})")
    return None  # not reached


__all__ = ["RestClientSettings", "login_problems", "read_client_certificate"]
