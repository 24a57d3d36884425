"""Every outbound HTTP call is bounded in size and in total time (issue 12, item 6).

A real HTTPS server (``hostile.HostileServer``) streams an endless body, drips its headers or its
body one byte at a time (each byte well within any per-read timeout, so only a total deadline
stops it), or sends a compressed answer nobody asked for. The tests assert structure: the right
error, the read stopped at the cap, the client's traced memory stayed near the cap, and the
server saw the client go away. Without the bounds, these calls never return.
"""

from __future__ import annotations

import socket
import threading
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest
from support.cluster import free_loopback_base
from support.hostile import HOST_NAME, HostileServer, drip, endless, gzipped, redirect

from rotation.adapters.issuers.acme.issuer import AcmeIssuer
from rotation.adapters.notify import Notifier
from rotation.adapters.rs.client import RSClient
from rotation.core.errors import ClusterAPIError, ClusterUnavailable, IssuerError

MiB = 1024 * 1024


def rs_client(server: HostileServer, *, timeout: float = 5.0, cap: int = MiB) -> RSClient:
    return RSClient(server.url, "admin@example.com", "pw", cluster="hostile", verify=[server.ca_path],
                    server_name=HOST_NAME, timeout=timeout, max_response_bytes=cap)


def test_an_endless_rest_body_stops_at_the_cap_with_bounded_memory(hostile: HostileServer) -> None:
    hostile.behaviour = endless(hostile)
    tracemalloc.start()
    try:
        with rs_client(hostile, cap=MiB) as client, pytest.raises(ClusterAPIError) as info:
            client.nodes()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "at most 1 MiB is read" in info.value.message and not info.value.retryable
    assert peak < 4 * MiB, f"the client held {peak} bytes for a 1 MiB cap"
    (exchange,) = hostile.exchanges
    assert exchange.peer_gone.wait(10), "the client kept the connection open"
    assert exchange.sent < 16 * MiB  # what the kernel buffers took after the client stopped, not more


@pytest.mark.parametrize("headers_first", [True, False], ids=["body", "headers"])
def test_a_rest_answer_dripped_byte_by_byte_hits_the_total_deadline(hostile: HostileServer,
                                                                    headers_first: bool) -> None:
    hostile.behaviour = drip(hostile, headers_first=headers_first)
    with rs_client(hostile, timeout=0.5) as client, pytest.raises(ClusterUnavailable) as info:
        client.nodes()
    assert "timed out" in info.value.message and info.value.retryable
    assert hostile.exchanges[0].peer_gone.wait(10)


def test_a_compressed_rest_answer_is_refused_before_it_is_expanded(hostile: HostileServer) -> None:
    hostile.behaviour = gzipped(hostile)
    with rs_client(hostile) as client, pytest.raises(ClusterAPIError, match="compressed answer"):
        client.nodes()


def test_the_cap_applies_to_real_answers_and_kept_alive_calls_still_work(simulator) -> None:  # noqa: ANN001
    # A real answer over the cap is refused; under it, the bounded transport keeps its connection alive.
    client = RSClient(f"https://{simulator.node_addresses[0]}:{simulator.config.api_port}", simulator.admin_username,
                      simulator.admin_password, cluster="sim", verify=[simulator.ca_path],
                      server_name=simulator.config.fqdn, timeout=5, max_response_bytes=64)
    with client:
        with pytest.raises(ClusterAPIError, match="at most 64 bytes"):
            client.certificates()  # the PEMs are far over 64 bytes
    with RSClient(f"https://{simulator.node_addresses[0]}:{simulator.config.api_port}", simulator.admin_username,
                  simulator.admin_password, cluster="sim", verify=[simulator.ca_path],
                  server_name=simulator.config.fqdn, timeout=5) as client:
        assert [n.uid for n in client.nodes()] == [n.uid for n in client.nodes()] == [1, 2, 3]


def acme_issuer(server: HostileServer, request_timeout: float = 5.0) -> AcmeIssuer:
    return AcmeIssuer("hostile", server.url + "/directory", challenge="http-01", ca_bundle=server.ca_path,
                      request_timeout=timedelta(seconds=request_timeout))


def test_an_endless_acme_answer_is_refused_at_16_mib(hostile: HostileServer) -> None:
    hostile.behaviour = endless(hostile)
    with pytest.raises(IssuerError) as info:
        acme_issuer(hostile).check()
    assert "answer was refused" in info.value.message and "16 MiB" in info.value.message
    assert not info.value.retryable
    assert hostile.exchanges[0].peer_gone.wait(10)
    assert hostile.exchanges[0].sent < 48 * MiB


@pytest.mark.parametrize("headers_first", [True, False], ids=["body", "headers"])
def test_an_acme_answer_dripped_byte_by_byte_hits_the_total_deadline(hostile: HostileServer,
                                                                     headers_first: bool) -> None:
    hostile.behaviour = drip(hostile, headers_first=headers_first)
    with pytest.raises(IssuerError) as info:
        acme_issuer(hostile, request_timeout=0.5).check()
    assert "no complete answer within 0.5s" in info.value.message and info.value.retryable
    assert hostile.exchanges[0].peer_gone.wait(10)


def test_a_compressed_acme_answer_is_refused(hostile: HostileServer) -> None:
    hostile.behaviour = gzipped(hostile)
    with pytest.raises(IssuerError, match="compressed answer"):
        acme_issuer(hostile).check()


def test_a_reply_follows_no_redirect_and_a_dripping_receiver_cannot_hold_it(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The redirect points at a listener on its own 127.x address: it must see no connection.
    target = socket.create_server((free_loopback_base(), 0))
    accepted = threading.Event()
    threading.Thread(target=lambda: (target.accept(), accepted.set()), daemon=True).start()
    host, port = target.getsockname()
    plain = HostileServer(hostile.address, (hostile.ca_path, hostile.ca_path), Path("."), tls=False)
    try:
        plain.behaviour = redirect(plain, f"http://{host}:{port}/stolen")
        notifier = Notifier(None, plain.url + "/hook")
        from rotation.chatops.answers import Answer

        assert notifier.notify(Answer("hello")) is False  # a 302 is an error, not followed
        monkeypatch.setattr("rotation.adapters.notify.POST_DEADLINE", 0.5)
        plain.behaviour = drip(plain, headers_first=False)
        assert notifier.notify(Answer("hello")) is False  # the deadline ends it
        assert plain.exchanges[-1].peer_gone.wait(10)
        assert not accepted.is_set()
    finally:
        plain.close()
        target.close()
