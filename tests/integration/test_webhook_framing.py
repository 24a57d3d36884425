"""Request framing against the real `rotation webhook` process (RFC 9112): no forged request may act.

Each request below carries a validly signed generic command (fresh, so a refusal is not the replay
mark's doing): if the webhook acted on it, the command would be audited. A request whose framing is
ambiguous or outside HTTP/1.x is refused and its connection closed; bytes of a body never become a
request of their own; answers go in order; what authenticates a request is its header section, and
a signed body acts once, whatever the endpoint, the process, or where in its window it comes.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Callable

from support.chat import Chat
from support.processes import wait_for

from rotation.chatops.signatures import generic_signature
from rotation.simulator import ClusterSimulator


def _signed() -> tuple[bytes, bytes]:
    """A fresh signed generic ``status`` command: its header lines (CRLF-ended) and its body."""
    body = json.dumps({"user": "ops-script", "text": "status sim", "nonce": secrets.token_hex(8)}).encode()
    stamp = int(time.time())
    signature = generic_signature(os.environ["TEST_GENERIC_SECRET"], stamp, body)
    head = (f"Content-Type: application/json\r\nX-Timestamp: {stamp}\r\nX-Signature-256: {signature}\r\n").encode()
    return head, body


def _chunked(body: bytes) -> bytes:
    return f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"


def _exchange(chat: Chat, raw: bytes) -> bytes:
    """Everything the server sends back until it closes the connection (or stays silent for 5 s)."""
    answer = b""
    with chat.connect(timeout=5) as sock:
        sock.sendall(raw)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            answer += b"<still open>"
    return answer


POST = b"POST /chatops/generic "

# name -> the raw request, made of a signed command's header lines and body
REFUSED: dict[str, Callable[[bytes, bytes], bytes]] = {
    # RFC 9112 3.2: exactly one Host in an HTTP/1.1 request, and a valid one
    "no Host": lambda h, b: POST + b"HTTP/1.1\r\n" + h + b"Content-Length: %d\r\n\r\n" % len(b) + b,
    "two Hosts": lambda h, b: POST + b"HTTP/1.1\r\nHost: a\r\nHost: b\r\n" + h
    + b"Content-Length: %d\r\n\r\n" % len(b) + b,
    "bad Host": lambda h, b: POST + b"HTTP/1.1\r\nHost: a b\r\n" + h + b"Content-Length: %d\r\n\r\n" % len(b) + b,
    # RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing; a coding we do not apply is 501
    "HTTP/1.0 chunked": lambda h, b: POST + b"HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n" + h + b"\r\n"
    + _chunked(b),
    "gzip, chunked": lambda h, b: POST + b"HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n" + h
    + b"\r\n" + _chunked(b),
    # an upgrade (not served): the parser would take what follows the headers for the new protocol, the
    # command would run with an empty body and the connection hang with the rest unread
    "Upgrade": lambda h, b: POST + b"HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n" + h
    + b"Content-Length: %d\r\n\r\n" % len(b) + b,
    # not HTTP/1.x
    "HTTP/2.0": lambda h, b: POST + b"HTTP/2.0\r\nHost: a\r\n" + h + b"Content-Length: %d\r\n\r\n" % len(b) + b,
    # already refused by the parser (llhttp, strict): kept so that a lenient parser cannot slip back in
    "CL and TE": lambda h, b: POST + b"HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n"
    % len(b) + h + b"\r\n" + _chunked(b),
    "TE and CL": lambda h, b: POST + b"HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n"
    + h + b"\r\n" + _chunked(b),
    "two equal CL": lambda h, b: POST + b"HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\nContent-Length: %d\r\n"
    % (len(b), len(b)) + h + b"\r\n" + b,
    "CL list": lambda h, b: POST + b"HTTP/1.1\r\nHost: a\r\nContent-Length: %d, %d\r\n" % (len(b), len(b)) + h
    + b"\r\n" + b,
    "CL +": lambda h, b: POST + b"HTTP/1.1\r\nHost: a\r\nContent-Length: +%d\r\n" % len(b) + h + b"\r\n" + b,
    "CL huge": lambda h, b: POST + b"HTTP/1.1\r\nHost: a\r\nContent-Length: 184467440737095516160\r\n" + h
    + b"\r\n" + b,
    "chunked, identity": lambda h, b: POST + b"HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n" + h
    + b"\r\n" + _chunked(b),
    "chunked twice": lambda h, b: POST + b"HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
    b"Transfer-Encoding: chunked\r\n" + h + b"\r\n" + _chunked(b),
    "chunk size 0x": lambda h, b: POST + b"HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n" + h + b"\r\n"
    + b"0x" + _chunked(b),
    "chunk size overflows": lambda h, b: POST + b"HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n" + h
    + b"\r\n" + b"1000000000000000" + _chunked(b),
    "chunk longer than its size": lambda h, b: POST + b"HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n" + h
    + b"\r\n" + f"{len(b) - 1:x}\r\n".encode() + b + b"\r\n0\r\n\r\n",
    "chunk shorter than its size": lambda h, b: POST + b"HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n" + h
    + b"\r\n" + f"{len(b) + 2:x}\r\n".encode() + b + b"\r\n0\r\n\r\n",
    "bare LF": lambda h, b: (POST + b"HTTP/1.1\r\nHost: a\r\n" + h + b"Content-Length: %d\r\n\r\n" % len(b))
    .replace(b"\r\n", b"\n") + b,
    "bare CR": lambda h, b: POST + b"HTTP/1.1\r\nHost: a\r\nX-A: b\rContent-Length: %d\r\n" % len(b) + h
    + b"\r\n" + b,
    "obs-fold": lambda h, b: POST + b"HTTP/1.1\r\nHost: a\r\nX-A: b\r\n Content-Length: %d\r\n" % len(b) + h
    + b"\r\n" + b,
    "space before colon": lambda h, b: POST + b"HTTP/1.1\r\nHost: a\r\nContent-Length : %d\r\n" % len(b) + h
    + b"\r\n" + b,
    "NUL in a name": lambda h, b: POST + b"HTTP/1.1\r\nHost: a\r\nX-\0A: b\r\nContent-Length: %d\r\n" % len(b) + h
    + b"\r\n" + b,
    "NUL in a value": lambda h, b: POST + b"HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\nContent-Length: %d\r\n" % len(b) + h
    + b"\r\n" + b,
}
CODES = {"gzip, chunked": b"501", "HTTP/2.0": b"505"}


def test_ambiguous_or_foreign_framing_is_refused_closed_and_never_acts(simulator: ClusterSimulator, webhook) -> None:  # noqa: ANN001
    chat = webhook()
    acted = []
    for name, request in REFUSED.items():
        head, body = _signed()
        answer = _exchange(chat, request(head, body))
        status = answer.split(b" ", 2)[1] if answer.startswith(b"HTTP/1.1 ") else answer[:40]
        # one answer, the refusal, and the connection closed after it
        if status != CODES.get(name, b"400") or answer.count(b"HTTP/1.1 ") != 1 or answer.endswith(b"<still open>"):
            acted.append((name, answer[-120:]))
    assert [name for name, _ in acted] == [] and chat.audit() == []
    # A well-framed request still acts: as Content-Length, and as chunks (an extension, zeros, any case)
    for framing in (b"Content-Length: %d\r\n\r\n%s", b"Transfer-Encoding: CHUNKED \r\n\r\n%x;ext=1\r\n%s\r\n0\r\n\r\n",
                    b"Content-Length: 000%d\r\n\r\n%s"):
        head, body = _signed()
        request = POST + b"HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" + head + framing % (len(body), body)
        assert _exchange(chat, request).startswith(b"HTTP/1.1 200"), framing
    assert len(chat.audit()) == 3


def test_a_request_hidden_in_a_body_is_never_run_and_the_connection_stays_in_step(
    simulator: ClusterSimulator, webhook  # noqa: ANN001
) -> None:
    chat = webhook()
    head, body = _signed()
    hidden = POST + b"HTTP/1.1\r\nHost: a\r\n" + head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    # The outer request's body is the hidden one: as Content-Length, as one chunk, and as a chunk that
    # holds a last-chunk of its own; each signed over its exact bytes, so each is a bad JSON body (400).
    for framing in (b"Content-Length: %d\r\n\r\n%s", b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"):
        for inner in (hidden, b"0\r\n\r\n" + hidden):
            stamp = int(time.time())
            signature = generic_signature(os.environ["TEST_GENERIC_SECRET"], stamp, inner)
            outer = (POST + b"HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nX-Timestamp: %d\r\n"
                     b"X-Signature-256: %s\r\n" % (stamp, signature.encode()) + framing % (len(inner), inner))
            with chat.connect(timeout=10) as sock:
                # then one more request on the same connection: its answer must be the second one
                sock.sendall(outer + b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
            assert answer.count(b"HTTP/1.1 ") == 2 and answer.endswith(b"\r\n\r\nok"), answer
    assert chat.audit() == []  # the hidden command never ran
    # The hidden request, sent as itself, is fresh and acts once.
    assert _exchange(chat, hidden.replace(b"Host: a\r\n", b"Host: a\r\nConnection: close\r\n")).startswith(
        b"HTTP/1.1 200")
    assert len(chat.audit()) == 1


def test_a_kept_alive_http_1_0_request_and_expect_100_continue_answer_once(
    simulator: ClusterSimulator, webhook  # noqa: ANN001
) -> None:
    chat = webhook()
    head, body = _signed()
    # HTTP/1.0 asking for keep-alive: answered, then closed; the bytes after it are not a request.
    after_head, after_body = _signed()
    after = POST + b"HTTP/1.1\r\nHost: a\r\n" + after_head + b"Content-Length: %d\r\n\r\n%s" % (len(after_body),
                                                                                               after_body)
    request = (POST + b"HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n" + head
               + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    answer = _exchange(chat, request + after)
    assert answer.startswith(b"HTTP/1.1 200") and answer.count(b"HTTP/1.1 ") == 1, answer
    assert len(chat.audit()) == 1
    # An HTTP/1.0 client knows no interim answers: its expectation is ignored (RFC 9110 10.1.1)
    head, body = _signed()
    answer = _exchange(chat, POST + b"HTTP/1.0\r\nHost: a\r\nExpect: 100-continue\r\n" + head
                       + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert answer.startswith(b"HTTP/1.1 200") and answer.count(b"HTTP/1.1 ") == 1, answer
    # Expect: 100-continue gets its interim answer once the checks before the body pass, then the final one
    head, body = _signed()
    with chat.connect(timeout=10) as sock:
        sock.sendall(POST + b"HTTP/1.1\r\nHost: a\r\nConnection: close\r\nExpect: 100-continue\r\n" + head
                     + b"Content-Length: %d\r\n\r\n" % len(body))
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    # ... and a refusal before the body (too large) comes without it, the body unread
    with chat.connect(timeout=10) as sock:
        sock.sendall(POST + b"HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n" + head
                     + b"Content-Length: 70000\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 413")
    assert len(chat.audit()) == 3


def test_a_bad_request_after_a_good_one_is_answered_after_it_not_instead(
    simulator: ClusterSimulator, webhook  # noqa: ANN001
) -> None:
    # Pipelined: a signed command, then bytes that are no request, read while the command runs. The
    # refusal of the second went out at once and the connection was closed: the caller read "400"
    # (or 431) for a command that acted. Answers go in order: the command's, the refusal, the close.
    chat = webhook()
    bads = {"no request": b"GARBAGE\r\n\r\n", "no method": b"\0\r\n\r\n", "bad method": b"{}\r\n\r\n",
            "two CL": POST + b"HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nzz",
            "no Host": POST + b"HTTP/1.1\r\n\r\n",
            "headers over the cap": POST + b"HTTP/1.1\r\nHost: a\r\nX-Junk: " + b"a" * 20_000 + b"\r\n\r\n",
            "bad chunk": POST + b"HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"}
    for name, bad in bads.items():
        head, body = _signed()
        chat.redis.client_pause(5000, all=False)  # the command's first write waits: it is in flight
        try:
            with chat.connect(timeout=10) as sock:
                sock.sendall(POST + b"HTTP/1.1\r\nHost: a\r\n" + head + b"Content-Length: %d\r\n\r\n%s" % (
                    len(body), body))
                wait_for(lambda: chat.redis.info("clients")["blocked_clients"] > 0, 10, 0.01, what="the write")
                sock.sendall(bad)
                time.sleep(0.2)  # (before the fix, the refusal was out by now)
                chat.redis.client_unpause()
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
        finally:
            chat.redis.client_unpause()
        assert answer.startswith(b"HTTP/1.1 200") and answer.count(b"HTTP/1.1 ") == 2, (name, answer)
        assert re.search(rb"\r\n\r\n\{.*\}HTTP/1.1 4(00|31) ", answer), (name, answer)
    assert len(chat.audit()) == len(bads)


def test_trailer_fields_never_stand_in_for_the_headers_that_authenticate(
    simulator: ClusterSimulator, webhook  # noqa: ANN001
) -> None:
    # uvicorn merges a chunked body's trailer fields into the request's headers, after the header
    # section: a signature, timestamp or token sent after the body (past a proxy that checks the header
    # section) won over the header's (RFC 9110 6.5.1: a trailer is not merged unless its field says so).
    chat = webhook()
    head, body = _signed()
    forged = b"X-Timestamp: 1\r\nX-Signature-256: sha256=" + b"0" * 64 + b"\r\nContent-Type: application/json\r\n"
    request = POST + b"HTTP/1.1\r\nHost: a\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n" + forged + b"\r\n"
    answer = _exchange(chat, request + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n" + head + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 401"), answer
    token = os.environ["TEST_MM_TOKEN"]
    form = b"user_id=mmoperator0000000000000000&team_id=mmteam&text=status"
    request = (b"POST /chatops/mattermost HTTP/1.1\r\nHost: a\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n"
               b"Content-Type: application/x-www-form-urlencoded\r\nAuthorization: Token wrong\r\n\r\n")
    answer = _exchange(chat, request + b"%x\r\n%s\r\n0\r\nAuthorization: Token %s\r\n\r\n" % (
        len(form), form, token.encode()))
    assert answer.startswith(b"HTTP/1.1 401"), answer
    assert chat.audit() == []
    # with the right headers, a trailer changes nothing
    answer = _exchange(chat, request.replace(b"Token wrong", b"Token " + token.encode())
                       + b"%x\r\n%s\r\n0\r\nAuthorization: Token wrong\r\n\r\n" % (len(form), form))
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert len(chat.audit()) == 1


def test_a_signature_binds_its_body_once_across_endpoints_restarts_and_its_whole_window(
    simulator: ClusterSimulator, webhook  # noqa: ANN001
) -> None:
    # Already right, kept as a guard: the replay marks live in Redis, not in a process, and outlive the
    # signature's window even for a timestamp ahead of the clock.
    chat = webhook()
    body = chat.slack_body("status sim")
    headers = chat.slack_headers(body)
    assert chat.post("/chatops/slack/interactive", body, headers).status_code == 400  # not a click: nothing written
    assert chat.post("/chatops/slack?another=query", body, headers).status_code == 200
    for path in ("/chatops/slack", "/chatops/%73lack", "/chatops/slack/interactive"):
        assert chat.post(path, body, headers).status_code in (400, 401), path
    ahead = int(time.time()) + 290
    assert chat.generic("status sim", timestamp=ahead).status_code == 200
    (mark,) = chat.redis.keys("rotation:chatops:seen:generic:*")
    assert chat.redis.ttl(mark) > ahead + 300 - time.time()  # kept until the timestamp is stale
    assert chat.generic("status sim", timestamp=int(time.time()) + 400).status_code == 401
    again = webhook()  # another process on the same Redis (as after a restart)
    assert again.post("/chatops/slack", body, headers).status_code == 401
    assert len(chat.audit()) == 2
