"""The service's state in Redis: records, history, per-certificate state, leased locks, secrets.

Key layout (prefix ``rotation:``)::

    record:<id>                    JSON rotation record (fingerprints, never keys)
    history / history:<c>:<cert>   sorted sets of record ids by start time
    state:<c>:<cert>               hash: served fingerprints per node, not_after, health, last scan,
                                   last rotation, failures, next_attempt (per-certificate backoff)
    scan:<c>                       hash: last successful scan, last error, last policy audit
    index:state|scan|pending       sets of the keys above (listing them never SCANs the keyspace)
    lock:<c>:<cert>                lease of the one running rotation (renewed while it runs)
    pending:<c>:<cert>             rotation id queued or running (refuses a second request)
    secret:<key>                   Fernet ciphertext (previous key for rollback, ACME accounts)
    stats                          hash: rotation counts and duration sums for the metrics
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import redis

from rotation.errors import RotationInProgress
from rotation.model import RotationRecord
from rotation.secrets import SecretBox

PREFIX = "rotation:"
HISTORY_KEEP = 2000
DURATION_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, float("inf"))


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=10, socket_connect_timeout=5,
                                health_check_interval=30, retry_on_timeout=True)


def _key(*parts: str) -> str:
    return PREFIX + ":".join(parts)


class RedisStore:
    """Records and per-certificate state. Implements ``rotation.store.RecordStore``."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    # --- records -----------------------------------------------------------------------
    def save(self, record: RotationRecord) -> None:
        score = record.started_at.timestamp()
        pipe = self.redis.pipeline()
        pipe.set(_key("record", record.id), json.dumps(record.to_dict(), sort_keys=True))
        pipe.zadd(_key("history"), {record.id: score})
        pipe.zadd(_key("history", record.cluster, record.cert_name), {record.id: score})
        pipe.zremrangebyrank(_key("history"), 0, -HISTORY_KEEP - 1)
        pipe.execute()

    def get(self, rotation_id: str) -> RotationRecord | None:
        raw = self.redis.get(_key("record", rotation_id))
        return RotationRecord.from_dict(json.loads(raw)) if raw else None

    def history(
        self, cluster: str | None = None, cert_name: str | None = None, limit: int = 50
    ) -> list[RotationRecord]:
        if cluster and cert_name:
            ids = self.redis.zrevrange(_key("history", cluster, cert_name), 0, limit - 1)
        else:
            ids = self.redis.zrevrange(_key("history"), 0, -1 if cluster or cert_name else limit - 1)
        raws = self.redis.mget([_key("record", i) for i in ids]) if ids else []
        records = [RotationRecord.from_dict(json.loads(r)) for r in raws if r]
        records = [r for r in records if (cluster is None or r.cluster == cluster)
                   and (cert_name is None or r.cert_name == cert_name)]
        return records[:limit]

    # --- per-certificate state ------------------------------------------------------------
    def update_state(self, cluster: str, cert_name: str, **fields: Any) -> None:
        encoded = _encode(fields)
        if encoded:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hset(_key("state", cluster, cert_name), mapping=encoded)
            pipe.sadd(_key("index", "state"), f"{cluster}:{cert_name}")
            pipe.execute()

    def save_scan(self, cluster: str, states: dict[str, dict[str, Any]]) -> dict[str, str | None]:
        """Store one scan of a cluster in a single round trip; return each certificate's
        ``next_attempt`` (set while it backs off after failures)."""
        pipe = self.redis.pipeline(transaction=False)
        for cert_name in states:
            pipe.hget(_key("state", cluster, cert_name), "next_attempt")
        for cert_name, fields in states.items():
            pipe.hset(_key("state", cluster, cert_name), mapping=_encode(fields))
            pipe.sadd(_key("index", "state"), f"{cluster}:{cert_name}")
        pipe.hset(_key("scan", cluster), mapping={"last_success": datetime.now(UTC).isoformat(), "last_error": ""})
        pipe.sadd(_key("index", "scan"), cluster)
        results = pipe.execute()
        return dict(zip(states, results[: len(states)], strict=True))

    def clear_state_fields(self, cluster: str, cert_name: str, *names: str) -> None:
        if names:
            self.redis.hdel(_key("state", cluster, cert_name), *names)

    def state(self, cluster: str, cert_name: str) -> dict[str, Any]:
        raw = self.redis.hgetall(_key("state", cluster, cert_name))
        return {k: _maybe_json(v) for k, v in raw.items()}

    def all_states(self) -> dict[tuple[str, str], dict[str, Any]]:
        # An index set, not SCAN: SCAN walks the whole keyspace (replay caches, broker keys...).
        members = sorted(self.redis.smembers(_key("index", "state")))
        values = self._pipelined("hgetall", [_key("state", m) for m in members])
        return {tuple(m.split(":", 1)): {k: _maybe_json(v) for k, v in raw.items()}  # type: ignore[misc]
                for m, raw in zip(members, values, strict=True) if raw}

    def _pipelined(self, command: str, keys: list[str]) -> list[Any]:
        """One round trip for many reads (status pages read every certificate at once)."""
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            getattr(pipe, command)(key)
        return pipe.execute() if keys else []

    def record_scan(self, cluster: str, *, ok: bool, error: str | None = None) -> None:
        now = datetime.now(UTC).isoformat()
        fields = {"last_success": now, "last_error": ""} if ok else {"last_failure": now, "last_error": error or ""}
        self._save_scan_fields(cluster, fields)

    def _save_scan_fields(self, cluster: str, fields: dict[str, Any]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(_key("scan", cluster), mapping=fields)
        pipe.sadd(_key("index", "scan"), cluster)
        pipe.execute()

    def record_policy_audit(self, cluster: str, *, drift: int, errors: int, summary: str) -> None:
        self._save_scan_fields(cluster, {
            "policy_audit": datetime.now(UTC).isoformat(), "policy_drift": drift, "policy_errors": errors,
            "policy_summary": summary,
        })

    def scans(self) -> dict[str, dict[str, str]]:
        clusters = sorted(self.redis.smembers(_key("index", "scan")))
        values = self._pipelined("hgetall", [_key("scan", c) for c in clusters])
        return {cluster: raw for cluster, raw in zip(clusters, values, strict=True) if raw}

    # --- statistics for the metrics -----------------------------------------------------
    def count_rotation(self, record: RotationRecord) -> None:
        if record.finished_at is None:
            return
        seconds = (record.finished_at - record.started_at).total_seconds()
        label = f"{record.cluster}|{record.cert_name}|{record.outcome}"
        pipe = self.redis.pipeline()
        pipe.hincrby(_key("stats"), f"count|{label}", 1)
        pipe.hincrbyfloat(_key("stats"), f"duration_sum|{record.outcome}", seconds)
        pipe.hincrby(_key("stats"), f"duration_count|{record.outcome}", 1)
        for bound in DURATION_BUCKETS:
            if seconds <= bound:
                pipe.hincrby(_key("stats"), f"duration_bucket|{record.outcome}|{bound}", 1)
        pipe.execute()

    def stats(self) -> dict[str, str]:
        return self.redis.hgetall(_key("stats"))

    # --- queue markers -------------------------------------------------------------------
    def claim_pending(self, cluster: str, cert_name: str, rotation_id: str, ttl_seconds: int) -> str | None:
        """Mark (cluster, cert) as queued; returns the id already holding it, or None if we got it."""
        return self.redis.eval(*claim_pending_command(cluster, cert_name, rotation_id, ttl_seconds)) or None

    def move_pending(self, cluster: str, cert_name: str, old_id: str, new_id: str) -> None:
        """A retry continues under a new id: point the marker at it (only if it is still ours)."""
        self.redis.eval(_MOVE, 1, _key("pending", cluster, cert_name), old_id, new_id)

    def release_pending(self, cluster: str, cert_name: str, rotation_id: str) -> None:
        _compare_and_delete(self.redis, _key("pending", cluster, cert_name), rotation_id)

    def pending(self) -> dict[tuple[str, str], str]:
        members = sorted(self.redis.smembers(_key("index", "pending")))
        values = self.redis.mget([_key("pending", m) for m in members]) if members else []
        gone = [m for m, value in zip(members, values, strict=True) if not value]
        if gone:  # released or expired markers leave the index lazily
            self.redis.srem(_key("index", "pending"), *gone)
        return {tuple(m.split(":", 1)): value  # type: ignore[misc]
                for m, value in zip(members, values, strict=True) if value}


def _encode(fields: dict[str, Any]) -> dict[str, str]:
    return {k: (json.dumps(v) if not isinstance(v, str) else v) for k, v in fields.items() if v is not None}


def _maybe_json(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


_CLAIM = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'EX', tonumber(ARGV[2])) then
  redis.call('sadd', KEYS[2], ARGV[3])
  return false
end
return redis.call('get', KEYS[1])
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_MOVE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('set', KEYS[1], ARGV[2], 'KEEPTTL') end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def claim_pending_command(cluster: str, cert_name: str, rotation_id: str, ttl_seconds: int) -> tuple[Any, ...]:
    """``EVAL`` arguments of ``claim_pending``, for a sync or a ``redis.asyncio`` client: the id
    holding (cluster, cert) already, or nil when the claim is ours. One round trip, atomically:
    no window where the marker expires between SET and GET."""
    return (_CLAIM, 2, _key("pending", cluster, cert_name), _key("index", "pending"), rotation_id, ttl_seconds,
            f"{cluster}:{cert_name}")


def _compare_and_delete(client: redis.Redis, key: str, value: str) -> None:
    client.eval(_RELEASE, 1, key, value)


class RedisLocker:
    """One rotation per (cluster, certificate): a lease renewed by a thread while the rotation runs.

    If the worker dies, renewals stop and the lease expires after ``lease_seconds``; a redelivered
    task can then take over. Implements ``rotation.store.Locker``.
    """

    def __init__(self, client: redis.Redis, lease_seconds: float = 30.0) -> None:
        self.redis = client
        self.lease_ms = int(lease_seconds * 1000)

    def holder(self, cluster: str, cert_name: str) -> str | None:
        return self.redis.get(_key("lock", cluster, cert_name))

    def holders(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Who holds the lock of each (cluster, certificate), in one round trip."""
        values = self.redis.mget([_key("lock", c, n) for c, n in pairs]) if pairs else []
        return {pair: value for pair, value in zip(pairs, values, strict=True) if value}

    @contextlib.contextmanager
    def hold(self, cluster: str, cert_name: str, owner: str) -> Iterator[None]:
        key = _key("lock", cluster, cert_name)
        token = f"{owner} on {socket.gethostname()} pid {os.getpid()} #{os.urandom(4).hex()}"
        if not self.redis.set(key, token, nx=True, px=self.lease_ms):
            raise RotationInProgress(f"{cluster}/{cert_name}: a rotation is already in progress "
                                     f"({self.redis.get(key) or 'lock just released'})")
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.lease_ms / 3000):
                try:
                    if not self.redis.eval(_RENEW, 1, key, token, self.lease_ms):
                        return  # lost the lease (expired during a long pause): nothing more to renew
                except redis.RedisError:
                    continue  # Redis restarting: keep trying until the lease would have expired

        renewer = threading.Thread(target=renew, name=f"lease {cluster}/{cert_name}", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join(timeout=5)
            with contextlib.suppress(redis.RedisError):
                _compare_and_delete(self.redis, key, token)


class RedisSecretStore:
    """Encrypted blobs in Redis. Implements ``rotation.secrets.SecretStore``."""

    def __init__(self, client: redis.Redis, box: SecretBox) -> None:
        self.redis = client
        self.box = box

    def put(self, key: str, value: bytes, *, ttl_seconds: int | None = None) -> None:
        self.redis.set(_key("secret", key), self.box.encrypt(value).decode(), ex=ttl_seconds)

    def get(self, key: str) -> bytes | None:
        token = self.redis.get(_key("secret", key))
        return self.box.decrypt(token.encode(), what=f"secret {key!r}") if token else None

    def delete(self, key: str) -> None:
        self.redis.delete(_key("secret", key))
