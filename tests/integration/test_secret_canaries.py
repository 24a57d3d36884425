"""End-to-end canary sweep: every secret slot holds a value of its own (the RS password of each cluster,
one RS refuses, a client certificate key in a variable, the service's encryption key and a wrong one, the
Redis password and a refused one, the three chat secrets, the notification URL's token, each response_url,
the TSIG key, the ACME EAB key, the internal CA's key, the keys the clusters start with, every key issued
and the sealed ACME account key). Real flows run with DEBUG logs: inline, queued through a real worker, a
failure, a rollback from chat, failure paths (RS 401, Redis unreachable or refusing, a key that opens
nothing), single-host mode, check, config check, status, history, signed and forged webhook commands, the
metrics endpoint, beat, a worker killed mid-rotation. Then everything the service wrote is collected (logs,
CLI output, the webhook's answers, chat replies, every Redis key and value with Celery's messages decoded,
unacked included, every file of the state folder) and no secret may appear in it in any form. The sealed
store is ciphertext: the searches do not find a plaintext in it, and its key is one of the canaries."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
import redis
import yaml
from support.acme import EAB_KID, TSIG_NAME, NamedServer, PebbleServer
from support.chat import OPERATOR, TEAM, Chat, Receiver
from support.cluster import start_simulator, write_inventory
from support.fleet import fleet_inventory
from support.processes import RedisServer, ServiceProcess, free_port, wait_for

from rotation.adapters.issuers.internal_ca import init_ca
from rotation.adapters.secrets import SecretBox

RS_PASSWORD = "canary-rs-password-" + secrets.token_hex(8)
RS_PASSWORD_ENV = "canary-rs2-password-" + secrets.token_hex(8)
REDIS_PASSWORD = "canary-redis-" + secrets.token_hex(10)
SLACK = "cafe" + secrets.token_hex(14)  # Slack's form: 32 hex digits
MATTERMOST = "canarymm" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(18))
GENERIC = "canary-generic-hmac-" + secrets.token_hex(16)
NOTIFY_TOKEN = "canary-notify-" + secrets.token_hex(10)
ACME_DIR_PASSWORD = "canary-acme-dir-" + secrets.token_hex(10)
# configured but wrong: refused by RS / Redis, or a valid key that opens nothing
RS_PASSWORD_REFUSED = "canary-rs3-refused-" + secrets.token_hex(8)
REDIS_PASSWORD_REFUSED = "canary-redis-refused-" + secrets.token_hex(8)


@dataclass
class Sweep:
    canaries: dict[str, list[str]] = field(default_factory=dict)  # slot -> its secret values
    places: dict[str, bytes] = field(default_factory=dict)  # where -> what was found there


def forms(secret: str) -> dict[str, bytes]:
    """The secret as it could show: raw, base64 at each alignment (standard and URL-safe), hex, URL-encoded,
    JSON-escaped and its first 12 characters."""
    raw = secret.encode()
    found = {"raw": raw, "hex": raw.hex().encode(), "HEX": raw.hex().upper().encode(),
             "url-encoded": quote(secret, safe="").encode(), "form-encoded": quote_plus(secret).encode(),
             "first 12": raw[:12], "JSON-escaped": json.dumps(secret)[1:-1].replace("/", "\\/").encode()}
    for offset in range(3):
        part = raw[offset:]
        part = part[:len(part) - len(part) % 3]
        found[f"base64+{offset}"] = base64.b64encode(part)
        found[f"urlsafe base64+{offset}"] = base64.urlsafe_b64encode(part)
    return {name: value for name, value in found.items() if len(value) >= 8}


def private_key_lines(pem_text: str) -> list[str]:
    """The base64 body lines of every private key in a text that hold private material: a line of only the
    public key (PKCS#8 carries it too, and so do the certificates) is left out."""
    from cryptography.hazmat.primitives import serialization

    lines = []
    for block in re.findall(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", pem_text, re.S):
        key = serialization.load_pem_private_key(block.encode(), None)
        public = key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        body = block.split("-----")[2].split()
        lines += [line for line in body if len(line) >= 16 and base64.b64decode(line + "=" * (-len(line) % 4))
                  not in public]
    return lines


def decoded_messages(value: bytes) -> list[bytes]:
    """Celery/kombu messages keep their body base64-encoded inside JSON: the decoded bodies."""
    found: list[bytes] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, item in node.items():
                if key == "body" and isinstance(item, str):
                    with contextlib.suppress(ValueError):
                        found.append(base64.b64decode(item, validate=True))
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, str) and node[:1] in "[{":
            with contextlib.suppress(ValueError):
                walk(json.loads(node))

    with contextlib.suppress(ValueError, UnicodeDecodeError):
        walk(json.loads(value))
    return found


def redis_contents(client: redis.Redis) -> dict[str, bytes]:
    """Every key's value, read by its type (DUMP's encoding may compress strings)."""
    found: dict[str, bytes] = {}
    for key in client.keys("*"):
        kind = client.type(key).decode()
        values: list[bytes]
        if kind == "string":
            values = [client.get(key) or b""]
        elif kind == "hash":
            values = [part for pair in client.hgetall(key).items() for part in pair]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            values = [part for _, entry in client.xrange(key) for pair in entry.items() for part in pair]
        else:
            raise AssertionError(f"{key!r}: a Redis type the sweep does not read: {kind}")
        name = key.decode(errors="replace")
        found[f"redis {name}"] = key + b"\n" + b"\n".join(values)
        bodies = [body for value in values for body in decoded_messages(value)]
        if bodies:
            found[f"redis {name} (message bodies)"] = b"\n".join(bodies)
    return found


@contextlib.contextmanager
def debug_logs(path: Path) -> Iterator[None]:
    """This process's logging as a service configures it, at DEBUG, in both formats, into ``path``."""
    import logging
    import sys

    from rotation.adapters.logs import ContextFilter, PlainFormatter, configure

    with path.open("a") as out:
        real, sys.stderr = sys.stderr, out
        try:
            configure("DEBUG", "json")
        finally:
            sys.stderr = real
        plain = logging.StreamHandler(out)
        plain.addFilter(ContextFilter())
        plain.setFormatter(PlainFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(plain)
        try:
            yield
        finally:
            for handler in [h for h in root.handlers if h is plain or getattr(h, "_rotation", False)]:
                root.removeHandler(handler)
            root.setLevel(logging.WARNING)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, named: NamedServer, pebble_eab: PebbleServer) -> Iterator[Sweep]:
    from typer.testing import CliRunner

    from workers.main import app

    root = tmp_path_factory.mktemp("canary")
    result = Sweep()
    sim = start_simulator(root, admin_password=RS_PASSWORD)
    sim2 = start_simulator(root, admin_password=RS_PASSWORD_ENV)
    receiver = Receiver()
    processes: list[ServiceProcess] = []
    store = RedisServer(root / "redis", password=REDIS_PASSWORD)
    store.start()
    try:
        # the keys the clusters start with: read (sealed) as the originals a failure restores
        originals = [m.key_pem or "" for s in (sim, sim2) for m in s.state.certs.values()]
        ca_files = init_ca(root / "ca", common_name="canary internal CA")
        inventory_path = write_inventory(root / "rotation.yaml", sim, ca_files)
        data = yaml.safe_load(inventory_path.read_text())
        sim2.cert_login.enable()  # sim2 logs in with a client certificate whose key is in a variable
        second = sim2.inventory_entry("sim2", login="both")
        second.pop("password_file")
        client_key = Path(second.pop("client_key_file")).read_text()
        second.update({"password_env": "CANARY_RS2_PASSWORD", "client_key_env": "CANARY_CLIENT_KEY",
                       "issuer": "internal", "verify_deadline": "5s",
                       "handshake_timeout": "2s"})
        data["clusters"]["sim2"] = second
        refused = {**data["clusters"]["sim"], "username": "intruder@example.com", "password_env": "CANARY_RS3"}
        refused.pop("password_file")
        # RS answers 401: the failure paths of a login (an inventory of its own: an unreadable cluster
        # would stop the others' replication checks)
        refused_path = root / "refused.yaml"
        refused_path.write_text(yaml.safe_dump({**data, "clusters": {"sim3": refused}}))
        data["clusters"]["sim"]["certificates"]["metrics_exporter"] = {"issuer": "pebble"}
        data["issuers"]["pebble"] = {
            # a password in the directory URL (a CA behind a proxy that asks for one): in the issuer's budget
            # identity too (counted in Redis, shown by status and the metrics)
            "type": "acme", "directory": pebble_eab.directory_url.replace("://", f"://acme:{ACME_DIR_PASSWORD}@", 1),
            "email": "ops@example.com", "budget": {"orders": 50, "per": "3h"},
            "eab_kid": EAB_KID, "eab_hmac_key_env": "CANARY_EAB_KEY", "ca_bundle": str(pebble_eab.tls_cert),
            "trust_roots": str(pebble_eab.root_file), "order_timeout": "30s",
            "dns": {"provider": "rfc2136", "server": named.address, "tsig_key_name": TSIG_NAME,
                    "tsig_secret_env": "CANARY_TSIG", "propagation_servers": [named.address],
                    "propagation_timeout": "10s"}}
        data["chatops"] = {
            "slack": {"signing_secret_env": "CANARY_SLACK", "team_id": TEAM},
            "mattermost": {"token_env": "CANARY_MM"},
            "generic": {"secret_env": "CANARY_GENERIC"},
            "notify": {"url_env": "CANARY_NOTIFY_URL"},
            "reply_url_prefixes": [receiver.base + "/reply/"],
            "allow": [
                {"user": OPERATOR, "team": TEAM, "platform": "slack", "clusters": {"*": ["read", "rotate"]}},
                {"user": "mmoperator0000000000000000", "platform": "mattermost", "clusters": {"*": ["read"]}},
                {"user": "ops-script", "platform": "generic", "clusters": {"*": ["read", "rotate"]}},
            ],
        }
        inventory_path.write_text(yaml.safe_dump(data))
        state = root / "state"
        secret_key, other_key = SecretBox.generate_key(), SecretBox.generate_key()
        env = {
            "ROTATION_REDIS_URL": store.url, "ROTATION_STORE": "redis", "ROTATION_CONFIG": str(inventory_path),
            "ROTATION_STATE_DIR": str(state), "ROTATION_SECRET_KEY": secret_key,
            "ROTATION_SCAN_INTERVAL": "2s", "ROTATION_JITTER": "0.5s", "ROTATION_BACKOFF_BASE": "60s",
            "ROTATION_LOCK_LEASE": "3s", "ROTATION_TASK_TIME_LIMIT": "15s", "ROTATION_VISIBILITY_TIMEOUT": "18s",
            "CANARY_RS2_PASSWORD": RS_PASSWORD_ENV, "CANARY_RS3": RS_PASSWORD_REFUSED, "CANARY_CLIENT_KEY": client_key,
            "CANARY_EAB_KEY": pebble_eab.eab_hmac_key or "",
            "CANARY_TSIG": named.tsig_secret, "CANARY_SLACK": SLACK, "CANARY_MM": MATTERMOST,
            "CANARY_GENERIC": GENERIC, "CANARY_NOTIFY_URL": f"{receiver.base}/notify/{NOTIFY_TOKEN}",
        }
        result.canaries = {
            "RS password (password_file)": [RS_PASSWORD], "RS password (password_env)": [RS_PASSWORD_ENV],
            "RS password (refused)": [RS_PASSWORD_REFUSED],
            "ROTATION_SECRET_KEY": [secret_key, other_key], "Redis password": [REDIS_PASSWORD, REDIS_PASSWORD_REFUSED],
            "Slack signing secret": [SLACK], "Mattermost token": [MATTERMOST], "generic HMAC secret": [GENERIC],
            "notification URL token": [NOTIFY_TOKEN], "TSIG secret": [named.tsig_secret],
            "ACME EAB HMAC key": [pebble_eab.eab_hmac_key or ""], "ACME directory password": [ACME_DIR_PASSWORD],
            "internal CA key": private_key_lines(ca_files[1].read_text()),
            "RS client certificate key (client_key_env)": private_key_lines(client_key),
        }
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            full_env = {**os.environ}
            metrics_port, webhook_port = free_port(), free_port()
            worker = ServiceProcess(["worker", "--concurrency", "2", "--metrics-port", str(metrics_port),
                                     "--log-format", "json", "--log-level", "DEBUG"], full_env,
                                    root / "worker.log").start()
            processes.append(worker)
            webhook = ServiceProcess(["webhook", "--port", str(webhook_port), "--log-format", "plain",
                                      "--log-level", "DEBUG", "--access-log"], full_env, root / "webhook.log").start()
            processes.append(webhook)
            worker.wait_ready("ready")
            base = f"http://127.0.0.1:{webhook_port}"
            wait_for(lambda: httpx.get(base + "/healthz", timeout=1).status_code == 200, 20, 0.05,
                     what="the webhook")
            chat = Chat(base, receiver, store.client())
            reply_tokens: list[str] = []

            def reply_url() -> str:  # a response_url is a bearer capability too
                reply_tokens.append(f"canary-reply-{secrets.token_hex(10)}")
                return f"{receiver.base}/reply/{reply_tokens[-1]}"

            chat.reply_url = reply_url  # type: ignore[method-assign]
            answers_sent: list[bytes] = []  # what the webhook answers the chat platform
            post = chat.post

            def recorded(path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
                response = post(path, body, headers)
                answers_sent.append(response.content)
                return response

            chat.post = recorded  # type: ignore[method-assign]
            runner = CliRunner()
            outcomes: dict[str, list[str]] = {}

            def cli(*args: str, codes: tuple[int, ...] = (0,)) -> str:
                answer = runner.invoke(app, list(args))
                result.places[f"cli #{len(result.places)} {' '.join(args)}"] = answer.output.encode()
                assert answer.exit_code in codes, (args, answer.output[-2000:])
                return answer.stdout

            def rotated(*args: str, codes: tuple[int, ...] = (0,)) -> str:
                (record,) = json.loads(cli("rotate", *args, "--json", codes=codes))
                outcomes.setdefault(" ".join(args), []).append(record["outcome"])
                return record["outcome"]

            with debug_logs(root / "cli.log"):
                rotated("sim", "cm", "--inline")
                rotated("sim", "metrics_exporter", "--inline")  # ACME: EAB, DNS-01 signed with TSIG
                rotated("sim2", "syncer", "--inline")
                rotated("sim", "proxy")  # queued: the worker rotates it
                sim.fail_next(10, 503)  # push and rollback both fail
                rotated("sim", "syncer", codes=(1,))
                sim.clear_faults()
                cli("check", "--json", codes=(0, 1, 2))
                findings = json.loads(cli("config", "check", "--json", codes=(0, 1, 2)))["findings"]
                found = {f["where"]: f for f in findings}
                assert found["clusters.sim2.client_cert_file"]["severity"] == "ok", found  # the key in use
                cli("status", "--json")
                cli("status")
                cli("history", "--json")
                cli("history", "--audit", "--json")
                # failure paths: a login RS refuses, a Redis that refuses the password or is not there, a
                # key that does not open the sealed ACME account
                rotated("sim3", "syncer", "--inline", "-c", str(refused_path), codes=(1, 2))
                cli("check", "-c", str(refused_path), "--json", codes=(1, 2))
                cli("rotate", "sim3", "api", "--dry-run", "--inline", "-c", str(refused_path), codes=(1, 2))
                dead = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0"
                wrong = f"redis://:{REDIS_PASSWORD_REFUSED}@127.0.0.1:{store.port}/0"
                dead_query = f"redis://127.0.0.1:{free_port()}/0?password={REDIS_PASSWORD}"  # redis-py's other form
                sentinel = f"redis+sentinel://127.0.0.1:{free_port()}/mymaster?password={REDIS_PASSWORD}"
                for url in (dead, wrong, dead_query, sentinel):
                    patch.setenv("ROTATION_REDIS_URL", url)
                    cli("status", "--json", codes=(1, 2))
                    cli("history", "--json", codes=(1, 2))
                    cli("rotate", "sim", "api", "--no-wait", codes=(1, 2))
                patch.setenv("ROTATION_REDIS_URL", f"redis://127.0.0.1:{store.port}/0?password={REDIS_PASSWORD}")
                cli("status", "--json")
                cli("status")
                patch.setenv("ROTATION_REDIS_URL", store.url)
                patch.setenv("ROTATION_SECRET_KEY", other_key)
                rotated("sim", "metrics_exporter", "--inline", codes=(1, 2))
                patch.setenv("ROTATION_SECRET_KEY", secret_key)
                # single-host mode: records and sealed secrets as files in the state folder
                patch.setenv("ROTATION_STORE", "local")
                sim.fail_next(3, 409)
                rotated("sim", "proxy", "--inline", codes=(1,))
                sim.clear_faults()
                rotated("sim", "api", "--inline")
                rotated("sim", "metrics_exporter", "--inline")  # a new ACME account, sealed in a file
                cli("status", "--json")
                cli("history", "--json")
                patch.setenv("ROTATION_STORE", "redis")

            # Chat: signed and forged, on each platform; a rotation rolled back from chat is notified.
            def slack(text: str, secret: str = SLACK) -> int:
                body = chat.slack_body(text)
                return chat.post("/chatops/slack", body, chat.slack_headers(body, secret=secret)).status_code

            answers = {
                "slack": slack("status sim"), "slack forged": slack("status sim", "f" * 32),
                "mattermost": chat.mattermost("status sim", token=MATTERMOST).status_code,
                "mattermost forged": chat.mattermost("status sim", token="x" * 26).status_code,
                "generic": chat.generic("history sim", secret=GENERIC).status_code,
                "generic forged": chat.generic("status sim", secret="forged-" + "y" * 32).status_code,
            }
            sim.fail_next(3, 500)
            queued = chat.generic("rotate sim api", secret=GENERIC).json()["text"]
            notified = wait_for(lambda: [t for t in receiver.texts(f"/notify/{NOTIFY_TOKEN}") if "sim/api" in t],
                                30, 0.2, what="the rollback's notification")
            outcomes["chat rotate sim api"] = ["rolled_back" if "rolled_back" in notified[0] else notified[0]]
            metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
            result.places["metrics"] = metrics.encode()
            # the flows ran as meant: the sweep below is not vacuous
            assert outcomes == {"sim cm --inline": ["verified"],
                                "sim metrics_exporter --inline": ["verified", "refused", "verified"],
                                "sim2 syncer --inline": ["verified"], "sim proxy": ["verified"],
                                "sim proxy --inline": ["rolled_back"], "sim api --inline": ["verified"],
                                "sim syncer": ["failed"], f"sim3 syncer --inline -c {refused_path}": ["refused"],
                                "chat rotate sim api": ["rolled_back"]}, outcomes
            assert answers == {"slack": 200, "slack forged": 401, "mattermost": 200, "mattermost forged": 401,
                               "generic": 200, "generic forged": 401}, answers
            assert "queued as" in queued and "rotation_rotations_total" in metrics
            # A worker killed mid-rotation (after it sealed the original pair, before the push ended): its
            # task stays unacked in Redis.
            pushed = worker.log().count("step push ok")
            sim.slow(0.5)
            with debug_logs(root / "cli.log"):
                cli("rotate", "sim", "cm", "--no-wait")
            wait_for(lambda: worker.log().count("step push ok") > pushed, 30, 0.05, what="the push")
            worker.kill()  # while it verifies
            sim.clear_faults()
            assert chat.redis.hlen("unacked") == 1
            # Messages left in the broker: queued while no worker runs (from the CLI and from chat).
            with debug_logs(root / "cli.log"):
                cli("rotate", "sim", "syncer", "--no-wait")
            assert "queued as" in chat.generic("rotate sim proxy", secret=GENERIC).json()["text"]
            assert slack("rotate sim api") == 200
            assert chat.redis.llen("rotation") == 3, chat.redis.llen("rotation")  # the Celery queue
            # beat (its schedule file in the state folder) queues a scan nobody takes
            beat = ServiceProcess(["beat", "--log-format", "json", "--log-level", "DEBUG"], full_env,
                                  root / "beat.log").start()
            processes.append(beat)
            beat.wait_ready("beat: Starting")
            wait_for(lambda: chat.redis.llen("rotation") > 3, 20, 0.1, what="beat's first scan task")
            beat.stop()
            chat.close()
            result.places["webhook answers"] = b"\n".join(answers_sent)
        for process in processes:
            process.stop()
        keys = [line for s in (sim, sim2) for body in s.received_update_bodies
                for line in private_key_lines(body.decode(errors="replace").replace("\\n", "\n"))]
        assert len(keys) >= 5 * 5, len(keys)  # five pushes at least, several lines each
        result.canaries["issued private keys"] = keys
        result.canaries["original private keys"] = [line for pem in originals for line in private_key_lines(pem)]
        result.canaries["chat response_url"] = reply_tokens
        box = SecretBox([secret_key.encode()])
        client = redis.Redis(port=store.port, password=REDIS_PASSWORD)
        sealed = [box.decrypt(client.get(key) or b"").decode() for key in client.keys("rotation:secret:*")]
        sealed += [box.decrypt(path.read_bytes()).decode() for path in (state / "secrets").glob("*")]
        # what the store seals: PEM keys and the ACME account's JWK (its private members)
        result.canaries["sealed private keys"] = [
            *(line for text in sealed for line in private_key_lines(text.replace("\\n", "\n"))),
            *(value for text in sealed for value in re.findall(r'"(?:d|p|q|dp|dq|qi)\\?": *\\?"([\w-]{16,})', text))]
        for name in ("worker.log", "webhook.log", "beat.log", "cli.log"):
            result.places[name] = (root / name).read_bytes()
        result.places["chat replies and notifications"] = json.dumps([body for _, body in receiver.posts]).encode()
        result.places.update(redis_contents(redis.Redis(port=store.port, password=REDIS_PASSWORD)))
        for path in sorted(p for p in state.rglob("*") if p.is_file()):
            result.places[f"state {path.relative_to(state)}"] = path.read_bytes()
        yield result
    finally:
        for process in processes:
            process.stop()
        receiver.close()
        store.stop()
        sim.stop()
        sim2.stop()


SLOTS = ["RS password (password_file)", "RS password (password_env)", "RS password (refused)",
         "ROTATION_SECRET_KEY", "Redis password",
         "Slack signing secret", "Mattermost token", "generic HMAC secret", "notification URL token",
         "TSIG secret", "ACME EAB HMAC key", "ACME directory password", "internal CA key", "issued private keys",
         "original private keys", "chat response_url", "sealed private keys",
         "RS client certificate key (client_key_env)"]


def test_no_secret_shows_anywhere_the_service_writes(sweep: Sweep) -> None:
    """One sweep, every slot (the flows take seconds: run once, not once per slot and xdist worker)."""
    assert sorted(sweep.canaries) == sorted(SLOTS) and all(sweep.canaries.values()), sweep.canaries.keys()
    assert len(sweep.places) > 10
    # the ACME issuer's budget was counted and shown, its directory's password hidden
    assert b'rotation_issuer_orders_left{ca="https://acme:***@' in sweep.places["metrics"]
    leaks: dict[str, list[str]] = {}
    for slot in SLOTS:
        for number, secret in enumerate(sweep.canaries[slot]):
            assert secret, slot
            for form, needle in forms(secret).items():
                leaks.setdefault(slot, []).extend(f"{place}: {form} (value {number})"
                                                  for place, text in sweep.places.items() if needle in text)
    assert not {slot: hits for slot, hits in leaks.items() if hits}  # where and in which form, never the secret


def test_a_worker_given_the_redis_password_in_the_query_starts_and_never_shows_it(tmp_path: Path) -> None:
    """redis-py reads ``?password=``, so the preflight passed; kombu took it as a second keyword argument and
    every worker and beat stopped with a TypeError (the supervisor restarting them for good)."""
    password = "canary-query-" + secrets.token_hex(10)
    with RedisServer(tmp_path / "redis", password=password) as store:
        (tmp_path / "rotation.yaml").write_text("clusters: {}\n")
        env = {**os.environ, "ROTATION_REDIS_URL": f"redis://127.0.0.1:{store.port}/0?password={password}",
               "ROTATION_STORE": "redis", "ROTATION_CONFIG": str(tmp_path / "rotation.yaml"),
               "ROTATION_SECRET_KEY": SecretBox.generate_key(), "ROTATION_STATE_DIR": str(tmp_path / "state")}
        worker = ServiceProcess(["worker", "--no-supervise", "--log-level", "DEBUG"], env,
                                tmp_path / "worker.log").start()
        try:
            worker.wait_ready("ready")
        finally:
            worker.stop()
        log = worker.log()
        assert "TypeError" not in log
        assert not [form for form, needle in forms(password).items() if needle.decode() in log]


def test_a_replica_of_source_password_stays_out_of_a_queued_rotations_logs_and_redis(
        linked_fleet: Any, redis_server: RedisServer, ca_files: tuple[Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A Replica Of source URI holds the source database's password: a proxy rotation through a real worker
    (DEBUG) pins the new certificate on the replica, and nothing it logs, answers or leaves in Redis (the
    record and its undo memo, Celery's messages) shows the password in any form."""
    from typer.testing import CliRunner

    from workers.main import app

    fleet = linked_fleet(["east", "west"])
    fleet.replica_of("east", "west")
    address, port, sni = fleet.endpoint("east")
    password = "canary-dbpw-" + secrets.token_hex(10)
    fleet["west"].replication.configure(1, {"replica_sources": [{
        "uri": f"redis://admin:{password}@{address}:{port}", "server_cert": fleet["east"].cluster_cert_pem("proxy"),
        "replication_tls_sni": sni}]})
    redis_server.client().flushall()
    env = {"ROTATION_REDIS_URL": redis_server.url, "ROTATION_STORE": "redis",
           "ROTATION_CONFIG": str(fleet_inventory(tmp_path / "fleet.yaml", fleet, ca_files)),
           "ROTATION_STATE_DIR": str(tmp_path / "state"), "ROTATION_SECRET_KEY": SecretBox.generate_key()}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    worker = ServiceProcess(["worker", "--concurrency", "2", "--log-format", "json", "--log-level", "DEBUG"],
                            {**os.environ}, tmp_path / "worker.log").start()
    try:
        worker.wait_ready("ready")
        answer = CliRunner().invoke(app, ["rotate", "east", "proxy", "--json"])
        links = CliRunner().invoke(app, ["links", "--json"])
    finally:
        worker.stop()
    (record,) = json.loads(answer.stdout)
    assert record["outcome"] == "verified", answer.output
    assert "west db1 pins the new proxy" in json.dumps(record)
    places = {"cli rotate": answer.output.encode(), "cli links": links.output.encode(),
              "worker.log": worker.log().encode(),
              **redis_contents(redis.Redis(port=redis_server.port))}
    leaks = [f"{place}: {form}" for form, needle in forms(password).items()
             for place, text in places.items() if needle in text]
    assert not leaks
