"""The file token store: where a token cache keeps its token between processes of one host.

:class:`FileTokenStore` — a JSON file, written atomically (temporary file in the same
directory, fsync, ``os.replace``) with mode 0600, and a cross-process lease (``flock`` on a
sibling ``.lock`` file) around refreshes. A corrupt, empty or unreadable file means "no
token" (and a warning, once); so does a corrupt entry (one warning naming the key, never
the value); it never crashes a request.

**Versions survive.** The token file keeps the version of each deleted token's key
(``"versions"``: its tombstone, one past the deleted token), and the ``.lock`` file
holds every key's latest version (by a hash of the key: no names, no secrets), written
under the lock after each write of the token file. A key's version is its token's; with
no token, the largest the tombstone, a corrupt entry and the lock file know. So it never
goes backwards: not after ``delete``, a corrupt entry or file, nor the token file being
removed.

**What it refuses.** The token file holds secrets and decides which token is sent, so
the store does not trust a file or directory someone else could have planted or can
change (on POSIX systems; on others only the symlink part applies, where it exists):

* a symbolic link, as the token file or the lock file (opened with ``O_NOFOLLOW``: a
  dangling ``.lock`` link is never followed to create its target);
* a token or lock file that is not a regular file, is not owned by this process's user,
  or is writable by group or others (a token file readable by them is tightened to 0600,
  with a warning: its token may have leaked);
* a directory not owned by this user (or root), or writable by group or others without
  the sticky bit (``/tmp`` is fine: nobody can replace another user's files there). Only
  the token file's own directory is checked, not its ancestors.

Each is a :class:`~surefoot.StoreError` naming the path and what is wrong with it (never
the token); a :class:`~surefoot.TokenCache` raises it from ``get()``. New files are
created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and mode 0600 (the temporary file of a
write, replaced over the token file with ``os.replace``), a new directory with 0700.

The other token stores: ``MemoryTokenStore`` (in-process, the default;
``stores/_memory.py``), ``SQLiteTokenStore`` (one host; ``stores/_sqlite``) and
``RedisTokenStore`` (a fleet; ``stores/_redis``).

The protocol (:class:`TokenStore`) has two parts:

**Tokens, fenced by version.** Every key has a version, which never goes backwards: a
stored :class:`Token` carries it as its ``version``; a key that holds no token has the
version its last token left behind (one past it when it was deleted; unchanged when it
expired or is corrupt), 0 if it was never written. ``load_versioned(key)`` returns
``(token or None, version)`` (``load`` just the token). ``delete`` of a key that holds
no token changes nothing.
``save(key, token, expected_version=v)`` is a compare-and-set: it writes only if the
key's version is still ``v`` and returns ``False`` otherwise (another holder wrote a
newer token: load it and use it); the version written is ``max(token.version, v + 1)``.
``expected_version=None`` writes unconditionally, at ``max(token.version, current)``. A
refresh writes ``version = v + 1`` with ``expected_version=v``, so a holder whose lease
ran out cannot overwrite the token its successor wrote, nor a token written after a
delete or an expiry.

**Refresh leases.** ``try_lease(key, owner, ttl)`` takes the refresh lease of ``key`` for
``owner`` (a random id per refresh) for ``ttl`` seconds unless another owner holds a live
one; it returns whether ``owner`` now holds it (asking again as the holder extends it).
``renew_lease`` extends a lease the owner still holds (``False``: it expired or was
taken). ``release_lease`` drops it if the owner still holds it. A lease only decides who
refreshes; the version check on ``save`` is what keeps the token safe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from surefoot._log import logger
from surefoot.errors import DeadlineExceeded, StoreError
from surefoot.oauth._token import Token
from surefoot.stores._paths import user_path

fcntl: Any
try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["FileTokenStore"]

_FORMAT = "surefoot-tokens/1"
#: The format of the versions the ``.lock`` file holds.
_VERSIONS_FORMAT = "surefoot-token-versions/1"
#: The largest version taken as one (an integer a float holds exactly).
_MAX_VERSION = 2**53
#: How long a write to a :class:`FileTokenStore` waits for another process's lease.
_FILE_WRITE_WAIT = 10.0
#: The pseudo-key of the file lock taken just for one write.
_WRITING = "\x00writing"
# Flags missing on some platforms are 0 (no effect).
_O_NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)
_O_NONBLOCK: int = getattr(os, "O_NONBLOCK", 0)  # a planted FIFO must not block the open
_O_BINARY: int = getattr(os, "O_BINARY", 0)  # Windows
#: Whether owners and permission bits mean anything here (not on Windows).
_POSIX = os.name == "posix" and hasattr(os, "getuid")


class FileTokenStore:
    """A JSON token file shared by the processes of one host.

    The refresh lease is an exclusive ``flock`` on the sibling ``.lock`` file, taken
    without blocking and held until released; it does not expire (``ttl`` is ignored)
    but ends with the process that holds it, so a crashed holder never blocks the
    others. There is one lock file per token file: one refresh at a time per file.
    Every write (``save``, ``delete``) happens under that lock, so the version check
    and the write are one step for every process.

    It refuses (:class:`~surefoot.StoreError`) a token or lock file that is a symlink,
    not this user's or writable by others, and a directory others can write without the
    sticky bit: see the module documentation.
    """

    __slots__ = ("_guard", "_leases", "_warned", "lock_path", "path")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = user_path(path, "FileTokenStore path")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._warned: set[tuple[int, int, str | None]] = set()
        #: key -> (owner, fd of the flock) for the leases this instance holds
        self._leases: dict[str, tuple[str, int]] = {}
        #: serialises this instance's read-modify-write of the file between threads
        self._guard = threading.RLock()

    def __repr__(self) -> str:
        return f"FileTokenStore({str(self.path)!r})"

    # -- reading -----------------------------------------------------------------------

    def _read_document(self) -> tuple[dict[str, object], dict[str, object]]:
        """The stored tokens by key, and the tombstones (key -> version). Corrupt, empty
        or unreadable: none. Raises :class:`StoreError` for a file or directory the store
        refuses (module doc)."""
        try:
            raw = self._read_bytes()
        except FileNotFoundError:
            return {}, {}
        except OSError as exc:
            self._warn_once(f"token file {self.path} is unreadable ({exc.strerror}); ignoring it")
            return {}, {}
        try:
            data = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):  # not UTF-8, not JSON, nested too deeply ...
            data = None
        if not (isinstance(data, dict) and isinstance(data.get("tokens"), dict)):
            if raw.strip():
                self._warn_once(f"token file {self.path} is corrupt; treating it as empty")
            return {}, {}
        tokens: dict[str, object] = data["tokens"]
        tombstones = data.get("versions")
        return tokens, tombstones if isinstance(tombstones, dict) else {}

    def _read_versions(self) -> dict[str, object]:
        """The versions the lock file holds (hash of the key -> version); none if it is
        missing, empty (a lock file only) or unreadable. Raises :class:`StoreError` for a
        lock file the store refuses."""
        if fcntl is None:  # pragma: no cover - no lock file on this platform
            return {}
        try:
            self._check_directory()
            fd = self._open(self.lock_path, os.O_RDONLY | _O_NONBLOCK, "lock file")
        except OSError:  # not there (yet), or unreadable: nothing known from it
            return {}
        try:
            raw = os.read(fd, 1 << 20)
        except OSError:
            return {}
        finally:
            os.close(fd)
        return _parse_versions(raw)

    def _write_versions(self, versions: dict[str, object]) -> None:
        """Write ``versions`` into the lock file (the caller holds its lock): in place,
        padded with blanks to the old length, so a reader never sees half of it."""
        if fcntl is None:  # pragma: no cover - no lock file on this platform
            return
        data = json.dumps(
            {"format": _VERSIONS_FORMAT, "versions": versions}, separators=(",", ":")
        ).encode()
        try:
            fd = self._open(self.lock_path, os.O_RDWR, "lock file")
        except OSError:  # best effort: the token file holds the version too
            return
        try:
            size = os.fstat(fd).st_size
            os.pwrite(fd, data.ljust(size), 0)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _state(
        self,
        key: str,
        tokens: dict[str, object],
        tombstones: dict[str, object],
        versions: dict[str, object],
    ) -> tuple[Token | None, int, bool]:
        """The key's token (``None``: none or corrupt), its version, and whether its
        entry is corrupt. A token's version is its own (the token file is written
        atomically: the pair is always one write's); with no token, the largest the
        corrupt entry, the tombstone and the lock file know."""
        entry = tokens.get(key)
        token = Token.from_json(entry) if entry is not None else None
        if token is not None:
            return token, token.version, False
        version = 0
        if isinstance(entry, dict):  # corrupt: its version still counts, if it has one
            version = _as_version(entry.get("version")) or 0
        version = max(
            version,
            _as_version(tombstones.get(key)) or 0,
            _as_version(versions.get(_key_hash(key))) or 0,
        )
        return None, version, entry is not None

    def _read_bytes(self) -> bytes:
        self._check_directory()
        fd = self._open(self.path, os.O_RDONLY | _O_NONBLOCK, "token file", private=True)
        with os.fdopen(fd, "rb") as handle:
            return handle.read()

    # -- what the store refuses (see the module documentation) ---------------------------

    def _check_directory(self) -> None:
        """Refuse a directory others could plant or swap files in. ``FileNotFoundError``
        when it does not exist."""
        directory = self.path.parent
        info = os.stat(directory)  # a symlinked directory: its target is what matters
        if not stat.S_ISDIR(info.st_mode):
            raise StoreError(f"token directory {directory} is not a directory")
        if not _POSIX:  # pragma: no cover - no owners or permission bits to check
            return
        uid = os.getuid()
        if info.st_uid not in (uid, 0):
            raise StoreError(
                f"token directory {directory} is owned by uid {info.st_uid}, not by this "
                f"user (uid {uid}) or root; refusing to use it"
            )
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o022 and not mode & stat.S_ISVTX:
            raise StoreError(
                f"token directory {directory} is writable by {_who(mode)} without the "
                f"sticky bit (mode {mode:04o}); refusing to use it"
            )

    def _open(self, path: Path, flags: int, what: str, *, private: bool = False) -> int:
        """Open ``path`` without following a symlink, then check what was opened: a
        regular file of this user that nobody else may write (nor read, if ``private``:
        tightened to 0600 then)."""
        try:
            fd = os.open(path, flags | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY, 0o600)
        except OSError:
            if _O_NOFOLLOW and os.path.islink(path):  # ELOOP (Linux), EMLINK (BSDs)
                raise StoreError(
                    f"{what} {path} is a symbolic link; refusing to follow it"
                ) from None
            raise
        try:
            self._check_opened(fd, path, what, private=private)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _check_opened(self, fd: int, path: Path, what: str, *, private: bool) -> None:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(f"{what} {path} is not a regular file; refusing to use it")
        if not _POSIX:  # pragma: no cover - no owners or permission bits to check
            return
        uid = os.getuid()
        if info.st_uid != uid:
            raise StoreError(
                f"{what} {path} is owned by uid {info.st_uid}, not by this user "
                f"(uid {uid}); refusing to use it"
            )
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o022:
            raise StoreError(
                f"{what} {path} is writable by {_who(mode)} (mode {mode:04o}); refusing "
                "to use it"
            )
        if mode & 0o077 and private:
            with contextlib.suppress(OSError):
                os.fchmod(fd, 0o600)
            self._warn_once(
                f"token file {path} was readable by {_who(mode, 0o044)} (mode {mode:04o}); "
                "made it 0600: its tokens may have leaked"
            )

    def _warn_once(self, message: str, key: str | None = None) -> None:
        """Warn once per state of the token file (and ``key``, for a corrupt entry)."""
        try:
            st = self.path.stat()
            marker: tuple[int, int, str | None] = (st.st_ino, st.st_mtime_ns, key)
        except OSError:
            marker = (0, 0, key)
        if marker not in self._warned:
            if len(self._warned) >= 1024:
                self._warned.clear()
            self._warned.add(marker)
            logger.warning("%s", message)

    def load(self, key: str) -> Token | None:
        return self.load_versioned(key)[0]

    def load_versioned(self, key: str) -> tuple[Token | None, int]:
        tokens, tombstones = self._read_document()
        token = Token.from_json(tokens.get(key)) if key in tokens else None
        if token is not None:
            return token, token.version
        # No token: what the lock file knows counts too. It is read first, then the
        # token file again: a write goes to the token file first, then to the lock file,
        # so the lock file never knows a newer write than the token file read after it.
        versions = self._read_versions()
        tokens, tombstones = self._read_document()
        token, version, corrupt = self._state(key, tokens, tombstones, versions)
        if corrupt:
            self._warn_corrupt_entry(key)
        return token, version

    def _warn_corrupt_entry(self, key: str) -> None:
        self._warn_once(
            f"token file {self.path}: the token under key {key!r} is corrupt; treating it "
            "as absent",
            key,
        )

    # -- writing (always under the file lock) --------------------------------------------

    def save(self, key: str, token: Token, *, expected_version: int | None = None) -> bool:
        with self._write_locked():
            tokens, tombstones = self._read_document()
            versions = self._read_versions()
            current = self._state(key, tokens, tombstones, versions)[1]
            if expected_version is None:
                version = max(token.version, current)  # never backwards
            elif current != expected_version:
                return False
            else:
                version = max(token.version, expected_version + 1)  # a fenced write bumps
            if token.version != version:
                token = dataclasses.replace(token, version=version)
            tokens[key] = token.to_json()
            tombstones.pop(key, None)
            self._commit(tokens, tombstones, versions, key, version)
            return True

    def delete(self, key: str) -> None:
        with self._write_locked():
            tokens, tombstones = self._read_document()
            versions = self._read_versions()
            if key not in tokens:
                return  # no token (never written, or deleted): nothing changes
            version = self._state(key, tokens, tombstones, versions)[1]
            tokens.pop(key, None)
            tombstones[key] = version + 1  # the token goes, its version stays (one past)
            self._commit(tokens, tombstones, versions, key, version + 1)

    def _commit(
        self,
        tokens: dict[str, object],
        tombstones: dict[str, object],
        versions: dict[str, object],
        key: str,
        version: int,
    ) -> None:
        """Write the token file, then the key's version into the lock file."""
        document: dict[str, object] = {"format": _FORMAT, "tokens": tokens}
        if tombstones:
            document["versions"] = tombstones
        self._write(document)
        hashed = _key_hash(key)
        if versions.get(hashed) != version:
            versions[hashed] = version
            self._write_versions(versions)

    @contextlib.contextmanager
    def _write_locked(self) -> Iterator[None]:
        """This instance's thread guard, plus the file lock unless it holds a lease."""
        with self._guard:
            if self._leases or fcntl is None:
                yield  # we hold the flock already (or there is none on this platform)
                return
            owner = _owner()
            give_up = time.monotonic() + _FILE_WRITE_WAIT
            delay = 0.001
            while not self.try_lease(_WRITING, owner, 0.0):
                if time.monotonic() >= give_up:
                    raise StoreError(
                        f"token file {self.path} stayed locked by another process"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
            try:
                yield
            finally:
                self.release_lease(_WRITING, owner)

    def _write(self, document: dict[str, object]) -> None:
        """Write atomically: a new temporary file (``O_CREAT | O_EXCL | O_NOFOLLOW``,
        0600) in the same directory, fsync, ``os.replace`` over the token file (which
        replaces a symlink there, never writes through it), fsync of the directory."""
        directory = self.path.parent
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._check_directory()
            fd, tmp = self._create_temporary(directory)
        except OSError as exc:
            raise StoreError(f"cannot write token file {self.path}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                if _POSIX:
                    os.fchmod(handle.fileno(), 0o600)  # the umask may have taken bits
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

    def _create_temporary(self, directory: Path) -> tuple[int, Path]:
        """A new, private file next to the token file, with a random name: never an
        existing file (``O_EXCL``: a name already there fails), never through a symlink."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY
        tmp = directory / f".{self.path.name}.{uuid.uuid4().hex}.tmp"
        return os.open(tmp, flags, 0o600), tmp

    # -- leases ------------------------------------------------------------------------

    def try_lease(self, key: str, owner: str, ttl: float) -> bool:
        """Take the file lock without blocking (``ttl`` is ignored: see the class)."""
        with self._guard:
            held = self._leases.get(key)
            if held is not None:
                return held[0] == owner
            if fcntl is None:  # pragma: no cover - no cross-process lock on this platform
                self._leases[key] = (owner, -1)
                return True
            try:
                self.lock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._check_directory()
                fd = self._open(self.lock_path, os.O_RDWR | os.O_CREAT, "lock file")
            except OSError as exc:
                raise StoreError(
                    f"cannot open lock file {self.lock_path}: {exc.strerror}"
                ) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # BlockingIOError: another process (or instance) holds it
                os.close(fd)
                return False
            self._leases[key] = (owner, fd)
            return True

    def renew_lease(self, key: str, owner: str, ttl: float) -> bool:
        with self._guard:
            held = self._leases.get(key)
            return held is not None and held[0] == owner

    def release_lease(self, key: str, owner: str) -> None:
        with self._guard:
            held = self._leases.get(key)
            if held is None or held[0] != owner:
                return
            del self._leases[key]
            fd = held[1]
            if fd >= 0:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    @contextlib.contextmanager
    def lock(self, key: str, *, timeout: float | None) -> Iterator[None]:
        """The refresh lease as a context manager, polled until ``timeout``
        (:class:`~surefoot.DeadlineExceeded` then)."""
        owner = _owner()
        give_up = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while not self.try_lease(key, owner, 0.0):
            if give_up is not None and time.monotonic() >= give_up:
                raise DeadlineExceeded(
                    "deadline reached waiting for another process's token refresh"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        try:
            yield
        finally:
            self.release_lease(key, owner)


def _key_hash(key: str) -> str:
    """What the lock file knows a key by: not its name."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _as_version(value: object) -> int | None:
    """``value`` if it is a version (a non-negative integer), else ``None``."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_VERSION:
        return value
    return None


def _parse_versions(raw: bytes) -> dict[str, object]:
    """The ``versions`` of a lock file's content; none for anything else (an empty lock
    file, one an older surefoot left, garbage)."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return {}
    versions = data.get("versions") if isinstance(data, dict) else None
    return versions if isinstance(versions, dict) else {}


def _owner() -> str:
    return f"{os.getpid()}-{uuid.uuid4().hex}"


def _who(mode: int, bits: int = 0o022) -> str:
    """Who besides the owner ``mode`` gives ``bits`` (write: 0o022, read: 0o044) to."""
    group, others = mode & bits & 0o070, mode & bits & 0o007
    return "group and others" if group and others else "group" if group else "others"
