"""Fixtures of the instrumentation tests: a client of each kind on the sandbox."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from instrumentation_support import FAST

from adapters import KINDS, Api


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


MakeApi = Callable[..., Api]


@pytest.fixture
def make_api(kind: str, sandbox: Any) -> Iterator[MakeApi]:
    """``make(hook=..., **client_kwargs)``: an :class:`Api` of this test's kind on the
    sandbox, with the FAST policy unless overridden; closed after the test."""
    made: list[Api] = []

    def make(**kw: Any) -> Api:
        kw.setdefault("retry", FAST)
        api = Api(kind, sandbox.url, **kw)
        made.append(api)
        return api

    yield make
    for api in made:
        api.close()
