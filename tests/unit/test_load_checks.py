"""Load-time checks of the inventory (issue 18, item 5): impossible ports and missing files refused at
load, every problem listed in the ``file: field:`` form; secrets only some processes hold warned
about at load and named with the file when used; where the service's state is read, said."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from rotation.config import ServiceSettings, load_inventory
from rotation.config.load_checks import load_problems
from rotation.core.errors import ConfigError

CLUSTER = {"url": "https://east.example.com:9443", "fqdn": "east.example.com", "username": "admin",
           "password_file": "east-password"}


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "rotation.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_inventory(path)
    return caught.value.message.splitlines()


@pytest.mark.parametrize(("ports", "url", "field"), [
    ({"cm": 84430}, None, "clusters.east.ports.cm"),
    ({"metrics_exporter": 0}, None, "clusters.east.ports.metrics_exporter"),
    ({"discovery": -1}, None, "clusters.east.ports.discovery"),
    ({}, "https://east.example.com:84430", "clusters.east.url"),
    ({}, "https://east.example.com:0", "clusters.east.url"),
])
def test_ports_outside_1_to_65535_are_refused_naming_the_field(tmp_path: Path, ports: dict[str, int],
                                                               url: str | None, field: str) -> None:
    (tmp_path / "east-password").write_text("pw")
    path = write(tmp_path, {"clusters": {"east": {**CLUSTER, "ports": ports, **({"url": url} if url else {})}}})
    (line,) = errors_of(path)
    assert line.startswith(f"{path}: {field}: "), line


def test_every_missing_file_is_listed_with_the_models_own_errors(tmp_path: Path) -> None:
    path = write(tmp_path, {
        "issuers": {"internal": {"type": "internal_ca", "ca_cert": "pki/ca.pem", "ca_key_file": "pki/ca-key.pem"},
                    "corp": {"type": "files", "cert_file": "/nonexistent/full.pem", "key_file": "/nonexistent/k.pem",
                             "ca_bundle": "bundle.pem"}},
        "clusters": {"east": {**CLUSTER, "verify": ["a.pem", "b.pem"], "ports": {"cm": 70000}}}})
    (tmp_path / "b.pem").mkdir()
    lines = errors_of(path)
    assert f"{path}: issuers.internal.ca_cert: file not found ({tmp_path}/pki/ca.pem)" in lines
    assert f"{path}: issuers.internal.ca_key_file: file not found ({tmp_path}/pki/ca-key.pem)" in lines
    assert f"{path}: issuers.corp.cert_file: file not found (/nonexistent/full.pem)" in lines
    assert f"{path}: issuers.corp.ca_bundle: file not found ({tmp_path}/bundle.pem)" in lines
    assert f"{path}: clusters.east.verify.0: file not found ({tmp_path}/a.pem)" in lines
    assert f"{path}: clusters.east.verify.1: is a directory, expected a file ({tmp_path}/b.pem)" in lines
    assert any(line.startswith(f"{path}: clusters.east.ports.cm: ") for line in lines)
    # a secret file (the password) is only warned about: beat and the webhook do not hold it
    assert not any("east-password" in line for line in lines)


def test_secrets_are_warned_at_load_and_named_with_the_file_when_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("EAST_PASSWORD_NOT_SET", raising=False)
    cluster = {**CLUSTER, "password_env": "EAST_PASSWORD_NOT_SET"}
    del cluster["password_file"]
    path = write(tmp_path, {"clusters": {"east": cluster, "west": {**CLUSTER, "fqdn": "west.example.com"}}})
    with caplog.at_level(logging.WARNING, logger="rotation"):
        inventory = load_inventory(path)
    warned = [r.getMessage() for r in caplog.records]
    assert (f"{path}: clusters.east.password_env: environment variable EAST_PASSWORD_NOT_SET is not set "
            "(only a process that uses it needs it)") in warned
    assert f"{path}: clusters.west.password_file: file not found ({tmp_path}/east-password)" in warned
    with pytest.raises(ConfigError, match=rf"^{path}: clusters.east.password: environment variable "
                                          "EAST_PASSWORD_NOT_SET is not set$"):
        inventory.cluster("east").password("east")
    with pytest.raises(ConfigError, match=rf"^{path}: clusters.west.password: cannot read "):
        inventory.cluster("west").password("west")


def test_load_problems_leave_files_the_tool_writes_itself(tmp_path: Path) -> None:
    data = {"issuers": {"le": {"account_key_file": str(tmp_path / "account.pem")}},
            "clusters": {"east": {"client_cert_file": str(tmp_path / "c.pem"),
                                  "client_key_file": str(tmp_path / "k.pem"), "verify": True}}}
    assert load_problems(data, tmp_path / "rotation.yaml") == ([], [])


def test_the_store_read_is_described_with_the_password_hidden(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    monkeypatch.delenv("ROTATION_REDIS_URL", raising=False)
    monkeypatch.setenv("ROTATION_STORE", "redis")
    assert ServiceSettings.from_env().describe_store() == (
        "Redis redis://localhost:6379/0 (ROTATION_REDIS_URL is not set: the default)")
    monkeypatch.setenv("ROTATION_REDIS_URL", "redis://:s3cret@redis.example.com:6380/2")
    assert ServiceSettings.from_env().describe_store() == "Redis redis://:***@redis.example.com:6380/2"
    monkeypatch.setenv("ROTATION_STORE", "local")
    monkeypatch.setenv("ROTATION_STATE_DIR", str(tmp_path))
    assert ServiceSettings.from_env().describe_store() == f"local state in {tmp_path} (ROTATION_STORE=local)"


@pytest.mark.parametrize(("limit", "visibility"), [("20m", "20m"), ("30m", None), (None, "10m")])
def test_a_task_time_limit_not_below_the_visibility_timeout_is_refused(
        monkeypatch: pytest.MonkeyPatch, limit: str | None, visibility: str | None) -> None:
    # README "The service": the task limit must stay below the visibility timeout, or Redis redelivers a task
    # to another worker while it still runs; it was accepted as it came
    for name, value in (("ROTATION_TASK_TIME_LIMIT", limit), ("ROTATION_VISIBILITY_TIMEOUT", visibility)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="ROTATION_TASK_TIME_LIMIT .* must be shorter than ROTATION_VISIBILITY_"):
        ServiceSettings.from_env()


def test_a_task_time_limit_below_the_visibility_timeout_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTATION_TASK_TIME_LIMIT", "15s")
    monkeypatch.setenv("ROTATION_VISIBILITY_TIMEOUT", "18s")
    settings = ServiceSettings.from_env()
    assert (settings.task_time_limit.total_seconds(), settings.visibility_timeout.total_seconds()) == (15, 18)


@pytest.mark.parametrize(("where", "value"), [(("renew_before",), "0d"), (("clusters", "east", "renew_before"), "0s"),
                                              (("clusters", "east", "certificates", "cm", "renew_before"), "0m")])
def test_a_renew_before_of_zero_is_refused_naming_its_field(tmp_path: Path, where: tuple[str, ...],
                                                            value: object) -> None:
    # README "The inventory": durations above zero; renew_before 0 was taken, and a certificate became due only
    # once it had expired
    data: dict[str, Any] = {"clusters": {"east": {**CLUSTER, "certificates": {"cm": {}}}}}
    (tmp_path / "east-password").write_text("pw")
    node = data
    for key in where[:-1]:
        node = node.setdefault(key, {})
    node[where[-1]] = value
    (line,) = errors_of(write(tmp_path, data))
    assert f"{'.'.join(where)}: " in line and "longer than zero" in line, line
