"""The allow-list: who may read or rotate which cluster from chat. Deny by default.

A grant names an immutable user id (Slack ``U…``/``W…``, a Mattermost user id, a generic
caller's id), optionally pinned to a team, a channel and a platform, and lists permissions
per cluster; ``*`` stands for every cluster. Matching grants add up (there are no denies).
``rotate`` does not imply ``read``: list both when both are meant.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

WILDCARD = "*"


class Permission(enum.StrEnum):
    READ = "read"
    ROTATE = "rotate"


@dataclass(frozen=True)
class Caller:
    """Who sent a command, as the (verified) platform says."""

    platform: str  # slack, mattermost, generic
    user: str
    team: str | None = None
    channel: str | None = None
    user_name: str | None = None  # for display in the audit only; never used to decide

    @property
    def label(self) -> str:
        return f"{self.platform}:{self.team + '/' if self.team else ''}{self.user}"


@dataclass(frozen=True)
class Grant:
    user: str
    clusters: Mapping[str, frozenset[Permission]]
    team: str | None = None
    channel: str | None = None
    platform: str | None = None

    def matches(self, caller: Caller) -> bool:
        return (
            self.user == caller.user
            and (self.team is None or self.team == caller.team)
            and (self.channel is None or self.channel == caller.channel)
            and (self.platform is None or self.platform == caller.platform)
        )


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


@dataclass(frozen=True)
class AllowList:
    grants: tuple[Grant, ...] = field(default_factory=tuple)

    @classmethod
    def from_settings(cls, entries: Iterable[object]) -> AllowList:
        """From ``Inventory.chatops.allow`` (ChatOpsGrant models or plain dicts)."""
        grants = []
        for entry in entries:
            data = entry if isinstance(entry, Mapping) else entry.model_dump()  # type: ignore[attr-defined]
            grants.append(Grant(
                user=data["user"],
                team=data.get("team"),
                channel=data.get("channel"),
                platform=data.get("platform"),
                clusters={name: frozenset(Permission(p) for p in perms) for name, perms in data["clusters"].items()},
            ))
        return cls(tuple(grants))

    def permissions(self, caller: Caller, cluster: str) -> frozenset[Permission]:
        found: set[Permission] = set()
        for grant in self.grants:
            if grant.matches(caller):
                found |= grant.clusters.get(cluster, frozenset()) | grant.clusters.get(WILDCARD, frozenset())
        return frozenset(found)

    def check(self, caller: Caller, cluster: str, permission: Permission) -> Decision:
        if not any(grant.matches(caller) for grant in self.grants):
            return Decision(False, f"user {caller.user} is not on the allow-list")
        if permission in self.permissions(caller, cluster):
            return Decision(True, f"{permission} on {cluster} granted")
        return Decision(False, f"user {caller.user} may not {permission} {cluster}")

    def readable(self, caller: Caller, clusters: Iterable[str]) -> list[str]:
        return [c for c in clusters if Permission.READ in self.permissions(caller, c)]


__all__ = ["AllowList", "Caller", "Decision", "Grant", "Permission", "WILDCARD"]
