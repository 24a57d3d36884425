"""What a rotation can target, by name: a cluster certificate slot, the tool's own client certificate,
or one database's own certificate. Pure naming rules, shared by the inventory, the pipeline, chat and
the state (the name is the record's ``cert_name`` and the lock's and the state's key).

* ``cm``, ``api``, ``proxy``, ``syncer``, ``metrics_exporter``: RS's slots (``CertName``)
* ``rest_client``: the client certificate the tool logs in with (certificate login, RS 7.8.4+)
* ``ldap_client``: the client certificate RS presents to LDAP servers (bulk PUT from RS 7.22.2, update_cert before)
* ``db:<name or uid>``: a database's own certificate (RS 8.0.2+), as the inventory names it

The ``db:`` prefix keeps database names apart from the slots: no slot name has a colon, so a
database called ``proxy`` is ``db:proxy`` and never shares a lock or a state key with the slot.
"""

from __future__ import annotations

import re

from rotation.core.model import CertName

REST_CLIENT = "rest_client"
LDAP_CLIENT = "ldap_client"
DATABASE_PREFIX = "db:"
# The ``cert_name`` of a `rotation policy apply` record (the inventory's key): not a certificate, never locked
TLS_POLICY = "tls_policy"
# What `rotation policy apply` names itself in the locks it holds (a rotation that meets it tries again shortly)
POLICY_APPLY_OWNER = "policy apply of tls_policy"
DATABASE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")  # a database's name or uid in the inventory


def database_target(key: str) -> str:
    return f"{DATABASE_PREFIX}{key}"


def database_key(name: str) -> str | None:
    """The inventory key of a ``db:<key>`` target name; None for any other name."""
    if not name.startswith(DATABASE_PREFIX):
        return None
    key = name[len(DATABASE_PREFIX):]
    return key if DATABASE_KEY.match(key) else None


def shared_locks(name: str) -> tuple[str, ...]:
    """The other locks a rotation of ``name`` takes after its own (each tried, never waited for). A database's
    own certificate shares its endpoints with ``proxy``: a database without one presents proxy, and its
    rollback's DELETE falls back to the proxy current *then*. So one cluster never rotates ``proxy`` and a
    database's certificate at once (nor two databases' certificates)."""
    return (CertName.PROXY.value,) if name.startswith(DATABASE_PREFIX) else ()


def target_name(text: str) -> CertName | str:
    """A target name as typed (chat, CLI): a slot (case-insensitive), ``rest_client``, or ``db:<key>``;
    ValueError for anything else."""
    lowered = text.lower()
    try:
        return CertName(lowered)
    except ValueError:
        pass
    if lowered in (REST_CLIENT, LDAP_CLIENT):
        return lowered
    if lowered.startswith(DATABASE_PREFIX):
        key = database_key(DATABASE_PREFIX + text[len(DATABASE_PREFIX):])  # the database's name keeps its case
        if key is not None:
            return database_target(key)
    known = ", ".join(c.value for c in CertName)
    raise ValueError(f"not a certificate name (known: {known}, {REST_CLIENT}, {LDAP_CLIENT}, "
                     f"{DATABASE_PREFIX}<database>)")


__all__ = ["DATABASE_PREFIX", "LDAP_CLIENT", "POLICY_APPLY_OWNER", "REST_CLIENT", "TLS_POLICY", "database_key",
           "database_target", "shared_locks", "target_name"]
