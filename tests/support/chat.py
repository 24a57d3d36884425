"""Chat through the real webhook: signed clients for each platform, a local receiver standing in for the
response_url and the notification webhook, and the fixtures that start it (``chat_env``, ``webhook``)."""

from __future__ import annotations

import json
import secrets
import socket
import string
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import yaml
from slack_sdk.signature import SignatureVerifier

from rotation.chatops.signatures import generic_signature
from rotation.simulator import ClusterSimulator
from support.processes import RedisServer, ServiceProcess, free_port, wait_for

SLACK_SECRET = secrets.token_hex(16)  # the form of Slack's signing secrets: 32 hex digits
MATTERMOST_TOKEN = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(26))
GENERIC_SECRET = secrets.token_hex(32)
TEAM = "T0001"
OPERATOR = "U0PERATOR"
READER = "U0READER"
STRANGER = "U0STRANGER"


class Receiver:
    """A local HTTP server recording JSON posts: /reply/<n> (response_url) and /notify."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.posts.append((self.path, json.loads(body or b"{}")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        # polls for shutdown() every 50 ms, not 0.5 s: close() (each test's teardown) returns at once
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def texts(self, path: str) -> list[str]:
        return [body.get("text", "") for p, body in list(self.posts) if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Chat:
    """A signed client of the webhook plus the receiver and the Redis it writes to."""

    def __init__(self, base: str, receiver: Receiver, redis: Any) -> None:
        self.base = base
        self.receiver = receiver
        self.redis = redis
        self.http = httpx.Client(base_url=base, timeout=10)
        self.replies = 0

    def connect(self, timeout: float = 30) -> socket.socket:
        """A raw TCP connection to the webhook, for requests no HTTP client would send."""
        host, port = self.base.removeprefix("http://").split(":")
        return socket.create_connection((host, int(port)), timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def reply_url(self) -> str:
        self.replies += 1
        return f"{self.receiver.base}/reply/{self.replies}"

    def slack_body(self, text: str, user: str = OPERATOR, **extra: str) -> bytes:
        fields = {"token": "deprecated", "team_id": TEAM, "team_domain": "ops", "channel_id": "C0OPS",
                  "channel_name": "ops", "user_id": user, "user_name": "someone", "command": "/rotation",
                  "text": text, "response_url": extra.pop("response_url", self.reply_url()),
                  "trigger_id": secrets.token_hex(8), "api_app_id": "A0APP", **extra}
        return urlencode(fields).encode()

    @staticmethod
    def slack_headers(body: bytes, timestamp: int | None = None, secret: str = SLACK_SECRET) -> dict[str, str]:
        ts = str(timestamp if timestamp is not None else int(time.time()))
        signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body.decode())
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature,
                "Content-Type": "application/x-www-form-urlencoded"}

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        # No wall-clock assertion (it fails on a busy machine): Slack's 3 s limit is measured by
        # benchmarks/webhook.py, and nothing slow is on the request path by construction.
        return self.http.post(path, content=body, headers=headers)

    def slack(self, text: str, user: str = OPERATOR, **extra: str) -> httpx.Response:
        body = self.slack_body(text, user, **extra)
        return self.post("/chatops/slack", body, self.slack_headers(body))

    def click(self, nonce: str, user: str = OPERATOR, action: str = "rotation_confirm", channel: str = "C0OPS"
              ) -> httpx.Response:
        payload = {"type": "block_actions", "user": {"id": user, "username": "someone", "team_id": TEAM},
                   "team": {"id": TEAM}, "channel": {"id": channel}, "api_app_id": "A0APP",
                   "response_url": self.reply_url(), "trigger_id": secrets.token_hex(8),
                   "actions": [{"action_id": action, "value": nonce, "type": "button"}]}
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return self.post("/chatops/slack/interactive", body, self.slack_headers(body))

    def mattermost(self, text: str, token: str = MATTERMOST_TOKEN, user: str = "mmoperator0000000000000000"
                   ) -> httpx.Response:
        body = urlencode({"token": token, "team_id": "mmteam", "channel_id": "mmchan", "user_id": user,
                          "user_name": "someone", "command": "/rotation", "text": text,
                          "response_url": self.reply_url()}).encode()
        return self.post("/chatops/mattermost", body, {"Authorization": f"Token {token}",
                                                       "Content-Type": "application/x-www-form-urlencoded"})

    def generic(self, text: str, user: str = "ops-script", timestamp: int | None = None,
                secret: str = GENERIC_SECRET, **extra: str) -> httpx.Response:
        body = json.dumps({"user": user, "text": text, "response_url": self.reply_url(), **extra}).encode()
        ts = timestamp if timestamp is not None else int(time.time())
        return self.post("/chatops/generic", body, {"X-Timestamp": str(ts), "Content-Type": "application/json",
                                                    "X-Signature-256": generic_signature(secret, ts, body)})

    def audit(self) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self.redis.lrange("rotation:chatops:audit", 0, -1)]


def nothing_queued(chat: Chat, simulator: ClusterSimulator) -> None:
    assert chat.redis.keys("rotation:pending:*") == []
    assert chat.redis.zcard("rotation:history") == 0
    assert chat.redis.llen("rotation") == 0  # the Celery queue
    assert simulator.received_update_bodies == []


def write_chatops(inventory_path: Path, receiver: Receiver, rate_limit: dict[str, Any] | None = None,
                  **cluster: Any) -> None:
    data = yaml.safe_load(inventory_path.read_text())
    data["clusters"]["sim"].update(cluster)
    data["chatops"] = {
        "slack": {"signing_secret_env": "TEST_SLACK_SECRET", "team_id": TEAM},
        "mattermost": {"token_env": "TEST_MM_TOKEN"},
        "generic": {"secret_env": "TEST_GENERIC_SECRET"},
        "notify": {"url_env": "TEST_NOTIFY_URL"},
        "confirm_ttl": "2s",
        "reply_url_prefixes": [receiver.base + "/reply/"],
        "allow": [
            {"user": OPERATOR, "team": TEAM, "platform": "slack", "clusters": {"sim": ["read", "rotate"]}},
            {"user": READER, "team": TEAM, "clusters": {"*": ["read"]}},
            {"user": "mmoperator0000000000000000", "platform": "mattermost", "clusters": {"*": ["read"]}},
            {"user": "ops-script", "platform": "generic", "clusters": {"sim": ["read", "rotate"]}},
        ],
    }
    if rate_limit is not None:
        data["chatops"]["rate_limit"] = rate_limit
    inventory_path.write_text(yaml.safe_dump(data))


@pytest.fixture
def chat_env(service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[dict, Receiver]]:
    receiver = Receiver()
    extra = {"TEST_SLACK_SECRET": SLACK_SECRET, "TEST_MM_TOKEN": MATTERMOST_TOKEN,
             "TEST_GENERIC_SECRET": GENERIC_SECRET, "TEST_NOTIFY_URL": receiver.base + "/notify"}
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    try:
        yield {**service_env, **extra}, receiver
    finally:
        receiver.close()


def start_webhook(env: dict[str, str], tmp_path: Path, redis_server: RedisServer, receiver: Receiver
                  ) -> tuple[ServiceProcess, Chat]:
    port = free_port()
    process = ServiceProcess(["webhook", "--port", str(port), "--log-format", "json"], env,
                             tmp_path / "webhook.log").start()
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert process.process and process.process.poll() is None, process.log()
        try:
            return httpx.get(base + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, 20, 0.05, what="the webhook")
    return process, Chat(base, receiver, redis_server.client())


@pytest.fixture
def webhook(chat_env, inventory_path: Path, tmp_path: Path, redis_server: RedisServer) -> Iterator:
    """start(rate_limit=None, **cluster_overrides) -> Chat, after writing the chatops section into the inventory."""
    env, receiver = chat_env
    started: list[ServiceProcess] = []
    chats: list[Chat] = []

    def start(rate_limit: dict[str, Any] | None = None, **cluster: Any) -> Chat:
        write_chatops(inventory_path, receiver, rate_limit, **cluster)
        process, chat = start_webhook(env, tmp_path, redis_server, receiver)
        started.append(process)
        chats.append(chat)
        return chat

    try:
        yield start
    finally:
        for chat in chats:
            chat.close()
        for process in started:
            process.stop()
            assert SLACK_SECRET not in process.log() and "/reply/" not in process.log()
