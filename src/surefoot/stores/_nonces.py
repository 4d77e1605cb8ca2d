"""The HMAC verifier's nonce cache on SQLite (one host) and on Redis (a fleet).

Both implement :class:`~surefoot.signing._hmac.NonceCache`: ``add_if_absent(key_id,
nonce, *, now, ttl)`` records the pair and returns False if it was already recorded
and has not expired (a replay). Each call is one atomic operation on the store:

* SQLite: one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired`` in a
  ``BEGIN IMMEDIATE`` transaction; the row counts as absent once ``expires_at <= now``,
  with ``now`` the verifier's clock (all processes of one host share it). Every
  ``purge_every`` calls (per process), the same transaction also deletes at most
  ``purge_batch`` expired rows, so the table stays bounded and no call does unbounded
  work.
* Redis: ``SET <key> 1 NX PX <ttl>``, one command. Only the TTL matters (it runs on the
  Redis server's clock); ``now`` is ignored. The key is
  ``<prefix>{<sha256(key id, nonce)>}:nonce``: fixed length, whatever the key id holds,
  and spread over the Cluster slots.

When the store fails (:class:`~surefoot.StoreUnavailable`: Redis down or slow, the
SQLite database locked past its busy timeout):

* fail-open (``FailureMode("open", ...)``): the pair is checked against, and recorded
  in, a local :class:`~surefoot.MemoryNonceCache`, and the failure is logged once,
  loudly. Replays are then caught only within this process, and only for the last
  ``LOCAL_MAX_ENTRIES`` (100,000) pairs: full, the local cache forgets the oldest pair
  rather than refuse (``when_full="evict"``). For ``ttl`` seconds after
  the last local record, pairs the store accepts are also checked locally, so a nonce
  first accepted during the outage is still rejected here after the store is back.
* fail-closed (``FailureMode("closed", ...)``): ``add_if_absent`` raises
  :class:`~surefoot.StoreUnavailable`. :meth:`HmacVerifier.verify
  <surefoot.HmacVerifier.verify>` lets it propagate: it is a
  :class:`~surefoot.StoreError`, **not** a :class:`~surefoot.SignatureError`, so a
  server that catches only ``SignatureError`` does not mistake it for a bad request;
  answer it with a 503 (the request was not accepted, and its nonce was not recorded,
  so the client may retry it).

Other store errors (:class:`~surefoot.StoreError`: a corrupt database, a foreign value
under the key prefix) always propagate.

A Redis or SQLite store that loses its data (a restarted Redis without persistence, a
deleted database file) forgets the nonces it held: replays within the window become
possible again for the pairs it forgot.
"""

from __future__ import annotations

import math
import threading

from surefoot.errors import ConfigurationError
from surefoot.stores._failure import FailureMode
from surefoot.stores._memory import MemoryNonceCache

__all__ = []


#: Entries of the local cache used while failing open.
LOCAL_MAX_ENTRIES = 100_000


def _check_ttl(ttl: float) -> None:
    if not (ttl > 0 and math.isfinite(ttl)):
        raise ConfigurationError("ttl must be a positive number of seconds")


class _LocalFallback:
    """The fail-open half shared by both stores."""

    __slots__ = ("_lock", "_used_until", "failure", "local")

    def __init__(self, failure: FailureMode) -> None:
        self.failure = failure
        # Fail-open: available first. Full, it forgets the oldest pair (a replay of it is
        # then possible within its window), as documented on MemoryNonceCache.
        self.local = MemoryNonceCache(max_entries=LOCAL_MAX_ENTRIES, when_full="evict")
        self._used_until = -math.inf
        self._lock = threading.Lock()

    def fallback(self, key_id: str, nonce: str, now: float, ttl: float) -> bool:
        with self._lock:
            self._used_until = max(self._used_until, now + ttl)
        return self.local.add_if_absent(key_id, nonce, now=now, ttl=ttl)

    def accepted_by_store(self, key_id: str, nonce: str, now: float, ttl: float) -> bool:
        """The store accepted the pair: still a replay if accepted locally in an outage."""
        self.failure.succeeded()
        if now >= self._used_until:
            return True
        return self.local.add_if_absent(key_id, nonce, now=now, ttl=ttl)


