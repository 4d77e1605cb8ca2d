"""``Client.url_for``: a relative path resolved against the base URL exactly as
``urljoin`` resolves it (the common path is appended without calling it)."""

from __future__ import annotations

from urllib.parse import urljoin

from hypothesis import given, settings
from hypothesis import strategies as st

from surefoot._adapters._client import BaseUrl

_BASES = st.sampled_from([
    "http://api.test", "https://api.test/v1", "https://api.test/v1/", "http://h:8080/a/b/",
    "https://api.test/v1?key=1", "https://api.test/v1/#top", "http://u:p@h/x/",
])
_PATHS = st.text(st.sampled_from([*"ab/.:;?#=&%-_~ 1\\@\t\né", "\x00"]), max_size=16)


class _Base(BaseUrl):
    def __init__(self, base_url: str) -> None:
        self._set_base_url(base_url)


@given(_BASES, _PATHS)
@settings(max_examples=2000, deadline=None)
def test_url_for_is_urljoin(base: str, path: str) -> None:
    client = _Base(base)
    if path.startswith(("http://", "https://")):
        assert client.url_for(path) == path
    else:
        assert client.url_for(path) == urljoin(client.base_url, path.lstrip("/"))


def test_the_usual_paths() -> None:
    client = _Base("https://api.test/v1")
    assert client.url_for("/items") == "https://api.test/v1/items"
    assert client.url_for("items?page=2") == "https://api.test/v1/items?page=2"
    assert client.url_for("../other") == "https://api.test/other"
    assert client.url_for("https://elsewhere.test/x") == "https://elsewhere.test/x"
    assert _Base("https://api.test/v1?key=1").url_for("items") == "https://api.test/v1/items"
