"""``aio.run``: each thread keeps one loop between calls; an interrupted call leaves a new one for the next."""

from __future__ import annotations

import asyncio
import threading

import pytest

from rotation.adapters.tls import aio


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


async def _fail() -> None:
    raise ValueError("boom")


async def _interrupted() -> None:
    raise KeyboardInterrupt


def test_calls_in_one_thread_share_a_loop_and_threads_have_their_own() -> None:
    first, second = aio.run(_running_loop()), aio.run(_running_loop())
    assert first is second and not first.is_closed()
    other: list[asyncio.AbstractEventLoop] = []
    thread = threading.Thread(target=lambda: other.append(aio.run(_running_loop())))
    thread.start()
    thread.join()
    assert other and other[0] is not first


def test_an_error_of_the_coroutine_keeps_the_loop_an_interruption_does_not() -> None:
    loop = aio.run(_running_loop())
    with pytest.raises(ValueError, match="boom"):
        aio.run(_fail())
    assert aio.run(_running_loop()) is loop
    with pytest.raises(KeyboardInterrupt):
        aio.run(_interrupted())
    assert loop.is_closed()
    fresh = aio.run(_running_loop())
    assert fresh is not loop and not fresh.is_closed()


def test_a_call_from_inside_a_running_loop_is_refused() -> None:
    async def nested() -> None:
        coro = _running_loop()
        try:
            aio.run(coro)
        finally:
            coro.close()

    with pytest.raises(RuntimeError):
        aio.run(nested())
