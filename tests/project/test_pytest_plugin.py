"""The pytest plugin (``surefoot.pytest_plugin``, entry point ``pytest11``): a user's suite
gets the sandbox and test mode as fixtures with no boilerplate, and a suite that does not
use them pays nothing for the plugin being loaded.

Each user suite runs in a pytest subprocess, so the plugin is loaded the way a user's
pytest loads it: through the installed entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

pytest_plugins = ["pytester"]

RUN = ("-p", "no:cacheprovider", "--strict-markers", "-q")

#: A user's suite: test mode, the shared sandbox reset per test, the marker's own sandbox.
USER_SUITE = """
import time

import pytest
import requests

import surefoot
from surefoot.testing import FakeClock, is_testing

SEEN = {}


def test_retries_are_instant_in_test_mode(surefoot_sandbox, surefoot_testing):
    assert is_testing()
    SEEN["shared"] = surefoot_sandbox
    start = time.monotonic()
    with surefoot.Client(surefoot_sandbox.url) as api:
        response = api.get("/flaky/x", params={"fail": "2", "retry_after": "10"})
    elapsed = time.monotonic() - start
    assert response.status_code == 200
    assert [a.status for a in surefoot.history_of(response)] == [503, 503, 200]
    assert surefoot_testing.slept == [10.0, 10.0]   # two Retry-After waits, virtual
    assert elapsed < 5.0                             # not the 20 s they announce
    assert surefoot_sandbox.stats()["requests"] == 3


def test_test_mode_is_off_again_and_the_sandbox_fresh(surefoot_sandbox):
    assert not is_testing()
    assert surefoot_sandbox is SEEN["shared"]        # the session's one ...
    assert surefoot_sandbox.stats()["requests"] == 0  # ... its counters cleared
    # the fail=2 counter of the test above was cleared too: a 503 again
    assert requests.get(surefoot_sandbox.url + "/flaky/x?fail=2&retry_after=10").status_code == 503


@pytest.mark.surefoot_sandbox(rate=1, burst=1)
def test_the_marker_gives_an_own_sandbox(surefoot_sandbox):
    SEEN["own"] = surefoot_sandbox
    assert surefoot_sandbox is not SEEN["shared"]
    assert surefoot_sandbox.url != SEEN["shared"].url
    assert (surefoot_sandbox.config.rate, surefoot_sandbox.config.burst) == (1.0, 1)
    url = surefoot_sandbox.url + "/limited/x"
    assert [requests.get(url).status_code for _ in range(2)] == [200, 429]


def test_the_own_sandbox_was_stopped_the_shared_one_runs():
    assert not SEEN["own"].running
    assert SEEN["shared"].running


def test_a_test_that_stops_the_sandbox(surefoot_sandbox):
    surefoot_sandbox.stop()


def test_the_next_test_gets_it_running_again(surefoot_sandbox):
    assert surefoot_sandbox is SEEN["shared"]
    assert requests.get(surefoot_sandbox.url + "/get").status_code == 200


def test_the_fake_clock(surefoot_fake_clock):
    assert isinstance(surefoot_fake_clock, FakeClock)
    before = surefoot_fake_clock.monotonic()
    start = time.monotonic()
    surefoot_fake_clock.sleep(60.0)
    assert time.monotonic() - start < 5.0
    assert surefoot_fake_clock.monotonic() - before == 60.0
    assert surefoot_fake_clock.slept == [60.0]
    assert not is_testing()


@pytest.mark.surefoot_sandbox(5)
def test_the_marker_takes_keywords_only(surefoot_sandbox):
    pass
"""

#: Test mode already on around a test (a user's own set-up): the fixture restores it.
USER_SUITE_OUTER_MODE = """
from surefoot.testing import set_testing

OUTER = []


def test_a_suite_turns_test_mode_on_itself():
    OUTER.append(set_testing(True))


def test_the_fixture_has_its_own_virtual_clock(surefoot_testing):
    assert surefoot_testing is not OUTER[0]
    assert set_testing(True) is surefoot_testing


def test_the_outer_virtual_clock_is_back():
    assert set_testing(True) is OUTER[0]
    set_testing(False)
"""

#: The sandbox and the sessions' start/stop, seen from the end of the session.
USER_CONFTEST = """
import json
import sys


def pytest_sessionfinish(session):
    seen = sys.modules["test_user_suite"].SEEN
    with open("sandboxes.json", "w") as out:
        json.dump({name: sandbox.running for name, sandbox in seen.items()}, out)
"""


@pytest.fixture(autouse=True)
def _plugins_autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    """The user suites load the plugin from its entry point, as a user's pytest does."""
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)


def test_the_entry_point_names_the_plugin_module() -> None:
    found = [ep for ep in entry_points(group="pytest11") if ep.name == "surefoot"]
    assert [ep.value for ep in found] == ["surefoot.pytest_plugin"]


def test_a_user_suite_uses_the_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_suite=USER_SUITE, test_user_outer_mode=USER_SUITE_OUTER_MODE)
    pytester.makeconftest(USER_CONFTEST)
    # the user's tests run in file order (``-p no:randomly``, should it be installed)
    result = pytester.runpytest_subprocess(*RUN, "-p", "no:randomly", timeout=90)
    result.assert_outcomes(passed=10, errors=1)
    assert result.stderr.lines == []  # a polite library: nothing printed
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_the_marker_takes_keywords_only*",
            "@pytest.mark.surefoot_sandbox takes keyword arguments only*",
        ]
    )
    # at the end of the session both sandboxes are stopped
    state = json.loads((pytester.path / "sandboxes.json").read_text(encoding="utf-8"))
    assert state == {"shared": False, "own": False}


def test_the_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--markers", timeout=60)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["@pytest.mark.surefoot_sandbox(**options):*"])


def test_without_the_plugin_there_are_no_fixtures(pytester: pytest.Pytester) -> None:
    # guards the suite above: its fixtures come from the plugin named ``surefoot``
    pytester.makepyfile(
        """
        def test_sandbox(surefoot_sandbox):
            pass


        def test_testing(surefoot_testing):
            pass
        """
    )
    result = pytester.runpytest_subprocess(*RUN, "-p", "no:surefoot", timeout=60)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*fixture 'surefoot_sandbox' not found*"])


def test_a_suite_that_uses_no_fixture_loads_no_sandbox(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys


        def test_nothing_of_surefoot_was_imported():
            assert "surefoot.pytest_plugin" in sys.modules  # the plugin is loaded ...
            heavy = ("surefoot.sandbox", "surefoot.testing", "surefoot._core", "requests", "httpx")
            assert [m for m in sys.modules if m.startswith(heavy)] == []  # ... alone
        """
    )
    result = pytester.runpytest_subprocess(*RUN, timeout=60)
    result.assert_outcomes(passed=1)


def _modules_after(code: str) -> set[str]:
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_importing_the_plugin_imports_nothing_but_surefoot_itself() -> None:
    """pytest loads the plugin in every run of every user who installed surefoot: beyond
    pytest, it costs ``import surefoot`` (lazy, no HTTP library) and nothing else."""
    baseline = _modules_after("import pytest\nimport surefoot")
    with_plugin = _modules_after("import pytest\nimport surefoot.pytest_plugin")
    assert with_plugin - baseline == {"surefoot.pytest_plugin"}
    for heavy in ("requests", "httpx", "urllib3", "surefoot.sandbox", "surefoot.testing"):
        assert heavy not in with_plugin
