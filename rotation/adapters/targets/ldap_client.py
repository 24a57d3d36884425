"""RS's client certificate towards LDAP servers (``ldap_client``) as a target.

No listener presents it: what is "served" is the cluster's copy (``GET /v1/cluster/certificates``). From
RS 7.22.2 it is pushed through the bulk ``PUT /v1/cluster/certificates`` (RS193156: LDAP needs it pushed so);
before, through ``PUT /v1/cluster/update_cert``, the only update path there, whose names include
``ldap_client`` (redis-enterprise-api.md §1.1). Rollback pushes the previous pair the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

from rotation.adapters.cluster import ClusterSession
from rotation.adapters.targets.base import OriginalPair
from rotation.core import certs
from rotation.core.errors import RotationError
from rotation.core.model import Endpoint, SecretPEM, ServedCert
from rotation.core.targets import LDAP_CLIENT
from rotation.core.validate import DEFAULT_CHECKS, Check, ExtraCheck
from rotation.core.versions import LDAP_CLIENT_SINCE, at_least

SOURCE = "GET /v1/cluster/certificates"


def ldap_client_copy(session: ClusterSession) -> ServedCert:
    """The cluster's copy of ``ldap_client``; an error row when it holds none (or it cannot be read)."""
    endpoint = Endpoint(session.name, LDAP_CLIENT, "api", SOURCE, 0)
    try:
        pair = session.certificates().get(LDAP_CLIENT)
    except RotationError as exc:
        return ServedCert(endpoint=endpoint, error=exc.message)
    if pair is None:
        return ServedCert(endpoint=endpoint, error=f"not present in {SOURCE}")
    leaf = certs.load_certificates(pair.certificate, where=f"{session.name} {LDAP_CLIENT}_cert")[0]
    return ServedCert(endpoint=endpoint, fingerprint=certs.fingerprint(leaf), subject=certs.subject_text(leaf),
                      sans=certs.subject_alt_names(leaf), not_after=certs.not_after(leaf),
                      not_before=certs.not_before(leaf))


class LdapClientTarget:
    cert_name = LDAP_CLIENT
    validation: tuple[Check, ...] = DEFAULT_CHECKS  # the role check asks clientAuth of it (core/slot_rules)

    def __init__(self, session: ClusterSession) -> None:
        self.session = session

    def served(self) -> list[ServedCert]:
        return [ldap_client_copy(self.session)]

    def observe(self) -> list[ServedCert]:
        return [ldap_client_copy(self.session)]

    def current(self) -> OriginalPair:
        session = self.session
        pair = session.certificates().get(LDAP_CLIENT)
        if pair is None or not pair.key:
            raise RotationError(f"{session.name}/{LDAP_CLIENT}: {SOURCE} has no current certificate and key; "
                                "without them a rollback would be impossible, so nothing is pushed")
        leaf = certs.load_certificates(pair.certificate, where=f"{session.name} {LDAP_CLIENT}_cert")[0]
        return OriginalPair(pair.certificate, pair.key, certs.fingerprint(leaf))

    def checks(self) -> Sequence[ExtraCheck]:
        return ()

    def before_push(self, trust: Sequence[str]) -> None:
        return None

    def push(self, certificate: str, key: SecretPEM) -> str:
        bulk = at_least(self.session.view().version, LDAP_CLIENT_SINCE)
        return "via " + self.session.client.update_certificate(LDAP_CLIENT, certificate, key, bulk=bulk)

    def restore(self, original: OriginalPair) -> str:
        self.push(original.certificate, original.key)
        return f"pushed back {certs.short_fingerprint(original.fingerprint)}"

    def verified(self) -> None:
        return None

    def lock_name(self) -> str:
        return str(self.cert_name)


__all__ = ["LdapClientTarget", "ldap_client_copy"]
