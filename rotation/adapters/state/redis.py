"""The service's state in Redis (``ServiceState``): shared by every worker, beat and the webhook.

Key layout (prefix ``rotation:``)::

    record:<id>                    JSON rotation record (fingerprints, never keys), or a `policy apply`'s
    history / history:<c>:<cert>   sorted sets of record ids by start time (<cert> ``tls_policy``: the applies)
    state:<c>:<cert>               hash: served fingerprints per node, not_after, health, last scan,
                                   last rotation, failures, next_attempt (per-certificate backoff)
    scan:<c>                       hash: last successful scan, last error, last policy audit
    index:state|scan|pending       sets of the keys above (listing them never SCANs the keyspace)
    lock:<id>:<cert>, fence:<id>:<cert>   the running rotation's lease and fencing token, keyed by the
                                   cluster's identity (REST host:port): see ``redis_lock``
    pending:<c>:<cert>             rotation id queued or running (refuses a second request)
    inventory:<host>               a worker's inventory that no longer loads (kept the last good one)
    secret:<key>                   Fernet ciphertext (previous key for rollback, ACME accounts)
    stats                          hash: rotation counts and duration sums for the metrics
    chatops:audit[:<c>]            the chat audit trail (``chat_audit``)
    beat                           the beat that runs the schedule, with a lease it renews
    budget:<key>, budget-info:<key>   an issuer's orders in its window (sorted set, by time) and its budget,
                                   name and the CA's pause (hash); ``key``: a digest of the CA account
                                   (``core.budget``); ``index:budget`` lists them

Channel ``rotation:records`` (``redis_watch``): the id of every saved record and of every moved or
released pending marker, so followers wait for a change instead of polling.

With a ``journal``, a record that cannot be saved is kept on local disk (and the error still
raised); the next save or read that reaches Redis writes it back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Collection
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from rotation.adapters.secrets import SecretBox, SecretStore
from rotation.adapters.state import base, chat_audit
from rotation.adapters.state.base import Lease, decode_value, encode_fields, rotation_counts
from rotation.adapters.state.journal import RecordJournal
from rotation.adapters.state.redis_lock import RedisLocker
from rotation.adapters.state.redis_watch import CHANNEL, RedisChanges, watch
from rotation.core.budget import BudgetUse, IssuanceBudget, moment
from rotation.core.clock import Clock
from rotation.core.errors import StoreUnavailable
from rotation.core.model import RotationRecord

log = logging.getLogger(__name__)

PREFIX = "rotation:"
HISTORY_KEEP = 2000
INDEXED_KEEP = 4096  # record ids remembered as indexed (a worker runs a few rotations at a time)
JOURNAL_RETRY = 5.0  # seconds between two tries to write the journal back while Redis is away


def _key(*parts: str) -> str:
    return PREFIX + ":".join(parts)


def _queue_state(pipe: Any, cluster: str, cert_name: str, encoded: dict[str, str]) -> None:
    pipe.hset(_key("state", cluster, cert_name), mapping=encoded)
    pipe.sadd(_key("index", "state"), f"{cluster}:{cert_name}")


def _queue_counts(pipe: Any, counts: dict[str, int | float]) -> None:
    for name, amount in counts.items():
        if isinstance(amount, int):
            pipe.hincrby(_key("stats"), name, amount)
        else:
            pipe.hincrbyfloat(_key("stats"), name, amount)


class RedisState:
    """``rotation.adapters.state.base.ServiceState`` over one Redis client (``decode_responses=True``)."""

    local_key_dir: Path | None = None  # the service's key comes from the environment, never a file

    def __init__(self, client: redis.Redis, clock: Clock, *, journal: RecordJournal | None = None,
                 lock_lease: float = 30.0, max_hold: float | None = None) -> None:
        # decode_responses=True: every answer is a str, which redis-py's types (bytes | str) cannot say
        self.redis: Any = client
        self.clock = clock
        self.journal = journal
        self.locker = RedisLocker(client, lock_lease, clock, max_hold)
        self._indexed: dict[str, None] = {}  # ids whose history entries this process wrote (oldest first)
        self._indexed_lock = threading.Lock()
        self._flusher: threading.Thread | None = None

    def ping(self) -> None:
        self.redis.ping()  # RedisUnavailable: one line naming the URL

    # --- records -----------------------------------------------------------------------
    def save(self, record: RotationRecord) -> None:
        """Write the record; StoreUnavailable when Redis cannot take it (then kept in the journal)."""
        try:
            self._write(record)
        except redis.RedisError as exc:
            self._indexed.clear()  # Redis may come back empty: index every record again
            if self.journal is not None:
                path = self.journal.keep(record)
                log.warning("rotation %s: record kept in %s until Redis takes it again", record.id, path)
                self._keep_flushing()
            if isinstance(exc, StoreUnavailable):
                raise
            url = getattr(self.redis, "redacted_url", "Redis")
            raise StoreUnavailable(f"Redis at {url} did not take the record ({exc})") from exc
        if self.journal is not None:
            self.journal.drop(record.id)
            self._flush_journal()

    def _keep_flushing(self) -> None:
        """Write the journal back once Redis returns, also when this process saves and reads nothing more
        (a worker whose rotation ended while Redis was away: its record would stay `in_progress`, and the
        certificate's pending marker held, until that worker's next rotation): one thread per state tries
        every ``JOURNAL_RETRY`` seconds until Redis takes it."""
        with self._indexed_lock:
            if self._flusher is not None and self._flusher.is_alive():
                return
            self._flusher = threading.Thread(target=self._flush_until_empty, name="journal flusher", daemon=True)
            self._flusher.start()

    def _flush_until_empty(self) -> None:
        while self.journal is not None and self.journal.has_pending():
            time.sleep(JOURNAL_RETRY)
            try:
                self._flush_journal()
            except redis.RedisError:
                continue  # still away
            except Exception:  # noqa: BLE001 - logged; the next save or read tries again
                log.exception("writing the journal back failed")
            return  # Redis took it (a file left is unreadable: logged, and not tried every few seconds)

    def _flush_journal(self) -> None:
        if self.journal is not None and self.journal.has_pending():
            self.journal.flush(self._write_back)

    def _write_back(self, record: RotationRecord) -> None:
        """A journaled record, unless the store's copy has ended (another worker resumed the rotation and
        ended it, or this one's final save came first): an ended record is final, and the journal's copy
        is older. One script: an end saved between a look and the write would be overwritten."""
        if not self.redis.eval(_WRITE_BACK, 3, _key("record", record.id), _key("history"),
                               _key("history", record.cluster, record.cert_name),
                               json.dumps(record.to_dict(), sort_keys=True), record.id,
                               record.started_at.timestamp(), HISTORY_KEEP, CHANNEL):
            log.warning("rotation %s: the record kept locally is not written back: the store's has ended", record.id)

    def _write(self, record: RotationRecord, *, index: bool = False) -> None:
        """The record, published (``redis_watch``). Its history entries are written with its first save
        in this process and its final one; the saves of its steps in between only replace the record."""
        body = json.dumps(record.to_dict(), sort_keys=True)
        if not index and record.finished_at is None and record.id in self._indexed:
            pipe = self.redis.pipeline(transaction=False)  # one connection: the publish follows the write
            pipe.set(_key("record", record.id), body)
            pipe.publish(CHANNEL, record.id)
            pipe.execute()
            return
        score = record.started_at.timestamp()
        pipe = self.redis.pipeline()
        pipe.set(_key("record", record.id), body)
        pipe.zadd(_key("history"), {record.id: score})
        pipe.zadd(_key("history", record.cluster, record.cert_name), {record.id: score})
        pipe.zremrangebyrank(_key("history"), 0, -HISTORY_KEEP - 1)
        pipe.publish(CHANNEL, record.id)  # in the same MULTI: whoever hears it reads the new record
        pipe.execute()
        with self._indexed_lock:  # a worker's threads share the state
            self._indexed[record.id] = None
            while len(self._indexed) > INDEXED_KEEP:
                del self._indexed[next(iter(self._indexed))]

    def watch(self) -> contextlib.AbstractContextManager[RedisChanges]:
        """Hear of every record save and marker change from now on (``redis_watch``)."""
        return watch(self.redis)

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
        encoded = encode_fields(fields)
        if encoded:
            pipe = self.redis.pipeline(transaction=False)
            _queue_state(pipe, cluster, cert_name, encoded)
            pipe.execute()

    def save_scan(self, cluster: str, states: dict[str, dict[str, Any]],
                  warnings: dict[str, str] | None = None) -> base.SavedScan:
        """Store one scan of a cluster and its warnings in a single round trip; return each certificate's
        ``next_attempt`` (set while it backs off after failures), the warnings new to this scan and each
        certificate's kept renewal information (``ari``) and what the last rotation installed (``intended``):
        read in the same round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for cert_name in states:
            pipe.hmget(_key("state", cluster, cert_name), "next_attempt", "ari", "intended")
        for cert_name, fields in states.items():
            pipe.hset(_key("state", cluster, cert_name), mapping=encode_fields(fields))
        if states:  # one SADD for every certificate of the scan, not one each
            pipe.sadd(_key("index", "state"), *(f"{cluster}:{cert_name}" for cert_name in states))
        pipe.hset(_key("scan", cluster), mapping={"last_success": self.clock.now().isoformat(), "last_error": ""})
        pipe.sadd(_key("index", "scan"), cluster)
        if warnings is not None:
            self._swap_warnings(pipe, cluster, warnings)
        results = pipe.execute()
        kept = dict(zip(states, results[: len(states)], strict=True))
        return base.SavedScan({name: fields[0] for name, fields in kept.items()},
                              base.new_warnings(results[-1], warnings) if warnings is not None else [],
                              {name: decode_value(fields[1]) for name, fields in kept.items() if fields[1]},
                              {name: fields[2] for name, fields in kept.items() if fields[2]})

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
        return {k: decode_value(v) for k, v in raw.items()}

    def all_states(self) -> dict[tuple[str, str], dict[str, Any]]:
        # An index set, not SCAN: SCAN walks the whole keyspace (replay caches, broker keys...).
        members = sorted(self.redis.smembers(_key("index", "state")))
        values = self._pipelined("hgetall", [_key("state", m) for m in members])
        return {tuple(m.split(":", 1)): {k: decode_value(v) for k, v in raw.items()}  # type: ignore[misc]
                for m, raw in zip(members, values, strict=True) if raw}

    def _pipelined(self, command: str, keys: list[str]) -> list[Any]:
        """One round trip for many reads (status pages read every certificate at once)."""
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            getattr(pipe, command)(key)
        return pipe.execute() if keys else []

    def record_scan(self, cluster: str, *, ok: bool, error: str | None = None) -> None:
        now = self.clock.now().isoformat()
        fields = {"last_success": now, "last_error": ""} if ok else {"last_failure": now, "last_error": error or ""}
        self._save_scan_fields(cluster, fields)

    def _save_scan_fields(self, cluster: str, fields: dict[str, Any]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(_key("scan", cluster), mapping=fields)
        pipe.sadd(_key("index", "scan"), cluster)
        pipe.execute()

    def record_policy_audit(self, cluster: str, *, drift: int, errors: int, summary: str) -> None:
        self._save_scan_fields(cluster, {
            "policy_audit": self.clock.now().isoformat(), "policy_drift": drift, "policy_errors": errors,
            "policy_summary": summary,
        })

    def scans(self) -> dict[str, dict[str, str]]:
        clusters = sorted(self.redis.smembers(_key("index", "scan")))
        values = self._pipelined("hgetall", [_key("scan", c) for c in clusters])
        return {cluster: raw for cluster, raw in zip(clusters, values, strict=True) if raw}

    def forget_clusters(self, keep: Collection[str]) -> list[str]:
        kept = set(keep)
        members = [m for m in self.redis.smembers(_key("index", "state")) if m.split(":", 1)[0] not in kept]
        scanned = [c for c in self.redis.smembers(_key("index", "scan")) if c not in kept]
        if members or scanned:
            pipe = self.redis.pipeline(transaction=True)
            for member in members:
                pipe.delete(_key("state", member))
            for cluster in scanned:
                pipe.delete(_key("scan", cluster))
            if members:
                pipe.srem(_key("index", "state"), *members)
            if scanned:
                pipe.srem(_key("index", "scan"), *scanned)
            pipe.execute()
        return sorted({m.split(":", 1)[0] for m in members} | set(scanned))

    def save_scan_warnings(self, cluster: str, warnings: dict[str, str]) -> list[str]:
        """Read the keys stored before and store the new ones in one script: of two scans of a cluster at
        once, only one hears of a new warning."""
        return base.new_warnings(self._swap_warnings(self.redis, cluster, warnings), warnings)

    @staticmethod
    def _swap_warnings(client: Any, cluster: str, warnings: dict[str, str]) -> Any:
        """Store the warnings; the keys stored before come back (or, queued on a pipeline, in its results)."""
        fields = base.warning_fields(warnings)
        return client.eval(_SWAP_WARNINGS, 2, _key("scan", cluster), _key("index", "scan"), cluster,
                           *(part for pair in fields.items() for part in pair))

    # --- issuance budgets -----------------------------------------------------------------
    def take_order(self, budget: IssuanceBudget, order_id: str, now: datetime) -> BudgetUse:
        return self._budget(budget, now, order_id)

    def budget_use(self, budget: IssuanceBudget, now: datetime) -> BudgetUse:
        return self._budget(budget, now)

    def _budget(self, budget: IssuanceBudget, now: datetime, order_id: str = "") -> BudgetUse:
        """One script, the time given (the injected clock's, never Redis's): of two workers taking the last
        order at once, one gets it."""
        answer = self.redis.eval(_BUDGET, 3, _key("budget", budget.key), _key("budget-info", budget.key),
                                 _key("index", "budget"), repr(now.timestamp()),
                                 "" if budget.orders is None else budget.orders, repr(budget.per.total_seconds()),
                                 order_id, budget.key, budget.issuer, budget.shown)
        return _budget_use(answer)

    def return_order(self, budget: IssuanceBudget, order_id: str) -> None:
        self.redis.zrem(_key("budget", budget.key), order_id)

    def pause_issuer(self, budget: IssuanceBudget, until: datetime, reason: str) -> None:
        self.redis.eval(_PAUSE, 2, _key("budget-info", budget.key), _key("index", "budget"),
                        repr(until.timestamp()), reason, budget.key, budget.issuer, budget.shown)

    def issuer_budgets(self, now: datetime) -> list[BudgetUse]:
        keys = sorted(self.redis.smembers(_key("index", "budget")))
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:  # orders and window as the last taker stored them
            pipe.eval(_BUDGET, 3, _key("budget", key), _key("budget-info", key), _key("index", "budget"),
                      repr(now.timestamp()), "", "", "", key, "", "")
        return [_budget_use(answer) for answer in (pipe.execute() if keys else [])]

    # --- statistics for the metrics -----------------------------------------------------
    def count_rotation(self, record: RotationRecord) -> None:
        counts = rotation_counts(record)
        if not counts:
            return
        pipe = self.redis.pipeline()
        _queue_counts(pipe, counts)
        pipe.execute()

    def note_rotation(self, record: RotationRecord, fields: dict[str, Any], clear: tuple[str, ...] = ()) -> None:
        pipe = self.redis.pipeline()  # one round trip; the counters change together (MULTI), as in count_rotation
        _queue_counts(pipe, rotation_counts(record))
        encoded = encode_fields(fields)
        if encoded:
            _queue_state(pipe, record.cluster, record.cert_name, encoded)
        if clear:
            pipe.hdel(_key("state", record.cluster, record.cert_name), *clear)
        pipe.execute()

    def stats(self) -> dict[str, str]:
        return self.redis.hgetall(_key("stats"))

    # --- locks, queue markers -------------------------------------------------------------
    def hold(self, cluster: str, cert_name: str, owner: str) -> contextlib.AbstractContextManager[Lease]:
        return self.locker.hold(cluster, cert_name, owner)

    def lock_holders(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return self.locker.holders(pairs)

    # --- queue markers -------------------------------------------------------------------
    def claim_pending(self, cluster: str, cert_name: str, rotation_id: str, ttl_seconds: int) -> str | None:
        """Mark (cluster, cert) as queued; returns the id already holding it, or None if we got it."""
        return self.redis.eval(*claim_pending_command(cluster, cert_name, rotation_id, ttl_seconds)) or None

    def move_pending(self, cluster: str, cert_name: str, old_id: str, new_id: str) -> None:
        """A retry continues under a new id: point the marker at it (only if it is still ours)."""
        self.redis.eval(_MOVE, 2, _key("pending", cluster, cert_name), CHANNEL, old_id, new_id)

    def release_pending(self, cluster: str, cert_name: str, rotation_id: str) -> None:
        self.redis.eval(_RELEASE, 2, _key("pending", cluster, cert_name), CHANNEL, rotation_id)

    def pending(self) -> dict[tuple[str, str], str]:
        members = sorted(self.redis.smembers(_key("index", "pending")))
        values = self.redis.mget([_key("pending", m) for m in members]) if members else []
        gone = [m for m, value in zip(members, values, strict=True) if not value]
        if gone:  # released or expired markers leave the index lazily
            self.redis.srem(_key("index", "pending"), *gone)
        return {tuple(m.split(":", 1)): value  # type: ignore[misc]
                for m, value in zip(members, values, strict=True) if value}

    # --- the chat audit trail, secrets ------------------------------------------------------
    def chat_commands(self, limit: int = 50, cluster: str | None = None) -> list[dict[str, Any]]:
        return chat_audit.recent(self.redis, limit, cluster)

    def secret_store(self, box: SecretBox) -> SecretStore:
        return RedisSecretStore(self.redis, box)

    # --- the beat schedule's lease ----------------------------------------------------------
    def hold_schedule(self, holder: str, ttl_seconds: float) -> str | None:
        held = self.redis.eval(_HOLD_SCHEDULE, 1, _key("beat"), holder, max(1, int(ttl_seconds * 1000)))
        return held or None

    def release_schedule(self, holder: str) -> None:
        self.redis.eval(_RELEASE_SCHEDULE, 1, _key("beat"), holder)


# KEYS record, history, history:<c>:<cert>; ARGV record JSON, id, score, history kept, channel -> 1 written,
# 0 the stored record has ended (kept: an ended record is final)
_WRITE_BACK = """
local stored = redis.call('get', KEYS[1])
if stored then
  local finished = cjson.decode(stored)['finished_at']
  if finished and finished ~= cjson.null then return 0 end
end
redis.call('set', KEYS[1], ARGV[1])
redis.call('zadd', KEYS[2], ARGV[3], ARGV[2])
redis.call('zadd', KEYS[3], ARGV[3], ARGV[2])
redis.call('zremrangebyrank', KEYS[2], 0, -tonumber(ARGV[4]) - 1)
redis.call('publish', ARGV[5], ARGV[2])
return 1
"""
# KEYS beat; ARGV holder, lease ms -> nil when the lease is (now) the holder's, else who holds it
_HOLD_SCHEDULE = """
local held = redis.call('get', KEYS[1])
if held and held ~= ARGV[1] then return held end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
# KEYS beat; ARGV holder: the lease is given back only by its holder
_RELEASE_SCHEDULE = """
if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) end
return 0
"""
# KEYS secret; ARGV the token read, the same secret sealed with the current key
_RESEAL = """
if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('set', KEYS[1], ARGV[2], 'KEEPTTL') end
return 0
"""
# KEYS scan, scan index; ARGV cluster, then field/value pairs -> the warning_keys stored before them
_SWAP_WARNINGS = """
local before = redis.call('hget', KEYS[1], 'warning_keys')
redis.call('hset', KEYS[1], unpack(ARGV, 2))
redis.call('sadd', KEYS[2], ARGV[1])
return before
"""
# A marker whose rotation's record has ended is taken over in the same step: its worker could not release it
# (Redis away as the rotation ended), and every request would be refused until its TTL, up to hours. ARGV[4]:
# the records' key prefix (the holder's record is named by the marker's value).
_CLAIM = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'EX', tonumber(ARGV[2])) then
  redis.call('sadd', KEYS[2], ARGV[3])
  return false
end
local holder = redis.call('get', KEYS[1])
local stored = redis.call('get', ARGV[4] .. holder)
if stored then
  local ok, record = pcall(cjson.decode, stored)
  if ok and type(record) == 'table' and record['finished_at'] and record['finished_at'] ~= cjson.null
      and record['outcome'] ~= 'in_progress' then
    redis.call('set', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
    redis.call('sadd', KEYS[2], ARGV[3])
    return false
  end
end
return holder
"""
# Both publish the ids whose marker changed (old and new) on KEYS[2] (the channel), for followers (``redis_watch``).
_MOVE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('set', KEYS[1], ARGV[2], 'KEEPTTL')
  redis.call('publish', KEYS[2], ARGV[1])
  redis.call('publish', KEYS[2], ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('del', KEYS[1])
  redis.call('publish', KEYS[2], ARGV[1])
  return 1
end
return 0
"""


# KEYS budget (sorted set: order id -> epoch seconds), budget-info (hash), budget index; ARGV now, orders ('' for
# none counted, or: as stored), per seconds ('' as stored), order id ('' to read only), key, issuer, shown.
# -> taken (0/1), orders used in the window, next free, paused until, pause reason, issuer, shown, orders, per.
# A take stores what it was given (status and the metrics show it); a read changes nothing.
_BUDGET = """
local now = tonumber(ARGV[1])
local info = redis.call('hmget', KEYS[2], 'issuer', 'shown', 'orders', 'per', 'paused_until', 'paused_reason')
local take = ARGV[4] ~= ''
local orders, per = tonumber(ARGV[2]), tonumber(ARGV[3])
if not take and ARGV[3] == '' then orders, per = tonumber(info[3]), tonumber(info[4]) end
per = per or 0
local cutoff = string.format('%.17g', now - per)  -- every digit: tostring's 14 would move the window's edge
local live = redis.call('zrangebyscore', KEYS[1], '(' .. cutoff, '+inf', 'WITHSCORES')
local used = #live / 2
local paused = tonumber(info[5]) or 0
local taken = 0
if take then
  redis.call('hset', KEYS[2], 'issuer', ARGV[6], 'shown', ARGV[7], 'orders', ARGV[2], 'per', ARGV[3])
  redis.call('sadd', KEYS[3], ARGV[5])
  info[1], info[2] = ARGV[6], ARGV[7]
  redis.call('zremrangebyscore', KEYS[1], '-inf', cutoff)
  if paused <= now and (not orders or used < orders) then
    if orders then
      redis.call('zadd', KEYS[1], now, ARGV[4])
      redis.call('pexpire', KEYS[1], math.ceil(per * 1000))
      table.insert(live, ARGV[4])
      table.insert(live, ARGV[1])
      used = used + 1
    end
    taken = 1
  end
end
local free = ''
if used > 0 then
  local nth = 0
  if orders and used >= orders then nth = used - orders end
  free = string.format('%.17g', tonumber(live[2 * nth + 2]) + per)
end
return {taken, used, free, info[5] or '', info[6] or '', info[1] or '', info[2] or '', tostring(orders or ''),
        string.format('%.17g', per)}
"""
# KEYS budget-info, budget index; ARGV until, reason, key, issuer, shown: the later of two pauses holds
_PAUSE = """
local before = tonumber(redis.call('hget', KEYS[1], 'paused_until')) or 0
if tonumber(ARGV[1]) > before then
  redis.call('hset', KEYS[1], 'paused_until', ARGV[1], 'paused_reason', ARGV[2])
end
redis.call('hsetnx', KEYS[1], 'issuer', ARGV[4])
redis.call('hsetnx', KEYS[1], 'shown', ARGV[5])
redis.call('sadd', KEYS[2], ARGV[3])
return 0
"""


def _budget_use(answer: list[Any]) -> BudgetUse:
    taken, used, free, paused, reason, issuer, shown, orders, per = answer
    return BudgetUse(issuer=issuer, shown=shown, orders=int(orders) if orders else None,
                     per=timedelta(seconds=float(per or 0)), used=int(used), next_free=moment(free),
                     paused_until=moment(paused), paused_reason=reason, taken=bool(taken))


def claim_pending_command(cluster: str, cert_name: str, rotation_id: str, ttl_seconds: int) -> tuple[Any, ...]:
    """``EVAL`` arguments of ``claim_pending``, for a sync or a ``redis.asyncio`` client: the id
    holding (cluster, cert) already, or nil when the claim is ours (also when the holder's record has
    ended: its marker was left behind). One round trip, atomically: no window where the marker expires
    between SET and GET."""
    return (_CLAIM, 2, _key("pending", cluster, cert_name), _key("index", "pending"), rotation_id, ttl_seconds,
            f"{cluster}:{cert_name}", _key("record", ""))


class RedisSecretStore:
    """Encrypted blobs in Redis. A ``rotation.adapters.secrets.SecretStore``."""

    def __init__(self, client: redis.Redis, box: SecretBox) -> None:
        self.redis: Any = client  # decode_responses=True: answers are str
        self.box = box

    def put(self, key: str, value: bytes, *, ttl_seconds: int | None = None) -> None:
        self.redis.set(_key("secret", key), self.box.encrypt(value).decode(), ex=ttl_seconds)

    def get(self, key: str) -> bytes | None:
        token = self.redis.get(_key("secret", key))
        if not token:
            return None
        plaintext, resealed = self.box.unseal(token.encode(), what=f"secret {key!r}")
        if resealed is not None:  # sealed by a rotated-out key: the new one, expiry kept, unless put meanwhile
            self.redis.eval(_RESEAL, 1, _key("secret", key), token, resealed.decode())
        return plaintext

    def delete(self, key: str) -> None:
        self.redis.delete(_key("secret", key))


__all__ = ["HISTORY_KEEP", "RedisSecretStore", "RedisState", "claim_pending_command"]
