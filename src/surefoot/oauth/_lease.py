"""The refresh lease's keeper: renews a token store's lease while a refresh runs.
"""

from __future__ import annotations

import os
import threading
import uuid

from surefoot._log import logger
from surefoot.stores._protocols import TokenStore

__all__ = ["LeaseRenewer", "new_owner"]



def new_owner() -> str:
    """A lease owner id: unique per refresh, and says which process (never a secret)."""
    return f"{os.getpid()}-{uuid.uuid4().hex}"


class LeaseRenewer:
    """Extends a refresh lease every ``ttl / 3`` seconds until stopped (or lost)."""

    __slots__ = ("_done", "key", "lost", "owner", "store", "ttl")

    def __init__(self, store: TokenStore, key: str, owner: str, ttl: float) -> None:
        self.store = store
        self.key = key
        self.owner = owner
        self.ttl = ttl
        self.lost = False
        self._done = threading.Event()
        threading.Thread(target=self._run, name="surefoot-lease-renewer", daemon=True).start()

    def _run(self) -> None:
        while not self._done.wait(self.ttl / 3):
            try:
                held = self.store.renew_lease(self.key, self.owner, self.ttl)
            except Exception as exc:  # a StoreError, or a bug in a user's store
                held = False
                reason = type(exc).__name__
            else:
                reason = "it expired or was taken"
            if self._done.is_set():
                return
            if not held:
                self.lost = True
                logger.warning(
                    "surefoot: lost the token refresh lease (%s); the new token will be "
                    "stored only if no newer one was",
                    reason,
                )
                return

    def stop(self) -> None:
        """Stop renewing (a renewal still in flight cannot outlive the release: it
        needs the lease to be held by the same owner)."""
        self._done.set()
