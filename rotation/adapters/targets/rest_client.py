"""The tool's own client certificate (RS certificate login) as a target: ``rest_client``.

Nothing is pushed to the cluster for it. "Pushing" is make-before-break: the new certificate first
logs in alone on every node's REST port (``cert_login.prove_login``); only then are the files the
inventory names switched (``client_files``: the old pair kept beside them), and this session's
client presents the new one. What is "served" is what logs in: one row per node, the fingerprint
of the certificate that logged in there, and the file's own copy. Verification is a fresh login
with what the files hold now, on every node; a rollback writes the previous pair back.

Before anything changes, the new certificate must be one the cluster's ``mtls_trusted_ca``
accepts (an in-memory handshake against that bundle): a certificate from a CA the cluster does not
trust would lock the tool out. With ``manage_trusted_ca`` the client-CA companion adds the CA first.
"""

from __future__ import annotations

from collections.abc import Sequence

from rotation.adapters.cert_login import prove_login, refusals
from rotation.adapters.client_files import ClientFiles
from rotation.adapters.cluster import ClusterSession
from rotation.adapters.targets.base import OriginalPair
from rotation.adapters.tls.trust import client_certificate_error
from rotation.core import certs
from rotation.core.client_cert import CLIENT_CHECKS
from rotation.core.errors import ClusterRejected, ConfigError
from rotation.core.model import ClientCertificate, Endpoint, SecretPEM, ServedCert
from rotation.core.targets import REST_CLIENT
from rotation.core.validate import Check, ExtraCheck, ParsedBundle


def file_copy(session: ClusterSession, client_cert: ClientCertificate) -> ServedCert:
    """The client certificate as its file holds it (what the scan and `check` show: no network)."""
    path = session.settings.client_cert_file or f"clusters.{session.name}.client_cert_env"
    leaf = certs.load_certificates(client_cert.certificate, where=str(path))[0]
    return ServedCert(endpoint=Endpoint(session.name, REST_CLIENT, "file", str(path), 0),
                      fingerprint=certs.fingerprint(leaf), subject=certs.subject_text(leaf),
                      not_after=certs.not_after(leaf), not_before=certs.not_before(leaf))


def logins(session: ClusterSession, client_cert: ClientCertificate) -> list[ServedCert]:
    """One row per node: the certificate's fingerprint where it logged in alone, else why not."""
    fingerprint = certs.fingerprint(certs.load_certificates(client_cert.certificate, where=REST_CLIENT)[0])
    server_name = session.settings.server_name
    return [ServedCert(endpoint=Endpoint(session.name, REST_CLIENT, r.node, r.address, r.port, server_name),
                       fingerprint=fingerprint if r.ok else None, error=r.error)
            for r in prove_login(session, client_cert)]


class RestClientTarget:
    cert_name = REST_CLIENT
    validation: tuple[Check, ...] = CLIENT_CHECKS

    def __init__(self, session: ClusterSession) -> None:
        settings = session.settings
        if settings.client_cert_file is None or settings.client_key_file is None or settings.rest_client is None:
            raise ConfigError(f"clusters.{session.name}: rest_client needs client_cert_file and client_key_file")
        self.session = session
        self.files = ClientFiles(settings.client_cert_file, settings.client_key_file)
        self.manage_trusted_ca = settings.rest_client.manage_trusted_ca

    def in_use(self) -> ClientCertificate:
        client_cert = self.session.settings.client_certificate(self.session.name)
        assert client_cert is not None  # the inventory refuses rest_client without its files
        return client_cert

    def served(self) -> list[ServedCert]:
        return logins(self.session, self.in_use())

    def observe(self) -> list[ServedCert]:
        in_use = self.in_use()  # read again: what the files hold now
        return [file_copy(self.session, in_use), *logins(self.session, in_use)]

    def current(self) -> OriginalPair:
        in_use = self.in_use()
        leaf = certs.load_certificates(in_use.certificate, where=REST_CLIENT)[0]
        return OriginalPair(in_use.certificate, in_use.key, certs.fingerprint(leaf))

    def checks(self) -> Sequence[ExtraCheck]:
        return [] if self.manage_trusted_ca else [self._trusted_by_the_cluster]  # the companion adds the CA

    def _trusted_by_the_cluster(self, bundle: ParsedBundle, request: object) -> list[str]:
        pair = self.session.certificates().get("mtls_trusted_ca")
        if pair is None:
            return ["the cluster has no mtls_trusted_ca: certificate login is not set up there"]
        error = client_certificate_error(pair.certificate, certs.certs_to_pem(bundle.certificates),
                                         certs.private_key_to_pem(bundle.key))
        if error is None:
            return []
        return [f"the cluster's mtls_trusted_ca does not accept it ({error}): switching to it would lock the tool "
                f"out; add its CA to mtls_trusted_ca first, or set clusters.{self.session.name}.rest_client."
                "manage_trusted_ca: true (the CA is added before, the old one removed after)"]

    def before_push(self, trust: Sequence[str]) -> None:
        return None

    def push(self, certificate: str, key: SecretPEM) -> str:
        new = ClientCertificate(certificate, key)
        results = prove_login(self.session, new)
        problem = refusals(results)
        if problem:  # nothing switched: the pipeline confirms the files still hold the old one
            raise ClusterRejected(f"{self.session.name}/{REST_CLIENT}: the new certificate does not log in "
                                  f"({problem}); the files were not switched", status=401)
        self.files.switch(new, self.in_use())
        self.session.client.use_client_certificate(new)
        return f"logged in with it alone on {len(results)} node(s), then switched {self.files.cert_path}"

    def restore(self, original: OriginalPair) -> str:
        pair = ClientCertificate(original.certificate, original.key)
        self.files.write(pair)
        self.session.client.use_client_certificate(pair)
        return f"wrote {certs.short_fingerprint(original.fingerprint)} back to {self.files.cert_path}"

    def verified(self) -> None:
        self.files.drop_previous()  # the new certificate logs in everywhere: the old one is no longer kept

    def lock_name(self) -> str:
        return str(self.cert_name)


__all__ = ["RestClientTarget", "file_copy", "logins"]
