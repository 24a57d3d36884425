"""Issuer sections of the inventory: ``type: internal_ca | files | acme``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, field_validator, model_validator

from rotation.config._base import Duration, _secret, _Strict
from rotation.config.files import read_certificates
from rotation.core import certs
from rotation.core.budget import IssuanceBudget
from rotation.core.errors import ConfigError
from rotation.core.model import KeyType
from rotation.core.redaction import redact_url

# Let's Encrypt allows 300 new orders per account per 3 hours (rs-8x-and-public-cas-2026.md): half of it by
# default, so renewals of one fleet never reach the CA's limit, and the account keeps room for manual orders
LETS_ENCRYPT_HOSTS = ("acme-v02.api.letsencrypt.org", "acme-staging-v02.api.letsencrypt.org")
LETS_ENCRYPT_BUDGET = (150, timedelta(hours=3))
SHORT_PROFILES = frozenset({"tlsserver", "shortlived"})  # Let's Encrypt's profiles: at most 25 names
# Let's Encrypt's (rs-8x-and-public-cas-2026.md §1.5): tlsserver is 45 days since 13 May 2026
PROFILE_LIFETIMES = {"shortlived": timedelta(hours=160), "tlsserver": timedelta(days=45)}
SHORT_PROFILE_MAX_NAMES = 25
DEFAULT_MAX_NAMES = 100  # Let's Encrypt's classic limit; most CAs allow at least as many


class BudgetSettings(_Strict):
    """``budget: {orders: N, per: DURATION}``: at most N orders in any window of DURATION, fleet-wide;
    ``budget: off`` turns a default budget off."""

    orders: int = Field(ge=1)
    per: Duration

    @classmethod
    def off(cls) -> BudgetSettings:
        """``budget: off``: no budget counted (built past validation: no order count is valid for it)."""
        return cls.model_construct(orders=0, per=timedelta(0))

    @property
    def is_off(self) -> bool:
        return self.orders == 0


def _budget_or_off(value: Any) -> Any:
    """``budget: off`` (YAML's false) turns a default budget off; ``true`` says nothing: refused."""
    if value is False:
        return BudgetSettings.off()
    if value is True:
        raise ValueError("must be {orders: N, per: DURATION} or off")
    return value


Budget = Annotated[BudgetSettings | None, BeforeValidator(_budget_or_off)]


class InternalCASettings(_Strict):
    type: Literal["internal_ca"]
    ca_cert: Path
    ca_key_file: Path
    ca_key_password_env: str | None = None
    ca_key_password_file: Path | None = None
    validity: Duration = timedelta(days=90)
    key_type: KeyType = KeyType.ECDSA_P256
    ocsp_url: str | None = None  # put in every certificate's AIA: RS can staple the proxy certificate
    budget: Budget = None  # none unless set: an internal CA has no rate limits of its own

    @field_validator("ocsp_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith(("http://", "https://")) or len(value) > 1000):
            raise ValueError("must be the http:// URL of the CA's OCSP responder")
        return value

    def issuance_budget(self, name: str) -> IssuanceBudget | None:
        return _set_budget(name, self.budget, lambda: f"internal_ca {self.ca_cert.resolve()}", str(self.ca_cert))

    def trust_anchor_pems(self) -> list[str]:
        """The last certificate of ``ca_cert``: the root its chains lead to."""
        return [certs.cert_to_pem(read_certificates(self.ca_cert, what="CA certificate")[-1])]

    def factory_kwargs(self, where: str) -> dict[str, Any]:
        source = _secret(self.ca_key_password_env, self.ca_key_password_file)
        return {
            "ca_cert": self.ca_cert,
            "ca_key_file": self.ca_key_file,
            "ca_key_password": source.read(self.where(f"{where}.ca_key_password")).encode() if source else None,
            "validity": self.validity,
            "key_type": self.key_type,
            "ocsp_url": self.ocsp_url,
        }


class FilesSettings(_Strict):
    """Bring your own certificate: files renewed by another PKI process."""

    type: Literal["files"]
    cert_file: Path
    key_file: Path
    key_password_env: str | None = None
    key_password_file: Path | None = None
    ca_bundle: Path | None = None
    key_type: KeyType = KeyType.ECDSA_P256
    budget: Budget = None  # none unless set: reading files orders nothing

    def issuance_budget(self, name: str) -> IssuanceBudget | None:
        return _set_budget(name, self.budget, lambda: f"files {self.cert_file.resolve()}", str(self.cert_file))

    def trust_anchor_pems(self) -> list[str]:
        """``ca_bundle``'s certificates (none without one)."""
        if self.ca_bundle is None:
            return []
        return [certs.cert_to_pem(c) for c in read_certificates(self.ca_bundle, what="CA bundle")]

    def factory_kwargs(self, where: str) -> dict[str, Any]:
        source = _secret(self.key_password_env, self.key_password_file)
        return {
            "cert_file": self.cert_file,
            "key_file": self.key_file,
            "key_password": source.read(self.where(f"{where}.key_password")).encode() if source else None,
            "ca_bundle": self.ca_bundle,
        }


class AcmeDNSSettings(_Strict):
    """DNS-01: where TXT records are published (RFC 2136 + TSIG today; more providers plug in)."""

    provider: str = "rfc2136"
    server: str  # "host", "host:port" or "[v6]:port": receives the dynamic updates
    zone: str | None = None  # default: found by asking ``server`` for the SOA
    tsig_key_name: str | None = None
    tsig_algorithm: str = "hmac-sha256"
    tsig_secret_env: str | None = None
    tsig_secret_file: Path | None = None
    propagation_servers: tuple[str, ...] | None = None  # default: the zone's NS
    propagation_timeout: Duration = timedelta(seconds=120)

    @model_validator(mode="after")
    def _secret_has_a_key_name(self) -> AcmeDNSSettings:
        if (self.tsig_secret_env or self.tsig_secret_file) and not self.tsig_key_name:
            # without the name nothing is signed: the secret would be dropped and updates sent unauthenticated
            raise ValueError("tsig_secret_env/tsig_secret_file needs tsig_key_name (the key's name on the DNS server)")
        return self

    def provider_kwargs(self, where: str) -> dict[str, Any]:
        source = _secret(self.tsig_secret_env, self.tsig_secret_file)
        if self.tsig_key_name and source is None:
            raise ConfigError(f"{where}: tsig_key_name is set but neither tsig_secret_env nor tsig_secret_file")
        return {
            "provider": self.provider,
            "server": self.server,
            "zone": self.zone,
            "tsig_key_name": self.tsig_key_name,
            "tsig_algorithm": self.tsig_algorithm,
            "tsig_secret": source.read(self.where(f"{where}.tsig_secret")) if source else None,
            "propagation_servers": self.propagation_servers,
        }


class AcmeHTTP01Settings(_Strict):
    """HTTP-01: the standalone responder the service runs while an order is open."""

    address: str = "0.0.0.0"
    port: int = Field(default=80, ge=1, le=65535)


class AcmeSettings(_Strict):
    """Any ACME CA: Let's Encrypt, ZeroSSL, Google Trust Services, step-ca, Vault, EJBCA..."""

    type: Literal["acme"]
    directory: str
    email: str | None = None
    eab_kid: str | None = None
    eab_hmac_key_env: str | None = None
    eab_hmac_key_file: Path | None = None
    eab_hmac_alg: Literal["HS256", "HS384", "HS512"] = "HS256"
    key_type: KeyType = KeyType.ECDSA_P256
    challenge: Literal["dns-01", "http-01"] = "dns-01"
    profile: str | None = None
    ca_bundle: Path | None = None  # trust for the directory's own HTTPS (private CAs)
    trust_roots: Path | None = None  # roots issued chains lead to (validation + the REST client)
    dns: AcmeDNSSettings | None = None
    http01: AcmeHTTP01Settings = AcmeHTTP01Settings()
    order_timeout: Duration = timedelta(seconds=180)
    request_timeout: Duration = timedelta(seconds=60)  # total for one request to the CA, answer included
    # What the CA can issue (checked before any order: config/plans.py impossible_plans). Public CAs
    # issue no clientAuth EKU any more (Let's Encrypt: none since 8 July 2026), so the default is false
    # unless the issuer names trust_roots (a private ACME CA); a private CA that still issues it says true.
    client_auth: bool | None = None
    max_names: int | None = Field(default=None, ge=1, le=1000)  # default: 25 for LE's tlsserver/shortlived, else 100
    # orders per window for the whole fleet (core.budget); default: 150 per 3h for Let's Encrypt, else none
    budget: Budget = None

    def issuance_budget(self, name: str) -> IssuanceBudget:
        """The account's budget, keyed as the CA counts (directory + account: ``acme.account.AccountSpec``),
        with the CA's pause also for an issuer whose budget is off."""
        settings = self.budget
        if settings is None and urlsplit(self.directory).hostname in LETS_ENCRYPT_HOSTS:
            settings = BudgetSettings(orders=LETS_ENCRYPT_BUDGET[0], per=LETS_ENCRYPT_BUDGET[1])
        shown = redact_url(self.directory) + (f" account {self.email}" if self.email else "")
        identity = f"acme\n{self.directory}\n{self.email or ''}"
        if settings is not None and not settings.is_off:
            return IssuanceBudget(name, identity, shown, settings.orders, settings.per)
        return IssuanceBudget(name, identity, shown, None, timedelta(0))

    @property
    def issues_client_auth(self) -> bool:
        return self.client_auth if self.client_auth is not None else self.trust_roots is not None

    @property
    def names_limit(self) -> int:
        if self.max_names is not None:
            return self.max_names
        return SHORT_PROFILE_MAX_NAMES if self.profile in SHORT_PROFILES else DEFAULT_MAX_NAMES

    @field_validator("directory")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be the URL of the ACME directory (https://.../directory)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AcmeSettings:
        if self.challenge == "dns-01" and self.dns is None:
            raise ValueError("challenge dns-01 needs a dns: section (provider, server, tsig_key_name...)")
        has_hmac = bool(self.eab_hmac_key_env or self.eab_hmac_key_file)
        if bool(self.eab_kid) != has_hmac:
            raise ValueError("external account binding needs both eab_kid and eab_hmac_key_env/eab_hmac_key_file")
        return self

    def trust_anchor_pems(self) -> list[str]:
        """``trust_roots``' certificates; none for a public CA (its chains lead to the system's roots)."""
        if self.trust_roots is None:
            return []
        return [certs.cert_to_pem(c) for c in read_certificates(self.trust_roots, what="ACME trust roots")]

    def factory_kwargs(self, where: str) -> dict[str, Any]:
        eab = _secret(self.eab_hmac_key_env, self.eab_hmac_key_file)
        return {
            "directory": self.directory,
            "email": self.email,
            "eab_kid": self.eab_kid,
            "eab_hmac_key": eab.read(self.where(f"{where}.eab_hmac_key")) if eab else None,
            "eab_hmac_alg": self.eab_hmac_alg,
            "key_type": self.key_type,
            "challenge": self.challenge,
            "profile": self.profile,
            "ca_bundle": self.ca_bundle,
            "trust_roots": self.trust_roots,
            "dns": self.dns.provider_kwargs(f"{where}.dns") if self.dns else None,
            "propagation_timeout": self.dns.propagation_timeout.total_seconds() if self.dns else 120.0,
            "http01_address": self.http01.address,
            "http01_port": self.http01.port,
            "order_timeout": self.order_timeout,
            "request_timeout": self.request_timeout,
        }


def _set_budget(name: str, settings: BudgetSettings | None, identity: Callable[[], str],
                shown: str) -> IssuanceBudget | None:
    """A budget only where one is set (``identity``: the CA's own files, worked out only then)."""
    if settings is None or settings.is_off:
        return None
    return IssuanceBudget(name, identity(), shown, settings.orders, settings.per)


IssuerSettings = Annotated[InternalCASettings | FilesSettings | AcmeSettings, Field(discriminator="type")]

