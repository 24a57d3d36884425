"""OCSP stapling of the ``proxy`` certificate (RS 6.2.12+; sheet ``rs-8x-and-public-cas-2026.md`` §1.2).

Routes (admin only; below 6.2.12 every one answers 406 ``ocsp_unsupported_by_capability``).
Error bodies carry ``message`` (the OCSP pages' word) besides ``description``:

==========================  ==========================================================================
``GET /v1/ocsp``            the config object; ``responder_url`` is read from the proxy certificate's AIA
``PUT /v1/ocsp``            400 ``invalid_schema`` (unknown or read-only field, wrong type, out of range),
                            400 ``no_responder_url`` (enabling while the proxy certificate has none)
``GET /v1/ocsp/status``     the cached status object (``null`` fields until a query about the current
                            proxy certificate); starts a background query when the cache is older than
                            ``query_frequency`` or about another certificate
``POST /v1/ocsp/test``      a real query now: HTTP POST of a DER OCSPRequest to the responder URL, read
                            bounded (64 KiB) within ``response_timeout``; cached when stapling is on.
                            500 ``no_responder_url``; 500 ``invalid_ocsp_response`` (not DER OCSP, not
                            successful, about another serial, bad signature); 500 ``ocsp_query_failed``
                            (unreachable, timeout, HTTP error, no issuer in the chain, not loopback)
==========================  ==========================================================================

The query on the wire is :mod:`.ocsp_client`. Turning ``ocsp_functionality`` on queries at once.
Dates are HTTP dates, as in the docs' examples. ``recovery_frequency`` / ``recovery_max_tries``
are kept and validated, not acted on.

**Stapling itself is not simulated**: Python's ``ssl`` module has no server-side OCSP callback, so
the listeners cannot attach the cached response to a handshake; the status is what is simulated.
What RS does when stapling is on and the proxy certificate has no OCSP URL is undocumented (sheet
§3); the ``ocsp_without_url`` option decides: ``fail`` (default) answers every new handshake on a
TLS database endpoint with a fatal ``handshake_failure`` alert, ``accept`` serves as usual.
The simulator only queries responders on loopback addresses.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from . import api
from .http import Request, Response
from .nodes import NodeState
from .ocsp_client import MAX_HEAD, OcspFailure, parse_response, post, responder_url_of
from .tls import Material
from .versions import version_tuple

if TYPE_CHECKING:
    from .host import Simulator

OCSP_SINCE = (6, 2, 12)
DEFAULTS: dict[str, Any] = {"ocsp_functionality": False, "query_frequency": 3600, "response_timeout": 1,
                            "recovery_frequency": 60, "recovery_max_tries": 5}
RANGES = {"query_frequency": (60, 86400), "response_timeout": (1, 60), "recovery_frequency": (60, 86400),
          "recovery_max_tries": (1, 100)}
HANDSHAKE_FAILURE_ALERT = bytes([21, 3, 3, 0, 2, 2, 40])  # TLS record: alert, fatal, handshake_failure


@dataclass(frozen=True)
class OcspAnswer:
    fingerprint: str  # the proxy certificate the answer is about
    status: dict[str, str | None]
    der: bytes  # what a stapling proxy would attach
    fetched: float  # monotonic


class OcspService:
    """The cluster's OCSP config and cache; runs on the simulator's loop."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.config: dict[str, Any] = dict(DEFAULTS)
        self.cached: OcspAnswer | None = None
        self.queries = 0  # queries actually sent
        self.last_error: str | None = None
        self._refresh: asyncio.Task[None] | None = None

    @property
    def supported(self) -> bool:
        return version_tuple(self.sim.state.version)[:3] >= OCSP_SINCE

    @property
    def proxy(self) -> Material:
        return self.sim.state.certs["proxy"]

    def config_json(self) -> dict[str, Any]:
        url = responder_url_of(self.proxy.leaf)
        return {**self.config, **({"responder_url": url} if url else {})}

    def validate(self, body: Any) -> dict[str, Any]:
        """The changes ``PUT /v1/ocsp`` asks for, or :class:`OcspFailure` (nothing applied)."""
        if not isinstance(body, dict) or not body:
            raise OcspFailure(400, "invalid_schema", "Body must be a non-empty OCSP configuration object")
        for field, value in body.items():
            if field == "responder_url":
                raise OcspFailure(400, "invalid_schema",
                                  "responder_url is read-only: it comes from the proxy certificate")
            if field not in DEFAULTS:
                raise OcspFailure(400, "invalid_schema", f"Unknown OCSP configuration field {field!r}")
            if field == "ocsp_functionality":
                if not isinstance(value, bool):
                    raise OcspFailure(400, "invalid_schema", "ocsp_functionality must be a boolean")
                continue
            low, high = RANGES[field]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise OcspFailure(400, "invalid_schema", f"{field} must be an integer from {low} to {high}")
        if body.get("ocsp_functionality") is True and responder_url_of(self.proxy.leaf) is None:
            raise OcspFailure(400, "no_responder_url",
                              "Cannot enable OCSP: the proxy certificate has no OCSP responder URL")
        return dict(body)

    async def query(self) -> OcspAnswer:
        proxy = self.proxy
        url = responder_url_of(proxy.leaf)
        if url is None:
            raise OcspFailure(500, "no_responder_url", "The proxy certificate has no OCSP responder URL")
        issuer = self._issuer(proxy)
        request = ocsp.OCSPRequestBuilder().add_certificate(proxy.leaf, issuer, hashes.SHA1()).build()
        self.queries += 1
        try:
            der = await post(url, request.public_bytes(serialization.Encoding.DER),
                             float(self.config["response_timeout"]))
            fields = parse_response(der, proxy.leaf, issuer)
        except OcspFailure as exc:
            self.last_error = f"{exc.error_code}: {exc.description}"
            raise
        self.last_error = None
        return OcspAnswer(proxy.fingerprint, {"responder_url": url, **fields}, der, time.monotonic())

    async def test(self) -> dict[str, str | None]:
        answer = await self.query()
        if self.config["ocsp_functionality"]:
            self.cached = answer
        return answer.status

    def status_json(self) -> dict[str, str | None]:
        cached = self.cached
        if cached is not None and cached.fingerprint == self.proxy.fingerprint:
            return dict(cached.status)
        return {"responder_url": responder_url_of(self.proxy.leaf), "cert_status": None, "produced_at": None,
                "this_update": None, "next_update": None, "revocation_time": None}

    def refresh_if_due(self) -> None:
        """Poll in the background when stapling is on and the cache is old or about another certificate."""
        if not self.config["ocsp_functionality"] or (self._refresh is not None and not self._refresh.done()):
            return
        cached = self.cached
        if (cached is not None and cached.fingerprint == self.proxy.fingerprint
                and time.monotonic() - cached.fetched < self.config["query_frequency"]):
            return
        self._refresh = asyncio.get_running_loop().create_task(self._poll())
        self.sim._tasks.add(self._refresh)  # cancelled with the simulator
        self._refresh.add_done_callback(self.sim._tasks.discard)

    async def _poll(self) -> None:
        try:
            answer = await self.query()
        except OcspFailure:
            return  # recorded in last_error; the cache keeps what it had
        if self.config["ocsp_functionality"]:
            self.cached = answer

    def _issuer(self, proxy: Material) -> x509.Certificate:
        chain = x509.load_pem_x509_certificates(proxy.chain_pem.encode())
        for candidate in [*chain[1:], self.sim.ca.cert]:
            if candidate.subject == proxy.leaf.issuer:
                try:
                    proxy.leaf.verify_directly_issued_by(candidate)
                except (ValueError, TypeError, InvalidSignature):
                    continue
                return candidate
        raise OcspFailure(500, "ocsp_query_failed",
                          "The proxy certificate's chain holds no issuer certificate to build an OCSP request")

    # -- what new database handshakes do ----------------------------------------------------------

    def refuses_handshake(self, node: NodeState, kind: str) -> bool:
        if not kind.startswith("db:") or not self.config["ocsp_functionality"]:
            return False
        if self.sim.slots.options.ocsp_without_url != "fail" or not self.sim._database(kind).tls:
            return False
        return responder_url_of(node.served("proxy").leaf) is None

    @staticmethod
    async def refuse(conn: socket.socket) -> None:
        """Read the ClientHello, answer a fatal handshake_failure alert (the caller closes)."""
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.sock_recv(conn, MAX_HEAD), 5.0)
            await loop.sock_sendall(conn, HANDSHAKE_FAILURE_ALERT)
        except (OSError, TimeoutError):
            pass


# -- routes -------------------------------------------------------------------------------------------


def _error(failure: OcspFailure) -> Response:
    return Response.json({"error_code": failure.error_code, "description": failure.description,
                          "message": failure.description}, failure.status)


def _unsupported() -> Response:
    return _error(OcspFailure(406, "ocsp_unsupported_by_capability", "Not all nodes support OCSP capability"))


@api.route("GET", "/v1/ocsp", "update")
async def get_ocsp(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    return Response.json(sim.ocsp.config_json()) if sim.ocsp.supported else _unsupported()


@api.route("PUT", "/v1/ocsp", "update")
async def put_ocsp(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    service = sim.ocsp
    if not service.supported:
        return _unsupported()
    try:
        changes = service.validate(api._json_body(request))
    except OcspFailure as exc:
        return _error(exc)
    enabling = changes.get("ocsp_functionality") is True and not service.config["ocsp_functionality"]
    service.config.update(changes)
    if enabling:
        try:
            service.cached = await service.query()
        except OcspFailure:
            pass  # stapling stays on; the failure shows in _sim state and in the status staying empty
    return Response.json(service.config_json())


@api.route("GET", "/v1/ocsp/status", "update")
async def get_ocsp_status(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    if not sim.ocsp.supported:
        return _unsupported()
    sim.ocsp.refresh_if_due()
    return Response.json(sim.ocsp.status_json())


@api.route("POST", "/v1/ocsp/test", "update")
async def post_ocsp_test(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    if not sim.ocsp.supported:
        return _unsupported()
    try:
        return Response.json(await sim.ocsp.test())
    except OcspFailure as exc:
        return _error(exc)


@api.route("GET", "/_sim/ocsp", "update", control=True)
async def get_sim_ocsp(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    """How many queries were sent, the last failure, what is cached (for tests and demos)."""
    cached = sim.ocsp.cached
    return Response.json({"queries": sim.ocsp.queries, "last_error": sim.ocsp.last_error,
                          "cached_for": cached.fingerprint if cached else None,
                          "cached_status": cached.status if cached else None})
