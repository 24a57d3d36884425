"""Replies and notifications: the 5 posts / 30 minutes budget of a response_url (counted in the real
Redis), the fallback to the notification webhook, and which rotations are broadcast."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from support.processes import RedisServer

from rotation.adapters.notify import Notifier, ReplyBudget, host_of, reply_ref
from rotation.adapters.secrets import SecretBox
from rotation.chatops.answers import Answer
from rotation.chatops.reporter import RotationReporter
from rotation.core.model import Outcome, RotationRecord, Step

REPLY = "https://hooks.slack.com/commands/T1/123/secret-token"
NOTIFY = "https://hooks.slack.com/services/T1/B1/other-secret"


@pytest.fixture
def posts() -> list[tuple[str, dict[str, Any]]]:
    return []


@pytest.fixture
def notifier(redis_server: RedisServer, posts: list) -> Notifier:
    client = redis_server.client()
    client.flushall()
    return Notifier(ReplyBudget(client, SecretBox([SecretBox.generate_key().encode()])), NOTIFY,
                    post=lambda url, body: posts.append((url, body)))


def record(outcome: Outcome, trigger: str = "chatops") -> RotationRecord:
    now = datetime.now(UTC)
    return RotationRecord(id="r1", cluster="east", cert_name="proxy", trigger=trigger, started_at=now,
                          finished_at=now, outcome=outcome, old_fingerprint="aa" * 32, new_fingerprint="bb" * 32,
                          nodes={"proxy@node1 10.0.0.1:443": {"before": "aa" * 32, "after": "bb" * 32}})


def test_five_posts_then_the_notification_channel(notifier: Notifier, posts: list) -> None:
    ref = notifier.budget.register(REPLY)
    for n in range(4):
        assert notifier.reply(ref, Answer(f"progress {n}"), final=False) is (n < 4)
    assert not notifier.reply(ref, Answer("progress 5"), final=False, fallback=False)  # the last is the result's
    assert notifier.reply(ref, Answer("result"))
    assert [u for u, _ in posts] == [REPLY] * 5
    assert notifier.reply(ref, Answer("late result"))  # budget spent: goes to the notification webhook
    assert posts[-1] == (NOTIFY, {"text": "late result"})


def test_an_unregistered_or_expired_reply_url_is_not_used(notifier: Notifier, posts: list) -> None:
    assert notifier.reply(reply_ref(REPLY), Answer("result"))  # no window open (30 minutes passed): fallback
    assert [u for u, _ in posts] == [NOTIFY]
    assert not notifier.reply(reply_ref(REPLY), Answer("progress"), final=False)


def test_tasks_carry_a_reference_and_the_url_is_stored_sealed(notifier: Notifier, posts: list) -> None:
    ref = notifier.budget.register(REPLY)
    assert ref == reply_ref(REPLY) and "secret-token" not in ref
    stored = notifier.budget.redis.hgetall(f"rotation:chatops:reply:{ref}")
    assert "secret-token" not in repr(stored) and stored["posts"] == "0"
    assert notifier.budget.url(ref) == REPLY
    other_key = ReplyBudget(notifier.budget.redis, SecretBox([SecretBox.generate_key().encode()]))
    assert other_key.url(ref) is None  # sealed with a key we do not hold: as good as expired
    assert Notifier(other_key, NOTIFY, post=lambda u, b: posts.append((u, b))).reply(ref, Answer("result"))
    assert [u for u, _ in posts] == [NOTIFY]


def test_progress_is_skipped_when_a_command_queued_several_rotations(notifier: Notifier, posts: list) -> None:
    ref = notifier.budget.register(REPLY, progress=False)
    assert not notifier.reply(ref, Answer("progress"), final=False)
    assert notifier.reply(ref, Answer("result"))
    assert [u for u, _ in posts] == [REPLY]


def test_a_failing_receiver_never_raises(redis_server: RedisServer) -> None:
    def boom(url: str, body: dict) -> None:
        raise ConnectionError("refused")

    box = SecretBox([SecretBox.generate_key().encode()])
    quiet = Notifier(ReplyBudget(redis_server.client(), box), NOTIFY, post=boom)
    assert quiet.reply(quiet.budget.register(REPLY), Answer("x")) is False
    assert quiet.notify(Answer("x")) is False


@pytest.mark.parametrize(("outcome", "trigger", "reply", "broadcast"), [
    (Outcome.VERIFIED, "chatops", True, False),
    (Outcome.VERIFIED, "beat", False, True),
    (Outcome.ROLLED_BACK, "chatops", True, True),
    (Outcome.FAILED, "cli", False, True),
    (Outcome.REFUSED, "beat", False, True),
])
def test_who_hears_about_a_rotation(notifier: Notifier, posts: list, outcome: Outcome, trigger: str, reply: bool,
                                    broadcast: bool) -> None:
    reporter = RotationReporter(notifier, notifier.budget.register(REPLY) if reply else None)
    rec = record(outcome, trigger)
    reporter.progress(rec, Step(name="push", started_at=rec.started_at))
    reporter.finished(rec)
    targets = [u for u, _ in posts]
    assert targets.count(REPLY) == (2 if reply else 0)  # push progress + result
    assert (NOTIFY in targets) is broadcast
    assert "aa" * 8 + " → " + "bb" * 8 in posts[-1][1]["text"]


def test_only_the_host_of_a_url_is_ever_logged(notifier: Notifier, caplog: pytest.LogCaptureFixture) -> None:
    assert host_of(REPLY) == "hooks.slack.com" and host_of("not a url") == "?"
    failing = Notifier(notifier.budget, None, post=lambda u, b: (_ for _ in ()).throw(OSError("x")))
    failing.reply(notifier.budget.register(REPLY), Answer("x"))
    assert "secret-token" not in caplog.text and "hooks.slack.com" in caplog.text


def test_a_chat_rotation_waiting_for_its_issuer_says_so_once_to_its_caller(notifier: Notifier, posts: list) -> None:
    """A queued rotation that found the issuer's budget spent is retried for up to 40 min: its caller heard
    nothing, and the result came after the response_url's 30 minutes (to the channel, not the caller)."""
    reporter = RotationReporter(notifier, notifier.budget.register(REPLY))
    waiting = record(Outcome.REFUSED)
    waiting.error = waiting.blocked_by = "issuer le's budget is spent until X; nothing was ordered; the worker tries"
    waiting.steps = [Step(name="issue", started_at=waiting.started_at, finished_at=waiting.started_at, ok=False)]
    reporter.retrying(waiting, retries=0)
    reporter.retrying(waiting, retries=1)  # once: a response_url takes 5 posts
    (said,) = posts
    assert said[0] == REPLY and "issuer le's budget is spent until X" in said[1]["text"], said
    assert ":hourglass:" in said[1]["text"] and "r1" in said[1]["text"]
    other = record(Outcome.FAILED)  # a CA outage retried: the result says it, as before
    other.retryable = True
    reporter.retrying(other, retries=0)
    assert len(posts) == 1
