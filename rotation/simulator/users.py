"""Users, JWTs and the break-glass ``rladmin`` of the simulated REST API (who calls: :mod:`.auth`).

Routes: ``GET /v1/users``, ``GET /v1/users/{uid}``, ``POST /v1/users``, ``PUT /v1/users/{uid}``
(admin only, as RS's ``view_all_users_info``, ``create_new_user``, ``update_user``);
``POST /v1/users/authorize`` (any caller but a JWT; ``{"ttl": 1..86400}``, default 300, answers
``{"access_token"}``); ``POST /_sim/rladmin`` (``{"command": "tune cluster
control_plane_basic_authentication enabled"}``: the stand-in for ``rladmin`` on a node).

:func:`setup_certificate_login` does in one step what an operator does by hand, for tests and
``rotation simulator --cert-login``.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .api import BadRequest, _json_body, route
from .auth import (
    CERT_LOGIN_SINCE,
    ROLES,
    TTL_DEFAULT,
    TTL_MAX,
    USER_FIELDS,
    Accounts,
    AuthRejected,
    ClientLogin,
    User,
    check_subject_line,
    iso,
    since,
)
from .http import Request, Response
from .tls import CertificateAuthority, material_from_pems

if TYPE_CHECKING:
    from .host import Simulator


# -- user objects --------------------------------------------------------------------------------


def checked_user(accounts: Accounts, body: Any, user: User | None) -> dict[str, Any]:
    """The fields of the user ``body`` creates (or turns ``user`` into), validated; AuthRejected if not."""
    if not isinstance(body, dict):
        raise AuthRejected(400, "invalid_request", "Body must be a user object")
    unknown = set(body) - USER_FIELDS
    if unknown:
        raise AuthRejected(400, "invalid_request", f"Unknown properties: {sorted(unknown)}")
    current: dict[str, Any] = {"auth_method": "regular", "email": ""}
    if user is not None:
        current = {"email": user.email, "name": user.name, "role": user.role, "auth_method": user.auth_method,
                   "password": user.password, "certificate_subject_line": user.certificate_subject_line}
    merged = {**current, **{k: v for k, v in body.items() if k not in ("email_alerts", "bdbs_email_alerts")}}
    _check_method(accounts.state.version, merged, body)
    if merged.get("role") not in ROLES:
        raise AuthRejected(400, "invalid_value", f"role must be one of {', '.join(ROLES)}")
    if not isinstance(merged["email"], str) or not isinstance(merged.get("name", ""), str):
        raise AuthRejected(400, "invalid_value", "email and name must be strings")
    merged.setdefault("name", merged["email"] or _common_name(merged["certificate_subject_line"]))
    _check_unique(accounts, merged, user)
    return merged


def _check_method(version: str, merged: dict[str, Any], body: dict[str, Any]) -> None:
    method = merged.get("auth_method")
    if method not in ("regular", "certificate"):
        raise AuthRejected(400, "invalid_value", "auth_method must be regular or certificate "
                                                 "(entraid and sso are not simulated)")
    if (method == "certificate" or "certificate_subject_line" in body) and not since(version, CERT_LOGIN_SINCE):
        raise AuthRejected(400, "invalid_value", f"certificate users need RS 7.8.4 or later (this cluster: {version})")
    if method == "certificate":
        if body.get("password") is not None:
            raise AuthRejected(400, "invalid_request", "A certificate user has no password")
        try:
            check_subject_line(merged.get("certificate_subject_line"))
        except ValueError as exc:
            raise AuthRejected(400, "invalid_certificate_subject_line", str(exc)) from exc
        merged["password"] = None
        return
    if not isinstance(merged.get("password"), str) or not merged["password"] or not merged["email"]:
        raise AuthRejected(400, "invalid_request", "A regular user needs an email and a non-empty password")
    merged["certificate_subject_line"] = None


def _check_unique(accounts: Accounts, merged: dict[str, Any], user: User | None) -> None:
    others = [u for u in accounts.users.values() if user is None or u.uid != user.uid]
    if merged["email"] and any(u.email == merged["email"] for u in others):
        raise AuthRejected(409, "email_already_exists", f"A user with the email {merged['email']} exists")
    line = merged["certificate_subject_line"]
    if line and any(u.certificate_subject_line == line for u in others):
        raise AuthRejected(409, "certificate_subject_line_already_exists", f"A user with the subject {line} exists")
    if user is not None and user.role == "admin" and merged["role"] != "admin" \
            and not any(u.role == "admin" for u in others):
        raise AuthRejected(406, "change_last_admin_role_not_allowed", "At least one user must keep the admin role")


def _common_name(subject_line: str | None) -> str:
    name = x509.Name.from_rfc4514_string(subject_line or "")
    return next((str(a.value) for a in name.get_attributes_for_oid(NameOID.COMMON_NAME)), "")


def _user(sim: Simulator, uid: str) -> User:
    user = sim.accounts.users.get(int(uid)) if uid.isdigit() else None
    if user is None:
        raise BadRequest("user_not_found", f"User {uid} does not exist", 404)
    return user


# -- routes --------------------------------------------------------------------------------------


@route("GET", "/v1/users", "update")
async def get_users(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    return Response.json([user.to_json() for _, user in sorted(sim.accounts.users.items())])


@route("GET", "/v1/users/{uid}", "update")
async def get_user(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    return Response.json(_user(sim, params["uid"]).to_json())


@route("POST", "/v1/users", "update")
async def post_user(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    fields = checked_user(sim.accounts, _json_body(request), None)
    return Response.json(sim.accounts.add(**fields).to_json())


@route("PUT", "/v1/users/{uid}", "update")
async def put_user(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    user = _user(sim, params["uid"])
    fields = checked_user(sim.accounts, _json_body(request), user)
    if fields["password"] != user.password:
        user.password_issue_date = iso(dt.datetime.now(dt.UTC))
    for name, value in fields.items():
        setattr(user, name, value)
    return Response.json(user.to_json())


@route("POST", "/v1/users/authorize")
async def post_authorize(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    """A JWT for the caller, who proved itself with Basic or a client certificate (not a JWT)."""
    login = request.login
    if login is None or login.method == "jwt":
        raise BadRequest("unauthorized", "Authorize with Basic credentials or a client certificate", 401)
    body = _json_body(request) if request.body.strip() else {}
    ttl = body.get("ttl", TTL_DEFAULT) if isinstance(body, dict) and set(body) <= {"ttl"} else None
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= TTL_MAX:
        raise BadRequest("invalid_request", f"Body must be {{\"ttl\": 1..{TTL_MAX}}} (seconds) or empty")
    return Response.json({"access_token": sim.accounts.issue_token(login.user, ttl)})


@route("POST", "/_sim/rladmin", "update", control=True)
async def post_rladmin(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    body = _json_body(request)
    command = body.get("command") if isinstance(body, dict) else None
    if not isinstance(command, str):
        raise BadRequest("invalid_rladmin_command", "Body must be {\"command\": \"tune cluster ...\"}")
    try:
        return Response.json({"output": sim.accounts.rladmin(command)})
    except ValueError as exc:
        raise BadRequest("invalid_rladmin_command", str(exc)) from exc


# -- certificate login in one step ---------------------------------------------------------------


class CertificateLogin:
    """``sim.cert_login``: thread-safe controls, callable from tests and the CLI."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    @property
    def client(self) -> ClientLogin | None:
        """The files written by :meth:`enable`, if it ran."""
        return self._sim.accounts.client_login

    def enable(self, subject: str = "CN=rotation,OU=ops,O=rotation", role: str = "admin",
               basic: bool = True) -> ClientLogin:
        """Certificate login as an operator sets it up (:func:`setup_certificate_login`); ``basic=False``
        then turns Basic off (RS 8.2.0+). ValueError on bad input or version."""
        sim = self._sim
        login = sim._call(lambda: setup_certificate_login(sim.accounts, sim.config.state_dir, sim.config.fqdn,
                                                          subject, role))
        if not basic:
            self.rladmin("tune cluster control_plane_basic_authentication disabled")
        return login

    def rladmin(self, command: str) -> str:
        """``rladmin`` on a node (no REST login): ``tune cluster control_plane_basic_authentication
        enabled|disabled``. ValueError for anything else."""
        return self._sim._call(lambda: self._sim.accounts.rladmin(command))



def setup_certificate_login(accounts: Accounts, state_dir: Path, fqdn: str, subject: str,
                            role: str = "admin") -> ClientLogin:
    """A client CA as ``mtls_trusted_ca``, the flag on, a certificate user with ``subject`` (kept if
    it exists), and its certificate and key written to ``state_dir``. ValueError on bad input."""
    state = accounts.state
    existing = next((u for u in accounts.users.values() if u.certificate_subject_line == subject), None)
    try:
        fields = checked_user(accounts, {"auth_method": "certificate", "certificate_subject_line": subject,
                                         "role": role}, existing)
    except AuthRejected as exc:
        raise ValueError(exc.description) from exc
    now = dt.datetime.now(dt.UTC)
    if accounts.client_ca is None:
        accounts.client_ca = CertificateAuthority.create(f"{fqdn} client", now - dt.timedelta(hours=1),
                                                         now + dt.timedelta(days=3650))
    ca = accounts.client_ca
    cert_pem, key_pem = issue_client_certificate(ca, subject, now - dt.timedelta(hours=1), now + dt.timedelta(days=365))
    state.certs["mtls_trusted_ca"] = material_from_pems("mtls_trusted_ca", ca.pem, None)
    state.settings = {**state.settings, "mtls_certificate_authentication": True}
    if existing is None:
        accounts.add(**fields)
    state_dir.mkdir(parents=True, exist_ok=True)
    login = ClientLogin(subject, state_dir / "client-cert.pem", state_dir / "client-key.pem",
                        state_dir / "client-ca.pem")
    login.ca_path.write_text(ca.pem)
    login.cert_path.write_text(cert_pem)
    fd = os.open(login.key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(key_pem)
    accounts.client_login = login
    return login


def issue_client_certificate(
    ca: CertificateAuthority, subject_line: str, not_before: dt.datetime, not_after: dt.datetime,
    dns_names: tuple[str, ...] = (),
) -> tuple[str, str]:
    """A clientAuth leaf whose RFC 2253 subject is exactly ``subject_line`` (and SAN ``dns_names``):
    (cert PEM, key PEM)."""
    subject = x509.Name.from_rfc4514_string(subject_line)
    if subject.rfc4514_string() != subject_line:
        raise ValueError(f"{subject_line!r} does not round-trip as an RFC 2253 name")
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(ca.cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    if dns_names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), False)
    cert = builder.sign(ca.key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem
