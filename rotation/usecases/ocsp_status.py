"""The proxy's OCSP stapling as `rotation check` shows it: on or off, and the responder's last answer.

With stapling on, a client blocks the handshake on a stapled REVOKED or UNKNOWN, and RS has nothing to
staple for a proxy certificate without OCSP URL: those are problems (exit 1 in `check`). A cluster
before RS 6.2.12 cannot staple and has no row. A read that fails (a mixed-version cluster answers 406,
an account without ``view_ocsp_config`` 403) is shown in the row, and does not fail the check: the
certificates themselves were read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from rotation.adapters.cluster import ClusterSession
from rotation.core.errors import RotationError
from rotation.core.ocsp import OcspConfig, OcspStatus
from rotation.core.versions import OCSP_STAPLING_SINCE, at_least


@dataclass(frozen=True)
class ProxyOcsp:
    cluster: str
    stapling: bool | None = None  # None: could not be read (``error``)
    status: OcspStatus = OcspStatus()  # the last answer RS holds about the current proxy certificate
    problem: str | None = None
    error: str | None = None

    @classmethod
    def of(cls, cluster: str, config: OcspConfig, status: OcspStatus) -> ProxyOcsp:
        status = replace(status, responder_url=config.responder_url or status.responder_url)
        problem = None
        if config.stapling and not status.responder_url:
            problem = "stapling is on but the proxy certificate has no OCSP URL: nothing to staple"
        elif config.stapling and status.cert_status is not None and not status.good:
            problem = f"stapling is on and the responder answered {status.describe()}: clients refuse the handshake"
        return cls(cluster, config.stapling, status, problem)

    def to_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "stapling": self.stapling, **asdict(self.status), "problem": self.problem,
                "error": self.error}


def proxy_ocsp(session: ClusterSession) -> ProxyOcsp | None:
    """``GET /v1/ocsp`` and ``GET /v1/ocsp/status`` (RS's cached answer, which RS refreshes on its own
    schedule; no test query is forced); None before RS 6.2.12."""
    try:
        if not at_least(session.view().version, OCSP_STAPLING_SINCE):
            return None
        return ProxyOcsp.of(session.name, session.ocsp(), session.ocsp_status())
    except RotationError as exc:
        return ProxyOcsp(session.name, error=exc.message)


__all__ = ["ProxyOcsp", "proxy_ocsp"]
