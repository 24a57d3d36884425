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

import json
import logging
import ssl
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from rotation.adapters import bounded_http
from rotation.adapters.rs.tls_context import build_ssl_context
from rotation.core import retry
from rotation.core.errors import (
    ClusterAPIError,
    ClusterAuthError,
    ClusterRejected,
    ClusterUnavailable,
)
from rotation.core.model import ClientCertificate, SecretPEM
from rotation.core.redaction import redact_url
from rotation.core.text import clean, shortened
from rotation.core.topology import DatabaseInfo, NodeInfo
from rotation.core.versions import parse_version

log = logging.getLogger(__name__)

_FINAL_STATUSES = {400, 403, 404, 406}
_PARSED_URLS = 64  # paths whose parsed URL a client keeps


@dataclass(frozen=True)
class CertificatePair:
    certificate: str
    key: SecretPEM | None




def _error_fields(response: httpx.Response) -> tuple[str | None, str | None]:
    try:
        body = response.json()
    except ValueError:
        return None, (response.text[:200] or None)
    except RecursionError:  # JSON nested deeper than the decoder goes: no fields to show
        return None, None
    if not isinstance(body, dict):
        return None, None
    return _text(body.get("error_code")), _text(body.get("description") or body.get("message"))


def _text(value: Any) -> str | None:
    """A field of RS's error answer as bounded text (a number, an object or a megabyte string included)."""
    if value is None or value == "":
        return None
    return shortened(value if isinstance(value, str) else json.dumps(value))


def _redirect_target(response: httpx.Response) -> str:
    """Where a 3xx points, absolute and with any credentials redacted (the header is foreign text)."""
    location = response.headers.get("Location", "")[:500]
    if not location:
        return "no Location header"
    try:
        return redact_url(str(response.request.url.join(location)))
    except (httpx.InvalidURL, ValueError):
        return "an unparsable Location"


def _refused_login(response: httpx.Response, cluster: str, action: str, login: str, description: str | None) -> str:
    """Why a 401 came, in words an operator can act on: RS's own description is shown as text, and
    a cluster that asks for a Bearer token has Basic turned off (RS 8.2 ``control_plane_basic_authentication``)."""
    said = f": {description[:300]}" if description else ""
    message = f"{cluster}: {action}: the cluster refused {login} (HTTP 401){said}"
    if response.headers.get("WWW-Authenticate", "").lower().startswith("bearer") and "certificate" not in login:
        message += ("; Basic authentication is turned off on this cluster (control_plane_basic_authentication "
                    f"is false): log in with a client certificate (clusters.{cluster}.client_cert_file and "
                    "client_key_file)")
    return message


def _retry_after(header: str) -> float | None:
    """RS's Retry-After (delay-seconds), at most ``MAX_RETRY_AFTER``: a foreign header may hold any digits,
    ASCII or not, as many as fit (later ``now + wait`` must still be a date)."""
    text = header.strip()
    if not (text.isascii() and text.isdigit()):
        return None
    return float(min(int(text[:20]), int(retry.MAX_RETRY_AFTER))) if len(text) <= 20 else retry.MAX_RETRY_AFTER


def _without_userinfo(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL at all: the first request says so (see _request)
        return url
    if "@" not in parts.netloc:
        return url
    log.warning("the REST API URL %s holds credentials: they are not used (set username and password_env)",
                redact_url(url))
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _raise_for_status(response: httpx.Response, *, cluster: str, action: str,
                      login: str = "the username or password") -> None:
    """Map an RS answer to an error a caller can act on. Only 2xx is success. ``login`` says what the
    request presented (the username and password, the client certificate ...), for a 401."""
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
        raise ClusterAuthError(_refused_login(response, cluster, action, login, description), **kwargs)
    if status in _FINAL_STATUSES:
        raise ClusterRejected(message, **kwargs)
    if status == 409 or status >= 500:
        raise ClusterUnavailable(message, retry_after=_retry_after(response.headers.get("Retry-After", "")), **kwargs)
    raise ClusterRejected(message, **kwargs)


def verification_hint(url: str, reason: str, server_name: str | None, trust_problem: str | None) -> str:
    """What to change when the REST API's certificate does not verify, from the actual cause: a name
    mismatch on an address URL (``tls_server_name``), trust anchors of the ``api`` issuer that could
    not be read (that issuer's error), else the ``verify`` bundle."""
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host)
        is_address = True
    except ValueError:
        is_address = False
    if "mismatch" in reason and is_address and not server_name:
        return (f"`url` names an address ({host}): set `tls_server_name:` to the name the API certificate "
                "holds (the cluster's FQDN)")
    if "mismatch" in reason:
        return "the API certificate does not hold the name dialled: fix `url` or `tls_server_name:`"
    if trust_problem:
        return f"the trust anchors of the issuer of the cluster's `api` certificate could not be read: {trust_problem}"
    return "set `verify:` to the CA bundle of the REST API"


def _translate_transport_error(exc: httpx.TransportError, *, cluster: str, action: str, url: str,
                               client_cert: bool = False, server_name: str | None = None,
                               trust_problem: str | None = None) -> ClusterAPIError:
    if isinstance(exc, httpx.TimeoutException):
        return ClusterUnavailable(f"{cluster}: {action}: timed out talking to {url}", url=url)
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        reason = str(cause or exc)
        return ClusterRejected(
            f"{cluster}: {action}: TLS verification of {url} failed ({reason}); "
            + verification_hint(url, reason, server_name, trust_problem),
            url=url,
        )
    # With certificate login on, a node drops a client certificate outside its mtls_trusted_ca in the
    # handshake itself: the client sees a closed connection, not a 401.
    hint = ("; if certificate login is on there, the node may have refused our client certificate "
            "(is its CA in the cluster's mtls_trusted_ca?)") if client_cert else ""
    return ClusterUnavailable(f"{cluster}: {action}: cannot reach {url} ({exc.__class__.__name__}: {exc}){hint}",
                              url=url)


@contextmanager
def documented_shape(cluster: str, action: str, url: str) -> Iterator[None]:
    """Around the parsing of an RS answer: one of another shape than the docs describe (another service
    on the port, a proxy's page: an object for an array, a uid that is no number) is a ClusterRejected."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ClusterRejected(f"{cluster}: {action}: the answer is not what RS documents "
                              f"({type(exc).__name__}: {str(exc)[:100]})", url=url) from None


def _optional_text(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{type(value).__name__} where RS answers a string")
    return value


def database_infos(raw: Sequence[Any]) -> list[DatabaseInfo]:
    """Every endpoint of every database of a ``GET /v1/bdbs`` answer (one read serves the view and the links)."""
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


class RSClient:
    """One cluster's REST API. Use as a context manager; thread-unsafe like httpx.Client."""

    def __init__(
        self,
        base_url: str,
        username: str | None,
        password: str | None,
        *,
        client_cert: ClientCertificate | None = None,  # certificate login: presented in every handshake
        cluster: str = "cluster",
        verify: bool | Sequence[Path] = True,
        server_name: str | None = None,
        timeout: float = 60.0,
        extra_trust: Iterable[str] = (),
        trust_problem: str | None = None,  # why the api issuer's anchors are missing from extra_trust
        transport: httpx.BaseTransport | None = None,  # tests drive foreign errors through the mapper
        max_response_bytes: int = bounded_http.MAX_RESPONSE_BYTES,
    ) -> None:
        if verify is False:
            log.warning("TLS verification of the REST API of %s is OFF (verify: false)", cluster)
        self.cluster = cluster
        # The URL goes into every error: credentials written into it (https://user:pw@host) would go along.
        # They are never sent (Basic comes from username/password), so they are dropped here.
        self.base_url = _without_userinfo(base_url.rstrip("/"))
        self._auth = httpx.BasicAuth(username, password) if username is not None and password is not None else None
        self._client_cert = client_cert
        self._verify = verify
        self._trusted: list[str] = list(extra_trust)
        self._server_name = server_name
        self._trust_problem = trust_problem
        self._timeout = timeout
        self._transport = transport
        self._max_response_bytes = max_response_bytes
        self._urls: dict[str, httpx.URL] = {}  # path -> parsed URL: a scan reads the same few paths every time
        self._http = self._new_http()

    # --- plumbing ------------------------------------------------------------------------
    @property
    def login(self) -> str:
        """What this client presents, for messages: the certificate's subject, never a secret."""
        parts = []
        if self._client_cert is not None:
            parts.append("the client certificate")
        if self._auth is not None:
            parts.append("the username or password")
        return " and ".join(parts) or "an anonymous request"

    def use_client_certificate(self, client_cert: ClientCertificate | None) -> None:
        """Present this certificate from now on (the tool renewed its own): new connections only."""
        self._client_cert = client_cert
        self.reconnect()

    def _new_http(self) -> httpx.Client:
        context = build_ssl_context(self._verify, self._trusted, self._client_cert)
        self._sender = self._transport or bounded_http.transport(context)
        try:
            http = httpx.Client(
                base_url=self.base_url,
                auth=self._auth,
                verify=context,
                timeout=httpx.Timeout(self._timeout, connect=min(self._timeout, 10.0)),
                headers={"Accept": "application/json", **bounded_http.IDENTITY},
                transport=self._sender,
                trust_env=False,  # no proxy from the environment: every call goes through the bounded transport
            )
        except httpx.InvalidURL as exc:
            raise self._not_a_url(self.base_url, exc) from None
        # What every request carries, built once (the client's headers and its Basic login): requests
        # go straight to the transport (see _request), not through httpx.Client's per-call merging.
        self._headers = bounded_http.prepared_headers(http, self._auth)
        self._extensions: dict[str, Any] = {"timeout": http.timeout.as_dict(),
                                            **({"sni_hostname": self._server_name} if self._server_name else {})}
        return http

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
        try:
            if self._http.is_closed:
                raise RuntimeError("Cannot send a request, as the client has been closed.")
            with bounded_http.deadline(self._timeout):
                request = httpx.Request(method, self._url(path), headers=self._headers, json=json,
                                        extensions=self._extensions)
                response = bounded_http.send_capped(self._sender, request, self._max_response_bytes)
        except httpx.TransportError as exc:
            raise _translate_transport_error(exc, cluster=self.cluster, action=action, url=self.base_url + path,
                                             client_cert=self._client_cert is not None,
                                             server_name=self._server_name, trust_problem=self._trust_problem) from exc
        except (bounded_http.ResponseTooLarge, bounded_http.ResponseRefused) as exc:
            url = self.base_url + path
            raise ClusterAPIError(f"{self.cluster}: {action}: refused the answer of {url}: {exc}", url=url) from None
        except httpx.InvalidURL as exc:
            raise self._not_a_url(self.base_url + path, exc, action) from None
        _raise_for_status(response, cluster=self.cluster, action=action, login=self.login)
        if not response.content.strip():
            return None  # RS answers some writes with an empty body
        try:
            return response.json()
        except ValueError:  # a 2xx page of something else (a load balancer's): not an empty answer
            kind = clean(response.headers.get("Content-Type", "no Content-Type"))[:60]
            raise ClusterRejected(f"{self.cluster}: {action}: the answer is not what RS documents (not JSON: "
                                  f"{kind})", url=self.base_url + path) from None
        except RecursionError:
            raise ClusterRejected(f"{self.cluster}: {action}: the answer is not what RS documents (JSON nested "
                                  "deeper than any RS answer)", url=self.base_url + path) from None

    def _not_a_url(self, url: str, exc: Exception, action: str = "") -> ClusterRejected:
        """A URL httpx cannot dial: a node address from RS that is no host (a port in it, a control character)."""
        where = f"{self.cluster}: {action}: " if action else f"{self.cluster}: "
        return ClusterRejected(f"{where}{clean(url)[:300]!r} is not a URL that can be dialled ({clean(exc)[:200]})",
                               url=url)

    def _url(self, path: str) -> httpx.URL:
        """The URL of ``path``, parsed once per client (httpx parses a string URL on every request)."""
        url = self._urls.get(path)
        if url is None:
            url = httpx.URL(f"{self.base_url}{path}")
            if len(self._urls) < _PARSED_URLS:  # bounded: task and database ids make new paths
                self._urls[path] = url
        return url

    # --- reads ---------------------------------------------------------------------------
    def cluster_info(self) -> dict[str, Any]:
        info = self._request("GET", "/v1/cluster", action="GET /v1/cluster")
        if not isinstance(info, dict):
            raise ClusterRejected(f"{self.cluster}: GET /v1/cluster: the answer is not a JSON object",
                                  url=f"{self.base_url}/v1/cluster")
        return info

    def nodes(self) -> list[NodeInfo]:
        raw = self._request("GET", "/v1/nodes", action="GET /v1/nodes") or []
        with documented_shape(self.cluster, "GET /v1/nodes", f"{self.base_url}/v1/nodes"):
            return [
                NodeInfo(
                    uid=int(node["uid"]),
                    addr=node.get("addr", ""),
                    external_addr=tuple(node.get("external_addr") or ()),
                    status=node.get("status", "active"),
                    software_version=_optional_text(node.get("software_version")),
                )
                for node in raw
            ]

    def databases(self) -> list[DatabaseInfo]:
        raw = self._request("GET", "/v1/bdbs", action="GET /v1/bdbs") or []
        with documented_shape(self.cluster, "GET /v1/bdbs", f"{self.base_url}/v1/bdbs"):
            return database_infos(raw)

    def certificates(self) -> dict[str, CertificatePair]:
        """``GET /v1/cluster/certificates``: the cluster-level PEMs, keys wrapped as secrets."""
        path = "/v1/cluster/certificates"
        raw = self._request("GET", path, action=f"GET {path}") or {}
        pairs: dict[str, CertificatePair] = {}
        with documented_shape(self.cluster, f"GET {path}", self.base_url + path):
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
    def update_certificate(self, name: str, certificate: str, key: SecretPEM | None, *, bulk: bool) -> str:
        """Replace one certificate on every node; returns the endpoint used. ``key`` None: a name that
        holds a certificate only (``mtls_trusted_ca``)."""
        item = {"name": name, "certificate": certificate, **({"key": key.reveal()} if key is not None else {})}
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

    # --- per-database certificates (RS 8.0.2+) ---------------------------------------------
    def database_certificates(self, expires_before: datetime | None = None, page_size: int = 1000
                              ) -> list[dict[str, Any]]:
        """``GET /v1/bdbs/certificates``: every database that has a certificate of its own (all pages);
        ``expires_before`` keeps those expiring sooner: the fleet view."""
        found: list[dict[str, Any]] = []
        before = f"&expires_before={expires_before.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}" if expires_before else ""
        for page in range(1, 1000):  # the envelope is not documented: a bare list is taken as the only page
            query = f"page={page}&page_size={page_size}{before}"
            body = self._request("GET", f"/v1/bdbs/certificates?{query}", action="GET /v1/bdbs/certificates") or {}
            listed = body.get("certificates") if isinstance(body, dict) else body
            items = [item for item in listed or () if isinstance(item, dict)]
            found += items
            total = body.get("total") if isinstance(body, dict) else None
            if len(items) < page_size or not isinstance(total, int) or len(found) >= total:
                break
        return found

    def database_certificate(self, uid: int) -> str | None:
        """The certificate database ``uid`` has of its own (PEM), or None: it presents the cluster's ``proxy``
        (404; the database itself is known to exist from ``GET /v1/bdbs``, and RS's error code is not public)."""
        path = f"/v1/bdbs/{uid}/certificates"
        try:
            body = self._request("GET", path, action=f"GET {path}")
        except ClusterRejected as exc:
            if exc.status == 404:
                return None
            raise
        cert = body.get("cert") if isinstance(body, dict) else None
        if not isinstance(cert, str):
            raise ClusterRejected(f"{self.cluster}: GET {path}: the answer has no certificate",
                                  url=self.base_url + path)
        return cert

    def set_database_certificate(self, uid: int, certificate: str, key: SecretPEM, *, dry_run: bool = False) -> str:
        """``POST /v1/bdbs/{uid}/certificates`` (``?dry_run``: RS validates, nothing changes); returns the call."""
        path = f"/v1/bdbs/{uid}/certificates" + ("?dry_run=true" if dry_run else "")
        self._request("POST", path, action=f"POST {path}", json={"cert": certificate, "private_key": key.reveal()})
        return f"POST {path}"

    def delete_database_certificate(self, uid: int) -> str:
        """``DELETE /v1/bdbs/{uid}/certificates``: the database presents the cluster's ``proxy`` again."""
        path = f"/v1/bdbs/{uid}/certificates"
        self._request("DELETE", path, action=f"DELETE {path}")
        return f"DELETE {path}"

    # --- OCSP stapling of the proxy certificate (RS 6.2.12+) ----------------------------------
    def health_certificates(self) -> list[dict[str, Any]] | None:
        """``GET /v4/cluster/health``'s ``certificates`` (RS 8.0.16+); None when the cluster answers 404."""
        try:
            report = self._shaped("GET", "/v4/cluster/health", dict)
        except ClusterRejected as exc:
            if exc.status == 404:
                return None
            raise
        listed = report.get("certificates")
        return [c for c in listed if isinstance(c, dict)] if isinstance(listed, list) else []

    def ocsp_config(self) -> dict[str, Any]:
        """``GET /v1/ocsp`` (406 ``ocsp_unsupported_by_capability`` when a node lacks it)."""
        result: dict[str, Any] = self._shaped("GET", "/v1/ocsp", dict)
        return result

    def update_ocsp(self, fields: dict[str, Any]) -> dict[str, Any]:
        """``PUT /v1/ocsp`` with only ``fields``."""
        result: dict[str, Any] = self._shaped("PUT", "/v1/ocsp", dict, json=fields)
        return result

    def ocsp_status(self) -> dict[str, Any]:
        """``GET /v1/ocsp/status``: the cached answer about the proxy certificate."""
        result: dict[str, Any] = self._shaped("GET", "/v1/ocsp/status", dict)
        return result

    def test_ocsp(self) -> dict[str, Any]:
        """``POST /v1/ocsp/test``: RS asks the responder now (and caches the answer when stapling is on)."""
        result: dict[str, Any] = self._shaped("POST", "/v1/ocsp/test", dict, json={})
        return result
