"""surefoot's pytest plugin: the sandbox API and test mode as fixtures.

Installed with surefoot and loaded by pytest through the ``pytest11`` entry point
(plugin name ``surefoot``; ``-p no:surefoot`` turns it off). Nothing to declare::

    import surefoot

    def test_retries_are_instant(surefoot_sandbox, surefoot_testing):
        with surefoot.Client(surefoot_sandbox.url) as api:
            response = api.get("/flaky/x", params={"fail": "2", "retry_after": "10"})
        assert response.status_code == 200             # after two 503s ...
        assert surefoot_testing.slept == [10.0, 10.0]  # ... and no real 20 s waited

Fixtures:

* ``surefoot_sandbox`` — a running :class:`surefoot.sandbox.Sandbox` on a free loopback
  port, all its counters and state cleared (:meth:`~surefoot.sandbox.Sandbox.reset`:
  quotas, tokens, orders, nonces, outage), so every test starts from a fresh sandbox.
  It is the session's one sandbox (``surefoot_sandbox_session``), reset per test (well
  under a millisecond) rather than started and stopped per test (some 50 ms each, the
  server's shutdown). A test that stops it gets it started again, on a new port, for
  the next test.
* ``surefoot_sandbox_session`` — that session-scoped sandbox, default settings, started
  on first use and stopped at the end of the session. Override it in your
  ``conftest.py`` for other settings suite-wide::

      @pytest.fixture(scope="session")
      def surefoot_sandbox_session():
          from surefoot.sandbox import Sandbox
          with Sandbox(rate=50, burst=10) as sandbox:
              yield sandbox

* ``surefoot_testing`` — surefoot's test mode for the test (:func:`surefoot.testing.testing`):
  every wait surefoot makes (backoff, ``Retry-After``, pacing) is skipped and advances a
  virtual clock instead. The fixture is that clock, a :class:`~surefoot.testing.FakeClock`
  (``surefoot_testing.slept`` lists the waits). The previous state is restored after the
  test. For a whole module use ``pytestmark = pytest.mark.usefixtures("surefoot_testing")``;
  for a whole suite, an autouse fixture in ``conftest.py`` that requests it.
* ``surefoot_fake_clock`` — a new :class:`~surefoot.testing.FakeClock`, to pass as
  ``clock=`` to a client, pacer or token cache.

Marker: ``@pytest.mark.surefoot_sandbox(rate=2, burst=1)`` gives the test its own sandbox
instead of the shared one, started with these :class:`~surefoot.sandbox.SandboxConfig`
fields (or ``config=``, ``host=``, ``port=``: the arguments of
:class:`~surefoot.sandbox.Sandbox`) and stopped after the test. It only changes what
``surefoot_sandbox`` is; it is registered, so ``--strict-markers`` suites accept it.

The plugin is loaded in every pytest run once surefoot is installed, so at start-up it
imports nothing but pytest and ``surefoot`` itself (lazy: no HTTP library): the sandbox
and the test helpers are imported by the fixtures that use them, and a suite that uses
none of them pays nothing. It prints nothing. With pytest-xdist each worker has its own sandbox.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from surefoot.sandbox import Sandbox
    from surefoot.testing import FakeClock

__all__ = [
    "pytest_configure",
    "surefoot_fake_clock",
    "surefoot_sandbox",
    "surefoot_sandbox_session",
    "surefoot_testing",
]

_MARKER = "surefoot_sandbox"


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``surefoot_sandbox`` marker (for ``--strict-markers``)."""
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(**options): give this test its own surefoot sandbox, started with "
        "these Sandbox/SandboxConfig options (rate=, burst=, ...), as the "
        "surefoot_sandbox fixture.",
    )


@pytest.fixture(scope="session")
def surefoot_sandbox_session() -> Iterator[Sandbox]:
    """The session's sandbox (default settings) on a free loopback port, started on
    first use and stopped at the end of the session. Prefer ``surefoot_sandbox``, which
    clears it for each test; override this fixture for other settings."""
    from surefoot.sandbox import Sandbox

    with Sandbox() as sandbox:
        yield sandbox


@pytest.fixture
def surefoot_sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """A running sandbox, its counters and state cleared for this test: the session's
    one, or the test's own with ``@pytest.mark.surefoot_sandbox(**options)``."""
    marker = request.node.get_closest_marker(_MARKER)
    if marker is None:
        shared: Sandbox = request.getfixturevalue("surefoot_sandbox_session")
        shared.start()  # idempotent; again if an earlier test stopped it
        shared.reset()
        yield shared
        return
    if marker.args:
        pytest.fail(
            f"@pytest.mark.{_MARKER} takes keyword arguments only "
            f"(Sandbox options such as rate=, burst=), not {marker.args!r}",
            pytrace=False,
        )
    from surefoot.sandbox import Sandbox

    with Sandbox(**marker.kwargs) as own:
        yield own


@pytest.fixture
def surefoot_testing() -> Iterator[FakeClock]:
    """surefoot's test mode for this test: no wait is real, each advances the virtual
    clock yielded (``.slept`` lists them). The previous mode is restored afterwards."""
    from surefoot.testing import testing

    with testing() as clock:
        yield clock


@pytest.fixture
def surefoot_fake_clock() -> FakeClock:
    """A new virtual clock, to inject as ``clock=``: its ``sleep`` advances time at once."""
    from surefoot.testing import FakeClock

    return FakeClock()
