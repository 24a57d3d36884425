"""RS versions: how they compare, and the behaviours that depend on them."""

from __future__ import annotations

# PUT /v1/cluster/certificates (bulk) exists from RS 7.22.2; before, PUT /v1/cluster/update_cert.
BULK_UPDATE_SINCE = (7, 22, 2)
# Per-database certificates (/v1/bdbs/certificates): "around 8.0.2" (reference sheet, inferred).
DATABASE_CERTIFICATES_SINCE = (8, 0, 2)
# OCSP stapling of the proxy certificate (/v1/ocsp): 6.2.12.
OCSP_STAPLING_SINCE = (6, 2, 12)
# GET /v4/cluster/health (its certificates list): 8.0.16.
CLUSTER_HEALTH_SINCE = (8, 0, 16)
# ldap_client through the bulk PUT where it exists (RS193156), else update_cert: the bulk PUT's release.
LDAP_CLIENT_SINCE = (7, 22, 2)
# control_plane_basic_authentication (Basic can be turned off): 8.2.0.
BASIC_SWITCH_SINCE = (8, 2, 0)


def parse_version(text: str | None) -> tuple[int, ...]:
    """``"7.22.2-14"`` -> ``(7, 22, 2, 14)``; unknown -> ``()``."""
    if not text:
        return ()
    parts: list[int] = []
    for chunk in text.replace("-", ".").split("."):
        if not chunk.isdigit():
            break
        parts.append(int(chunk))
    return tuple(parts)


def uses_bulk_update(version: str | None) -> bool:
    """Whether a cluster at ``version`` (its lowest node's) takes the bulk certificate PUT."""
    parsed = parse_version(version)
    return bool(parsed) and parsed >= BULK_UPDATE_SINCE


def at_least(version: str | None, release: tuple[int, ...]) -> bool:
    """Whether ``version`` is ``release`` or later (an unknown version is not)."""
    parsed = parse_version(version)
    return bool(parsed) and parsed[:len(release)] >= release


__all__ = ["BASIC_SWITCH_SINCE", "BULK_UPDATE_SINCE", "CLUSTER_HEALTH_SINCE", "DATABASE_CERTIFICATES_SINCE",
           "LDAP_CLIENT_SINCE", "OCSP_STAPLING_SINCE", "at_least", "parse_version", "uses_bulk_update"]
