"""``surefoot.Client`` options checked when the client is built."""

from __future__ import annotations

import pytest

import surefoot
from surefoot.errors import ConfigurationError


def test_pool_maxsize_sizes_the_adapters_pool() -> None:
    client = surefoot.Client("http://api.test", pool_maxsize=64)
    assert client.adapter._pool_maxsize == 64  # type: ignore[attr-defined]
    assert client.adapter.poolmanager.connection_pool_kw["maxsize"] == 64
    assert surefoot.Client("http://api.test").adapter._pool_maxsize == 10  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", [0, -1, 2.5, "8", True, None])
def test_pool_maxsize_must_be_a_positive_int(size: object) -> None:
    with pytest.raises(ConfigurationError, match="pool_maxsize must be a positive int"):
        surefoot.Client("http://api.test", pool_maxsize=size)  # type: ignore[arg-type]
