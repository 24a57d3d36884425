"""Helpers for the local processes that benchmarks and the demo start (loopback only): the tests' own."""

from __future__ import annotations

from tests.support.processes import free_port, wait_for

__all__ = ["free_port", "wait_for"]
