"""A small synchronous client for the RS REST API (httpx).

Only this module talks HTTP to a cluster; every foreign error is translated here, once,
into ``rotation.core.errors`` (see ``_raise_for_status`` and ``_translate_transport_error``).
Every call is bounded (``rotation.adapters.bounded_http``): ``timeout`` is its total deadline (connect,
TLS, request and the whole answer), and an answer over ``max_response_bytes`` (16 MiB by
default) is refused there, never held whole.
PEMs go into JSON bodies as plain strings: JSON encoding is the escaping the RS docs do by
hand with ``sed``.
"""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from rotation.adapters import bounded_http
from rotation.core.errors import (
    ClusterAPIError,
    ClusterAuthError,
    ClusterRejected,
    ClusterUnavailable,
    ConfigError,
)
from rotation.core.model import SecretPEM
from rotation.core.redaction import redact_url
from rotation.core.topology import DatabaseInfo, NodeInfo
from rotation.core.versions import parse_version

log = logging.getLogger(__name__)

_FINAL_STATUSES = {400, 403, 404, 406}


@dataclass(frozen=True)
class CertificatePair:
    certificate: str
    key: SecretPEM | None


def build_ssl_context(verify: bool | Sequence[Path], extra_trust: Iterable[str] = ()) -> ssl.SSLContext:
    """The context for the REST API: system trust or the given bundles, plus extra CA PEMs.
    Contexts are shared (they are thread-safe): loading CA files on every scan costs CPU for nothing."""
    bundles = verify if isinstance(verify, bool) else tuple((str(p), _mtime(p)) for p in verify)
    return _ssl_context(bundles, tuple(extra_trust))


def _mtime(path: Path) -> int:
    try:
        return Path(path).stat().st_mtime_ns  # an edited bundle gets a fresh context
    except OSError:
        return -1


@functools.lru_cache(maxsize=64)
def _ssl_context(verify: bool | tuple[tuple[str, int], ...], extra_trust: tuple[str, ...]) -> ssl.SSLContext:
    if verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    bundles = [] if isinstance(verify, bool) else [path for path, _ in verify]
    # Explicit bundles replace the system trust store; no bundle means system trust.
    # Loading the system store costs ~20 ms: only when no bundle replaces it.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT) if bundles else ssl.create_default_context()
    for bundle in bundles:
        try:
            context.load_verify_locations(cafile=str(bundle))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"verify bundle {bundle}: cannot load CA certificates ({exc})") from None
    extra = "".join(extra_trust)
    if extra:
        context.load_verify_locations(cadata=extra)
        # Trusting an issuing intermediate (ACME) must be enough: its root may not be in the bundle.
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def _error_fields(response: httpx.Response) -> tuple[str | None, str | None]:
    try:
        body = response.json()
    except ValueError:
        return None, (response.text[:200] or None)
    if not isinstance(body, dict):
        return None, None
    description = body.get("description") or body.get("message")
    return body.get("error_code"), description


def _redirect_target(response: httpx.Response) -> str:
    """Where a 3xx points, absolute and with any credentials redacted (the header is foreign text)."""
    location = response.headers.get("Location", "")[:500]
    if not location:
        return "no Location header"
    try:
        return redact_url(str(response.request.url.join(location)))
    except (httpx.InvalidURL, ValueError):
        return "an unparsable Location"


def _raise_for_status(response: httpx.Response, *, cluster: str, action: str) -> None:
    """Map an RS answer to an error a caller can act on. Only 2xx is success."""
    status = response.status_code
    if 200 <= status < 300:
        return
    url = str(response.request.url)
    if 300 <= status < 400:
        # Never followed: a redirect means the request was not processed, and following one would
        # send the admin credentials and private keys wherever it points.
        raise ClusterRejected(
            f"{cluster}: {action}: the REST API answered HTTP {status}, redirecting to {_redirect_target(response)};"
            " not followed: point `url` at the cluster's REST API itself",
            status=status, url=url,
        )
    error_code, description = _error_fields(response)
    detail = f"{error_code}: {description}" if error_code else (description or response.reason_phrase)
    message = f"{cluster}: {action} failed with HTTP {status} ({detail})"
    kwargs: dict[str, Any] = {"status": status, "error_code": error_code, "description": description, "url": url}
    if status == 401:
        raise ClusterAuthError(f"{cluster}: {action}: the cluster refused the username or password (HTTP 401)",
                               **kwargs)
    if status in _FINAL_STATUSES:
        raise ClusterRejected(message, **kwargs)
    if status == 409 or status >= 500:
        retry_after = response.headers.get("Retry-After")
        raise ClusterUnavailable(
            message, retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None, **kwargs
        )
    raise ClusterRejected(message, **kwargs)


def _translate_transport_error(exc: httpx.TransportError, *, cluster: str, action: str, url: str) -> ClusterAPIError:
    if isinstance(exc, httpx.TimeoutException):
        return ClusterUnavailable(f"{cluster}: {action}: timed out talking to {url}", url=url)
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return ClusterRejected(
            f"{cluster}: {action}: TLS verification of {url} failed ({cause or exc}); "
            "set `verify:` to the CA bundle of the REST API",
            url=url,
        )
    return ClusterUnavailable(f"{cluster}: {action}: cannot reach {url} ({exc.__class__.__name__}: {exc})", url=url)


class RSClient:
    """One cluster's REST API. Use as a context manager; thread-unsafe like httpx.Client."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        cluster: str = "cluster",
        verify: bool | Sequence[Path] = True,
        server_name: str | None = None,
        timeout: float = 60.0,
        extra_trust: Iterable[str] = (),
        transport: httpx.BaseTransport | None = None,  # tests drive foreign errors through the mapper
        max_response_bytes: int = bounded_http.MAX_RESPONSE_BYTES,
    ) -> None:
        if verify is False:
            log.warning("TLS verification of the REST API of %s is OFF (verify: false)", cluster)
        self.cluster = cluster
        self.base_url = base_url.rstrip("/")
        self._auth = httpx.BasicAuth(username, password)
        self._verify = verify
        self._trusted: list[str] = list(extra_trust)
        self._server_name = server_name
        self._timeout = timeout
        self._transport = transport
        self._max_response_bytes = max_response_bytes
        self._http = self._new_http()

    # --- plumbing ------------------------------------------------------------------------
    def _new_http(self) -> httpx.Client:
        context = build_ssl_context(self._verify, self._trusted)
        return httpx.Client(
            base_url=self.base_url,
            auth=self._auth,
            verify=context,
            timeout=httpx.Timeout(self._timeout, connect=min(self._timeout, 10.0)),
            headers={"Accept": "application/json", **bounded_http.IDENTITY},
            transport=self._transport or bounded_http.transport(context),
            trust_env=False,  # no proxy from the environment: every call goes through the bounded transport
        )

    def trust(self, ca_pems: Iterable[str]) -> None:
        """Also trust these CA certificates from now on (used before the ``api`` certificate changes)."""
        new = [pem for pem in ca_pems if pem and pem not in self._trusted]
        if not new:
            return
        self._trusted.extend(new)
        self.reconnect()

    def reconnect(self) -> None:
        """Drop pooled connections: the next request makes a fresh TLS handshake."""
        self._http.close()
        self._http = self._new_http()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RSClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _request(self, method: str, path: str, *, action: str, json: Any = None) -> Any:
        extensions = {"sni_hostname": self._server_name} if self._server_name else None
        url = f"{self.base_url}{path}"
        try:
            with bounded_http.deadline(self._timeout):
                request = self._http.build_request(method, path, json=json, extensions=extensions)
                streamed = self._http.send(request, stream=True)
                try:
                    response = bounded_http.read_capped(streamed, self._max_response_bytes)
                finally:
                    streamed.close()
        except httpx.TransportError as exc:
            raise _translate_transport_error(exc, cluster=self.cluster, action=action, url=url) from exc
        except (bounded_http.ResponseTooLarge, bounded_http.ResponseRefused) as exc:
            raise ClusterAPIError(f"{self.cluster}: {action}: refused the answer of {url}: {exc}", url=url) from None
        _raise_for_status(response, cluster=self.cluster, action=action)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    # --- reads ---------------------------------------------------------------------------
    def cluster_info(self) -> dict[str, Any]:
        info = self._request("GET", "/v1/cluster", action="GET /v1/cluster")
        if not isinstance(info, dict):
            raise ClusterRejected(f"{self.cluster}: GET /v1/cluster: the answer is not a JSON object",
                                  url=f"{self.base_url}/v1/cluster")
        return info

    def nodes(self) -> list[NodeInfo]:
        raw = self._request("GET", "/v1/nodes", action="GET /v1/nodes") or []
        return [
            NodeInfo(
                uid=int(node["uid"]),
                addr=node.get("addr", ""),
                external_addr=tuple(node.get("external_addr") or ()),
                status=node.get("status", "active"),
                software_version=node.get("software_version"),
            )
            for node in raw
        ]

    def databases(self) -> list[DatabaseInfo]:
        raw = self._request("GET", "/v1/bdbs", action="GET /v1/bdbs") or []
        result = []
        for bdb in raw:
            tls = bdb.get("tls_mode") == "enabled" or bool(bdb.get("ssl"))
            for endpoint in bdb.get("endpoints") or []:
                result.append(
                    DatabaseInfo(
                        uid=int(bdb["uid"]),
                        name=bdb.get("name", str(bdb["uid"])),
                        port=int(endpoint.get("port") or bdb.get("port")),
                        tls=tls,
                        dns_name=endpoint.get("dns_name", ""),
                        addrs=tuple(endpoint.get("addr") or ()),
                    )
                )
        return result

    def certificates(self) -> dict[str, CertificatePair]:
        """``GET /v1/cluster/certificates``: the cluster-level PEMs, keys wrapped as secrets."""
        raw = self._request("GET", "/v1/cluster/certificates", action="GET /v1/cluster/certificates") or {}
        pairs: dict[str, CertificatePair] = {}
        for key, value in raw.items():
            if key.endswith("_cert"):
                name = key.removesuffix("_cert")
                secret = raw.get(f"{name}_key")
                pairs[name] = CertificatePair(value, SecretPEM(secret) if secret else None)
        return pairs

    def software_version(self, nodes: Sequence[NodeInfo] | None = None) -> str | None:
        """The lowest node version (a mixed cluster behaves like its oldest node)."""
        versions = [n.software_version for n in (nodes if nodes is not None else self.nodes()) if n.software_version]
        if versions:
            return min(versions, key=parse_version)
        return self.cluster_info().get("software_version")

    # --- writes --------------------------------------------------------------------------
    def update_certificate(self, name: str, certificate: str, key: SecretPEM, *, bulk: bool) -> str:
        """Replace one certificate on every node; returns the endpoint used."""
        item = {"name": name, "certificate": certificate, "key": key.reveal()}
        if bulk:
            path = "/v1/cluster/certificates"
            self._request("PUT", path, action=f"PUT {path} ({name})", json={"certificates": [item]})
        else:
            path = "/v1/cluster/update_cert"
            self._request("PUT", path, action=f"PUT {path} ({name})", json=item)
        return path

    def update_cluster(self, settings: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        path = "/v1/cluster?dry_run=1" if dry_run else "/v1/cluster"
        return self._request("PUT", path, action="PUT /v1/cluster", json=settings) or {}

    # --- replication: Replica Of and Active-Active (the coupling graph and its follow-ups) ----
    def _shaped(self, method: str, path: str, kind: type, json: Any = None) -> Any:
        """A request whose answer must be a JSON object (``dict``) or array (``list``)."""
        action = f"{method} {path}"
        answer = self._request(method, path, action=action, json=json)
        if answer is None and kind is list:
            return []
        if not isinstance(answer, kind):
            raise ClusterRejected(f"{self.cluster}: {action}: the answer is not a JSON {kind.__name__}",
                                  url=f"{self.base_url}{path}")
        return answer

    def bdb_objects(self) -> list[dict[str, Any]]:
        """``GET /v1/bdbs``: every database object as RS answers it (its replication fields included)."""
        return [bdb for bdb in self._shaped("GET", "/v1/bdbs", list) if isinstance(bdb, dict)]

    def bdb(self, uid: int) -> dict[str, Any]:
        result: dict[str, Any] = self._shaped("GET", f"/v1/bdbs/{int(uid)}", dict)
        return result

    def update_bdb(self, uid: int, fields: dict[str, Any]) -> dict[str, Any]:
        """``PUT /v1/bdbs/{uid}`` with only ``fields`` (RS keeps the others)."""
        result: dict[str, Any] = self._shaped("PUT", f"/v1/bdbs/{int(uid)}", dict, json=fields)
        return result

    def crdbs(self) -> list[dict[str, Any]]:
        """``GET /v1/crdbs``; a cluster that answers 404 takes part in none."""
        try:
            return [crdb for crdb in self._shaped("GET", "/v1/crdbs", list) if isinstance(crdb, dict)]
        except ClusterRejected as exc:
            if exc.status == 404:
                return []
            raise

    def update_crdb(self, guid: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/crdbs/{guid}/updates`` (a modify request): the CRDB task it started."""
        result: dict[str, Any] = self._shaped("POST", f"/v1/crdbs/{quote(guid, safe='')}/updates", dict, json=body)
        return result

    def crdb_task(self, task_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._shaped("GET", f"/v1/crdb_tasks/{quote(task_id, safe='')}", dict)
        return result
