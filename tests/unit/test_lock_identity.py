"""The REST URL's part of a cluster's lock identity: one cluster written several ways is one identity (a rotation
also locks under the name the cluster gives itself; peers' database locks and `status` use this one alone)."""

from __future__ import annotations

import pytest

from rotation.config.clusters import ClusterSettings


def identity(url: str) -> str:
    return ClusterSettings(url=url, fqdn="rs.example.com", username="u", password_env="P").identity


@pytest.mark.parametrize(("first", "second"), [
    ("https://RS.Example.com:9443", "https://rs.example.com.:9443/"),  # case, trailing dot and slash
    ("https://rs.example.com", "https://rs.example.com:443"),  # the default port written or not
    ("https://[::1]:9443", "https://[0:0:0:0:0:0:0:1]:9443"),  # IPv6, compressed or not
    ("https://[2001:DB8::1]:9443", "https://[2001:db8:0::0:1]:9443"),
    ("https://[::ffff:127.0.0.2]:9443", "https://127.0.0.2:9443"),  # an IPv4-mapped address is the IPv4 one
])
def test_one_cluster_written_two_ways_is_one_identity(first: str, second: str) -> None:
    assert identity(first) == identity(second)


@pytest.mark.parametrize(("first", "second"), [
    ("https://rs.example.com:9443", "https://rs.example.com:9444"),
    ("https://rs.example.com:9443", "https://rs.example.co:9443"),
    ("https://[::1]:9443", "https://[::2]:9443"),
    ("https://127.0.0.2:9443", "https://127.0.0.3:9443"),
])
def test_two_endpoints_are_two_identities(first: str, second: str) -> None:
    assert identity(first) != identity(second)
