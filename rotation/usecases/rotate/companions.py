"""Companions: what a rotation must change besides the certificate, each with its undo.

Some certificates cannot change alone: a proxy certificate with OCSP stapling on, a ``syncer``
that replication peers must trust, a proxy that Active-Active peers pinned. A *companion* plugs
into the pipeline at fixed points, and the pipeline keeps the one order and the one failure rule:

    validate (+ every companion's ``checks``)
    -> ``prepare``   make-before-break changes before the push (e.g. add the new syncer to a peer)
    -> push -> verify
    -> ``follow_up`` changes that need the new certificate served (e.g. a peer pins it, a force update)
    -> ``finalize``  break what is no longer needed (e.g. remove the old syncer); failures only warn

Anything that fails from the first ``prepare`` on undoes what was applied, after the certificate
is rolled back and verified, in reverse order. What each action did is kept in
``RotationRecord.companions`` (public data only: ids, fingerprints, certificates, never keys), so
a redelivered task can still undo it, and every action is a recorded step.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from rotation.core.validate import ExtraCheck, ParsedBundle

# the interface (Applied, Companion, Memo) lives beside ``Run``, which holds a rotation's companions
from rotation.usecases.rotate.run import Applied, Companion, Memo, Run, describe

log = logging.getLogger("rotation.pipeline")


class NoCompanion:
    """A base with every hook a no-op: subclasses implement what they need."""

    name = "companion"

    def checks(self, run: Run) -> Sequence[ExtraCheck]:
        return ()

    def plan(self, run: Run, bundle: ParsedBundle) -> list[str]:
        return []

    def prepare(self, run: Run, bundle: ParsedBundle) -> Applied | None:
        return None

    def follow_up(self, run: Run, bundle: ParsedBundle) -> Applied | None:
        return None

    def finalize(self, run: Run, bundle: ParsedBundle) -> str | None:
        return None

    def undo(self, run: Run, memo: Memo) -> str:
        return "nothing to undo"


def checks(run: Run) -> list[ExtraCheck]:
    return [check for companion in run.companions for check in companion.checks(run)]


def plan(run: Run, bundle: ParsedBundle) -> list[str]:
    return [f"{c.name}: {line}" for c in run.companions for line in c.plan(run, bundle)]


def note(run: Run, companion: str, phase: str, memo: Memo) -> dict[str, Any]:
    """Record one applied action now. A companion acting on several peers notes each as it goes, so that
    a failure half-way still undoes what was done; the entry is returned (its memo may be completed)."""
    entry = {"companion": companion, "phase": phase, "memo": memo, "undone": False}
    run.record.companions.append(entry)
    run.save()
    return entry


def _apply(run: Run, phase: str, bundle: ParsedBundle) -> None:
    for companion in run.companions:
        hook = companion.prepare if phase == "prepare" else companion.follow_up
        with run.step(f"{phase}:{companion.name}") as step:
            applied = hook(run, bundle)
            step.detail = applied.detail if applied else "nothing to do"
        if applied is not None and applied.memo is not None:
            note(run, companion.name, phase, applied.memo)


def prepare(run: Run, bundle: ParsedBundle) -> None:
    """Every companion's make-before-break change; a failure undoes those already made, then raises."""
    try:
        _apply(run, "prepare", bundle)
    except BaseException:
        undo(run)
        raise


def follow_up(run: Run, bundle: ParsedBundle) -> None:
    _apply(run, "follow_up", bundle)


def finalize(run: Run, bundle: ParsedBundle) -> None:
    for companion in run.companions:
        try:
            with run.step(f"finalize:{companion.name}") as step:
                step.detail = companion.finalize(run, bundle) or "nothing to do"
        except Exception as exc:  # the rotation is verified: what is left behind is only a warning
            run.record.warnings.append(f"{companion.name}: {describe(exc)}")


def undo(run: Run) -> bool:
    """Undo every applied action not undone yet, newest first. False when one could not be undone
    (it stays in the record, ``undone: false``, with the reason in the error)."""
    by_name = {c.name: c for c in run.companions}
    complete = True
    for entry in reversed(run.record.companions):
        if entry.get("undone"):
            continue
        if entry.get("from_rotation") and not run.record.pushed:
            continue  # an abandoned rotation's (adopted): its certificate is still served until a push of ours
        companion = by_name.get(entry["companion"])
        try:
            with run.step(f"undo:{entry['companion']}") as step:
                if companion is None:
                    raise RuntimeError("this process does not know that companion")
                step.detail = companion.undo(run, entry["memo"])
            entry["undone"] = True
        except Exception as exc:
            complete = False
            run.record.error = f"{run.record.error or 'failed'}; undo of {entry['companion']} failed: {describe(exc)}"
        run.save()
    return complete


def pending(run: Run) -> bool:
    """Something applied is not undone yet (a redelivered task must undo it)."""
    return any(not entry.get("undone") for entry in run.record.companions)


__all__ = ["Applied", "Companion", "Memo", "NoCompanion", "checks", "finalize", "follow_up", "note", "pending",
           "plan", "prepare", "undo"]
