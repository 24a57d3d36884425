"""rotation: rotate and verify the TLS certificates of Redis Enterprise Software clusters.

The public surface used by the entry points (CLI, Celery tasks, webhook). Nothing is imported
eagerly: ``import rotation.core.errors`` loads only that module; the names below load on first
use (a short command does not pay for the pipeline, httpx or pydantic it never touches).

Layers, from the bottom: ``core`` (pure values and rules) <- ``config`` (the inventory and the
environment) <- ``adapters`` (everything that talks to the outside) <- ``usecases`` (one function
per thing a user can ask) <- ``chatops`` and ``cli`` (entry points; ``workers/`` holds Celery and
the webhook). ``simulator`` is a leaf that nothing above imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Inventory": "rotation.config",
    "load_inventory": "rotation.config",
    "ClusterAPIError": "rotation.core.errors",
    "ConfigError": "rotation.core.errors",
    "RotationError": "rotation.core.errors",
    "RotationInProgress": "rotation.core.errors",
    "ValidationError": "rotation.core.errors",
    "VerificationError": "rotation.core.errors",
    "CertName": "rotation.core.model",
    "KeyType": "rotation.core.model",
    "Outcome": "rotation.core.model",
    "RotationRecord": "rotation.core.model",
    "Trigger": "rotation.core.model",
    "RotationOptions": "rotation.usecases.rotate.run",
    "rotate_and_record": "rotation.usecases.rotate.record",
}

if TYPE_CHECKING:
    from rotation.config import Inventory, load_inventory
    from rotation.core.errors import (
        ClusterAPIError,
        ConfigError,
        RotationError,
        RotationInProgress,
        ValidationError,
        VerificationError,
    )
    from rotation.core.model import CertName, KeyType, Outcome, RotationRecord, Trigger
    from rotation.usecases.rotate.record import rotate_and_record
    from rotation.usecases.rotate.run import RotationOptions


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rotation' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access skips this function
    return value


__all__ = [
    "CertName",
    "ClusterAPIError",
    "ConfigError",
    "Inventory",
    "KeyType",
    "Outcome",
    "RotationError",
    "RotationInProgress",
    "RotationOptions",
    "RotationRecord",
    "Trigger",
    "ValidationError",
    "VerificationError",
    "load_inventory",
    "rotate_and_record",
]
