"""StructlogHook against the real structlog (``structlog.testing.capture_logs`` and a real
filtering bound logger), driving real surefoot clients against the sandbox."""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest
import structlog
from instrumentation_support import cc_auth, unique
from structlog.testing import CapturingLogger, capture_logs

import surefoot
from surefoot.events import EventKind
from surefoot.instrumentation.structlog import StructlogHook


def names(logs: list[dict[str, Any]]) -> list[str]:
    return [entry["event"] for entry in logs]


def test_each_event_is_logged_with_its_fields_and_level(make_api, sandbox, no_wait):
    api = make_api(hook=StructlogHook())
    with capture_logs() as logs:
        assert api.get(f"/flaky?fail=1&status=503&key={unique()}").status_code == 200
    assert names(logs)[0] == "surefoot.request_started"
    assert names(logs)[-1] == "surefoot.request_done"
    assert names(logs).count("surefoot.attempt_sent") == 2
    retry = next(e for e in logs if e["event"] == "surefoot.retry_scheduled")
    assert retry["log_level"] == "info"
    assert retry["method"] == "GET"
    assert retry["url"].startswith(sandbox.url + "/flaky?")
    assert "key=REDACTED" in retry["url"]
    assert retry["status"] == 503
    assert retry["attempt"] == 1
    assert retry["wait"] >= 0
    assert retry["reason"]
    assert retry["partition"] == f"127.0.0.1:{sandbox.port}"
    assert {e["request_id"] for e in logs} == {retry["request_id"]}
    sent = next(e for e in logs if e["event"] == "surefoot.attempt_sent")
    assert sent["log_level"] == "debug"
    assert "status" not in sent  # what the event does not have is left out
    done = logs[-1]
    assert done["status"] == 200
    assert done["attempt"] == 2
    assert done["elapsed"] >= 0


def test_giving_up_is_a_warning(make_api, no_wait):
    api = make_api(hook=StructlogHook(),
                   retry=surefoot.RetryPolicy(max_attempts=2, on_exhausted="raise"))
    with capture_logs() as logs, pytest.raises(surefoot.RetriesExhausted):
        api.get("/status/503")
    [gave_up] = [e for e in logs if e["event"] == "surefoot.gave_up"]
    assert gave_up["log_level"] == "warning"
    assert logs[-1]["error"] == "RetriesExhausted"


def test_token_refresh_is_info_and_no_secret_is_logged(make_api, sandbox, no_wait):
    auth = cc_auth(sandbox)
    api = make_api(hook=StructlogHook(), auth=auth)
    with capture_logs() as logs:
        response = api.get("/protected", params={"api_key": "leak-me"})
    assert response.status_code == 200
    [refreshed] = [e for e in logs if e["event"] == "surefoot.token_refreshed"]
    assert refreshed["log_level"] == "info"
    assert refreshed["request_id"] == logs[0]["request_id"]
    token = auth.cache.peek()
    assert token is not None
    text = repr(logs)
    for secret in ("demo-secret", "leak-me", token.access_token):
        assert secret not in text


def test_a_filtering_logger_gets_only_what_it_outputs(make_api, no_wait):
    """``wants`` asks the logger: below its level, events are not even built."""
    capturing = CapturingLogger()
    log = structlog.wrap_logger(
        capturing,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        processors=[],
    )
    hook = StructlogHook(log)
    assert not hook.wants(EventKind.ATTEMPT_SENT)
    assert hook.wants(EventKind.RETRY_SCHEDULED)
    assert hook.wants(EventKind.GAVE_UP)
    api = make_api(hook=hook)
    assert api.get(f"/flaky?fail=1&status=503&key={unique()}").status_code == 200
    assert [(c.method_name, c.kwargs["event"]) for c in capturing.calls] == [
        ("info", "surefoot.retry_scheduled")]
    assert capturing.calls[0].kwargs["status"] == 503


def test_a_stdlib_logger_is_asked_too(no_wait):
    stdlib = logging.getLogger(f"surefoot-structlog-test-{unique()}")
    stdlib.setLevel(logging.WARNING)
    hook = StructlogHook(structlog.stdlib.BoundLogger(stdlib, [], {}))
    assert not hook.wants(EventKind.RETRY_SCHEDULED)
    assert hook.wants(EventKind.GAVE_UP)


def test_a_failing_logger_never_breaks_a_request(make_api, caplog, no_wait):
    class Broken:
        def debug(self, event: str, /, **kw: object) -> object:
            raise RuntimeError("logger broken")

        info = warning = debug

    api = make_api(hook=StructlogHook(Broken()))
    with caplog.at_level(logging.ERROR, logger="surefoot"):
        assert api.get(f"/flaky?fail=1&status=503&key={unique()}").status_code == 200
    assert any("structlog hook failed" in r.getMessage() for r in caplog.records)


def test_the_module_imports_structlog_not_itself():
    import surefoot.instrumentation.structlog as module

    assert module.structlog is sys.modules["structlog"]
    assert module.structlog is not module
