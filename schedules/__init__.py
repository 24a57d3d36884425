"""Celery beat schedule (data only)."""

from schedules.beat import beat_schedule

__all__ = ["beat_schedule"]
