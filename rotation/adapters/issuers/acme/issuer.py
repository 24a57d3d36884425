"""An issuer for any ACME CA (RFC 8555): Let's Encrypt, ZeroSSL, Google Trust Services, step-ca...

Per certificate: a fresh key and CSR, one order, DNS-01 (a ``rotation.adapters.dns`` provider; the TXT
records are removed afterwards, also on failure) or HTTP-01 (the standalone responder in
``http01``, running only while the order is open). The account comes from ``acme_account``.

Foreign errors (``acme.errors``, ``acme.messages.Error``, ``requests``, josepy) are translated
here, once, by :func:`translate_error`: the CA's problem document travels in
``IssuerError.problem``; ``rateLimited``/``Retry-After`` become ``retry_after``.
"""

from __future__ import annotations

import base64
import email.utils
import ipaddress
import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import josepy as jose
import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509

from rotation.adapters.clock import SYSTEM_CLOCK
from rotation.adapters.dns.base import DNSProvider
from rotation.adapters.dns.registry import build_dns_provider
from rotation.adapters.issuers.acme import http01
from rotation.adapters.issuers.acme.account import AccountSpec, open_account, signing_alg
from rotation.adapters.issuers.acme.http import AnswerRefused, BoundedAdapter
from rotation.adapters.secrets import LocalSecretStore, SecretBox, SecretStore
from rotation.config import local_state_dir
from rotation.config.files import read_file
from rotation.core import certs
from rotation.core.clock import Clock
from rotation.core.errors import CertificateError, ConfigError, IssuerError, RotationError
from rotation.core.model import CertRequest, IssuedCert, KeyType, RenewalInfo
from rotation.core.redaction import redact_url
from rotation.core.retry import MAX_RETRY_AFTER
from rotation.core.text import shortened

log = logging.getLogger(__name__)

USER_AGENT = "rotation-rs/0.1 (acme)"
RATE_LIMIT_DEFAULT_WAIT = 3600.0  # rateLimited without Retry-After: wait an hour
RETRYABLE_PROBLEMS = frozenset({"rateLimited", "serverInternal", "badNonce"})
REQUIRED_DIRECTORY_URLS = ("newNonce", "newAccount", "newOrder")
# What acme raises when the CA's JSON has another shape than RFC 8555 says (a list for an object, null...)
# (or numbers it cannot hold: a Retry-After of centuries overflows acme's datetime arithmetic)
MISSHAPEN = (KeyError, TypeError, AttributeError, ValueError, RecursionError, OverflowError)


# --- error translation (the one place) -----------------------------------------------------


def retry_after_seconds(header: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header (seconds or HTTP-date) as seconds from ``now``; None if absent or bad."""
    if not header:
        return None
    try:  # at most MAX_RETRY_AFTER: a foreign header may hold any number of digits (now + wait must stay a date)
        return float(min(max(0, int(header.strip())), int(MAX_RETRY_AFTER)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - (now or datetime.now(UTC))).total_seconds()), MAX_RETRY_AFTER)


MAX_SUBPROBLEMS = 20  # of a CA's problem document kept in IssuerError.problem (it goes into the history)


def problem_dict(error: messages.Error) -> dict[str, Any]:
    return _bounded_problem(json.loads(error.json_dumps()))


def _bounded_problem(problem: dict[str, Any]) -> dict[str, Any]:
    """The CA's problem document with its texts cut (``shortened``) and at most ``MAX_SUBPROBLEMS``."""
    bounded = {key: shortened(value) if isinstance(value, str) else value for key, value in problem.items()}
    if isinstance(problem.get("subproblems"), list):
        bounded["subproblems"] = [_bounded_problem(p) if isinstance(p, dict) else p
                                  for p in problem["subproblems"][:MAX_SUBPROBLEMS]]
    return bounded


def compact_problem(problem: Mapping[str, Any]) -> str:
    parts = [shortened(str(problem.get("type", "about:blank")).removeprefix(messages.ERROR_PREFIX))]
    if problem.get("detail"):
        parts.append(shortened(str(problem["detail"])))
    return ": ".join(parts)


def _failed_challenges(exc: errors.ValidationError) -> dict[str, Any]:
    """One problem for all failed authorizations (subproblems when there are several)."""
    found: list[dict[str, Any]] = []
    for authzr in exc.failed_authzrs:
        for challb in authzr.body.challenges:
            if challb.error is not None:
                problem = problem_dict(challb.error)
                problem.setdefault("identifier", json.loads(authzr.body.identifier.json_dumps()))
                found.append(problem)
    if len(found) == 1:
        return found[0]
    first = found[0] if found else {"type": messages.ERROR_PREFIX + "unauthorized"}
    return {"type": first["type"], "detail": "; ".join(compact_problem(p) for p in found) or "challenge failed",
            "subproblems": found}


def translate_error(exc: BaseException, *, context: str, retry_after_header: str | None = None,
                    now: datetime | None = None) -> IssuerError:
    """An IssuerError for anything the acme/requests stack raised; ``context`` names CA and order."""
    problem: dict[str, Any] | None = None
    retryable = rate_limited = False
    retry_after = retry_after_seconds(retry_after_header, now)
    if isinstance(exc, messages.Error):
        problem = problem_dict(exc)
        retryable = exc.code in RETRYABLE_PROBLEMS or retry_after is not None
        rate_limited = exc.code == "rateLimited"
        if rate_limited and retry_after is None:
            retry_after = RATE_LIMIT_DEFAULT_WAIT
        what = "the CA refused the request"
    elif isinstance(exc, errors.ValidationError):
        problem = _failed_challenges(exc)
        what = "challenge validation failed"
    elif isinstance(exc, errors.IssuanceError):
        problem = problem_dict(exc.error)
        retryable = exc.error.code in RETRYABLE_PROBLEMS
        rate_limited = exc.error.code == "rateLimited"  # at finalize
        what = "the CA refused to issue"
    elif isinstance(exc, errors.TimeoutError):
        retryable, what = True, "the order did not complete before order_timeout"
    elif isinstance(exc, errors.ConflictError):
        what = f"conflict at {exc.location}"
    elif isinstance(exc, AnswerRefused):
        what = f"the CA's answer was refused: {_first_line(exc)}"
    elif isinstance(exc, requests.exceptions.SSLError):
        what = f"TLS to the directory failed (set ca_bundle for a private CA): {_first_line(exc)}"
    elif isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        retryable, what = True, f"directory unreachable: {_root_cause(exc)}"
    elif isinstance(exc, errors.ClientError) and (status := _status_of(exc)) is not None:
        # an error page, no problem document: a 4xx (a wrong directory URL) will not pass by itself
        retryable, rate_limited = status >= 500 or status in (408, 429), status == 429
        what = f"the CA answered HTTP {status} without a problem document"
    elif isinstance(exc, errors.ClientError | errors.NonceError | requests.RequestException):
        retryable, what = True, f"unexpected answer from the CA: {_first_line(exc)}"
    elif isinstance(exc, MISSHAPEN):
        what = f"the CA's answer does not follow ACME ({type(exc).__name__}: {_first_line(exc)})"
    else:
        what = f"{type(exc).__name__}: {_first_line(exc)}"
    message = f"{context}: {what}"
    if problem is not None:
        message += f" [{compact_problem(problem)}]"
    if retry_after is not None:
        retryable = True
        message += f" (retry after {retry_after:.0f}s)"
    return IssuerError(message, retryable=retryable, retry_after=retry_after, problem=problem,
                       rate_limited=rate_limited)


def _status_of(exc: errors.ClientError) -> int | None:
    """The HTTP status of the answer acme's ClientError carries (alone, or with the reason it was not read)."""
    first = exc.args[0] if exc.args else None
    if isinstance(first, tuple) and first:
        first = first[0]
    return first.status_code if isinstance(first, requests.Response) else None


def _root_cause(exc: requests.RequestException) -> str:
    """What the socket said (``[Errno 111] Connection refused``, ``timed out``), not urllib3's pool and retry
    wrappers around it; their text when there is nothing under them."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None  # urllib3's MaxRetryError
    said = _first_line(reason) if isinstance(reason, BaseException) else ""
    return said.rpartition("): ")[2].rpartition(": ")[2] or _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


# --- the network, with the last response kept for Retry-After ------------------------------


class _Network(client.ClientNetwork):
    """acme's network, every request bounded in time and size (``acme_http.BoundedAdapter``)."""

    last_response: requests.Response | None = None

    def __init__(self, *args: Any, adapter: BoundedAdapter | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        bounded = adapter or BoundedAdapter()
        self.session.mount("http://", bounded)
        self.session.mount("https://", bounded)

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        self.last_response = None
        response = super()._send_request(method, url, *args, **kwargs)
        self.last_response = response
        return response

    def close(self) -> None:
        self.session.close()


def _naive_local(moment: datetime) -> datetime:
    """acme compares deadlines with naive ``datetime.now()``: local wall time without tzinfo."""
    return moment.astimezone().replace(tzinfo=None)


def _utc(moment: datetime) -> datetime:
    """acme returns naive local times (its own clock) or aware ones (from the server)."""
    return (moment.astimezone() if moment.tzinfo is None else moment).astimezone(UTC)


# --- the issuer ----------------------------------------------------------------------------


class AcmeIssuer:
    def __init__(
        self,
        name: str,
        directory: str,
        email: str | None = None,
        *,
        eab_kid: str | None = None,
        eab_hmac_key: str | None = None,
        eab_hmac_alg: str = "HS256",
        key_type: KeyType | str = KeyType.ECDSA_P256,
        challenge: str = "dns-01",
        profile: str | None = None,
        ca_bundle: Path | str | None = None,
        trust_roots: Path | str | None = None,
        dns: Mapping[str, Any] | None = None,
        dns_provider: DNSProvider | None = None,
        propagation_timeout: float = 120.0,
        http01_address: str = "0.0.0.0",
        http01_port: int = 80,
        order_timeout: timedelta = timedelta(seconds=180),
        request_timeout: timedelta = timedelta(seconds=60),
        secret_store: SecretStore | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if challenge not in ("dns-01", "http-01"):
            raise ConfigError(f"issuers.{name}: challenge must be dns-01 or http-01, not {challenge!r}")
        self.name = name
        self.directory_url = directory
        self.shown_directory = redact_url(directory)  # what messages and records show: no password
        self.account = AccountSpec(directory, email, eab_kid, eab_hmac_key, eab_hmac_alg)
        self.key_type = KeyType(key_type)
        self.challenge = challenge
        self.profile = profile
        self.ca_bundle = Path(ca_bundle) if ca_bundle else None
        self.trust_roots = Path(trust_roots) if trust_roots else None
        if dns_provider is None and dns:
            options = dict(dns)
            dns_provider = build_dns_provider(options.pop("provider", "rfc2136"), name=f"{name}.dns", **options)
        self.dns_provider = dns_provider
        self.propagation_timeout = propagation_timeout
        self.http01_address = http01_address
        self.http01_port = http01_port
        self.order_timeout = order_timeout
        self.request_timeout = request_timeout
        self._secret_store = secret_store
        self.clock = clock

    def __repr__(self) -> str:  # the EAB key stays out
        return f"AcmeIssuer(name={self.name!r}, directory={self.shown_directory!r}, challenge={self.challenge!r})"

    @property
    def secret_store(self) -> SecretStore:
        if self._secret_store is None:
            state = local_state_dir()
            self._secret_store = LocalSecretStore(state, SecretBox.configured(state_dir=state))
        return self._secret_store

    # --- Issuer protocol -------------------------------------------------------------------

    def check(self) -> None:
        """The directory answers, the files load and the challenge can be answered."""
        if self.challenge == "dns-01" and self.dns_provider is None:
            raise ConfigError(f"issuers.{self.name}: challenge dns-01 needs a dns provider")
        self.trust_anchors()
        with self._network(None) as net:
            directory = self._directory(net)
        if directory.meta.external_account_required and not self.account.eab_kid:
            raise ConfigError(f"issuers.{self.name}: {self.shown_directory} requires external account binding "
                              "(set eab_kid and eab_hmac_key_env)")

    @property
    def public_roots(self) -> bool:
        """Without ``trust_roots`` the CA is a public one: its chains lead to the system's roots."""
        return self.trust_roots is None

    def trust_anchors(self) -> list[str]:
        if self.trust_roots is None:
            return []
        data = read_file(self.trust_roots, what="ACME trust roots")
        try:
            return [certs.cert_to_pem(c) for c in certs.load_certificates(data, where=str(self.trust_roots))]
        except CertificateError as exc:
            raise ConfigError(exc.message) from exc

    def issue(self, request: CertRequest) -> IssuedCert:
        self._check_request(request)
        key = certs.generate_private_key(request.key_type or self.key_type)
        key_pem = certs.private_key_to_pem(key)
        csr = _csr(key_pem.reveal(), request.hosts)
        context = f"ACME {self.shown_directory}: order for {', '.join(request.hosts)}"
        asked = False  # for the order (newOrder sent): before it, the budget's order is given back
        with self._network(None) as net:
            try:
                acme = open_account(self.account, self._directory(net), self.secret_store,
                                    lambda k, regr: self._adopt(net, k, regr))
                asked = True
                orderr = self._new_order(acme, csr, request.replaces, context)
                log.info("%s: order %s opened (%d authorization(s))", context, orderr.uri,
                         len(orderr.authorizations))
                finalized = self._complete(acme, orderr)
            except RotationError as exc:
                if isinstance(exc, IssuerError) and not asked:
                    exc.ordered = False
                raise
            except (errors.Error, requests.RequestException, jose.errors.Error, *MISSHAPEN) as exc:
                header = net.last_response.headers.get("Retry-After") if net.last_response is not None else None
                failure = translate_error(exc, context=context, retry_after_header=header, now=self.clock.now())
                failure.ordered = asked
                raise failure from exc
        leaf_pem, chain_pem = certs.split_leaf_and_chain(finalized.fullchain_pem, where=context)
        log.info("%s: certificate issued", context)
        return IssuedCert(key_pem=key_pem, leaf_pem=leaf_pem, chain_pem=_without_roots(chain_pem, context))

    # --- ARI (RFC 9773) --------------------------------------------------------------------

    def renewal_info(self, leaf_pem: str) -> RenewalInfo | None:
        """When the CA suggests renewing (UTC; None when it offers no renewal information), and when it
        wants to be asked again (its Retry-After, or acme's default of 6 h)."""
        with self._network(None) as net:
            try:
                acme = client.ClientV2(self._directory(net), net)
                renew_at, next_check = acme.renewal_time(leaf_pem.encode())
            except errors.ARIError as exc:
                wait = max(0.0, (_utc(exc.retry_after) - self.clock.now()).total_seconds())
                raise IssuerError(f"ACME {self.shown_directory}: renewal information unavailable "
                                  f"({_first_line(exc.__cause__ or exc)})", retryable=True,
                                  retry_after=wait) from exc
            except (errors.Error, requests.RequestException, jose.errors.Error, *MISSHAPEN) as exc:
                raise translate_error(exc, context=f"ACME {self.shown_directory}: renewal information") from exc
        if renew_at is not None and _malformed_window(net.last_response):
            renew_at = None  # RFC 9773 4.2: the client makes its own determination (renew_before)
        # acme counts from its own (real) clock, not ours: a duration, not a moment
        return RenewalInfo(_utc(renew_at) if renew_at is not None else None,
                           _utc(next_check) - datetime.now(UTC))

    # --- the order -------------------------------------------------------------------------

    def _check_request(self, request: CertRequest) -> None:
        if not request.hosts:
            raise IssuerError(f"{request.cluster}/{request.cert_name}: the request names no hosts")
        wildcards = [h for h in request.hosts if h.startswith("*.")]
        if wildcards and self.challenge != "dns-01":
            raise IssuerError(f"issuers.{self.name}: {', '.join(wildcards)} needs challenge dns-01 "
                              f"(ACME validates wildcards only by DNS); {self.challenge} is configured")

    def _new_order(self, acme: client.ClientV2, csr: bytes, replaces: str | None, context: str
                   ) -> messages.OrderResource:
        """newOrder; naming the certificate it replaces (RFC 9773 §5) where the CA speaks ARI: Let's Encrypt
        exempts such a renewal from rate limits within the suggested window (rs-8x-and-public-cas-2026.md §2).
        A CA that refuses the name (already replaced, not its certificate) gets the order without it."""
        cert_id = _ari_cert_id(replaces) if replaces and _speaks_ari(acme.directory) else None
        if cert_id is None:
            return acme.new_order(csr, profile=self.profile)
        try:
            return _new_order_replacing(acme, csr, self.profile, cert_id)
        except (messages.Error, errors.ConflictError) as exc:  # acme turns any 409 into ConflictError
            if isinstance(exc, messages.Error) and exc.code in RETRYABLE_PROBLEMS:
                raise
            said = compact_problem(problem_dict(exc)) if isinstance(exc, messages.Error) else "HTTP 409"
            log.warning("%s: the CA refused to replace %s (%s); ordering without it", context, cert_id, said)
            return acme.new_order(csr, profile=self.profile)

    def _complete(self, acme: client.ClientV2, orderr: messages.OrderResource) -> messages.OrderResource:
        deadline = _naive_local(self.clock.now() + self.order_timeout)
        pending = [a for a in orderr.authorizations if a.body.status == messages.STATUS_PENDING]
        with ExitStack() as cleanup:
            answers = [self._prepare(acme, authz, cleanup) for authz in pending]
            if self.challenge == "dns-01":
                assert self.dns_provider is not None
                for _, _, (record, value) in answers:
                    self.dns_provider.wait_visible(record, value, self.propagation_timeout)
            for challb, response, _ in answers:
                acme.answer_challenge(challb, response)
            return acme.poll_and_finalize(orderr, deadline=deadline)
        raise AssertionError("unreachable")  # pragma: no cover - ExitStack does not swallow

    def _prepare(self, acme: client.ClientV2, authz: messages.AuthorizationResource,
                 cleanup: ExitStack) -> tuple[messages.ChallengeBody, challenges.ChallengeResponse, tuple[str, str]]:
        """Publish the validation for one authorization; register its removal on ``cleanup``."""
        domain = authz.body.identifier.value
        wanted = challenges.DNS01 if self.challenge == "dns-01" else challenges.HTTP01
        challb = next((c for c in authz.body.challenges if isinstance(c.chall, wanted)), None)
        if challb is None:
            offered = ", ".join(c.chall.typ for c in authz.body.challenges)
            raise IssuerError(f"ACME {self.shown_directory}: {domain} offers no {self.challenge} (offers {offered})")
        response, validation = challb.response_and_validation(acme.net.key)
        if isinstance(challb.chall, challenges.DNS01):
            assert self.dns_provider is not None
            record = challb.chall.validation_domain_name(domain)
            cleanup.callback(self._remove_txt, record, validation)
            self.dns_provider.present(record, validation)
            return challb, response, (record, validation)
        responder = cleanup.enter_context(http01.serving(self.http01_address, self.http01_port))
        token = challb.chall.encode("token")
        responder.add(token, validation)
        cleanup.callback(responder.remove, token)
        return challb, response, (challb.chall.uri(domain), token)

    def _remove_txt(self, record: str, value: str) -> None:
        assert self.dns_provider is not None
        try:
            self.dns_provider.cleanup(record, value)
        except RotationError as exc:  # never hide the order's own outcome
            log.warning("DNS cleanup of %s failed: %s", record, exc.message)

    # --- plumbing --------------------------------------------------------------------------

    @contextmanager
    def _network(self, key: jose.JWK | None) -> Iterator[_Network]:
        verify: bool | str = str(self.ca_bundle) if self.ca_bundle else True
        net = _Network(key, alg=signing_alg(key) if key else jose.ES256, verify_ssl=verify,  # type: ignore[arg-type]
                       user_agent=USER_AGENT, adapter=BoundedAdapter(deadline=self.request_timeout.total_seconds()))
        try:
            yield net
        finally:
            net.close()

    @staticmethod
    def _adopt(net: _Network, key: jose.JWK, regr: messages.RegistrationResource | None) -> _Network:
        """The one network of this order, switched to ``key`` (accounts may change key when re-registered)."""
        net.key, net.alg, net.account = key, signing_alg(key), regr
        return net

    def _directory(self, net: _Network) -> messages.Directory:
        try:
            directory = client.ClientV2.get_directory(self.directory_url, net)
        except (errors.Error, requests.RequestException, jose.errors.Error, ValueError) as exc:
            raise translate_error(exc, context=f"ACME {self.shown_directory}") from exc
        except (TypeError, AttributeError, RecursionError):  # JSON, but no object: an array, a string, too deep
            directory = None
        # the three URLs every order needs: acme would fail on the first use of a missing one (KeyError)
        fields = directory.to_partial_json() if directory is not None else {}
        missing = [name for name in REQUIRED_DIRECTORY_URLS if not isinstance(fields.get(name), str)]
        if directory is None or missing:
            raise IssuerError(f"ACME {self.shown_directory}: the answer is not an ACME directory "
                              f"(no {', '.join(missing)} URL)")
        return directory


def _speaks_ari(directory: messages.Directory) -> bool:
    try:
        return bool(directory["renewalInfo"])
    except KeyError:
        return False


class _NewOrderReplacing(messages.NewOrder):
    """newOrder with RFC 9773's ``replaces`` (acme 5.9's ``new_order`` cannot send it)."""

    replaces: str = jose.field("replaces", omitempty=True)


def _malformed_window(response: requests.Response | None) -> bool:
    """Whether the renewalInfo answer acme drew its moment from has a window whose end is not after its start
    (acme draws one between the two ends anyway)."""
    try:
        window = messages.RenewalInfo.from_json(response.json()).suggested_window  # type: ignore[union-attr]
        return bool(window.end <= window.start)
    except (jose.errors.Error, *MISSHAPEN):  # not a renewalInfo answer (an expired certificate: none was asked)
        return False


def _ari_cert_id(leaf_pem: str) -> str | None:
    """RFC 9773 §4.1 CertID of the first certificate of ``leaf_pem``: base64url(AKI keyIdentifier) "."
    base64url(DER serial); None when it cannot be named (no AKI, not a certificate)."""
    try:
        leaf = x509.load_pem_x509_certificate(leaf_pem.encode())
        aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except (ValueError, x509.ExtensionNotFound):
        return None
    if not aki:
        return None
    serial = leaf.serial_number.to_bytes((leaf.serial_number.bit_length() + 8) // 8, "big", signed=True)
    return ".".join(base64.urlsafe_b64encode(part).decode().rstrip("=") for part in (aki, serial))


def _new_order_replacing(acme: client.ClientV2, csr_pem: bytes, profile: str | None,
                         cert_id: str) -> messages.OrderResource:
    """``ClientV2.new_order`` (acme 5.9) with ``replaces`` in the request."""
    csr = x509.load_pem_x509_csr(csr_pem)
    dns_names, ip_addrs = crypto_util.get_identifiers_from_x509(csr.subject, csr.extensions)
    identifiers = [messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=name) for name in dns_names]
    identifiers += [messages.Identifier(typ=messages.IDENTIFIER_IP, value=str(ip)) for ip in ip_addrs]
    order = _NewOrderReplacing(identifiers=identifiers, profile=profile or "", replaces=cert_id)
    response = acme._post(acme.directory["newOrder"], order)
    body = messages.Order.from_json(response.json())
    authorizations = [acme._authzr_from_response(acme._post_as_get(url), uri=url) for url in body.authorizations]
    return messages.OrderResource(body=body, uri=response.headers.get("Location"), authorizations=authorizations,
                                  csr_pem=csr_pem)


def _csr(key_pem: str, hosts: tuple[str, ...]) -> bytes:
    names, ips = [], []
    for host in hosts:
        try:
            ips.append(ipaddress.ip_address(host))
        except ValueError:
            names.append(host)
    return crypto_util.make_csr(key_pem.encode(), domains=names or None, ipaddrs=ips or None)


def _without_roots(chain_pem: str, where: str) -> str:
    """Some CAs append the root; RS (and TLS) want leaf + intermediates only."""
    if not chain_pem.strip():
        return ""
    return certs.certs_to_pem(c for c in certs.load_certificates(chain_pem, where=where)
                              if not certs.is_self_signed(c))


__all__ = ["AcmeIssuer", "compact_problem", "retry_after_seconds", "translate_error"]
