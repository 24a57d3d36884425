"""The one redaction helper: credentials never survive, the rest stays readable."""

from __future__ import annotations

import pytest

from rotation.core.redaction import REDACTED, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:s3cret@redis.internal:6379/0", "redis://:***@redis.internal:6379/0"),
        ("rediss://admin:s3cret@10.0.0.1:6380/2", "rediss://admin:***@10.0.0.1:6380/2"),
        ("redis://token@host:1/0", "redis://***@host:1/0"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
    ],
)
def test_passwords_are_replaced_and_the_rest_kept(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_capability_urls_lose_their_path() -> None:
    redacted = redact_url("https://hooks.slack.com/services/T0/B0/xyzzy?x=1", keep_path=False)
    assert redacted == "https://hooks.slack.com/***"
    assert "xyzzy" not in redacted


@pytest.mark.parametrize("junk", ["not a url", "http://[::1/x", "://nohost"])
def test_unparsable_values_are_hidden_whole(junk: str) -> None:
    assert redact_url(junk) == REDACTED


def test_a_query_password_inside_free_text_is_hidden() -> None:
    """redis-py takes ``?password=`` as well as the userinfo: a library's message quoting the URL leaks neither."""
    from rotation.core.redaction import redact_text

    text = "Error connecting to redis://host:6379/0?db=1&password=s3cr%2Fet&x=1 (refused); PASSWORD=bare stays"
    shown = redact_text(text)
    assert "s3cr" not in shown
    assert shown == (f"Error connecting to redis://host:6379/0?db=1&password={REDACTED}&x=1 (refused); "
                     "PASSWORD=bare stays")
