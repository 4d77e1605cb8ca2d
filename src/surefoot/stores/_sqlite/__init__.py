"""The SQLite store: state shared by the processes of one host."""

from __future__ import annotations

import os

from surefoot.pacing._config import PacingPolicy
from surefoot.pacing._state import PacerState
from surefoot.stores._failure import FailureMode, OnFailure


class SQLiteStore:
    """State shared by the processes of one host, in one SQLite database file.

    ``busy_timeout`` is the longest a call waits for another process's lock; a call made
    for a request whose deadline is near waits less (its share of what is left).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        on_failure: OnFailure = "open",
    ) -> None:
        from surefoot.stores._sqlite._connection import SQLiteConnection
        from surefoot.stores._sqlite._nonces import SQLiteNonceCache
        from surefoot.stores._sqlite._tokens import SQLiteTokenStore

        self._conn = SQLiteConnection(path, busy_timeout=busy_timeout)
        self.failure = FailureMode(on_failure, f"SQLite store {self._conn.path}")
        self.tokens = SQLiteTokenStore(self._conn, self.failure)
        self.nonces = SQLiteNonceCache(self._conn, self.failure)

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self._conn.path)!r}, on_failure={self.failure.mode!r})"

    def pacer_state(self, pacing: PacingPolicy, *, namespace: str = "default") -> PacerState:
        from surefoot.stores._sqlite._pacing import SQLitePacerState

        return SQLitePacerState(self._conn, self.failure, pacing, namespace=namespace)

    def close(self) -> None:
        self._conn.close()
