"""RS versions as the simulator compares them, and the behaviours they gate."""

from __future__ import annotations

import functools
import re

DEFAULT_VERSION = "7.22.2-14"
BULK_PUT_SINCE = (7, 22, 2)


@functools.lru_cache(maxsize=64)  # asked on every request; a cluster has one version at a time
def version_tuple(version: str) -> tuple[int, ...]:
    """``"7.22.2-14"`` -> ``(7, 22, 2, 14)``: compare versions numerically."""
    return tuple(int(part) for part in re.findall(r"\d+", version))
