"""Fuzz the webhook's request authentication: only SignatureError, and only the exact header passes."""

from __future__ import annotations

import atheris
from _harness import run

with atheris.instrument_imports():
    from rotation.chatops.signatures import (
        SignatureError,
        generic_signature,
        slack_signature,
        verify_generic,
        verify_slack,
        verify_token,
    )

SECRET = "0123456789abcdef" * 2
NOW = 1_700_000_000


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    timestamp = fdp.ConsumeUnicodeNoSurrogates(16) if fdp.ConsumeBool() else str(NOW)
    header = fdp.ConsumeBytes(80).decode("latin-1")  # as the server decodes a header
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    for verify, sign in ((verify_slack, slack_signature), (verify_generic, generic_signature)):
        try:
            verify(SECRET, timestamp, header, body, now=NOW)
        except SignatureError:
            continue
        if header != sign(SECRET, timestamp, body):
            raise AssertionError(f"accepted a header that is not the exact signature: {header!r}")
    try:
        verify_token("abcdefghijklmnopqrstuvwxyz", header)
    except SignatureError:
        pass


if __name__ == "__main__":
    run(test_one_input)
