"""ACME accounts: one per (directory, email), created once, kept encrypted, reused.

The account key (JWK, private) and the registration resource are stored as one JSON blob
through a ``SecretStore`` (ciphertext at rest). On every use the registration is queried: a
deactivated or unknown account is registered again with a fresh key, saying so in the log.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

import josepy as jose
from acme import client, errors, messages
from cryptography.hazmat.primitives.asymmetric import ec

from rotation.adapters.secrets import SecretStore
from rotation.core.errors import ConfigError
from rotation.core.redaction import redact_url

log = logging.getLogger(__name__)

STORE_PREFIX = "acme-account:"
# Problem codes meaning "this account is gone": register again.
GONE = frozenset({"accountDoesNotExist", "unauthorized"})

NetworkFactory = Callable[[jose.JWK, messages.RegistrationResource | None], client.ClientNetwork]


@dataclass(frozen=True)
class AccountSpec:
    directory_url: str
    email: str | None = None
    eab_kid: str | None = None
    eab_hmac_key: str | None = None
    eab_hmac_alg: str = "HS256"

    def __repr__(self) -> str:  # the HMAC key stays out
        return f"AccountSpec({self.shown_directory!r}, email={self.email!r}, eab_kid={self.eab_kid!r})"

    @property
    def shown_directory(self) -> str:
        """The directory URL as messages show it (a password in it hidden)."""
        return redact_url(self.directory_url)

    @property
    def store_key(self) -> str:
        digest = hashlib.sha256(f"{self.directory_url}\n{self.email or ''}".encode()).hexdigest()[:32]
        return STORE_PREFIX + digest


def new_account_key() -> jose.JWKEC:
    return jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))


def signing_alg(key: jose.JWK) -> jose.JWASignature:
    return jose.ES256 if isinstance(key, jose.JWKEC) else jose.RS256


def open_account(
    spec: AccountSpec,
    directory: messages.Directory,
    store: SecretStore,
    make_network: NetworkFactory,
) -> client.ClientV2:
    """A ClientV2 logged in as the account for ``spec``: the stored one, or a new registration."""
    stored = store.get(spec.store_key)
    if stored is not None:
        try:
            data = json.loads(stored)
            key = jose.JWK.json_loads(data["key"])
            regr = messages.RegistrationResource.json_loads(data["regr"])
        except (ValueError, KeyError, jose.DeserializationError):
            raise ConfigError(f"ACME account for {spec.shown_directory}: stored data is corrupt; "
                              f"delete secret {spec.store_key!r} to register again") from None
        acme = client.ClientV2(directory, make_network(key, regr))
        reason = _still_valid(acme, regr)
        if reason is None:
            log.info("ACME account %s reused (%s)", regr.uri, spec.shown_directory)  # the network logs in as regr
            return acme
        log.warning("ACME account %s is %s at %s: registering a new account", regr.uri, reason, spec.shown_directory)
    return _register(spec, directory, store, make_network)


def _still_valid(acme: client.ClientV2, regr: messages.RegistrationResource) -> str | None:
    """None when the account can be used, otherwise why not."""
    try:
        current = acme.query_registration(regr)
    except messages.Error as exc:
        if exc.code in GONE:
            return f"refused ({exc.code}: {exc.detail or exc.title})"
        raise
    except KeyError:  # no Location header: the server does not know the key
        return "unknown"
    status = current.body.status  # a plain string in Registration (not a messages.Status)
    if status is not None and str(status) != "valid":
        return str(status)
    return None


def _register(
    spec: AccountSpec, directory: messages.Directory, store: SecretStore, make_network: NetworkFactory
) -> client.ClientV2:
    key = new_account_key()
    acme = client.ClientV2(directory, make_network(key, None))
    eab = None
    if spec.eab_kid and spec.eab_hmac_key:
        try:
            eab = messages.ExternalAccountBinding.from_data(
                account_public_key=key.public_key(), kid=spec.eab_kid, hmac_key=spec.eab_hmac_key,
                directory=directory, hmac_alg=spec.eab_hmac_alg)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"ACME {spec.shown_directory}: eab_hmac_key is not a base64url key ({exc})") from None
    registration = messages.NewRegistration.from_data(
        email=spec.email, terms_of_service_agreed=True, external_account_binding=eab)
    try:
        regr = acme.new_account(registration)
    except errors.ConflictError as exc:  # the key is already registered (cannot happen with a fresh key)
        regr = acme.query_registration(messages.RegistrationResource(uri=exc.location, body=registration))
    # The EAB JWS was for this one request (and josepy cannot serialise it back): not kept.
    regr = regr.update(body=regr.body.update(external_account_binding=None))
    store.put(spec.store_key, json.dumps({
        "directory": spec.directory_url, "email": spec.email,
        "key": key.json_dumps(), "regr": regr.json_dumps(),
    }).encode())
    log.info("ACME account %s registered at %s (email %s)", regr.uri, spec.shown_directory, spec.email or "none")
    return acme


__all__ = ["AccountSpec", "new_account_key", "open_account", "signing_alg"]
