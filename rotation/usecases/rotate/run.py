"""One rotation in progress: its record, its steps, the session, the lease and the original pair.

Each step is saved as it starts, together with how the step before it ended (one save per step,
and one when the rotation ends), so followers (``rotation rotate``, chat) see it happen; a save
before the first PUT says "push" started, which a redelivered task reads to resume, not restart.
A step that is only local computation and never waits (``validate`` without companions) is saved
with the next one.
A save that fails (Redis away) never stops the rotation: after a push it must still verify or
roll back; the store keeps the record in its local journal and the final save tries again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from rotation.adapters.clock import SYSTEM_CLOCK
from rotation.adapters.cluster import ClusterSession
from rotation.adapters.issuers.base import Issuer
from rotation.adapters.secrets import SecretStore
from rotation.adapters.state import Lease, RecordStore
from rotation.adapters.state.local import KernelLease
from rotation.adapters.targets import OriginalPair, Target
from rotation.core import retry
from rotation.core.clock import Clock
from rotation.core.errors import Interrupted, RotationError
from rotation.core.model import CertName, ClusterState, Outcome, RotationRecord, SecretPEM, Step, Trigger
from rotation.core.validate import ExtraCheck, ParsedBundle
from rotation.usecases.rotate import interrupts

log = logging.getLogger("rotation.usecases.rotate.pipeline")

ProgressCallback = Callable[[RotationRecord, Step], None]

# What a companion (``rotation.usecases.rotate.companions``) is: it plugs into the pipeline at fixed points.
Memo = dict[str, Any]  # what an action did, enough to undo it; JSON, public data only


@dataclass(frozen=True)
class Applied:
    """An action a companion took; ``memo`` goes to the record and back to ``undo``. ``memo=None``: the
    companion recorded its actions itself, one by one as it took them (:func:`note`)."""

    detail: str
    memo: Memo | None = field(default_factory=dict)


class Companion(Protocol):
    """One concern beside the certificate. Every method but ``name`` may do nothing."""

    name: str

    def checks(self, run: Run) -> Sequence[ExtraCheck]:
        """More pre-push checks (raise RotationError here to refuse the whole plan)."""
        ...

    def plan(self, run: Run, bundle: ParsedBundle) -> list[str]:
        """What the companion would do, one line each (dry runs print it)."""
        ...

    def prepare(self, run: Run, bundle: ParsedBundle) -> Applied | None:
        """Before the push; None when there is nothing to do."""
        ...

    def follow_up(self, run: Run, bundle: ParsedBundle) -> Applied | None:
        """After the new certificate is verified; raising rolls the rotation back."""
        ...

    def finalize(self, run: Run, bundle: ParsedBundle) -> str | None:
        """After everything succeeded: drop what is no longer needed (a failure is a warning)."""
        ...

    def undo(self, run: Run, memo: Memo) -> str:
        """Reverse one applied action (the certificate is already back); a line for the record."""
        ...




@dataclass
class RotationOptions:
    trigger: Trigger | str = Trigger.CLI
    dry_run: bool = False
    issuer: Issuer | None = None  # overrides the inventory's issuer (e.g. --cert-file/--key-file)
    verify_deadline: timedelta | None = None  # default: the cluster's verify_deadline
    poll_interval: float = 0.5  # between two looks at a slow change; verification's cap (below)
    # Verification looks again after this many seconds, then doubling up to ``poll_interval``
    # (``retry.verify_delay``): a node 50 ms late costs ~50 ms, not a whole poll interval.
    verify_delay: float = retry.VERIFY_DELAY
    push_attempts: int = retry.PUSH_ATTEMPTS
    push_backoff: float = retry.PUSH_BACKOFF
    rotation_id: str | None = None
    clock: Clock | None = None  # the context's (default: the system's): timestamps, deadlines, waits
    progress: ProgressCallback | None = None
    extra_checks: tuple = field(default_factory=tuple)
    requested_by: str | None = None
    # Where the original pair is kept (encrypted) so a retry or redelivered task can still roll back.
    secrets: SecretStore | None = None
    trust: tuple[str, ...] = ()  # more trust anchors (PEM) the operator named (`--trust FILE`)
    # What must change besides the certificate (OCSP, replication peers...): built by the use case
    # for this rotation, run by the pipeline (rotation.usecases.rotate.companions).
    companions: tuple[Companion, ...] = ()
    # Rotate a certificate that replication peers outside the inventory depend on (they are left to
    # the operator; `rotation rotate --allow-unmanaged-peer`).
    allow_unmanaged_peer: bool = False
    # The session's view was read for this rotation moments before (by a companion's builder, in
    # ``rotate_and_record``, which opened the session for it): the read step does not read it again.
    view_read: bool = False
    # The task layer tries this rotation again if the issuer has no order for it (``rotate_and_record``):
    # only then does its refusal say so (`--inline`, a dry run, a last retry end there).
    retried: bool = False


# Long enough for an operator to come back to a cluster a rotation left mixed.
ORIGINAL_TTL = 90 * 86400


class OriginalPairs:
    """The original pair of (cluster identity, certificate), kept encrypted from just before the first
    PUT until the cluster is proven to serve one certificate again.

    While it is kept, any rotation of that certificate (a retry, a redelivered task, the next scan's)
    restores *it* on failure, never a half-pushed certificate it happens to read. Alongside it, the
    fingerprints pushed since, so a later rotation can tell a state it left from a change made outside.
    """

    def __init__(self, secrets: SecretStore | None, cluster: str, cert_name: CertName | str,
                 records: RecordStore | None = None) -> None:
        self.secrets = secrets
        self.records = records  # where the rotation that bound the pair says how it ended
        self.key = f"original/{cluster}/{cert_name}"
        # What the store holds, once read: only the lock's holder changes it, and this rotation holds it.
        self._known: tuple[dict | None] | None = None

    def _load(self) -> dict | None:
        if self._known is None:
            blob = self.secrets.get(self.key) if self.secrets is not None else None
            self._known = (json.loads(blob) if blob else None,)
        return self._known[0]

    def get(self) -> OriginalPair | None:
        data = self._load()
        return _pair(data) if data else None

    def adopt(self, served: set[str | None]) -> tuple[OriginalPair, str] | None:
        """The original pair (and the rotation that bound it) when what is served now is only what that
        unfinished rotation left: its original and what it pushed. A cluster changed since is not ours."""
        data = self._load()
        if data is None:
            return None
        rotation = str(data.get("rotation"))
        if served <= {data["fingerprint"], *data.get("pushed", ())}:
            if not self._settled(rotation):
                return _pair(data), rotation
            # That rotation ended with one certificate everywhere, but could not forget the pair (its store
            # was away): restoring it now would push an older certificate over the one served since.
            log.warning("%s: kept original pair of rotation %s dropped: that rotation ended with one certificate "
                        "everywhere", self.key, rotation)
            self.release()
            return None
        log.warning("%s: kept original pair of rotation %s dropped: the cluster now serves certificates that "
                    "rotation did not push (changed by hand?)", self.key, data.get("rotation"))
        self.release()
        return None

    def _settled(self, rotation_id: str) -> bool:
        """The rotation ended where it forgets its pair (``recovery.finish``, ``final_probe``): one known
        certificate everywhere, and not superseded (a superseder binds the pair under its own id)."""
        record = self.records.get(rotation_id) if self.records is not None else None
        return (record is not None and record.outcome not in (Outcome.IN_PROGRESS, Outcome.SUPERSEDED)
                and record.cluster_state in (ClusterState.OLD, ClusterState.NEW))

    def bind(self, rotation_id: str, pair: OriginalPair, new_fingerprint: str) -> None:
        if self.secrets is None:
            return
        data = self._load()
        pushed = set(data.get("pushed", ())) if data and data["fingerprint"] == pair.fingerprint else set()
        blob = {"rotation": rotation_id, "certificate": pair.certificate, "key": pair.key.reveal(),
                "fingerprint": pair.fingerprint, "pushed": sorted(pushed | {new_fingerprint}),
                "fallback": pair.fallback}
        self._known = None  # read again if asked: the put may not have reached the store
        self.secrets.put(self.key, json.dumps(blob).encode(), ttl_seconds=ORIGINAL_TTL)
        self._known = (blob,)

    def release(self) -> None:
        """The cluster serves one known certificate again: nothing left to restore."""
        if self.secrets is None:
            return
        self._known = None
        try:
            self.secrets.delete(self.key)
            self._known = (None,)
        except RotationError as exc:  # the store is away: the pair stays kept, harmless and encrypted
            log.warning("%s: could not forget the original pair: %s", self.key, exc.message)


def _pair(data: dict) -> OriginalPair:
    return OriginalPair(data["certificate"], SecretPEM(data["key"]), data["fingerprint"],
                        bool(data.get("fallback", False)))


class Run:
    """One rotation in progress: the record, its steps, the session and the target it works on."""

    def __init__(self, session: ClusterSession, record: RotationRecord, options: RotationOptions,
                 store: RecordStore, target: Target) -> None:
        self.session = session
        self.record = record
        self.options = options
        self.store = store
        self.target = target
        self.cert_name: CertName | str = target.cert_name  # a CertName for a cluster slot
        self.clock: Clock = options.clock or SYSTEM_CLOCK
        self.lease: Lease = KernelLease()
        self.originals = OriginalPairs(options.secrets, session.settings.identity, self.cert_name, store)
        self.deadline: timedelta = options.verify_deadline or session.settings.verify_deadline
        self.companions: tuple[Companion, ...] = tuple(options.companions)
        self.log = logging.LoggerAdapter(log, {"rotation_id": record.id, "cluster": record.cluster,
                                               "cert_name": record.cert_name})
        self.store_down = False  # the last save did not reach the store (the record is in its journal)
        self.cluster_info: dict[str, Any] | None = None  # GET /v1/cluster read for the lock, reused by the read step

    def step(self, name: str, *, save: bool = True) -> StepScope:
        """A step of the record; ``save=False``: its start is saved with the next save (it never waits)."""
        return StepScope(self, name, save=save)

    def save(self) -> None:
        """Save the record; a store that is away is logged once, never raised (the store journals)."""
        try:
            self.store.save(self.record)
        except RotationError as exc:
            if not self.store_down:
                self.log.warning("record not saved, kept locally until the store returns: %s", exc.message)
            self.store_down = True
        else:
            self.store_down = False

    def notify(self, step: Step, *, save: bool = True) -> None:
        if save:
            self.save()  # followers (CLI --wait, chat) see each step as it happens
        if self.options.progress:
            self.options.progress(self.record, step)


class StepScope:
    def __init__(self, run: Run, name: str, *, save: bool = True) -> None:
        self.run = run
        self.step = Step(name=name, started_at=run.clock.now())
        self.save = save

    def __enter__(self) -> Step:
        interrupts.check()  # a safe point: SIGTERM in the CLI unwinds here, before the step begins
        self.run.record.steps.append(self.step)
        self.run.notify(self.step, save=self.save)
        self.run.log.info("step %s started", self.step.name)
        return self.step

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        self.step.finished_at = self.run.clock.now()
        if self.step.ok is None:
            self.step.ok = exc is None
        if exc is not None and not self.step.detail:
            self.step.detail = describe(exc)
        self.run.log.info("step %s %s %s", self.step.name, "ok" if self.step.ok else "failed", self.step.detail)
        self.run.notify(self.step, save=False)  # saved with the next step's start, or the rotation's end


def describe(exc: BaseException) -> str:
    """One line for a record: our own errors say what and where; anything else is named as unexpected."""
    if isinstance(exc, RotationError):
        return exc.message
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(exc, Interrupted):
        return f"interrupted ({exc})"
    if not isinstance(exc, Exception):
        return f"interrupted ({type(exc).__name__})"
    return f"unexpected error ({type(exc).__name__}: {str(exc)[:300]})"


__all__ = ["Applied", "Companion", "Memo", "OriginalPair", "OriginalPairs", "ProgressCallback", "RotationOptions",
           "Run", "StepScope", "describe"]
