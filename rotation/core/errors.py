"""The one exception tree of rotation.

::

    RotationError                      root; ``retryable`` and ``retry_after`` drive retries
    ├── ConfigError                    inventory or environment is wrong (CLI exit code 2)
    │   └── OverwriteRefused           a file to write exists and overwriting was not asked for
    ├── CertificateError               a PEM, key or chain cannot be parsed or does not fit
    │   └── ValidationError            pre-push checks failed; carries every problem found
    ├── IssuerError                    the CA refused or could not be reached
    ├── ClusterAPIError                the RS REST API answered badly or not at all
    │   ├── ClusterAuthError           401: wrong username or password
    │   ├── ClusterRejected            400/403/404/406: final, the server's error_code inside
    │   └── ClusterUnavailable         409, 5xx, timeouts, resets: retryable
    ├── ProbeError                     a TLS handshake failed (unreachable, refused, timeout)
    ├── VerificationError              new certificate not served everywhere before the deadline
    │   └── ReplicationError           a replication link not in sync by the deadline, a CRDB update failed
    ├── LockoutRefused                 a change that would leave the tool unable to log in: refused
    ├── RotationInProgress             another rotation holds the lock for this certificate
    ├── BudgetSpent                    the issuer's issuance budget is spent, or the CA paused it: retryable
    ├── Superseded                     this rotation lost its lock lease: it must not push again
    └── StoreUnavailable               the service's state (Redis) cannot be reached: retryable

    Interrupted (a BaseException, like KeyboardInterrupt): SIGTERM reached a CLI rotation

Messages never contain private keys, passwords or signing secrets: only names, hosts,
fingerprints and the server's own error_code/description.
"""

from __future__ import annotations

from datetime import datetime


class RotationError(Exception):
    """Root of every error this package raises on purpose."""

    retryable: bool = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class ConfigError(RotationError):
    """The inventory file or an environment variable it names is wrong."""


class OverwriteRefused(ConfigError):
    """A file the tool would write (a CA's certificate or key) exists, and overwriting it was not asked for."""


class CertificateError(RotationError):
    """A PEM, key or chain cannot be parsed or does not belong together."""


class ValidationError(CertificateError):
    """Pre-push validation found problems; nothing was pushed."""

    def __init__(self, problems: list[str], *, context: str = "") -> None:
        self.problems = list(problems)
        prefix = f"{context}: " if context else ""
        super().__init__(prefix + "certificate failed validation: " + "; ".join(self.problems))


class IssuerError(RotationError):
    """The issuer (internal CA or ACME CA) could not produce a certificate."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        problem: dict | None = None,
        rate_limited: bool = False,
        ordered: bool = True,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retryable = retryable
        self.problem = problem
        self.rate_limited = rate_limited  # the CA's rateLimited (or a 429): the whole issuer pauses (core.budget)
        # False: failed before the order was asked for (directory, account): its budget's order is given back
        self.ordered = ordered


class ClusterAPIError(RotationError):
    """The RS REST API refused a request or could not be reached."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: str | None = None,
        description: str | None = None,
        url: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status
        self.error_code = error_code
        self.description = description
        self.url = url


class ClusterAuthError(ClusterAPIError):
    """401: the credentials were refused."""


class ClusterRejected(ClusterAPIError):
    """400/403/404/406: the request is wrong and retrying will not help."""


class ClusterUnavailable(ClusterAPIError):
    """409 (partial apply), 5xx, timeouts and connection resets: try again."""

    retryable = True


class ProbeError(RotationError):
    """A TLS handshake to one endpoint failed."""

    retryable = True


class VerificationError(RotationError):
    """The new certificate was not seen on every endpoint before the deadline."""


class ReplicationError(VerificationError):
    """A replication link (Replica Of, Active-Active) did not end in sync, or a CRDB force update failed."""


class LockoutRefused(RotationError):
    """A change that would leave the tool unable to log in afterwards; refused before it is made."""


class RotationInProgress(RotationError):
    """Another rotation of the same (cluster, certificate) is running."""


class SharedLockBusy(RotationInProgress):
    """Another certificate's rotation holds a lock this one shares (``proxy`` and a database's own share
    endpoints): not a duplicate, so a queued rotation is tried again shortly rather than at the next scan."""

    retryable = True


class BudgetSpent(RotationError):
    """The issuer's issuance budget is spent for now, or its CA answered rateLimited and paused it (until
    ``until``): nothing was ordered or pushed, so a queued rotation waits for it (retried, ``retry_after``)
    and it never counts as the certificate's failure."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, until: datetime | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.until = until


class RateLimited(RotationError):
    """A chat caller's budget of commands that queue work is spent for now (``retry_after`` seconds)."""


class Superseded(RotationError):
    """The lock lease was lost (paused past it, or another rotation took the lock): push nothing more."""


class StoreUnavailable(RotationError):
    """The service's state store cannot be reached; the message names it with the password redacted."""

    retryable = True


class Interrupted(BaseException):
    """SIGTERM reached a rotation running in the CLI: it unwinds like Ctrl-C (a BaseException, so no
    ``except Exception`` swallows it) and a rotation that already pushed rolls back on its way out."""


__all__ = [
    "BudgetSpent",
    "CertificateError",
    "ClusterAPIError",
    "ClusterAuthError",
    "ClusterRejected",
    "ClusterUnavailable",
    "ConfigError",
    "Interrupted",
    "IssuerError",
    "LockoutRefused",
    "OverwriteRefused",
    "ProbeError",
    "RateLimited",
    "ReplicationError",
    "RotationError",
    "RotationInProgress",
    "SharedLockBusy",
    "StoreUnavailable",
    "Superseded",
    "ValidationError",
    "VerificationError",
]
