"""The SQLite database shared by the SQLite store's parts (one host, many processes).

WAL journal (readers never block the writer), ``BEGIN IMMEDIATE`` for every state
change (the write lock is taken up front, so two processes never both read and then
both write), and a busy timeout (a process waits its turn instead of failing). The busy
timeout is set for each call: ``busy_timeout``, or less when a request's deadline is
near (:func:`~surefoot.stores._deadline.wait_for`); every other wait (the setup lock, the
lock retries) is bounded the same way. One connection per thread and per process:
connections are never shared across ``fork``. Every ``sqlite3`` exception is
translated: a database that stays locked past the busy timeout, or cannot be opened, is
:class:`~surefoot.StoreUnavailable`; anything else is :class:`~surefoot.StoreError`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from surefoot.errors import ConfigurationError, StoreError, StoreUnavailable
from surefoot.stores._deadline import wait_for
from surefoot.stores._paths import user_path

__all__ = ["SQLiteConnection"]

_T = TypeVar("_T")


class SQLiteConnection:
    """Per-thread connections to one database file, created with mode 0600."""

    __slots__ = ("_local", "_schema", "_schema_lock", "busy_timeout", "path")

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        if not busy_timeout > 0:
            raise ConfigurationError("busy_timeout must be positive")
        self.path = user_path(path, "SQLiteStore path")
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._schema: list[str] = []
        self._schema_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SQLiteConnection({str(self.path)!r})"

    def add_schema(self, *statements: str) -> None:
        """``CREATE TABLE IF NOT EXISTS ...`` statements, run on every new connection."""
        with self._schema_lock:
            self._schema.extend(s for s in statements if s not in self._schema)

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (opened, its schema applied), its busy timeout set to
        what is left of this call's wait: every lock it waits for, here and in the
        statement that follows, is waited for until one instant."""
        wait = wait_for(self.busy_timeout)
        give_up = time.monotonic() + wait
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        try:
            # The whole wait in milliseconds when nothing was waited for yet (the usual
            # call: the same value as last time, no PRAGMA), else what is left of it.
            busy = max(int(wait * 1000), 1)
            if conn is None or local.pid != os.getpid():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with _setup_lock(self.path, give_up):
                    conn = self._open(give_up)
                local.conn, local.pid, local.busy = conn, os.getpid(), None
                local.schema = len(self._schema)
                busy = _busy_ms(give_up)
            elif local.schema != len(self._schema):
                local.busy = None  # set for each statement meanwhile
                self._apply_schema(conn, give_up)
                local.schema = len(self._schema)
                busy = _busy_ms(give_up)
            if local.busy != busy:
                conn.execute(f"PRAGMA busy_timeout = {busy}")
                local.busy = busy
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from None
        except OSError as exc:
            raise StoreUnavailable(f"SQLite store {self.path}: {exc.strerror}") from None
        return conn

    def _open(self, give_up: float) -> sqlite3.Connection:
        """A new connection in WAL mode with the schema applied, waiting for locks until
        ``give_up`` (a ``time.monotonic()`` instant). The caller holds the setup lock:
        processes that open a new database at once take turns creating it and switching
        it to WAL (done concurrently, SQLite was seen to answer "disk I/O error" to one
        of them)."""
        if not self.path.exists():
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
        conn = sqlite3.connect(
            self.path,
            timeout=_busy_ms(give_up) / 1000,
            isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
            check_same_thread=True,
        )
        try:
            # Another host process may hold the database (an older surefoot without the
            # setup lock, a tool): switching to WAL can still answer SQLITE_BUSY without
            # calling the busy handler, so retry here.
            mode = _retry_locked(
                conn, lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone(), give_up
            )
            if mode is None or str(mode[0]).lower() != "wal":  # pragma: no cover
                raise StoreError(f"SQLite store {self.path}: WAL journal not available")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._apply_schema(conn, give_up)
        except BaseException:
            conn.close()
            raise
        return conn

    def _apply_schema(self, conn: sqlite3.Connection, give_up: float) -> None:
        for statement in list(self._schema):
            _retry_locked(conn, functools.partial(conn.execute, statement), give_up)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any error)."""
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from None
        try:
            yield conn
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise _translate(exc, self.path) from None
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise _translate(exc, self.path) from None

    def read(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """One autocommit read (WAL: never blocked by a writer)."""
        conn = self._connection()
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from None

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local = threading.local()


@contextlib.contextmanager
def _setup_lock(path: Path, give_up: float) -> Iterator[None]:
    """An exclusive ``flock`` on ``<database>.setup-lock`` (POSIX; elsewhere nothing),
    waited for until ``give_up`` (a ``time.monotonic()`` instant; then
    :class:`StoreUnavailable`)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(path.with_name(path.name + ".setup-lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > give_up:
                    raise StoreUnavailable(
                        f"SQLite store {path}: another process is stuck creating it"
                    ) from None
                time.sleep(0.005)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _busy_ms(give_up: float) -> int:
    """The busy timeout (whole milliseconds, at least one) that ends at ``give_up``."""
    return max(int((give_up - time.monotonic()) * 1000), 1)


def _retry_locked(conn: sqlite3.Connection, call: Callable[[], _T], give_up: float) -> _T:
    """``call()``, again while the database is locked, until ``give_up`` (each try's busy
    wait ends there too)."""
    while True:
        conn.execute(f"PRAGMA busy_timeout = {_busy_ms(give_up)}")
        try:
            return call()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > give_up:
                raise
            time.sleep(0.01)


def _translate(exc: sqlite3.Error, path: Path) -> StoreError:
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and (
        "locked" in text or "busy" in text or "unable to open" in text or "disk" in text
    ):
        return StoreUnavailable(f"SQLite store {path}: {text}")
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in text:
        return StoreError(f"SQLite store {path} is not a database (corrupt?)")
    return StoreError(f"SQLite store {path}: {type(exc).__name__}: {text}")
