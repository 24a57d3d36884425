"""Fuzz the PEM loaders (certificates, private keys): their values or CertificateError/ConfigError."""

from __future__ import annotations

import atheris
from _harness import run

with atheris.instrument_imports():
    from rotation.core import certs
    from rotation.core.errors import CertificateError, ConfigError


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    password = fdp.ConsumeBytes(8) if fdp.ConsumeBool() else None
    pem = fdp.ConsumeBytes(fdp.remaining_bytes())
    try:
        certs.load_certificates(pem, where="input")
    except CertificateError:
        pass
    try:
        certs.load_private_key(pem, where="input", password=password)
    except (CertificateError, ConfigError):
        pass


if __name__ == "__main__":
    run(test_one_input)
