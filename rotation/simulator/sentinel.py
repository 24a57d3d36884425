"""The discovery service (Sentinel API, port 8001): TLS and plain text on one port.

``sentinel_tls_mode`` decides what a connection may be: ``required`` (TLS only), ``disabled``
(plain only) or ``allowed`` (both). The first bytes tell them apart (a TLS record starts with
0x16), so TLS is done by hand over memory BIOs: ``start_tls`` cannot take back bytes already
read. Either way the decrypted (or plain) stream is fed to the same small RESP loop.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from .services import serve_resp

TLS_RECORD = 0x16


class _TLSWriter:
    """What ``serve_resp`` needs of a StreamWriter, encrypting through an SSLObject."""

    def __init__(self, tls: ssl.SSLObject, outgoing: ssl.MemoryBIO, writer: asyncio.StreamWriter) -> None:
        self.tls, self.outgoing, self.writer = tls, outgoing, writer

    def write(self, data: bytes) -> None:
        self.tls.write(data)
        self.flush()

    def flush(self) -> None:
        pending = self.outgoing.read()
        if pending:
            self.writer.write(pending)

    async def drain(self) -> None:
        await self.writer.drain()


async def _handshake(
    tls: ssl.SSLObject, out: _TLSWriter, incoming: ssl.MemoryBIO, reader: asyncio.StreamReader, timeout: float
) -> bool:
    async with asyncio.timeout(timeout):
        while True:
            try:
                tls.do_handshake()
                out.flush()
                return True
            except ssl.SSLWantReadError:
                out.flush()
                data = await reader.read(65536)
                if not data:
                    return False
                incoming.write(data)
            except ssl.SSLError:
                out.flush()  # the alert
                await out.drain()
                return False


async def _pump_tls(
    tls: ssl.SSLObject, incoming: ssl.MemoryBIO, reader: asyncio.StreamReader, plain: asyncio.StreamReader
) -> None:
    try:
        while True:
            while True:
                try:
                    chunk = tls.read(65536)
                except ssl.SSLWantReadError:
                    break
                if not chunk:
                    plain.feed_eof()
                    return
                plain.feed_data(chunk)
            data = await reader.read(65536)
            if not data:
                break
            incoming.write(data)
    except (ssl.SSLError, OSError):
        pass
    plain.feed_eof()


async def _pump_plain(first: bytes, reader: asyncio.StreamReader, plain: asyncio.StreamReader) -> None:
    plain.feed_data(first)
    try:
        while data := await reader.read(65536):
            plain.feed_data(data)
    except OSError:
        pass
    plain.feed_eof()


async def serve_sentinel(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    mode: str,
    context: Callable[[], ssl.SSLContext],
    refuse: Callable[[], bool],
    timeout: float,
) -> None:
    """One connection: TLS or plain as ``mode`` allows; anything else is closed at once."""
    try:
        first = await asyncio.wait_for(reader.read(65536), timeout)
    except TimeoutError:
        return
    if not first:
        return
    is_tls = first[0] == TLS_RECORD
    if (is_tls and mode == "disabled") or (not is_tls and mode == "required"):
        return
    plain = asyncio.StreamReader()
    if is_tls:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context().wrap_bio(incoming, outgoing, server_side=True)
        incoming.write(first)
        out = _TLSWriter(tls, outgoing, writer)
        if not await _handshake(tls, out, incoming, reader, timeout):
            return
        pump = asyncio.ensure_future(_pump_tls(tls, incoming, reader, plain))
        try:
            await serve_resp(plain, out, refuse)  # type: ignore[arg-type]
        finally:
            pump.cancel()
        return
    pump = asyncio.ensure_future(_pump_plain(first, reader, plain))
    try:
        await serve_resp(plain, writer, refuse)
    finally:
        pump.cancel()
