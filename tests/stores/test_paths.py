"""Store paths: ``~`` is the home directory (never a literal ``./~`` under the current
directory), and what is not a path is refused when the store is built."""

from __future__ import annotations

import pytest

from surefoot import ConfigurationError
from surefoot.oauth import Token
from surefoot.stores import FileTokenStore, SQLiteStore


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    return home


def test_file_token_store_expands_the_home_directory(home):
    store = FileTokenStore("~/.cache/myapp/token.json")
    assert store.path == home / ".cache" / "myapp" / "token.json"
    assert store.save("k", Token("tok-value", expires_at=None), expected_version=0)
    assert (home / ".cache" / "myapp" / "token.json").exists()
    assert not (home.parent / "cwd" / "~").exists()
    assert store.load("k").access_token == "tok-value"


def test_sqlite_store_expands_the_home_directory(home):
    store = SQLiteStore("~/.cache/myapp/state.db")
    try:
        assert store.tokens.save("k", Token("tok-value", expires_at=None), expected_version=0)
        assert (home / ".cache" / "myapp" / "state.db").exists()
        assert not (home.parent / "cwd" / "~").exists()
        assert str(home) in repr(store)
    finally:
        store.close()


@pytest.mark.parametrize("store", [FileTokenStore, SQLiteStore])
@pytest.mark.parametrize("path", [3, None, b"/tmp/x", ""])
def test_a_path_that_is_not_one_is_refused(store, path):
    with pytest.raises(ConfigurationError, match="path must"):
        store(path)
