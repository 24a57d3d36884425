"""Property tests of every parser that reads input from outside (issue 12, fuzzing).

Fixed example budgets, derandomized (the same examples every run, so the suite stays fast and
repeatable): the signature check, the webhook's body parsers, the chat command grammar, the
inventory loader and the PEM loader. Each is *total*: whatever the input, it returns or raises
its own error, never another exception. ``fuzz/`` has an atheris harness for each (``make fuzz``).
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rotation.chatops.bodies import MAX_DEPTH, BadBody, parse_form, parse_json
from rotation.chatops.grammar import UsageError, parse, render
from rotation.chatops.signatures import SignatureError, generic_signature, slack_signature, verify_generic, verify_slack
from rotation.config.inventory import parse_inventory
from rotation.core import certs
from rotation.core.errors import CertificateError, ConfigError
from rotation.core.text import clean

FIXED = settings(max_examples=150, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
SECRET = "0123456789abcdef" * 2
NOW = 1_700_000_000
LATIN1 = st.text(st.characters(max_codepoint=0xFF), max_size=90)  # a header as the server decodes it


# --- the signature check ---------------------------------------------------------------------------
@FIXED
@given(st.binary(max_size=200), LATIN1, LATIN1)
@example(b"text=status", "1700000000", "v0=" + "0" * 64)
def test_the_signature_check_is_total_and_only_the_exact_header_passes(body: bytes, ts: str, header: str) -> None:
    for verify, sign in ((verify_slack, slack_signature), (verify_generic, generic_signature)):
        try:
            verify(SECRET, ts, header, body, now=NOW)
        except SignatureError:
            continue
        assert header == sign(SECRET, ts, body) and ts == str(int(ts))


@FIXED
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=63 + 3), st.characters(max_codepoint=0xFF))
def test_one_changed_byte_of_a_good_signature_fails(body: bytes, at: int, extra: str) -> None:
    for verify, sign in ((verify_slack, slack_signature), (verify_generic, generic_signature)):
        good = sign(SECRET, str(NOW), body)
        assert verify(SECRET, str(NOW), good, body, now=NOW) == NOW
        for changed in (good[:at] + extra + good[at:], good + extra, good[:at] + extra + good[at + 1:]):
            if changed != good:
                with pytest.raises(SignatureError):
                    verify(SECRET, str(NOW), changed, body, now=NOW)


# --- the body parsers -----------------------------------------------------------------------------
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                         max_size=3), max_leaves=20)


@FIXED
@given(st.binary(max_size=400) | st.text(max_size=200).map(str.encode))
@example(b"[" * 5000)
@example(b'{"a": "\\\\"}' + b"]" * 40)
def test_the_body_parsers_are_total(body: bytes) -> None:
    try:
        assert isinstance(parse_form(body, 64), dict)
    except BadBody:
        pass
    try:
        parse_json(body)
    except BadBody:
        pass


@FIXED
@given(JSON_VALUES, st.integers(min_value=0, max_value=2 * MAX_DEPTH))
def test_json_within_the_depth_reads_as_json_and_deeper_is_refused(value: object, extra: int) -> None:
    document = json.dumps(value)
    assert parse_json(document.encode()) == value
    nested = "[" * extra + document + "]" * extra
    depth = _depth(value) + extra
    if depth > MAX_DEPTH:
        with pytest.raises(BadBody, match="nested more than"):
            parse_json(nested)
    else:
        assert parse_json(nested) is not None or value is None


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


# --- the command grammar --------------------------------------------------------------------------
WORDS = st.sampled_from(["status", "check", "rotate", "history", "confirm", "help", "all", "--dry-run", "proxy",
                         "cm", "api", "east", "a" * 70, "[/oops]", "\x1b[31m", "--x", "ALL", "x" * 20, "0" * 16])


@FIXED
@given(st.text(max_size=300) | st.lists(WORDS, max_size=6).map(" ".join))
def test_the_grammar_is_total_and_its_rendering_parses_back(text: str) -> None:
    try:
        command = parse(text)
    except UsageError as exc:
        assert exc.answer
        return
    if render(command) != "confirm":  # the audit shows no nonce: it is a secret of its owner
        assert parse(render(command)) == command


# --- the inventory loader -------------------------------------------------------------------------
YAML_SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=12) | st.sampled_from(
    ["30d", "33%", "https://a:9443", "internal_ca", "acme", "/tmp", "1.2", "*", "read"])
KEYS = st.sampled_from(["clusters", "issuers", "chatops", "renew_before", "url", "username", "password_env",
                        "password_file", "verify", "fqdn", "certificates", "type", "ca_cert", "ca_key_file", "allow",
                        "reply_url_prefixes", "slack", "user", "ports", "tls_policy", "east", "proxy", "<<"])
DOCUMENTS = st.recursive(YAML_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    KEYS, inner, max_size=4), max_leaves=25)


@FIXED
@given(st.text(max_size=300) | DOCUMENTS.map(lambda d: yaml.safe_dump(d, default_flow_style=True)))
@example("a: &a [*a]\n")
@example("a: &a {x: 1}\nb: {<<: *a}\n")
@example("clusters: {east: {verify: [1, null]}}\n")
@example("clusters: {east: {password_file: \"a\\0b\"}}\n")
def test_the_inventory_loader_is_total(text: str) -> None:
    try:
        parse_inventory(text, Path("/nonexistent/rotation.yaml"))
    except ConfigError as exc:
        assert exc.message.startswith("/nonexistent/rotation.yaml")


# --- the PEM loader -------------------------------------------------------------------------------
def _pem_pieces() -> list[bytes]:
    key = certs.generate_private_key(certs.KeyType.ECDSA_P256)
    key_pem = certs.private_key_to_pem(key).reveal().encode()
    return [key_pem, b"-----BEGIN CERTIFICATE-----\n", b"-----END CERTIFICATE-----\n", b"MIIB", b"\n", b"=",
            b"Proc-Type: 4,ENCRYPTED\n", b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n", b"\xff", b"garbage"]


PEM_PIECES = _pem_pieces()


@FIXED
@given(st.lists(st.sampled_from(PEM_PIECES) | st.binary(max_size=20), max_size=8).map(b"".join),
       st.none() | st.just(b"password"))
def test_the_pem_loaders_are_total(data: bytes, password: bytes | None) -> None:
    try:
        certs.load_certificates(data, where="input")
    except CertificateError:
        pass
    try:
        certs.load_private_key(data, where="input", password=password)
    except (CertificateError, ConfigError):
        pass


# --- display text ---------------------------------------------------------------------------------
@FIXED
@given(st.text(max_size=200) | st.lists(st.sampled_from(["\x1b", "[", "]", "8;;", "\x07", "\x9b", "\x9d", "\\",
                                                          "a", "\n", "\u202e", "\ud800"]), max_size=30).map("".join))
def test_clean_text_has_no_control_character_and_is_stable(text: str) -> None:
    shown = clean(text)
    assert not any(unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") for ch in shown), ascii(shown)
    assert not set(shown) & set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
    assert clean(shown) == shown
    shown.encode("utf-8")  # printable to any terminal and log file
