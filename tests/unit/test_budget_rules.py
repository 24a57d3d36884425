"""The issuance budget's pure parts: the sliding window's arithmetic, and which CA answers pause an issuer."""

from __future__ import annotations

import pytest
import requests
from acme import errors, messages

from rotation.adapters.issuers.acme.issuer import translate_error
from rotation.core.budget import window_use


def test_the_window_counts_orders_newer_than_per_and_says_when_room_returns() -> None:
    # an order at t counts until t + per (excluded)
    assert window_use([0.0, 10.0, 20.0], 100.0, 3, 100.0) == ([10.0, 20.0], 110.0)
    assert window_use([], 100.0, 3, 100.0) == ([], None)
    # spent: room returns when enough orders left; with a budget lowered below the orders in the window,
    # when the orders over it and one more have left
    assert window_use([10.0, 20.0, 30.0], 50.0, 3, 100.0) == ([10.0, 20.0, 30.0], 110.0)
    assert window_use([10.0, 20.0, 30.0], 50.0, 2, 100.0) == ([10.0, 20.0, 30.0], 120.0)


def _response(status: int) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    return response


@pytest.mark.parametrize(("exc", "pauses"), [
    (messages.Error.with_code("rateLimited", detail="too many new orders"), True),  # newAccount, newOrder
    (errors.IssuanceError(messages.Error.with_code("rateLimited", detail="slow down")), True),  # finalize
    (errors.ClientError(_response(429)), True),  # a 429 without a problem document
    (messages.Error.with_code("serverInternal", detail="down"), False),
    (messages.Error.with_code("caa", detail="forbidden"), False),
    (errors.ClientError(_response(503)), False),
])
def test_only_the_cas_rate_limit_pauses_the_issuer(exc: Exception, pauses: bool) -> None:
    error = translate_error(exc, context="ACME x", retry_after_header="120")
    assert error.rate_limited is pauses
