"""The service's state in Redis: records, history, per-certificate state, leased locks, secrets.

Key layout (prefix ``rotation:``)::

    record:<id>                    JSON rotation record (fingerprints, never keys)
    history / history:<c>:<cert>   sorted sets of record ids by start time
    state:<c>:<cert>               hash: served fingerprints per node, not_after, health, last scan,
                                   last rotation, failures, next_attempt (per-certificate backoff)
    scan:<c>                       hash: last successful scan, last error, last policy audit
    index:state|scan|pending       sets of the keys above (listing them never SCANs the keyspace)
    lock:<id>:<cert>, fence:<id>:<cert>   the running rotation's lease and fencing token, keyed by the
                                   cluster's identity (REST host:port): see ``rotation.adapters.state.redis_lock``
    pending:<c>:<cert>             rotation id queued or running (refuses a second request)
    inventory:<host>               a worker's inventory that no longer loads (kept the last good one)
    secret:<key>                   Fernet ciphertext (previous key for rollback, ACME accounts)
    stats                          hash: rotation counts and duration sums for the metrics
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import redis
import redis.client

from rotation.adapters.secrets import SecretBox
from rotation.adapters.state.journal import RecordJournal
from rotation.core.errors import StoreUnavailable
from rotation.core.model import RotationRecord
from rotation.core.redaction import redact_url

log = logging.getLogger(__name__)

PREFIX = "rotation:"
HISTORY_KEEP = 2000
DURATION_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, float("inf"))


class RedisUnavailable(StoreUnavailable, redis.ConnectionError):
    """Redis cannot be reached: a RotationError for the entry points (one line, exit 2) and still a
    ``redis.ConnectionError`` for code that retries on those."""


def _unavailable(url: str, exc: redis.RedisError) -> RedisUnavailable:
    return RedisUnavailable(f"Redis at {url} is unreachable ({exc})")


class _Pipeline(redis.client.Pipeline):
    redacted_url = "redis"

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            return super().execute(raise_on_error)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if isinstance(exc, RedisUnavailable):
                raise
            raise _unavailable(self.redacted_url, exc) from exc


class _Client(redis.Redis):
    """The service's Redis client: connection failures become one clear error naming the URL
    (password redacted), translated here once for every command and pipeline."""

    redacted_url = "redis"

    def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute_command(*args, **options)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if isinstance(exc, RedisUnavailable):
                raise
            raise _unavailable(self.redacted_url, exc) from exc

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> _Pipeline:
        pipe = _Pipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.redacted_url = self.redacted_url
        return pipe


def connect(url: str) -> redis.Redis:
    client = _Client.from_url(url, decode_responses=True, socket_timeout=10, socket_connect_timeout=5,
                              health_check_interval=30, retry_on_timeout=True)
    client.redacted_url = redact_url(url)
    return client


def _key(*parts: str) -> str:
    return PREFIX + ":".join(parts)


class RedisStore:
    """Records and per-certificate state. Implements ``rotation.adapters.state.local.RecordStore``.

    With a ``journal``, a record that cannot be saved is kept on local disk (and the error still
    raised); the next save or read that reaches Redis writes it back.
    """

    def __init__(self, client: redis.Redis, journal: RecordJournal | None = None) -> None:
        self.redis = client
        self.journal = journal

    # --- records -----------------------------------------------------------------------
    def save(self, record: RotationRecord) -> None:
        """Write the record; StoreUnavailable when Redis cannot take it (then kept in the journal)."""
        try:
            self._write(record)
        except redis.RedisError as exc:
            if self.journal is not None:
                path = self.journal.keep(record)
                log.warning("rotation %s: record kept in %s until Redis takes it again", record.id, path)
            if isinstance(exc, StoreUnavailable):
                raise
            url = getattr(self.redis, "redacted_url", "Redis")
            raise StoreUnavailable(f"Redis at {url} did not take the record ({exc})") from exc
        if self.journal is not None:
            self.journal.drop(record.id)
            self._flush_journal()

    def _flush_journal(self) -> None:
        if self.journal is not None and self.journal.has_pending():
            self.journal.flush(self._write)

    def _write(self, record: RotationRecord) -> None:
        score = record.started_at.timestamp()
        pipe = self.redis.pipeline()
        pipe.set(_key("record", record.id), json.dumps(record.to_dict(), sort_keys=True))
        pipe.zadd(_key("history"), {record.id: score})
        pipe.zadd(_key("history", record.cluster, record.cert_name), {record.id: score})
        pipe.zremrangebyrank(_key("history"), 0, -HISTORY_KEEP - 1)
        pipe.execute()

    def get(self, rotation_id: str) -> RotationRecord | None:
        self._flush_journal()
        raw = self.redis.get(_key("record", rotation_id))
        return RotationRecord.from_dict(json.loads(raw)) if raw else None

    def history(
        self, cluster: str | None = None, cert_name: str | None = None, limit: int = 50
    ) -> list[RotationRecord]:
        self._flush_journal()
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

    def clear_backoff(self, cluster: str, cert_name: str) -> dict[str, Any]:
        """Forget the failures of (cluster, cert): the next scan may rotate it. Returns what was cleared."""
        key = _key("state", cluster, cert_name)
        pipe = self.redis.pipeline()
        pipe.hmget(key, "failures", "next_attempt", "last_error")
        pipe.hset(key, "failures", 0)
        pipe.hdel(key, "next_attempt", "last_error")
        failures, next_attempt, last_error = pipe.execute()[0]
        return {"failures": int(failures or 0), "next_attempt": next_attempt, "last_error": last_error}

    # --- inventory reload problems, per worker host (for `rotation status`) --------------
    def note_inventory(self, host: str, problem: dict[str, str] | None) -> None:
        key = _key("inventory", host)
        pipe = self.redis.pipeline(transaction=False)
        if problem:
            pipe.hset(key, mapping=problem)
            pipe.sadd(_key("index", "inventory"), host)
        else:
            pipe.delete(key)
            pipe.srem(_key("index", "inventory"), host)
        pipe.execute()

    def inventory_problems(self) -> dict[str, dict[str, str]]:
        hosts = sorted(self.redis.smembers(_key("index", "inventory")))
        values = self._pipelined("hgetall", [_key("inventory", h) for h in hosts])
        return {host: raw for host, raw in zip(hosts, values, strict=True) if raw}

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


class RedisSecretStore:
    """Encrypted blobs in Redis. Implements ``rotation.adapters.secrets.SecretStore``."""

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
