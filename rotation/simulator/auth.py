"""Who calls the simulated REST API: users, HTTP Basic, client certificates (mTLS) and JWTs.

Facts (reference ``rs-8x-and-public-cas-2026.md`` §1.3; RS docs "Certificate-based
authentication" and "Disable basic authentication for the REST API"):

* RS 7.8.4+: ``mtls_trusted_ca`` (certificate only) and ``PUT /v1/cluster
  {mtls_certificate_authentication, mtls_client_cert_subject_validation_type, mtls_authorized_subjects}``;
  a user with ``auth_method: certificate`` logs in when its ``certificate_subject_line`` (RFC 2253,
  reverse order starting with CN, no space after commas, one OU) equals the client certificate's
  subject exactly. Turning it on is additive: Basic keeps working.
* RS 8.2.0+: ``control_plane_basic_authentication: false``: Basic gets 401, certificates and JWTs
  (``POST /v1/users/authorize``, ttl 1-86400 s, default 300) still work, and ``rladmin tune cluster
  control_plane_basic_authentication enabled`` on a node is the way back.

Choices where the sources are silent (assumptions):

* The api listener asks for a client certificate only while certificate login is on (the flag
  and an ``mtls_trusted_ca``) and verifies it in the handshake against that bundle, up to a CA in
  it (no partial chains). A certificate the bundle does not cover fails the handshake, as with
  envoy (RS's probable gateway) by default; the stdlib has no verify callback that could let it
  through to a 401. The client sees the connection drop, not envoy's ``unknown_ca`` alert: the
  asyncio/uvloop TLS transport closes without flushing it.
* A verified certificate that maps to a user wins; otherwise the Authorization header decides.
  ``san_cn``/``full_subject`` validation against ``mtls_authorized_subjects`` and "no user has
  this subject" give 401 when nothing else authenticates.
* ``POST /v1/users/authorize`` accepts a client certificate as well as Basic (once Basic is off
  "only mTLS or JWT work", so a JWT must be obtainable with a certificate); a JWT cannot mint
  another one. Tokens are HS256 under a per-simulator secret.
* Open connections keep the identity their handshake proved (like a server certificate swap).
* ``/_sim/*`` control routes take the admin's Basic credentials even with Basic off: they stand
  for a shell on a node (``rladmin``), not for RS's REST API.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import hmac
import json
import secrets
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from .http import Request
from .tls import CertificateAuthority, Material, build_server_context
from .versions import version_tuple

if TYPE_CHECKING:
    from .cluster import ClusterState

CERT_LOGIN_SINCE = (7, 8, 4)
BASIC_SWITCH_SINCE = (8, 2, 0)
ROLES = ("admin", "cluster_member", "cluster_viewer", "db_member", "db_viewer", "user_manager", "none")
VALIDATION_TYPES = ("disabled", "san_cn", "full_subject")
SUBJECT_OIDS = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
                "L": NameOID.LOCALITY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME, "C": NameOID.COUNTRY_NAME}
TTL_DEFAULT, TTL_MAX = 300, 86400
CLUSTER_FIELDS = ("mtls_certificate_authentication", "mtls_client_cert_subject_validation_type",
                  "mtls_authorized_subjects", "control_plane_basic_authentication")
USER_FIELDS = frozenset({"email", "password", "name", "role", "auth_method", "certificate_subject_line",
                         "email_alerts", "bdbs_email_alerts"})


def since(version: str, release: tuple[int, int, int]) -> bool:
    return version_tuple(version)[:3] >= release


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AuthRejected(Exception):
    """A user, settings or upload request this cluster refuses (the API answers it as is)."""

    def __init__(self, status: int, error_code: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error_code, self.description = status, error_code, description


@dataclass
class User:
    uid: int
    email: str
    name: str
    role: str
    auth_method: str = "regular"
    password: str | None = field(default=None, repr=False)
    certificate_subject_line: str | None = None
    password_issue_date: str = field(default_factory=lambda: iso(dt.datetime.now(dt.UTC)))

    def to_json(self) -> dict[str, Any]:
        """The RS user object; the password never leaves."""
        body: dict[str, Any] = {"uid": self.uid, "email": self.email, "name": self.name, "role": self.role,
                                "auth_method": self.auth_method, "status": "active", "email_alerts": False}
        if self.auth_method == "certificate":
            body["certificate_subject_line"] = self.certificate_subject_line
        else:
            body["password_issue_date"] = self.password_issue_date
        return body


@dataclass(frozen=True)
class Login:
    """Who a request is, and how it proved it."""

    user: User
    method: str  # "basic" | "certificate" | "jwt"


@dataclass(frozen=True)
class ClientLogin:
    """What a client needs for certificate login, as files (the key 0600)."""

    subject: str
    cert_path: Path
    key_path: Path
    ca_path: Path  # the client CA that mtls_trusted_ca holds


# -- subjects ------------------------------------------------------------------------------------


def check_subject_line(text: Any) -> str:
    """RS's rules for ``certificate_subject_line``; ValueError names the rule broken."""
    if not isinstance(text, str) or not text:
        raise ValueError("certificate_subject_line must be a non-empty string")
    parts = _split_rdns(text)
    if any(part != part.lstrip() for part in parts):
        raise ValueError(f"{text!r}: no space may follow the commas")
    if not parts[0].startswith("CN="):
        raise ValueError(f"{text!r}: must start with CN= (RFC 2253 order, reverse of the certificate's)")
    if sum(part.startswith("OU=") for part in parts) > 1:
        raise ValueError(f"{text!r}: at most one OU")
    try:
        x509.Name.from_rfc4514_string(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an RFC 2253 name: {exc}") from exc
    return text


def _split_rdns(text: str) -> list[str]:
    parts, current, escaped = [], "", False
    for char in text:
        if escaped or char != ",":
            current += char
            escaped = not escaped and char == "\\"
        else:
            parts.append(current)
            current = ""
    return [*parts, current]


@dataclass(frozen=True)
class _Peer:
    subject: str  # RFC 2253 / 4514: what certificate_subject_line must equal
    fields: dict[str, tuple[str, ...]]
    names: frozenset[str]  # subject CN + SAN DNS names (san_cn validation)


@functools.lru_cache(maxsize=64)
def _peer(der: bytes) -> _Peer:
    cert = x509.load_der_x509_certificate(der)
    fields = {key: tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(oid))
              for key, oid in SUBJECT_OIDS.items()}
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = sans.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns = []
    return _Peer(cert.subject.rfc4514_string(), fields, frozenset([*fields["CN"], *dns]))


def _subject_allowed(settings: dict[str, object], peer: _Peer) -> bool:
    kind = settings.get("mtls_client_cert_subject_validation_type", "disabled")
    subjects: list[dict[str, Any]] = settings.get("mtls_authorized_subjects") or []  # type: ignore[assignment]
    if kind == "san_cn":
        return any(entry.get("CN") in peer.names for entry in subjects)
    if kind == "full_subject":
        wanted = [{key: tuple(sorted(_as_list(entry.get(key)))) for key in SUBJECT_OIDS} for entry in subjects]
        have = {key: tuple(sorted(values)) for key, values in peer.fields.items()}
        return have in wanted
    return True


def _as_list(value: Any) -> list[str]:
    return list(value) if isinstance(value, list) else [] if value in (None, "") else [value]


def peer_certificate(writer: Any) -> bytes | None:
    """The DER client certificate the connection's handshake verified, if any."""
    ssl_object = writer.get_extra_info("ssl_object") if writer is not None else None
    return ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None


# -- the accounts --------------------------------------------------------------------------------


class Accounts:
    """Users, tokens and the api listener's client-certificate contexts of one simulated cluster."""

    def __init__(self, state: ClusterState, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.users: dict[int, User] = {}
        self.clock = clock  # JWT expiry; tests move it instead of sleeping
        self._secret = secrets.token_bytes(32)
        self._contexts: dict[tuple[str, ...], ssl.SSLContext] = {}
        self.client_ca: CertificateAuthority | None = None  # made by the certificate-login setup
        self.client_login: ClientLogin | None = None
        settings, version = state.settings, state.version
        if since(version, CERT_LOGIN_SINCE):
            settings.setdefault("mtls_client_cert_subject_validation_type", "disabled")
            settings.setdefault("mtls_authorized_subjects", [])
        else:
            settings.pop("mtls_certificate_authentication", None)
        if since(version, BASIC_SWITCH_SINCE):
            settings.setdefault("control_plane_basic_authentication", True)

    @property
    def basic_enabled(self) -> bool:
        return self.state.settings.get("control_plane_basic_authentication", True) is not False

    @property
    def certificate_login(self) -> bool:
        """Certificate login is on: the api listener asks for (and verifies) client certificates."""
        return (since(self.state.version, CERT_LOGIN_SINCE) and "mtls_trusted_ca" in self.state.certs
                and self.state.settings.get("mtls_certificate_authentication") is True)

    @property
    def challenge(self) -> str:
        return 'Basic realm="rs-simulator"' if self.basic_enabled else 'Bearer realm="rs-simulator"'

    def add(self, email: str, name: str, role: str, **fields: Any) -> User:
        user = User(uid=max(self.users, default=0) + 1, email=email, name=name, role=role, **fields)
        self.users[user.uid] = user
        return user

    # -- TLS --------------------------------------------------------------------------------------

    def api_context(self, material: Material, min_version: str, ciphers: str | None) -> ssl.SSLContext:
        """The api listener's context: with certificate login on, one that asks for a client
        certificate and verifies it against ``mtls_trusted_ca`` (a new bundle: a new context)."""
        if not self.certificate_login:
            return material.context(min_version, ciphers)
        bundle = self.state.certs["mtls_trusted_ca"].chain_pem
        key = (material.fingerprint, hashlib.sha256(bundle.encode()).hexdigest(), min_version, ciphers or "")
        context = self._contexts.get(key)
        if context is None:
            if len(self._contexts) >= 16:
                self._contexts.clear()
            context = build_server_context(material.chain_pem, material.key_pem or "", min_version, ciphers)
            context.verify_mode = ssl.CERT_OPTIONAL
            context.load_verify_locations(cadata=bundle)
            self._contexts[key] = context
        return context

    # -- authentication ---------------------------------------------------------------------------

    def authenticate(self, request: Request, client_cert: bytes | None) -> Login | str:
        """The caller, or why not (a 401 description; never a secret)."""
        refusal = "Authentication required"
        if client_cert is not None and self.certificate_login:
            login = self._certificate_login(client_cert)
            if isinstance(login, Login):
                return login
            refusal = login
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            return self._basic_login(credentials.strip(), control=request.path.startswith("/_sim/"))
        if scheme.lower() == "bearer":
            user = self.token_user(credentials.strip())
            return Login(user, "jwt") if user is not None else "The token is invalid or expired"
        return refusal

    def _certificate_login(self, der: bytes) -> Login | str:
        peer = _peer(der)
        if not _subject_allowed(self.state.settings, peer):
            return f"The client certificate subject {peer.subject} is not in mtls_authorized_subjects"
        for user in self.users.values():
            if user.auth_method == "certificate" and user.certificate_subject_line == peer.subject:
                return Login(user, "certificate")
        return f"No certificate user has the subject {peer.subject}"

    def _basic_login(self, credentials: str, control: bool) -> Login | str:
        if not self.basic_enabled and not control:
            return ("Basic authentication is disabled on this cluster (control_plane_basic_authentication "
                    "is false): use a client certificate or a JWT")
        try:
            username, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return "Malformed Basic credentials"
        user = next((u for u in self.users.values() if u.email == username and u.auth_method == "regular"), None)
        if user is None or user.password is None or not hmac.compare_digest(user.password.encode(), password.encode()):
            return "Wrong username or password"
        return Login(user, "basic")

    # -- JWT --------------------------------------------------------------------------------------

    def issue_token(self, user: User, ttl: int) -> str:
        now = int(self.clock())
        claims = {"uid": str(user.uid), "iat": now, "exp": now + ttl, "jti": secrets.token_hex(8)}
        signing_input = f"{_b64json({'alg': 'HS256', 'typ': 'JWT'})}.{_b64json(claims)}"
        return f"{signing_input}.{self._sign(signing_input)}"

    def token_user(self, token: str) -> User | None:
        head, _, signature = token.rpartition(".")
        if not head or not hmac.compare_digest(self._sign(head), signature):
            return None
        try:
            claims = json.loads(base64.urlsafe_b64decode(head.partition(".")[2] + "=="))
        except (ValueError, binascii.Error):
            return None
        expires, uid = claims.get("exp"), claims.get("uid")
        if not isinstance(expires, int) or expires <= self.clock() or not str(uid).isdigit():
            return None
        return self.users.get(int(uid))

    def _sign(self, signing_input: str) -> str:
        digest = hmac.new(self._secret, signing_input.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    # -- what the other modules ask -------------------------------------------------------------

    def split_cluster_update(self, body: Any) -> tuple[dict[str, Any], Any]:
        """``PUT /v1/cluster``: (the validated certificate-login changes, the rest of the body for
        the TLS-policy rules). Fields newer than the profile are refused like unknown ones."""
        if not isinstance(body, dict):
            return {}, body
        mine = {name: body[name] for name in CLUSTER_FIELDS if name in body}
        version = self.state.version
        for name, value in mine.items():
            needed = BASIC_SWITCH_SINCE if name == "control_plane_basic_authentication" else CERT_LOGIN_SINCE
            if not since(version, needed):
                raise AuthRejected(400, "invalid_field", f"{name} is not a writable cluster field on RS {version}")
            _check_cluster_value(name, value)
        merged = {**self.state.settings, **mine}
        if mine.get("mtls_certificate_authentication") is True and "mtls_trusted_ca" not in self.state.certs:
            raise AuthRejected(400, "missing_mtls_trusted_ca", "Upload an mtls_trusted_ca certificate "
                               "before turning on mtls_certificate_authentication")
        if merged.get("mtls_client_cert_subject_validation_type", "disabled") != "disabled" \
                and not merged.get("mtls_authorized_subjects"):
            raise AuthRejected(400, "invalid_value",
                               "Subject validation needs at least one mtls_authorized_subjects entry")
        return mine, {name: value for name, value in body.items() if name not in mine}

    def check_upload(self, names: Iterable[str]) -> None:
        """``mtls_trusted_ca`` is unknown before RS 7.8.4 (403, like any unknown name)."""
        if "mtls_trusted_ca" in names and not since(self.state.version, CERT_LOGIN_SINCE):
            raise AuthRejected(403, "unknown_certificate", "Unknown certificate name 'mtls_trusted_ca'")

    def rladmin(self, command: str) -> str:
        """The break-glass ``rladmin`` on a node: ``tune cluster control_plane_basic_authentication
        enabled|disabled`` (the only command simulated)."""
        words = command.split()
        if words[:3] != ["tune", "cluster", "control_plane_basic_authentication"] or len(words) != 4 \
                or words[3] not in ("enabled", "disabled"):
            raise ValueError("unsupported command; this simulator knows only "
                             "'tune cluster control_plane_basic_authentication enabled|disabled'")
        if not since(self.state.version, BASIC_SWITCH_SINCE):
            raise ValueError(f"control_plane_basic_authentication needs RS 8.2.0 (this cluster: {self.state.version})")
        self.state.settings = {**self.state.settings, "control_plane_basic_authentication": words[3] == "enabled"}
        return "Finished successfully"


def _check_cluster_value(name: str, value: Any) -> None:
    if name in ("mtls_certificate_authentication", "control_plane_basic_authentication"):
        valid = isinstance(value, bool)
    elif name == "mtls_client_cert_subject_validation_type":
        valid = value in VALIDATION_TYPES
    else:  # mtls_authorized_subjects: [{CN, O, OU: [...], L, ST, C}]
        valid = isinstance(value, list) and all(
            isinstance(entry, dict) and set(entry) <= set(SUBJECT_OIDS)
            and all(isinstance(v, list) and all(isinstance(i, str) for i in v) if k == "OU" else isinstance(v, str)
                    for k, v in entry.items())
            for entry in value)
    if not valid:
        expected = {"mtls_client_cert_subject_validation_type": f"one of {', '.join(VALIDATION_TYPES)}",
                    "mtls_authorized_subjects": "a list of {CN, O, OU: [..], L, ST, C} objects"}
        raise AuthRejected(400, "invalid_value", f"{name} must be {expected.get(name, 'a boolean')}")


def _b64json(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()
