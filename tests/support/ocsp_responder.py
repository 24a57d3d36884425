"""A small, real OCSP responder for tests: HTTP on a loopback address, answers signed by a CA key.

::

    with OcspResponder(ca_cert, ca_key, host="127.31.2.9") as responder:
        responder.set_status(leaf, "revoked", revoked_at=when)   # or a serial number
        ...  # put responder.url in a certificate's AIA; POST DER OCSPRequests to it
        responder.requests                                       # serials asked about, in order

Answers GOOD / REVOKED / UNKNOWN per serial (``default`` for serials it was not told about, revoked a
minute before the question when that is ``"revoked"``),
``thisUpdate`` now, ``nextUpdate`` now + ``validity``, signed by the CA itself (responder id by
key hash). ``fault`` switches to a broken responder: ``"garbage"`` (200 with bytes that are not
OCSP), ``"unauthorized"`` (a DER ``unauthorized`` OCSPResponse), ``"wrong_key"`` (signed by a key
the CA never certified), ``"http_500"``, ``"silent"`` (reads the request and never answers, until
stopped). Requests larger than 16 KiB are refused with 413. Only ``POST`` is served.
"""

from __future__ import annotations

import datetime as dt
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

STATUSES = {"good": ocsp.OCSPCertStatus.GOOD, "revoked": ocsp.OCSPCertStatus.REVOKED,
            "unknown": ocsp.OCSPCertStatus.UNKNOWN}
FAULTS = (None, "garbage", "unauthorized", "wrong_key", "http_500", "silent")
MAX_REQUEST = 16 * 1024


class OcspResponder:
    __test__ = False

    def __init__(self, issuer: x509.Certificate | None, issuer_key: Any, host: str = "127.0.0.1", *,
                 default: str = "unknown", validity: dt.timedelta = dt.timedelta(hours=2)) -> None:
        if default not in STATUSES:
            raise ValueError(f"default must be one of {sorted(STATUSES)}")
        self.issuer, self.issuer_key, self.host = issuer, issuer_key, host
        self.default, self.validity = default, validity
        self.fault: str | None = None
        self.requests: list[int] = []
        self._statuses: dict[int, tuple[str, dt.datetime | None]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- configuration -------------------------------------------------------------------------------

    def set_status(self, cert_or_serial: x509.Certificate | int, status: str,
                   revoked_at: dt.datetime | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {sorted(STATUSES)}")
        serial = cert_or_serial if isinstance(cert_or_serial, int) else cert_or_serial.serial_number
        if status == "revoked":
            revoked_at = revoked_at or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        with self._lock:
            self._statuses[serial] = (status, revoked_at if status == "revoked" else None)

    def sign_with(self, issuer: x509.Certificate, issuer_key: Any) -> None:
        """Set the CA later (a simulator whose proxy certificate must name this URL makes its CA after)."""
        with self._lock:
            self.issuer, self.issuer_key = issuer, issuer_key

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://{self.host}:{self._server.server_address[1]}/ocsp"

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> OcspResponder:
        responder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                responder._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="ocsp-responder")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> OcspResponder:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- answering -----------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST:
            self._send(handler, 413, b"")
            return
        body = handler.rfile.read(length)
        try:
            request = ocsp.load_der_ocsp_request(body)
        except ValueError:
            self._send(handler, 200, ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.MALFORMED_REQUEST).public_bytes(serialization.Encoding.DER))
            return
        with self._lock:
            self.requests.append(request.serial_number)
            status, revoked_at = self._statuses.get(request.serial_number, (self.default, None))
            fault = self.fault
        if status == "revoked" and revoked_at is None:  # default="revoked": every certificate it does not know
            revoked_at = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=1)
        if fault == "silent":
            self._stopping.wait(30)
            return
        if fault in ("garbage", "http_500"):
            self._send(handler, 500 if fault == "http_500" else 200, b"this is not an OCSP response")
            return
        if fault == "unauthorized":
            self._send(handler, 200, ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.UNAUTHORIZED).public_bytes(serialization.Encoding.DER))
            return
        self._send(handler, 200, self._answer(request, status, revoked_at, fault == "wrong_key"))

    def _answer(self, request: ocsp.OCSPRequest, status: str, revoked_at: dt.datetime | None,
                wrong_key: bool) -> bytes:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            issuer_name_hash=request.issuer_name_hash, issuer_key_hash=request.issuer_key_hash,
            serial_number=request.serial_number, algorithm=request.hash_algorithm,
            cert_status=STATUSES[status], this_update=now, next_update=now + self.validity,
            revocation_time=revoked_at, revocation_reason=None,
        )
        with self._lock:
            issuer, issuer_key = self.issuer, self.issuer_key
        assert issuer is not None, "sign_with() first"
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, issuer)
        key = ec.generate_private_key(ec.SECP256R1()) if wrong_key else issuer_key
        return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/ocsp-response")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
