"""Certificates a cluster holds beyond the five it serves, and the options of issue 14.

* **RS's own INE certificates** (``internode_certs``): ``ccs_internode_encryption`` and
  ``data_internode_encryption``, RSA, issued by the cluster's CA for 90 days (D-INE), on versions
  with customer INE (7.22.2-14 / 8.0.2-17). They live at cluster level: no listener presents them.
* **The silent fallback** (``ine_fallback``): "customer-provided INE certs are not auto-rotated;
  RS swaps in self-signed ones 5 days before they expire" (``redis-enterprise-api.md`` §7.1, D-INE).
  The simulator checks at every REST request (nothing else can observe INE certificates) and
  records each swap in ``GET /_sim/certificates``.
* **Planted names** (``extra_certificates``, ``POST /_sim/certificates``): any name, e.g. one the
  product does not know yet, or ``sso_service``; a planted name is then accepted by uploads too.
* **Options**, switchable at run time with ``POST /_sim/options``: ``cert_profile`` and
  ``ine_fallback`` (here), ``ocsp_without_url`` (read by :mod:`.ocsp`).

Control routes (admin only, no latency): ``GET /_sim/certificates`` (options, planted and
generated names, fallbacks), ``POST /_sim/certificates`` ``{name, certificate?, key?, days?,
key_type?}`` and ``POST /_sim/options``; a bad body is 400 ``invalid_option``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from . import api
from .api import BadRequest, route
from .http import Request, Response
from .profile import (
    INE_NAMES,
    NAME_PATTERN,
    OCSP_WITHOUT_URL,
    PROFILE_MODES,
    UploadRules,
    customer_ine_supported,
)
from .tls import MAIN_NAMES, CertificateAuthority, LeafSpec, Material, material_from_pems, utcnow

if TYPE_CHECKING:
    from .cluster import ClusterState, SimulatorConfig
    from .host import Simulator

FALLBACK_BEFORE = dt.timedelta(days=5)
INTERNAL_VALIDITY = dt.timedelta(days=90)


@dataclass
class CertOptions:
    cert_profile: str = "none"
    ine_fallback: bool = False
    ocsp_without_url: str = "fail"

    def update(self, changes: Mapping[str, Any]) -> None:
        """Validate every change, then apply all (ValueError names the first bad one)."""
        unknown = set(changes) - {"cert_profile", "ine_fallback", "ocsp_without_url"}
        if unknown:
            raise ValueError(f"unknown options {sorted(unknown)}")
        if "cert_profile" in changes and changes["cert_profile"] not in PROFILE_MODES:
            raise ValueError(f"cert_profile must be one of {PROFILE_MODES}")
        if "ocsp_without_url" in changes and changes["ocsp_without_url"] not in OCSP_WITHOUT_URL:
            raise ValueError(f"ocsp_without_url must be one of {OCSP_WITHOUT_URL}")
        if "ine_fallback" in changes and not isinstance(changes["ine_fallback"], bool):
            raise ValueError("ine_fallback must be a boolean")
        for key, value in changes.items():
            setattr(self, key, value)


class Slots:
    """Per-cluster state of the names above; mutated on the simulator's loop only."""

    def __init__(self, config: SimulatorConfig, ca: CertificateAuthority, state: ClusterState) -> None:
        self.config, self.ca, self.state = config, ca, state
        self.options = CertOptions(config.cert_profile, config.ine_fallback, config.ocsp_without_url)
        self.extra_names: set[str] = set()
        self.generated: set[str] = set()  # names whose current certificate RS made itself
        self.fallbacks: list[dict[str, str]] = []
        if config.internode_certs and customer_ine_supported(state.version):
            for name in INE_NAMES:
                self._generate(name, utcnow())
        for name in config.extra_certificates:
            self.plant(name)

    def rules(self, via: str) -> UploadRules:
        return UploadRules(version=self.state.version, fqdn=self.config.fqdn, mode=self.options.cert_profile,
                           settings=self.state.settings, via=via, extra_names=frozenset(self.extra_names))

    def uploaded(self, materials: list[Material]) -> None:
        """Uploaded certificates are the customer's, whatever RS held before."""
        for material in materials:
            self.generated.discard(material.name)

    def tick(self, now: dt.datetime) -> None:
        """The fallback: a customer INE certificate within 5 days of expiry becomes RS's own."""
        if not self.options.ine_fallback:
            return
        for name in INE_NAMES:
            current = self.state.certs.get(name)
            if current is None or name in self.generated or current.not_after - now > FALLBACK_BEFORE:
                continue
            replacement = self._generate(name, now)
            self.fallbacks.append({"name": name, "at": now.isoformat(), "replaced": current.fingerprint,
                                   "customer_not_after": current.not_after.isoformat(),
                                   "fingerprint": replacement.fingerprint})

    def plant(self, name: str, certificate: str | None = None, key: str | None = None,
              days: float = 90.0, key_type: str = "ecdsa") -> Material:
        if not isinstance(name, str) or not re.match(NAME_PATTERN, name) or name in MAIN_NAMES:
            raise ValueError(f"name {name!r}: lower-case letters, digits and _, not one of the served {MAIN_NAMES}")
        if certificate is None:
            if key_type not in ("ecdsa", "rsa") or not 0 < float(days) <= 3650:
                raise ValueError("key_type must be ecdsa or rsa, days between 0 and 3650")
            now = utcnow()
            certificate, key = self.ca.issue(self.config.fqdn, now - dt.timedelta(hours=1),
                                             now + dt.timedelta(days=float(days)), LeafSpec(key_type=key_type))
        try:
            material = material_from_pems(name, certificate, key or None)
        except ValueError as exc:
            raise ValueError(f"{name}: the certificate PEM cannot be parsed") from exc
        self.state.certs[name] = material
        self.extra_names.add(name)
        self.generated.discard(name)
        return material

    def _generate(self, name: str, now: dt.datetime) -> Material:
        spec = LeafSpec(key_type="rsa", key_encipherment=True)
        cert, key = self.ca.issue(self.config.fqdn, now - dt.timedelta(minutes=5), now + INTERNAL_VALIDITY, spec)
        material = material_from_pems(name, cert, key)
        self.state.certs[name] = material
        self.generated.add(name)
        return material

    def snapshot(self) -> dict[str, Any]:
        return {"options": asdict(self.options), "extra_names": sorted(self.extra_names),
                "generated": sorted(self.generated), "fallbacks": list(self.fallbacks)}


# -- control routes --------------------------------------------------------------------------------


def _body(request: Request) -> dict[str, Any]:
    body = api._json_body(request)
    if not isinstance(body, dict):
        raise BadRequest("invalid_option", "Body must be a JSON object")
    return body


@route("GET", "/_sim/certificates", "update", control=True)
async def get_sim_certificates(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    return Response.json(sim.slots.snapshot())


@route("POST", "/_sim/certificates", "update", control=True)
async def post_sim_certificates(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    body = _body(request)
    unknown = set(body) - {"name", "certificate", "key", "days", "key_type"}
    if unknown:
        raise BadRequest("invalid_option", f"Unknown properties: {sorted(unknown)}")
    try:
        material = sim.slots.plant(**body)
    except (TypeError, ValueError) as exc:
        raise BadRequest("invalid_option", str(exc)) from exc
    return Response.json({"name": material.name, "fingerprint": material.fingerprint,
                          "not_after": material.not_after.isoformat()})


@route("POST", "/_sim/options", "update", control=True)
async def post_sim_options(sim: Simulator, request: Request, params: dict[str, str]) -> Response:
    try:
        sim.slots.options.update(_body(request))
    except ValueError as exc:
        raise BadRequest("invalid_option", str(exc)) from exc
    return Response.json(asdict(sim.slots.options))


# -- the same from Python ----------------------------------------------------------------------------


class CertControls:
    """Thread-safe controls of the features above, mixed into :class:`.server.ClusterSimulator`."""

    config: SimulatorConfig
    ca: CertificateAuthority
    slots: Slots

    def _call(self, fn: Any) -> Any:  # provided by ClusterSimulator
        raise NotImplementedError

    def set_options(self, **options: Any) -> dict[str, Any]:
        """``cert_profile``, ``ine_fallback``, ``ocsp_without_url`` (see :class:`CertOptions`)."""
        def apply() -> dict[str, Any]:
            self.slots.options.update(options)
            return asdict(self.slots.options)

        result: dict[str, Any] = self._call(apply)
        return result

    def plant_certificate(self, name: str, certificate: str | None = None, key: str | None = None,
                          days: float = 90.0, key_type: str = "ecdsa") -> str:
        """Hold ``name`` (issued by the cluster CA unless a PEM is given); returns its fingerprint."""
        material: Material = self._call(lambda: self.slots.plant(name, certificate, key, days, key_type))
        return material.fingerprint

    def certificate_slots(self) -> dict[str, Any]:
        """``GET /_sim/certificates``: options, planted and generated names, fallbacks so far."""
        result: dict[str, Any] = self._call(self.slots.snapshot)
        return result

    def issue_certificate(self, spec: LeafSpec | None = None, days: float = 90.0) -> tuple[str, str]:
        """(certificate PEM, key PEM) from the cluster CA, e.g. ``LeafSpec(ocsp_url=...)`` for a
        proxy certificate with an OCSP URL, or ``LeafSpec.tlsserver()`` for a 2026 public-CA shape.
        The CA is the trust anchor (``ca_path``), so the PEM is the leaf alone."""
        now = utcnow()
        return self.ca.issue(self.config.fqdn, now - dt.timedelta(minutes=5), now + dt.timedelta(days=days), spec)
