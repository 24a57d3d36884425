"""A TCP proxy in front of a real redis-server that counts the commands (RESP) it forwards and, at the
N-th one, makes Redis fail the way it does in production: gone (connections closed, new ones closed at
once), hung (nothing answered: the client's socket timeout ends each wait), or answering an error the
real server gives in some state (``LOADING`` while it loads its data, ``READONLY`` once demoted to a
replica, ``OOM`` at maxmemory with ``noeviction``, ``MISCONF`` when its snapshots fail), each only to
the commands the real server refuses then (their flags, read from the server's ``COMMAND``),
MULTI/EXEC included (``EXECABORT``).

Loopback only; plain sockets, a thread for each side of each connection, one lock.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import deque
from dataclasses import dataclass, field

import redis

from support.processes import free_port

ERRORS = {
    "LOADING": b"-LOADING Redis is loading the dataset in memory\r\n",
    "READONLY": b"-READONLY You can't write against a read only replica.\r\n",
    "OOM": b"-OOM command not allowed when used memory > 'maxmemory'.\r\n",
    "MISCONF": b"-MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk. "
               b"Commands that may modify the data set are disabled.\r\n",
}
# gone: command N never reaches Redis, then every connection is closed (and every new one, until healed);
# gone-after: command N runs but its answer is lost, then as gone; hang: from command N on nothing is
# answered; blip: command N runs, its answer is lost and its connection closed, nothing else changes.
KINDS = ("gone", "gone-after", "hang", "blip", *ERRORS)
SCRIPTS = {"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall"}
EXECABORT = b"-EXECABORT Transaction discarded because of previous errors.\r\n"


class _Incomplete(Exception):
    pass


def _line(buf: bytes | bytearray, pos: int) -> tuple[bytes, int]:
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    return bytes(buf[pos:end]), end + 2


def _value(buf: bytes | bytearray, pos: int) -> int:
    """The end of the one RESP2/RESP3 value that starts at ``pos`` (``_Incomplete`` if it is not all there)."""
    if pos >= len(buf):
        raise _Incomplete
    kind = buf[pos:pos + 1]
    line, pos = _line(buf, pos + 1)
    if kind in (b"$", b"=", b"!"):
        size = int(line)
        if size < 0:
            return pos
        if len(buf) < pos + size + 2:
            raise _Incomplete
        return pos + size + 2
    if kind in (b"*", b"~", b">", b"%", b"|"):
        count = int(line)
        for _ in range(max(count, 0) * (2 if kind in (b"%", b"|") else 1)):
            pos = _value(buf, pos)
        return pos
    return pos  # + - : _ , # (


def _command(buf: bytearray) -> tuple[list[bytes], bytes] | None:
    """The first whole command in ``buf`` (its arguments and raw bytes), removed from it."""
    try:
        if buf[:1] != b"*":  # an inline command (redis-cli style): one line
            line, end = _line(buf, 0)
            args = line.split()
        else:
            count, pos = _line(buf, 1)
            args = []
            for _ in range(int(count)):
                size, pos = _line(buf, pos + 1)
                args.append(bytes(buf[pos:pos + int(size)]))
                pos += int(size) + 2
            if len(buf) < pos:
                raise _Incomplete
            end = pos
    except _Incomplete:
        return None
    raw = bytes(buf[:end])
    del buf[:end]
    return args, raw


@dataclass(eq=False)
class _Conn:
    client: socket.socket
    upstream: socket.socket | None = None
    # what the client is owed, in order: None (Redis's next answer), bytes (ours), or ("swap", bytes):
    # Redis's next answer replaced by ours, or ("cut", None): Redis's next answer dropped, then closed
    owed: deque = field(default_factory=deque)
    in_multi: bool = False
    dirty: bool = False
    subscribed: bool = False
    cutting: bool = False  # its connection ends with the answer owed now: what the client sends after is lost
    closed: bool = False


class RespProxy:
    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.host, self.upstream_port = host, upstream_port
        self.port = free_port(host)
        self.count = 0
        self.names: list[str] = []  # every command seen, in order (the counting run)
        self.at: int | None = None
        self.kind = ""
        self.tripped = False
        self.trips = 0  # how many faults happened (a case whose fault never came proves nothing)
        self.match: tuple[str, bytes] | None = None
        self._flags = _command_flags(upstream_port)
        # one lock for all the proxy's state and writes: commands are counted, and answers sent, in one order
        self._lock = threading.RLock()
        self._conns: set[_Conn] = set()
        self._sockets: set[socket.socket] = set()  # every socket not yet closed: stop() closes what is left
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._listener = socket.create_server((host, self.port), backlog=128)
        self._listener.settimeout(0.05)  # the accept loop looks at _stopping this often
        self._start(self._accept, "resp proxy accept")

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    # --- the test's side --------------------------------------------------------------------
    def arm(self, at: int | None, kind: str = "gone", *, command: str = "", holding: bytes = b"") -> None:
        """Fail from the ``at``-th command from now on (None: count only), or from the first ``command``
        whose arguments hold ``holding``."""
        assert kind in KINDS, kind
        with self._lock:
            self.count, self.names, self.at, self.kind, self.tripped = 0, [], at, kind, False
            self.match = (command, holding) if command else None

    def heal(self) -> None:
        """Redis is back: every broken or hung connection is closed, new ones pass."""
        with self._lock:
            if self.tripped and self.kind in ("gone", "gone-after", "hang"):
                self._close_all()
            self.at, self.match, self.tripped = None, None, False

    def stop(self) -> None:
        """Every connection closed, every thread ended, every socket closed: nothing left for a later gc."""
        with self._lock:
            self._stopping = True
            self._close_all()
        for thread in list(self._threads):
            thread.join(30)
        with self._lock:
            for sock in list(self._sockets):
                self._release(sock)
        self._listener.close()

    # --- the threads' side ---------------------------------------------------------------------
    def _start(self, target, name: str, *args) -> None:  # type: ignore[no-untyped-def]
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stopping:
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            with self._lock:
                self._sockets.add(sock)
                conn = _Conn(sock)
                self._conns.add(conn)
                if self._stopping or self._gone():
                    self._close(conn)
                    self._release(sock)
                    continue
            self._start(self._serve, "resp proxy client", conn)

    def _serve(self, conn: _Conn) -> None:
        """The client's side: commands read, counted, forwarded or answered. Its thread closes its socket."""
        try:
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                return
            upstream.settimeout(None)
            with self._lock:
                self._sockets.add(upstream)
                if conn.closed:
                    self._release(upstream)
                    return
                conn.upstream = upstream
            self._start(self._answers, "resp proxy upstream", conn, upstream)
            buf = bytearray()
            while True:
                data = conn.client.recv(65536)
                if not data:
                    return
                with self._lock:
                    if conn.closed:
                        return
                    buf += data
                    while not conn.closed and (found := _command(buf)) is not None:
                        self._on_command(conn, *found)
                    self._flush(conn)
        except OSError:
            pass
        finally:
            with self._lock:
                self._close(conn)
                self._release(conn.client)

    def _answers(self, conn: _Conn, upstream: socket.socket) -> None:
        """Redis's side: each answer passed on, replaced, dropped or held, in the order owed."""
        buf = bytearray()
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    return
                with self._lock:
                    if conn.closed:
                        return
                    self._on_answers(conn, buf, data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._close(conn)
                self._release(upstream)

    def _on_answers(self, conn: _Conn, buf: bytearray, data: bytes) -> None:
        if conn.subscribed and not conn.owed:
            if not (self.tripped and self.kind == "hang"):
                self._send(conn, conn.client, data)
            return
        buf += data
        while not conn.closed:
            try:
                end = _value(buf, 0)
            except _Incomplete:
                return
            answer = bytes(buf[:end])
            del buf[:end]
            self._flush(conn)
            owed = conn.owed.popleft() if conn.owed else None
            if self.tripped and self.kind == "hang":
                continue  # the answer never comes
            if isinstance(owed, tuple) and owed[0] == "cut":
                self._close(conn)
                return
            self._send(conn, conn.client, owed[1] if isinstance(owed, tuple) else answer)
            self._flush(conn)

    def _close_all(self) -> None:
        for conn in list(self._conns):
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        """Both ends see the connection end now (a blocked read returns); each thread closes its own socket
        (a socket closed under another thread's read could have its number reused by a new one)."""
        conn.closed = True
        self._conns.discard(conn)
        for sock in (conn.client, conn.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _release(self, sock: socket.socket) -> None:
        self._sockets.discard(sock)
        sock.close()

    def _send(self, conn: _Conn, sock: socket.socket, data: bytes) -> None:
        try:
            sock.sendall(data)
        except OSError:
            self._close(conn)

    def _gone(self) -> bool:
        return self.tripped and self.kind in ("gone", "gone-after")

    def _on_command(self, conn: _Conn, args: list[bytes], raw: bytes) -> None:
        if conn.cutting:
            return
        name = args[0].decode(errors="replace").lower() if args else ""
        self.count += 1
        self.names.append(name)
        if not self.tripped and (self.count == self.at or self._matches(name, raw)):
            self.tripped, self.trips = True, self.trips + 1
            if self.kind in ("gone", "gone-after"):
                for other in list(self._conns - {conn}):
                    self._close(other)
            if self.kind == "gone":
                self._close(conn)
                return
            if self.kind in ("gone-after", "blip"):
                self._forward(conn, raw, ("cut", None))
                conn.cutting = True
                if self.kind == "blip":
                    self.tripped = False  # the others go on as before
                return
        if self.tripped:
            if self._gone():
                self._close(conn)
                return
            if self.kind == "hang":
                return  # never answered
            if self._refused(name, args):
                if conn.in_multi:
                    conn.dirty = True
                conn.owed.append(ERRORS[self.kind])
                return
            if name == "exec" and conn.in_multi and conn.dirty:
                conn.in_multi = conn.dirty = False
                self._forward(conn, b"*1\r\n$7\r\nDISCARD\r\n", ("swap", EXECABORT))
                return
        if name == "multi":
            conn.in_multi, conn.dirty = True, False
        elif name in ("exec", "discard"):
            conn.in_multi = conn.dirty = False
        elif name in ("subscribe", "psubscribe", "ssubscribe"):
            conn.subscribed = True
        self._forward(conn, raw, None)

    def _matches(self, name: str, raw: bytes) -> bool:
        return self.match is not None and name == self.match[0] and self.match[1] in raw

    def _refused(self, name: str, args: list[bytes]) -> bool:
        if name in ("multi", "exec", "discard", "client", "hello", "auth", "select", "quit"):
            return False
        flags = self._flags.get(name, set())
        if self.kind == "LOADING":
            return "loading" not in flags
        if name in SCRIPTS:  # scripts that write (all of ours): refused as their first write is
            return True
        return ("denyoom" if self.kind == "OOM" else "write") in flags

    def _forward(self, conn: _Conn, raw: bytes, owed: object) -> None:
        assert conn.upstream is not None
        conn.owed.append(owed)
        self._send(conn, conn.upstream, raw)

    def _flush(self, conn: _Conn) -> None:
        """Our own answers at the head of what the client is owed go out now, in order."""
        while conn.owed and isinstance(conn.owed[0], bytes) and not conn.closed:
            self._send(conn, conn.client, conn.owed.popleft())


def _command_flags(port: int) -> dict[str, set[str]]:
    """Each command's flags as the real server states them (``write``, ``denyoom``, ``loading``...)."""
    client = redis.Redis(port=port, decode_responses=True)
    try:
        table = client.command()  # {name: {"flags": [...], ...}}
    finally:
        client.close()
    flags = {name.lower(): set(info["flags"]) for name, info in table.items()}
    return flags


__all__ = ["ERRORS", "KINDS", "RespProxy"]
