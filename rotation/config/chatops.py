"""The ``chatops:`` section of the inventory: who may do what from chat, and the secrets."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from rotation.config._base import Duration, _exactly_one, _secret, _Strict

ChatPermission = Literal["read", "rotate"]


class ChatOpsGrant(_Strict):
    """One allow-list entry: an immutable chat user id (never a display name), optionally pinned
    to a team/workspace, a channel and a platform, with permissions per cluster (``*``: any)."""

    user: str = Field(min_length=1)
    team: str | None = None
    channel: str | None = None
    platform: Literal["slack", "mattermost", "generic"] | None = None
    clusters: dict[str, tuple[ChatPermission, ...]]


class SlackSettings(_Strict):
    signing_secret_env: str | None = None
    signing_secret_file: Path | None = None
    team_id: str | None = None  # pin the workspace: requests from another one are refused
    api_app_id: str | None = None  # pin the app

    @model_validator(mode="after")
    def _one_source(self) -> SlackSettings:
        _exactly_one(self.signing_secret_env, self.signing_secret_file, "signing_secret")
        return self

    def signing_secret(self) -> str:
        source = _exactly_one(self.signing_secret_env, self.signing_secret_file, "signing_secret")
        return source.read("chatops.slack.signing_secret")

    def foreign(self, team: str | None, api_app_id: str | None) -> bool:
        """A request from a workspace or app this service is not pinned to."""
        return bool((self.team_id and team != self.team_id) or (self.api_app_id and api_app_id != self.api_app_id))


class MattermostSettings(_Strict):
    token_env: str | None = None
    token_file: Path | None = None
    team_id: str | None = None  # pin the team

    @model_validator(mode="after")
    def _one_source(self) -> MattermostSettings:
        _exactly_one(self.token_env, self.token_file, "token")
        return self

    def token(self) -> str:
        return _exactly_one(self.token_env, self.token_file, "token").read("chatops.mattermost.token")


class GenericSettings(_Strict):
    secret_env: str | None = None
    secret_file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> GenericSettings:
        _exactly_one(self.secret_env, self.secret_file, "secret")
        return self

    def secret(self) -> str:
        return _exactly_one(self.secret_env, self.secret_file, "secret").read("chatops.generic.secret")


class NotifySettings(_Strict):
    """The notification webhook (Slack/Mattermost incoming webhook or any JSON receiver).
    The URL is usually a secret itself: prefer url_env or url_file to url."""

    url_env: str | None = None
    url_file: Path | None = None
    url: str | None = None

    def resolve(self) -> str | None:
        if self.url:
            return self.url
        source = _secret(self.url_env, self.url_file)
        return source.read("chatops.notify.url") if source else None


class ChatOpsSettings(_Strict):
    allow: tuple[ChatOpsGrant, ...] = ()
    slack: SlackSettings | None = None
    mattermost: MattermostSettings | None = None
    generic: GenericSettings | None = None
    notify: NotifySettings | None = None
    confirm_ttl: Duration = timedelta(minutes=5)
    # Where progress and results may be posted back (a response_url elsewhere is not used).
    reply_url_prefixes: tuple[str, ...] = ("https://hooks.slack.com/",)

    def notify_url(self) -> str | None:
        return self.notify.resolve() if self.notify else None


