"""Bounded outbound HTTP (httpx): a total deadline per call and a cap on what a response may hold.

httpx's timeouts are per operation: a server that sends one byte every few seconds, or an
endless body, keeps a call alive forever and fills memory. Two things bound it here:

- ``deadline(seconds)``: every socket operation inside it (connect, TLS handshake, each read
  and write) waits at most for what is left of the total, through a network backend that clips
  each operation's timeout (``transport()`` installs it). Past the deadline, the next operation
  fails at once with httpx's own timeout error, so callers translate it like any other timeout.
- ``read_capped(response, limit)``: the body of a streamed response, refused by its
  Content-Length or, while streaming, at ``limit`` bytes (16 MiB by default): never more is
  held. Compressed answers are refused (we ask for ``identity``): a decoder could expand one
  chunk a thousandfold before anything is counted. ``send_capped`` sends a complete request
  (``prepared_headers``) straight to the transport and reads its answer that way.
"""

from __future__ import annotations

import contextlib
import contextvars
import ssl
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx

MAX_RESPONSE_BYTES = 16 * 1024 * 1024
IDENTITY = {"Accept-Encoding": "identity"}

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("rotation_http_deadline", default=None)


class ResponseTooLarge(Exception):  # noqa: N818 - what happened; callers translate it once
    """The response was refused at ``limit`` bytes (or by its Content-Length)."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        what = f"declares {declared} bytes" if declared is not None else "went on past the limit"
        super().__init__(f"the answer {what}; at most {format_size(limit)} is read")
        self.limit = limit


class ResponseRefused(Exception):  # noqa: N818
    """The response is of a kind we do not read (a compressed body we did not ask for)."""


def format_size(size: int) -> str:
    return f"{size // (1024 * 1024)} MiB" if size % (1024 * 1024) == 0 else f"{size} bytes"


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every socket operation of the calls inside waits at most until ``seconds`` from now."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def _clip(timeout: float | None, error: type[Exception]) -> float | None:
    until = _deadline.get()
    if until is None:
        return timeout
    left = until - time.monotonic()
    if left <= 0:
        raise error("total deadline passed")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clip(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _clip(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, _clip(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """httpcore's own sync backend, with every timeout clipped to the current deadline."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_tcp(host, port, _clip(timeout, httpcore.ConnectTimeout), local_address,
                                               socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_unix_socket(path, _clip(timeout, httpcore.ConnectTimeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def transport(verify: ssl.SSLContext, *, limits: httpx.Limits | None = None) -> httpx.HTTPTransport:
    """httpx's transport with the deadline-clipping backend (HTTP/1.1, no proxy)."""
    limits = limits or httpx.Limits(max_connections=10, max_keepalive_connections=5)
    bounded = httpx.HTTPTransport(verify=verify, limits=limits, trust_env=False)
    # httpx has no parameter for the network backend: its pool is replaced by the same pool with
    # ours (test_bounded_http fails if a new httpx stops using it).
    bounded._pool = httpcore.ConnectionPool(
        ssl_context=verify, max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
        network_backend=_Backend())
    return bounded


def prepared_headers(client: httpx.Client, auth: httpx.Auth | None = None) -> httpx.Headers:
    """The headers ``client`` would send with every request, ``auth``'s included (a login that needs no
    answer from the server, like Basic): built once for :func:`send_capped`."""
    headers = httpx.Headers(client.headers)
    if auth is not None:
        flow = auth.sync_auth_flow(httpx.Request("GET", client.base_url or "https://localhost"))
        headers.update(next(flow).headers)
        flow.close()
    return headers


def send_capped(transport: httpx.BaseTransport, request: httpx.Request, limit: int = MAX_RESPONSE_BYTES
                ) -> httpx.Response:
    """``request`` (complete: headers, login and ``timeout`` extension in it) sent straight to ``transport``
    and its answer read whole, at most ``limit`` bytes. No redirect is followed, no cookie kept: the
    per-call layers of ``httpx.Client`` cost more CPU than the request itself on a fast network."""
    streamed = transport.handle_request(request)
    try:
        streamed.request = request
        return read_capped(streamed, limit)
    finally:
        streamed.close()


def read_capped(response: httpx.Response, limit: int = MAX_RESPONSE_BYTES) -> httpx.Response:
    """A streamed ``response`` read into memory, at most ``limit`` bytes; it then answers ``.content``,
    ``.json()`` and ``.text`` like a read one."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ResponseRefused(f"a compressed answer (Content-Encoding: {encoding[:40]}) that was not asked for")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ResponseTooLarge(limit, int(declared))
    chunks, size = [], 0
    for chunk in response.stream:  # type: ignore[union-attr]  # raw bytes: identity, nothing to decode
        size += len(chunk)
        if size > limit:
            raise ResponseTooLarge(limit)
        chunks.append(chunk)
    # what Response.read() keeps (it reads without a cap); test_bounded_http guards the attribute's name
    response._content = b"".join(chunks)
    return response


__all__ = ["IDENTITY", "MAX_RESPONSE_BYTES", "ResponseRefused", "ResponseTooLarge", "deadline", "format_size",
           "prepared_headers", "read_capped", "send_capped", "transport"]
