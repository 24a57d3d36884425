"""ClusterSimulator: binds every node's listeners and exposes the thread-safe control API.

Each listener is a plain accept loop: an accepted socket waits ``connect_delay`` with its bytes
(the ClientHello) still in the kernel, then picks the node's *current* context for its
certificate name and only then becomes a stream, TLS from the first byte. New handshakes see a
new certificate at once, open connections keep theirs. The loop is uvloop's when installed
(its TLS layer is compiled; asyncio's is pure Python), else asyncio's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import errno
import json
import os
import re
import secrets
import signal
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from . import api, bdb_api, crdb_api, health  # noqa: F401 - the route modules register their routes
from .auth import Accounts, peer_certificate
from .bdb_routes import DatabaseCertificates
from .cluster import ClusterState, NthFault, SimulatorConfig
from .crdb import Crdbs
from .http import Handler, Request, Response, serve_http
from .nodes import Database, NodeState
from .ocsp import OcspService
from .replication import Replication
from .sentinel import serve_sentinel
from .services import cm_handler, metrics_handler, serve_resp
from .slots import CertControls, Slots
from .tls import CertificateAuthority, utcnow
from .users import CertificateLogin

T = TypeVar("T")

#: listener kind -> certificate it presents (database kinds are "db:<uid>")
LISTENER_CERTS = {"api": "api", "cm": "cm", "metrics_exporter": "metrics_exporter"}


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (a dependency on Linux): its TLS transport costs far less CPU."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - other platforms
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _certificate_change(request: Request) -> bool:
    """A request that changes a certificate (RS answers those 409 when a node did not take the change)."""
    path = request.path.rstrip("/")
    if request.method == "PUT":
        return path in ("/v1/cluster/certificates", "/v1/cluster/update_cert")
    dry_run = request.query.get("dry_run", ["0"])[-1].lower() not in ("0", "false", "no")
    return request.method in ("POST", "DELETE") and bool(re.fullmatch(r"/v1/bdbs/\d+/certificates", path)) \
        and not dry_run


class SimulatorError(RuntimeError):
    """The simulator could not start or was used wrongly."""


class PortInUseError(SimulatorError):
    """A listener could not bind because the address/port is taken."""


class ClusterSimulator(CertControls):
    """A simulated RS cluster on loopback addresses. See ``rotation.simulator`` for the API."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        cfg = self.config
        now = utcnow()
        not_before = cfg.initial_not_before or now - dt.timedelta(hours=1)
        self.ca = CertificateAuthority.create(cfg.fqdn, not_before, now + cfg.expires_in * 10)
        self.state = ClusterState(cfg, self.ca)
        self.slots = Slots(cfg, self.ca, self.state)  # INE, ldap_client, planted names, issue-14 options
        self.ocsp = OcspService(self)
        self.admin_username = f"admin@{cfg.fqdn}"
        self.viewer_username = f"viewer@{cfg.fqdn}"
        self.admin_password = cfg.admin_password or secrets.token_urlsafe(18)
        self.viewer_password = cfg.viewer_password or secrets.token_urlsafe(18)
        self.accounts = Accounts(self.state)  # users (uid 1 admin, 2 viewer), tokens, certificate login
        self.accounts.add(self.admin_username, "admin", "admin", password=self.admin_password)
        self.accounts.add(self.viewer_username, "viewer", "cluster_viewer", password=self.viewer_password)
        self.cert_login = CertificateLogin(self)  # enable(), rladmin(): thread-safe controls
        self.database_certs = DatabaseCertificates(self)  # install(), served_fingerprint(), stale()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._thread: threading.Thread | None = None
        # (node uid, "kind:port") -> the listening socket (the loop accepts on it: _accept_ready)
        self._listeners_by_key: dict[tuple[int, str], socket.socket] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # accepted sockets whose connection task has not started: a stop that cancels that task closes them
        self._unstarted: set[socket.socket] = set()
        self._accepted: dict[tuple[int, str], int] = {}  # (node uid, listener kind) -> connections
        self._rest_connections: dict[int, int] = {}  # node uid -> connections that carried REST requests
        self._rest_requests: dict[tuple[str, str], int] = {}  # (method, path) -> requests received
        # (node uid, listener kind, accepted at, TLS ready at or None), monotonic: the simulator's own clock
        self._timeline: deque[tuple[int, str, float, float | None]] = deque(maxlen=4096)
        self._stop_event: asyncio.Event | None = None
        self.replication = Replication(self)  # Replica Of links and mTLS of database listeners
        self.crdbs = Crdbs(self)  # Active-Active databases this cluster takes part in

    # -- read-only properties ------------------------------------------------------------------

    @property
    def node_addresses(self) -> list[str]:
        return self.config.addresses

    @property
    def ca_pem(self) -> str:
        return self.ca.pem

    @property
    def ca_path(self) -> Path:
        return self.config.state_dir / "cluster-ca.pem"

    @property
    def password_path(self) -> Path:
        return self.config.state_dir / "admin-password"

    @property
    def received_update_bodies(self) -> list[bytes]:
        return self._call(lambda: list(self.state.received_update_bodies))

    def served_fingerprint(self, uid: int, cert_name: str) -> str:
        """SHA-256 (hex) of what node ``uid`` would present for ``cert_name`` on a new handshake."""
        return self._call(lambda: self.state.node(uid).served(cert_name).fingerprint)

    def accepted_connections(self, uid: int, listener: str = "api") -> int:
        """TCP connections node ``uid``'s ``listener`` ("api", "cm", "db:<uid>", ...) has accepted."""
        return self._call(lambda: self._accepted.get((uid, listener), 0))

    def rest_connections(self, uid: int = 1) -> int:
        """Connections to node ``uid``'s REST API that carried at least one request (a new TLS session each)."""
        return self._call(lambda: self._rest_connections.get(uid, 0))

    def rest_requests(self, path: str, method: str = "GET") -> int:
        """REST requests received for ``path`` (no query string), every node together."""
        return self._call(lambda: self._rest_requests.get((method, path), 0))

    def connection_timeline(self, listener: str | None = None) -> list[tuple[float, float | None]]:
        """(accepted, stream ready) per connection, oldest first, on the simulator's monotonic clock:
        tests assert how handshakes overlapped without timing anything themselves."""
        return self._call(lambda: [(accepted, ready) for _, kind, accepted, ready in self._timeline
                                   if listener is None or kind == listener])

    def cluster_cert_pem(self, cert_name: str) -> str:
        return self._call(lambda: self.state.certs[cert_name].chain_pem)

    def inventory_entry(self, name: str = "sim", login: str = "basic") -> dict[str, Any]:
        """This cluster as an entry of the project's YAML inventory (``clusters: {name: entry}``).

        ``login``: ``basic`` (username + password file), ``certificate`` (``client_cert_file`` +
        ``client_key_file`` written by ``cert_login.enable()``) or ``both``."""
        cfg = self.config
        if login not in ("basic", "certificate", "both"):
            raise ValueError("login must be basic, certificate or both")
        client = self.accounts.client_login
        if login != "basic" and client is None:
            raise SimulatorError("certificate login is not set up: call cert_login.enable() first")
        credentials: dict[str, str] = {}
        if login != "certificate":
            credentials |= {"username": self.admin_username, "password_file": str(self.password_path.resolve())}
        if client is not None and login != "basic":
            credentials |= {"client_cert_file": str(client.cert_path.resolve()),
                            "client_key_file": str(client.key_path.resolve())}
        return {
            "url": f"https://{self.node_addresses[0]}:{cfg.api_port}",
            "tls_server_name": cfg.fqdn,
            **credentials,
            "verify": str(self.ca_path.resolve()),
            "fqdn": cfg.fqdn,
            "ports": {"cm": cfg.cm_port, "api": cfg.api_port, "metrics_exporter": cfg.metrics_port,
                      # the inventory's default discovery port is 8001: name it only when it differs
                      **({"discovery": cfg.sentinel_port} if cfg.sentinel_port not in (None, 8001) else {})},
            "certificates": {name: {} for name in ("cm", "api", "proxy", "syncer", "metrics_exporter")},
        }

    # -- faults ----------------------------------------------------------------------------------

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        self._call(lambda: self.state.fail_next(count, status))

    def fail_requests(self, count: int = 1, status: int = 503, *, method: str | None = None,
                      path: str | None = None, location: str | None = None) -> None:
        """The next ``count`` REST requests matching ``method`` / the ``path`` prefix answer ``status``
        (a 3xx redirects to ``location``); nothing is applied. Cleared by ``clear_faults``."""
        self._call(lambda: self.state.fail_requests(count, status, method, path, location))

    def fail_nth(self, n: int, kind: str, *, hang_seconds: float = 2.0) -> None:
        """The ``n``-th REST request from now gets ``kind``: "503", "409" (to a certificate change: applied
        on the first node only), "500-html" (no JSON), "reset" (done, connection dropped unanswered) or
        "hang" (done, unanswered for ``hang_seconds``, then dropped). Cleared by ``clear_faults``."""
        self._call(lambda: self.state.fail_nth(n, kind, hang_seconds))

    def log_requests(self) -> None:
        """From now on note every REST request (``/_sim/`` aside), in order: see :meth:`logged_requests`."""
        self._call(lambda: setattr(self.state, "request_log", []))

    def logged_requests(self) -> list[str]:
        """``"METHOD target"`` of every REST request since :meth:`log_requests`, oldest first."""
        return self._call(lambda: list(self.state.request_log or ()))

    def slow(self, seconds: float) -> None:
        self._call(lambda: setattr(self.state, "slow_seconds", max(0.0, float(seconds))))

    def stale(self, uid: int, seconds: float | None = None, cert_name: str | None = None) -> None:
        self._call(lambda: self.state.stale(uid, seconds, cert_name))

    def clear_faults(self) -> None:
        """Clear fail_next, slow, stale and TLS overrides; nodes that are down stay down (use node_down(uid, False))."""
        self._call(self.state.clear_faults)

    def override_node_tls(
        self, uid: int, listener: str, min_version: str | None = None, ciphers: str | None = None
    ) -> None:
        """Plant drift: node ``uid``'s ``listener`` ("api", "cm", "metrics_exporter", "proxy",
        "db:<uid>", "sentinel") uses this minimum / cipher list whatever GET /v1/cluster says."""
        self._call(lambda: self.state.override_node_tls(uid, listener, min_version, ciphers))

    def restart_sentinel(self, uid: int | None = None) -> None:
        """``supervisorctl restart sentinel_service`` on node ``uid`` (None: every node)."""
        self._call(lambda: self.state.restart_sentinel(uid))

    def cluster_settings(self) -> dict[str, Any]:
        """The settings GET /v1/cluster reports (a copy)."""
        return self._call(lambda: dict(self.state.settings))

    @property
    def received_cluster_updates(self) -> list[tuple[bool, dict[str, Any]]]:
        """Every ``PUT /v1/cluster`` received, oldest first: ``(dry_run, body)``."""
        def decode(body: bytes) -> Any:
            try:
                return json.loads(body)
            except ValueError:
                return body.decode("utf-8", "replace")

        return self._call(lambda: [(dry, decode(body)) for dry, body in self.state.received_cluster_updates])

    def node_down(self, uid: int, down: bool = True) -> None:
        if self._loop is None:  # not started: only flip the flag, start() skips down nodes
            self.state.node(uid).down = down
            return
        self._run(self.set_node_down(uid, down))

    async def set_node_down(self, uid: int, down: bool = True) -> None:
        """Close (or re-open) the node's listeners; on return optionally re-sync its certificates."""
        node = self.state.node(uid)
        if down == node.down:
            return
        if down:
            node.down = True
            await self._close_listeners([k for k in self._listeners_by_key if k[0] == uid])
            return
        if self.config.resync_on_return:
            self.state.resync(node)
        await self._bind_node(node)
        node.down = False

    async def apply_fault(self, action: str, **kwargs: Any) -> None:
        """One fault by name (the ``POST /_sim/faults`` route); runs on the loop."""
        if action == "node_down":
            await self.set_node_down(int(kwargs.pop("uid")), bool(kwargs.pop("down", True)), **kwargs)
        elif action == "bdb_stale":
            self.state.bdb_certs.stale(**kwargs)
        elif action == "slow":
            seconds = float(kwargs.pop("seconds"))
            if kwargs:
                raise TypeError(f"unexpected arguments {sorted(kwargs)}")
            self.state.slow_seconds = max(0.0, seconds)
        else:
            getattr(self.state, action)(**kwargs)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> ClusterSimulator:
        """Run the simulator's own loop in a daemon thread; return once every listener is bound."""
        if self._thread is not None or self._loop is not None:
            raise SimulatorError("simulator already started")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._thread_main, args=(ready,), daemon=True,
                                        name=f"rs-simulator-{self.config.fqdn}")
        self._thread.start()
        try:
            ready.result()
        except BaseException:
            self._thread.join()
            self._thread = None
            raise
        return self

    def _thread_main(self, ready: concurrent.futures.Future[None]) -> None:
        loop = new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            try:
                self._bind_loop(loop)
                loop.run_until_complete(self._astart())
            except BaseException as exc:
                self._loop = self._loop_thread = None
                ready.set_exception(exc)
                return
            ready.set_result(None)
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        """Close every listener and connection and join the thread. Safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        if thread is None:  # serve_forever() mode: ask it to return
            if self._stop_event is not None:
                loop.call_soon_threadsafe(self._stop_event.set)
            return
        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(self._astop(), loop).result(timeout=15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=15)
        self._thread = None
        self._loop = self._loop_thread = None

    def __enter__(self) -> ClusterSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def serve_forever(self, ready: Callable[[], None] | None = None) -> None:
        """Serve on the running loop until SIGINT/SIGTERM (or :meth:`stop`), then shut down."""
        loop = asyncio.get_running_loop()
        self._bind_loop(loop)
        self._stop_event = asyncio.Event()
        try:
            await self._astart()
        except BaseException:
            self._loop = self._loop_thread = None
            raise
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._stop_event.set)
                installed.append(sig)
        try:
            if ready is not None:
                ready()
            await self._stop_event.wait()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            await self._astop()
            self._loop = self._loop_thread = None

    def _bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()

    async def _astart(self) -> None:
        self._write_state_files()
        try:
            for node in self.state.nodes.values():
                if not node.down:
                    await self._bind_node(node)
        except BaseException:
            await self._astop()
            raise

    async def _astop(self) -> None:
        await self._close_listeners(list(self._listeners_by_key))
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in self._unstarted:  # accepted as it stopped: their task was cancelled before it ran
            conn.close()
        self._unstarted.clear()

    def _write_state_files(self) -> None:
        state_dir = self.config.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.ca_path.write_text(self.ca_pem)
        for path, secret in ((self.password_path, self.admin_password),
                             (state_dir / "viewer-password", self.viewer_password)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                os.fchmod(fh.fileno(), 0o600)
                fh.write(secret + "\n")

    # -- listeners ---------------------------------------------------------------------------------

    def _listeners(self, node: NodeState) -> list[tuple[str, int]]:
        cfg = self.config
        kinds = [("api", cfg.api_port), ("cm", cfg.cm_port), ("metrics_exporter", cfg.metrics_port)]
        kinds += [(f"db:{db.uid}", db.port) for db in cfg.database_list
                  if node in self.state.database_nodes(db)]
        if cfg.sentinel_port:
            kinds.append(("sentinel", cfg.sentinel_port))
        return kinds

    async def _bind_node(self, node: NodeState) -> None:
        for kind, port in self._listeners(node):
            where = f"{node.addr}:{port} ({kind} listener of node {node.uid})"
            family = socket.AF_INET6 if ":" in node.addr else socket.AF_INET
            listener = socket.socket(family, socket.SOCK_STREAM)
            try:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind((node.addr, port))
                listener.listen(512)
                listener.setblocking(False)
            except OSError as exc:
                listener.close()
                if exc.errno == errno.EADDRINUSE:
                    raise PortInUseError(f"cannot listen on {where}: address already in use") from exc
                raise SimulatorError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
            self._listeners_by_key[(node.uid, f"{kind}:{port}")] = listener
            asyncio.get_running_loop().add_reader(listener.fileno(), self._accept_ready, listener, node, kind)

    async def _close_listeners(self, keys: list[tuple[int, str]]) -> None:
        """Stop accepting (open connections stay, as with a real process's listening socket)."""
        loop = asyncio.get_running_loop()
        for key in keys:
            listener = self._listeners_by_key.pop(key)
            loop.remove_reader(listener.fileno())
            listener.close()

    def _accept_ready(self, listener: socket.socket, node: NodeState, kind: str) -> None:
        """The loop's callback when ``listener`` has connections waiting: each accepted and handed to a task
        at once, in this callback (an accept awaited in a task left, when that task was cancelled at stop, a
        socket that only the garbage collector closed)."""
        loop = asyncio.get_running_loop()
        for _ in range(64):  # a burst at a time: the other listeners are served between
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError:  # out of descriptors: keep serving, looking again shortly
                loop.remove_reader(listener.fileno())
                loop.call_later(0.05, self._accept_again, listener, node, kind)
                return
            conn.setblocking(False)
            self._accepted[(node.uid, kind)] = self._accepted.get((node.uid, kind), 0) + 1
            self._unstarted.add(conn)
            task = loop.create_task(self._on_connect(node, kind, conn, time.monotonic()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _accept_again(self, listener: socket.socket, node: NodeState, kind: str) -> None:
        if listener in self._listeners_by_key.values():  # not closed meanwhile (node down, stop)
            asyncio.get_running_loop().add_reader(listener.fileno(), self._accept_ready, listener, node, kind)

    def _database(self, kind: str) -> Database:
        uid = int(kind.split(":", 1)[1])
        return next(db for db in self.config.database_list if db.uid == uid)

    async def _on_connect(self, node: NodeState, kind: str, conn: socket.socket, accepted: float) -> None:
        self._unstarted.discard(conn)  # this task closes it now, whatever happens
        writer: asyncio.StreamWriter | None = None
        try:
            try:
                if node.down:
                    return
                if self.config.connect_delay > 0:
                    await asyncio.sleep(self.config.connect_delay)
                if self.config.connect_hook is not None:  # tests: count (and hold) handshakes about to start
                    await self.config.connect_hook(kind)
                if self.ocsp.refuses_handshake(node, kind):  # stapling on, proxy cert without OCSP URL
                    await self.ocsp.refuse(conn)
                    return
                reader, writer = await self._open_stream(node, kind, conn)
                self._timeline.append((node.uid, kind, accepted, time.monotonic()))
                await self._serve_connection(node, kind, reader, writer)
            except (OSError, EOFError, asyncio.IncompleteReadError, TimeoutError):
                pass  # handshake failures (ssl.SSLError is an OSError), resets, timeouts
            if writer is not None:
                writer.close()
                async with asyncio.timeout(1.0):  # no task per connection, unlike wait_for
                    await writer.wait_closed()
        except asyncio.CancelledError:
            if writer is not None:  # stop(): drop the connection
                writer.transport.abort()
        except Exception:  # closing a broken connection may fail in many ways
            if writer is not None:
                writer.transport.abort()
        finally:
            if writer is None:
                self._timeline.append((node.uid, kind, accepted, None))  # never became a stream
                conn.close()

    async def _open_stream(
        self, node: NodeState, kind: str, conn: socket.socket
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The accepted socket as a stream: TLS (handshake done) where the listener presents a
        certificate, plain for the discovery service (it sniffs the first byte) and non-TLS databases."""
        context: ssl.SSLContext | None = None
        if kind != "sentinel":
            db = self._database(kind) if kind.startswith("db:") else None
            if db is None or db.tls:
                cert_name = "proxy" if db is not None else LISTENER_CERTS[kind]
                # a database with a certificate of its own presents it; the api listener may ask for a client's
                own = self.state.bdb_certs.served(node, db) if db is not None else None
                material = own or node.served(cert_name)
                tls_settings = self.state.listener_tls(node, kind)
                context = (self.accounts.api_context(material, *tls_settings) if kind == "api"
                           else material.context(*tls_settings))
                if db is not None:  # a database that authenticates clients asks for a certificate
                    context = self.replication.listener_context(db.uid, material, *tls_settings) or context
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        extra = {"ssl_handshake_timeout": self.config.handshake_timeout} if context is not None else {}
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, conn, ssl=context, **extra)
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

    async def _serve_connection(
        self, node: NodeState, kind: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        refuse: Callable[[], bool] = lambda: node.down  # noqa: E731
        if kind == "sentinel":
            minimum, _ = self.state.listener_tls(node, kind)
            material = node.served(self.config.sentinel_cert)
            await serve_sentinel(reader, writer, mode=node.sentinel["mode"], refuse=refuse,
                                 context=lambda: material.context(minimum),
                                 timeout=self.config.handshake_timeout)
        elif kind.startswith("db:"):
            db_uid = int(kind[3:])  # no client certificate where one is required: dropped unanswered
            await serve_resp(reader, writer, lambda: node.down or not self.replication.admitted(db_uid, writer))
        else:
            await serve_http(reader, writer, self._http_handler(node, kind, writer), refuse=refuse)

    def _counted(self, node: NodeState, handler: Handler, writer: asyncio.StreamWriter) -> Handler:
        """Count the connections that carry REST requests (handshake-only probes do not); ``fail_nth``."""
        first = True

        async def counted(request: Request) -> Response:
            nonlocal first
            key = (request.method, request.path)
            self._rest_requests[key] = self._rest_requests.get(key, 0) + 1
            if first:
                first = False
                self._rest_connections[node.uid] = self._rest_connections.get(node.uid, 0) + 1
            fault = None if request.path.startswith("/_sim/") else self.state.take_nth_fault(request.method,
                                                                                             request.target)
            if fault is None:
                return await handler(request)
            return await self._misbehave(fault, request, handler, writer)

        return counted

    async def _misbehave(self, fault: NthFault, request: Request, handler: Handler,
                         writer: asyncio.StreamWriter) -> Response:
        """Answer ``request`` the way ``fault.kind`` says (``ClusterState.fail_nth``)."""
        if fault.kind in ("reset", "hang"):
            await handler(request)  # RS did the work; its answer never comes
            if fault.kind == "hang":
                await asyncio.sleep(fault.hang_seconds)
            writer.transport.abort()
            raise ConnectionResetError(f"injected {fault.kind}")
        if fault.kind == "409" and _certificate_change(request):
            queued = len(self.state.fail_queue)  # RS's 409 to a certificate change: the first node took it
            self.state.fail_queue.appendleft(409)
            try:
                return await handler(request)
            finally:
                if len(self.state.fail_queue) > queued:  # refused before it was applied: not consumed
                    self.state.fail_queue.popleft()
        if fault.kind == "500-html":
            return Response.text("<html><body><h1>500 Internal Server Error</h1></body></html>", 500,
                                 content_type="text/html")
        status = int(fault.kind)
        return Response.error(status, {503: "service_unavailable"}.get(status, "injected_failure"),
                              f"Injected failure ({status})")

    def _http_handler(self, node: NodeState, kind: str, writer: asyncio.StreamWriter) -> Handler:
        if kind == "cm":
            return cm_handler(self.config.fqdn, node)
        if kind == "metrics_exporter":
            return metrics_handler(self.config.fqdn, node)
        return self._counted(node, partial(api.handle, self, client_cert=peer_certificate(writer)), writer)

    # -- thread hopping ------------------------------------------------------------------------------

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the simulator's loop (directly if not started or already on it)."""
        loop = self._loop
        if loop is None or self._loop_thread == threading.get_ident():
            return fn()
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def runner() -> None:
            try:
                result.set_result(fn())
            except BaseException as exc:
                result.set_exception(exc)

        loop.call_soon_threadsafe(runner)
        return result.result(timeout=30)

    def _run(self, coro: Any) -> None:
        loop = self._loop
        if loop is None:
            coro.close()
            raise SimulatorError("the simulator is not running")
        if self._loop_thread == threading.get_ident():
            coro.close()
            raise SimulatorError("called on the simulator's loop: await the async variant instead")
        asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)
