"""Asyncio TLS probe: what does each endpoint present on a fresh handshake?

Verification is off on purpose: the probe reports whatever is served (expired, self-signed,
wrong name); judging it is the caller's job. Handshakes run concurrently under a cap, each
with its own timeout; failures become ``ServedCert.error`` instead of exceptions so that one
dead node never hides the others.
"""

from __future__ import annotations

import _ssl  # Certificate.public_bytes wants its own encoding constant
import asyncio
import functools
import logging
import ssl
from collections.abc import Callable, Sequence
from datetime import datetime

from cryptography import x509

from rotation.adapters.tls import aio
from rotation.core import certs
from rotation.core.model import Endpoint, ServedCert
from rotation.core.topology import not_a_host

_TLS_NAMES = {"TLSv1": "1.0", "TLSv1.1": "1.1", "TLSv1.2": "1.2", "TLSv1.3": "1.3"}


def _client_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_CONTEXT = _client_context()


class _QuietSSLEof(logging.Filter):
    """asyncio warns on every TLS stream the peer closes first; for a probe that is normal."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received() has no effect when using ssl" not in record.getMessage()


logging.getLogger("asyncio").addFilter(_QuietSSLEof())


def _presented_chain(ssl_object: ssl.SSLObject) -> tuple[bytes, ...]:
    """The chain as sent by the server (leaf first), DER."""
    getter = getattr(ssl_object, "get_unverified_chain", None)  # public from Python 3.13
    if getter is None:
        inner = getattr(ssl_object, "_sslobj", None)
        getter = getattr(inner, "get_unverified_chain", None)
    if getter is None:
        return ()
    chain = getter() or []
    return tuple(c if isinstance(c, bytes) else c.public_bytes(_ssl.ENCODING_DER) for c in chain)


@functools.lru_cache(maxsize=1024)
def _leaf_facts(leaf_der: bytes) -> tuple[str, str, tuple[str, ...], datetime, datetime]:
    """Parse each distinct certificate once: every node of a cluster usually serves the same one."""
    leaf = x509.load_der_x509_certificate(leaf_der)
    return (certs.der_fingerprint(leaf_der), certs.subject_text(leaf), certs.subject_alt_names(leaf),
            certs.not_after(leaf), certs.not_before(leaf))


def describe_served(endpoint: Endpoint, leaf_der: bytes, chain: tuple[bytes, ...], version: str | None) -> ServedCert:
    fingerprint, subject, sans, not_after, not_before = _leaf_facts(leaf_der)
    return ServedCert(
        endpoint=endpoint,
        fingerprint=fingerprint,
        subject=subject,
        sans=sans,
        not_after=not_after,
        not_before=not_before,
        chain_der=chain or (leaf_der,),
        tls_version=_TLS_NAMES.get(version or "", version),
        leaf_der=leaf_der,
    )


async def probe(endpoint: Endpoint, *, timeout: float = 5.0, context: ssl.SSLContext | None = None) -> ServedCert:
    """One fresh handshake. Never raises for network or TLS failures: see ``ServedCert.error``."""
    writer: asyncio.StreamWriter | None = None
    if problem := not_a_host(endpoint.host, endpoint.sni):
        return ServedCert(endpoint=endpoint, error=f"unreachable: {problem}")
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(
                endpoint.host,
                endpoint.port,
                ssl=context or _CONTEXT,
                server_hostname=endpoint.sni or endpoint.host,
                ssl_handshake_timeout=timeout,
            )
            ssl_object: ssl.SSLObject = writer.get_extra_info("ssl_object")
            leaf_der = ssl_object.getpeercert(binary_form=True)
            if not leaf_der:
                return ServedCert(endpoint=endpoint, error="no certificate presented")
            return describe_served(endpoint, leaf_der, _presented_chain(ssl_object), ssl_object.version())
    except TimeoutError:
        return ServedCert(endpoint=endpoint, error=f"timed out after {timeout:g}s")
    except ssl.SSLError as exc:
        return ServedCert(endpoint=endpoint, error=f"TLS handshake failed: {exc.reason or exc}")
    except OSError as exc:
        return ServedCert(endpoint=endpoint, error=f"unreachable: {exc.strerror or exc}")
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:  # unparsable certificate
        return ServedCert(endpoint=endpoint, error=f"unreadable certificate: {exc}")
    finally:
        if writer is not None:
            # We only wanted the certificate: drop the connection without a TLS close_notify
            # round trip (cheaper for both ends when probing hundreds of endpoints).
            writer.transport.abort()


async def probe_many(
    endpoints: Sequence[Endpoint], *, concurrency: int = 16, timeout: float = 5.0
) -> list[ServedCert]:
    """Probe all endpoints, at most ``concurrency`` handshakes at a time; results keep input order."""
    caps = HandshakeCaps(concurrency)  # one cap: the global one and each cluster's are the same
    return await caps.probe_many(endpoints, cluster_cap=concurrency, timeout=timeout)


#: handshakes in flight at once across a whole fleet in one event loop (`rotation check`)
GLOBAL_HANDSHAKES = 128


class HandshakeCaps:
    """One event loop's handshake caps: one global, plus one per cluster (its ``concurrency``).

    A handshake waits for its cluster's slot first, then for a global one, so a cluster held back by
    its own cap never sits on a global slot another cluster could use. Create and use it inside the
    loop that runs the handshakes.
    """

    def __init__(self, global_cap: int = GLOBAL_HANDSHAKES) -> None:
        self._global = asyncio.Semaphore(max(1, global_cap))
        self._clusters: dict[str, asyncio.Semaphore] = {}

    def _cluster(self, name: str, cap: int) -> asyncio.Semaphore:
        if name not in self._clusters:
            self._clusters[name] = asyncio.Semaphore(max(1, cap))
        return self._clusters[name]

    async def probe(self, endpoint: Endpoint, *, cluster_cap: int, timeout: float) -> ServedCert:
        async with self._cluster(endpoint.cluster, cluster_cap), self._global:
            return await probe(endpoint, timeout=timeout)

    async def probe_many(self, endpoints: Sequence[Endpoint], *, cluster_cap: int, timeout: float,
                         on_done: Callable[[], None] | None = None) -> list[ServedCert]:
        """Every endpoint under both caps; results keep input order. ``on_done`` after each handshake."""

        async def one(endpoint: Endpoint) -> ServedCert:
            result = await self.probe(endpoint, cluster_cap=cluster_cap, timeout=timeout)
            if on_done is not None:
                on_done()
            return result

        return list(await asyncio.gather(*(one(e) for e in endpoints)))


def probe_endpoints(
    endpoints: Sequence[Endpoint], *, concurrency: int = 16, timeout: float = 5.0
) -> list[ServedCert]:
    """Sync facade for callers outside an event loop (CLI, Celery tasks, the pipeline)."""
    if not endpoints:
        return []
    return aio.run(probe_many(endpoints, concurrency=concurrency, timeout=timeout))
