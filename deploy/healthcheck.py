"""Container healthchecks for docker-compose.yml: exit 0 healthy, 1 unhealthy, one line saying why.

    python healthcheck.py redis               ROTATION_REDIS_URL answers PING (what beat needs)
    python healthcheck.py http URL            URL answers 200 (the webhook's /healthz, /metrics)
    python healthcheck.py worker NODE         the Celery worker NODE answers a ping through the broker
                                              (%h is this host, as in `rotation worker --hostname`)
    python healthcheck.py inventory FILE      every cluster in the inventory FILE accepts a TLS
                                              handshake on its REST URL (the simulator is up)

Each check is bounded by --timeout seconds. Nothing secret is printed: not the Redis URL (it may
hold a password), only the kind of error.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable


def redis_ping(timeout: float) -> str:
    # the service's own client: it also takes redis+sentinel:// (the master the sentinels name)
    from rotation.adapters.state.redis_client import connect

    url = os.environ.get("ROTATION_REDIS_URL", "redis://localhost:6379/0")
    client = connect(url, socket_timeout=timeout, socket_connect_timeout=timeout, retries=0)
    try:
        client.ping()
    finally:
        client.close()
    return "redis answers PING"


def http_ok(url: str, timeout: float) -> str:
    # The target is the container's own listener: no proxy from the environment, no redirect.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
    with opener.open(url, timeout=timeout) as answer:
        answer.read(65536)
        if answer.status != 200:
            raise RuntimeError(f"{url} answered HTTP {answer.status}")
    return f"{url} answers 200"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def worker_ping(node: str, timeout: float) -> str:
    from celery.utils.nodenames import host_format

    from workers.celery_app import celery_app

    name = host_format(node)  # the expansion `celery worker --hostname` applies
    replies = celery_app.control.ping(destination=[name], timeout=timeout)
    if not any(name in reply for reply in replies):
        raise RuntimeError(f"worker {name} did not answer a ping within {timeout:g}s")
    return f"worker {name} answers"


def inventory_up(path: str, timeout: float) -> str:
    import yaml

    with open(path, encoding="utf-8") as handle:
        clusters = (yaml.safe_load(handle) or {}).get("clusters") or {}
    if not clusters:
        raise RuntimeError(f"{path} names no cluster yet")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # liveness only: trust is the inventory's business
    for name, cluster in clusters.items():
        url = urllib.parse.urlsplit(cluster["url"])
        try:
            with socket.create_connection((url.hostname, url.port or 443), timeout=timeout) as raw, \
                    context.wrap_socket(raw, server_hostname=cluster.get("tls_server_name") or url.hostname):
                pass
        except OSError as exc:
            raise RuntimeError(f"cluster {name} ({url.hostname}:{url.port}): {_reason(exc)}") from None
    return f"{len(clusters)} cluster(s) of {path} accept TLS"


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--timeout", type=float, default=5.0)
    checks = parser.add_subparsers(dest="check", required=True)
    checks.add_parser("redis")
    checks.add_parser("http").add_argument("url")
    checks.add_parser("worker").add_argument("node")
    checks.add_parser("inventory").add_argument("file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    run: dict[str, Callable[[], str]] = {
        "redis": lambda: redis_ping(args.timeout),
        "http": lambda: http_ok(args.url, args.timeout),
        "worker": lambda: worker_ping(args.node, args.timeout),
        "inventory": lambda: inventory_up(args.file, args.timeout),
    }
    try:
        print(run[args.check]())
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy"; the kind of error is the reason
        print(f"unhealthy: {_reason(exc)}")
        return 1
    return 0


def _reason(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, Exception):
        return _reason(exc.reason)
    if isinstance(exc, RuntimeError):
        return str(exc)
    return type(exc).__name__ + (f" ({exc.strerror})" if isinstance(exc, OSError) and exc.strerror else "")


if __name__ == "__main__":
    sys.exit(main())
