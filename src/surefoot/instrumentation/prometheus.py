"""Prometheus metrics from surefoot's events (``pip install 'surefoot[prometheus]'``).

::

    import surefoot
    from surefoot.instrumentation.prometheus import PrometheusHook

    metrics = PrometheusHook()          # the global registry, names starting surefoot_
    client = surefoot.Client("https://api.example.com", hook=metrics)

    # then expose them as usual, e.g. prometheus_client.start_http_server(8000)

The metrics (``surefoot_`` is the ``prefix``):

================================================  ==========================================
``surefoot_requests_total``                       logical requests, by how they ended
                                                  (``partition``, ``method``,
                                                  ``status_code``, ``error_type``)
``surefoot_request_duration_seconds``             histogram of whole requests, waits
                                                  included (``partition``, ``method``)
``surefoot_attempts_total``                       attempts sent and done (``partition``,
                                                  ``method``, ``status_code``,
                                                  ``error_type``: the transport failure)
``surefoot_rate_limited_total``                   attempts answered 429 (``partition``)
``surefoot_retries_total``                        retries scheduled (``partition``,
                                                  ``status_code``, ``error_type``: why)
``surefoot_gave_up_total``                        requests given up (``partition``)
``surefoot_circuit_open_total``                   attempts the circuit breaker refused
                                                  (``partition``)
``surefoot_token_refreshes_total``                token refreshes (``partition``,
                                                  ``outcome``: ``refreshed`` / ``failed``)
``surefoot_token_invalidations_total``            tokens dropped (a 401, a revocation)
``surefoot_wait_seconds``                         histogram of waits (``partition``,
                                                  ``kind``: ``backoff`` before a retry,
                                                  ``pacing`` for a rate-limit slot,
                                                  ``circuit`` until an open breaker's next
                                                  probe)
================================================  ==========================================

For example, the share of attempts throttled per partition over 5 minutes::

    sum by (partition) (rate(surefoot_rate_limited_total[5m]))
      / sum by (partition) (rate(surefoot_attempts_total[5m]))

**Bounded label values.** ``partition`` is the event's pacing partition, or the URL's host
without pacing (empty for token work outside a request). At most ``max_partitions``
distinct values are used (the first seen keep their name), the rest count as ``"other"``:
a client calling a host per tenant cannot make the series grow without bound.
``status_code`` is the code for the codes HTTP registers, else its class (``"4xx"``) or
``"other"``, and empty for an attempt that got no response; ``method`` is one of the
standard methods or ``"_OTHER"``; ``error_type`` (an exception's type name, or the
transport failure's kind) is bounded like ``partition`` (``max_error_types``).

Several hooks may share a registry: hooks with the same registry and prefix share the same
metrics (the settings must then agree). The hook never raises: a failure in it is logged
to the ``surefoot`` logger and the request goes on.
"""

from __future__ import annotations

import http
import threading
import weakref
from collections.abc import Sequence
from typing import NamedTuple
from urllib.parse import urlsplit

from surefoot._extras import missing
from surefoot._log import logger
from surefoot.errors import ConfigurationError
from surefoot.events import Event, EventKind

try:
    import prometheus_client
    from prometheus_client import CollectorRegistry, Counter, Histogram
except ImportError as exc:
    raise missing(exc, "prometheus_client", extra="prometheus",
                  what="surefoot.instrumentation.prometheus") from None

__all__ = ["DURATION_BUCKETS", "WAIT_BUCKETS", "PrometheusHook"]

#: Buckets of ``surefoot_request_duration_seconds`` (a request's retries and waits count).
DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)
#: Buckets of ``surefoot_wait_seconds`` (backoffs, pacing slots, open circuits).
WAIT_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0,
)

OTHER = "other"
_REGISTERED_CODES = frozenset(int(code) for code in http.HTTPStatus)
_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
_WAIT_KINDS = {
    EventKind.RETRY_SCHEDULED: "backoff",
    EventKind.PACING_WAIT: "pacing",
    EventKind.CIRCUIT_OPEN: "circuit",
}
_WANTED = frozenset({
    EventKind.REQUEST_DONE,
    EventKind.ATTEMPT_DONE,
    EventKind.RETRY_SCHEDULED,
    EventKind.GAVE_UP,
    EventKind.PACING_WAIT,
    EventKind.CIRCUIT_OPEN,
    EventKind.TOKEN_REFRESHED,
    EventKind.TOKEN_REFRESH_FAILED,
    EventKind.TOKEN_INVALIDATED,
})


class _Bounded:
    """At most ``limit`` distinct label values: the first seen keep theirs, the rest are
    ``"other"`` (the empty value, "none", is always itself). Thread-safe; a value already
    seen costs one set lookup."""

    __slots__ = ("_lock", "_seen", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if not value or value in self._seen:
            return value
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) >= self.limit:
                return OTHER
            self._seen.add(value)
            return value

    def __len__(self) -> int:
        return len(self._seen)


def _status_label(status: int | None) -> str:
    if status is None:
        return ""
    if status in _REGISTERED_CODES:
        return str(status)
    return f"{status // 100}xx" if 100 <= status <= 599 else OTHER


def _method_label(method: str) -> str:
    return method if method in _KNOWN_METHODS else "_OTHER"


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


class _Settings(NamedTuple):
    max_partitions: int
    max_error_types: int
    duration_buckets: tuple[float, ...]
    wait_buckets: tuple[float, ...]


class _Metrics:
    """The metrics of one (registry, prefix), and the bounds of their label values."""

    def __init__(self, registry: CollectorRegistry, prefix: str, settings: _Settings) -> None:
        self.settings = settings
        self.partitions = _Bounded(settings.max_partitions)
        self.error_types = _Bounded(settings.max_error_types)
        p, r = prefix, registry
        self.requests = Counter(
            f"{p}requests", "Logical requests (retries included), by how they ended.",
            ["partition", "method", "status_code", "error_type"], registry=r)
        self.duration = Histogram(
            f"{p}request_duration_seconds",
            "Seconds a logical request took, its retries and waits included.",
            ["partition", "method"], buckets=settings.duration_buckets, registry=r)
        self.attempts = Counter(
            f"{p}attempts", "Attempts sent and done, by outcome.",
            ["partition", "method", "status_code", "error_type"], registry=r)
        self.rate_limited = Counter(
            f"{p}rate_limited", "Attempts answered 429 Too Many Requests.",
            ["partition"], registry=r)
        self.retries = Counter(
            f"{p}retries", "Retries scheduled, by what was retried.",
            ["partition", "status_code", "error_type"], registry=r)
        self.gave_up = Counter(
            f"{p}gave_up", "Requests given up (retries exhausted, deadline, not retryable...).",
            ["partition"], registry=r)
        self.circuit_open = Counter(
            f"{p}circuit_open", "Attempts refused by an open circuit breaker.",
            ["partition"], registry=r)
        self.token_refreshes = Counter(
            f"{p}token_refreshes", "Token refreshes, by outcome (refreshed, failed).",
            ["partition", "outcome"], registry=r)
        self.token_invalidations = Counter(
            f"{p}token_invalidations", "Tokens dropped (answered 401, revoked).",
            ["partition"], registry=r)
        self.waits = Histogram(
            f"{p}wait_seconds",
            "Seconds waited: backoff before a retry, pacing for a rate-limit slot, circuit "
            "until an open breaker's next probe.",
            ["partition", "kind"], buckets=settings.wait_buckets, registry=r)


#: registry -> prefix -> its metrics (a registry refuses a second metric of one name)
_SHARED: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _Metrics]] = (
    weakref.WeakKeyDictionary()
)
_SHARED_LOCK = threading.Lock()


def _metrics_for(registry: CollectorRegistry, prefix: str, settings: _Settings) -> _Metrics:
    with _SHARED_LOCK:
        by_prefix = _SHARED.setdefault(registry, {})
        metrics = by_prefix.get(prefix)
        if metrics is None:
            metrics = by_prefix[prefix] = _Metrics(registry, prefix, settings)
        elif metrics.settings != settings:
            raise ConfigurationError(
                f"the {prefix}* metrics of this registry were made with other settings "
                f"({metrics.settings}); pass the same ones, or another prefix or registry")
        return metrics


class PrometheusHook:
    """A surefoot hook counting into Prometheus metrics (see the module's documentation).

    ``registry``: where the metrics are registered (``None``: prometheus_client's global
    ``REGISTRY``). ``prefix`` starts every metric's name. ``max_partitions`` and
    ``max_error_types`` bound the distinct values of those labels (the rest are
    ``"other"``). ``duration_buckets`` and ``wait_buckets`` are the histograms' buckets.
    """

    __slots__ = ("_metrics", "prefix", "registry")

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        prefix: str = "surefoot_",
        max_partitions: int = 50,
        max_error_types: int = 30,
        duration_buckets: Sequence[float] = DURATION_BUCKETS,
        wait_buckets: Sequence[float] = WAIT_BUCKETS,
    ) -> None:
        for name, value in (("max_partitions", max_partitions),
                            ("max_error_types", max_error_types)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigurationError(f"{name} must be an int, 0 or more, not {value!r}")
        self.registry = prometheus_client.REGISTRY if registry is None else registry
        self.prefix = prefix
        settings = _Settings(max_partitions, max_error_types, tuple(duration_buckets),
                             tuple(wait_buckets))
        self._metrics = _metrics_for(self.registry, prefix, settings)

    def wants(self, kind: EventKind) -> bool:
        """Whether the hook counts events of this kind (the others are not even built)."""
        return kind in _WANTED

    def __repr__(self) -> str:
        return f"PrometheusHook(prefix={self.prefix!r})"

    def __call__(self, event: Event) -> None:
        if event.kind not in _WANTED:
            return
        try:
            self._count(event)
        except Exception:
            logger.exception("surefoot Prometheus hook failed on %s", event.kind.value)

    def _count(self, event: Event) -> None:
        m = self._metrics
        kind = event.kind
        partition = m.partitions(event.partition or _host(event.url))
        if kind is EventKind.ATTEMPT_DONE:
            m.attempts.labels(partition, _method_label(event.method),
                              _status_label(event.status),
                              m.error_types(event.error or "")).inc()
            if event.status == 429:
                m.rate_limited.labels(partition).inc()
        elif kind is EventKind.REQUEST_DONE:
            method = _method_label(event.method)
            m.requests.labels(partition, method, _status_label(event.status),
                              m.error_types(event.error or "")).inc()
            if event.elapsed is not None:
                m.duration.labels(partition, method).observe(event.elapsed)
        elif kind is EventKind.RETRY_SCHEDULED:
            m.retries.labels(partition, _status_label(event.status),
                             m.error_types(event.error or "")).inc()
        elif kind is EventKind.GAVE_UP:
            m.gave_up.labels(partition).inc()
        elif kind is EventKind.CIRCUIT_OPEN:
            m.circuit_open.labels(partition).inc()
        elif kind is EventKind.TOKEN_REFRESHED:
            m.token_refreshes.labels(partition, "refreshed").inc()
        elif kind is EventKind.TOKEN_REFRESH_FAILED:
            m.token_refreshes.labels(partition, "failed").inc()
        elif kind is EventKind.TOKEN_INVALIDATED:
            m.token_invalidations.labels(partition).inc()
        wait_kind = _WAIT_KINDS.get(kind)
        if wait_kind is not None and event.wait is not None:
            m.waits.labels(partition, wait_kind).observe(event.wait)
