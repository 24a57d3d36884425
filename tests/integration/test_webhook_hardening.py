"""Issue 12 against the real `rotation webhook` process: each attack that got through before.

Requests are signed by slack_sdk (Slack) and by plain hmac (generic); nothing may be queued
wherever a request is refused; a listener on its own 127.x address must see no connection.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import yaml
from support.chat import OPERATOR, STRANGER, TEAM, Chat, nothing_queued, start_webhook, write_chatops
from support.cluster import free_loopback_base
from support.processes import ROOT, RedisServer, ServiceProcess, free_port, wait_for
from typer.testing import CliRunner

from rotation.simulator import ClusterSimulator


def _signed_generic(chat: Chat, body: bytes, ts: int | None = None) -> tuple[bytes, dict[str, str]]:
    secret = os.environ["TEST_GENERIC_SECRET"].encode()
    stamp = str(ts or int(time.time()))
    digest = hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return body, {"X-Timestamp": stamp, "X-Signature-256": "sha256=" + digest, "Content-Type": "application/json"}


def test_a_captured_request_passes_once_whatever_bytes_are_added(simulator: ClusterSimulator, webhook) -> None:  # noqa: F811
    chat = webhook()
    body = chat.slack_body("status sim")
    headers = chat.slack_headers(body)  # slack_sdk's signature
    assert chat.post("/chatops/slack", body, headers).status_code == 200
    signature, ts = headers["X-Slack-Signature"].encode(), headers["X-Slack-Request-Timestamp"].encode()
    for changed in ({"X-Slack-Signature": signature + b"\xa0"}, {"X-Slack-Signature": signature + b"\x85"},
                    {"X-Slack-Signature": signature + b"\t"}, {"X-Slack-Signature": signature + b"\x0b"},
                    {"X-Slack-Request-Timestamp": b"0" + ts}, {"X-Slack-Request-Timestamp": ts + b"\x0c"}, {}):
        # 401 from the signature check (400 when the HTTP parser already refuses the byte)
        assert _raw_post(chat, "/chatops/slack", body, {**headers, **changed}) in (400, 401), changed
    assert len(chat.audit()) == 1

    # A signed generic dry run queues one task, however often and however spelled it comes again.
    body, headers = _signed_generic(chat, json.dumps({"user": "ops-script", "text": "rotate sim proxy --dry-run"})
                                    .encode())
    assert "queued" in chat.post("/chatops/generic", body, headers).json()["text"]
    signature = headers["X-Signature-256"].encode()
    for changed in ({"X-Signature-256": signature + b"\xa0"}, {"X-Signature-256": signature + b"\x85"},
                    {"X-Signature-256": signature.upper()}, {"X-Timestamp": b"0" + headers["X-Timestamp"].encode()},
                    {}):
        assert _raw_post(chat, "/chatops/generic", body, {**headers, **changed}) in (400, 401), changed
    assert chat.redis.llen("rotation") == 1 and len(chat.audit()) == 2


def _raw_post(chat: Chat, path: str, body: bytes, headers: dict[str, str | bytes]) -> int:
    """A POST written byte for byte (HTTP clients refuse to send odd header bytes); its status."""
    lines = [f"POST {path} HTTP/1.1".encode(), f"Host: {chat.base.removeprefix('http://')}".encode(),
             f"Content-Length: {len(body)}".encode(), b"Connection: close"]
    lines += [name.encode() + b": " + (value if isinstance(value, bytes) else value.encode())
              for name, value in headers.items()]
    with chat.connect(timeout=10) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        status = sock.recv(64)
    return int(status.split(b" ")[1])


def test_chat_fields_are_shown_as_text_never_markup_or_escapes(simulator: ClusterSimulator, webhook) -> None:  # noqa: F811
    chat = webhook()
    hyperlink = "\x1b]8;;https://evil.example/\x1b\\click me\x1b]8;;\x1b\\"
    body = chat.slack_body("status [/oops]", user=STRANGER, user_name=f"[link=https://evil.example]boss[/link]"
                           f"{hyperlink}\x1b[31mred\x9b2J")
    refused = chat.post("/chatops/slack", body, chat.slack_headers(body))
    assert refused.status_code == 200 and "is not a cluster name" in refused.json()["text"]  # audited as invalid
    from workers.main import app

    for args in (["status"], ["history", "--audit"]):
        result = CliRunner().invoke(app, args, env={"COLUMNS": "400"})  # no cell wrapped
        assert result.exit_code == 0, result.output  # a MarkupError made both exit 1
        assert "status [/oops]" in result.stdout and "[link=https://evil.example]boss[/link]" in result.stdout
        assert "\x1b" not in result.stdout and "\x9b" not in result.stdout and "click me" in result.stdout
        assert "https://evil.example/" not in result.stdout  # the OSC 8 target went with its escape
    nothing_queued(chat, simulator)


def test_response_urls_are_checked_part_by_part_and_nothing_else_is_contacted(
    simulator: ClusterSimulator, webhook  # noqa: F811
) -> None:
    chat = webhook()
    listener = socket.create_server((free_loopback_base(), 0))
    contacted = threading.Event()
    threading.Thread(target=lambda: (listener.accept(), contacted.set()), daemon=True).start()
    host, port = listener.getsockname()
    receiver = chat.receiver.base.removeprefix("http://")
    try:
        for url in (f"http://{receiver}@{host}:{port}/reply/1",  # the prefix as user info
                    f"http://{host}:{port}/reply/1",
                    f"http://{receiver}/reply/%2e%2e/x@{host}:{port}",
                    f"http://{receiver}/reply/\t@{host}:{port}/"):
            answer = _click(chat, url)
            assert answer.status_code == 200, answer.text
        _click(chat, chat.reply_url())
        wait_for(lambda: chat.receiver.texts(f"/reply/{chat.replies}"), 10, 0.05, what="the admitted reply")
        assert not contacted.wait(0.2)
        assert len(chat.receiver.posts) == 1  # the forged URLs got nothing, not even on the receiver
    finally:
        listener.close()


def _click(chat: Chat, response_url: str) -> httpx.Response:
    payload = {"type": "block_actions", "user": {"id": OPERATOR, "team_id": TEAM}, "team": {"id": TEAM},
               "api_app_id": "A0APP", "response_url": response_url, "actions": [{"action_id": "x", "value": "y"}]}
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return chat.post("/chatops/slack/interactive", body, chat.slack_headers(body))


def test_malformed_and_deeply_nested_bodies_are_400_without_a_traceback(
    simulator: ClusterSimulator, webhook, tmp_path: Path  # noqa: F811
) -> None:
    chat = webhook()
    for raw in (b"[" * 60_000, b'{"user": "ops-script", "text": ' + b"[" * 50_000, b'{"user": "ops-script"',
                b'{"user": "ops-script", "text": "st\xffatus"}', b"\xff\xfe", b'"just a string"'):
        body, headers = _signed_generic(chat, raw)
        assert chat.post("/chatops/generic", body, headers).status_code == 400, raw[:40]
    deep = urlencode({"payload": "[" * 20_000}).encode()
    assert chat.post("/chatops/slack/interactive", deep, chat.slack_headers(deep)).status_code == 400
    nothing_queued(chat, simulator)
    log = (tmp_path / "webhook.log").read_text()
    assert "Traceback" not in log and "RecursionError" not in log


def test_a_platform_with_an_empty_secret_refuses_to_start(
    chat_env, inventory_path: Path, tmp_path: Path, redis_server: RedisServer  # noqa: F811
) -> None:
    # Compose passed `${SLACK_SIGNING_SECRET:-}`: the webhook started, and a request signed with the
    # empty key queued a rotation. Now it does not start (short secrets: test_input_hardening).
    env, receiver = chat_env
    write_chatops(inventory_path, receiver)
    port = free_port()
    started = subprocess.run([sys.executable, "-m", "workers.main", "webhook", "--port", str(port)],
                             env={**env, "TEST_SLACK_SECRET": ""}, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert started.returncode == 2, started.stderr
    assert "chatops.slack.signing_secret: environment variable TEST_SLACK_SECRET is empty" in started.stderr
    assert "Traceback" not in started.stderr
    with socket.socket() as probe:  # nothing listens
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    assert redis_server.client().llen("rotation") == 0


def test_slow_clients_are_dropped_and_their_descriptors_freed(
    chat_env, inventory_path: Path, tmp_path: Path, redis_server: RedisServer  # noqa: F811
) -> None:
    env, receiver = chat_env
    write_chatops(inventory_path, receiver)
    port = free_port()
    process = ServiceProcess(["webhook", "--port", str(port), "--header-timeout", "1", "--body-timeout", "1",
                              "--max-connections", "200"], env, tmp_path / "webhook.log").start()
    try:
        chat = Chat(f"http://127.0.0.1:{port}", receiver, redis_server.client())
        wait_for(lambda: _healthy(chat), 30, 0.05, what="the webhook")
        assert "serves slack, mattermost, generic" in process.log()
        assert process.process is not None
        pid = process.process.pid
        baseline = _fds(pid)
        clients, most = _slow_clients(port, 3000, lambda: _fds(pid))
        assert clients == 3000  # every one was closed by the server, none by us
        assert most <= baseline + 200 + 20, (baseline, most)  # never more than the cap open at once
        wait_for(lambda: _fds(pid) <= baseline + 5, 10, 0.05, what="the descriptors to be freed")

        # A body that never completes is dropped too, and a header flood gets 431; no traceback.
        with socket.create_connection(("127.0.0.1", port)) as slow:
            slow.sendall(b"POST /chatops/generic HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{")
            slow.settimeout(30)
            assert slow.recv(1024) == b""
        with socket.create_connection(("127.0.0.1", port)) as flood:
            flood.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Junk: " + b"a" * 20_000 + b"\r\n")
            flood.settimeout(30)
            assert flood.recv(1024).startswith(b"HTTP/1.1 431")
        assert chat.slack("status sim").status_code == 200
        assert "Traceback" not in process.log()
        chat.close()
    finally:
        process.stop()


def _healthy(chat: Chat) -> bool:
    try:
        return chat.http.get("/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _slow_clients(port: int, count: int, fds: callable) -> tuple[int, int]:
    """``count`` connections that each send half a request line and wait; returns how many the server
    closed (EOF or reset) and the most descriptors the server held at any sample."""
    selector = selectors.DefaultSelector()
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        selector.register(sock, selectors.EVENT_WRITE)
        sockets.append(sock)
    closed, most, deadline = 0, 0, time.monotonic() + 60
    pending = set(sockets)
    while pending and time.monotonic() < deadline:
        most = max(most, fds())
        for key, events in selector.select(timeout=0.05):
            sock = key.fileobj
            if events & selectors.EVENT_WRITE:
                try:
                    sock.send(b"POST /chatops/slack HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                except OSError:
                    pass
                selector.modify(sock, selectors.EVENT_READ)
                continue
            try:
                data = sock.recv(1024)
            except OSError:
                data = b""
            if not data:
                closed += 1
                pending.discard(sock)
                selector.unregister(sock)
    for sock in sockets:
        sock.close()
    return closed, most


def test_a_callers_team_reaches_the_channel_and_the_result_as_text_not_mentions(
    simulator: ClusterSimulator, webhook, chat_env, start_service  # noqa: F811
) -> None:
    # The generic grant pins no team, so the caller names its own: it went into "requested by" of the
    # in_channel answer, of the rotation record and of every result and history line, as markup.
    chat = webhook()
    start_service("worker", env=chat_env[0])
    team = "<!channel> <https://evil.example|docs> &"
    answer = chat.generic("rotate sim proxy --dry-run", team=team).json()
    assert answer["response_type"] == "in_channel" and "queued as" in answer["text"]
    reply = f"/reply/{chat.replies}"
    result = wait_for(lambda: [t for t in chat.receiver.texts(reply) if "dry_run" in t], 60, 0.1,
                      what="the dry run's result")
    history = chat.slack("history sim proxy").json()["text"]
    assert "generic:&lt;!channel&gt;" in history
    for text in (answer["text"], result[0], history):
        assert "<!channel>" not in text and "<https://evil.example" not in text, text
        assert "&lt;https://evil.example|docs&gt; &amp;/ops-script" in text, text


def test_a_click_with_ids_that_are_not_strings_is_400_without_a_traceback(
    simulator: ClusterSimulator, chat_env, inventory_path: Path, tmp_path: Path,  # noqa: F811
    redis_server: RedisServer  # noqa: F811
) -> None:
    # A workspace that is not pinned (no chatops.slack.team_id): a team id of 5 made the label of
    # the caller fail with a TypeError, a 500 and a traceback in the log.
    env, receiver = chat_env
    write_chatops(inventory_path, receiver)
    data = yaml.safe_load(inventory_path.read_text())
    del data["chatops"]["slack"]["team_id"]
    inventory_path.write_text(yaml.safe_dump(data))
    process, chat = start_webhook(env, tmp_path, redis_server, receiver)
    try:
        for user, team, channel in (({"id": OPERATOR, "username": ["x"]}, {"id": 5}, None),
                                    ({"id": OPERATOR, "team_id": [TEAM]}, None, None),
                                    ({"id": OPERATOR}, {"id": TEAM}, {"id": {"a": 1}})):
            payload = {"type": "block_actions", "user": user, "team": team, "channel": channel,
                       "api_app_id": "A0APP", "actions": [{"action_id": "rotation_confirm", "value": "y" * 22}]}
            body = urlencode({"payload": json.dumps(payload)}).encode()
            answer = chat.post("/chatops/slack/interactive", body, chat.slack_headers(body))
            assert answer.status_code == 400, (payload, answer.text)
        assert chat.click("y" * 22).status_code == 200  # a well-formed click still gets its answer
        assert "Traceback" not in process.log()
        nothing_queued(chat, simulator)
    finally:
        chat.close()
        process.stop()


def test_headers_over_the_cap_are_431_even_when_they_end_in_the_same_read(
    simulator: ClusterSimulator, webhook  # noqa: F811
) -> None:
    # Only a read that left the headers unfinished was counted: 40 KB of headers that arrived with
    # their blank line in one read (or after a short first read) were served.
    chat = webhook()
    body = chat.slack_body("status sim")
    signed = "".join(f"{name}: {value}\r\n" for name, value in chat.slack_headers(body).items())
    for first, rest in ((b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"),
                        (b"POST /chatops/slack HTTP/1.1\r\n",
                         f"Host: x\r\nContent-Length: {len(body)}\r\n{signed}".encode())):
        with chat.connect() as sock:
            if first:
                sock.sendall(first)
            sock.sendall(rest + b"X-Junk: " + b"a" * 40_000 + b"\r\n\r\n" + (body if first else b""))
            assert sock.recv(1024).startswith(b"HTTP/1.1 431"), first
    assert chat.audit() == []  # the signed command was not run
    # A large body sent with its headers in one write is not a large header.
    big = chat.slack_body("status sim", padding="p" * 60_000)
    assert chat.post("/chatops/slack", big, chat.slack_headers(big)).status_code == 200


def test_a_kept_alive_connection_that_sends_only_blank_lines_is_dropped(
    chat_env, inventory_path: Path, tmp_path: Path, redis_server: RedisServer  # noqa: F811
) -> None:
    # Between requests the parser skips CR/LF without starting a request, and any byte cancels
    # uvicorn's keep-alive timer: one "\r\n" after an unauthenticated GET held the connection for good.
    env, receiver = chat_env
    write_chatops(inventory_path, receiver)
    port = free_port()
    process = ServiceProcess(["webhook", "--port", str(port), "--header-timeout", "1", "--body-timeout", "1"],
                             env, tmp_path / "webhook.log").start()
    try:
        chat = Chat(f"http://127.0.0.1:{port}", receiver, redis_server.client())
        wait_for(lambda: _healthy(chat), 30, 0.05, what="the webhook")
        with socket.create_connection(("127.0.0.1", port)) as idle:
            idle.settimeout(60)  # far past --header-timeout, and past uvicorn's 30 s keep-alive
            idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"\r\n\r\nok"):
                answer += idle.recv(1024)
            idle.sendall(b"\r\n")
            assert idle.recv(1024) == b""  # closed by the server (a TimeoutError before)
        chat.close()
    finally:
        process.stop()


def test_trailer_fields_over_the_cap_are_431_and_never_reach_the_app(
    simulator: ClusterSimulator, webhook  # noqa: F811
) -> None:
    # A chunked body's trailer fields are header fields too: httptools gathers each one whole, and
    # uvicorn adds them to the request's headers. 1 MB of trailer (or 40 KB in one read) was
    # gathered in memory and the command answered.
    chat = webhook()
    body, headers = _signed_generic(chat, json.dumps({"user": "ops-script", "text": "status sim"}).encode())
    head = ("POST /chatops/generic HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n").encode()
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n"
    for size in (1_000_000, 40_000):
        with chat.connect() as sock:
            sock.sendall(head)
            try:
                sock.sendall(chunked + b"X-Junk: " + b"a" * size + b"\r\n\r\n")
                answer = sock.recv(1024)
            except (BrokenPipeError, ConnectionResetError):
                # the server answered and closed before reading the rest (a loaded machine reads slower than
                # 1 MB is sent): the connection is reset, which may drop the 431 in flight
                assert size > 40_000, "40 KB fit in the socket buffers: it is sent whole and answered"
                answer = b"HTTP/1.1 431 (reset)"
            assert answer.startswith(b"HTTP/1.1 431"), (size, answer)
    assert chat.audit() == []  # the signed command was not run
    with chat.connect() as sock:  # a small trailer is fine
        sock.sendall(head + chunked + b"X-Note: ok\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    assert len(chat.audit()) == 1


def test_what_a_cluster_names_reaches_the_check_answer_as_text(
    simulator: ClusterSimulator, webhook, chat_env, start_service  # noqa: F811
) -> None:
    # A hostile cluster lists a certificate whose name is markup (GET /v1/cluster/certificates is
    # the cluster's to answer): the chat check's table printed it as a mention and a hidden link.
    chat = webhook()
    simulator.state.certs["<!channel> <https://evil.example|docs>"] = simulator.state.certs["proxy"]
    start_service("worker", env=chat_env[0])
    assert chat.generic("check sim").json()["text"].startswith("Checking sim now")
    reply = f"/reply/{chat.replies}"
    table = wait_for(lambda: chat.receiver.texts(reply), 30, 0.1, what="the check result")[0]
    assert "&lt;!channel&gt; &lt;https://evil.example|docs&gt; node api" in table, table
    assert "<!channel>" not in table and "<https://evil.example" not in table


def test_json_strings_with_a_lone_surrogate_are_400_without_a_traceback(
    simulator: ClusterSimulator, webhook, tmp_path: Path  # noqa: F811
) -> None:
    # "\ud800" is valid JSON but no UTF-8 can carry it: echoed in an answer ("user … is not on the
    # allow-list"), the JSON response could not be encoded: a 500 and a traceback.
    chat = webhook()
    for raw in (b'{"user": "ops-\\ud800", "text": "status"}', b'{"user": "ops-script", "text": "status \\uDFFF"}'):
        body, headers = _signed_generic(chat, raw)
        assert chat.post("/chatops/generic", body, headers).status_code == 400, raw
    payload = json.dumps({"type": "block_actions", "user": {"id": "U\ud800"}, "team": {"id": TEAM},
                          "api_app_id": "A0APP", "actions": [{"action_id": "rotation_confirm", "value": "x"}]})
    click = urlencode({"payload": payload}).encode()
    assert chat.post("/chatops/slack/interactive", click, chat.slack_headers(click)).status_code == 400
    body, headers = _signed_generic(chat, b'{"user": "ops-script", "text": "status \\ud83d\\ude00"}')
    assert chat.post("/chatops/generic", body, headers).status_code == 200  # a pair is one character
    assert "Traceback" not in (tmp_path / "webhook.log").read_text()
    nothing_queued(chat, simulator)


def test_outside_text_cannot_mention_a_whole_channel_in_slack_or_mattermost(
    simulator: ClusterSimulator, webhook, chat_env, start_service  # noqa: F811
) -> None:
    # Slack and Mattermost both read a plain @channel, @here or @all as a mention of everyone in the channel:
    # a caller's team went into "requested by" of the in_channel answer, a certificate name a cluster lists
    # into the check's table, and each pinged the whole channel.
    chat = webhook()
    answer = chat.generic("rotate sim proxy --dry-run", team="@channel @here @ALL").json()
    assert answer["response_type"] == "in_channel" and "queued as" in answer["text"]
    simulator.state.certs["@channel"] = simulator.state.certs["proxy"]
    start_service("worker", env=chat_env[0])
    assert chat.mattermost("check sim").json()["text"].startswith("Checking sim now")
    reply = f"/reply/{chat.replies}"
    table = wait_for(lambda: [t for t in chat.receiver.texts(reply) if "node" in t], 60, 0.1,
                     what="the check result")[0]
    for text, mentions in ((answer["text"], ("@channel", "@here", "@ALL")), (table, ("@channel",))):
        for mention in mentions:
            assert mention not in text, text
            assert mention.replace("@", "@\u2060") in text, text  # still readable as written


def test_a_client_that_reads_none_of_its_answers_is_dropped() -> None:
    # Pipelined requests whose answers are never read: once the answers fill the socket buffers, the
    # answer being written waits for the client to read (uvicorn's drain has no timeout) and the
    # connection, its parsed requests and a connection slot were held for good.
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from workers.webhook.protocol import Limits
    from workers.webhook.server import _uvicorn_options, listening_socket

    async def healthz(_request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    listener = listening_socket(free_loopback_base(), 0, reuse_port=False)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # what accepted connections inherit: small
    options = {"log_level": "WARNING", "access_log": False, "limits": Limits(write_timeout=0.5)}
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/healthz", healthz)]), **_uvicorn_options(options)))
    threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True).start()
    wait_for(lambda: server.started, 10, 0.02, what="the server")
    try:
        with socket.socket() as greedy:
            greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            greedy.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            greedy.connect(listener.getsockname())
            greedy.setblocking(False)
            refused, end = 0, time.monotonic() + 20
            while refused < 50 and time.monotonic() < end:  # until the server stops reading (or drops us)
                try:
                    greedy.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 20)
                    refused = 0
                except BlockingIOError:
                    refused += 1
                except ConnectionResetError:
                    break  # dropped already
                time.sleep(0.002)
            wait_for(lambda: not server.server_state.connections, 10, 0.05, what="the connection to be dropped")
    finally:
        server.should_exit = True
