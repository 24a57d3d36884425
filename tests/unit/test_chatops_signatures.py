"""Request authentication: Slack v0 (checked against slack_sdk's own code), generic HMAC, Mattermost token."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_sdk.signature import SignatureVerifier

from rotation.chatops.signatures import (
    SignatureError,
    generic_signature,
    slack_signature,
    verify_generic,
    verify_slack,
    verify_token,
)

# Slack's documented example (api.slack.com/authentication/verifying-requests-from-slack).
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TS = "1531420618"
SLACK_BODY = (b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
              b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
              b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRs"
              b"kXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
SLACK_EXPECTED = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def test_slack_documented_vector() -> None:
    assert slack_signature(SLACK_SECRET, SLACK_TS, SLACK_BODY) == SLACK_EXPECTED
    assert verify_slack(SLACK_SECRET, SLACK_TS, SLACK_EXPECTED, SLACK_BODY, now=int(SLACK_TS) + 10) == int(SLACK_TS)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300), st.integers(min_value=1_000_000_000, max_value=4_000_000_000))
def test_agrees_with_slack_sdk(text: str, ts: int) -> None:
    body = text.encode()
    signature = SignatureVerifier("s3cret").generate_signature(timestamp=str(ts), body=text)
    assert verify_slack("s3cret", str(ts), signature, body, now=ts) == ts
    with pytest.raises(SignatureError):
        verify_slack("other", str(ts), signature, body, now=ts)


@pytest.mark.parametrize(("timestamp", "signature", "body", "now", "reason"), [
    (SLACK_TS, None, SLACK_BODY, 1531420618, "missing signature"),
    (None, SLACK_EXPECTED, SLACK_BODY, 1531420618, "missing timestamp"),
    ("12ab", SLACK_EXPECTED, SLACK_BODY, 1531420618, "not a Unix time"),
    (SLACK_TS, SLACK_EXPECTED, SLACK_BODY + b"&x=1", 1531420618, "does not match"),
    (SLACK_TS, SLACK_EXPECTED.upper(), SLACK_BODY, 1531420618, "not in the expected form"),
    # One accepted spelling per (timestamp, body): any other byte is refused, not normalised.
    (SLACK_TS, SLACK_EXPECTED + " ", SLACK_BODY, 1531420618, "not in the expected form"),
    (SLACK_TS, SLACK_EXPECTED + "\xa0", SLACK_BODY, 1531420618, "not in the expected form"),
    (SLACK_TS, SLACK_EXPECTED + "\x85", SLACK_BODY, 1531420618, "not in the expected form"),
    (SLACK_TS, " " + SLACK_EXPECTED, SLACK_BODY, 1531420618, "not in the expected form"),
    (SLACK_TS, SLACK_EXPECTED + "\n", SLACK_BODY, 1531420618, "not in the expected form"),
    (SLACK_TS, SLACK_EXPECTED + "0", SLACK_BODY, 1531420618, "not in the expected form"),
    (SLACK_TS + " ", SLACK_EXPECTED, SLACK_BODY, 1531420618, "not a Unix time"),
    ("0" + SLACK_TS, SLACK_EXPECTED, SLACK_BODY, 1531420618, "not a Unix time"),
    ("+" + SLACK_TS, SLACK_EXPECTED, SLACK_BODY, 1531420618, "not a Unix time"),
    ("\u0661531420618", SLACK_EXPECTED, SLACK_BODY, 1531420618, "not a Unix time"),
    (SLACK_TS, "v0=" + "0" * 64, SLACK_BODY, 1531420618, "does not match"),
    (SLACK_TS, SLACK_EXPECTED, SLACK_BODY, 1531420618 + 301, "away from now"),
    (SLACK_TS, SLACK_EXPECTED, SLACK_BODY, 1531420618 - 301, "away from now"),
])
def test_slack_refusals(timestamp: str | None, signature: str | None, body: bytes, now: float, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify_slack(SLACK_SECRET, timestamp, signature, body, now=now)


def test_slack_window_edges() -> None:
    assert verify_slack(SLACK_SECRET, SLACK_TS, SLACK_EXPECTED, SLACK_BODY, now=int(SLACK_TS) + 300)
    assert verify_slack(SLACK_SECRET, SLACK_TS, SLACK_EXPECTED, SLACK_BODY, now=int(SLACK_TS) - 300)


def test_generic_hmac_is_over_timestamp_dot_body() -> None:
    body = b'{"user":"ops-bot","text":"status"}'
    expected = "sha256=" + hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert generic_signature("k", 1700000000, body) == expected
    assert verify_generic("k", "1700000000", expected, body, now=1700000100) == 1700000000
    with pytest.raises(SignatureError, match="does not match"):
        verify_generic("k", "1700000001", expected, body, now=1700000100)
    for spelling in (expected.removeprefix("sha256="), expected + " ", expected + "\xa0", expected.upper(),
                     "SHA256=" + expected.removeprefix("sha256=")):
        with pytest.raises(SignatureError, match="not in the expected form"):
            verify_generic("k", "1700000000", spelling, body, now=1700000100)
    with pytest.raises(SignatureError, match="away from now"):
        verify_generic("k", "1700000000", expected, body, now=1700000301)


@pytest.mark.parametrize(("header", "ok"), [
    ("Token abc123", True), ("token abc123", False), ("Token abc1234", False), ("Bearer abc123", False),
    ("abc123", False), ("", False), (None, False), ("Token ", False), ("Token äbc123", False),
    ("Token abc123 ", False), ("Token  abc123", False), ("Token abc123\xa0", False), (" Token abc123", False),
])
def test_mattermost_token(header: str | None, ok: bool) -> None:
    if ok:
        verify_token("abc123", header)
    else:
        with pytest.raises(SignatureError):
            verify_token("abc123", header)
