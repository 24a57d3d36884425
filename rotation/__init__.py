"""rotation: rotate and verify the TLS certificates of Redis Enterprise Software clusters.

The public surface used by the entry points (CLI, Celery tasks, webhook).
"""

from rotation.config import Inventory, load_inventory
from rotation.errors import (
    ClusterAPIError,
    ConfigError,
    RotationError,
    RotationInProgress,
    ValidationError,
    VerificationError,
)
from rotation.model import CertName, KeyType, Outcome, RotationRecord, Trigger
from rotation.pipeline import RotationOptions, rotate

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
    "rotate",
]
