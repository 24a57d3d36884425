"""An issuer's issuance budget, shared by every worker: at most ``orders`` orders in any window of ``per``
(a sliding window), and the CA's own pause (it answered ``rateLimited`` with a Retry-After).

A CA's rate limits count per ACME account (Let's Encrypt: 300 new orders per account per 3 hours), so
the budget is keyed by what the CA counts against (the directory URL and the account), not by the
inventory's name for the issuer: two names for one account share one budget. The state keeps the
orders' times (``ServiceState.take_order``); this module holds the values and the window's arithmetic.

Pure: no clock, no I/O; moments are given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from rotation.core.durations import format_duration
from rotation.core.errors import BudgetSpent

DEFAULT_PAUSE = timedelta(hours=1)  # a CA's 429 without Retry-After: as for rateLimited (acme issuer's wait)
# A queued rotation that found no budget looks again after its wait, but after this at most: a Celery countdown
# past the broker's visibility timeout (20 min by default) is delivered twice, and the certificate's pending
# marker (about 100 min) would lapse under retries that wait hours. Past its retries it ends, uncounted, and a
# later scan queues it once the budget has room.
RECHECK_MAX = timedelta(minutes=10)


@dataclass(frozen=True)
class IssuanceBudget:
    """What one issuer may order. ``orders`` None: no budget is counted, but the CA's pause still holds."""

    issuer: str  # the inventory's name (letters, digits, '.', '_', '-'), for messages
    identity: str = field(repr=False)  # what the CA counts against (directory + account): may hold a password
    shown: str  # the same for `status` and messages (password hidden)
    orders: int | None
    per: timedelta

    @property
    def key(self) -> str:
        """The store's key for this identity (a digest: the directory URL may carry credentials)."""
        return hashlib.sha256(self.identity.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class BudgetUse:
    """An issuer's budget as the store holds it at ``now`` (``taken``: this call counted one order)."""

    issuer: str
    shown: str
    orders: int | None
    per: timedelta
    used: int  # orders within the window that ends now
    next_free: datetime | None  # when spent: when an order may be placed again; else when the oldest returns
    paused_until: datetime | None  # the CA said rateLimited: nobody asks before then
    paused_reason: str = ""
    taken: bool = False

    @property
    def left(self) -> int | None:
        return None if self.orders is None else max(0, self.orders - self.used)

    def blocked_until(self, now: datetime) -> datetime | None:
        """Until when no order may be placed (paused, or the budget spent); None: one may be now."""
        if self.paused_until is not None and self.paused_until > now:
            return self.paused_until
        if self.left == 0:
            return self.next_free
        return None

    def refusal(self, now: datetime, *, retried: bool = False) -> BudgetSpent:
        """The error a rotation that found no budget ends with (nothing was ordered, nothing pushed);
        ``retried``: the worker tries it again (said only then: an inline rotation or a dry run has ended)."""
        until = self.blocked_until(now) or now
        wait = max(0.0, (until - now).total_seconds())
        if self.paused_until is not None and self.paused_until > now:
            why = f"issuer {self.issuer} is paused until {moment_text(until)}: the CA answered rateLimited"
            why += f" ({self.paused_reason})" if self.paused_reason else ""
        else:
            why = (f"issuer {self.issuer}'s budget is spent until {moment_text(until)} "
                   f"({self.orders} orders per {format_duration(self.per)})")
        return BudgetSpent(f"{why}; nothing was ordered" + ("; the worker tries it again" if retried else ""),
                           retry_after=min(wait, RECHECK_MAX.total_seconds()), until=until)


def window_use(order_times: Iterable[float], now: float, orders: int | None,
               per: float) -> tuple[list[float], float | None]:
    """The orders (epoch seconds, oldest first) still inside the window ending at ``now``, and when the
    budget has room again: when spent, the moment enough of them have left the window; else when the oldest
    leaves it (None: none is inside). An order placed at ``t`` counts until ``t + per`` (excluded)."""
    live = sorted(t for t in order_times if t > now - per)
    if not live:
        return live, None
    if orders is not None and len(live) >= orders:
        return live, live[len(live) - orders] + per
    return live, live[0] + per


def moment(epoch: float | str | None) -> datetime | None:
    """Epoch seconds as the stores keep them (a number, or its text; None or "": none)."""
    if epoch is None or epoch == "":
        return None
    return datetime.fromtimestamp(float(epoch), UTC)


def moment_text(when: datetime) -> str:
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"


__all__ = ["DEFAULT_PAUSE", "RECHECK_MAX", "BudgetUse", "IssuanceBudget", "moment", "moment_text", "window_use"]
