"""Human durations (``90d``, ``12h``, ``30m``, ``45s``) and renewal thresholds (``30d`` or ``33%``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_DAYS = 36500  # a certificate's end date and a socket's timeout must still be representable
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """``90d`` -> 90 days. Bare numbers are seconds. Raises ValueError with the accepted forms."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if not match:
            raise ValueError(f"{text!r} is not a duration (use forms like 90d, 12h, 30m, 45s)")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds != seconds:  # NaN (YAML's .nan)
        raise ValueError(f"{text!r} is not a duration (use forms like 90d, 12h, 30m, 45s)")
    if seconds > MAX_DAYS * 86400:  # longer than a date (or a socket timeout) holds: refused here, not later
        raise ValueError(f"{text!r} is longer than {MAX_DAYS}d (100 years)")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class RenewBefore:
    """Renew when less than ``absolute`` is left, or less than ``fraction`` of the lifetime."""

    absolute: timedelta | None = None
    fraction: float | None = None

    @classmethod
    def parse(cls, text: str | RenewBefore) -> RenewBefore:
        if isinstance(text, RenewBefore):
            return text
        raw = str(text).strip()
        if raw.endswith("%"):
            try:
                percent = float(raw[:-1])
            except ValueError as exc:
                raise ValueError(f"{text!r} is not a percentage like 33%") from exc
            if not 0 < percent < 100:
                raise ValueError(f"{text!r}: a fraction of lifetime must be between 0% and 100%")
            return cls(fraction=percent / 100)
        absolute = parse_duration(raw)
        if absolute <= timedelta(0):  # due only once expired: every certificate would lapse before its renewal
            raise ValueError(f"{text!r}: must be longer than zero (e.g. 30d, or a share of the lifetime: 33%)")
        return cls(absolute=absolute)

    def threshold(self, lifetime: timedelta) -> timedelta:
        """How much remaining validity makes a certificate due."""
        if self.fraction is not None:
            return lifetime * self.fraction
        assert self.absolute is not None
        return self.absolute

    def __str__(self) -> str:
        if self.fraction is not None:
            return f"{self.fraction * 100:g}%"
        assert self.absolute is not None
        return format_duration(self.absolute)
