"""Tokens in Redis, shared by a fleet.

Per token key ``k`` (both keys in one Cluster slot, through the ``{k}`` hash tag):

* ``<prefix>{k}:token`` — a hash: ``json`` (the token) and ``v`` (its version). Written
  only by a Lua script that compares the version first (the fencing step). It expires
  :data:`TOKEN_GRACE` seconds after the token does (measured on Redis' own clock,
  ``TIME``), or after :data:`TOKEN_MAX_TTL` for a token without a known expiry.
* ``<prefix>{k}:lease`` — the refresh lease: the owner's id, ``SET NX PX``; renewed and
  released only by its owner (a Lua compare-then-``PEXPIRE``/``DEL``).

See :mod:`surefoot.stores._file` for the protocol, and :class:`FailoverTokenStore` for what
happens when Redis is down.
"""

from __future__ import annotations

import json
from typing import Any

from surefoot.errors import StoreError
from surefoot.oauth._token import Token
from surefoot.stores._failover import FailoverTokenStore
from surefoot.stores._failure import FailureMode
from surefoot.stores._redis._connection import RedisConnection

__all__ = ["TOKEN_GRACE", "TOKEN_MAX_TTL", "RedisTokenStore"]

#: A stored token's key outlives the token by this long (seconds), so its version (the
#: fence) stays known to a refresh that is still running.
TOKEN_GRACE = 3600
#: The longest a token's key lives (seconds), e.g. for tokens without an expiry.
TOKEN_MAX_TTL = 30 * 86400

_SAVE = """
-- KEYS[1]: the token hash. ARGV: json, version, expected version ('' = any),
-- expires_at ('' = unknown, Unix seconds), grace seconds, max ttl seconds
if ARGV[3] ~= '' then
  local stored = tonumber(redis.call('HGET', KEYS[1], 'v') or '0') or 0
  if stored ~= tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], 'json', ARGV[1], 'v', ARGV[2])
local ttl = tonumber(ARGV[6])
if ARGV[4] ~= '' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  ttl = math.min(ttl, math.max(tonumber(ARGV[4]) - now, 0) + tonumber(ARGV[5]))
end
redis.call('PEXPIRE', KEYS[1], math.max(math.floor(ttl * 1000), 1000))
return 1
"""

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

    def _b_load(self, key: str) -> Token | None:
        raw: Any = self.conn.call(self.conn.client.hget, self._token_key(key), "json")
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):  # garbage: no token
            return None
        return Token.from_json(data)

    def _b_save(self, key: str, token: Token, expected_version: int | None) -> bool:
        document = json.dumps(token.to_json(), separators=(",", ":"))
        result = self.conn.run(
            "token_save",
            _SAVE,
            [self._token_key(key)],
            [
                document,
                token.version,
                "" if expected_version is None else expected_version,
                "" if token.expires_at is None else repr(float(token.expires_at)),
                TOKEN_GRACE,
                TOKEN_MAX_TTL,
            ],
        )
        return _flag(result)

    def _b_delete(self, key: str) -> None:
        self.conn.call(self.conn.client.delete, self._token_key(key))

    def _b_try_lease(self, key: str, owner: str, ttl: float) -> bool:
        return _flag(
            self.conn.run("token_try_lease", _TRY_LEASE, [self._lease_key(key)], [owner, _ms(ttl)])
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
