"""Celery beat schedule (data only)."""

from schedules.beat import RUN_AT_START, beat_schedule

__all__ = ["RUN_AT_START", "beat_schedule"]
