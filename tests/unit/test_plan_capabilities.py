"""What an ACME issuer can issue (``client_auth``, ``max_names``) and the plans no order can fulfil, refused
at inventory load naming the cluster, the slot, the issuer and the fix (config/plans.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rotation.config import load_inventory
from rotation.config.plans import impossible_plans
from rotation.core.errors import ConfigError

BASE = {"url": "https://a:9443", "fqdn": "a.example.com", "username": "u", "password_env": "P"}
LE = {"type": "acme", "directory": "https://acme.example/dir", "challenge": "http-01"}
INTERNAL = {"type": "internal_ca", "ca_cert": "ca.pem", "ca_key_file": "ca-key.pem"}


def load(tmp_path: Path, cluster: dict[str, Any], **issuers: dict[str, Any]) -> Any:
    path = tmp_path / "inv.yaml"
    for named in ("ca.pem", "ca-key.pem", "roots.pem"):  # the loader refuses files that do not exist
        (tmp_path / named).touch()
    path.write_text(yaml.safe_dump({"issuers": issuers or {"le": LE, "internal": INTERNAL},
                                    "clusters": {"east": {**BASE, **cluster}}}))
    return load_inventory(path)


def test_syncer_from_a_public_acme_ca_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"issuer": "le"})
    message = info.value.message
    assert "clusters.east.issuer: east/syncer is a client certificate" in message
    assert "issuer 'le' is an ACME CA that issues no clientAuth" in message
    assert "give `syncer` an `internal_ca` issuer" in message
    assert "proxy" not in message  # server slots are fine from it


def test_syncer_given_an_internal_ca_makes_the_plan_possible(tmp_path: Path) -> None:
    inventory = load(tmp_path, {"issuer": "le", "certificates": {"proxy": None, "cm": None,
                                                                 "syncer": {"issuer": "internal"}}})
    assert impossible_plans(inventory) == []
    assert inventory.issuers["le"].issues_client_auth is False


def test_a_private_acme_ca_issues_client_auth_by_default_or_as_declared(tmp_path: Path) -> None:
    private = {**LE, "trust_roots": "roots.pem"}
    inventory = load(tmp_path, {"issuer": "step"}, step=private)
    assert inventory.issuers["step"].issues_client_auth is True
    with pytest.raises(ConfigError, match="issuers.step.client_auth: true if it is a private ACME CA"):
        load(tmp_path, {"issuer": "step"}, step={**private, "client_auth": False})
    assert load(tmp_path, {"issuer": "le"}, le={**LE, "client_auth": True}).issuers["le"].issues_client_auth


def test_strict_profile_needs_client_auth_on_every_cluster_certificate(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"issuer": "le", "strict_profile": True, "certificates": ["proxy"]})
    assert "strict_profile requires clientAuth on proxy" in info.value.message


def test_more_names_than_the_profile_allows_are_refused(tmp_path: Path) -> None:
    hosts = [f"h{i}.a.example.com" for i in range(26)]
    tlsserver = {**LE, "profile": "tlsserver"}
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"issuer": "le", "certificates": {"proxy": {"hosts": hosts}}}, le=tlsserver)
    assert "clusters.east.issuer: east/proxy asks for 26 names" in info.value.message
    assert "at most 25 per certificate (max_names, profile tlsserver)" in info.value.message
    assert load(tmp_path, {"issuer": "le", "certificates": {"proxy": {"hosts": hosts}}},
                le=LE).issuers["le"].names_limit == 100
    with pytest.raises(ConfigError, match="certificates.proxy.issuer: east/proxy asks for 26 names"):
        load(tmp_path, {"issuer": "internal", "certificates": {"proxy": {"hosts": hosts, "issuer": "le"}}},
             le={**LE, "max_names": 20}, internal=INTERNAL)


def test_a_renew_before_as_long_as_the_tlsserver_lifetime_is_refused(tmp_path: Path) -> None:
    """Let's Encrypt's ``tlsserver`` profile issues 45-day certificates since 13 May 2026 (sheet
    rs-8x-and-public-cas-2026.md §1.5): a renew_before of 45 days or more made each one due as soon as it was
    served, so every scan ordered and pushed another until LE's rate limits stopped it. Only ``shortlived`` was
    known to be short."""
    tlsserver = {**LE, "profile": "tlsserver"}
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"issuer": "le", "renew_before": "60d", "certificates": ["proxy"]}, le=tlsserver)
    assert "issuers.le.profile tlsserver issues certificates of 45d" in info.value.message
    assert impossible_plans(load(tmp_path, {"issuer": "le", "renew_before": "30d", "certificates": ["proxy"]},
                                 le=tlsserver)) == []


def test_every_impossible_plan_is_a_line_of_its_own_naming_the_file(tmp_path: Path) -> None:
    # README "The inventory": a bad file gives one error per problem, naming the file and the field (they were
    # joined into one line with "; ", and `--json`'s problems had one entry for all of them)
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"issuer": "internal", "certificates": ["cm", "proxy"], "renew_before": "300d"},
             internal={**INTERNAL, "validity": "90d"})
    lines = info.value.message.splitlines()
    assert len(lines) == 2 and "cm renews 300d" in lines[0] and "proxy renews 300d" in lines[1], lines
    path = str(tmp_path / "inv.yaml")
    assert all(line.startswith(f"{path}: clusters.east") for line in lines), lines
