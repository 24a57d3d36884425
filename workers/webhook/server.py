"""Serving the webhook: uvicorn in one process, or in several behind one port.

Several processes each listen on their own socket with ``SO_REUSEPORT``, so the kernel spreads
new connections across them by hash. With one shared listening socket (uvicorn's ``--workers``),
the first process to wake accepts a whole burst of connections: chat platforms and load balancers
keep connections alive, so one process would carry most of the load while the others idle.

The parent only supervises: it checks the inventory and the port first, restarts a process that
dies once it was serving, stops when one dies before (a broken setup, not a crash to retry), and
on SIGTERM or SIGINT stops every process.

Every process bounds its clients (``webhook_protocol``): header and body deadlines, a header
size cap and a cap on open connections. Before anything listens, the inventory's chat platforms
are read (each with a secret of real length, or the webhook does not start) and logged.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from rotation.adapters.logs import configure
from rotation.config import resolve_config_path
from rotation.core.errors import ConfigError
from rotation.usecases.context import ServiceContext, preflight
from workers.webhook.protocol import Limits

log = logging.getLogger("rotation.webhook")

STOP_TIMEOUT = 10.0


def listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    return sock


def _uvicorn_options(options: dict[str, Any]) -> dict[str, Any]:
    from workers.webhook.protocol import uvicorn_limits

    return {"log_config": None, "log_level": options["log_level"].lower(), "access_log": options["access_log"],
            "proxy_headers": False, "server_header": False, "timeout_keep_alive": 30,
            **uvicorn_limits(options["limits"])}


def _run(options: dict[str, Any], sock: socket.socket, ready: Any = None) -> None:
    import uvicorn

    from workers.webhook.app import create_app

    app = create_app(options["config_path"], threads=options["threads"], status_cache=options["status_cache"])
    if ready is not None:
        ready.set()  # listening, and the app is built: from now on an exit is a crash
    uvicorn.Server(uvicorn.Config(app, **_uvicorn_options(options))).run(sockets=[sock])


def _child(options: dict[str, Any], ready: Any) -> None:
    """One process of several (a spawned process: logging is set up again here)."""
    configure(options["log_level"], options["log_format"])
    _run(options, listening_socket(options["host"], options["port"], reuse_port=True), ready)


def serve(host: str = "127.0.0.1", port: int = 8088, *, config_path: Path | str | None = None,
          log_level: str = "INFO", log_format: str = "plain", access_log: bool = False, threads: int = 8,
          status_cache: float = 1.0, processes: int = 1, limits: Limits | None = None) -> None:
    """Run the webhook until SIGTERM/SIGINT. ConfigError when it cannot start."""
    preflight(ServiceContext(config_path=config_path))  # inventory, Redis and ROTATION_SECRET_KEY, or exit 2
    options: dict[str, Any] = {"host": host, "port": port, "config_path": str(resolve_config_path(config_path)),
               "log_level": log_level, "log_format": log_format, "access_log": access_log, "threads": threads,
               "status_cache": status_cache, "limits": limits or Limits()}
    announce(options)
    if processes == 1:
        _run(options, listening_socket(host, port, reuse_port=False))
        return
    from workers.webhook.handlers import Webhook

    # What would stop every process stops here, once, with its message: a broken inventory, no
    # encryption key, no Redis store configured, a port taken by another program.
    Webhook(options["config_path"])
    listening_socket(host, port, reuse_port=True).close()
    log.info("webhook: %d processes on http://%s:%d", processes, host, port)
    _supervise(options, processes)


def announce(options: dict[str, Any]) -> None:
    """Log which chat platforms the webhook serves; ConfigError when none (or a secret is bad)."""
    from workers.webhook.snapshot import Snapshot

    platforms = Snapshot.load(Path(options["config_path"])).platforms()
    served = [name for name, on in platforms.items() if on]
    if not served:
        raise ConfigError(f"{options['config_path']}: no chat platform configured "
                          "(chatops.slack, chatops.mattermost or chatops.generic, each with its secret)")
    limits = options["limits"]
    log.info("webhook on http://%s:%d serves %s%s; per process: %d connections at most, headers within %gs, "
             "bodies within %gs", options["host"], options["port"], ", ".join(served),
             "".join(f"; {name}: not configured" for name, on in platforms.items() if not on),
             limits.max_connections, limits.header_timeout, limits.body_timeout)


def _supervise(options: dict[str, Any], processes: int) -> None:
    spawn = multiprocessing.get_context("spawn")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    started: dict[int, tuple[multiprocessing.process.BaseProcess, Any]] = {}

    def start(slot: int) -> None:
        ready = spawn.Event()
        process = spawn.Process(target=_child, args=(options, ready), name=f"webhook-{slot}", daemon=False)
        process.start()
        started[slot] = (process, ready)

    for slot in range(processes):
        start(slot)
    failure = None
    try:
        while not stop.wait(0.5):
            for slot, (process, ready) in list(started.items()):
                if process.is_alive():
                    continue
                if not ready.is_set():
                    failure = f"webhook process {slot} exited at start (code {process.exitcode}); see its log"
                    stop.set()
                    break
                log.error("webhook process %d exited (code %s): starting it again", slot, process.exitcode)
                start(slot)
    finally:
        for process, _ in started.values():
            if process.is_alive():
                process.terminate()  # uvicorn finishes the requests in flight on SIGTERM
        deadline = time.monotonic() + STOP_TIMEOUT
        for process, _ in started.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
    if failure:
        raise ConfigError(failure)


__all__ = ["listening_socket", "serve"]
