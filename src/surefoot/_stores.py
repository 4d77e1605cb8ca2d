"""Token stores: where a token cache keeps its token between calls and processes.

* :class:`MemoryTokenStore` — in-process (the default).
* :class:`FileTokenStore` — a JSON file, written atomically (temporary file in the same
  directory, fsync, ``os.replace``) with mode 0600, and a cross-process lock
  (``flock`` on a sibling ``.lock`` file) around refreshes. A corrupt, empty or
  unreadable file means "no token"; it never crashes a request.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from ._core._errors import DeadlineExceeded, StoreError
from ._core._tokens import Token

fcntl: Any
try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["FileTokenStore", "MemoryTokenStore", "TokenStore"]

logger = logging.getLogger("surefoot")
_FORMAT = "surefoot-tokens/1"


class TokenStore(Protocol):
    """Keeps tokens by key. ``lock`` serialises refreshes (across processes if it can)."""

    def load(self, key: str) -> Token | None: ...
    def save(self, key: str, token: Token) -> None: ...
    def delete(self, key: str) -> None: ...
    def lock(self, key: str, *, timeout: float | None) -> contextlib.AbstractContextManager[None]:
        ...


class MemoryTokenStore:
    """In-process store. Its lock only needs to be a no-op: the cache holds a thread lock."""

    __slots__ = ("_guard", "_tokens")

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        self._guard = threading.Lock()

    def load(self, key: str) -> Token | None:
        return self._tokens.get(key)

    def save(self, key: str, token: Token) -> None:
        with self._guard:
            self._tokens[key] = token

    def delete(self, key: str) -> None:
        with self._guard:
            self._tokens.pop(key, None)

    @contextlib.contextmanager
    def lock(self, key: str, *, timeout: float | None) -> Iterator[None]:
        yield

    def __repr__(self) -> str:
        return f"MemoryTokenStore(keys={sorted(self._tokens)!r})"


class FileTokenStore:
    """A JSON token file shared by the processes of one host."""

    __slots__ = ("_warned", "lock_path", "path")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._warned: set[tuple[int, int]] = set()

    def __repr__(self) -> str:
        return f"FileTokenStore({str(self.path)!r})"

    def _read_all(self) -> dict[str, object]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            self._warn_once(f"token file {self.path} is unreadable ({exc.strerror}); ignoring it")
            return {}
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            data = None
        if not (isinstance(data, dict) and isinstance(data.get("tokens"), dict)):
            if raw.strip():
                self._warn_once(f"token file {self.path} is corrupt; treating it as empty")
            return {}
        tokens: dict[str, object] = data["tokens"]
        return tokens

    def _warn_once(self, message: str) -> None:
        try:
            st = self.path.stat()
            marker = (st.st_ino, st.st_mtime_ns)
        except OSError:
            marker = (0, 0)
        if marker not in self._warned:
            self._warned.add(marker)
            logger.warning("%s", message)

    def load(self, key: str) -> Token | None:
        return Token.from_json(self._read_all().get(key))

    def save(self, key: str, token: Token) -> None:
        tokens = self._read_all()
        tokens[key] = token.to_json()
        self._write({"format": _FORMAT, "tokens": tokens})

    def delete(self, key: str) -> None:
        tokens = self._read_all()
        if tokens.pop(key, None) is not None:
            self._write({"format": _FORMAT, "tokens": tokens})

    def _write(self, document: dict[str, object]) -> None:
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        except OSError as exc:
            raise StoreError(f"cannot write token file {self.path}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), 0o600)
                json.dump(document, handle, separators=(",", ":"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise StoreError(f"cannot write token file {self.path}: {exc.strerror}") from exc
            raise
        with contextlib.suppress(OSError):
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    @contextlib.contextmanager
    def lock(self, key: str, *, timeout: float | None) -> Iterator[None]:
        """An exclusive ``flock`` on the sibling lock file, polled until ``timeout``."""
        if fcntl is None:  # pragma: no cover - no cross-process lock on this platform
            yield
            return
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open lock file {self.lock_path}: {exc.strerror}") from exc
        try:
            give_up = None if timeout is None else time.monotonic() + timeout
            delay = 0.001
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if give_up is not None and time.monotonic() >= give_up:
                        raise DeadlineExceeded(
                            "deadline reached waiting for another process's token refresh"
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
