"""OpenTelemetryHook against the real opentelemetry-sdk (in-memory exporter), driving real
surefoot clients (requests, httpx sync, httpx async) against the sandbox."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from instrumentation_support import cc_auth, revoke_tokens, unique
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import surefoot
from adapters import Api
from surefoot.events import Event, EventKind
from surefoot.instrumentation.otel import OpenTelemetryHook


class Traced:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.hook = OpenTelemetryHook(self.provider)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def requests(self) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.kind is SpanKind.INTERNAL
                and s.name.startswith("surefoot ")]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        assert parent.context is not None
        found = [s for s in self.spans()
                 if s.parent is not None and s.parent.span_id == parent.context.span_id]
        return sorted(found, key=lambda s: s.start_time or 0)


@pytest.fixture
def traced() -> Iterator[Traced]:
    t = Traced()
    yield t
    assert t.hook.in_flight == 0  # every request span ended
    assert no_current_span()  # and none left current in this thread
    t.provider.shutdown()


def no_current_span() -> bool:
    """Nothing is the current span (an ended span left current is no longer recording,
    but still current: this sees it)."""
    return not trace.get_current_span().get_span_context().is_valid


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def event_names(span: ReadableSpan) -> list[str]:
    return [e.name for e in span.events]


# -- one request ---------------------------------------------------------------------------


def test_a_retried_request_is_one_span_with_an_attempt_span_per_try(
    make_api, traced, no_wait, sandbox
):
    key = unique()
    api = make_api(hook=traced.hook)
    assert api.get(f"/flaky?fail=2&status=503&key={key}").status_code == 200

    [request] = traced.requests()
    a = attrs(request)
    assert request.name == "surefoot GET"
    assert request.parent is None
    assert request.status.status_code is StatusCode.UNSET
    assert a["http.request.method"] == "GET"
    assert a["url.full"] == f"{sandbox.url}/flaky?fail=2&status=503&key=REDACTED"
    assert a["server.address"] == "127.0.0.1"
    assert a["server.port"] == sandbox.port
    assert a["http.response.status_code"] == 200
    assert a["surefoot.attempts"] == 3
    assert a["surefoot.request_id"] > 0
    assert "error.type" not in a
    assert event_names(request).count("surefoot.retry_scheduled") == 2
    retry = next(e for e in request.events if e.name == "surefoot.retry_scheduled")
    assert retry.attributes is not None
    assert retry.attributes["http.response.status_code"] == 503
    assert retry.attributes["surefoot.wait"] >= 0

    attempts = traced.children(request)
    assert [s.name for s in attempts] == ["GET", "GET", "GET"]
    assert all(s.kind is SpanKind.CLIENT for s in attempts)
    assert all(s.context.trace_id == request.context.trace_id for s in attempts)
    assert [attrs(s).get("http.request.resend_count") for s in attempts] == [None, 1, 2]
    assert [attrs(s)["http.response.status_code"] for s in attempts] == [503, 503, 200]
    assert [attrs(s).get("error.type") for s in attempts] == ["503", "503", None]
    assert [s.status.status_code for s in attempts] == [
        StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET]
    for span in attempts:
        assert attrs(span)["url.full"] == a["url.full"]
        assert attrs(span)["server.port"] == sandbox.port
        # the attempt lies within the request
        assert request.start_time <= span.start_time <= span.end_time <= request.end_time
    assert key not in repr([attrs(s) for s in traced.spans()])


def test_a_request_that_gives_up_has_status_error(make_api, traced, no_wait):
    api = make_api(hook=traced.hook,
                   retry=surefoot.RetryPolicy(max_attempts=2, on_exhausted="raise"))
    with pytest.raises(surefoot.RetriesExhausted):
        api.get("/status/503")
    [request] = traced.requests()
    assert request.status.status_code is StatusCode.ERROR
    assert "failed after 2 attempts" in (request.status.description or "")
    assert attrs(request)["error.type"] == "RetriesExhausted"
    assert attrs(request)["http.response.status_code"] == 503
    assert event_names(request)[-1] == "surefoot.gave_up"
    assert len(traced.children(request)) == 2


def test_a_4xx_handed_back_is_an_error_of_the_client_span(make_api, traced, no_wait):
    api = make_api(hook=traced.hook)
    assert api.get("/status/404").status_code == 404
    [request] = traced.requests()
    [attempt] = traced.children(request)
    for span in (request, attempt):
        assert span.status.status_code is StatusCode.ERROR
        assert attrs(span)["error.type"] == "404"


def test_a_transport_failure_is_the_attempts_error_type(make_api, traced, no_wait,
                                                      closed_port):
    api = make_api(hook=traced.hook,
                   retry=surefoot.RetryPolicy(max_attempts=2, on_exhausted="raise"))
    with pytest.raises(surefoot.TransportError):
        api.request("GET", f"http://127.0.0.1:{closed_port}/x")
    [request] = traced.requests()
    attempts = traced.children(request)
    assert [attrs(s).get("error.type") for s in attempts] == ["connect", "connect"]
    assert all("http.response.status_code" not in attrs(s) for s in attempts)
    assert all(s.status.status_code is StatusCode.ERROR for s in attempts)
    assert attrs(request)["error.type"] == "TransportError"


class Boom(Exception):
    pass


class _Raising(httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise Boom("not an HTTP error")


class _AsyncRaising(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise Boom("not an HTTP error")


@pytest.mark.parametrize("kind", ["httpx_sync", "httpx_async"])
def test_an_exception_during_an_attempt_ends_both_spans_and_resets_the_context(
    make_api, traced, kind
):
    transport = _Raising() if kind == "httpx_sync" else _AsyncRaising()
    api = make_api(hook=traced.hook, transport=transport)

    async def in_task() -> None:
        with pytest.raises(Boom):
            await api.client.get("/get")
        assert no_current_span()

    if api.is_async:
        api.run(in_task())
    else:
        with pytest.raises(Boom):
            api.get("/get")
    assert no_current_span()
    [request] = traced.requests()
    [attempt] = traced.children(request)
    assert attrs(request)["error.type"] == "Boom"
    assert attrs(attempt)["error.type"] == "Boom"
    assert attempt.status.status_code is StatusCode.ERROR
    assert attempt.end_time <= request.end_time


# -- token work ----------------------------------------------------------------------------


def test_token_refreshes_are_visible_on_the_request_span(make_api, traced, sandbox, no_wait):
    api = make_api(hook=traced.hook, auth=cc_auth(sandbox))
    assert api.get("/protected").status_code == 200
    revoke_tokens(sandbox)
    assert api.get("/protected").status_code == 200

    first, second = sorted(traced.requests(), key=lambda s: s.start_time or 0)
    assert "surefoot.token_refreshed" in event_names(first)
    assert "surefoot.token_invalidated" in event_names(second)
    assert "surefoot.token_refreshed" in event_names(second)
    refreshed = [e for e in second.events if e.name == "surefoot.token_refreshed"][0]
    assert refreshed.attributes
    assert refreshed.attributes["surefoot.reason"]
    # the 401, then the replay with the new token: a resend
    attempts = traced.children(second)
    assert [attrs(s)["http.response.status_code"] for s in attempts] == [401, 200]
    assert [attrs(s).get("http.request.resend_count") for s in attempts] == [None, 1]
    assert second.status.status_code is StatusCode.UNSET
    text = repr([(attrs(s), [dict(e.attributes or {}) for e in s.events])
                 for s in traced.spans()])
    assert "demo-secret" not in text


def test_token_endpoint_calls_nest_under_the_request(make_api, traced, sandbox, no_wait):
    """The token cache given the same hook: its call to the token endpoint is a request of
    its own, a child of the request that needed the token (the request span is current,
    also in the worker thread of an async client's token work)."""
    api = make_api(hook=traced.hook, auth=cc_auth(sandbox, hook=traced.hook))
    assert api.get("/protected").status_code == 200
    outer = [s for s in traced.requests() if s.parent is None]
    inner = [s for s in traced.requests() if s.parent is not None]
    assert len(outer) == 1
    assert len(inner) == 1
    assert inner[0].name == "surefoot POST"
    assert attrs(inner[0])["url.full"].endswith("/oauth/token")
    assert inner[0].parent.span_id == outer[0].context.span_id
    assert inner[0].context.trace_id == outer[0].context.trace_id


def test_token_work_outside_a_request_is_a_span_or_an_event():
    t = Traced()
    t.hook(Event(EventKind.TOKEN_REFRESH_FAILED, reason="early refresh failed: boom"))
    [span] = t.spans()
    assert span.name == "surefoot.token_refresh_failed"
    assert span.status.status_code is StatusCode.ERROR
    tracer = t.provider.get_tracer("test")
    with tracer.start_as_current_span("app"):
        t.hook(Event(EventKind.TOKEN_REFRESHED, reason="early refresh"))
    app = [s for s in t.spans() if s.name == "app"][0]
    assert event_names(app) == ["surefoot.token_refreshed"]


# -- pacing and the breaker ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["requests"])
def test_circuit_open_and_pacing_waits_are_span_events(make_api, traced, no_wait):
    from surefoot.pacing import BreakerPolicy, Quota

    pacing = surefoot.PacingPolicy(
        quotas=(Quota(limit=100.0, period=1.0, burst=1),),
        breaker=BreakerPolicy(failure_threshold=2, failure_ratio=None, open_for=60.0),
    )
    api = make_api(hook=traced.hook, pacing=pacing,
                   retry=surefoot.RetryPolicy(max_attempts=1, on_exhausted="raise"))
    for _ in range(2):
        with pytest.raises(surefoot.RetriesExhausted):
            api.get("/status/503")
    with pytest.raises(surefoot.CircuitOpen):
        api.get("/status/503")
    spans = sorted(traced.requests(), key=lambda s: s.start_time or 0)
    assert "surefoot.pacing_wait" in [n for s in spans for n in event_names(s)]
    refused = spans[-1]
    assert "surefoot.circuit_open" in event_names(refused)
    assert attrs(refused)["error.type"] == "CircuitOpen"
    assert traced.children(refused) == []  # nothing was sent
    circuit = next(e for e in refused.events if e.name == "surefoot.circuit_open")
    assert circuit.attributes is not None
    assert 0 < circuit.attributes["surefoot.wait"] <= 60


# -- concurrency ---------------------------------------------------------------------------

THREADS, PER_THREAD = 8, 5
#: every request retried once at the same time: no retry budget (nor adaptive pacing)
#: may turn a retry down
CONCURRENT = {"retry": surefoot.RetryPolicy(max_attempts=3),
              "pacing": surefoot.PacingPolicy(budget=None, adaptive=None)}


def _check_no_cross_talk(traced: Traced, expected: int) -> None:
    requests_ = traced.requests()
    assert len(requests_) == expected
    assert len({attrs(s)["surefoot.request_id"] for s in requests_}) == expected
    assert len({s.context.trace_id for s in requests_}) == expected  # each its own trace
    for request in requests_:
        assert request.parent is None
        attempts = traced.children(request)
        # /flaky?fail=1: a 503, then a 200, both for this request's URL
        assert [attrs(s)["http.response.status_code"] for s in attempts] == [503, 200]
        assert [attrs(s).get("http.request.resend_count") for s in attempts] == [None, 1]
        for span in attempts:
            assert attrs(span)["url.full"] == attrs(request)["url.full"]
            assert span.context.trace_id == request.context.trace_id
    assert len(traced.spans()) == expected * 3


@pytest.mark.parametrize("kind", ["requests", "httpx_sync"])  # (tasks: the next test)
def test_concurrent_requests_in_threads_do_not_mix(kind, sandbox, traced, no_wait):
    api = Api(kind, sandbox.url, hook=traced.hook, **CONCURRENT)
    barrier = threading.Barrier(THREADS)
    leaks: list[object] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            for i in range(PER_THREAD):
                tag = unique(f"t{n}-{i}-")
                response = api.get(f"/flaky?fail=1&status=503&key={tag}&tag={tag}")
                assert response.status_code == 200
                if not no_current_span():  # a request's span left current in this thread
                    leaks.append(trace.get_current_span())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        api.close()
    assert errors == []
    assert leaks == []
    _check_no_cross_talk(traced, THREADS * PER_THREAD)


def test_concurrent_requests_in_tasks_do_not_mix(sandbox, traced, no_wait):
    api = Api("httpx_async", sandbox.url, hook=traced.hook, **CONCURRENT)
    leaks: list[object] = []

    async def one_task(n: int) -> None:
        for i in range(PER_THREAD):
            tag = unique(f"a{n}-{i}-")
            response = await api.client.get(f"/flaky?fail=1&status=503&key={tag}&tag={tag}")
            assert response.status_code == 200
            if not no_current_span():
                leaks.append(trace.get_current_span())
            await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(one_task(n) for n in range(THREADS)))

    try:
        api.run(main())
    finally:
        api.close()
    assert leaks == []
    _check_no_cross_talk(traced, THREADS * PER_THREAD)


# -- nesting with the HTTP library's own instrumentation -----------------------------------


@pytest.fixture
def httpx_instrumented(traced: Traced) -> Iterator[None]:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=traced.provider)
    try:
        yield
    finally:
        instrumentor.uninstrument()


@pytest.mark.parametrize("kind", ["httpx_sync", "httpx_async"])
def test_httpx_instrumentation_spans_nest_under_the_attempt(
    make_api, traced, httpx_instrumented, no_wait, sandbox
):
    api = make_api(hook=traced.hook)
    response = api.get(f"/flaky?fail=1&status=503&key={unique()}")
    assert response.status_code == 200
    [request] = traced.requests()
    attempts = traced.children(request)
    assert [s.instrumentation_scope.name for s in attempts] == ["surefoot", "surefoot"]
    for attempt in attempts:
        [wire] = traced.children(attempt)
        assert wire.instrumentation_scope.name == "opentelemetry.instrumentation.httpx"
        assert wire.kind is SpanKind.CLIENT
    # the propagated trace context is the request's trace
    echoed = api.get("/headers").json()["headers"]
    traceparent = {k.lower(): v for k, v in echoed.items()}["traceparent"]
    latest = max(traced.requests(), key=lambda s: s.start_time or 0)
    assert traceparent.split("-")[1] == format(latest.context.trace_id, "032x")


@pytest.mark.parametrize("kind", ["httpx_sync"])
def test_attempt_spans_off_leaves_the_client_spans_to_the_library(
    make_api, traced, httpx_instrumented, no_wait
):
    hook = OpenTelemetryHook(traced.provider, attempt_spans=False)
    assert not hook.wants(EventKind.ATTEMPT_SENT)
    api = make_api(hook=hook)
    assert api.get(f"/flaky?fail=1&status=503&key={unique()}").status_code == 200
    [request] = traced.requests()
    wire = traced.children(request)
    assert [s.instrumentation_scope.name for s in wire] == [
        "opentelemetry.instrumentation.httpx"] * 2
    attempts = [e for e in request.events if e.name == "surefoot.attempt"]
    assert [e.attributes["http.response.status_code"] for e in attempts] == [503, 200]
    assert [e.attributes.get("http.request.resend_count") for e in attempts] == [None, 1]


@pytest.mark.parametrize("kind", ["requests"])
def test_requests_instrumentation_wraps_the_logical_request(make_api, traced, no_wait):
    """requests' instrumentation wraps ``Session.send``, above surefoot's transport
    adapter: its span is the parent of surefoot's request span."""
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    instrumentor = RequestsInstrumentor()
    instrumentor.instrument(tracer_provider=traced.provider)
    try:
        api = make_api(hook=traced.hook)
        assert api.get("/get").status_code == 200
    finally:
        instrumentor.uninstrument()
    [request] = traced.requests()
    [outer] = [s for s in traced.spans()
               if s.instrumentation_scope.name == "opentelemetry.instrumentation.requests"]
    assert request.parent is not None
    assert request.parent.span_id == outer.context.span_id


def test_set_current_off_leaves_the_context_alone(kind, make_api, traced, httpx_instrumented):
    hook = OpenTelemetryHook(traced.provider, set_current=False)
    api = make_api(hook=hook)
    assert api.get("/get").status_code == 200
    [request] = traced.requests()
    [attempt] = traced.children(request)  # still its child, by explicit parent
    assert traced.children(attempt) == []
    if kind.startswith("httpx"):  # the library's span is a root of its own now
        [wire] = [s for s in traced.spans()
                  if s.instrumentation_scope.name == "opentelemetry.instrumentation.httpx"]
        assert wire.parent is None


def test_an_application_span_is_the_parent(make_api, traced, no_wait):
    api = make_api(hook=traced.hook)
    tracer = traced.provider.get_tracer("app")
    if api.is_async:
        async def call() -> None:
            with tracer.start_as_current_span("handler"):
                await api.client.get("/get")
        api.run(call())
    else:
        with tracer.start_as_current_span("handler"):
            api.get("/get")
    [handler] = [s for s in traced.spans() if s.name == "handler"]
    [request] = traced.requests()
    assert request.parent.span_id == handler.context.span_id


# -- a failing instrument ------------------------------------------------------------------


class _BrokenTracer(trace.NoOpTracer):
    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        raise RuntimeError("the tracing pipeline is broken")


class _BrokenProvider(trace.NoOpTracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _BrokenTracer()


class _RaisingProcessor(SimpleSpanProcessor):
    def on_start(self, span: Any, parent_context: Any = None) -> None:
        raise RuntimeError("processor on_start")

    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("processor on_end")


def test_a_failing_tracer_never_breaks_a_request(make_api, caplog, no_wait):
    api = make_api(hook=OpenTelemetryHook(_BrokenProvider()))
    with caplog.at_level(logging.ERROR, logger="surefoot"):
        response = api.get(f"/flaky?fail=1&status=503&key={unique()}")
    assert response.status_code == 200
    failures = [r for r in caplog.records if "OpenTelemetry hook failed" in r.getMessage()]
    assert failures
    assert all(r.exc_info and "pipeline is broken" in str(r.exc_info[1]) for r in failures)


def test_a_failing_span_processor_never_breaks_a_request(make_api, no_wait):
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(_RaisingProcessor(exporter))
    api = make_api(hook=OpenTelemetryHook(provider))
    assert api.get(f"/flaky?fail=1&status=503&key={unique()}").status_code == 200
    assert api.get("/get").status_code == 200


def test_wants_only_what_it_uses():
    hook = OpenTelemetryHook(TracerProvider())
    assert hook.wants(EventKind.REQUEST_STARTED)
    assert hook.wants(EventKind.ATTEMPT_SENT)
    assert hook.wants(EventKind.TOKEN_REFRESHED)
    assert not hook.wants(EventKind.SIGNATURE_APPLIED)


def test_a_request_ended_in_another_thread_leaves_both_contexts_alone(traced, caplog):
    """A flow closed elsewhere (e.g. by the garbage collector) ends its request in
    another thread: the span ends, and neither thread's context is reset (resetting there
    would fail, and here would undo what is not ours)."""
    started = threading.Event()
    finish = threading.Event()
    seen: list[bool] = []

    def owner() -> None:
        traced.hook(Event(EventKind.REQUEST_STARTED, "GET", "https://h.example/",
                          request_id=-7))
        started.set()
        finish.wait(10)
        seen.append(trace.get_current_span().get_span_context().is_valid)

    thread = threading.Thread(target=owner)
    thread.start()
    started.wait(10)
    with caplog.at_level(logging.DEBUG):
        traced.hook(Event(EventKind.REQUEST_DONE, "GET", "https://h.example/", attempt=0,
                          error="abandoned", request_id=-7))
    finish.set()
    thread.join()
    [span] = traced.spans()
    assert span.end_time is not None
    assert attrs(span)["error.type"] == "abandoned"
    assert no_current_span()
    assert seen == [True]  # the owner's context still has it (not reset from elsewhere)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_unknown_method_is_other(traced):
    traced.hook(Event(EventKind.REQUEST_STARTED, "PURGE", "https://h.example/x", request_id=-1))
    traced.hook(Event(EventKind.REQUEST_DONE, "PURGE", "https://h.example/x", attempt=0,
                      request_id=-1))
    [span] = traced.spans()
    assert span.name == "surefoot HTTP"
    assert attrs(span)["http.request.method"] == "_OTHER"
    assert attrs(span)["http.request.method_original"] == "PURGE"
    assert attrs(span)["server.port"] == 443
