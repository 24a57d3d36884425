"""From the first PUT on, every exit path ends in a known state, verified and recorded per node.

``push_and_verify`` binds the original pair (encrypted) before the first PUT, pushes (fenced),
and verifies by fresh handshakes. Whatever goes wrong from there -- a REST error or timeout, the
store going away, SIGTERM, a bug -- rolls back with the *original* pair and verifies that. When
the rollback cannot complete, a final probe of every endpoint records what each serves and the
outcome says ``failed`` with the cluster state (old, new or mixed). A rotation that lost its
lock lease pushes nothing more: it probes, records and ends ``superseded``. Signals
(``Interrupted``, Ctrl-C) are re-raised once the cluster is settled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from rotation.core import certs, retry
from rotation.core.errors import ClusterAPIError, RotationError, Superseded, VerificationError
from rotation.core.model import ClusterState, IssuedCert, Outcome, SecretPEM, ServedCert
from rotation.core.validate import ParsedBundle
from rotation.usecases.rotate import companions, interrupts
from rotation.usecases.rotate.run import OriginalPair, Run, describe


class _NothingApplied(ClusterAPIError):
    """RS refused the first PUT outright (3xx/4xx): documented to validate before replacing anything."""


def push(run: Run, certificate: str, key: SecretPEM) -> str:
    """Install the pair on the target (``send``)."""
    return send(run, lambda: run.target.push(certificate, key))


def send(run: Run, change: Callable[[], str]) -> str:
    """Make a change to the target (push, or a rollback's push or DELETE), again while RS answers "try
    again" (409, 5xx, a reset: ``retry.transient_push_answer``), a few times (``retry.PUSH_ATTEMPTS``;
    the task layer retries the rest of the rotation).

    The lease is checked immediately before every attempt: a rotation that lost it never pushes."""
    attempt, uncertain = 0, False
    while True:
        attempt += 1
        if attempt > 1:
            interrupts.check()  # between attempts: a SIGTERM now rolls back what the last one applied
        run.lease.check()
        try:
            return change()
        except ClusterAPIError as exc:
            if not retry.transient_push_answer(exc):
                if exc.status is not None and not uncertain:
                    raise _NothingApplied(exc.message, status=exc.status, error_code=exc.error_code,
                                         description=exc.description, url=exc.url) from exc
                raise
            uncertain = True  # a 409, 5xx or timeout may have applied part of it
            if attempt >= run.options.push_attempts:
                raise
            run.log.warning("push attempt %d failed (%s); retrying", attempt, exc)
            run.clock.sleep(retry.push_delay(attempt, run.options.push_backoff))


def observe(run: Run) -> list[ServedCert]:
    """What the target presents, fresh, and its copy on the cluster (``Target.observe``)."""
    return run.target.observe()


def wait_until_served(run: Run, fingerprint: str, deadline: timedelta | None = None) -> list[ServedCert]:
    """Observe until everything shows ``fingerprint`` or time runs out. A REST error is one more
    lagging endpoint (RS restarts its API after a certificate change), not the end."""
    deadline = run.deadline if deadline is None else deadline
    end = run.clock.monotonic() + deadline.total_seconds()
    looks = 0
    while True:
        looks += 1
        interrupts.check()
        if run.lease.lost:
            raise Superseded(f"{run.record.cluster}/{run.cert_name}: another rotation took the lock while this "
                             "one was verifying; it pushes nothing more")
        served = observe(run)
        lagging = [s for s in served if s.fingerprint != fingerprint]
        if not lagging:
            return served
        if run.clock.monotonic() >= end:
            where = ", ".join(
                f"{s.endpoint.label}: {s.error or 'still ' + certs.short_fingerprint(s.fingerprint or '')}"
                for s in lagging[:5]
            )
            raise VerificationError(
                f"{run.record.cluster}/{run.cert_name}: {certs.short_fingerprint(fingerprint)} not served everywhere "
                f"after {deadline.total_seconds():g}s ({len(lagging)} endpoint(s) lagging: {where})"
            )
        delay = retry.verify_delay(looks, run.options.verify_delay, max(run.options.verify_delay,
                                                                          run.options.poll_interval))
        run.clock.sleep(min(delay, max(0.0, end - run.clock.monotonic())))  # the last look at the deadline


def cluster_state(served: list[ServedCert], old: str | None, new: str | None) -> ClusterState:
    seen = {s.fingerprint if s.ok else None for s in served}
    if seen == {old}:
        return ClusterState.OLD
    if new is not None and seen == {new}:
        return ClusterState.NEW
    return ClusterState.MIXED


def _record_served(run: Run, served: list[ServedCert]) -> None:
    for s in served:
        run.record.nodes.setdefault(s.endpoint.label, {"before": None})["after"] = s.fingerprint


def finish(run: Run, served: list[ServedCert], outcome: Outcome, state: ClusterState) -> None:
    """Every endpoint was seen serving one certificate: record it, and forget the original pair."""
    _record_served(run, served)
    run.record.outcome, run.record.cluster_state = outcome, state
    run.originals.release()
    if outcome is Outcome.VERIFIED:
        run.target.verified()


def final_probe(run: Run, old: str | None, new: str | None, outcome: Outcome) -> None:
    """The rotation cannot finish or roll back: record what every endpoint serves now and say so."""
    record = run.record
    with run.step("final-probe") as step:
        served = observe(run)
        state = cluster_state(served, old, new)
        names = {old: "old", new: "new"}
        counts = Counter(names.get(s.fingerprint, "other") if s.ok else "unreadable" for s in served)
        step.detail = f"cluster state {state}: " + ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
        others = {s.fingerprint for s in served if s.ok and s.fingerprint not in names}
        if set(counts) == {"other"} and len(others) == 1:
            step.detail += f" (every endpoint serves {certs.short_fingerprint(others.pop() or '')}, which this " \
                           "rotation did not push)"
    _record_served(run, served)
    record.outcome, record.cluster_state = outcome, state
    record.error = f"{record.error or 'stopped'}; {step.detail}"
    if state is not ClusterState.MIXED and outcome is not Outcome.SUPERSEDED:
        run.originals.release()  # one known certificate everywhere (a superseder owns the pair now)


def settle(run: Run, original: OriginalPair | None, new: str | None, exc: BaseException) -> None:
    """Something went wrong after a push: roll back (superseded: only record), then re-raise a signal."""
    run.record.error = run.record.error or describe(exc)
    with interrupts.deferred():
        if isinstance(exc, Superseded):
            final_probe(run, original.fingerprint if original else run.record.old_fingerprint, new,
                        Outcome.SUPERSEDED)
        elif original is None:
            run.record.error += "; cannot roll back: the original certificate is not in the secret store"
            final_probe(run, run.record.old_fingerprint, new, Outcome.FAILED)
        else:
            roll_back(run, original, new)
    if not isinstance(exc, Exception):
        raise exc
    interrupts.check()  # a SIGTERM that came while settling unwinds now


def roll_back(run: Run, original: OriginalPair, new: str | None) -> None:
    try:
        with run.step("rollback") as step:
            step.detail = send(run, lambda: run.target.restore(original))
        with run.step("verify-rollback") as step:
            served = wait_until_served(run, original.fingerprint)
            step.detail = f"{len(served)} endpoint(s) serve the previous certificate again"
    except BaseException as exc:
        superseded = isinstance(exc, Superseded)
        run.record.error = f"{run.record.error}; rollback {'stopped' if superseded else 'failed'}: {describe(exc)}"
        final_probe(run, original.fingerprint, new, Outcome.SUPERSEDED if superseded else Outcome.FAILED)
        if not isinstance(exc, Exception):
            raise
        return
    finish(run, served, Outcome.ROLLED_BACK, ClusterState.OLD)
    _undo_companions(run)


def _verify(run: Run, original: OriginalPair | None, new: str, deadline: timedelta | None = None,
            bundle: ParsedBundle | None = None) -> None:
    """Verify the new certificate everywhere, then the companions' follow-ups; any failure settles."""
    try:
        with run.step("verify") as step:
            served = wait_until_served(run, new, deadline)
            step.detail = f"{len(served)} endpoint(s) serve {certs.short_fingerprint(new)}"
        if bundle is not None:
            companions.follow_up(run, bundle)
    except BaseException as exc:
        settle(run, original, new, exc)
        return
    finish(run, served, Outcome.VERIFIED, ClusterState.NEW)
    if bundle is not None:
        companions.finalize(run, bundle)


def push_and_verify(run: Run, issued: IssuedCert, bundle: ParsedBundle, original: OriginalPair) -> None:
    new = bundle.fingerprint
    run.lease.check()  # never overwrite the kept original of a rotation that took over from us
    _prepare(run, bundle, original, new)
    try:
        with run.step("push") as step:
            step.detail = push(run, issued.fullchain_pem, issued.key_pem)
    except _NothingApplied as exc:
        _refused_at_push(run, original, new, exc)
        return
    except BaseException as exc:
        if not run.record.pushed:
            _undo_companions(run)
            raise  # stopped before the push step began (SIGTERM): nothing to settle
        settle(run, original, new, exc)
        return
    _verify(run, original, new, bundle=bundle)


def _prepare(run: Run, bundle: ParsedBundle, original: OriginalPair, new: str) -> None:
    """The companions' make-before-break changes, then the original pair kept; a failure of either (the
    store away) undoes the changes made, then raises."""
    try:
        companions.prepare(run, bundle)
        run.originals.bind(run.record.id, original, new)
    except BaseException:
        _undo_companions(run)
        raise


def _undo_companions(run: Run) -> None:
    """Undo what companions changed (the certificate is back); one that cannot be undone fails the
    rotation, and the record keeps what it did."""
    if companions.pending(run) and not companions.undo(run):
        run.record.outcome = Outcome.FAILED


def _refused_at_push(run: Run, original: OriginalPair, new: str, exc: _NothingApplied) -> None:
    """RS refused the certificate: confirm by handshakes that nothing changed (else roll back)."""
    run.record.error = exc.message
    served = observe(run)
    with interrupts.deferred():
        if cluster_state(served, original.fingerprint, new) is ClusterState.OLD:
            finish(run, served, Outcome.REFUSED, ClusterState.OLD)
            _undo_companions(run)
        else:
            roll_back(run, original, new)


def resume_after_push(run: Run) -> None:
    """A redelivered task whose worker died after pushing: finish if the new certificate is served
    everywhere already, else roll back to the kept original (or, without it, record the state)."""
    record = run.record
    with run.step("resume") as step:
        step.detail = "previous attempt was interrupted after the push"
        try:
            original = run.originals.get()
            missing = "the original certificate is not in the secret store"
        except RotationError as exc:  # the store is away: without the pair, finish or record what is served
            original, missing = None, f"the original certificate cannot be read ({exc.message})"
        if original is not None and original.fingerprint != record.old_fingerprint:
            original = None
        if original is None:
            step.detail += "; " + missing
    if record.new_fingerprint and not run.companions and not record.companions:
        _verify(run, original, record.new_fingerprint, timedelta(0))
        if record.outcome is not Outcome.IN_PROGRESS:
            return
    # With companions the new certificate alone is not the whole change: their follow-ups need the
    # issued bundle, gone with the worker, so the interrupted rotation is rolled back and undone.
    settle(run, original, record.new_fingerprint, RotationError("interrupted after the push"))


def resume_undo(run: Run) -> None:
    """A redelivered task whose worker died once the certificate was back (rolled back or refused, verified
    and saved so) but before every companion's change was undone: undo what is left, newest first."""
    with run.step("resume") as step:
        step.detail = "previous attempt was interrupted while undoing its peer changes"
    with interrupts.deferred():
        _undo_companions(run)


__all__ = ["cluster_state", "observe", "push", "push_and_verify", "resume_after_push", "resume_undo", "send",
           "wait_until_served"]
