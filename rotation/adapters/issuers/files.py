"""Bring your own certificate: an issuer that hands out files from a corporate PKI.

The files are read on every ``issue()`` so a renewed certificate dropped in place is picked
up. Whether it fits the cluster (hosts, EKU, expiry) is ``rotation.core.validate``'s job.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from rotation.config.files import read_file
from rotation.core import certs
from rotation.core.errors import CertificateError, ConfigError
from rotation.core.model import CertRequest, IssuedCert, RenewalInfo


class FileIssuer:
    def __init__(
        self,
        name: str,
        cert_file: Path | str,
        key_file: Path | str,
        key_password: bytes | str | None = None,
        ca_bundle: Path | str | None = None,
    ) -> None:
        self.name = name
        self.cert_file = Path(cert_file)
        self.key_file = Path(key_file)
        self._password = key_password.encode("utf-8") if isinstance(key_password, str) else key_password
        self.ca_bundle = Path(ca_bundle) if ca_bundle is not None else None

    def __repr__(self) -> str:  # the password stays out
        return f"FileIssuer(name={self.name!r}, cert_file={str(self.cert_file)!r})"

    def check(self) -> None:
        """The files exist and parse, and the key belongs to the certificate."""
        try:
            leaf, _ = self._certificates()
            key = self._key()
            if self.ca_bundle is not None:
                self._ca_certificates(self.ca_bundle)
        except CertificateError as exc:
            raise ConfigError(exc.message) from exc
        if not certs.key_matches(key, leaf):
            raise ConfigError(f"{self.key_file}: key does not match the certificate in {self.cert_file}")

    def issue(self, request: CertRequest) -> IssuedCert:
        leaf, chain = self._certificates()
        return IssuedCert(
            key_pem=certs.private_key_to_pem(self._key()),  # PKCS#8, unencrypted, as RS wants
            leaf_pem=certs.cert_to_pem(leaf),
            chain_pem=certs.certs_to_pem(chain),
        )

    def trust_anchors(self) -> list[str]:
        if self.ca_bundle is None:
            return []
        try:
            return [certs.cert_to_pem(c) for c in self._ca_certificates(self.ca_bundle)]
        except CertificateError as exc:
            raise ConfigError(exc.message) from exc

    public_roots = False

    def renewal_info(self, leaf_pem: str) -> RenewalInfo | None:
        return None  # another process renews these files: renew_before decides when to push them

    def _certificates(self) -> tuple[x509.Certificate, list[x509.Certificate]]:
        data = read_file(self.cert_file, what="certificate")
        found = certs.load_certificates(data, where=str(self.cert_file))
        return found[0], found[1:]

    def _key(self) -> certs.PrivateKey:
        data = read_file(self.key_file, what="key")
        return certs.load_private_key(data, where=str(self.key_file), password=self._password)

    @staticmethod
    def _ca_certificates(path: Path) -> list[x509.Certificate]:
        return certs.load_certificates(read_file(path, what="CA bundle"), where=str(path))


__all__ = ["FileIssuer"]
