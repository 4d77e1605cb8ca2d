"""OpenTelemetry tracing from surefoot's events (``pip install 'surefoot[otel]'``).

One span per logical request, one child span per attempt::

    import surefoot
    from surefoot.instrumentation.otel import OpenTelemetryHook

    client = surefoot.Client("https://api.example.com", hook=OpenTelemetryHook())
    client.get("/orders")   # "surefoot GET" (INTERNAL) > "GET" (CLIENT), one per attempt

The spans follow the HTTP semantic conventions for a client that resends:

* the **request span** (kind ``INTERNAL``, named ``surefoot {method}``) covers the
  logical request from its start to its end, waits included. It carries
  ``http.request.method``, ``url.full`` (redacted: the event's URL), ``server.address``,
  ``server.port``, ``surefoot.request_id``, ``surefoot.partition`` (with pacing) and, at
  the end, ``http.response.status_code`` (the last attempt's), ``surefoot.attempts`` and
  ``error.type``. Its status is ``ERROR`` when the request ended in an error (a raised
  exception, whose type name is the ``error.type``) or with a 4xx/5xx response handed
  back (``error.type`` is the status code). The conventions want one ``CLIENT`` span
  per request *sent* and no encompassing ``CLIENT`` span over them, hence ``INTERNAL``.
* each **attempt span** (kind ``CLIENT``, named ``{method}``) is one request on the
  wire: the same attributes, ``http.request.resend_count`` from the second attempt on
  (a replay after a token refresh counts: the conventions count every resend),
  ``http.response.status_code`` or ``error.type`` (the transport failure: ``connect``,
  ``read_timeout`` ...), status ``ERROR`` for a failure or a 4xx/5xx.
* what happens in between is a **span event** on the request span, named
  ``surefoot.<kind>``: ``surefoot.retry_scheduled`` (``surefoot.wait``: the backoff),
  ``surefoot.pacing_wait``, ``surefoot.circuit_open`` (``surefoot.wait``: the time to the
  next probe), ``surefoot.token_refreshed``, ``surefoot.token_refresh_failed``,
  ``surefoot.token_invalidated``, ``surefoot.credentials_withheld``,
  ``surefoot.gave_up``, each with ``surefoot.reason`` and, where known, the attempt, the
  status and the error. Token work done outside a request (``request_id`` 0, e.g. an
  early refresh) is an event on the current span, or a span of its own
  (``surefoot.token_refreshed`` ...) when there is none.

While a request runs, its span is the **current span** (and during each attempt, the
attempt's span), so spans made meanwhile nest under it: those of httpx's own
instrumentation (opentelemetry-instrumentation-httpx instruments the transport surefoot
sends each attempt through: its span is a child of surefoot's attempt span, and the
``traceparent`` it propagates is in the request's trace), and those of a token cache given
the same hook (its token endpoint calls are requests of their own). requests' own
instrumentation wraps ``Session.send``, above surefoot's transport adapter: its span is
the *parent* of surefoot's request span. surefoot runs a request in the caller's thread
or asyncio task, which is where the span is made current and where it is reset; a span
is reset only in the thread and task that made it current and only while it still is
current, so a request ended elsewhere (a flow closed by the garbage collector) never
resets another context. ``set_current=False`` never makes any span current.

With httpx's instrumentation also active, each attempt is then two ``CLIENT`` spans
(surefoot's, and the library's under it): pass ``attempt_spans=False`` to make the
attempts span events (``surefoot.attempt``) of the request span instead, and leave the
``CLIENT`` spans to the library.

surefoot does not propagate the trace context itself (a hook sees events, not the
outgoing headers): the HTTP library's instrumentation does.

Correlation is by the events' ``request_id``: any number of requests may run at once in
threads and tasks, each event goes to its own request's spans. The hook never raises: a
failure in it (or in the tracing pipeline) is logged to the ``surefoot`` logger and the
request goes on. The hook adds no attribute that could carry a secret: surefoot's events
carry none (URLs are redacted, no header values).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from surefoot._extras import missing
from surefoot._log import logger
from surefoot.events import Event, EventKind

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
except ImportError as exc:
    raise missing(exc, "opentelemetry", extra="otel",
                  what="surefoot.instrumentation.otel") from None

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["OpenTelemetryHook"]

#: The methods the HTTP conventions know; any other is ``_OTHER`` (and the span ``HTTP``).
_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
_DEFAULT_PORTS = {"http": 80, "https": 443}

#: The kinds recorded as span events on the request span.
_NOTED = frozenset({
    EventKind.RETRY_SCHEDULED,
    EventKind.GAVE_UP,
    EventKind.PACING_WAIT,
    EventKind.CIRCUIT_OPEN,
    EventKind.TOKEN_REFRESHED,
    EventKind.TOKEN_REFRESH_FAILED,
    EventKind.TOKEN_INVALIDATED,
    EventKind.CREDENTIALS_WITHHELD,
})
_TOKEN_KINDS = frozenset(
    {EventKind.TOKEN_REFRESHED, EventKind.TOKEN_REFRESH_FAILED, EventKind.TOKEN_INVALIDATED}
)

Attributes = dict[str, "str | int | float"]
#: where a context was attached: the thread and the asyncio task (``None``: none)
Owner = tuple[int, "asyncio.Task[object] | None"]


def _owner() -> Owner:
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop running in this thread
        task = None
    return threading.get_ident(), task


def _target(method: str, url: str) -> tuple[str, Attributes]:
    """The span name (``{method}``) and the attributes every span of the request has."""
    attributes: Attributes = {}
    if method in _KNOWN_METHODS:
        name = method
        attributes["http.request.method"] = method
    else:
        name = "HTTP"
        attributes["http.request.method"] = "_OTHER"
        attributes["http.request.method_original"] = method
    attributes["url.full"] = url
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    else:
        if port is None:
            port = _DEFAULT_PORTS.get(parts.scheme)
    if host:
        attributes["server.address"] = host
    if port is not None:
        attributes["server.port"] = port
    return name, attributes


def _error_type(event: Event) -> str | None:
    """``error.type``: the error's name, or the status code of a 4xx/5xx response."""
    if event.error:
        return event.error
    if event.status is not None and event.status >= 400:
        return str(event.status)
    return None


#: The fields of an event recorded on a span event, under their semantic-convention
#: names where there is one (the rest are ``surefoot.<field>``).
_ATTRIBUTE_NAMES = {"attempt": "surefoot.attempt", "status": "http.response.status_code",
                    "error": "error.type", "wait": "surefoot.wait",
                    "elapsed": "surefoot.elapsed", "reason": "surefoot.reason"}


def _event_attributes(event: Event) -> Attributes:
    return {_ATTRIBUTE_NAMES[name]: value for name, value in event.fields().items()
            if name in _ATTRIBUTE_NAMES}


def _detach(token: Token[Context], context: Context, owner: Owner) -> None:
    """Reset what :func:`opentelemetry.context.attach` set, if this is the thread and task
    that attached ``context`` and it is still the current one (else leave it alone)."""
    if owner != _owner() or otel_context.get_current() is not context:
        return
    otel_context.detach(token)


class _Live:
    """A logical request in flight: its span, the attempt's, and what was attached."""

    __slots__ = ("attempt", "attempt_context", "attempt_owner", "attempt_token", "attributes",
                 "context", "name", "owner", "span", "token")

    def __init__(self, span: Span, name: str, attributes: Attributes) -> None:
        self.span = span
        self.name = name
        self.attributes = attributes
        self.context: Context | None = None
        self.token: Token[Context] | None = None
        self.owner: Owner | None = None
        self.attempt: Span | None = None
        self.attempt_context: Context | None = None
        self.attempt_token: Token[Context] | None = None
        self.attempt_owner: Owner | None = None


class OpenTelemetryHook:
    """A surefoot hook making OpenTelemetry spans: one per logical request, one per
    attempt (see the module's documentation).

    ``tracer_provider``: where the spans go (``None``: the global one, also when it is set
    after the hook is made). ``attempt_spans=False``: attempts are span events
    (``surefoot.attempt``) of the request span instead of spans, for when the HTTP
    library's own instrumentation makes the ``CLIENT`` spans. ``set_current=False``: the
    request's span is never made the current span.
    """

    __slots__ = ("_attempt_spans", "_handlers", "_live", "_set_current", "_tracer",
                 "_wanted")

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        attempt_spans: bool = True,
        set_current: bool = True,
    ) -> None:
        import surefoot

        self._tracer = trace.get_tracer("surefoot", surefoot.__version__, tracer_provider)
        self._attempt_spans = attempt_spans
        self._set_current = set_current
        #: request_id -> the request in flight (each id is one logical request; dict
        #: operations are atomic, and each id is touched by one thread or task at once)
        self._live: dict[int, _Live] = {}
        handlers: dict[EventKind, Callable[[Event], None]] = dict.fromkeys(_NOTED, self._note)
        handlers[EventKind.REQUEST_STARTED] = self._started
        handlers[EventKind.REQUEST_DONE] = self._done
        handlers[EventKind.ATTEMPT_DONE] = self._attempt_done
        if attempt_spans:
            handlers[EventKind.ATTEMPT_SENT] = self._attempt_sent
        self._handlers: Mapping[EventKind, Callable[[Event], None]] = handlers
        self._wanted = frozenset(handlers)

    def wants(self, kind: EventKind) -> bool:
        """Whether the hook uses events of this kind (the others are not even built)."""
        return kind in self._wanted

    def __call__(self, event: Event) -> None:
        handler = self._handlers.get(event.kind)
        if handler is None:
            return
        try:
            handler(event)
        except Exception:
            logger.exception("surefoot OpenTelemetry hook failed on %s", event.kind.value)

    def __repr__(self) -> str:
        return f"OpenTelemetryHook(attempt_spans={self._attempt_spans})"

    @property
    def in_flight(self) -> int:
        """Logical requests started and not yet done."""
        return len(self._live)

    # -- the request ------------------------------------------------------------------------

    def _started(self, event: Event) -> None:
        name, attributes = _target(event.method, event.url)
        start = dict(attributes)
        start["surefoot.request_id"] = event.request_id
        if event.partition:
            start["surefoot.partition"] = event.partition
        span = self._tracer.start_span(
            f"surefoot {name}", kind=trace.SpanKind.INTERNAL, attributes=start
        )
        live = _Live(span, name, attributes)
        if self._set_current:
            live.context = trace.set_span_in_context(span)
            live.owner = _owner()
            live.token = otel_context.attach(live.context)
        self._live[event.request_id] = live

    def _done(self, event: Event) -> None:
        live = self._live.pop(event.request_id, None)
        if live is None:
            return
        if live.attempt is not None:  # the attempt never ended: the request was cut short
            self._end_attempt(live, None, event.error or "abandoned", event.reason)
        span = live.span
        if live.token is not None and live.context is not None and live.owner is not None:
            _detach(live.token, live.context, live.owner)
        if span.is_recording():
            if event.status is not None:
                span.set_attribute("http.response.status_code", event.status)
            span.set_attribute("surefoot.attempts", event.attempt)
            error = _error_type(event)
            if error is not None:
                span.set_attribute("error.type", error)
                # (surefoot's own messages only: never a secret, the URL redacted)
                span.set_status(trace.StatusCode.ERROR, event.reason or None)
        span.end()

    # -- attempts ---------------------------------------------------------------------------

    def _attempt_sent(self, event: Event) -> None:
        live = self._live.get(event.request_id)
        if live is None:
            return
        if live.attempt is not None:  # (not expected: an attempt that never ended)
            self._end_attempt(live, None, "abandoned", "")
        attributes = dict(live.attributes)
        if event.attempt > 1:
            attributes["http.request.resend_count"] = event.attempt - 1
        span = self._tracer.start_span(
            live.name,
            context=trace.set_span_in_context(live.span),
            kind=trace.SpanKind.CLIENT,
            attributes=attributes,
        )
        live.attempt = span
        if live.context is not None:
            live.attempt_context = trace.set_span_in_context(span)
            live.attempt_owner = _owner()
            live.attempt_token = otel_context.attach(live.attempt_context)

    def _attempt_done(self, event: Event) -> None:
        live = self._live.get(event.request_id)
        if live is None:
            return
        if not self._attempt_spans:
            attributes = _event_attributes(event)
            if event.attempt > 1:
                attributes["http.request.resend_count"] = event.attempt - 1
            live.span.add_event("surefoot.attempt", attributes)
            return
        if live.attempt is not None:
            self._end_attempt(live, event.status, _error_type(event),
                              "" if event.status is not None else event.reason)

    def _end_attempt(self, live: _Live, status: int | None, error: str | None,
                     description: str) -> None:
        span, live.attempt = live.attempt, None
        assert span is not None
        if (live.attempt_token is not None and live.attempt_context is not None
                and live.attempt_owner is not None):
            _detach(live.attempt_token, live.attempt_context, live.attempt_owner)
        live.attempt_context = live.attempt_token = live.attempt_owner = None
        if span.is_recording():
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            if error is not None:
                span.set_attribute("error.type", error)
                span.set_status(trace.StatusCode.ERROR, description or None)
        span.end()

    # -- what happens in between ------------------------------------------------------------

    def _note(self, event: Event) -> None:
        live = self._live.get(event.request_id)
        name = f"surefoot.{event.kind.value}"
        if live is not None:
            live.span.add_event(name, _event_attributes(event))
            return
        if event.kind not in _TOKEN_KINDS:
            return
        # Token work outside a request of this hook's: on the current span, else its own.
        current = trace.get_current_span()
        if current.is_recording():
            current.add_event(name, _event_attributes(event))
            return
        span = self._tracer.start_span(name, kind=trace.SpanKind.INTERNAL,
                                       attributes=_event_attributes(event))
        if event.kind is EventKind.TOKEN_REFRESH_FAILED:
            span.set_status(trace.StatusCode.ERROR, event.reason or None)
        span.end()
