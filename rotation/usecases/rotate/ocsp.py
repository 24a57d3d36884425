"""The OCSP companion: rotate ``proxy`` on a cluster that staples it (RS 6.2.12+).

RS staples the proxy certificate's OCSP answer, fetched from the responder named in that
certificate's AIA. A certificate without one (every Let's Encrypt certificate since May 2025)
cannot be stapled, and what RS then does to handshakes is undocumented, so:

* before the push (a pre-push check, after ``GET /v1/ocsp``): stapling on and no OCSP URL in the new
  certificate refuses the rotation, nothing changed; unless the cluster opted in
  (``ocsp: disable_when_missing``): then ``prepare`` turns stapling off (``PUT /v1/ocsp``), says so in
  the record's warnings, and ``undo`` turns it back on after a rollback;
* after the push with stapling on, ``follow_up`` has RS ask the responder now
  (``POST /v1/ocsp/test``): anything but GOOD (REVOKED, UNKNOWN, no answer) rolls the rotation back,
  since clients block handshakes on a stapled REVOKED or UNKNOWN.
"""

from __future__ import annotations

from collections.abc import Sequence

from rotation.adapters.cluster import ClusterSession
from rotation.config import Inventory
from rotation.core.errors import ClusterAPIError, RotationError, VerificationError
from rotation.core.model import CertName, CertRequest
from rotation.core.ocsp import OcspConfig, missing_url_problem, responder_urls
from rotation.core.validate import ExtraCheck, ParsedBundle
from rotation.core.versions import OCSP_STAPLING_SINCE, at_least
from rotation.usecases.context import ServiceContext
from rotation.usecases.rotate.companions import Applied, Companion, Memo, NoCompanion, note
from rotation.usecases.rotate.run import Run

TURN_OFF = "stapling_off"


class OcspCompanion(NoCompanion):
    name = "ocsp"

    def __init__(self, disable_when_missing: bool = False) -> None:
        self.disable_when_missing = disable_when_missing
        self.config: OcspConfig | None = None  # read by the pre-push check

    def _turns_off(self, bundle: ParsedBundle) -> bool:
        return self.config is not None and self.config.stapling and not responder_urls(bundle.leaf)

    def checks(self, run: Run) -> Sequence[ExtraCheck]:
        if not at_least(run.session.view().version, OCSP_STAPLING_SINCE):
            return ()  # RS cannot staple before 6.2.12
        self.config = run.session.ocsp()  # an error here refuses the rotation: stapling unknown
        config, cluster = self.config, run.session.name

        def stapled_if_on(bundle: ParsedBundle, request: CertRequest) -> list[str]:
            problem = missing_url_problem(cluster, config, bundle.leaf, self.disable_when_missing)
            return [problem] if problem else []

        return [stapled_if_on]

    def plan(self, run: Run, bundle: ParsedBundle) -> list[str]:
        if self.config is None or not self.config.stapling:
            return []  # nothing changes: no plan line for every proxy rotation
        if self._turns_off(bundle):
            return ["before the push: turn stapling off (the new certificate has no OCSP URL; "
                    "ocsp: disable_when_missing)"]
        return [f"after the push: the responder ({responder_urls(bundle.leaf)[0]}) must answer GOOD"]

    def prepare(self, run: Run, bundle: ParsedBundle) -> Applied | None:
        if not self._turns_off(bundle):
            return None
        run.lease.check()  # fenced like every change a rotation makes
        # Recorded before it is made: a PUT whose answer never came (a timeout, a reset, a worker that died)
        # may have turned stapling off, and only what the record names is undone. RS refusing it (a 4xx)
        # changed nothing. (Turning stapling on again when it stayed on changes nothing.)
        entry = note(run, self.name, "prepare", {"action": TURN_OFF})
        try:
            if run.store_down:  # a redelivered task could not know to turn it on again
                raise RotationError(f"{run.session.name}: the record cannot be saved (the store is away): OCSP "
                                    "stapling is not turned off")
            run.session.set_ocsp_stapling(False)
        except RotationError as exc:
            if not isinstance(exc, ClusterAPIError) or (exc.status is not None and exc.status < 500):
                entry["undone"] = True  # nothing sent, or refused outright: nothing changed
                run.save()
            raise
        run.record.warnings.append(f"{run.session.name}: OCSP stapling turned off: the new proxy certificate has no "
                                   "OCSP URL (ocsp: disable_when_missing); turn it on again with a certificate "
                                   "that has one")
        return Applied("stapling turned off (the new certificate has no OCSP URL)", memo=None)  # noted above

    def follow_up(self, run: Run, bundle: ParsedBundle) -> Applied | None:
        if self.config is None or not self.config.stapling or self._turns_off(bundle):
            return None
        try:
            status = run.session.ocsp_status(query_now=True)
        except RotationError as exc:
            raise VerificationError(f"{run.session.name}/proxy: OCSP stapling is on and RS could not get an answer "
                                    f"about the new certificate: {exc.message}") from exc
        if not status.good:
            raise VerificationError(f"{run.session.name}/proxy: OCSP stapling is on and the responder answered "
                                    f"{status.describe()} about the new certificate; clients would refuse it")
        return Applied(f"POST /v1/ocsp/test: {status.describe()}", memo=None)

    def undo(self, run: Run, memo: Memo) -> str:
        if memo.get("action") != TURN_OFF:
            raise RotationError(f"unknown OCSP step {memo.get('action')!r} in the record")
        run.session.set_ocsp_stapling(True)
        return "stapling turned on again"


def ocsp_companion(ctx: ServiceContext, inventory: Inventory, session: ClusterSession,
                   cert_name: CertName) -> Companion | None:
    """The companion of a ``proxy`` rotation on a cluster that staples it (RS 6.2.12+), or may have: one
    whose stapling cannot be read now (the pipeline reads it again and records why it cannot), and one
    that opted in to turning it off (an earlier attempt of this rotation may have, and must be undone)."""
    if cert_name is not CertName.PROXY:
        return None
    disable_when_missing = session.settings.ocsp == "disable_when_missing"
    try:
        if not at_least(session.software_version(), OCSP_STAPLING_SINCE):  # one GET: the pipeline reads the view
            return None
        stapling = session.ocsp().stapling
    except RotationError:
        stapling = True  # unknown: the pre-push check reads it again, inside the pipeline
    return OcspCompanion(disable_when_missing) if stapling or disable_when_missing else None


__all__ = ["OcspCompanion", "ocsp_companion"]
