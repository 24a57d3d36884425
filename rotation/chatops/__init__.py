"""Chat-ops: the pure parts of the webhook (no web framework here).

grammar      text -> Command, or UsageError with a short usage answer
signatures   Slack v0, generic HMAC, Mattermost token; exact header bytes, constant time, clock injected
bodies       the form and JSON parsers of verified bodies (total: a value or BadBody)
authz        the allow-list: user (+ team, channel, platform) -> read/rotate per cluster
confirm      single-use nonces for dangerous commands (Redis SET NX / GETDEL)
audit        every authenticated command, allowed or refused
replay       a request's replay mark, set by its first write to Redis
answers      message texts and Block Kit payloads
handler      respond()/handle()/click(): the use case (coroutines), dependencies injected
"""

from rotation.chatops.answers import Answer
from rotation.chatops.audit import AuditRecord
from rotation.chatops.authz import AllowList, Caller, Permission
from rotation.chatops.confirm import ConfirmationError, Confirmations
from rotation.chatops.grammar import Command, UsageError, parse
from rotation.chatops.handler import ChatOps, ChatTasks, click, handle, respond
from rotation.chatops.signatures import SignatureError, verify_generic, verify_slack, verify_token

__all__ = [
    "AllowList",
    "Answer",
    "AuditRecord",
    "Caller",
    "ChatOps",
    "ChatTasks",
    "Command",
    "ConfirmationError",
    "Confirmations",
    "Permission",
    "SignatureError",
    "UsageError",
    "click",
    "handle",
    "parse",
    "respond",
    "verify_generic",
    "verify_slack",
    "verify_token",
]
