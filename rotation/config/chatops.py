"""The ``chatops:`` section of the inventory: who may do what from chat, and the secrets.

A platform is served only with a secret of real length, checked when the inventory is read
(``rotation webhook`` refuses to start otherwise, naming the variable or file): Slack signing
secrets are 32 hexadecimal characters, Mattermost command tokens 26 characters ``[a-z0-9]``,
and a generic HMAC secret has at least 32 bytes. Reply URL prefixes are parsed here too.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from rotation.config._base import Duration, SecretSource, _exactly_one, _secret, _Strict
from rotation.config.reply_urls import ReplyPrefix
from rotation.core.errors import ConfigError

GENERIC_SECRET_MIN = 32  # bytes


def _checked(source: SecretSource, where: str, shape: re.Pattern[str] | None, what: str) -> str:
    value = source.read(where)
    fits = shape.fullmatch(value) if shape is not None else len(value.encode()) >= GENERIC_SECRET_MIN
    if not fits:
        raise ConfigError(f"{where}: {source.describe()} does not hold {what} (the value read has "
                          f"{len(value.encode())} bytes)")
    return value

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
        return _checked(source, self.where("chatops.slack.signing_secret"), re.compile(r"[0-9a-f]{32}"),
                        "Slack's signing secret (32 hexadecimal characters, from the app's Basic Information)")

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
        return _checked(_exactly_one(self.token_env, self.token_file, "token"), self.where("chatops.mattermost.token"),
                        re.compile(r"[a-z0-9]{26}"), "the slash command's token (26 characters a-z 0-9)")


class GenericSettings(_Strict):
    secret_env: str | None = None
    secret_file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> GenericSettings:
        _exactly_one(self.secret_env, self.secret_file, "secret")
        return self

    def secret(self) -> str:
        return _checked(_exactly_one(self.secret_env, self.secret_file, "secret"),
                        self.where("chatops.generic.secret"), None,
                        f"a secret of at least {GENERIC_SECRET_MIN} bytes (`openssl rand -hex 32` makes one)")


class NotifySettings(_Strict):
    """The notification webhook (Slack/Mattermost incoming webhook or any JSON receiver).
    The URL is usually a secret itself: prefer url_env or url_file to url."""

    url_env: str | None = None
    url_file: Path | None = None
    url: str | None = Field(default=None, repr=False)  # a bearer URL: never in a repr

    def resolve(self) -> str | None:
        """The URL, or None: the channel is optional, so an empty ``url_env`` means none (compose
        passes ``${NOTIFY_WEBHOOK_URL:-}``)."""
        if self.url:
            return self.url
        if self.url_env and not os.environ.get(self.url_env, "x").strip():
            return None
        source = _secret(self.url_env, self.url_file)
        return source.read(self.where("chatops.notify.url")) if source else None


MIN_RATE_WINDOW = timedelta(seconds=1)


class RateLimit(_Strict):
    """How many commands that queue work (``check``, ``rotate`` with its dry runs and confirmation
    prompts, ``confirm``) one caller (platform, team, user id) may send per window. It cannot be
    turned off: a chat account is one leaked session away from flooding the workers and the CA."""

    commands: int
    per: Duration

    @field_validator("commands", mode="before")
    @classmethod
    def _some(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{value!r}: must be a whole number of at least 1 (the limit cannot be turned off; "
                             "to allow more, raise it)")
        return value

    @field_validator("per")
    @classmethod
    def _long_enough(cls, value: timedelta) -> timedelta:
        if value < MIN_RATE_WINDOW:
            raise ValueError(f"{value.total_seconds()}s: must be at least 1s")
        return value


def _rate_limit(value: object) -> object:
    if value is None or value == 0 or value is False:
        raise ValueError("the rate limit cannot be turned off; give {commands: N, per: DURATION} "
                         "(default: {commands: 10, per: 1m}), with a higher N to allow more")
    return value


class ChatOpsSettings(_Strict):
    allow: tuple[ChatOpsGrant, ...] = ()
    slack: SlackSettings | None = None
    mattermost: MattermostSettings | None = None
    generic: GenericSettings | None = None
    notify: NotifySettings | None = None
    confirm_ttl: Duration = timedelta(minutes=5)
    rate_limit: Annotated[RateLimit, BeforeValidator(_rate_limit)] = RateLimit(commands=10, per=timedelta(minutes=1))
    # Where progress and results may be posted back (a response_url elsewhere is not used): https,
    # a host, an optional port and a path ending in "/", parsed when the inventory loads.
    reply_url_prefixes: tuple[Annotated[ReplyPrefix, BeforeValidator(ReplyPrefix.parse)], ...] = (
        ReplyPrefix.parse("https://hooks.slack.com/"),)

    def notify_url(self) -> str | None:
        return self.notify.resolve() if self.notify else None


