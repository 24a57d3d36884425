"""``aio.share_loop``: a worker's threads run their coroutines on one loop of the process."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from rotation.adapters.tls import aio

_who = contextvars.ContextVar("who", default="nobody")


async def _where(delay: float = 0.0) -> tuple[str, int, str]:
    await asyncio.sleep(delay)
    return threading.current_thread().name, id(asyncio.get_running_loop()), _who.get()


@pytest.fixture
def shared(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(aio, "_sharing", False)
    aio.share_loop()
    yield
    monkeypatch.setattr(aio, "_sharing", False)  # other tests of this process get a loop per call again


def test_without_sharing_each_call_has_its_own_loop_in_the_calling_thread() -> None:
    first, second = aio.run(_where()), aio.run(_where())
    assert first[0] == second[0] == threading.current_thread().name


@pytest.mark.usefixtures("shared")
def test_threads_share_one_loop_and_keep_their_context() -> None:
    def one(name: str) -> tuple[str, int, str]:
        _who.set(name)  # e.g. a task's log context: the coroutine sees the caller's
        return aio.run(_where(0.05))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, ["a", "b", "c", "d"]))
    assert {thread for thread, _, _ in results} == {"rotation-aio"}
    assert len({loop for _, loop, _ in results}) == 1
    assert [who for _, _, who in results] == ["a", "b", "c", "d"]


@pytest.mark.usefixtures("shared")
def test_an_error_reaches_the_caller_and_the_loop_goes_on() -> None:
    async def fails() -> None:
        raise ValueError("unparsable")

    with pytest.raises(ValueError, match="unparsable"):
        aio.run(fails())
    assert aio.run(_where())[0] == "rotation-aio"
