"""Issue 12 below the webhook: secrets of real length, reply URL prefixes, the inventory's size and
alias budget, redaction in logs and errors, and text from outside shown as text."""

from __future__ import annotations

import io
import json
import logging
import os
import time
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from support.processes import free_port
from typer.testing import CliRunner

from rotation.adapters.logs import JsonFormatter, PlainFormatter
from rotation.cli.render import cell
from rotation.config import load_inventory
from rotation.config.chatops import GenericSettings, MattermostSettings, SlackSettings
from rotation.config.inventory import MAX_BYTES
from rotation.core.errors import ConfigError
from rotation.core.text import chat, clean

SLACK_OK = "0123456789abcdef" * 2
MM_OK = "abcdefghijklmnopqrstuvwxyz"[:20] + "012345"


# --- 1. secrets of real length -------------------------------------------------------------------
@pytest.mark.parametrize(("settings", "value", "says"), [
    (SlackSettings(signing_secret_env="T_SECRET"), "", "environment variable T_SECRET is empty"),
    (SlackSettings(signing_secret_env="T_SECRET"), "   ", "environment variable T_SECRET is empty"),
    (SlackSettings(signing_secret_env="T_SECRET"), "s3cret", "does not hold Slack's signing secret"),
    (SlackSettings(signing_secret_env="T_SECRET"), SLACK_OK.upper(), "does not hold Slack's signing secret"),
    (SlackSettings(signing_secret_env="T_SECRET"), SLACK_OK + "0", "does not hold Slack's signing secret"),
    (MattermostSettings(token_env="T_SECRET"), MM_OK[:-1], "26 characters"),
    (MattermostSettings(token_env="T_SECRET"), MM_OK.upper(), "26 characters"),
    (GenericSettings(secret_env="T_SECRET"), "k" * 31, "at least 32 bytes"),
    (GenericSettings(secret_env="T_SECRET"), "", "is empty"),
], ids=["slack-empty", "slack-blank", "slack-short", "slack-upper", "slack-long", "mm-short", "mm-upper",
        "generic-31", "generic-empty"])
def test_a_platform_secret_must_have_its_real_form(settings: object, value: str, says: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_SECRET", value)
    read = {SlackSettings: "signing_secret", MattermostSettings: "token", GenericSettings: "secret"}[type(settings)]
    with pytest.raises(ConfigError, match=says) as info:
        getattr(settings, read)()
    assert "T_SECRET" in info.value.message and (not value.strip() or value not in info.value.message)


def test_secrets_of_the_real_form_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("T_SLACK", SLACK_OK)
    monkeypatch.setenv("T_MM", MM_OK)
    monkeypatch.setenv("T_GENERIC", "é" * 16)  # 32 bytes
    assert SlackSettings(signing_secret_env="T_SLACK").signing_secret() == SLACK_OK
    assert MattermostSettings(token_env="T_MM").token() == MM_OK
    assert GenericSettings(secret_env="T_GENERIC").secret() == "é" * 16
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match=f"file {tmp_path / 'empty'} is empty"):
        SlackSettings(signing_secret_file=tmp_path / "empty").signing_secret()


# --- 5. reply URL prefixes, parsed when the inventory loads --------------------------------------
def _inventory(tmp_path: Path, chatops: dict) -> Path:
    path = tmp_path / "rotation.yaml"
    path.write_text(yaml.safe_dump({"clusters": {}, "chatops": chatops}))
    return path


@pytest.mark.parametrize(("prefix", "says"), [
    ("https://hooks.slack.com", "end with '/'"),
    ("", "non-empty string"),
    ("https://", "must name a host"),
    ("https://ops@hooks.slack.com/", "user info"),
    ("http://hooks.slack.com/", "https://"),
    ("https://hooks.slack.com/x/../", "end with '/'"),
    ("https://hooks.slack.com/?a=1", "no query"),
    ("https://hooks.slack.com:0x1bb/", "Port"),
])
def test_reply_url_prefixes_are_refused_unless_https_host_port_and_a_slash_path(
    tmp_path: Path, prefix: str, says: str
) -> None:
    with pytest.raises(ConfigError, match="chatops.reply_url_prefixes.0") as info:
        load_inventory(_inventory(tmp_path, {"reply_url_prefixes": [prefix]}))
    assert says in info.value.message


def test_a_reply_url_is_compared_part_by_part(tmp_path: Path) -> None:
    inventory = load_inventory(_inventory(tmp_path, {"reply_url_prefixes": ["https://hooks.slack.com/commands/"]}))
    from rotation.config.reply_urls import admit

    prefixes = inventory.chatops.reply_url_prefixes
    good = "https://hooks.slack.com/commands/T1/123/abc"
    assert admit(good, prefixes) == good
    assert admit("https://HOOKS.slack.com:443/commands/T1/1/x", prefixes) == "https://hooks.slack.com/commands/T1/1/x"
    for forged in ("https://hooks.slack.com@127.0.0.5/commands/x", "https://hooks.slack.com.evil.test/commands/x",
                   "https://hooks.slack.com:8443/commands/x", "http://hooks.slack.com/commands/x",
                   "https://hooks.slack.com/commandsX/x", "https://hooks.slack.com/commands/../services/x",
                   "https://hooks.slack.com/commands/%2e%2e/services/x", "https://hooks.slack.com/commands/x#y",
                   "https://hooks.slack.com/commands/\\x", "https://hooks.slack.com/commands/ x"):
        assert admit(forged, prefixes) is None, forged


# --- 9. the inventory's size and alias budget ------------------------------------------------------
def _bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["a0: &a0 {x: 1}"]
    for level in range(1, levels + 1):
        refs = ", ".join(f"k{i}: *a{level - 1}" for i in range(width))
        lines.append(f"a{level}: &a{level} {{{refs}}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("text", "says"), [
    (_bomb(), "aliases expand the document beyond"),
    ("clusters: &c {x: [*c]}\n", "refers to a node that contains it"),
    ("clusters: " + "[" * 2000 + "]" * 2000 + "\n", "nested too deeply"),
], ids=["alias-bomb", "recursive-alias", "deep"])
def test_inventories_that_would_expand_without_bound_are_refused(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "rotation.yaml"
    path.write_text(text)
    assert len(text) < 1000 or "[" in text  # the bomb is small: its expansion is the attack
    with pytest.raises(ConfigError, match=says):
        load_inventory(path)


def test_a_file_over_1_mib_or_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rotation.yaml"
    path.write_bytes(b"# " + b"x" * MAX_BYTES + b"\nclusters: {}\n")
    with pytest.raises(ConfigError, match="over 1 MiB"):
        load_inventory(path)
    path.write_bytes(b"clusters: {}\n# \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_inventory(path)


def test_aliases_within_budget_still_work(tmp_path: Path) -> None:
    path = tmp_path / "rotation.yaml"
    path.write_text("x-ports: &ports {cm: 8443}\nclusters: {}\nrenew_before: 20d\n")
    with pytest.raises(ConfigError, match="x-ports"):  # unknown key: the alias itself was fine
        load_inventory(path)
    path.write_text("renew_before: &rb 20d\nclusters: {}\nchatops: {confirm_ttl: *rb}\n")
    assert load_inventory(path).chatops.confirm_ttl.days == 20


def test_a_live_reload_of_a_bomb_keeps_the_previous_inventory(tmp_path: Path) -> None:
    from workers.webhook.snapshot import InventoryWatcher

    path = tmp_path / "rotation.yaml"
    path.write_text("clusters: {}\nrenew_before: 20d\n")
    watcher = InventoryWatcher(path, every=0)
    path.write_text(_bomb())
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert watcher.current().inventory.renew_before.absolute.days == 20


# --- 4. redaction in logs and errors -------------------------------------------------------------
def _record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("rotation.webhook", logging.WARNING, __file__, 1, message, args, None)


@pytest.mark.parametrize("formatter", [PlainFormatter("%(levelname)s %(message)s"), JsonFormatter()])
def test_log_lines_carry_no_password_no_escape_and_no_second_line(formatter: logging.Formatter) -> None:
    record = _record("status of %s not refreshed: %s", "east",
                     "cannot read the service state from redis://:hunter2@redis.internal:6379/0\n"
                     "FAKE 12:00 INFO forged line \x1b]8;;https://evil/\x1b\\link\x1b]8;;\x1b\\\x1b[2J")
    line = formatter.format(record)
    message = json.loads(line)["message"] if isinstance(formatter, JsonFormatter) else line
    assert "hunter2" not in message and "redis://:***@redis.internal:6379/0" in message
    assert "\n" not in message and "\x1b" not in message and "https://evil/" not in message
    assert record.getMessage().count("hunter2") == 1  # the record itself is left as it was


def test_status_does_not_print_the_redis_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from workers.main import app

    monkeypatch.setenv("ROTATION_STORE", "redis")
    monkeypatch.setenv("ROTATION_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("ROTATION_REDIS_URL", f"redis://:hunter2-pw@127.0.0.1:{free_port()}/0")
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "hunter2-pw" not in result.output and ":***@127.0.0.1" in result.output


# --- 3. text from outside is text ----------------------------------------------------------------
def test_clean_removes_escapes_controls_and_bidi_but_keeps_text() -> None:
    assert clean("plain [bold]text[/]") == "plain [bold]text[/]"
    assert clean("a\x1b[31mred\x1b[0m b") == "ared b"
    assert clean("\x1b]8;;https://evil/\x1b\\here\x1b]8;;\x1b\\") == "here"
    assert clean("\x9b2Jx\x9d0;title\x07y\x00z\x7f") == "xyz"
    assert clean("evil\u202egnp.exe") == "evilgnp.exe"
    assert clean("one\ntwo\tthree") == "one two three"
    assert clean("one\ntwo", multiline=True) == "one\ntwo"


def test_cells_print_brackets_as_written() -> None:
    out = io.StringIO()
    Console(file=out, width=200, force_terminal=True).print(cell("[/oops] [link=https://evil]x[/link]", "red"))
    assert "[/oops] [link=https://evil]x[/link]" in out.getvalue() and "\x1b]8" not in out.getvalue()


def test_chat_text_cannot_mention_or_link() -> None:
    assert chat("<!channel> <@U1> <https://evil|ok> a&b") == (
        "&lt;!channel&gt; &lt;@U1&gt; &lt;https://evil|ok&gt; a&amp;b")


def test_a_policy_change_in_chat_history_is_the_clusters_text_not_markup() -> None:
    """A TLS setting is the cluster's answer: in chat, each value is text (no mention, no link) and a long
    one is cut, while the line's own arrow stays."""
    import datetime as dt

    from rotation.chatops.answers import history_answer
    from rotation.core.model import RotationRecord

    hostile = "<!channel> <https://evil|docs> " + "A" * 500
    record = RotationRecord(id="p-1", cluster="east", cert_name="tls_policy", trigger="cli",
                            started_at=dt.datetime(2026, 12, 3, tzinfo=dt.UTC), requested_by="cli:<@U1>",
                            policy={"status": "applied", "before": {"data_cipher_list": hostile},
                                    "sent": {"data_cipher_list": "HIGH"}, "after": {"data_cipher_list": "HIGH"}})
    (line,) = history_answer("east", [record]).text.splitlines()
    assert "<!channel>" not in line and "<https://evil" not in line and "<@U1>" not in line
    assert "data_cipher_list '&lt;!channel&gt; &lt;https://evil|docs&gt; AAA" in line and " → 'HIGH'" in line
    assert line.count("A") < 250


@pytest.mark.parametrize(("rate_limit", "says"), [
    (None, "chatops.rate_limit: the rate limit cannot be turned off"),
    (0, "chatops.rate_limit: the rate limit cannot be turned off"),
    ({"commands": 0, "per": "1m"}, "chatops.rate_limit.commands: 0: must be a whole number of at least 1"),
    ({"commands": None, "per": "1m"}, "chatops.rate_limit.commands: None: must be a whole number of at least 1"),
    ({"commands": 5, "per": 0}, "chatops.rate_limit.per: 0: must be longer than zero"),
    ({"commands": 5, "per": "0.5s"}, "chatops.rate_limit.per: 0.5s: must be at least 1s"),
    ({"commands": 5}, "chatops.rate_limit.per: Field required"),
])
def test_the_chat_rate_limit_cannot_be_turned_off(tmp_path: Path, rate_limit: object, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_inventory(_inventory(tmp_path, {"rate_limit": rate_limit}))
    assert says in info.value.message


def test_the_chat_rate_limit_has_a_default(tmp_path: Path) -> None:
    default = load_inventory(_inventory(tmp_path, {})).chatops.rate_limit
    assert (default.commands, default.per.total_seconds()) == (10, 60)
    given = load_inventory(_inventory(tmp_path, {"rate_limit": {"commands": 3, "per": "1h"}})).chatops.rate_limit
    assert (given.commands, given.per.total_seconds()) == (3, 3600)
