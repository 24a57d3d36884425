"""RS versions: how they compare, and the behaviours that depend on them."""

from __future__ import annotations

# PUT /v1/cluster/certificates (bulk) exists from RS 7.22.2; before, PUT /v1/cluster/update_cert.
BULK_UPDATE_SINCE = (7, 22, 2)


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


__all__ = ["BULK_UPDATE_SINCE", "parse_version", "uses_bulk_update"]
