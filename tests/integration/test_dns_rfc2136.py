"""The RFC 2136 provider against a real BIND 9 (named) accepting TSIG-signed updates."""

from __future__ import annotations

import base64
import secrets

import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update
import pytest
from support.acme import CHALLENGE, TSIG_NAME, ZONE, NamedServer

from rotation.adapters.dns.registry import build_dns_provider
from rotation.adapters.dns.rfc2136 import RFC2136Provider, parse_server
from rotation.core.errors import ConfigError, IssuerError


def provider(named: NamedServer, **overrides: object) -> RFC2136Provider:  # noqa: F811
    options: dict[str, object] = {"server": named.address, "tsig_key_name": TSIG_NAME,
                                  "tsig_secret": named.tsig_secret, "propagation_servers": [named.address],
                                  "poll_interval": 0.1}
    options.update(overrides)
    return RFC2136Provider(**options)  # type: ignore[arg-type]


def test_present_wait_cleanup_with_two_values_on_one_name(named: NamedServer) -> None:  # noqa: F811
    dns = provider(named)
    dns.present(CHALLENGE, "value-wildcard")
    dns.present(CHALLENGE.rstrip("."), "value-base")  # without the trailing dot too
    try:
        dns.wait_visible(CHALLENGE, "value-wildcard", timeout=5)
        dns.wait_visible(CHALLENGE, "value-base", timeout=5)
        assert named.txt() == {"value-wildcard", "value-base"}
        dns.cleanup(CHALLENGE, "value-wildcard")  # removes only its own value
        assert named.txt() == {"value-base"}
    finally:
        dns.cleanup(CHALLENGE, "value-base")
    assert named.txt() == set()


def test_zone_is_found_from_the_soa(named: NamedServer) -> None:  # noqa: F811
    dns = provider(named)
    assert dns.zone_for(f"_acme-challenge.deep.name.{ZONE}") == f"{ZONE}."
    assert provider(named, zone=ZONE).zone_for("anything.example") == f"{ZONE}."


def test_authoritative_servers_default_to_the_zone_ns_from_glue(named: NamedServer) -> None:  # noqa: F811
    dns = provider(named, propagation_servers=None)
    assert dns.authoritative_servers(f"{ZONE}.") == [("127.0.0.1", 53)]


def test_wrong_tsig_secret_is_a_clear_refusal_and_nothing_is_published(named: NamedServer) -> None:  # noqa: F811
    wrong = base64.b64encode(secrets.token_bytes(32)).decode()
    with pytest.raises(IssuerError) as caught:
        provider(named, tsig_secret=wrong).present(CHALLENGE, "never")
    assert "refused" in caught.value.message and "TSIG" in caught.value.message
    assert not caught.value.retryable
    assert named.txt() == set()


def test_unsigned_update_is_refused(named: NamedServer) -> None:  # noqa: F811
    with pytest.raises(IssuerError, match="REFUSED"):
        provider(named, tsig_key_name=None, tsig_secret=None).present(CHALLENGE, "never")


def test_wait_visible_times_out_clearly(named: NamedServer) -> None:  # noqa: F811
    with pytest.raises(IssuerError, match="not visible") as caught:
        provider(named).wait_visible(CHALLENGE, "absent", timeout=0.3)
    assert caught.value.retryable


def test_configuration_errors() -> None:
    assert parse_server("10.0.0.1") == ("10.0.0.1", 53)
    assert parse_server("[::1]:5353") == ("::1", 5353)
    assert parse_server("ns.example:5353") == ("ns.example", 5353)
    with pytest.raises(ConfigError, match="no secret"):
        RFC2136Provider(server="127.0.0.1", tsig_key_name="k")
    with pytest.raises(ConfigError, match="not base64"):
        RFC2136Provider(server="127.0.0.1", tsig_key_name="k", tsig_secret="!!!")
    with pytest.raises(ConfigError, match="unknown DNS provider"):
        build_dns_provider("route53", server="x")
    long_enough = "c2VjcmV0c2VjcmV0c2VjcmV0"  # 18 bytes: shorter TSIG keys are refused
    assert "secret" not in repr(RFC2136Provider(server="127.0.0.1", tsig_key_name="k", tsig_secret=long_enough))


def test_a_txt_value_that_is_not_utf8_beside_ours_is_no_crash(named: NamedServer) -> None:  # noqa: F811
    record = f"_acme-challenge.binary.{ZONE}."
    # another tool's TXT on the same name: bytes that are not UTF-8 (TXT strings are bytes)
    foreign = dns.update.UpdateMessage(f"{ZONE}.", keyring=dns.tsigkeyring.from_text({TSIG_NAME: named.tsig_secret}),
                                       keyalgorithm="hmac-sha256")
    foreign.add(record, 60, "TXT", '"\\255\\254 not utf-8"')
    assert dns.query.tcp(foreign, "127.0.0.1", port=named.port, timeout=3).rcode() == dns.rcode.NOERROR
    ours = provider(named)
    try:
        with pytest.raises(IssuerError, match="not visible"):
            ours.wait_visible(record, "value-ours", timeout=0.3)
        ours.present(record, "value-ours")
        ours.wait_visible(record, "value-ours", timeout=5)
        ours.cleanup(record, "value-ours")
    finally:
        cleanup = dns.update.UpdateMessage(f"{ZONE}.", keyring=foreign.keyring, keyalgorithm="hmac-sha256")
        cleanup.delete(record)
        dns.query.tcp(cleanup, "127.0.0.1", port=named.port, timeout=3)


def test_an_unknown_tsig_algorithm_is_a_config_error_naming_it(named: NamedServer) -> None:  # noqa: F811
    with pytest.raises(ConfigError, match="hmac-sha265") as caught:
        provider(named, tsig_algorithm="hmac-sha265").present(CHALLENGE, "never")
    assert named.tsig_secret not in caught.value.message
    assert named.txt() == set()
