"""The chat-ops webhook end to end: the real `rotation webhook` server on a free port, a real worker,
real Redis and the simulator. Slack requests are signed with slack_sdk's own signature code; a local
HTTP receiver stands in for the response_url and the notification webhook."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from support.chat import GENERIC_SECRET, OPERATOR, READER, STRANGER, TEAM, Chat, nothing_queued, write_chatops
from support.cluster import handshake_fingerprint
from support.processes import RedisServer, ServiceProcess, free_port, wait_for

from rotation.chatops.signatures import generic_signature
from rotation.core.model import Outcome
from rotation.simulator import ClusterSimulator
from rotation.usecases.context import ServiceContext

FQDN = "cluster.test.local"


# --- the happy path ------------------------------------------------------------------------------
def test_signed_slack_rotate_is_acknowledged_then_the_result_is_posted(
    simulator: ClusterSimulator, webhook, chat_env, start_service, tmp_path: Path
) -> None:
    chat = webhook()
    start_service("worker", env=chat_env[0])
    response = chat.slack("rotate sim proxy")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["response_type"] == "in_channel"
    assert answer["text"].startswith("Rotation of proxy on sim queued as ")
    rotation_id = answer["text"].split("queued as ")[1].split()[0]

    ctx = ServiceContext()
    record = wait_for(lambda: (r := ctx.state.get(rotation_id)) and r.outcome is not Outcome.IN_PROGRESS and r,
                      30, 0.2, what="the rotation to end")
    assert record.outcome is Outcome.VERIFIED, record.error
    assert record.trigger == "chatops" and record.requested_by == f"slack:{TEAM}/{OPERATOR}"
    final = wait_for(lambda: [t for t in chat.receiver.texts("/reply/1") if "verified" in t], 10, 0.1,
                     what="the result posted to the response_url")
    progress = [t for t in chat.receiver.texts("/reply/1") if "pushing it and verifying" in t]
    assert progress and len(chat.receiver.texts("/reply/1")) <= 5
    # old -> new fingerprint per node in the result, and every node really serves the new one.
    new = record.new_fingerprint or ""
    assert f"→ {new[:16]}" in final[0] and (record.old_fingerprint or "")[:16] in final[0]
    for address in simulator.node_addresses:
        assert handshake_fingerprint(address, 12000, f"redis-12000.{FQDN}") == new
    assert chat.receiver.texts("/notify") == []  # a verified chat rotation is not broadcast

    # Read commands answer from Redis at once; the audit has every command with its decision.
    assert "sim/proxy" in chat.slack("history sim proxy").json()["text"]
    assert chat.slack("status", user=READER).status_code == 200
    assert "help" in chat.slack("help").json()["text"]
    assert "unknown command" in chat.slack("rotatee sim").json()["text"]
    audit = chat.audit()
    assert [a["decision"] for a in audit][:4] == ["invalid", "allowed", "allowed", "allowed"]
    rotate = next(a for a in audit if a["command"] == "rotate sim proxy")
    assert rotate["task_ids"] == [rotation_id] and rotate["user"] == OPERATOR and rotate["channel"] == "C0OPS"

    from typer.testing import CliRunner

    from workers.main import app

    result = CliRunner().invoke(app, ["history", "--audit", "--json"])
    assert result.exit_code == 0, result.output
    assert any(a["task_ids"] == [rotation_id] for a in json.loads(result.stdout))
    result = CliRunner().invoke(app, ["status", "--json"])
    assert any(a["command"] == "rotate sim proxy" for a in json.loads(result.stdout)["chat_commands"])
    assert "Chat commands" in CliRunner().invoke(app, ["status"]).stdout
    for log in tmp_path.glob("*.log"):  # the response_url is a bearer capability: never logged
        assert "/reply/" not in log.read_text(), log


# --- refusals: nothing queued -------------------------------------------------------------------
def test_forged_replayed_unauthorised_and_malformed_requests_queue_nothing(
    simulator: ClusterSimulator, webhook, chat_env, start_service
) -> None:
    chat = webhook()
    start_service("worker", env=chat_env[0])
    body = chat.slack_body("rotate sim proxy")
    good = chat.slack_headers(body)

    no_signature = {k: v for k, v in good.items() if k != "X-Slack-Signature"}
    assert chat.post("/chatops/slack", body, no_signature).status_code == 401
    wrong_secret = chat.slack_headers(body, secret="not-the-secret")
    assert chat.post("/chatops/slack", body, wrong_secret).status_code == 401
    changed = body.replace(b"proxy", b"cm")
    assert chat.post("/chatops/slack", changed, good).status_code == 401
    old = chat.slack_headers(body, timestamp=int(time.time()) - 301)
    assert chat.post("/chatops/slack", body, old).status_code == 401
    assert chat.post("/chatops/slack", body, {**good, "Content-Type": "application/json"}).status_code == 415
    big = chat.slack_body("status", padding="x" * (64 * 1024))
    assert chat.post("/chatops/slack", big, chat.slack_headers(big)).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the guard counts while streaming
        for _ in range(70):
            yield b"a" * 1024

    streamed = chat.http.post("/chatops/slack", content=chunks(), headers=good)
    assert streamed.status_code == 413
    nothing_queued(chat, simulator)
    assert chat.audit() == []  # unauthenticated requests are nobody's commands

    # An exact replay of a good request is refused, even though the signature is valid.
    status_body = chat.slack_body("status sim")
    status_headers = chat.slack_headers(status_body)
    assert chat.post("/chatops/slack", status_body, status_headers).status_code == 200
    assert chat.post("/chatops/slack", status_body, status_headers).status_code == 401

    # Authenticated but not allowed, or not a known name: refused with an answer, and audited.
    refusals = {
        (STRANGER, "rotate sim proxy"): "not on the allow-list",
        (READER, "rotate sim proxy"): "may not rotate sim",
        (OPERATOR, "rotate nowhere proxy"): "may not rotate nowhere",  # no grant names it: no oracle
        (OPERATOR, "rotate sim nginx"): "unknown certificate",
        (READER, "check nowhere"): "unknown cluster",  # "*": read names every cluster
    }
    for (user, text), reason in refusals.items():
        response = chat.slack(text, user=user)
        assert response.status_code == 200 and reason in response.json()["text"], response.text
        assert response.json()["response_type"] == "ephemeral"
    other_team = chat.slack_body("rotate sim proxy", team_id="T0THER")
    assert chat.post("/chatops/slack", other_team, chat.slack_headers(other_team)).status_code == 403
    decisions = [a["decision"] for a in chat.audit()]
    assert decisions.count("refused") == 5 and decisions.count("invalid") == 1
    time.sleep(0.5)  # a wrongly queued task would have reached the worker by now
    nothing_queued(chat, simulator)


def test_confirmation_nonces_are_single_use_personal_and_expire(
    simulator: ClusterSimulator, webhook, chat_env, start_service
) -> None:
    chat = webhook(confirm=True)
    start_service("worker", env=chat_env[0])
    # `rotate … all` asks first; the nonce expires (confirm_ttl 2s) and is then refused.
    prompt = chat.slack("rotate sim all").json()
    nonce = prompt["blocks"][1]["elements"][0]["value"]
    assert prompt["response_type"] == "ephemeral" and "confirm" in prompt["blocks"][1]["elements"][0]
    time.sleep(2.2)
    assert "expired" in chat.click(nonce).json()["text"]
    # A confirm: true cluster asks for one certificate too; someone else's click is refused.
    stolen = chat.slack("rotate sim cm").json()["blocks"][1]["elements"][0]["value"]
    assert "someone else" in chat.click(stolen, user=READER).json()["text"]
    nothing_queued(chat, simulator)

    nonce = chat.slack("rotate sim metrics_exporter").json()["blocks"][1]["elements"][0]["value"]
    queued = chat.click(nonce).json()
    assert "queued as" in queued["text"], queued
    assert "already used" in chat.click(nonce).json()["text"]  # single use
    rotation_id = queued["text"].split("queued as ")[1].split()[0]
    ctx = ServiceContext()
    record = wait_for(lambda: (r := ctx.state.get(rotation_id)) and r.outcome is not Outcome.IN_PROGRESS and r,
                      30, 0.2, what="the confirmed rotation")
    assert record.outcome is Outcome.VERIFIED, record.error
    # The click's response_url got the acknowledgement and then the result.
    reply = f"/reply/{chat.replies - 1}"
    wait_for(lambda: any("verified" in t for t in chat.receiver.texts(reply)), 10, 0.1, what="result post")
    assert any("queued as" in t for t in chat.receiver.texts(reply))
    # The text form works for the owner only, once: a cancel consumes the nonce.
    nonce = chat.slack("rotate sim cm").json()["blocks"][1]["elements"][0]["value"]
    assert "Cancelled" in chat.click(nonce, action="rotation_cancel").json()["text"]
    assert "already used" in chat.slack(f"confirm {nonce}").json()["text"]
    assert [a["decision"] for a in chat.audit()].count("confirmation asked") == 4


# --- Mattermost, generic HMAC, check, failures to the notification channel ------------------------
def test_mattermost_token_generic_hmac_check_and_failure_notification(
    simulator: ClusterSimulator, webhook, chat_env, start_service
) -> None:
    chat = webhook()
    assert chat.mattermost("status sim", token="wrong-token").status_code == 401
    assert chat.mattermost("status sim").status_code == 200
    assert "may not rotate" in chat.mattermost("rotate sim proxy").json()["text"]
    # Generic HMAC: stale, wrong secret, wrong content type, replay.
    assert chat.generic("status sim", timestamp=int(time.time()) - 301).status_code == 401
    assert chat.generic("status sim", secret="nope").status_code == 401
    body = json.dumps({"user": "ops-script", "text": "status"}).encode()
    ts = int(time.time())
    headers = {"X-Timestamp": str(ts), "X-Signature-256": generic_signature(GENERIC_SECRET, ts, body),
               "Content-Type": "text/plain"}
    assert chat.post("/chatops/generic", body, headers).status_code == 415
    headers["Content-Type"] = "application/json"
    assert chat.post("/chatops/generic", body, headers).status_code == 200
    assert chat.post("/chatops/generic", body, headers).status_code == 401  # replay
    nothing_queued(chat, simulator)

    start_service("worker", env=chat_env[0])
    # check is queued; a worker handshakes every node and posts the table.
    answer = chat.generic("check sim").json()
    assert answer["text"].startswith("Checking sim now")
    check_reply = f"/reply/{chat.replies}"
    table = wait_for(lambda: chat.receiver.texts(check_reply), 20, 0.1, what="the check result")
    assert "Check of sim" in table[0] and "proxy node 1" in table[0]

    # A rotation that fails and is rolled back: the result goes to the caller and the notification channel.
    simulator.fail_next(3, 500)
    before = simulator.served_fingerprint(1, "api")
    answer = chat.generic("rotate sim api").json()
    assert "queued as" in answer["text"]
    reply = f"/reply/{chat.replies}"
    notified = wait_for(lambda: chat.receiver.texts("/notify"), 30, 0.2, what="the failure notification")
    assert "rolled_back" in notified[0] and "rollback: ok" in notified[0] and "500" in notified[0]
    assert any("rolled_back" in t for t in chat.receiver.texts(reply))
    assert {simulator.served_fingerprint(uid, "api") for uid in (1, 2, 3)} == {before}


def test_a_status_answered_from_memory_is_audited_and_its_replay_does_nothing(
    simulator: ClusterSimulator, webhook
) -> None:
    chat = webhook()
    assert chat.slack("status sim").status_code == 200  # a cold cache: read from Redis, then kept
    body = chat.slack_body("status sim")
    headers = chat.slack_headers(body)
    answered = chat.post("/chatops/slack", body, headers)  # within --status-cache: from memory
    assert answered.status_code == 200 and "sim" in answered.json()["text"]
    audit = chat.audit()
    assert len(audit) == 2 and audit[0]["command"] == "status sim" and audit[0]["decision"] == "allowed"
    assert chat.post("/chatops/slack", body, headers).status_code == 401  # replay: refused, not audited
    assert len(chat.audit()) == 2


def test_chat_history_lists_the_clusters_tls_policy_changes_from_what_to_what(
    simulator: ClusterSimulator, webhook, inventory_path: Path
) -> None:
    """`history CLUSTER` answers the audit's first questions for a cluster's TLS policy too: a `policy apply`
    run from a terminal shows in chat, who ran it and each field from what to what; `history CLUSTER CERT`
    stays that certificate's rotations."""
    from typer.testing import CliRunner

    from rotation.cli.main import app

    chat = webhook(tls_policy={"min_control_tls": "1.3"})
    assert "No rotations recorded for sim" in chat.slack("history sim").json()["text"]
    before = simulator.cluster_settings()["min_control_TLS_version"]
    applied = CliRunner().invoke(app, ["policy", "apply", "sim", "-c", str(inventory_path), "--json"])
    assert json.loads(applied.stdout)["clusters"][0]["status"] == "applied", applied.output

    (line,) = chat.slack("history sim").json()["text"].splitlines()
    assert line.split()[2:5] == ["sim", "TLS", "policy"] and " applied " in line
    assert "(cli, cli:" in line and f"min_control_TLS_version {before!r} → '1.3'" in line
    assert "No rotations recorded for sim" in chat.slack("history sim proxy").json()["text"]


def _all_values(client: Any) -> Iterator[str]:
    for key in client.scan_iter():
        kind = client.type(key)
        if kind == "string":
            yield client.get(key)
        elif kind == "hash":
            yield from client.hvals(key)
        elif kind == "list":
            yield from client.lrange(key, 0, -1)
        elif kind == "set":
            yield from client.smembers(key)
        elif kind == "zset":
            yield from client.zrange(key, 0, -1)


def test_a_rotation_in_progress_is_refused_on_the_loop_and_its_replay_writes_nothing(
    simulator: ClusterSimulator, webhook
) -> None:
    chat = webhook()  # no worker: a queued rotation stays queued
    queued = chat.slack("rotate sim proxy").json()
    assert "queued as" in queued["text"], queued
    holder = chat.redis.get("rotation:pending:sim:proxy")
    assert holder and holder in queued["text"] and chat.redis.llen("rotation") == 1

    body = chat.slack_body("rotate sim proxy")
    headers = chat.slack_headers(body)
    busy = chat.post("/chatops/slack", body, headers).json()
    assert "already in progress" in busy["text"] and holder in busy["text"], busy
    audit = chat.audit()
    assert [a["decision"] for a in audit] == ["refused", "allowed"]
    assert chat.post("/chatops/slack", body, headers).status_code == 401  # replay: refused, nothing written
    assert len(chat.audit()) == 2 and chat.redis.get("rotation:pending:sim:proxy") == holder
    assert chat.redis.llen("rotation") == 1

    # The queued task carries a reference to the reply budget, never the response_url (a bearer
    # capability), and Redis holds that URL only sealed.
    message = json.loads(chat.redis.lindex("rotation", 0))
    _args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    assert kwargs["reply_to"] and "/reply/" not in json.dumps(kwargs)
    assert not any("/reply/" in value for value in _all_values(chat.redis))

    # A rotation running without a pending marker (its lock held): refused, and the claim given back.
    lock = f"rotation:lock:{simulator.node_addresses[0]}:{simulator.config.api_port}:cm"  # by the REST URL
    chat.redis.set(lock, "a worker elsewhere")
    running = chat.slack("rotate sim cm").json()
    assert "already in progress (a worker elsewhere)" in running["text"], running
    assert chat.redis.get("rotation:pending:sim:cm") is None and chat.redis.llen("rotation") == 1
    chat.redis.delete(lock)
    assert "queued as" in chat.slack("rotate sim cm").json()["text"]
    assert chat.redis.llen("rotation") == 2


def _listeners(port: int) -> set[int]:
    """Pids with a socket listening on 127.0.0.1:port (read from /proc, as `ss -tlnp` does)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":  # 0A: LISTEN
            inodes.add(f"socket:[{fields[9]}]")
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                    pids.add(int(entry.name))
            except OSError:
                continue  # gone, or not ours to read
    return pids


def _two_listeners(port: int, other_than: set[int] | None = None) -> set[int] | None:
    pids = _listeners(port)
    return pids if len(pids) == 2 and pids != other_than else None


def test_several_processes_each_listen_a_dead_one_is_restarted_and_all_stop_with_the_parent(
    chat_env, inventory_path: Path, tmp_path: Path, redis_server: RedisServer
) -> None:
    env, receiver = chat_env
    write_chatops(inventory_path, receiver)
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):  # another program has the port: a clear error, at once
        taken = subprocess.run([sys.executable, "-m", "workers.main", "webhook", "--port", str(port),
                                "--processes", "2"], env=env, capture_output=True, text=True, timeout=60,
                               cwd=Path(__file__).resolve().parents[2])
    assert taken.returncode != 0 and f"cannot listen on 127.0.0.1:{port}" in taken.stderr, taken.stderr
    process = ServiceProcess(["webhook", "--port", str(port), "--processes", "2"], env, tmp_path / "webhook.log")
    process.start()
    try:
        assert process.process is not None
        parent = process.process.pid
        children = wait_for(lambda: _two_listeners(port), 30, what="two processes listening")
        assert parent not in children  # each child has its own SO_REUSEPORT socket; the parent none
        # A child listens before its app is built; one killed then is a start failure, not a crash.
        wait_for(lambda: process.log().count("Application startup complete") == 2, 30, what="both processes serving")
        chat = Chat(f"http://127.0.0.1:{port}", receiver, redis_server.client())
        assert all(chat.slack("status sim").status_code == 200 for _ in range(4))

        os.kill(min(children), signal.SIGKILL)
        replaced = wait_for(lambda: _two_listeners(port, other_than=children), 30, what="the dead process replaced")
        assert max(children) in replaced
        assert chat.slack("status sim").status_code == 200
        assert "exited" in process.log()

        os.kill(parent, signal.SIGTERM)  # the parent only, as a container runtime does
        assert process.process.wait(20) == 0
        assert _listeners(port) == set()
        chat.close()
    finally:
        process.stop()


def test_a_pending_marker_left_by_a_rotation_that_ended_does_not_refuse_chat(simulator: ClusterSimulator,
                                                                             webhook) -> None:
    """A worker that could not release its marker (Redis away as its rotation ended) leaves it for its TTL,
    hours: chat, like the CLI and beat, takes over a marker whose rotation's record has ended."""
    chat = webhook()  # no worker: the first request stays queued
    assert "queued as" in chat.slack("rotate sim proxy").json()["text"]
    holder = chat.redis.get("rotation:pending:sim:proxy")
    assert "already in progress" in chat.slack("rotate sim proxy").json()["text"]  # still running: refused
    stored = json.loads(chat.redis.get(f"rotation:record:{holder}"))
    stored.update(outcome="verified", finished_at=stored["started_at"])  # its worker ended it, marker left
    chat.redis.set(f"rotation:record:{holder}", json.dumps(stored))

    again = chat.slack("rotate sim proxy").json()
    assert "queued as" in again["text"], again
    assert chat.redis.get("rotation:pending:sim:proxy") not in (None, holder)
    assert chat.redis.llen("rotation") == 2
