"""Chat-ops authorization as a member of the workspace sees it: valid signatures (the platform signs
whatever its users send), over the real webhook, Redis and the simulator."""

from __future__ import annotations

from pathlib import Path

import yaml
from support.chat import OPERATOR, STRANGER, nothing_queued

from rotation.simulator import ClusterSimulator


def _add_cluster(inventory_path: Path, name: str) -> None:
    """A second cluster, a copy of ``sim``, that the operator's grant does not name."""
    data = yaml.safe_load(inventory_path.read_text())
    data["clusters"][name] = dict(data["clusters"]["sim"])
    inventory_path.write_text(yaml.safe_dump(data))


def test_a_cluster_the_caller_may_not_see_answers_like_one_that_does_not_exist(
    simulator: ClusterSimulator, webhook, inventory_path: Path
) -> None:
    # OPERATOR may read and rotate sim only: whether `hidden` exists is none of their business.
    _add_cluster(inventory_path, "hidden")
    chat = webhook()
    for verb in ("status {}", "history {}", "history {} proxy", "check {}", "rotate {} proxy",
                 "rotate {} all", "rotate {} proxy --dry-run"):
        hidden = chat.slack(verb.format("hidden")).json()["text"]
        ghost = chat.slack(verb.format("ghost")).json()["text"]
        assert "Refused" in hidden and hidden.replace("hidden", "ghost") == ghost, (verb, hidden, ghost)
    assert "hidden" not in chat.slack("status").json()["text"]
    nothing_queued(chat, simulator)


def test_a_confirmation_is_completed_only_in_the_channel_that_asked_for_it(
    simulator: ClusterSimulator, webhook
) -> None:
    # The operator's grant is not pinned to a channel, so only the confirmation can hold it to one:
    # a prompt asked in #ops and confirmed from a DM (or any other channel) is refused there.
    chat = webhook(confirm=True)

    def prompt() -> str:
        return chat.slack("rotate sim cm").json()["blocks"][1]["elements"][0]["value"]

    assert "another channel" in chat.click(prompt(), channel="D0DIRECT").json()["text"]
    assert "another channel" in chat.slack(f"confirm {prompt()}", channel_id="D0DIRECT").json()["text"]
    nothing_queued(chat, simulator)
    assert "queued as" in chat.click(prompt()).json()["text"]  # the same channel still works


def test_names_a_user_can_change_decide_nothing(simulator: ClusterSimulator, webhook) -> None:
    # user_name (Slack's deprecated handle, Mattermost's username) is the user's to change: a stranger
    # calling themselves the operator, or giving the operator's id as their name, is still a stranger.
    chat = webhook()
    for name in (OPERATOR, "someone"):
        answer = chat.slack("rotate sim proxy", user=STRANGER, user_name=name).json()["text"]
        assert "not on the allow-list" in answer, answer
    answer = chat.generic("rotate sim proxy", user="ops-scripts", user_name="ops-script").json()["text"]
    assert "not on the allow-list" in answer, answer
    # The operator's id from another workspace is not the operator (the workspace is pinned).
    other = chat.slack_body("status sim", team_id="T0THER")
    assert chat.post("/chatops/slack", other, chat.slack_headers(other)).status_code == 403
    nothing_queued(chat, simulator)
