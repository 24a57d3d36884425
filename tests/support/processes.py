"""Real processes for the tests: free ports, waiting for them, a redis-server on a free port, the
`rotation` worker, beat and webhook as subprocesses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import redis

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now, on a loopback address."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 0.1, what: str = "condition",
             *, alive: Callable[[], bool] | None = None) -> T:
    """Poll ``predicate`` until it returns something truthy (exceptions count as "not yet").
    ``alive`` returning False (a process we wait for has died) ends the wait early."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 - a service that is still starting refuses connections
            value = None
        if value:
            return value
        if alive is not None and not alive():
            raise RuntimeError(f"gave up waiting for {what}: a process it needs has exited")
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class RedisServer:
    """Our own redis-server: never the machine's shared one."""

    def __init__(self, directory: Path, *args: str, password: str | None = None) -> None:
        self.directory = directory
        self.port = free_port()
        self.password = password  # requirepass: the URL and the clients carry it
        self.process: subprocess.Popen | None = None
        self.args = args  # more redis-server options: "--replicaof", "--requirepass", ...

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--maxmemory-policy", "noeviction",
             *(["--requirepass", self.password] if self.password else []), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: a benchmark ends its helpers with killpg
        )
        with redis.Redis(port=self.port, password=self._requirepass) as client:
            wait_for(lambda: _pings(client), 10, what="redis-server")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def client(self) -> redis.Redis:
        """A client of this server, closed at the end of the test (``close_clients``): redis-py's clients sit in
        reference cycles, so one a test drops is freed by the garbage collector, whose socket may be finalized
        first (an unclosed-socket warning, failing a later test)."""
        client = redis.Redis(port=self.port, password=self._requirepass, decode_responses=True)
        _handed_out.append(weakref.ref(client))
        return client

    @property
    def _requirepass(self) -> str | None:
        """The server's password, also when given as an option (a test of a URL that lacks it)."""
        return self.password or dict(zip(self.args, self.args[1:], strict=False)).get("--requirepass")


_handed_out: list[weakref.ref[redis.Redis]] = []


def close_clients() -> None:
    """Close every client ``RedisServer.client`` handed out (a later command connects again)."""
    while _handed_out:
        if (client := _handed_out.pop()()) is not None:
            client.close()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class ServiceProcess:
    """`rotation worker` or `rotation beat` as a subprocess with its own log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen([sys.executable, "-m", "workers.main", *self.args], cwd=ROOT, env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, marker: str, timeout: float = 30) -> None:
        wait_for(lambda: marker in self.log() or self._died(), timeout, what=f"{self.args[0]} ready")
        if self._died():
            raise AssertionError(f"{self.args[0]} exited:\n{self.log()[-3000:]}")

    def _died(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def kill(self) -> None:
        """SIGKILL the whole process group: no goodbye, no acks."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
