"""How a cluster logs in (Basic, a client certificate, both), the managed rest_client and databases in the
inventory, the RS subject-line rules, and target names: refused at load with the field named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rotation.config import load_inventory
from rotation.core.client_cert import subject_line_problem
from rotation.core.errors import ConfigError
from rotation.core.model import CertName
from rotation.core.targets import target_name

BASE = {"url": "https://a:9443", "fqdn": "a.example.com"}
ISSUERS = {"internal": {"type": "internal_ca", "ca_cert": "ca.pem", "ca_key_file": "ca-key.pem"},
           "le": {"type": "acme", "directory": "https://acme.example/dir", "email": "ops@example.com",
                  "challenge": "http-01"}}


def load(tmp_path: Path, cluster: dict[str, Any]) -> Any:
    path = tmp_path / "inv.yaml"
    for name in ("ca.pem", "ca-key.pem"):  # the loader refuses an issuer whose files are missing
        (tmp_path / name).touch()
    path.write_text(yaml.safe_dump({"issuers": ISSUERS, "clusters": {"x": {**BASE, **cluster}}}))
    return load_inventory(path)


CERT = {"client_cert_file": "c.pem", "client_key_file": "k.pem"}


@pytest.mark.parametrize(("cluster", "expected"), [
    ({}, "set username and password_env/password_file, or client_cert_file and client_key_file"),
    ({"username": "u"}, "set exactly one of password_env or password_file with username"),
    ({"password_env": "P", **CERT}, "password_env/password_file need a username"),
    ({"client_cert_file": "c.pem"}, "needs both its certificate (client_cert_*) and its key (client_key_*)"),
    ({**CERT, "client_key_env": "K"}, "set one of client_key_env or client_key_file, not both"),
    ({"username": "u", "password_env": "P", "basic_auth": False}, "basic_auth: false needs certificate login"),
    ({"client_cert_env": "C", "client_key_env": "K", "rest_client": {"subject": "CN=r"}},
     "rest_client needs client_cert_file and client_key_file"),
    ({**CERT, "rest_client": {"subject": "CN=r, O=x"}}, "no space may follow a comma"),
    ({**CERT, "rest_client": {"subject": "CN=r", "issuer": "le"}}, "public CAs issue no client certificates"),
    ({**CERT, "databases": {"../etc": {}}}, "a database's name or uid"),
    ({**CERT, "databases": {"orders": {"issuer": "nope"}}}, "clusters.x.databases.orders.issuer: unknown issuer"),
])
def test_bad_login_settings_are_refused_naming_the_field(tmp_path: Path, cluster: dict[str, Any],
                                                         expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, cluster)
    assert expected in info.value.message and "clusters.x" in info.value.message


def test_certificate_login_alone_and_the_targets_it_brings(tmp_path: Path) -> None:
    inventory = load(tmp_path, {**CERT, "issuer": "internal", "rest_client": {"subject": "CN=rotation,OU=ops,O=x"},
                                "databases": ["orders", 7]})
    cluster = inventory.cluster("x")
    assert cluster.basic_credentials("x") is None and cluster.client_cert_file == tmp_path / "c.pem"
    assert inventory.targets("x") == [*CertName, "rest_client", "db:orders", "db:7"]
    client = inventory.plan("x", "rest_client")
    assert (client.subject, client.hosts, client.request().client) == ("CN=rotation,OU=ops,O=x", (), True)
    database = inventory.plan("x", "db:orders")
    assert database.hosts == ("a.example.com", "*.a.example.com") and database.issuer == "internal"
    with pytest.raises(ConfigError, match="database 'billing' is not managed"):
        inventory.plan("x", "db:billing")


@pytest.mark.parametrize(("line", "problem"), [
    ("CN=rotation,OU=ops,O=rotation", None),
    ("CN=a\\,b,O=x", None),
    ("O=x,CN=a", "must start with CN="),
    ("CN=a,OU=x,OU=y", "at most one OU"),
    ("CN=a, O=x", "no space may follow a comma"),
    ("CN=a,=b", "not an RFC 2253 name"),
    ("CN=a,2.5.4.10=x", "written 'CN=a,O=x': use that spelling"),
])
def test_subject_lines_follow_rs_rules(line: str, problem: str | None) -> None:
    found = subject_line_problem(line)
    assert (found is None) if problem is None else (problem in (found or ""))


def test_target_names() -> None:
    assert target_name("PROXY") is CertName.PROXY and target_name("Rest_Client") == "rest_client"
    assert target_name("DB:Orders") == "db:Orders"
    for bad in ("db:", "db:../x", "nginx", "db:a b"):
        with pytest.raises(ValueError):
            target_name(bad)
