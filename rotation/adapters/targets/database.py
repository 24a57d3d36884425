"""A database's own certificate (RS 8.0.2+, ``/v1/bdbs/{uid}/certificates``) as a target.

Pushed with ``POST /v1/bdbs/{uid}/certificates`` once RS accepted the pair in its ``?dry_run``
(a pre-push check); read by an SNI handshake on the database's port on every node it binds, and
through ``GET /v1/bdbs/{uid}/certificates`` (404: the database presents the cluster's ``proxy``).
A rollback posts the previous pair, or DELETEs the database's own certificate when it presented
``proxy`` before the rotation: the exact previous state either way.

RS never returns a database's private key (``private_key`` is write-only), so the previous pair
can only come from us: every pair this target posts is kept first, encrypted in the secret store,
under the cluster's identity and the database's uid. A database whose own certificate the tool did
not install cannot be rolled back, and is refused before anything is pushed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from rotation.adapters.cluster import ClusterSession
from rotation.adapters.secrets import SecretStore
from rotation.adapters.targets.base import OriginalPair
from rotation.adapters.tls.probe import probe_endpoints
from rotation.core import certs
from rotation.core.errors import ClusterRejected, ConfigError, RotationError
from rotation.core.model import Endpoint, SecretPEM, ServedCert
from rotation.core.targets import database_key, database_target
from rotation.core.tls_rules import cipher_key_problems, key_type_of
from rotation.core.topology import DatabaseInfo
from rotation.core.validate import DEFAULT_CHECKS, Check, ExtraCheck, ParsedBundle

KEEP_SECONDS = 3 * 365 * 86400  # as long as a certificate a database keeps may live
KEEP_PAIRS = 3  # the one served, one being pushed, one spare


class DatabaseTarget:
    validation: tuple[Check, ...] = DEFAULT_CHECKS

    def __init__(self, session: ClusterSession, cert_name: str, secrets: SecretStore | None) -> None:
        self.session = session
        self.cert_name = cert_name
        self.key = database_key(cert_name) or ""
        self.secrets = secrets
        self._served: str | None = None  # the own pair ``current`` read: a failure restores it, so it is kept

    # --- the database ---------------------------------------------------------------------------
    def database(self) -> DatabaseInfo:
        view = self.session.view()
        db = view.database(self.key)
        if db is None:
            known = ", ".join(sorted({f"{d.name} ({d.uid})" for d in view.databases})) or "none"
            raise ConfigError(f"{self.session.name}: no database with the name or uid {self.key!r} "
                              f"(databases: {known})")
        if not db.tls:
            raise RotationError(f"{self.session.name}/{self.cert_name}: TLS is off on database {db.name}: no endpoint "
                                "presents a certificate, so nothing is pushed")
        return db

    def lock_name(self) -> str:
        """The database as RS names it: ``db:orders`` and ``db:7`` (its uid) are one certificate, one lock."""
        return database_target(self.database().name)

    def endpoints(self) -> list[Endpoint]:
        return self.session.view().database_endpoints(self.database().uid, self.cert_name)

    # --- reading ----------------------------------------------------------------------------------
    def served(self) -> list[ServedCert]:
        settings = self.session.settings
        return probe_endpoints(self.endpoints(), concurrency=settings.concurrency,
                               timeout=settings.handshake_timeout.total_seconds())

    def observe(self) -> list[ServedCert]:
        return [*self.served(), self._rest_copy()]

    def _effective_pem(self) -> tuple[str, bool]:
        """(the PEM the database presents per the REST API, whether it is the cluster's proxy)."""
        own = self.session.client.database_certificate(self.database().uid)
        if own is not None:
            return own, False
        proxy = self.session.client.cluster_info().get("proxy_certificate")  # fresh: proxy may rotate meanwhile
        if not isinstance(proxy, str):
            raise ClusterRejected(f"{self.session.name}: GET /v1/cluster has no proxy_certificate")
        return proxy, True

    def _rest_copy(self) -> ServedCert:
        uid = self.database().uid
        endpoint = Endpoint(self.session.name, self.cert_name, "api", f"GET /v1/bdbs/{uid}/certificates", 0)
        try:
            pem, _ = self._effective_pem()
            leaf = certs.load_certificates(pem, where=f"{self.session.name} database {uid} certificate")[0]
        except RotationError as exc:
            return ServedCert(endpoint=endpoint, error=exc.message)
        return ServedCert(endpoint=endpoint, fingerprint=certs.fingerprint(leaf), subject=certs.subject_text(leaf),
                          sans=certs.subject_alt_names(leaf), not_after=certs.not_after(leaf),
                          not_before=certs.not_before(leaf))

    def current(self) -> OriginalPair:
        pem, proxy = self._effective_pem()
        fingerprint = certs.fingerprint(certs.load_certificates(pem, where=f"{self.cert_name} certificate")[0])
        if proxy:
            return OriginalPair(pem, SecretPEM(""), fingerprint, fallback=True)
        kept = self._kept().get(fingerprint)
        self._served = fingerprint
        if kept is None:
            raise RotationError(
                f"{self.session.name}/{self.cert_name}: the database has a certificate of its own "
                f"({certs.short_fingerprint(fingerprint)}) that rotation did not install; RS never returns a "
                "database's private key, so a rollback could not restore it and nothing is pushed (DELETE it "
                "to fall back to the cluster's proxy certificate, or install it once with rotation)"
            )
        return OriginalPair(kept["certificate"], SecretPEM(kept["key"]), fingerprint)

    # --- the pairs this target posted ---------------------------------------------------------
    def _store_key(self) -> str:
        return f"installed/{self.session.settings.identity}/db:{self.database().uid}"

    def _kept(self) -> dict[str, dict[str, str]]:
        blob = self.secrets.get(self._store_key()) if self.secrets is not None else None
        return json.loads(blob) if blob else {}

    def _keep(self, pairs: dict[str, dict[str, str]]) -> None:
        if self.secrets is not None:
            self.secrets.put(self._store_key(), json.dumps(pairs).encode(), ttl_seconds=KEEP_SECONDS)

    # --- changing it ------------------------------------------------------------------------------
    def checks(self) -> Sequence[ExtraCheck]:
        return [self._data_path_ciphers(), self._rs_dry_run]

    def _data_path_ciphers(self) -> ExtraCheck:
        """A database's certificate is served on the data path, like ``proxy``: the same cipher rule."""
        settings = dict(self.session.view().tls_fields)

        def check(bundle: ParsedBundle, request: object) -> list[str]:
            key_type = key_type_of(bundle.leaf.public_key()) or ""
            return [problem.replace("proxy:", f"{self.cert_name} (data path):", 1)
                    for problem in cipher_key_problems("proxy", key_type, settings)]

        return check

    def _rs_dry_run(self, bundle: ParsedBundle, request: object) -> list[str]:
        """RS's own validation, changing nothing (``?dry_run``): what it refuses is never posted."""
        chain, key = certs.certs_to_pem(bundle.certificates), certs.private_key_to_pem(bundle.key)
        try:
            self.session.client.set_database_certificate(self.database().uid, chain, key, dry_run=True)
        except ClusterRejected as exc:
            return [f"RS refused it in its dry run (HTTP {exc.status}: {exc.error_code or ''} {exc.description or ''})"
                    .replace(":  ", ": ").strip()]
        return []

    def before_push(self, trust: Sequence[str]) -> None:
        return None

    def push(self, certificate: str, key: SecretPEM) -> str:
        leaf = certs.load_certificates(certificate, where=f"{self.cert_name} certificate")[0]
        pairs = self._kept()
        fingerprint = certs.fingerprint(leaf)
        pairs[fingerprint] = {"certificate": certificate, "key": key.reveal()}
        # kept before RS has it: a rollback can return to it. The pair served now stays whatever failed
        # rotations pushed since: RS never returns it, and without it the database could never rotate again.
        kept = {f for f in (self._served, fingerprint) if f in pairs}
        spares = [f for f in pairs if f not in kept]  # oldest first
        kept.update(spares[len(spares) - max(0, KEEP_PAIRS - len(kept)):])
        self._keep({f: pair for f, pair in pairs.items() if f in kept})
        return self.session.client.set_database_certificate(self.database().uid, certificate, key)

    def restore(self, original: OriginalPair) -> str:
        if original.fallback:  # it presented the cluster's proxy certificate: drop its own
            try:
                return self.session.client.delete_database_certificate(self.database().uid)
            except ClusterRejected as exc:
                if exc.status != 404:
                    raise
                # none to drop (the push never applied, or an earlier DELETE did): verification sees what is served
                return f"DELETE /v1/bdbs/{self.database().uid}/certificates: it has no certificate of its own (404)"
        self.session.client.set_database_certificate(self.database().uid, original.certificate, original.key)
        return f"posted back {certs.short_fingerprint(original.fingerprint)}"

    def verified(self) -> None:
        """Keep only the pair the database serves now: older keys are no longer needed for anything."""
        try:
            pem, proxy = self._effective_pem()
            served = certs.fingerprint(certs.load_certificates(pem, where=self.cert_name)[0])
            pairs = self._kept()
            if not proxy and served in pairs:
                self._keep({served: pairs[served]})
        except RotationError:
            return  # harmless: the spare pairs stay encrypted until they age out


__all__ = ["DatabaseTarget"]
