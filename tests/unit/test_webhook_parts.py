"""Parts of the webhook that need no server: its form parser (checked against the standard
library's) and the inventory watcher (a changed file is picked up, a broken edit is not)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from support.clock import FakeClock

from rotation.chatops.bodies import BadBody, parse_form
from workers.webhook.snapshot import InventoryWatcher

FORM_BYTES = st.binary(max_size=300) | st.lists(st.sampled_from(
    [b"a", b"=", b"&", b"+", b"%", b"%2", b"%20", b"%C3%A9", b"%ff", b"\xc3\xa9", b"\xff", b"text", b"user_id"]),
    max_size=40).map(b"".join)


@given(FORM_BYTES)
def test_the_form_parser_reads_what_parse_qsl_reads(body: bytes) -> None:
    expected = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=1000))
    assert parse_form(body, 1000) == expected


def test_a_slack_body_and_too_many_fields() -> None:
    body = urlencode({"user_id": "U1", "text": "rotate east proxy --dry-run", "empty": "",
                      "response_url": "https://hooks.slack.com/commands/T1/2/x?y=é"}).encode()
    assert parse_form(body, 64) == {"user_id": "U1", "text": "rotate east proxy --dry-run", "empty": "",
                                    "response_url": "https://hooks.slack.com/commands/T1/2/x?y=é"}
    with pytest.raises(BadBody, match="more than 3"):
        parse_form(b"a=1&b=2&c=3&d=4", 3)


def _write(path: Path, team: str) -> None:
    for name in ("ca.pem", "ca-key.pem"):  # the loader refuses an issuer whose files are missing
        (path.parent / name).touch()
    path.write_text(yaml.safe_dump({
        "issuers": {"internal": {"type": "internal_ca", "ca_cert": "ca.pem", "ca_key_file": "ca-key.pem"}},
        "clusters": {"east": {"url": "https://127.0.0.1:9443", "username": "admin@east.test", "issuer": "internal",
                              "password_file": "password", "fqdn": "east.test"}},
        "chatops": {"slack": {"signing_secret_env": "TEST_WATCHER_SECRET", "team_id": team}, "allow": []},
    }))


def test_the_inventory_watcher_reloads_a_change_and_keeps_the_old_one_on_a_broken_edit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_WATCHER_SECRET", "5ec4e7" * 5 + "00")
    path = tmp_path / "rotation.yaml"
    (tmp_path / "password").write_text("pw\n")
    _write(path, "T1")
    clock = FakeClock()
    watcher = InventoryWatcher(path, every=1.0, clock=clock)
    assert watcher.current().inventory.chatops.slack.team_id == "T1"

    _write(path, "T2")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))  # a new mtime even on a coarse clock
    clock.advance(0.9)
    assert watcher.current().inventory.chatops.slack.team_id == "T1"  # not stat'ed again before `every`
    clock.advance(0.2)
    assert watcher.current().inventory.chatops.slack.team_id == "T2"
    assert watcher.current().slack_secret == "5ec4e7" * 5 + "00"

    path.write_text("clusters: [this is not an inventory")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2_000_000))
    clock.advance(1.1)
    assert watcher.current().inventory.chatops.slack.team_id == "T2"


def test_importing_the_webhook_does_not_bind_the_celery_app() -> None:
    # The Celery app reads its broker from the environment when it is imported: a module that
    # imported it on load would send tasks to whatever Redis the importing process saw first.
    probe = "import sys, workers.webhook.app, workers.webhook.server; print('workers.celery_app' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "False"


def test_the_status_cache_reads_once_per_ttl_and_refreshes_in_the_background() -> None:
    from workers.webhook.status_cache import StatusCache

    clock = FakeClock()
    reads: list[str | None] = []

    def read(cluster: str | None) -> dict:
        reads.append(cluster)
        return {"read": len(reads)}

    async def scenario() -> None:
        cache = StatusCache(read, 1.0, lambda fn, *args: asyncio.to_thread(fn, *args), clock, stale=2.0)
        assert await cache.get("east") == {"read": 1}  # cold: waits for a read
        clock.advance(0.9)
        assert await cache.get("east") == {"read": 1}  # fresh: from memory
        clock.advance(0.2)
        assert await cache.get("east") == {"read": 1}  # stale: the previous read answers...
        for _ in range(50):  # ...while one background read refreshes it
            await asyncio.sleep(0.01)
            if len(reads) == 2:
                break
        assert reads == ["east", "east"] and await cache.get("east") == {"read": 2}
        clock.advance(3.1)  # past ttl + stale: too old to answer with
        assert await cache.get("east") == {"read": 3}
        assert await StatusCache(read, 0, lambda fn, *args: asyncio.to_thread(fn, *args), clock).get(None) == {
            "read": 4}

    asyncio.run(scenario())
