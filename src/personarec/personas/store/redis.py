"""Redis persona store: the shared store for several API and worker processes (or hosts).

Every multi-step operation is one Lua script, so it is atomic on the server (the version guard,
append + enqueue, claim, complete + persona write, erasure). Durability is the server's job:
run redis-server with ``appendonly yes`` and ``appendfsync always`` so that every acknowledged
write is fsynced to the AOF before Redis replies (and hence before the API answers 202).

Keys (``{ns}`` = namespace, default ``personarec``; scripts build per-user keys from the
namespace, so this store targets a standalone server or a primary, not Redis Cluster):
``{ns}:persona:{u}`` hash(version, data) · ``{ns}:personas`` set · ``{ns}:edits:{u}`` ·
``{ns}:user:{u}`` hash(last_seq, base_len, epoch, erased) · ``{ns}:events:{u}`` list of
``seq\\tjson`` · ``{ns}:job:{u}`` hash · ``{ns}:q:ready`` zset (score = priority * 1e10 + due
time) · ``{ns}:q:leased`` zset (score = lease expiry) · ``{ns}:q:age`` zset (score = the job's
first pending event, for the age of the oldest job) · ``{ns}:workers`` zset (score = a worker's
heartbeat expiry) · ``{ns}:erasures`` zset (score = erasure time) · ``{ns}:stats`` hash.

Erasure deletes every key of the user in one script and leaves a tombstone (``erased``, epoch);
``purge`` then rewrites the AOF, which still holds the commands that wrote the erased data.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from urllib.parse import parse_qs, urlparse

import redis

from personarec.personas.schema import Persona, PersonaEdits
from personarec.personas.store.base import AppendResult, EnqueueSpec, RefreshJob, ServingStore, StoredEvent, UserState

log = logging.getLogger("personarec.store.redis")

PRIORITY_STRIDE = 1e10  # ready-set score = priority * stride + due time (unix seconds < 1e10)

_LIB = r"""
local ns = ARGV[1]
local function k(kind, u) return ns .. ':' .. kind .. ':' .. u end
local STRIDE = 1e10

local function put_persona(u, version, data)
  local pkey = k('persona', u)
  local cur = redis.call('HGET', pkey, 'version')
  if cur and tonumber(cur) > tonumber(version) then return 0 end
  redis.call('HSET', pkey, 'version', version, 'data', data)
  redis.call('SADD', ns .. ':personas', u)
  return 1
end

local function ensure_user(u, base_len)
  local ukey = k('user', u)
  local st = redis.call('HMGET', ukey, 'last_seq', 'epoch')
  if not st[1] then
    redis.call('HSET', ukey, 'last_seq', base_len, 'base_len', base_len, 'epoch', 0, 'erased', 0)
    return tonumber(base_len), 0
  end
  return tonumber(st[1]), tonumber(st[2])
end

local function incr_stat(name, v) redis.call('HINCRBYFLOAT', ns .. ':stats', name, v) end

-- leases that expired (the worker died or hung) go back to the ready set
local function requeue_expired(now)
  local ready, leased = ns .. ':q:ready', ns .. ':q:leased'
  local expired = redis.call('ZRANGEBYSCORE', leased, '-inf', '(' .. tostring(now))
  for _, u in ipairs(expired) do
    redis.call('ZREM', leased, u)
    local j = redis.call('HMGET', k('job', u), 'priority', 'due_at')
    if j[1] then
      redis.call('HDEL', k('job', u), 'owner', 'lease_until')
      redis.call('ZADD', ready, tonumber(j[1]) * STRIDE + tonumber(j[2]), u)
    end
  end
end

-- the bounded queue's admission rule for a new job (see EnqueueSpec): 1 = admitted, 0 = shed;
-- a refusal is counted as 'shed' for an event, 'shed_on_read' for a stale read (touch = 0)
local function admit(prio, max_depth, now, touch)
  if max_depth < 0 then return 1 end
  local ready = ns .. ':q:ready'
  if redis.call('ZCARD', ready) + redis.call('ZCARD', ns .. ':q:leased') < max_depth then return 1 end
  local victim = {}
  if prio == 0 then
    requeue_expired(now)  -- a job whose lease expired is queued again, hence evictable (as in SQLite)
    victim = redis.call('ZREVRANGEBYSCORE', ready, '+inf', STRIDE, 'LIMIT', 0, 1)
  end
  if #victim == 0 then incr_stat(touch == 1 and 'shed' or 'shed_on_read', 1); return 0 end
  redis.call('ZREM', ready, victim[1])
  redis.call('ZREM', ns .. ':q:age', victim[1])
  redis.call('DEL', k('job', victim[1]))
  incr_stat('shed', 1); incr_stat('shed_evicted', 1)
  return 1
end

local function enqueue(u, base_len, now, debounce, max_wait, touch, max_depth)
  local last, epoch = ensure_user(u, base_len)
  local prio = redis.call('EXISTS', k('persona', u)) == 1 and 1 or 0
  local due = now + math.min(debounce, max_wait)
  local jkey = k('job', u)
  local j = redis.call('HMGET', jkey, 'target_seq', 'priority', 'due_at', 'first_at', 'owner', 'next_first_at')
  if not j[1] then
    if admit(prio, max_depth, now, touch) == 0 then return 0 end
    redis.call('HSET', jkey, 'target_seq', last, 'epoch', epoch, 'priority', prio, 'due_at', tostring(due),
               'first_at', tostring(now), 'attempts', 0)
    redis.call('ZADD', ns .. ':q:ready', prio * STRIDE + due, u)
    redis.call('ZADD', ns .. ':q:age', now, u)
    return 1
  end
  local old_target = tonumber(j[1])
  local newprio = math.min(tonumber(j[2]), prio)
  local newdue = tonumber(j[3])
  if touch == 1 then newdue = math.min(tonumber(j[4]) + max_wait, due) end
  redis.call('HSET', jkey, 'target_seq', math.max(old_target, last), 'epoch', epoch, 'priority', newprio,
             'due_at', tostring(newdue))
  if j[5] then
    if last > old_target and not j[6] then redis.call('HSET', jkey, 'next_first_at', tostring(now)) end
  else
    redis.call('ZADD', ns .. ':q:ready', newprio * STRIDE + newdue, u)
  end
  return 1
end

local function finish(u, owner, job_target, remove, retry_at)
  local jkey = k('job', u)
  local j = redis.call('HMGET', jkey, 'owner', 'target_seq', 'next_first_at', 'priority', 'due_at')
  if j[1] ~= owner then return end
  local target = tonumber(j[2])
  redis.call('ZREM', ns .. ':q:leased', u)
  if remove == 1 and target <= job_target then
    redis.call('DEL', jkey)
    redis.call('ZREM', ns .. ':q:age', u)
    return
  end
  redis.call('HDEL', jkey, 'owner', 'lease_until')
  if target > job_target then
    redis.call('HSET', jkey, 'attempts', 0)
    if j[3] then
      redis.call('HSET', jkey, 'first_at', j[3])
      redis.call('ZADD', ns .. ':q:age', tonumber(j[3]), u)
    end
    redis.call('HDEL', jkey, 'next_first_at')
  end
  local due = tonumber(j[5])
  if retry_at ~= '' then due = tonumber(retry_at); redis.call('HSET', jkey, 'due_at', retry_at) end
  redis.call('ZADD', ns .. ':q:ready', tonumber(j[4]) * STRIDE + due, u)
end

local function incr_stats(json_stats)
  if json_stats == '' then return end
  local s = cjson.decode(json_stats)
  for name, v in pairs(s) do incr_stat(name, v) end
end
"""

# ARGV: ns, user, base_len, do_enqueue, now, debounce, max_wait, max_depth (-1 = none), event...
# -> {last_seq, queued}
_APPEND = _LIB + r"""
local u = ARGV[2]
local last = ensure_user(u, tonumber(ARGV[3]))
local ekey = k('events', u)
local n = #ARGV - 8
for i = 1, n do redis.call('RPUSH', ekey, (last + i) .. '\t' .. ARGV[8 + i]) end
last = last + n
redis.call('HSET', k('user', u), 'last_seq', last)
local queued = 0
if ARGV[4] == '1' and n > 0 then
  queued = enqueue(u, tonumber(ARGV[3]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), 1, tonumber(ARGV[8]))
end
return {last, queued}
"""

# ARGV: ns, user, after_seq -> {base_len, last_seq, elements...}
_EVENTS = _LIB + r"""
local u = ARGV[2]
local st = redis.call('HMGET', k('user', u), 'base_len', 'last_seq')
if not st[1] then return {} end
local base = tonumber(st[1])
local start = math.max(0, tonumber(ARGV[3]) - base)
return redis.call('LRANGE', k('events', u), start, -1)
"""

# ARGV: ns, user, base_len, now, debounce, max_wait, touch, max_depth (-1 = none)
_ENQUEUE = _LIB + r"""
return enqueue(ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]),
               tonumber(ARGV[8]))
"""

# ARGV: ns, now, owner, lease_s
_CLAIM = _LIB + r"""
local now = tonumber(ARGV[2])
local ready, leased = ns .. ':q:ready', ns .. ':q:leased'
requeue_expired(now)
local pick = redis.call('ZRANGEBYSCORE', ready, '-inf', now, 'LIMIT', 0, 1)
if #pick == 0 then pick = redis.call('ZRANGEBYSCORE', ready, STRIDE, STRIDE + now, 'LIMIT', 0, 1) end
if #pick == 0 then return false end
local u = pick[1]
local until_ = now + tonumber(ARGV[4])
redis.call('ZREM', ready, u)
redis.call('ZADD', leased, until_, u)
redis.call('HSET', k('job', u), 'owner', ARGV[3], 'lease_until', tostring(until_))
-- this claim covers every event so far: events that came during an earlier, expired lease are in it
redis.call('HDEL', k('job', u), 'next_first_at')
redis.call('HINCRBY', k('job', u), 'attempts', 1)
local j = redis.call('HMGET', k('job', u), 'target_seq', 'epoch', 'owner', 'lease_until', 'attempts', 'first_at', 'priority')
return {u, j[1], j[2], j[3], j[4], j[5], j[6], j[7]}
"""

# ARGV: ns, user, owner, until
_RENEW = _LIB + r"""
local jkey = k('job', ARGV[2])
if redis.call('HGET', jkey, 'owner') ~= ARGV[3] then return 0 end
redis.call('HSET', jkey, 'lease_until', ARGV[4])
redis.call('ZADD', ns .. ':q:leased', tonumber(ARGV[4]), ARGV[2])
return 1
"""

# ARGV: ns, user, owner, job_target, job_epoch, version, data ('' = none), stats_json
_COMPLETE = _LIB + r"""
local u = ARGV[2]
local written = 0
if ARGV[7] ~= '' then
  local epoch = redis.call('HGET', k('user', u), 'epoch')
  if epoch and tonumber(epoch) == tonumber(ARGV[5]) then written = put_persona(u, ARGV[6], ARGV[7]) end
end
finish(u, ARGV[3], tonumber(ARGV[4]), 1, '')
incr_stats(ARGV[8])
return written
"""

# ARGV: ns, user, owner, job_target, remove, retry_at ('' = keep), stats_json
_FINISH = _LIB + r"""
finish(ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6])
incr_stats(ARGV[7])
return 1
"""

# ARGV: ns, version, data, user
_PUT = _LIB + r"""
return put_persona(ARGV[4], ARGV[2], ARGV[3])
"""

# ARGV: ns, user, now
_DELETE = _LIB + r"""
local u = ARGV[2]
redis.call('ZADD', ns .. ':erasures', ARGV[3], u)
local n = redis.call('DEL', k('persona', u), k('edits', u), k('events', u), k('job', u))
redis.call('SREM', ns .. ':personas', u)
redis.call('ZREM', ns .. ':q:ready', u)
redis.call('ZREM', ns .. ':q:leased', u)
redis.call('ZREM', ns .. ':q:age', u)
local ukey = k('user', u)
redis.call('HINCRBY', ukey, 'epoch', 1)
redis.call('HSET', ukey, 'last_seq', 0, 'base_len', 0, 'erased', 1)
return n
"""

# ARGV: ns, now
_QSTATS = _LIB + r"""
local now = tonumber(ARGV[2])
local ready, leased = ns .. ':q:ready', ns .. ':q:leased'
local n_ready, n_leased = redis.call('ZCARD', ready), redis.call('ZCARD', leased)
local live = redis.call('ZCOUNT', leased, now, '+inf')
local due = redis.call('ZCOUNT', ready, '-inf', now) + redis.call('ZCOUNT', ready, STRIDE, STRIDE + now)
  + (n_leased - live)
local oldest = redis.call('ZRANGE', ns .. ':q:age', 0, 0, 'WITHSCORES')
return {n_ready + n_leased, live, due, oldest[2] or ''}
"""


class RedisStore(ServingStore):
    """Personas, edits, events, the refresh queue and counters in Redis (``redis://host:port/db``,
    optional ``?namespace=name``)."""

    def __init__(self, url: str, *, namespace: str | None = None, socket_timeout_s: float = 10.0) -> None:
        parsed = urlparse(url)
        query = parse_qs(parsed.query)
        self.namespace = namespace or query.get("namespace", ["personarec"])[0]
        clean = parsed._replace(query="").geturl()
        self.url = url
        self.client = redis.Redis.from_url(clean, socket_timeout=socket_timeout_s, decode_responses=True)
        self._purge_lock = threading.Lock()
        self._purge_pending = False
        self._purge_thread: threading.Thread | None = None
        self._scripts = {
            name: self.client.register_script(src)
            for name, src in {
                "append": _APPEND, "events": _EVENTS, "enqueue": _ENQUEUE, "claim": _CLAIM, "renew": _RENEW,
                "complete": _COMPLETE, "finish": _FINISH, "put": _PUT, "delete": _DELETE, "qstats": _QSTATS,
            }.items()
        }  # fmt: skip

    def _k(self, kind: str, user_id: str = "") -> str:
        return f"{self.namespace}:{kind}:{user_id}" if user_id else f"{self.namespace}:{kind}"

    def _run(self, name: str, *args: object) -> object:
        return self._scripts[name](keys=[], args=[self.namespace, *args])

    def close(self) -> None:
        self.client.close()

    # -- personas ---------------------------------------------------------------------------------
    def get(self, user_id: str) -> Persona | None:
        data = self.client.hget(self._k("persona", user_id), "data")
        return Persona.model_validate_json(data) if data else None

    def put(self, persona: Persona) -> bool:
        return bool(self._run("put", persona.version, persona.model_dump_json(), persona.user_id))

    def get_edits(self, user_id: str) -> PersonaEdits | None:
        data = self.client.get(self._k("edits", user_id))
        return PersonaEdits.model_validate_json(data) if data else None

    def put_edits(self, user_id: str, edits: PersonaEdits) -> None:
        self.client.set(self._k("edits", user_id), edits.model_dump_json())

    def delete_user(self, user_id: str) -> bool:
        return int(self._run("delete", user_id, time.time())) > 0

    def purge(self, *, wait: bool = True) -> None:
        """Rewrite the append-only file (and the RDB snapshot, if snapshots are on), so that the
        commands that wrote an erased user's persona are no longer on disk. A rewrite already
        running may predate the erasure, so a new one is started after it. ``wait=False`` runs
        this on a background thread; overlapping calls share one pending rewrite."""
        if not wait:
            with self._purge_lock:
                self._purge_pending = True
                if self._purge_thread is not None and self._purge_thread.is_alive():
                    return
                self._purge_thread = threading.Thread(target=self._purge_loop, name="redis-purge", daemon=True)
                self._purge_thread.start()
            return
        self._rewrite()

    def _purge_loop(self) -> None:
        while True:
            with self._purge_lock:
                if not self._purge_pending:
                    self._purge_thread = None
                    return
                self._purge_pending = False
            try:
                self._rewrite()
            except redis.RedisError as exc:  # logged, retried with the next erasure; never lost silently
                log.error("AOF rewrite after an erasure failed: %r", exc)
                self.client.hincrbyfloat(self._k("stats"), "purge_failures", 1)

    def _rewrite(self, timeout_s: float = 600.0) -> None:
        info = self.client.info("persistence")
        deadline = time.monotonic() + timeout_s
        if info.get("aof_enabled"):
            self._background("bgrewriteaof", "aof_rewrite_in_progress", "aof_rewrite_scheduled", deadline)
            if self.client.info("persistence").get("aof_last_bgrewrite_status") != "ok":
                raise redis.RedisError("AOF rewrite failed (see the redis-server log)")
        if self.client.config_get("save").get("save"):
            self._background("bgsave", "rdb_bgsave_in_progress", None, deadline)
            if self.client.info("persistence").get("rdb_last_bgsave_status") != "ok":
                raise redis.RedisError("RDB snapshot failed (see the redis-server log)")

    def _background(self, command: str, running: str, scheduled: str | None, deadline: float) -> None:
        def busy() -> bool:
            info = self.client.info("persistence")
            return bool(info.get(running)) or bool(scheduled and info.get(scheduled))

        while busy():  # one in progress started before the erasure: wait, then start our own
            if time.monotonic() > deadline:
                raise redis.TimeoutError(f"{command}: a previous one is still running")
            time.sleep(0.05)
        try:
            self.client.execute_command(command)
        except redis.ResponseError as exc:
            if "in progress" not in str(exc):
                raise
            return self._background(command, running, scheduled, deadline)
        time.sleep(0.01)
        while busy():
            if time.monotonic() > deadline:
                raise redis.TimeoutError(f"{command} did not finish")
            time.sleep(0.05)

    def erasures(self, since: float = 0.0) -> list[tuple[str, float]]:
        rows = self.client.zrangebyscore(self._k("erasures"), since, "+inf", withscores=True)
        return [(u, float(t)) for u, t in rows]

    def user_ids(self) -> Iterator[str]:
        return iter(sorted(self.client.smembers(self._k("personas"))))

    def __contains__(self, user_id: str) -> bool:
        return bool(self.client.exists(self._k("persona", user_id)))

    def __len__(self) -> int:
        return int(self.client.scard(self._k("personas")))

    # -- events -----------------------------------------------------------------------------------
    def append_events(
        self,
        user_id: str,
        events: Sequence[tuple[str, int, float | None]],
        *,
        base_len: int,
        enqueue: EnqueueSpec | None,
    ) -> AppendResult:
        payload = [json.dumps([item, int(ts), rating]) for item, ts, rating in events]
        spec = enqueue or EnqueueSpec(0.0, 0.0, 0.0)
        last, queued = self._run(
            "append", user_id, base_len, 1 if enqueue else 0, repr(spec.now), repr(spec.debounce_s),
            repr(spec.max_wait_s), _depth_arg(spec), *payload,
        )  # fmt: skip
        return AppendResult(last_seq=int(last), refresh_queued=bool(int(queued)))

    def events(self, user_id: str, after_seq: int = 0) -> list[StoredEvent]:
        out = []
        for element in self._run("events", user_id, after_seq):
            seq, payload = element.split("\t", 1)
            item, ts, rating = json.loads(payload)
            if int(seq) > after_seq:
                out.append(StoredEvent(seq=int(seq), item_id=item, timestamp=ts, rating=rating))
        return out

    def user_state(self, user_id: str) -> UserState | None:
        st = self.client.hmget(self._k("user", user_id), "last_seq", "base_len", "epoch", "erased")
        if st[0] is None:
            return None
        return UserState(last_seq=int(st[0]), base_len=int(st[1]), epoch=int(st[2]), erased=st[3] == "1")

    # -- refresh queue ----------------------------------------------------------------------------
    def enqueue(self, user_id: str, spec: EnqueueSpec, *, touch: bool = True, base_len: int = 0) -> bool:
        args = (user_id, base_len, repr(spec.now), repr(spec.debounce_s), repr(spec.max_wait_s), 1 if touch else 0,
                _depth_arg(spec))  # fmt: skip
        return bool(self._run("enqueue", *args))

    def claim(self, owner: str, lease_s: float, now: float) -> RefreshJob | None:
        row = self._run("claim", repr(now), owner, repr(lease_s))
        if not row:
            return None
        u, target, epoch, own, until, attempts, first_at, prio = row
        return RefreshJob(
            user_id=u, target_seq=int(target), epoch=int(epoch), owner=own, lease_until=float(until),
            attempts=int(attempts), first_at=float(first_at), priority=int(prio),
        )  # fmt: skip

    def renew(self, job: RefreshJob, lease_s: float, now: float) -> bool:
        return bool(self._run("renew", job.user_id, job.owner, repr(now + lease_s)))

    def complete(self, job: RefreshJob, persona: Persona | None, now: float, stats: dict[str, float] | None = None) -> bool:
        version, data = (persona.version, persona.model_dump_json()) if persona is not None else (0, "")
        written = self._run(
            "complete", job.user_id, job.owner, job.target_seq, job.epoch, version, data, _stats_json(stats)
        )
        return bool(written)

    def release(self, job: RefreshJob, retry_at: float, stats: dict[str, float] | None = None) -> None:
        self._run("finish", job.user_id, job.owner, job.target_seq, 0, repr(retry_at), _stats_json(stats))

    def drop(self, job: RefreshJob, stats: dict[str, float] | None = None) -> None:
        self._run("finish", job.user_id, job.owner, job.target_seq, 1, "", _stats_json(stats))

    def queue_stats(self, now: float) -> dict[str, float]:
        depth, leased, due, oldest = self._run("qstats", repr(now))
        age = max(0.0, now - float(oldest)) if oldest else 0.0
        return {"depth": float(depth), "leased": float(leased), "due": float(due), "oldest_age_s": age}

    def queued_job(self, user_id: str) -> dict[str, float] | None:
        raw = self.client.hgetall(self._k("job", user_id))
        if not raw:
            return None
        out: dict[str, float] = {}
        for key in ("target_seq", "epoch", "priority", "due_at", "first_at", "lease_until", "attempts"):
            out[key] = float(raw[key]) if key in raw else None  # type: ignore[assignment]
        out["owner"] = raw.get("owner")  # type: ignore[assignment]
        return out

    # -- worker liveness ------------------------------------------------------------------------------
    def heartbeat(self, worker_id: str, until: float) -> None:
        key = self._k("workers")
        if until <= 0:
            self.client.zrem(key, worker_id)
            return
        pipe = self.client.pipeline(transaction=True)
        pipe.zadd(key, {worker_id: until})
        pipe.zremrangebyscore(key, "-inf", until - 86_400)  # long-dead entries
        pipe.execute()

    def live_workers(self, now: float) -> int:
        return int(self.client.zcount(self._k("workers"), now, "+inf"))

    # -- counters ---------------------------------------------------------------------------------
    def incr_stats(self, stats: dict[str, float]) -> None:
        if stats:
            pipe = self.client.pipeline(transaction=True)
            for name, value in stats.items():
                pipe.hincrbyfloat(self._k("stats"), name, value)
            pipe.execute()

    def stats(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.client.hgetall(self._k("stats")).items()}


def _depth_arg(spec: EnqueueSpec) -> int:
    return -1 if spec.max_depth is None else int(spec.max_depth)


def _stats_json(stats: dict[str, float] | None) -> str:
    return json.dumps(stats) if stats else ""
