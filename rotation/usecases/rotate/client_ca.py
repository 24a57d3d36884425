"""The client-CA companion of ``rest_client`` (``manage_trusted_ca: true``): when the tool's new client
certificate comes from a CA the cluster's ``mtls_trusted_ca`` does not hold yet (the client CA was
rotated), that slot changes with it, make before break:

    prepare   push the union of the CAs held and the new CA; the certificate in use still logs in
              on every node (else the old bundle goes back and nothing else happens)
    (push)    the new certificate logs in alone on every node, then the files switch (the target)
    finalize  remove the CA that issued the old certificate, once the new one logs in everywhere;
              proven again on every node, else the union goes back (a warning: both still work)
    undo      the bundle from before (after the old certificate was restored)

Every bundle pushed is first checked to accept the certificate the tool logs in with at that
moment (``login_guard.keep_trusted_ca``). A renewal from the same CA changes nothing here.
"""

from __future__ import annotations

from collections.abc import Sequence

from rotation.adapters.cert_login import prove_login, refusals
from rotation.adapters.cluster import ClusterSession
from rotation.adapters.tls.trust import client_certificate_error
from rotation.core import certs
from rotation.core.errors import ClusterAPIError, RotationError
from rotation.core.model import ClientCertificate
from rotation.core.validate import ExtraCheck, ParsedBundle
from rotation.usecases.login_guard import keep_trusted_ca
from rotation.usecases.rotate.companions import Applied, Memo, NoCompanion, note
from rotation.usecases.rotate.run import Run

SLOT = "mtls_trusted_ca"


def _split(bundle: str) -> list[str]:
    return [certs.cert_to_pem(c) for c in certs.load_certificates(bundle, where=SLOT)]


def _joined(pems: Sequence[str]) -> str:
    return "".join(pems)


def _names(pems: Sequence[str]) -> str:
    return ", ".join(certs.subject_text(certs.load_certificates(p, where=SLOT)[0]) or "?" for p in pems)


class ClientCA(NoCompanion):
    name = "client_ca"

    def __init__(self, session: ClusterSession, new_cas: Sequence[str]) -> None:
        self.session = session
        self.new_cas = [pem for bundle in new_cas for pem in _split(bundle)]  # the rest_client issuer's anchors

    # --- reading ----------------------------------------------------------------------------------
    def _held(self) -> list[str]:
        pair = self.session.certificates().get(SLOT)
        if pair is None:
            raise RotationError(f"{self.session.name}: the cluster has no {SLOT}: certificate login is not set up")
        return _split(pair.certificate)

    def _added(self, held: list[str]) -> list[str]:
        return [pem for pem in self.new_cas if pem not in held]

    def _in_use(self) -> ClientCertificate | None:
        return self.session.settings.client_certificate(self.session.name)

    # --- the hooks ----------------------------------------------------------------------------------
    def checks(self, run: Run) -> Sequence[ExtraCheck]:
        def accepted_by_the_union(bundle: ParsedBundle, request: object) -> list[str]:
            held = self._held()
            chain, key = certs.certs_to_pem(bundle.certificates), certs.private_key_to_pem(bundle.key)
            error = client_certificate_error(_joined([*held, *self._added(held)]), chain, key)
            return [] if error is None else [f"{SLOT} with the new CA added would still not accept it ({error})"]

        return [accepted_by_the_union]

    def plan(self, run: Run, bundle: ParsedBundle) -> list[str]:
        added = self._added(self._held())
        if not added:
            return [f"{SLOT} already holds the new certificate's CA: unchanged"]
        return [f"{SLOT}: add {_names(added)} first, then remove the CA of the certificate in use once the new "
                "one logs in on every node"]

    def prepare(self, run: Run, bundle: ParsedBundle) -> Applied | None:
        held = self._held()
        added = self._added(held)
        if not added:
            return None
        in_use = self._in_use()
        retire = [pem for pem in held if pem not in self.new_cas and in_use is not None
                  and client_certificate_error(pem, in_use.certificate, in_use.key) is None]
        union = _joined([*held, *added])
        # Recorded before it is sent: a PUT whose answer never came (a timeout, a reset, a worker that died)
        # may have changed the slot, and only what the record names is undone (the bundle from before).
        entry = note(run, self.name, "prepare", {"before": _joined(held), "union": union, "retire": retire})
        try:
            if run.store_down:  # a redelivered task could not know to put the CAs back
                raise RotationError(f"{self.session.name}: the record cannot be saved (the store is away): "
                                    f"{SLOT} is not changed")
            self._push(run, union, in_use, "adding the new client CA")
        except RotationError as exc:
            if not isinstance(exc, ClusterAPIError) or (exc.status is not None and exc.status < 500):
                entry["undone"] = True  # nothing sent, or refused outright: nothing changed
                run.save()
            raise
        problem = refusals(prove_login(self.session, in_use)) if in_use is not None else None
        if problem is not None:
            self._push(run, _joined(held), in_use, "putting the CAs back")
            entry["undone"] = True
            run.save()
            raise RotationError(f"{self.session.name}: with the new CA added, the certificate in use no longer "
                                f"logs in ({problem}); {SLOT} was put back")
        return Applied(f"{SLOT}: added {_names(added)} beside {len(held)} CA(s)", memo=None)  # noted above

    def finalize(self, run: Run, bundle: ParsedBundle) -> str | None:
        memo = next((e["memo"] for e in reversed(run.record.companions)
                     if e["companion"] == self.name and e["phase"] == "prepare"), None)
        if memo is None or not memo["retire"]:
            return None
        union = _split(memo["union"])
        final = _joined([pem for pem in union if pem not in memo["retire"]])
        in_use = self._in_use()  # the new certificate, since the switch
        self._push(run, final, in_use, "removing the old client CA")
        problem = refusals(prove_login(self.session, in_use)) if in_use is not None else None
        if problem is not None:
            self._push(run, memo["union"], in_use, "keeping both CAs")
            raise RotationError(f"without the old CA the new certificate did not log in everywhere ({problem}); "
                                f"{SLOT} keeps both CAs")
        return f"{SLOT}: removed {_names(memo['retire'])}; the new certificate logs in on every node"

    def undo(self, run: Run, memo: Memo) -> str:
        self._push(run, memo["before"], self._in_use(), "restoring the CAs from before")
        return f"{SLOT}: restored ({len(_split(memo['before']))} CA(s))"

    def _push(self, run: Run, bundle: str, in_use: ClientCertificate | None, what: str) -> None:
        keep_trusted_ca(self.session, bundle, in_use, f"{SLOT} ({what})")
        run.lease.check()  # fenced like every change a rotation makes
        self.session.push_trusted_ca(bundle)


__all__ = ["SLOT", "ClientCA"]
