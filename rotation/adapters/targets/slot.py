"""A cluster certificate slot (``cm``, ``api``, ``proxy``, ``syncer``, ``metrics_exporter``) as a target:
pushed with the bulk PUT or ``update_cert`` by the cluster's version, read by handshakes on its
listeners and through ``GET /v1/cluster/certificates`` (``syncer``: that copy only)."""

from __future__ import annotations

from collections.abc import Sequence

from rotation.adapters.cluster import ClusterSession
from rotation.adapters.targets.base import OriginalPair
from rotation.adapters.tls.trust import handshake_error
from rotation.core import certs
from rotation.core.errors import RotationError
from rotation.core.model import CertName, Endpoint, SecretPEM, ServedCert
from rotation.core.tls_rules import cipher_key_check
from rotation.core.validate import DEFAULT_CHECKS, Check, ExtraCheck, ParsedBundle


class ClusterSlot:
    validation: tuple[Check, ...] = DEFAULT_CHECKS

    def __init__(self, session: ClusterSession, cert_name: CertName) -> None:
        self.session = session
        self.cert_name: CertName = cert_name

    def served(self) -> list[ServedCert]:
        return self.session.served(self.cert_name)

    def observe(self) -> list[ServedCert]:
        """Fresh handshakes on every endpoint, then the REST copy (``syncer``: the REST copy only)."""
        served = self.session.served(self.cert_name) if self.cert_name.is_served else []
        return [*served, self._rest_copy()]

    def _rest_copy(self) -> ServedCert:
        """The cluster's own copy; for ``api`` through a fresh client with only the trust a new process has
        (a pooled connection opened before the push proves nothing). Errors are an answer, not a raise."""
        session, name = self.session, self.cert_name
        try:
            if name is CertName.API:
                with session.fresh_client() as client:
                    return session.rest_copy(name, client=client)
            return session.rest_copy(name)
        except RotationError as exc:
            return ServedCert(endpoint=Endpoint(session.name, name, "api", "GET /v1/cluster/certificates", 0),
                              error=exc.message)

    def current(self) -> OriginalPair:
        session, name = self.session, self.cert_name
        pair = session.certificates().get(str(name))
        if pair is None or not pair.key:
            raise RotationError(
                f"{session.name}/{name}: GET /v1/cluster/certificates has no current certificate and key; "
                "without them a rollback would be impossible, so nothing is pushed (does the user have the admin "
                "role?)"
            )
        leaf = certs.load_certificates(pair.certificate, where=f"{session.name} {name}_cert")[0]
        return OriginalPair(pair.certificate, pair.key, certs.fingerprint(leaf))

    def checks(self) -> Sequence[ExtraCheck]:
        checks: list[ExtraCheck] = [cipher_key_check(self.session.view().tls_fields)]
        if self.cert_name is CertName.API:
            checks.append(_rest_client_trusts(self.session))
        return checks

    def before_push(self, trust: Sequence[str]) -> None:
        if self.cert_name is CertName.API:
            # The REST endpoint itself is about to change certificate: trust its issuer first.
            self.session.trust_more(trust)

    def push(self, certificate: str, key: SecretPEM) -> str:
        return "via " + self.session.push(self.cert_name, certificate, key)

    def restore(self, original: OriginalPair) -> str:
        self.push(original.certificate, original.key)
        return f"pushed back {certs.short_fingerprint(original.fingerprint)}"

    def verified(self) -> None:
        return None

    def lock_name(self) -> str:
        return str(self.cert_name)


def _pems(bundle: ParsedBundle) -> tuple[str, SecretPEM]:
    return certs.certs_to_pem(bundle.certificates), certs.private_key_to_pem(bundle.key)


def _rest_client_trusts(session: ClusterSession) -> ExtraCheck:
    """``api`` only: the REST client of every later process must still verify the REST API."""

    def check(bundle: ParsedBundle, request: object) -> list[str]:
        chain, key = _pems(bundle)
        error = handshake_error(session.rest_context(), chain, key, session.settings.server_name)
        if error is None:
            return []
        return [f"the REST client would not trust this api certificate ({error}): every later command "
                f"would fail TLS verification; its CA must be in clusters.{session.name}.verify or be the trust "
                "anchor of the cluster's api issuer"]

    return check


__all__ = ["ClusterSlot"]
