"""The self-lockout guard: refuse, before it is made, any change after which the tool could no longer
log in to the cluster it manages (RS docs, "Disable basic authentication": enable and verify mTLS
first; recovery is ``rladmin`` on a node, README "Break glass").

* ``mtls_trusted_ca`` must keep accepting the client certificate the tool logs in with
  (:func:`keep_trusted_ca`; an in-memory handshake against the new bundle);
* Basic must not be turned off unless the client certificate alone logs in, with the rights to
  change the cluster, on every node (:func:`keep_basic_off_login`);
* a TLS policy must leave a version and suite the REST client speaks (:func:`keep_policy_speakable`);
* an ``api`` certificate must be one the REST client trusts (``targets.slot``, checked in validation);
* the tool's own new client certificate must log in on every node before the files switch to it
  (``targets.rest_client``).
"""

from __future__ import annotations

import ssl
from typing import Any

from rotation.adapters.cert_login import prove_login, refusals
from rotation.adapters.cluster import ClusterSession, verify_of
from rotation.adapters.rs.client import RSClient
from rotation.adapters.tls.trust import client_certificate_error, policy_error
from rotation.core import certs
from rotation.core.errors import LockoutRefused, RotationError
from rotation.core.model import ClientCertificate
from rotation.core.tls_rules import key_type_of
from rotation.core.versions import BASIC_SWITCH_SINCE, at_least

BREAK_GLASS = "break glass: README \"Break glass\" (rladmin on a node)"


def keep_trusted_ca(session: ClusterSession, bundle: str, in_use: ClientCertificate | None, what: str) -> None:
    """LockoutRefused when ``bundle`` as ``mtls_trusted_ca`` would refuse the certificate the tool logs in with."""
    if in_use is None:
        return  # the tool logs in with Basic only: mtls_trusted_ca does not decide whether it gets in
    error = client_certificate_error(bundle, in_use.certificate, in_use.key)
    if error is not None:
        raise LockoutRefused(f"{session.name}: {what}: refused before any change: that mtls_trusted_ca would not "
                             f"accept the client certificate the tool logs in with ({error})")


def basic_auth_change(session: ClusterSession) -> dict[str, Any]:
    """The ``PUT /v1/cluster`` fields that bring Basic to what ``clusters.X.basic_auth`` wants ({} when it is
    as wanted, or not set); turning it off is guarded (:func:`keep_basic_off_login`)."""
    wanted = session.settings.basic_auth
    if wanted is None:
        return {}
    current = session.client.cluster_info().get("control_plane_basic_authentication", True) is not False
    if current == wanted:
        return {}
    change = {"control_plane_basic_authentication": wanted}
    if not wanted:
        keep_basic_off_login(session, change)
    return change


def keep_basic_off_login(session: ClusterSession, body: dict[str, Any]) -> None:
    """Before ``control_plane_basic_authentication: false``: the client certificate alone must log in on
    every node, and be allowed the change itself (RS's dry run of ``body`` with the certificate alone)."""
    name = session.name
    if not at_least(session.view().version, BASIC_SWITCH_SINCE):
        raise LockoutRefused(f"{name}: basic_auth: Basic can be turned off from RS 8.2.0 only "
                             f"(this cluster: {session.view().version or 'unknown version'})")
    in_use = session.settings.client_certificate(name)
    if in_use is None:
        raise LockoutRefused(f"{name}: basic_auth: false refused: with Basic off only certificate login works, "
                             f"and clusters.{name} has no client certificate")
    problem = refusals(prove_login(session, in_use))
    if problem is None:
        try:
            with _certificate_only(session, in_use) as client:
                client.update_cluster(body, dry_run=True)
        except RotationError as exc:
            problem = f"the certificate may not change the cluster ({exc.message})"
    if problem is not None:
        raise LockoutRefused(f"{name}: basic_auth: false refused before any change: certificate login does not "
                             f"work everywhere, and Basic off would lock the tool out: {problem}")


def _certificate_only(session: ClusterSession, in_use: ClientCertificate) -> RSClient:
    settings = session.settings
    return RSClient(settings.url, None, None, client_cert=in_use, cluster=session.name,
                    verify=verify_of(settings), server_name=settings.tls_server_name,
                    timeout=settings.request_timeout.total_seconds(), extra_trust=session.trust)


def keep_policy_speakable(session: ClusterSession, fields: dict[str, Any]) -> None:
    """LockoutRefused when the REST API, with the control-plane settings ``fields`` would give it, could no
    longer complete a handshake with the REST client (its TLS versions and suites, the api key's type)."""
    if not {"min_control_TLS_version", "control_cipher_suites"} & set(fields):
        return
    settings = {**session.view().tls_fields, **fields}
    minimum, ciphers = settings.get("min_control_TLS_version"), settings.get("control_cipher_suites")
    api = session.certificates().get("api")
    key_type = key_type_of(certs.load_certificates(api.certificate, where="api")[0].public_key()) if api else None
    try:
        error = policy_error(session.rest_context(), str(minimum) if minimum else None,
                             str(ciphers) if ciphers else None, key_type or "ecdsa")
    except ssl.SSLError:  # a cipher string the local OpenSSL cannot read (BoringSSL syntax): not judged
        return
    if error is not None:
        raise LockoutRefused(f"{session.name}: tls_policy refused before any change: the REST client could not "
                             f"talk to the REST API any more (min_control_TLS_version {minimum}, "
                             f"control_cipher_suites {ciphers!r}: {error})")


__all__ = ["BREAK_GLASS", "basic_auth_change", "keep_basic_off_login", "keep_policy_speakable", "keep_trusted_ca"]
