"""The REST client's TLS contexts: what it trusts (system roots, ``verify`` bundles, extra CAs) and the
client certificate it presents for certificate login. Built once per distinct input and shared:
contexts are thread-safe, and loading CA files on every scan costs CPU for nothing."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Iterable, Sequence
from pathlib import Path

from rotation.adapters.tls.trust import load_identity
from rotation.core.errors import ConfigError
from rotation.core.model import ClientCertificate


def build_ssl_context(verify: bool | Sequence[Path], extra_trust: Iterable[str] = (),
                      client_cert: ClientCertificate | None = None) -> ssl.SSLContext:
    """The context for the REST API: system trust or the given bundles, plus extra CA PEMs, and the
    client certificate presented for certificate login. Contexts are shared (they are thread-safe):
    loading CA files on every scan costs CPU for nothing."""
    bundles = verify if isinstance(verify, bool) else tuple((str(p), _mtime(p)) for p in verify)
    return _ssl_context(bundles, tuple(extra_trust), client_cert)


def _mtime(path: Path) -> int:
    try:
        return Path(path).stat().st_mtime_ns  # an edited bundle gets a fresh context
    except OSError:
        return -1


@functools.lru_cache(maxsize=64)
def _ssl_context(verify: bool | tuple[tuple[str, int], ...], extra_trust: tuple[str, ...],
                 client_cert: ClientCertificate | None = None) -> ssl.SSLContext:
    if client_cert is not None:
        context = _trusting(verify, extra_trust)  # a context of its own: a shared one must not present it
        try:
            load_identity(context, client_cert.certificate, client_cert.key)
        except ssl.SSLError as exc:
            raise ConfigError(f"the client certificate and key cannot be used for TLS ({exc.reason or exc})") from None
        return context
    return _trusting(verify, extra_trust)


def _trusting(verify: bool | tuple[tuple[str, int], ...], extra_trust: tuple[str, ...]) -> ssl.SSLContext:
    if verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    bundles = [] if isinstance(verify, bool) else [path for path, _ in verify]
    # Explicit bundles replace the system trust store; no bundle means system trust.
    # Loading the system store costs ~20 ms: only when no bundle replaces it.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT) if bundles else ssl.create_default_context()
    for bundle in bundles:
        try:
            context.load_verify_locations(cafile=str(bundle))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"verify bundle {bundle}: cannot load CA certificates ({exc})") from None
    extra = "".join(extra_trust)
    if extra:
        context.load_verify_locations(cadata=extra)
        # Trusting an issuing intermediate (ACME) must be enough: its root may not be in the bundle.
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


__all__ = ["build_ssl_context"]
