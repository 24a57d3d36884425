"""What the pipeline rotates: a *target*, one certificate with its own ways to be read, pushed,
observed and rolled back. The order of the steps, fencing, recovery, companions and the record are
the pipeline's (``rotation.usecases.rotate``); a target only says how each step touches it:

* a cluster slot (``slot.ClusterSlot``): ``PUT /v1/cluster/certificates`` (or ``update_cert``),
  handshakes on its listeners, the REST copy; rollback pushes the previous pair;
* a database's own certificate (``database.DatabaseTarget``): ``POST /v1/bdbs/{uid}/certificates``
  after RS's ``?dry_run``, handshakes on that database's endpoint on each node; rollback posts the
  previous pair, or DELETEs back to the cluster's ``proxy`` certificate when that was served before;
* the tool's own client certificate (``rest_client.RestClientTarget``): pushing is proving the new
  certificate logs in on every node, then switching the files the inventory names.

Targets do no I/O when built (the pipeline builds them before it holds the lock).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from rotation.core.model import CertName, SecretPEM, ServedCert
from rotation.core.validate import Check, ExtraCheck


@dataclass(frozen=True)
class OriginalPair:
    """The certificate and key served before a rotation first pushed. The key never leaves memory
    except encrypted into the secret store. ``fallback``: a database that presented the cluster's
    ``proxy`` certificate (its rollback is a DELETE; ``certificate`` is then the proxy's, ``key`` empty)."""

    certificate: str
    key: SecretPEM = field(repr=False)
    fingerprint: str
    fallback: bool = False


class Target(Protocol):
    """One rotatable certificate, as the pipeline sees it (see the module's docstring)."""

    @property
    def cert_name(self) -> CertName | str:
        """The record's and the state's name (a ``CertName`` for a slot)."""
        ...

    @property
    def validation(self) -> tuple[Check, ...]:
        """The built-in pre-push checks this kind of certificate passes (``validate.DEFAULT_CHECKS``...)."""
        ...

    def served(self) -> list[ServedCert]:
        """What is presented now, read fresh (the read step); a failed read is a ``ServedCert.error``."""
        ...

    def observe(self) -> list[ServedCert]:
        """``served`` plus the cluster's own copy: what verification compares with the new fingerprint."""
        ...

    def current(self) -> OriginalPair:
        """The pair a rollback restores; RotationError when it cannot be had (nothing is then pushed)."""
        ...

    def checks(self) -> Sequence[ExtraCheck]:
        """More pre-push checks of this target (the cluster's cipher rules, RS's own dry run ...)."""
        ...

    def before_push(self, trust: Sequence[str]) -> None:
        """The new certificate's CAs (PEMs): anything that must trust them before it is installed."""
        ...

    def push(self, certificate: str, key: SecretPEM) -> str:
        """Install the pair; returns how (for the record). ClusterAPIError as the REST client raises it."""
        ...

    def restore(self, original: OriginalPair) -> str:
        """Put the original back (push it, or DELETE to fall back); returns how."""
        ...

    def verified(self) -> None:
        """The new certificate is served everywhere: drop what was kept for a rollback. Never raises."""
        ...

    def lock_name(self) -> str:
        """The name its rotations lock (one at a time): one per certificate, whatever the inventory calls it."""
        ...


__all__ = ["OriginalPair", "Target"]
