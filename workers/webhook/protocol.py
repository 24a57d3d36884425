"""uvicorn's HTTP protocol (httptools) with what it lacks against slow and greedy clients.

uvicorn times out idle keep-alive connections, but not a connection that never finishes its
headers or its body: 3,000 connections sending half a request line held 3,016 descriptors for
over a minute. Here each connection has, per request:

- a header deadline, from the connection's start (for a later request on a kept-alive
  connection: from the first byte after the previous one) to the end of its headers, and a
  cap on header bytes (431 and close past it; httptools has no limit): counted per read while
  the headers go on, and again when they end (a read that also holds their end was not
  counted); a chunked body's trailer fields count too;
- a body deadline, from the end of the headers to the end of the body;
- a cap on open connections per process: one over it is closed as soon as it is accepted;
- a write deadline: an answer that waits for the client to read (the socket buffers full: uvicorn
  waits for them to drain without a timeout) waits at most ``write_timeout``, then the connection
  is dropped;
- framing that httptools lets through and RFC 9112 refuses, answered and closed before the app
  sees the request: an HTTP version other than 1.0/1.1 (505), a Host missing from HTTP/1.1,
  repeated or malformed (400), Transfer-Encoding in HTTP/1.0 (400) or with a coding other than
  chunked, which is not applied (501: the signed bytes would not be the bytes acted on), an
  upgrade (400: none is served, and httptools would leave the body and what follows unread);
  an HTTP/1.0 client's ``Expect: 100-continue`` is ignored (it knows no interim answer), and a
  chunked body's trailer fields never reach the app's headers.

A request refused while an earlier one on the connection is still being answered (pipelined)
waits for that answer: answers go in order, the refusal last, then the connection closes.

A connection past a deadline is closed: its descriptor is freed, and a handler still reading
the body sees the disconnect (the webhook answers 400 to no one and logs nothing).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEADER_BYTES = 16 * 1024
_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
# RFC 3986 host (IP-literal, IPv4 or reg-name) and optional port
_HOST = re.compile(rb"(\[[0-9A-Za-z:.%_~-]+\]|[0-9A-Za-z._~!$&'()*+,;=%-]*)(:[0-9]*)?")


def _refusal(status: str, text: str) -> bytes:
    return (f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {len(text)}\r\n"
            f"connection: close\r\n\r\n{text}").encode()


def _framing_refusal(version: str, headers: list[tuple[bytes, bytes]], upgrade: bool) -> bytes | None:
    """The answer to a request whose framing or version httptools accepts but RFC 9112 does not."""
    if version not in ("1.0", "1.1"):
        return _refusal("505 HTTP Version Not Supported", "only HTTP/1.0 and 1.1 are served")
    if upgrade:
        return _refusal("400 Bad Request", "protocol upgrades are not served")
    hosts = [value for name, value in headers if name == b"host"]
    if len(hosts) > 1 or (version == "1.1" and not hosts) or (hosts and not _HOST.fullmatch(hosts[0])):
        return _refusal("400 Bad Request", "exactly one valid Host header is required")
    codings = [c.strip().lower() for name, value in headers if name == b"transfer-encoding" for c in value.split(b",")]
    if codings and version == "1.0":
        return _refusal("400 Bad Request", "Transfer-Encoding in an HTTP/1.0 request")
    if codings and codings != [b"chunked"]:
        return _refusal("501 Not Implemented", "the only transfer coding served is chunked")
    return None


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 5.0  # seconds for a request's headers
    body_timeout: float = 5.0  # seconds for its body, once the headers are in
    max_connections: int = 1000  # open connections per process
    max_header_bytes: int = MAX_HEADER_BYTES
    write_timeout: float = 5.0  # seconds an answer may wait for a client that reads none of it


def bounded_protocol(limits: Limits) -> type[asyncio.Protocol]:
    """The protocol class to give uvicorn (``Config(http=…)``)."""
    return type("BoundedHttpToolsProtocol", (_Bounded,), {"limits": limits})


class _HeadersTooLarge(Exception):  # noqa: N818 - raised in a parser callback to stop the parser
    pass


class _Refused(Exception):  # noqa: N818 - likewise, for a request whose framing is refused
    pass


class _Bounded(HttpToolsProtocol):
    limits: Limits = Limits()
    _timer: asyncio.TimerHandle | None = None
    _write_timer: asyncio.TimerHandle | None = None
    _in_headers = True
    _header_bytes = 0
    _too_large = False
    _refused: bytes | None = None  # the answer to a request refused at the end of its headers
    _before: Any = None  # the request cycle before the one being parsed (None: it is the first)
    _owed: bytes | None = None  # a refusal waiting for the answers to the requests before it
    # A chunked body ends with trailer fields, which httptools gathers whole and uvicorn adds to the
    # request's headers: they count against the same cap, as the reads that bring them go by (what
    # is not body, from the end of the headers) and once parsed.
    _in_body = False
    _body_bytes = 0
    _not_body = 0
    _fields = 0
    _field_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            transport.close()  # over the cap: nothing read, the descriptor goes at once
            return
        self._arm(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.resume_writing()  # the write deadline goes with the connection
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            # close() would wait for the buffer to drain, that is for the client: abort drops it
            self._write_timer = self.loop.call_later(self.limits.write_timeout, self.transport.abort)

    def resume_writing(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        super().resume_writing()

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing() or self._owed is not None:
            return
        if self._timer is None:
            # Between requests: any byte cancels uvicorn's keep-alive timer, and the parser skips
            # CR/LF without beginning a request, so the header deadline starts here, not there.
            self._arm(self.limits.header_timeout)
        reading_headers, in_body, body_bytes = self._in_headers, self._in_body, self._body_bytes
        super().data_received(data)
        if reading_headers and self._in_headers:  # still inside the headers after this chunk
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                self._answer_too_large()
        elif in_body and self._in_body:  # still inside the body: framing and trailers are what is not body
            self._not_body += len(data) - (self._body_bytes - body_bytes)
            if self._not_body > self.limits.max_header_bytes:
                self._answer_too_large()

    def _answer_too_large(self) -> None:
        self._answer_last(_TOO_LARGE)

    def _answer_last(self, answer: bytes) -> None:
        """Refuse the request being parsed and close: at once, or after the answers still owed to the
        requests before it (written then, a refusal first would be read as theirs)."""
        if self.transport.is_closing() or self._owed is not None:
            return
        cycle = self.cycle
        if cycle is not None and cycle is not self._before:  # this request got as far as the app
            queued = [entry for entry in self.pipeline if entry[0] is cycle]
            for entry in queued:
                self.pipeline.remove(entry)  # behind another request: it never runs
            owed = bool(queued)  # else its app is running, and sees the disconnect
        else:
            owed = cycle is not None and not cycle.response_complete
        if owed:
            self._owed = answer
        else:
            self.transport.write(answer)
            self.transport.close()

    def on_response_complete(self) -> None:
        if self._owed is not None and not self.pipeline and not self.transport.is_closing():
            self.transport.write(self._owed)  # the last answer owed is out
            self.transport.close()
        super().on_response_complete()

    def on_message_begin(self) -> None:
        self._before = self.cycle
        super().on_message_begin()
        self._in_headers, self._header_bytes = True, 0
        if self._timer is None:  # a later request on a kept-alive connection; the first has its timer
            self._arm(self.limits.header_timeout)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        # The headers as parsed, whatever reads brought them: before the app sees the request.
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.limits.max_header_bytes:
            self._too_large = True
            raise _HeadersTooLarge  # the parser stops; uvicorn answers through send_400_response
        version = self.parser.get_http_version()
        self._refused = _framing_refusal(version, self.headers, self.parser.should_upgrade())
        if self._refused is not None:
            raise _Refused  # likewise: the app never sees the request
        if version == "1.0":
            self.expect_100_continue = False  # RFC 9110 10.1.1: ignored from HTTP/1.0
        self._in_body, self._not_body, self._fields, self._field_bytes = True, 0, len(self.headers), size
        self._arm(self.limits.body_timeout)
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if self._refused is not None:
            self._answer_last(self._refused)
        elif not self._too_large:
            self._answer_last(_refusal("400 Bad Request", msg))
        else:
            self._answer_too_large()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        trailers = sum(len(name) + len(value) + 4 for name, value in self.headers[self._fields:])
        if self._field_bytes + trailers > self.limits.max_header_bytes:
            self._too_large = True
            raise _HeadersTooLarge  # before the app is told that the body is complete
        # Then dropped: uvicorn adds them to the request's headers, where they would stand in for the
        # header section's (a signature or token sent after the body). RFC 9110 6.5.1: not merged.
        del self.headers[self._fields:]
        self._disarm()
        super().on_message_complete()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self.transport.close()


def uvicorn_limits(limits: Limits) -> dict[str, Any]:
    """The uvicorn settings that go with the protocol (h11's own header cap, should it be used)."""
    return {"http": bounded_protocol(limits), "limit_concurrency": limits.max_connections,
            "h11_max_incomplete_event_size": limits.max_header_bytes}


__all__ = ["Limits", "MAX_HEADER_BYTES", "bounded_protocol", "uvicorn_limits"]
