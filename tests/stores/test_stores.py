"""Token stores: FileTokenStore atomicity, permissions, corruption, cross-process refresh."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import stat
import threading
import time

import pytest

from surefoot import DeadlineExceeded
from surefoot.errors import StoreError
from surefoot.oauth import Token, TokenCache
from surefoot.stores import FileTokenStore, MemoryTokenStore

T0 = 1_700_000_000.0
ACCESS = "file-store-access-token"


def make_token(**kwargs) -> Token:
    kwargs.setdefault("access_token", ACCESS)
    kwargs.setdefault("expires_at", T0 + 3600)
    kwargs.setdefault("obtained_at", T0)
    return Token(**kwargs)


def leftovers(directory) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith(".tmp"))


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


# -- memory store ------------------------------------------------------------------------


def test_memory_store():
    store = MemoryTokenStore()
    assert store.load("k") is None
    token = make_token()
    store.save("k", token)
    assert store.load("k") is token
    with store.lock("k", timeout=0):
        pass
    store.delete("k")
    store.delete("k")
    assert store.load("k") is None
    assert ACCESS not in repr(store)


# -- file store: basics -------------------------------------------------------------------


def test_roundtrip(tmp_path):
    store = FileTokenStore(tmp_path / "sub" / "tokens.json")
    assert store.load("a") is None
    a = make_token(refresh_token="rt", scope="read", version=2)
    b = make_token(access_token="other", expires_at=None)
    store.save("a", a)
    store.save("b", b)
    assert store.load("a") == a
    assert store.load("b") == b
    # a fresh instance (another process) reads the same
    again = FileTokenStore(tmp_path / "sub" / "tokens.json")
    assert again.load("a") == a
    store.delete("a")
    assert again.load("a") is None
    assert again.load("b") == b
    document = json.loads((tmp_path / "sub" / "tokens.json").read_text())
    assert document["format"] == "surefoot-tokens/1"
    assert set(document["tokens"]) == {"b"}


def test_repr_has_no_token(tmp_path):
    store = FileTokenStore(tmp_path / "tokens.json")
    store.save("k", make_token())
    assert ACCESS not in repr(store)


@pytest.mark.parametrize("umask", [0o022, 0o000, 0o002])
def test_file_mode_is_0600(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = tmp_path / "tokens.json"
        store = FileTokenStore(path)
        store.save("k", make_token())
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        # an existing file with wider permissions is replaced by a 0600 one
        os.chmod(path, 0o644)
        store.save("k", make_token(version=2))
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with store.lock("k", timeout=1):
            pass
        assert stat.S_IMODE(os.stat(store.lock_path).st_mode) & 0o077 == 0
    finally:
        os.umask(old)


def test_write_uses_os_replace_from_same_directory(tmp_path, monkeypatch, umask_022):
    path = tmp_path / "tokens.json"
    calls: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src, dst, *args, **kwargs):
        calls.append((os.fspath(src), os.fspath(dst)))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", spy)
    FileTokenStore(path).save("k", make_token())
    assert len(calls) == 1
    src, dst = calls[0]
    assert os.path.dirname(src) == str(tmp_path)
    assert dst == str(path)
    assert leftovers(tmp_path) == []


def _partial_dump(exc: BaseException):
    def dump(obj, fp, *args, **kwargs):
        fp.write('{"format":"surefoot-tokens/1","tokens":{"k":{"access_tok')
        fp.flush()
        raise exc

    return dump


def test_failed_write_with_os_error_keeps_old_file(tmp_path, monkeypatch, umask_022):
    path = tmp_path / "tokens.json"
    store = FileTokenStore(path)
    store.save("k", make_token())
    before = path.read_bytes()
    monkeypatch.setattr(json, "dump", _partial_dump(OSError(28, "No space left on device")))
    with pytest.raises(StoreError):
        store.save("k", make_token(access_token="new"))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert FileTokenStore(path).load("k") == make_token()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("exc", [RuntimeError("boom"), TypeError("not serializable")])
def test_failed_write_with_any_error_keeps_old_file_and_leaves_no_temp(
    tmp_path, monkeypatch, umask_022, exc
):
    path = tmp_path / "tokens.json"
    store = FileTokenStore(path)
    store.save("k", make_token())
    before = path.read_bytes()
    monkeypatch.setattr(json, "dump", _partial_dump(exc))
    with pytest.raises(type(exc)):
        store.save("k", make_token(access_token="new"))
    monkeypatch.undo()
    assert path.read_bytes() == before
    # a half-written temporary file holding token material must not be left behind
    assert leftovers(tmp_path) == []


# -- file store: corruption -----------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\xff\xfe garbage \x80",
        b"[]",
        b'[{"access_token": "x"}]',
        b'{"format":"surefoot-tokens/1","tokens":{"k":{"access_token":"x"',
        b"null",
        b'{"tokens": []}',
        b'"just a string"',
    ],
)
def test_corrupt_file_is_no_token_and_warns_once(tmp_path, caplog, content):
    path = tmp_path / "tokens.json"
    path.write_bytes(content)
    store = FileTokenStore(path)
    with caplog.at_level(logging.WARNING, logger="surefoot"):
        assert store.load("k") is None
        assert store.load("k") is None
        assert store.load("other") is None
    warnings = [r for r in caplog.records if r.name == "surefoot" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "corrupt" in warnings[0].getMessage()
    # the store recovers on the next save
    store.save("k", make_token())
    assert store.load("k") == make_token()


@pytest.mark.parametrize("content", [b"", b"   \n"])
def test_empty_file_is_no_token(tmp_path, caplog, content):
    path = tmp_path / "tokens.json"
    path.write_bytes(content)
    store = FileTokenStore(path)
    with caplog.at_level(logging.WARNING, logger="surefoot"):
        assert store.load("k") is None
        assert store.load("k") is None
    warnings = [r for r in caplog.records if r.name == "surefoot"]
    assert len(warnings) <= 1


def test_malformed_entry_is_no_token(tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"format": "surefoot-tokens/1",
                                "tokens": {"k": {"access_token": 5}, "ok": {"access_token": "y"}}}))
    store = FileTokenStore(path)
    assert store.load("k") is None
    assert store.load("ok") == Token(access_token="y")


def test_token_cache_on_corrupt_file_refreshes(tmp_path):
    path = tmp_path / "tokens.json"
    path.write_bytes(b"{{{{")
    cache = TokenCache(lambda: "fresh-token", store=FileTokenStore(path), hook=lambda e: None)
    assert cache.get().access_token == "fresh-token"
    assert FileTokenStore(path).load("default").access_token == "fresh-token"


# -- file store: lock ------------------------------------------------------------------------


def test_lock_is_exclusive_and_times_out(tmp_path):
    store = FileTokenStore(tmp_path / "tokens.json")
    other = FileTokenStore(tmp_path / "tokens.json")
    inside = threading.Event()
    release = threading.Event()

    def hold():
        with store.lock("k", timeout=1):
            inside.set()
            release.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert inside.wait(5)
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded) as info, other.lock("k", timeout=0.1):
            pass
        assert "another process" in str(info.value)
        assert time.monotonic() - start < 1.0
    finally:
        release.set()
        t.join(5)
    with other.lock("k", timeout=1):
        pass


# -- cross-process single flight -------------------------------------------------------------


def _cross_process_worker(store_path: str, side_path: str, barrier, results) -> None:
    store = FileTokenStore(store_path)
    pid = os.getpid()

    def source() -> dict[str, object]:
        with open(side_path, "a", encoding="utf-8") as side:
            side.write(f"{pid}\n")
        time.sleep(0.05)
        return {"access_token": f"tok-{pid}", "expires_in": 3600}

    cache = TokenCache(source, store=store, hook=lambda event: None)
    barrier.wait(30)
    seen: list[str] = []
    lock = threading.Lock()

    def call() -> None:
        token = cache.get()
        with lock:
            seen.append(token.access_token)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    results.put(seen)


def test_cross_process_single_refresh(tmp_path):
    store_path = tmp_path / "tokens.json"
    side_path = tmp_path / "calls.txt"
    FileTokenStore(store_path).save(
        "default",
        Token(access_token="expired", expires_at=time.time() - 60, obtained_at=time.time() - 3660),
    )
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_cross_process_worker,
                    args=(str(store_path), str(side_path), barrier, results))
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    seen = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    lines = side_path.read_text().splitlines()
    assert len(lines) == 1
    tokens = {token for per_process in seen for token in per_process}
    assert len([t for per_process in seen for t in per_process]) == 32
    assert tokens == {f"tok-{lines[0]}"}
    stored = FileTokenStore(store_path).load("default")
    assert stored is not None
    assert stored.access_token == f"tok-{lines[0]}"
    assert stored.version == 1
    assert leftovers(tmp_path) == []
