"""`rotation history`: rotation records, newest first."""

from __future__ import annotations

from rotation.adapters.state.local import RecordStore
from rotation.usecases.context import ServiceContext


def record_store() -> RecordStore:
    return ServiceContext().store


__all__ = ["record_store"]
