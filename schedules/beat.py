"""The beat schedule, as data: what runs periodically and how often."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab  # type: ignore[import-untyped]  # celery ships no type hints

from rotation.config import ServiceSettings

# Entries beat runs as soon as it holds the schedule (at start, or taking over from another beat),
# then every interval: a fresh deployment scans at once instead of an interval later.
RUN_AT_START = ("scan-all-clusters",)


def beat_schedule(settings: ServiceSettings) -> dict[str, dict[str, Any]]:
    return {
        "scan-all-clusters": {
            "task": "rotation.scan_all",
            "schedule": settings.scan_interval.total_seconds(),
            # A scan that cannot start before the next one is due is dropped, not piled up.
            "options": {"expires": max(1.0, settings.scan_interval.total_seconds() * 0.9)},
        },
        "audit-tls-policies": {
            "task": "rotation.audit_all_policies",
            "schedule": crontab(minute=17, hour=settings.policy_audit_hour),
        },
    }
