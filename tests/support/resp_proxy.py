"""A TCP proxy in front of a real redis-server that counts the commands (RESP) it forwards and, at the
N-th one, makes Redis fail the way it does in production: gone (connections closed, new ones closed at
once), hung (nothing answered: the client's socket timeout ends each wait), or answering an error the
real server gives in some state (``LOADING`` while it loads its data, ``READONLY`` once demoted to a
replica, ``OOM`` at maxmemory with ``noeviction``, ``MISCONF`` when its snapshots fail), each only to
the commands the real server refuses then (their flags, read from the server's ``COMMAND``),
MULTI/EXEC included (``EXECABORT``).

Loopback only; an asyncio loop in a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    writer: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
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
        self._conns: set[_Conn] = set()
        self._flags = _command_flags(upstream_port)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resp proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    # --- the test's side --------------------------------------------------------------------
    def arm(self, at: int | None, kind: str = "gone", *, command: str = "", holding: bytes = b"") -> None:
        """Fail from the ``at``-th command from now on (None: count only), or from the first ``command``
        whose arguments hold ``holding``."""
        assert kind in KINDS, kind
        self._call(self._arm, at, kind, (command, holding) if command else None)

    def heal(self) -> None:
        """Redis is back: every broken or hung connection is closed, new ones pass."""
        self._call(self._heal)

    def stop(self) -> None:
        self._call(self._close_all)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(60)  # its last act closes every connection: not cut short on a busy machine
        if not self._thread.is_alive():
            # what its last iterations left (a connection accepted or opened upstream as it stopped): closed
            # here, on the stopped loop, whose callbacks close the sockets (else a later gc warns of them)
            for transport in list(getattr(self._loop, "_transports", {}).values()):
                transport.abort()
            for _ in range(3):
                self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    def _call(self, function, *args) -> None:  # type: ignore[no-untyped-def]
        async def run() -> None:
            function(*args)

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(5)

    def _arm(self, at: int | None, kind: str, match: tuple[str, bytes] | None) -> None:
        self.count, self.names, self.at, self.kind, self.tripped = 0, [], at, kind, False
        self.match = match

    def _heal(self) -> None:
        if self.tripped and self.kind in ("gone", "gone-after", "hang"):
            self._close_all()
        self.at, self.match, self.tripped = None, None, False

    # --- the loop's side ----------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, self.host, self.port))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            self._loop.run_until_complete(server.wait_closed())
            # every connection closed and its tasks ended here, on the loop: an aborted transport closes its
            # socket in a callback, which a stopped loop never runs (an unclosed socket fails a later test)
            self._close_all()
            # also a connection accepted whose handler never started (its transport is in no _Conn yet)
            for transport in list(getattr(self._loop, "_transports", {}).values()):
                transport.abort()
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            for _ in range(3):
                self._loop.run_until_complete(asyncio.sleep(0))

    def _close_all(self) -> None:
        for conn in list(self._conns):
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        conn.closed = True
        self._conns.discard(conn)
        for writer in (conn.writer, conn.upstream):
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.transport.abort()

    def _gone(self) -> bool:
        return self.tripped and self.kind in ("gone", "gone-after")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer)
        self._conns.add(conn)
        if self._gone():
            self._close(conn)
            return
        try:
            up_reader, conn.upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            self._close(conn)
            return
        answers = asyncio.ensure_future(self._answers(conn, up_reader))
        buf = bytearray()
        try:
            while not conn.closed:
                data = await reader.read(65536)
                if not data:
                    break
                buf += data
                while not conn.closed and (found := _command(buf)) is not None:
                    self._on_command(conn, *found)
                self._flush(conn)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._close(conn)
            answers.cancel()

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
        conn.upstream.write(raw)

    def _flush(self, conn: _Conn) -> None:
        """Our own answers at the head of what the client is owed go out now, in order."""
        while conn.owed and isinstance(conn.owed[0], bytes) and not conn.closed:
            conn.writer.write(conn.owed.popleft())

    async def _answers(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        buf = bytearray()
        try:
            while not conn.closed:
                data = await reader.read(65536)
                if not data:
                    break
                if conn.subscribed and not conn.owed:
                    if not (self.tripped and self.kind == "hang"):
                        conn.writer.write(data)
                    continue
                buf += data
                while not conn.closed:
                    try:
                        end = _value(buf, 0)
                    except _Incomplete:
                        break
                    answer = bytes(buf[:end])
                    del buf[:end]
                    self._flush(conn)
                    owed = conn.owed.popleft() if conn.owed else None
                    if self.tripped and self.kind == "hang":
                        continue  # the answer never comes
                    if isinstance(owed, tuple) and owed[0] == "cut":
                        self._close(conn)
                        return
                    conn.writer.write(owed[1] if isinstance(owed, tuple) else answer)
                    self._flush(conn)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._close(conn)


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
