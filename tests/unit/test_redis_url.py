"""ROTATION_REDIS_URL with Redis Sentinel: parsed, shown without its password, turned into kombu's form."""

from __future__ import annotations

import pytest

from rotation.config.redis_url import celery_connection, parse_sentinel_url, redacted
from rotation.core.errors import ConfigError


def test_sentinels_service_database_and_credentials() -> None:
    url = parse_sentinel_url("redis+sentinel://app:s%40cret@10.0.0.1:26379,10.0.0.2:26380,[::1]/rotation/2")
    assert url.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("::1", 26379))
    assert (url.service, url.db, url.username, url.password) == ("rotation", 2, "app", "s@cret")
    assert "s@cret" not in repr(url)


def test_defaults_no_credentials_and_database_0() -> None:
    url = parse_sentinel_url("redis+sentinel://sentinel-a,sentinel-b:5000/mymaster")
    assert url.sentinels == (("sentinel-a", 26379), ("sentinel-b", 5000))
    assert (url.service, url.db, url.username, url.password) == ("mymaster", 0, None, None)
    assert parse_sentinel_url("redis+sentinel://:pw@h:1/m").password == "pw"


def test_shown_without_the_password() -> None:
    assert redacted("redis+sentinel://:pw@h1:1,h2:2/m/3") == "redis+sentinel://:***@h1:1,h2:2/m/3"
    assert redacted("redis+sentinel://user:pw@h1:1/m") == "redis+sentinel://user:***@h1:1/m/0"
    assert redacted("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert redacted("redis+sentinel://:pw@h1:notaport/m") == "redis+sentinel://***"


def test_celery_gets_one_sentinel_url_per_sentinel_and_the_master_name() -> None:
    url, options = celery_connection("redis+sentinel://:p%2Fw@h1:1,h2:2/mymaster/4")
    assert url == "sentinel://:p%2Fw@h1:1/4;sentinel://:p%2Fw@h2:2/4"
    assert options == {"master_name": "mymaster"}
    assert celery_connection("redis://h:6379/0") == ("redis://h:6379/0", {})


@pytest.mark.parametrize(("url", "message"), [
    ("redis+sentinel://:secret@h:1", "no Sentinel service name"),
    ("redis+sentinel://:secret@h:1/", "no Sentinel service name"),
    ("redis+sentinel://:secret@h:1/m/x", "database 'x' is not a number"),
    ("redis+sentinel://:secret@h:99999/m", "port '99999' is not a port"),
    ("redis+sentinel://:secret@h:1,,h:2/m", "an empty sentinel address"),
    ("redis+sentinel://:secret@:1/m", "has no host"),
    ("redis+sentinel://:sec/ret@h:1/m", "percent-encode"),
])
def test_bad_urls_say_what_is_wrong_and_never_show_the_password(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_sentinel_url(url)
    assert "ROTATION_REDIS_URL" in str(caught.value)
    assert not any(part in str(caught.value) for part in ("secret", ":sec", "ret@"))


def test_the_settings_refuse_a_bad_sentinel_url_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from rotation.config import ServiceSettings

    monkeypatch.setenv("ROTATION_REDIS_URL", "redis+sentinel://:secret@h:1,h:2")
    with pytest.raises(ConfigError, match="no Sentinel service name") as caught:
        ServiceSettings.from_env()
    assert "secret" not in str(caught.value)
    monkeypatch.setenv("ROTATION_REDIS_URL", "redis+sentinel://:secret@h:1,h:2/rotation")
    assert ServiceSettings.from_env().redis_url.endswith("/rotation")


def test_a_password_in_the_query_is_shown_hidden_too() -> None:
    """redis-py also takes the password as ``?password=``: `status`, the services' start line and every
    "Redis at ... is unreachable" showed it."""
    assert redacted("redis://h:6379/0?password=s3cret") == "redis://h:6379/0?password=***"
    assert redacted("rediss://h/0?username=app&password=s%40cret&ssl_cert_reqs=none") == (
        "rediss://h/0?username=app&password=***&ssl_cert_reqs=none")
    assert redacted("redis://h:6379/0?socket_timeout=5") == "redis://h:6379/0?socket_timeout=5"


def test_a_sentinel_url_with_a_query_is_refused_without_echoing_it() -> None:
    """Not parsed, the query became part of the service name: shown in `status` and in redis-py's
    "No master found for 'mymaster?password=...'"."""
    with pytest.raises(ConfigError, match="no query") as caught:
        parse_sentinel_url("redis+sentinel://h:1/mymaster?password=s3cret")
    assert "s3cret" not in str(caught.value)
    assert "s3cret" not in redacted("redis+sentinel://h:1/mymaster?password=s3cret")


def test_celery_gets_a_query_password_in_the_userinfo_where_kombu_reads_it() -> None:
    """kombu passes the query on as keyword arguments beside the userinfo's: ``?password=`` (which redis-py,
    and so the preflight, accepts) stopped every worker and beat with a TypeError."""
    assert celery_connection("redis://h:6379/0?password=s%40cret&socket_timeout=5") == (
        "redis://:s%40cret@h:6379/0?socket_timeout=5", {})
    assert celery_connection("rediss://h/1?username=app&password=pw") == ("rediss://app:pw@h/1", {})
    # as redis-py: the userinfo's password wins over the query's
    assert celery_connection("redis://:mine@h/0?password=other") == ("redis://:mine@h/0", {})
