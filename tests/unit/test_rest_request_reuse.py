"""The REST client's body-less reads reuse what httpx's build_request made (RSClient._build): the request
sent must be the one build_request would have made, whatever the base URL, path, SNI or cookies."""

from __future__ import annotations

import httpx
import pytest

from rotation.adapters.rs.client import RSClient


def _same(built: httpx.Request, expected: httpx.Request) -> None:
    assert (built.method, str(built.url)) == (expected.method, str(expected.url))
    assert built.headers.multi_items() == expected.headers.multi_items()
    assert built.extensions == expected.extensions


@pytest.mark.parametrize("base", ["https://c1.example:9443", "https://c1.example:9443/", "https://10.0.0.1:9443/api/"])
@pytest.mark.parametrize("path", ["/v1/cluster", "/v1/bdbs/certificates?uids=1,2", "/v1/crdbs/a%2Fb/updates"])
@pytest.mark.parametrize("sni", [None, "c1.example"])
def test_a_read_is_the_request_build_request_makes(base: str, path: str, sni: str | None) -> None:
    client = RSClient(base, "admin@example.com", "secret", verify=False, timeout=7.0)
    extensions = {"sni_hostname": sni} if sni else None
    try:
        for _ in range(2):  # the first read fills the cache, the second uses it
            _same(client._build("GET", path, None, extensions),
                  client._http.build_request("GET", path, extensions=extensions))
    finally:
        client.close()


def test_a_body_or_a_held_cookie_goes_through_build_request() -> None:
    client = RSClient("https://c1.example:9443", "admin@example.com", "secret", verify=False)
    try:
        with_body = client._build("PUT", "/v1/cluster", {"name": "x"}, None)
        assert with_body.content == b'{"name":"x"}' and with_body.headers["Content-Type"] == "application/json"
        client._build("GET", "/v1/cluster", None, None)  # cached
        client._http.cookies.set("session", "abc", domain="c1.example")
        assert client._build("GET", "/v1/cluster", None, None).headers.get("Cookie") == "session=abc"
    finally:
        client.close()


def test_the_url_cache_is_bounded() -> None:
    client = RSClient("https://c1.example:9443", None, None, verify=False)
    try:
        for uid in range(200):
            request = client._build("GET", f"/v1/bdbs/{uid}", None, None)
            assert str(request.url) == f"https://c1.example:9443/v1/bdbs/{uid}"
        assert len(client._urls) == 64
    finally:
        client.close()
