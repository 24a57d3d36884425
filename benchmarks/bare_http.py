"""A bare HTTP server for the webhook benchmark's baseline: the webhook's own stack (uvicorn, uvloop,
one SO_REUSEPORT socket per process) around a handler that reads the body and answers a fixed JSON
object, and does nothing else (no signature, no Redis).

    python benchmarks/bare_http.py --port PORT [--processes 2]

Serves on 127.0.0.1 until SIGTERM.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.localproc import wait_for_stop  # noqa: E402

ANSWER = b'{"response_type":"ephemeral","text":"ok"}'


def serve(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from workers.webhook.server import listening_socket

    async def answer(request: Request) -> Response:
        await request.body()
        return Response(ANSWER, media_type="application/json")

    app = Starlette(routes=[Route("/{path:path}", answer, methods=["POST", "GET"])])
    sock = listening_socket("127.0.0.1", port, reuse_port=True)
    uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, server_header=False,
                                  timeout_keep_alive=30)).run(sockets=[sock])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    spawn = multiprocessing.get_context("spawn")
    children = [spawn.Process(target=serve, args=(args.port,), daemon=True) for _ in range(args.processes)]
    for child in children:
        child.start()
    wait_for_stop()
    for child in children:
        child.terminate()
    for child in children:
        child.join(10)


if __name__ == "__main__":
    main()
