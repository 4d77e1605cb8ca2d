"""Tokens in Redis, shared by a fleet.

Per token key ``k`` (all three keys in one Cluster slot, through the ``{k}`` hash tag;
every script touches the keys of one token only, so it runs on a Redis Cluster too):

* ``<prefix>{k}:token`` — a hash: ``json`` (the token) and ``v`` (its version). Written
  only by a Lua script that compares the version first (the fencing step). It expires
  :data:`TOKEN_GRACE` seconds after the token does (measured on Redis' own clock,
  ``TIME``), or after :data:`TOKEN_MAX_TTL` for a token without a known expiry.
* ``<prefix>{k}:version`` — the key's version (an integer), written by the same scripts
  (and by ``delete``, one past the deleted token's): it outlives the token hash
  (:data:`TOKEN_VERSION_TTL`, renewed by every write), so a key whose token was deleted
  or expired keeps its version and versions never go backwards. The version of a key
  is the larger of the two (a hash written by an older surefoot has no version key).
  Works on every Redis with Lua (no per-field expiry needed).
* ``<prefix>{k}:lease`` — the refresh lease: the owner's id, ``SET NX PX``; renewed and
  released only by its owner (a Lua compare-then-``PEXPIRE``/``DEL``).

A token hash that holds no token (its ``json`` not JSON or not a token, or the key not
a hash at all) is logged once and is no token; its version still counts, and the next
write replaces it.

A token saved or deleted and a lease taken are writes that should survive a failover:
with ``RedisStore(wait_replicas=N)`` they wait for N replicas (see
:mod:`surefoot.stores._redis._connection`, "Durability").

See :mod:`surefoot.stores._file` for the protocol, and :class:`FailoverTokenStore` for what
happens when Redis is down.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from surefoot.errors import StoreError
from surefoot.oauth._token import Token
from surefoot.stores._failover import FailoverTokenStore
from surefoot.stores._failure import FailureMode
from surefoot.stores._redis._connection import RedisConnection

__all__ = ["TOKEN_GRACE", "TOKEN_MAX_TTL", "TOKEN_VERSION_TTL", "RedisTokenStore"]

#: A stored token's key outlives the token by this long (seconds), so its version (the
#: fence) stays known to a refresh that is still running.
TOKEN_GRACE = 3600
#: The longest a token's key lives (seconds), e.g. for tokens without an expiry.
TOKEN_MAX_TTL = 30 * 86400
#: How long a key's version outlives its last write (seconds): longer than any token's
#: key lives, so it is still known when the token has expired or was deleted.
TOKEN_VERSION_TTL = 2 * TOKEN_MAX_TTL

# The version of a key, shared by the scripts: the larger of the hash's ``v`` and the
# version key, each a non-negative integer or else 0 (missing, or garbage). ``corrupt``:
# the token key exists but is not a hash.
_CURRENT = """
local function version_of(reply)
  if type(reply) ~= 'string' then return 0 end
  local n = tonumber(reply)
  if n == nil or n ~= n or n < 0 or n > 9007199254740992 then return 0 end
  return math.floor(n)
end
local stored = redis.pcall('HGET', KEYS[1], 'v')
local corrupt = type(stored) == 'table' and stored['err'] ~= nil
if corrupt then stored = false end
local current = math.max(version_of(stored), version_of(redis.pcall('GET', KEYS[2])))
"""

_LOAD = (
    """
-- KEYS[1]: the token hash, KEYS[2]: the version key.
-- Returns {json or nil, version, 1 if the token key is not a hash else 0}
"""
    + _CURRENT
    + """
local document = false
if not corrupt then document = redis.call('HGET', KEYS[1], 'json') end
return {document, current, corrupt and 1 or 0}
"""
)

_SAVE = (
    """
-- KEYS[1]: the token hash, KEYS[2]: the version key. ARGV: json, version, expected
-- version ('' = any), expires_at ('' = unknown, Unix seconds), grace seconds, max ttl
-- seconds, version ttl seconds. Returns the version written, -1 if fenced off.
"""
    + _CURRENT
    + """
local version = tonumber(ARGV[2])
if ARGV[3] ~= '' then
  local expected = tonumber(ARGV[3])
  if current ~= expected then
    return -1
  end
  version = math.max(version, expected + 1)
else
  version = math.max(version, current)
end
if corrupt then redis.call('DEL', KEYS[1]) end
redis.call('HSET', KEYS[1], 'json', ARGV[1], 'v', version)
local ttl = tonumber(ARGV[6])
if ARGV[4] ~= '' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  ttl = math.min(ttl, math.max(tonumber(ARGV[4]) - now, 0) + tonumber(ARGV[5]))
end
redis.call('PEXPIRE', KEYS[1], math.max(math.floor(ttl * 1000), 1000))
redis.call('SET', KEYS[2], version, 'PX', math.floor(tonumber(ARGV[7]) * 1000))
return version
"""
)

_DELETE = (
    """
-- KEYS[1]: the token hash, KEYS[2]: the version key. ARGV: version ttl seconds.
-- The token goes; its version stays, one past it. No token (never written, deleted,
-- expired): nothing changes.
"""
    + _CURRENT
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], current + 1, 'PX', math.floor(tonumber(ARGV[1]) * 1000))
end
return 1
"""
)

_TRY_LEASE = """
-- KEYS[1]: the lease. ARGV: owner, ttl in ms
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RENEW_LEASE = """
-- KEYS[1]: the lease. ARGV: owner, ttl in ms
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RELEASE_LEASE = """
-- KEYS[1]: the lease. ARGV: owner
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisTokenStore(FailoverTokenStore):
    """Tokens and refresh leases in Redis (a fleet of hosts)."""

    def __init__(self, conn: RedisConnection, failure: FailureMode) -> None:
        super().__init__(failure)
        self.conn = conn

    def __repr__(self) -> str:
        return f"RedisTokenStore({self.conn!r}, on_failure={self.failure.mode!r})"

    def _token_key(self, key: str) -> str:
        return self.conn.key(key, "token")

    def _lease_key(self, key: str) -> str:
        return self.conn.key(key, "lease")

    def _version_key(self, key: str) -> str:
        return self.conn.key(key, "version")

    def _b_load(self, key: str) -> tuple[Token | None, int]:
        result: Any = self.conn.run(
            "token_load", _LOAD, [self._token_key(key), self._version_key(key)], []
        )
        if not (
            isinstance(result, list)
            and len(result) == 3
            and (result[0] is None or isinstance(result[0], bytes | str))
            and isinstance(result[1], int)
            and result[1] >= 0
        ):
            raise StoreError("Redis token script returned an unexpected answer")
        raw, version, not_a_hash = result
        if not_a_hash:
            self._corrupt(key, "not a hash", "the token key is not a hash")
            return None, version
        if raw is None:
            return None, version  # none, expired or deleted: the version stays
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):  # not JSON ...
            self._corrupt(key, raw, "its json is not JSON")
            return None, version
        token = Token.from_json(data)
        if token is None:
            self._corrupt(key, raw, "its json is not a token")
            return None, version
        if token.version != version:
            token = dataclasses.replace(token, version=version)
        return token, version

    def _b_save(self, key: str, token: Token, expected_version: int | None) -> int | None:
        document = json.dumps(token.to_json(), separators=(",", ":"))
        result = self.conn.run_durable(
            "token_save",
            _SAVE,
            [self._token_key(key), self._version_key(key)],
            [
                document,
                token.version,
                "" if expected_version is None else expected_version,
                "" if token.expires_at is None else repr(float(token.expires_at)),
                TOKEN_GRACE,
                TOKEN_MAX_TTL,
                TOKEN_VERSION_TTL,
            ],
        )
        if not isinstance(result, int) or isinstance(result, bool) or result < -1:
            raise StoreError(
                f"Redis token script returned an unexpected {type(result).__name__}"
            )
        return None if result == -1 else result

    def _b_delete(self, key: str) -> None:
        self.conn.run_durable(
            "token_delete",
            _DELETE,
            [self._token_key(key), self._version_key(key)],
            [TOKEN_VERSION_TTL],
        )

    def _b_try_lease(self, key: str, owner: str, ttl: float) -> bool:
        return _flag(
            self.conn.run_durable(
                "token_try_lease", _TRY_LEASE, [self._lease_key(key)], [owner, _ms(ttl)]
            )
        )

    def _b_renew_lease(self, key: str, owner: str, ttl: float) -> bool:
        return _flag(
            self.conn.run(
                "token_renew_lease", _RENEW_LEASE, [self._lease_key(key)], [owner, _ms(ttl)]
            )
        )

    def _b_release_lease(self, key: str, owner: str) -> None:
        self.conn.run("token_release_lease", _RELEASE_LEASE, [self._lease_key(key)], [owner])


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)


def _flag(result: object) -> bool:
    if result in (0, 1):
        return result == 1
    raise StoreError(f"Redis token script returned an unexpected {type(result).__name__}")
