"""Acknowledgement latency of the chat-ops webhook under load, against a baseline in the same run.

    .venv/bin/python benchmarks/webhook.py [--duration 20] [--clients 50] [--rate 2] [--rotate-share 0.2]
                                           [--processes 2] [--threads 8] [--mode both] [--json]

Starts its own redis-server and `rotation webhook` (uvicorn, --processes) on free loopback ports,
then runs --clients concurrent callers (uvloop; one keep-alive connection each) sending Slack-signed
slash commands (every body unique: a replay would be refused) for --duration seconds:

- ``status east``          the read path: verify, allow-list, the state as rotation.usecases.status.service_status
                             reads it (cached --status-cache seconds), the audit record written with the
                             request's replay mark in one script (pipelined with the other requests of
                             the same turn of the event loop)
- ``rotate east proxy``    the write path: names and permission checked, the pending marker claimed by a
                             script that also sets the replay mark and counts the caller's rate limit
                             (set out of reach here); the first one is really queued into
                             Redis (a thread records it and publishes the Celery task; no worker runs, so
                             it stays queued), every later one is refused as "already in progress" on the
                             event loop, then audited: two Redis round trips

Two modes, each run with two baselines of the same shape first, in the same run: ``GET /healthz``
of the webhook itself, and the same signed POSTs to a bare HTTP server (``bare_http.py``: the
webhook's stack, uvicorn and uvloop in as many processes, with a handler that reads the body and
answers a fixed JSON object), so the ratio is what the webhook's own work costs:

- saturated: every caller sends its next request as soon as the previous is answered, so 50 are
  always in flight; latency is then mostly queueing (about callers / throughput);
- paced: every caller sends --rate requests per second on its own schedule (50 x 2 = 100/s by
  default, far above what a chat workspace sends); latency counts from the scheduled send time, so
  a server that falls behind is charged for it.

Prints requests, throughput, p50/p99/max acknowledgement latency and the ratios of the signed p99
to both baselines' for both modes. Target (issue 17): p99 <= 30 ms with 50 always in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import uvloop  # noqa: E402
import yaml  # noqa: E402

from benchmarks.localproc import free_port, start_redis, wait_for  # noqa: E402
from rotation.adapters.secrets import SecretBox  # noqa: E402
from rotation.chatops.signatures import slack_signature  # noqa: E402

SECRET = secrets.token_hex(16)  # the form of a Slack signing secret (32 hex digits)
USER, TEAM = "UBENCH", "TBENCH"


def write_inventory(directory: Path) -> Path:
    (directory / "password").write_text("unused\n")
    for name in ("ca.pem", "ca-key.pem"):  # never read here, but the loader wants the issuer's files to exist
        (directory / name).touch()
    data = {
        "issuers": {"internal": {"type": "internal_ca", "ca_cert": "ca.pem", "ca_key_file": "ca-key.pem"}},
        "clusters": {"east": {"url": "https://127.0.0.1:9443", "username": "admin@east.test", "issuer": "internal",
                              "password_file": "password", "fqdn": "east.test"}},
        "chatops": {"slack": {"signing_secret_env": "BENCH_SLACK_SECRET", "team_id": TEAM},
                    "allow": [{"user": USER, "team": TEAM, "clusters": {"east": ["read", "rotate"]}}],
                    # one user sends every command: a budget it never spends keeps `rotate` on the claim
                    # path (counted inside the claim's script, as in production)
                    "rate_limit": {"commands": 10**9, "per": "1s"}},
    }
    path = directory / "rotation.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def seed_state(url: str) -> None:
    """What a scan would have stored, so `status` has rows to read and format."""
    from rotation.adapters.clock import SYSTEM_CLOCK
    from rotation.adapters.state.redis import RedisState
    from rotation.adapters.state.redis_client import connect

    store = RedisState(connect(url), SYSTEM_CLOCK)
    for cert in ("cm", "api", "proxy", "syncer", "metrics_exporter"):
        store.update_state("east", cert, served={f"{cert}@node{n} 127.0.0.{n}:8443": "ab" * 32 for n in (1, 2, 3)},
                           not_after={f"{cert}@node{n}": "2030-01-01T00:00:00+00:00" for n in (1, 2, 3)},
                           health="ok", reason="", last_scan="2026-01-01T00:00:00+00:00")


_SEQUENCE = itertools.count()


def signed(text: str) -> tuple[bytes, dict[str, str]]:
    """A Slack-signed slash command; every body unique (a replay would be refused). Cheap to make:
    the load generator shares the 2 cores with the server, and Slack signs on its own machines."""
    body = _BODIES[text] + b"%d" % next(_SEQUENCE)
    ts = str(int(time.time()))
    return body, {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": slack_signature(SECRET, ts, body),
                  "Content-Type": "application/x-www-form-urlencoded"}


_BODIES = {text: urlencode({"team_id": TEAM, "channel_id": "CBENCH", "user_id": USER, "user_name": "bench",
                            "command": "/rotation", "text": text,
                            "response_url": "https://hooks.slack.com/commands/TBENCH/1/x"}).encode()
           + b"&trigger_id=" + secrets.token_hex(6).encode() + b"."
           for text in ("status east", "rotate east proxy")}


class RawHTTP:
    """Just enough HTTP/1.1 for a keep-alive benchmark client: send a request, read the status,
    the headers and a Content-Length body. Returns the status code."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def connect(cls, host: str, port: int) -> RawHTTP:
        reader, writer = await asyncio.open_connection(host, port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer, f"{host}:{port}")

    async def _exchange(self, head: str, body: bytes = b"") -> int:
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(status_line.split()[1])

    async def get(self, path: str) -> int:
        return await self._exchange(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n")

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return await self._exchange(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n{lines}Content-Length: {len(body)}\r\n\r\n", body)

    def close(self) -> None:
        self.writer.close()


async def load(base: str, clients: int, duration: float, *, signed_requests: bool, rotate_share: float,
               rate: float | None) -> dict[str, list[float] | dict[str, int]]:
    """``rate`` None: saturated (back to back); else requests per second per caller, on a schedule."""
    latencies: dict[str, list[float]] = {"status": [], "rotate": [], "healthz": []}
    codes: dict[str, int] = {}
    host, port = base.removeprefix("http://").split(":")
    # One keep-alive connection per caller, spoken by a minimal HTTP/1.1 client: the load generator
    # shares the 2 cores with the server, and a full client library would spend more CPU per request
    # than the webhook does, measuring itself instead of the server.
    pool = [await RawHTTP.connect(host, int(port)) for _ in range(clients)]
    # Warm up what is measured (connections, the server's threads and their Redis connections), then
    # start the clock: a cold start shows as one burst in the first second, not as steady state.
    for _ in range(3):
        if signed_requests:
            await asyncio.gather(*(client.post("/chatops/slack", *signed("status east")) for client in pool))
        else:
            await asyncio.gather(*(client.get("/healthz") for client in pool))
    pick = random.Random(7)
    start = time.perf_counter()
    end = start + duration

    async def one_caller(client: RawHTTP) -> None:
        due = start + (pick.uniform(0, 1 / rate) if rate else 0.0)
        while True:
            now = time.perf_counter()
            if rate:
                if due >= end:
                    return
                if due > now:
                    await asyncio.sleep(due - now)
            elif now >= end:
                return
            if signed_requests:
                kind = "rotate" if pick.random() < rotate_share else "status"
                body, headers = signed("rotate east proxy" if kind == "rotate" else "status east")
                sent = due if rate else time.perf_counter()
                status = await client.post("/chatops/slack", body, headers)
            else:
                kind = "healthz"
                sent = due if rate else time.perf_counter()
                status = await client.get("/healthz")
            latencies[kind].append(time.perf_counter() - sent)
            key = f"{kind} {status}"
            codes[key] = codes.get(key, 0) + 1
            if rate:
                due += 1 / rate

    try:
        await asyncio.gather(*(one_caller(client) for client in pool))
    finally:
        for client in pool:
            client.close()
    return {**latencies, "codes": codes}


def summary(samples: list[float], duration: float) -> dict[str, float]:
    if not samples:
        return {"requests": 0}
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {"requests": len(samples), "per_second": round(len(samples) / duration, 1),
            "p50_ms": round(statistics.median(ordered) * 1000, 2), "p99_ms": round(p99 * 1000, 2),
            "max_ms": round(ordered[-1] * 1000, 2)}


def measure(base: str, bare: str, args: argparse.Namespace, rate: float | None) -> dict:
    baseline = uvloop.run(load(base, args.clients, args.baseline, signed_requests=False, rotate_share=0,
                                rate=rate))
    bare_run = uvloop.run(load(bare, args.clients, args.baseline, signed_requests=True,
                               rotate_share=args.rotate_share, rate=rate))
    run = uvloop.run(load(base, args.clients, args.duration, signed_requests=True,
                           rotate_share=args.rotate_share, rate=rate))
    result = {
        "baseline_healthz": summary(baseline["healthz"], args.baseline),  # type: ignore[arg-type]
        "signed_all": summary(run["status"] + run["rotate"], args.duration),  # type: ignore[operator]
        "signed_status": summary(run["status"], args.duration),  # type: ignore[arg-type]
        "signed_rotate": summary(run["rotate"], args.duration),  # type: ignore[arg-type]
        "status_codes": {**baseline["codes"], **run["codes"]},  # type: ignore[dict-item]
        "bare_http_post": summary(bare_run["status"] + bare_run["rotate"], args.baseline),  # type: ignore[operator]
    }
    result["p99_ratio_vs_baseline"] = round(result["signed_all"]["p99_ms"] / result["baseline_healthz"]["p99_ms"], 2)
    result["p99_ratio_vs_bare_http"] = round(result["signed_all"]["p99_ms"] / result["bare_http_post"]["p99_ms"], 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of signed load per mode (default 20)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent callers (default 50)")
    parser.add_argument("--rate", type=float, default=2.0, help="paced mode: requests/s per caller (default 2)")
    parser.add_argument("--rotate-share", type=float, default=0.2, help="share of rotate requests (default 0.2)")
    parser.add_argument("--baseline", type=float, default=5.0, help="seconds of the /healthz baseline per mode")
    parser.add_argument("--mode", choices=("both", "saturated", "paced"), default="both")
    parser.add_argument("--status-cache", type=float, default=1.0,
                        help="the webhook's --status-cache (seconds a status read is reused; 0: every request reads)")
    parser.add_argument("--processes", type=int, default=2, help="the webhook's --processes")
    parser.add_argument("--threads", type=int, default=8, help="the webhook's --threads (per process)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        port, bare_port = free_port(), free_port()
        redis_server = start_redis(directory)
        redis_url, redis_proc = redis_server.url, redis_server.process
        webhook = None
        bare_server = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "bare_http.py"), "--port",
                                        str(bare_port), "--processes", str(args.processes)], cwd=ROOT)
        try:
            seed_state(redis_url)
            env = {**os.environ, "ROTATION_REDIS_URL": redis_url, "ROTATION_STORE": "redis",
                   "ROTATION_SECRET_KEY": SecretBox.generate_key(),
                   "ROTATION_CONFIG": str(write_inventory(directory)), "BENCH_SLACK_SECRET": SECRET,
                   "ROTATION_STATE_DIR": str(directory / "state")}
            webhook = subprocess.Popen([sys.executable, "-m", "workers.main", "webhook", "--port", str(port),
                                        "--log-level", "WARNING", "--status-cache", str(args.status_cache),
                                        "--processes", str(args.processes), "--threads", str(args.threads)],
                                       cwd=ROOT, env=env,
                                       stderr=open(directory / "webhook.log", "wb"))  # noqa: SIM115
            base = f"http://127.0.0.1:{port}"
            bare = f"http://127.0.0.1:{bare_port}"
            wait_for(lambda: httpx.get(base + "/healthz").status_code == 200, 20, what="the webhook")
            wait_for(lambda: httpx.get(bare + "/healthz").status_code == 200, 20, what="the bare HTTP server")
            if args.mode in ("both", "saturated"):
                results["saturated"] = measure(base, bare, args, None)
            if args.mode in ("both", "paced"):
                results["paced"] = measure(base, bare, args, args.rate)
            queued = redis_server.client().llen("rotation")
        finally:
            for proc in (webhook, bare_server, redis_proc):
                if proc is not None:
                    proc.terminate()
                    proc.wait(10)
    if args.json:
        print(json.dumps({"clients": args.clients, "rate_per_client": args.rate, "cpus": os.cpu_count(),
                          "rotations_really_queued": queued, **results}, indent=2))
        return
    print(f"webhook acknowledgement latency: {args.clients} concurrent callers, {args.duration:g}s signed per mode "
          f"after a {args.baseline:g}s GET /healthz baseline of the same shape; {os.cpu_count()} CPU(s), "
          f"load generator on the same machine; webhook --status-cache {args.status_cache:g}s")
    print(f"  mix: {1 - args.rotate_share:.0%} `status east` (Redis read), {args.rotate_share:.0%} `rotate east "
          f"proxy` (first really queued, the rest refused as in progress); rotations queued: {queued}")
    for mode, result in results.items():
        label = "saturated (back to back)" if mode == "saturated" else f"paced ({args.rate:g}/s per caller)"
        print(f" {label}:")
        for name in ("baseline_healthz", "bare_http_post", "signed_all", "signed_status", "signed_rotate"):
            s = result[name]
            print(f"  {name:17} {s.get('requests', 0):7} req {s.get('per_second', 0):8} req/s"
                  f"  p50 {s.get('p50_ms', 0):7} ms  p99 {s.get('p99_ms', 0):7} ms  max {s.get('max_ms', 0):7} ms")
        verdict = "met" if result["signed_all"]["p99_ms"] <= 30 else "NOT met"
        print(f"  p99 signed/healthz {result['p99_ratio_vs_baseline']}x, signed/bare HTTP server "
              f"{result['p99_ratio_vs_bare_http']}x; target p99 <= 30 ms {verdict}; codes {result['status_codes']}")


if __name__ == "__main__":
    main()
