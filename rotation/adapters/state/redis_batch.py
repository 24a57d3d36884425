"""Automatic pipelining over a ``redis.asyncio`` client.

The commands that coroutines issue during one turn of the event loop go to Redis together, as one
non-transactional pipeline: one write, one read and one pass through redis-py for the batch, while
each caller still awaits its own result (or its own error). A busy webhook answers many requests
per turn, and their audit records and replay marks would otherwise cost a round trip each. An
idle one sends batches of one: no added wait, since the batch leaves at the end of the same turn.
Each command keeps its own atomicity (a Lua script runs whole); the batch is not a transaction.
"""

from __future__ import annotations

import asyncio
from typing import Any

MAX_BATCH = 256  # commands per pipeline; more wait for the next turn


class BatchedRedis:
    """``eval`` and ``set`` of ``client``, batched per turn of the event loop."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._queued: list[tuple[str, tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any:
        return await self._queue("eval", (script, numkeys, *keys_and_args), {})

    async def set(self, name: str, value: Any, **options: Any) -> Any:
        return await self._queue("set", (name, value), options)

    async def _queue(self, command: str, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        result: asyncio.Future[Any] = loop.create_future()
        self._queued.append((command, args, options, result))
        if len(self._queued) == 1:
            loop.call_soon(self._flush)
        return await result

    def _flush(self) -> None:
        batch, self._queued = self._queued[:MAX_BATCH], self._queued[MAX_BATCH:]
        if self._queued:
            asyncio.get_running_loop().call_soon(self._flush)
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)  # a reference, so that the task is not collected while it runs
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[str, tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for command, args, options, _ in batch:
            getattr(pipe, command)(*args, **options)
        try:
            results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the connection failed: every caller in the batch gets the error
            for *_, result in batch:
                if not result.done():
                    result.set_exception(exc)
            return
        for (*_, result), value in zip(batch, results, strict=True):
            if result.done():
                continue  # its caller gave up (a timeout): nobody to tell
            if isinstance(value, Exception):
                result.set_exception(value)
            else:
                result.set_result(value)


__all__ = ["BatchedRedis"]
