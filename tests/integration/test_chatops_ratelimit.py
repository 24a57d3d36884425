"""The per-caller rate limit of chat commands that queue work (``chatops.rate_limit``), through the real
webhook: the command over the limit is answered, audited as refused and queues nothing; other callers
are not affected; a replay neither passes nor moves the window; once the window (the counter's TTL in
Redis) ends, the caller may act again. No worker runs: whatever is queued stays in the Celery list."""

from __future__ import annotations

from support.chat import OPERATOR, READER, Chat, nothing_queued
from support.processes import wait_for

from rotation.simulator import ClusterSimulator

COUNTERS = "rotation:chatops:rate:*"


def _counters(chat: Chat) -> dict[str, str]:
    return {key: chat.redis.get(key) for key in chat.redis.keys(COUNTERS)}


def test_a_caller_over_the_limit_is_refused_and_queues_nothing_until_the_window_ends(
    simulator: ClusterSimulator, webhook
) -> None:
    chat = webhook(rate_limit={"commands": 3, "per": "1m"})
    first = chat.slack_body("check sim")
    first_headers = chat.slack_headers(first)
    assert chat.post("/chatops/slack", first, first_headers).json()["text"].startswith("Checking sim now")
    assert "queued as" in chat.slack("rotate sim proxy --dry-run").json()["text"]
    assert chat.slack("check sim").json()["text"].startswith("Checking sim now")
    assert chat.redis.llen("rotation") == 3

    # The fourth, whatever it is (a rotation's claim, a dry run, a check), under any display name.
    refused = chat.slack_body("rotate sim proxy")
    refused_headers = chat.slack_headers(refused)
    answer = chat.post("/chatops/slack", refused, refused_headers).json()["text"]
    assert "slow down: 3 commands per 1m; try again in " in answer, answer
    assert 1 <= int(answer.split("try again in ")[1].split(" s")[0]) <= 60
    for text, name in (("rotate sim proxy --dry-run", "someone"), ("check sim", "another-name")):
        assert "slow down" in chat.slack(text, user_name=name).json()["text"]
    assert chat.redis.llen("rotation") == 3 and chat.redis.keys("rotation:pending:*") == []
    audit = chat.audit()  # newest first
    assert [a["decision"] for a in audit[:3]] == ["refused"] * 3 and audit[2]["command"] == "rotate sim proxy"
    assert all(a["reason"].startswith("slow down") and a["task_ids"] == [] for a in audit[:3])
    # Reads stay answered; replays are refused and count nothing.
    assert "sim" in chat.slack("status sim").json()["text"]
    assert chat.post("/chatops/slack", refused, refused_headers).status_code == 401
    assert chat.post("/chatops/slack", first, first_headers).status_code == 401
    assert list(_counters(chat).values()) == ["3"]
    (operator,) = _counters(chat)

    # Other callers have their own budgets (Mattermost has no replay marks: counted all the same).
    assert chat.slack("check sim", user=READER).json()["text"].startswith("Checking sim now")
    assert "queued as" in chat.generic("rotate sim proxy --dry-run").json()["text"]
    for _ in range(3):
        assert chat.mattermost("check sim").json()["text"].startswith("Checking sim now")
    assert "slow down: 3 commands per 1m" in chat.mattermost("check sim").json()["text"]
    assert chat.redis.llen("rotation") == 8
    assert sorted(_counters(chat).values()) == ["1", "1", "3", "3"]

    # The window is the counter's TTL; when it runs out (shortened here), the operator may act again.
    assert 0 < chat.redis.pttl(operator) <= 60_000
    chat.redis.pexpire(operator, 1)
    wait_for(lambda: not chat.redis.exists(operator), 5, 0.01, what="the window to end")
    assert chat.slack("check sim").json()["text"].startswith("Checking sim now")
    assert chat.redis.get(operator) == "1" and chat.redis.llen("rotation") == 9
    # The refused request kept its replay mark: it does not get through now that there is room.
    assert chat.post("/chatops/slack", refused, refused_headers).status_code == 401
    assert chat.redis.get(operator) == "1" and chat.redis.keys("rotation:pending:*") == []


def test_a_confirmation_over_the_limit_is_refused_and_its_nonce_is_kept(
    simulator: ClusterSimulator, webhook
) -> None:
    chat = webhook(rate_limit={"commands": 1, "per": "1m"}, confirm=True)
    nonce = chat.slack("rotate sim cm").json()["blocks"][1]["elements"][0]["value"]
    answer = chat.click(nonce).json()["text"]
    assert "slow down: 1 command per 1m" in answer, answer
    assert len(chat.redis.keys("rotation:chatops:nonce:*")) == 1  # not redeemed: it may be clicked later
    assert "slow down" in chat.slack(f"confirm {nonce}").json()["text"]
    assert len(chat.redis.keys("rotation:chatops:nonce:*")) == 1
    assert chat.slack("status sim").status_code == 200
    nothing_queued(chat, simulator)
    assert [a["decision"] for a in chat.audit()] == ["allowed", "refused", "refused", "confirmation asked"]
    assert OPERATOR in {a["user"] for a in chat.audit()}
