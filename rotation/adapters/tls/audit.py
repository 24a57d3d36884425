"""Asyncio handshake matrix: what every endpoint really accepts.

Per endpoint: one handshake per TLS version (1.0, 1.1, 1.2, 1.3), each with a client context
pinned to that version (min = max) and ``ALL:@SECLEVEL=0`` so the client *can* offer old
versions and weak suites (OpenSSL 3 refuses TLS 1.0/1.1 below security level 0); then, when
TLS 1.2 was accepted, one TLS 1.2 handshake per cipher suite, each offering that suite alone.
Suites are limited to those OpenSSL offers at level 0 whose authentication matches the served
key (``auth-rsa`` or ``auth-ecdsa``) plus the anonymous ones (``auth-null``): others (PSK, SRP,
DSS, the other key type) cannot be negotiated with that certificate.

A handshake that fails after the TCP connection was accepted counts as *refused*, whatever
the alert (OpenSSL 3 servers answer old versions with ``internal_error``, Python servers just
reset). A failed TCP connect makes the version *untested* and, when every version is, the
endpoint *unreachable*. Because "refused" is only meaningful when the client can offer the
version, :func:`self_test` runs the matrix once per process against a local server that
accepts only TLS 1.0; if that server is not seen as "1.0 only", 1.0 and 1.1 are reported as
untested instead of refused.

Handshakes run on ``concurrency`` worker tasks pulling from one queue (never one task per
handshake), each with ``timeout`` for the connect and for the handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import os
import ssl
import tempfile
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rotation.adapters.tls import aio
from rotation.core.model import CertName
from rotation.core.tls_drift import AuditTarget, EndpointTLS, VersionProbe
from rotation.core.tls_rules import AUDITED_VERSIONS, key_type_of
from rotation.core.topology import ClusterView, not_a_host

log = logging.getLogger(__name__)

_PINNED = {"1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1, "1.2": ssl.TLSVersion.TLSv1_2,
           "1.3": ssl.TLSVersion.TLSv1_3}
_SCANNED_AUTH = {"rsa": {"auth-rsa", "auth-null"}, "ecdsa": {"auth-ecdsa", "auth-null"}}
OLD_VERSIONS = ("1.0", "1.1")


@dataclass(frozen=True)
class AuditOptions:
    concurrency: int = 16
    timeout: float = 5.0
    scan_ciphers: bool = True
    self_test: bool = True  # check once per process that the client can really offer TLS 1.0
    # progress: told how many handshakes each phase plans, and of each one done
    on_planned: Callable[[int], None] | None = field(default=None, compare=False)
    on_done: Callable[[], None] | None = field(default=None, compare=False)


# --- client contexts ------------------------------------------------------------------------


def _client(version: str, ciphers: str) -> ssl.SSLContext | None:
    """A non-verifying client pinned to ``version``; None when this OpenSSL cannot build it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1/TLSv1_1 are deprecated names
            context.minimum_version = context.maximum_version = _PINNED[version]
        context.set_ciphers(ciphers)
    except (ValueError, ssl.SSLError) as exc:
        log.debug("cannot build a TLS %s client context: %s", version, exc)
        return None
    return context


@functools.cache
def version_context(version: str) -> ssl.SSLContext | None:
    return _client(version, "ALL:@SECLEVEL=0")


@functools.cache
def suite_context(suite: str) -> ssl.SSLContext | None:
    return _client("1.2", f"{suite}:@SECLEVEL=0")


@functools.cache
def scannable_suites() -> tuple[tuple[str, str], ...]:
    """``(name, auth)`` of every TLS <= 1.2 suite this client can offer at security level 0."""
    context = version_context("1.2")
    if context is None:
        return ()
    return tuple((c["name"], c["auth"]) for c in context.get_ciphers() if c["protocol"] != "TLSv1.3")


# --- single handshakes ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Handshake:
    accepted: bool | None
    version: str | None = None
    cipher: str | None = None
    leaf_der: bytes | None = None
    error: str | None = None


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), timeout=1.0)
    except (OSError, ssl.SSLError, TimeoutError):
        # a peer that reads nothing would keep the socket for asyncio's SSL shutdown timeout (30 s)
        writer.transport.abort()


async def handshake(target: AuditTarget, context: ssl.SSLContext, timeout: float) -> _Handshake:
    """Connect, then upgrade: a failed connect is "unreachable", a failed upgrade is "refused"."""
    if problem := not_a_host(target.host, target.sni):
        return _Handshake(None, error=f"unreachable: {problem}")
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(target.host, target.port)
    except (OSError, TimeoutError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        return _Handshake(None, error=f"unreachable: {reason}")
    try:
        async with asyncio.timeout(timeout):
            await writer.start_tls(context, server_hostname=target.sni or target.host,
                                   ssl_handshake_timeout=timeout)
        ssl_object = writer.get_extra_info("ssl_object")
        cipher = ssl_object.cipher()
        return _Handshake(True, ssl_object.version(), cipher[0] if cipher else None,
                          ssl_object.getpeercert(binary_form=True))
    except TimeoutError:
        return _Handshake(False, error=f"no handshake within {timeout:g}s")
    except ssl.SSLError as exc:
        return _Handshake(False, error=f"refused: {exc.reason or exc}")
    except (OSError, EOFError) as exc:
        return _Handshake(False, error=f"refused: {exc.__class__.__name__}")
    finally:
        await _close(writer)


async def plaintext_accepted(target: AuditTarget, timeout: float) -> bool | None:
    """Does the (RESP) service answer a plain ``PING``? None when it cannot be reached."""
    if not_a_host(target.host):
        return None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(target.host, target.port)
    except (OSError, TimeoutError):
        return None
    try:
        async with asyncio.timeout(timeout):
            writer.write(b"PING\r\n")
            await writer.drain()
            line = await reader.readline()
        return line[:1] in (b"+", b"-")  # an error reply is still a plain-text answer
    except (OSError, TimeoutError, EOFError, ValueError):  # ValueError: a "line" past the reader's 64 KiB
        return False
    finally:
        await _close(writer)


# --- the matrix -----------------------------------------------------------------------------


@dataclass
class _Work:
    """Results of one endpoint as the workers fill them in."""

    target: AuditTarget
    versions: dict[str, VersionProbe] = field(default_factory=dict)
    key_type: str | None = None
    suites: list[str] = field(default_factory=list)
    tried: int = 0
    scanned: bool = False
    plaintext: bool | None = None

    def result(self) -> EndpointTLS:
        probes = tuple(self.versions[v] for v in AUDITED_VERSIONS if v in self.versions)
        error = None
        if probes and all(p.accepted is None for p in probes) and self.plaintext is None:
            error = next((p.error for p in probes if p.error and p.error.startswith("unreachable")), "unreachable")
        return EndpointTLS(self.target, probes, tuple(sorted(self.suites)) if self.scanned else None, self.tried,
                           self.key_type, self.plaintext, error)


async def _pool(jobs: Sequence[Callable[[], Awaitable[None]]], concurrency: int, options: AuditOptions) -> None:
    queue: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    if options.on_planned is not None:
        options.on_planned(len(jobs))

    async def worker() -> None:
        while True:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await job()
            if options.on_done is not None:
                options.on_done()

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(jobs))))))


def _version_job(work: _Work, version: str, timeout: float, can_offer: bool) -> Callable[[], Awaitable[None]]:
    async def job() -> None:
        context = version_context(version)
        if context is None or not can_offer:
            work.versions[version] = VersionProbe(version, None, error="this client cannot offer it")
            return
        result = await handshake(work.target, context, timeout)
        work.versions[version] = VersionProbe(version, result.accepted, result.cipher, result.error)
        if result.leaf_der and work.key_type is None:
            with contextlib.suppress(ValueError):
                work.key_type = key_type_of(x509.load_der_x509_certificate(result.leaf_der).public_key())

    return job


def _suite_job(work: _Work, suite: str, timeout: float) -> Callable[[], Awaitable[None]]:
    async def job() -> None:
        context = suite_context(suite)
        if context is None:
            return
        work.tried += 1
        if (await handshake(work.target, context, timeout)).accepted:
            work.suites.append(suite)

    return job


def _plaintext_job(work: _Work, timeout: float) -> Callable[[], Awaitable[None]]:
    async def job() -> None:
        work.plaintext = await plaintext_accepted(work.target, timeout)

    return job


async def audit_many(targets: Sequence[AuditTarget], options: AuditOptions = AuditOptions()) -> list[EndpointTLS]:
    """The matrix for every target; results keep the input order."""
    old_ok = (await self_test(options.timeout)) if options.self_test else True
    works = [_Work(t) for t in targets]
    jobs: list[Callable[[], Awaitable[None]]] = []
    for work in works:
        for version in AUDITED_VERSIONS:
            jobs.append(_version_job(work, version, options.timeout, old_ok or version not in OLD_VERSIONS))
        if work.target.plane == "sentinel":
            jobs.append(_plaintext_job(work, options.timeout))
    await _pool(jobs, options.concurrency, options)
    if options.scan_ciphers:
        jobs = []
        for work in works:
            tls12 = work.versions.get("1.2")
            if tls12 is None or not tls12.accepted:
                continue
            work.scanned = True
            wanted = _SCANNED_AUTH.get(work.key_type or "", {"auth-rsa", "auth-ecdsa", "auth-null"})
            jobs += [_suite_job(work, name, options.timeout) for name, auth in scannable_suites() if auth in wanted]
        await _pool(jobs, options.concurrency, options)
    return [w.result() for w in works]


def audit_endpoints(targets: Sequence[AuditTarget], options: AuditOptions = AuditOptions()) -> list[EndpointTLS]:
    """Sync facade for callers outside an event loop (CLI, Celery tasks)."""
    return aio.run(audit_many(targets, options)) if targets else []


def targets_of(view: ClusterView) -> list[AuditTarget]:
    """Every listener of the cluster: cm/api/metrics (control), TLS databases (data), discovery."""
    targets = []
    for cert_name, plane in ((CertName.CM, "control"), (CertName.API, "control"),
                             (CertName.METRICS_EXPORTER, "control"), (CertName.PROXY, "data")):
        for e in view.endpoints(cert_name):
            targets.append(AuditTarget(plane, str(cert_name), e.node, e.host, e.port, e.sni))
    for node, host, port in view.discovery_endpoints():
        targets.append(AuditTarget("sentinel", "discovery", node, host, port, view.fqdn))
    return targets


# --- self-test ------------------------------------------------------------------------------


def _tls10_only_server_context() -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rotation tls audit self-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1)).sign(key, hashes.SHA256()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    fd, path = tempfile.mkstemp(prefix="rotation-selftest-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
            fh.write(cert.public_bytes(serialization.Encoding.PEM))
        context.load_cert_chain(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return context


_SELF_TEST: dict[str, bool] = {}


async def self_test(timeout: float = 5.0) -> bool:
    """Once per process: does the matrix see a local TLS-1.0-only server as exactly that?"""
    if "ok" in _SELF_TEST:
        return _SELF_TEST["ok"]
    try:
        context = _tls10_only_server_context()
    except (ValueError, ssl.SSLError) as exc:
        log.warning("TLS audit self-test: this OpenSSL cannot serve TLS 1.0 (%s)", exc)
        _SELF_TEST["ok"] = False
        return False

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=context, ssl_handshake_timeout=timeout)
    try:
        port = server.sockets[0].getsockname()[1]
        (seen,) = await audit_many([AuditTarget("control", "self-test", "-", "127.0.0.1", port)],
                                   AuditOptions(concurrency=4, timeout=timeout, scan_ciphers=False, self_test=False))
    finally:
        server.close()
        await server.wait_closed()
    ok = seen.accepted() == ["1.0"] and all(p.accepted is False for p in seen.versions if p.version != "1.0")
    if not ok:
        log.warning("TLS audit self-test failed (saw %s): TLS 1.0/1.1 results are reported as untested",
                    {p.version: p.accepted for p in seen.versions})
    _SELF_TEST["ok"] = ok
    return ok


__all__ = ["AuditOptions", "audit_endpoints", "audit_many", "handshake", "self_test", "targets_of"]
