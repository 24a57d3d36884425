"""The non-REST services a node runs: the CM page, the metrics exporter and database endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .http import Handler, Request, Response
from .nodes import NodeState
from .tls import MAIN_NAMES, utcnow

CM_PAGE = """<!doctype html>
<html><head><title>Redis Enterprise Cluster Manager (simulated)</title></head>
<body><h1>{fqdn}</h1><p>Node {uid} ({addr}). This is the rotation simulator's Cluster Manager page.</p>
</body></html>
"""


def cm_handler(fqdn: str, node: NodeState) -> Handler:
    async def handle(request: Request) -> Response:
        if request.method in ("GET", "HEAD") and request.path in ("/", "/index.html"):
            page = CM_PAGE.format(fqdn=fqdn, uid=node.uid, addr=node.addr)
            return Response.text(page, content_type="text/html; charset=utf-8")
        return Response.error(404, "not_found", f"Unknown URI {request.path}")

    return handle


def metrics_text(fqdn: str, node: NodeState) -> str:
    """Prometheus text: v2 ``node_cert_expires_in_seconds`` and v1 ``node_cert_expiration_seconds``,
    computed from the certificates this node serves right now."""
    now = utcnow()
    samples = []
    for name in MAIN_NAMES:
        seconds = int((node.served(name).not_after - now).total_seconds())
        labels = (f'cluster="{fqdn}",logical_name="{name}",node="{node.uid}",'
                  f'path="/etc/opt/redislabs/{name}_cert.pem"')
        samples.append((labels, seconds))
    lines = ["# HELP node_cert_expires_in_seconds Seconds until the certificate expires",
             "# TYPE node_cert_expires_in_seconds gauge"]
    lines += [f"node_cert_expires_in_seconds{{{labels}}} {seconds}" for labels, seconds in samples]
    lines += ["# HELP node_cert_expiration_seconds Seconds until the certificate expires (v1)",
              "# TYPE node_cert_expiration_seconds gauge"]
    lines += [f"node_cert_expiration_seconds{{{labels}}} {seconds}" for labels, seconds in samples]
    return "\n".join(lines) + "\n"


def metrics_handler(fqdn: str, node: NodeState) -> Handler:
    async def handle(request: Request) -> Response:
        if request.method in ("GET", "HEAD") and request.path in ("/", "/v2", "/metrics"):
            return Response.text(metrics_text(fqdn, node), content_type="text/plain; version=0.0.4")
        return Response.error(404, "not_found", f"Unknown URI {request.path}")

    return handle


async def _read_command(reader: asyncio.StreamReader) -> list[bytes] | None:
    line = await reader.readline()
    if not line:
        return None
    if line.startswith(b"*"):
        count = int(line[1:].strip())
        parts = []
        for _ in range(count):
            header = await reader.readline()
            if not header.startswith(b"$"):
                raise ValueError("expected a bulk string")
            size = int(header[1:].strip())
            parts.append((await reader.readexactly(size + 2))[:-2])
        return parts
    return line.strip().split()


async def serve_resp(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, refuse: Callable[[], bool]
) -> None:
    """Minimal RESP: PING -> +PONG, QUIT -> +OK and close, anything else -> -ERR."""
    while True:
        try:
            command = await _read_command(reader)
        except (ValueError, asyncio.IncompleteReadError):
            writer.write(b"-ERR Protocol error\r\n")
            await writer.drain()
            return
        if command is None or refuse():
            return
        if not command:
            continue
        verb = command[0].upper()
        if verb == b"PING":
            writer.write(b"+PONG\r\n")
        elif verb == b"QUIT":
            writer.write(b"+OK\r\n")
            await writer.drain()
            return
        else:
            writer.write(b"-ERR unknown command '" + command[0][:64] + b"'\r\n")
        await writer.drain()
