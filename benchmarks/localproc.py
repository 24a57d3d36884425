"""Helpers for the local processes that tests, benchmarks and the demo start (loopback only)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

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
