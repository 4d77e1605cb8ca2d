"""FileTokenStore refuses what someone else could have planted: symlinks (token file and
lock file), files of another user or writable by others, directories others can write;
and its loader is total over whatever bytes the token file holds."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from surefoot.errors import StoreError
from surefoot.oauth import Token, TokenCache
from surefoot.stores import FileTokenStore

T0 = 1_700_000_000.0
ACCESS = "hardening-secret-access-token"
PLANTED = "planted-secret-access-token"
OTHER_UID = 65534  # nobody

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX owners and modes")
needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another user needs root"
)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def make_token(**kwargs) -> Token:
    kwargs.setdefault("access_token", ACCESS)
    kwargs.setdefault("expires_at", T0 + 3600)
    kwargs.setdefault("obtained_at", T0)
    return Token(**kwargs)


def token_document(access: str) -> bytes:
    token = Token(access_token=access, expires_at=4_000_000_000.0, obtained_at=T0)
    return json.dumps({"format": "surefoot-tokens/1", "tokens": {"k": token.to_json()}}).encode()


def private_dir(path):
    path.mkdir(mode=0o700)
    os.chmod(path, 0o700)
    return path


def assert_clean_message(info: pytest.ExceptionInfo[StoreError], *needles: str) -> None:
    message = str(info.value)
    for needle in needles:
        assert needle in message
    assert ACCESS not in message
    assert PLANTED not in message


# -- symlinks -------------------------------------------------------------------------------


def test_dangling_lock_symlink_is_refused_and_its_target_not_created(tmp_path):
    home = private_dir(tmp_path / "home")
    target = tmp_path / "victim" / "created-by-surefoot"
    target.parent.mkdir()
    path = home / "token.json"
    os.symlink(target, home / "token.json.lock")
    store = FileTokenStore(path)
    with pytest.raises(StoreError) as info:
        store.save("k", make_token())
    assert_clean_message(info, str(store.lock_path), "symbolic link")
    with pytest.raises(StoreError), store.lock("k", timeout=1):
        pass
    assert not target.exists()
    assert not os.path.lexists(path)


def test_lock_symlink_to_an_existing_file_is_refused(tmp_path):
    home = private_dir(tmp_path / "home")
    target = tmp_path / "victim.txt"
    target.write_bytes(b"keep")
    os.symlink(target, home / "token.json.lock")
    store = FileTokenStore(home / "token.json")
    with pytest.raises(StoreError, match="symbolic link"):
        assert store.try_lease("k", "me", 10.0)
    assert target.read_bytes() == b"keep"


def test_token_file_symlink_to_a_valid_looking_token_is_refused(tmp_path):
    home = private_dir(tmp_path / "home")
    planted = tmp_path / "planted.json"
    planted.write_bytes(token_document(PLANTED))
    os.chmod(planted, 0o600)
    path = home / "token.json"
    os.symlink(planted, path)
    store = FileTokenStore(path)
    with pytest.raises(StoreError) as info:
        store.load("k")
    assert_clean_message(info, str(path), "symbolic link")
    with pytest.raises(StoreError, match="symbolic link"):
        store.save("k", make_token())
    with pytest.raises(StoreError, match="symbolic link"):
        store.delete("k")
    assert planted.read_bytes() == token_document(PLANTED)
    assert os.path.islink(path)


def test_dangling_token_file_symlink_is_refused(tmp_path):
    home = private_dir(tmp_path / "home")
    target = tmp_path / "victim.json"
    os.symlink(target, home / "token.json")
    store = FileTokenStore(home / "token.json")
    with pytest.raises(StoreError, match="symbolic link"):
        store.load("k")
    with pytest.raises(StoreError, match="symbolic link"):
        store.save("k", make_token())
    assert not target.exists()


def test_token_cache_on_a_planted_token_file_raises_a_store_error(tmp_path):
    home = private_dir(tmp_path / "home")
    planted = tmp_path / "planted.json"
    planted.write_bytes(token_document(PLANTED))
    os.symlink(planted, home / "token.json")
    calls: list[int] = []

    def source() -> str:
        calls.append(1)
        return "fresh"

    cache = TokenCache(
        source, store=FileTokenStore(home / "token.json"), key="k", hook=lambda e: None
    )
    with pytest.raises(StoreError) as info:
        cache.get()
    assert_clean_message(info, "symbolic link")
    assert calls == []  # refused before any token was fetched (and left unstored)


def test_fifo_token_file_is_refused_without_blocking(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    home = private_dir(tmp_path / "home")
    os.mkfifo(home / "token.json", 0o600)
    store = FileTokenStore(home / "token.json")
    outcome: list[BaseException | None] = []

    def load() -> None:
        try:
            store.load("k")
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome.append(exc)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(5)
    assert outcome, "load() blocked on a FIFO"
    assert isinstance(outcome[0], StoreError)
    assert "not a regular file" in str(outcome[0])


# -- directories ------------------------------------------------------------------------------


@posix_only
@pytest.mark.parametrize(
    ("mode", "who"),
    [(0o777, "group and others"), (0o770, "group"), (0o703, "others")],
    ids=["0777", "0770", "0703"],
)
def test_directory_writable_by_others_is_refused(tmp_path, mode, who):
    home = private_dir(tmp_path / "home")
    os.chmod(home, mode)
    store = FileTokenStore(home / "token.json")
    with pytest.raises(StoreError) as info:
        store.save("k", make_token())
    assert_clean_message(info, str(home), f"writable by {who}", "sticky")
    with pytest.raises(StoreError):
        store.load("k")
    with pytest.raises(StoreError), store.lock("k", timeout=1):
        pass
    assert os.listdir(home) == []


@posix_only
def test_directory_already_holding_a_token_is_refused_once_others_can_write_it(tmp_path):
    home = private_dir(tmp_path / "home")
    store = FileTokenStore(home / "token.json")
    store.save("k", make_token())
    os.chmod(home, 0o777)
    with pytest.raises(StoreError, match="writable by group and others"):
        store.load("k")


@posix_only
def test_sticky_world_writable_directory_is_allowed(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    store = FileTokenStore(shared / "token.json")
    store.save("k", make_token())
    assert store.load("k") == make_token()
    assert stat.S_IMODE(os.stat(shared / "token.json").st_mode) == 0o600


@posix_only
@needs_root
def test_directory_of_another_user_is_refused(tmp_path):
    home = private_dir(tmp_path / "home")
    os.chown(home, OTHER_UID, -1)
    store = FileTokenStore(home / "token.json")
    with pytest.raises(StoreError) as info:
        store.save("k", make_token())
    assert_clean_message(info, str(home), f"owned by uid {OTHER_UID}")


@posix_only
def test_new_directories_are_private(tmp_path, umask_022):
    store = FileTokenStore(tmp_path / "a" / "b" / "token.json")
    store.save("k", make_token())
    assert stat.S_IMODE(os.stat(tmp_path / "a" / "b").st_mode) == 0o700


# -- files of others, or writable by others ---------------------------------------------------


@posix_only
@needs_root
@pytest.mark.parametrize("name", ["token.json", "token.json.lock"])
def test_file_of_another_user_is_refused(tmp_path, name):
    home = private_dir(tmp_path / "home")
    planted = home / name
    planted.write_bytes(token_document(PLANTED) if name == "token.json" else b"")
    os.chmod(planted, 0o600)
    os.chown(planted, OTHER_UID, -1)
    store = FileTokenStore(home / "token.json")
    with pytest.raises(StoreError) as info:
        store.save("k", make_token())
    assert_clean_message(info, str(planted), f"owned by uid {OTHER_UID}")
    if name == "token.json":
        with pytest.raises(StoreError, match="owned by uid"):
            store.load("k")


@posix_only
@pytest.mark.parametrize("name", ["token.json", "token.json.lock"])
def test_file_writable_by_others_is_refused(tmp_path, name):
    home = private_dir(tmp_path / "home")
    store = FileTokenStore(home / "token.json")
    store.save("k", make_token())
    with store.lock("k", timeout=1):
        pass
    os.chmod(home / name, 0o666)
    with pytest.raises(StoreError) as info:
        store.save("k", make_token(version=2))
    assert_clean_message(info, str(home / name), "writable by group and others", "0666")


@posix_only
def test_token_file_readable_by_others_is_made_private_with_a_warning(tmp_path, caplog):
    home = private_dir(tmp_path / "home")
    path = home / "token.json"
    FileTokenStore(path).save("k", make_token())
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="surefoot"):
        assert FileTokenStore(path).load("k") == make_token()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    warnings = [r.getMessage() for r in caplog.records if r.name == "surefoot"]
    assert len(warnings) == 1
    assert "readable by group and others" in warnings[0]
    assert ACCESS not in warnings[0]


# -- the happy path ----------------------------------------------------------------------------


@posix_only
def test_write_is_atomic_private_and_never_follows_links(tmp_path, monkeypatch, umask_022):
    home = private_dir(tmp_path / "home")
    path = home / "token.json"
    opened: list[tuple[str, int, int]] = []
    replaced: list[tuple[str, str]] = []
    real_open, real_replace = os.open, os.replace

    def spy_open(file, flags, mode=0o777, *args, **kwargs):
        opened.append((os.fspath(file), flags, mode))
        return real_open(file, flags, mode, *args, **kwargs)

    def spy_replace(src, dst, *args, **kwargs):
        replaced.append((os.fspath(src), os.fspath(dst)))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "replace", spy_replace)
    FileTokenStore(path).save("k", make_token())
    monkeypatch.undo()

    [(tmp, dst)] = replaced
    assert dst == str(path)
    assert os.path.dirname(tmp) == str(home)
    [(_, flags, mode)] = [entry for entry in opened if entry[0] == tmp]
    for flag in (os.O_CREAT, os.O_EXCL, os.O_NOFOLLOW):
        assert flags & flag == flag
    assert mode == 0o600
    for name in (str(path), str(path) + ".lock"):
        assert all(f & os.O_NOFOLLOW for file, f, _ in opened if file == name)
    assert any(file == str(path) + ".lock" for file, _, _ in opened)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(os.listdir(home)) == ["token.json", "token.json.lock"]
    assert FileTokenStore(path).load("k") == make_token()


# -- the loader is total --------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"[" * 100_000 + b"]" * 100_000, b'{"tokens":' * 50_000, b'{"x":' + b"9" * 5000 + b"}"],
    ids=["deep-array", "deep-object", "past-digit-limit"],
)
def test_corrupt_token_file_of_the_json_bomb_kind_is_no_token(tmp_path, caplog, content):
    path = tmp_path / "tokens.json"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    store = FileTokenStore(path)
    with caplog.at_level(logging.WARNING, logger="surefoot"):
        assert store.load("k") is None
    assert any("corrupt" in r.getMessage() for r in caplog.records if r.name == "surefoot")
    store.save("k", make_token())  # and it recovers
    assert store.load("k") == make_token()


def test_stored_entries_with_absurd_numbers_are_no_token(tmp_path):
    path = tmp_path / "tokens.json"
    huge = "9" * 400
    path.write_text(
        '{"format":"surefoot-tokens/1","tokens":{'
        f'"expires":{{"access_token":"a","expires_at":{huge}}},'
        f'"obtained":{{"access_token":"a","obtained_at":{huge}}},'
        '"nan":{"access_token":"a","expires_at":NaN},'
        '"bool":{"access_token":"a","version":true},'
        '"ok":{"access_token":"a"}}}'
    )
    os.chmod(path, 0o600)
    store = FileTokenStore(path)
    for key in ("expires", "obtained", "nan", "bool"):
        assert store.load(key) is None
    assert store.load("ok") == Token(access_token="a")


_ENTRY_VALUES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**800)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
_entries = st.fixed_dictionaries(
    {"access_token": st.just("a") | st.text(max_size=8)},
    optional=dict.fromkeys(
        ("expires_at", "obtained_at", "version", "refresh_token", "scope", "token_type"),
        _ENTRY_VALUES,
    ),
)


@st.composite
def _token_files(draw: st.DrawFn) -> bytes:
    document = {"format": "surefoot-tokens/1", "tokens": {"k": draw(_entries)}}
    raw = json.dumps(document, allow_nan=True).encode()
    if draw(st.booleans()):
        at = draw(st.integers(0, len(raw)))
        raw = (
            raw[:at]
            + draw(
                st.sampled_from([b"[" * 100_000, b"9" * 400, b"\xff", b'"\\ud800"', b"}", b"NaN"])
            )
            + raw[at:]
        )
    return raw


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=_token_files())
def test_any_token_file_content_gives_a_token_or_none(tmp_path, raw):
    path = tmp_path / "tokens.json"
    path.write_bytes(raw)
    os.chmod(path, 0o600)
    logging.getLogger("surefoot").disabled = True
    try:
        token = FileTokenStore(path).load("k")
    finally:
        logging.getLogger("surefoot").disabled = False
    if token is not None:
        repr(token)
