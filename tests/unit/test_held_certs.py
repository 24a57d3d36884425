"""rotation.core.held_certs: unmanaged rows, internode certificates near RS's silent fallback, and the health
report cross-checked against what was seen (an injected time, no network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rotation.core.held_certs import HeldCert, from_health, held_view

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SLOTS = ("cm", "api", "proxy", "syncer", "metrics_exporter")


def held(**days: float) -> list[HeldCert]:
    return [HeldCert(name, NOW + left * DAY, f"fp-{name}") for name, left in days.items()]


def test_unmanaged_names_are_rows_with_days_left_and_managed_ones_are_not() -> None:
    view = held_view("east", held(proxy=40, ldap_client=20.5, gizmo_2027=300, data_internode_encryption=80),
                     SLOTS, NOW)
    rows = {row["cert"]: row for row in view.rows}
    assert set(rows) == {"ldap_client", "gizmo_2027", "data_internode_encryption"}
    assert rows["ldap_client"]["status"] == "unmanaged" and rows["ldap_client"]["days_left"] == 20.5
    assert "client certificate" in str(rows["ldap_client"]["reason"])
    assert "unknown certificate" in str(rows["gizmo_2027"]["reason"])
    assert view.warnings == []


def test_an_internode_certificate_within_seven_days_of_the_fallback_warns_once_per_certificate() -> None:
    certificates = held(ccs_internode_encryption=11.9, data_internode_encryption=12.1)
    view = held_view("east", certificates, SLOTS, NOW)
    (warning,) = view.found
    assert warning.text.startswith("east/ccs_internode_encryption: expires 2026-12-13")
    assert "silently swaps in a self-signed internode certificate 5 days before expiry (2026-12-08" in warning.text
    assert {row["cert"]: row["status"] for row in view.rows} == {"ccs_internode_encryption": "warning",
                                                                 "data_internode_encryption": "unmanaged"}
    later = held_view("east", certificates, SLOTS, NOW + 1.9 * DAY)
    assert later.found[0].key == warning.key and len(later.found) == 2  # now both; the first keeps its key
    assert later.found[0].text != warning.text  # fewer days left  # the same certificate keeps its key: notified once


def test_the_health_report_is_cross_checked_with_the_handshakes_and_the_cluster_copy() -> None:
    certificates = held(proxy=40, api=40, ldap_client=20)
    health = [{"type": "proxy", "expired": False, "valid_until": (NOW + 40 * DAY).strftime("%Y-%m-%dT%H:%M:%SZ")},
              {"type": "api", "expired": False, "valid_until": (NOW + 40 * DAY).strftime("%Y-%m-%dT%H:%M:%SZ")},
              {"type": "sso_service", "expired": False, "valid_until": "2027-01-01T00:00:00Z"}]
    seen = {"proxy": NOW + 40 * DAY, "api": NOW + 10 * DAY}  # a node still serves an older api certificate
    warnings = held_view("east", certificates, SLOTS, NOW, health, seen).warnings
    assert warnings == [
        "east/api: GET /v4/cluster/health says valid until 2027-01-10 12:00:00 UTC, the handshakes saw "
        "2026-12-11 12:00:00 UTC",
        "east/sso_service: GET /v4/cluster/health lists it, GET /v1/cluster/certificates does not",
        "east/ldap_client: held (GET /v1/cluster/certificates) but missing from GET /v4/cluster/health",
    ]
    assert held_view("east", certificates, SLOTS, NOW, None, seen).warnings == []  # no report: nothing to compare


def test_held_names_can_come_from_the_health_report_alone() -> None:
    report = [{"type": "proxy", "expired": False, "valid_until": "2027-01-10T12:00:00Z"},
              {"type": "ccs_internode_encryption", "expired": False, "valid_until": "2026-12-09T12:00:00Z"},
              {"type": "ldap_client", "expired": False, "valid_until": "bad"}]
    view = held_view("east", from_health(report), SLOTS, NOW, report, {"proxy": NOW + 40 * DAY},
                     held_from_health=True)
    assert [row["cert"] for row in view.rows] == ["ccs_internode_encryption", "ldap_client"]
    assert [row["days_left"] for row in view.rows] == [8.0, None]
    assert len(view.warnings) == 1 and "ccs_internode_encryption" in view.warnings[0]  # no presence warnings
