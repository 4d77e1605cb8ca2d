"""PrometheusHook against the real prometheus_client (a fresh CollectorRegistry per test),
driving real surefoot clients against the sandbox."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from instrumentation_support import cc_auth, revoke_tokens, unique
from prometheus_client import CollectorRegistry

import surefoot
from surefoot.errors import ConfigurationError, InvalidClient
from surefoot.events import Event, EventKind
from surefoot.instrumentation.prometheus import PrometheusHook


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value, summed over the labels not given (0 when absent)."""
    total = 0.0
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in labels.items()):
                total += sample.value
    return total


def label_values(registry: CollectorRegistry, name: str, label: str) -> set[str]:
    return {s.labels[label] for m in registry.collect() for s in m.samples
            if s.name == name and label in s.labels}


def test_attempts_retries_and_durations(make_api, registry, sandbox, no_wait):
    api = make_api(hook=PrometheusHook(registry))
    assert api.get(f"/flaky?fail=2&status=503&key={unique()}").status_code == 200
    partition = f"127.0.0.1:{sandbox.port}"  # the default pacing partition: the host
    get = registry.get_sample_value
    common = {"partition": partition, "method": "GET"}
    assert get("surefoot_attempts_total",
               {**common, "status_code": "503", "error_type": ""}) == 2
    assert get("surefoot_attempts_total",
               {**common, "status_code": "200", "error_type": ""}) == 1
    assert get("surefoot_retries_total",
               {"partition": partition, "status_code": "503", "error_type": ""}) == 2
    assert get("surefoot_requests_total",
               {**common, "status_code": "200", "error_type": ""}) == 1
    assert get("surefoot_request_duration_seconds_count", common) == 1
    assert get("surefoot_wait_seconds_count", {"partition": partition, "kind": "backoff"}) == 2
    assert value(registry, "surefoot_gave_up_total") == 0
    assert value(registry, "surefoot_rate_limited_total") == 0


def test_429s_and_giving_up(make_api, registry, no_wait):
    api = make_api(hook=PrometheusHook(registry),
                   retry=surefoot.RetryPolicy(max_attempts=2, on_exhausted="raise"),
                   pacing=None)
    with pytest.raises(surefoot.RetriesExhausted):
        api.get("/status/429")
    host = "127.0.0.1"  # without pacing: the URL's host
    assert registry.get_sample_value("surefoot_rate_limited_total", {"partition": host}) == 2
    assert value(registry, "surefoot_attempts_total", status_code="429") == 2
    assert registry.get_sample_value("surefoot_gave_up_total", {"partition": host}) == 1
    assert value(registry, "surefoot_requests_total", error_type="RetriesExhausted",
                 status_code="429") == 1


def test_transport_failures_are_error_types(make_api, registry, no_wait, closed_port):
    api = make_api(hook=PrometheusHook(registry),
                   retry=surefoot.RetryPolicy(max_attempts=2, on_exhausted="raise"))
    with pytest.raises(surefoot.TransportError):
        api.request("GET", f"http://127.0.0.1:{closed_port}/x")
    assert value(registry, "surefoot_attempts_total", status_code="", error_type="connect") == 2
    assert value(registry, "surefoot_retries_total", error_type="connect") == 1
    assert value(registry, "surefoot_requests_total", error_type="TransportError") == 1


def test_token_refreshes_and_failures(make_api, registry, sandbox, no_wait):
    api = make_api(hook=PrometheusHook(registry), auth=cc_auth(sandbox))
    assert api.get("/protected").status_code == 200
    assert value(registry, "surefoot_token_refreshes_total", outcome="refreshed") == 1
    revoke_tokens(sandbox)
    assert api.get("/protected").status_code == 200
    assert value(registry, "surefoot_token_refreshes_total", outcome="refreshed") == 2
    assert value(registry, "surefoot_token_invalidations_total") == 1
    assert value(registry, "surefoot_attempts_total", status_code="401") == 1

    failing = make_api(hook=PrometheusHook(registry),
                       auth=cc_auth(sandbox, secret="wrong-secret"))
    with pytest.raises(InvalidClient):
        failing.get("/protected")
    assert value(registry, "surefoot_token_refreshes_total", outcome="failed") == 1
    assert value(registry, "surefoot_requests_total", error_type="InvalidClient") == 1


@pytest.mark.parametrize("kind", ["requests"])
def test_circuit_open_refusals_and_pacing_waits(make_api, registry, no_wait):
    from surefoot.pacing import BreakerPolicy, Quota

    pacing = surefoot.PacingPolicy(
        quotas=(Quota(limit=100.0, period=1.0, burst=1),),
        breaker=BreakerPolicy(failure_threshold=2, failure_ratio=None, open_for=60.0),
    )
    api = make_api(hook=PrometheusHook(registry), pacing=pacing,
                   retry=surefoot.RetryPolicy(max_attempts=1, on_exhausted="raise"))
    for _ in range(2):
        with pytest.raises(surefoot.RetriesExhausted):
            api.get("/status/503")
    with pytest.raises(surefoot.CircuitOpen):
        api.get("/status/503")
    assert value(registry, "surefoot_circuit_open_total") == 1
    assert value(registry, "surefoot_wait_seconds_count", kind="circuit") == 1
    assert 0 < value(registry, "surefoot_wait_seconds_sum", kind="circuit") <= 60
    assert value(registry, "surefoot_wait_seconds_count", kind="pacing") >= 1
    assert value(registry, "surefoot_attempts_total") == 2  # the refused one was not sent


@pytest.mark.parametrize("kind", ["requests"])
def test_partition_labels_are_bounded(make_api, registry, no_wait):
    """200 partitions (one per tenant), at most ``max_partitions`` label values: the
    first ten keep their name, the rest count as "other"; nothing is lost."""
    pacing = surefoot.PacingPolicy(
        partition_by=lambda url, headers: "tenant-" + headers.get("x-tenant", "none"),
        adaptive=None, budget=None,
    )
    api = make_api(hook=PrometheusHook(registry, max_partitions=10), pacing=pacing)
    for n in range(200):
        assert api.get("/get", headers={"X-Tenant": str(n)}).status_code == 200
    for name in ("surefoot_attempts_total", "surefoot_requests_total",
                 "surefoot_request_duration_seconds_count"):
        values = label_values(registry, name, "partition")
        assert len(values) == 11
        assert "other" in values
        assert {f"tenant-{n}" for n in range(10)} <= values
        assert value(registry, name) == 200
    assert value(registry, "surefoot_attempts_total", partition="other") == 190


def test_error_type_and_status_labels_are_bounded(registry):
    hook = PrometheusHook(registry, max_error_types=3)
    for n in range(50):
        hook(Event(EventKind.REQUEST_DONE, "GET", "https://h.example/", attempt=1,
                   status=None, error=f"Error{n}", elapsed=0.1, request_id=n))
    assert label_values(registry, "surefoot_requests_total", "error_type") == {
        "Error0", "Error1", "Error2", "other"}
    for status in (200, 299, 429, 499, 799, 42):
        hook(Event(EventKind.ATTEMPT_DONE, "BREW", "https://h.example/", attempt=1,
                   status=status, elapsed=0.1, request_id=1))
    assert label_values(registry, "surefoot_attempts_total", "status_code") == {
        "200", "2xx", "429", "4xx", "other"}
    assert label_values(registry, "surefoot_attempts_total", "method") == {"_OTHER"}


def test_hooks_on_one_registry_share_the_metrics(registry):
    first, second = PrometheusHook(registry), PrometheusHook(registry)
    done = Event(EventKind.ATTEMPT_DONE, "GET", "https://h.example/", attempt=1, status=200,
                 elapsed=0.1, request_id=1)
    first(done)
    second(done)
    assert value(registry, "surefoot_attempts_total") == 2
    other = PrometheusHook(registry, prefix="other_")
    other(done)
    assert value(registry, "other_attempts_total") == 1
    with pytest.raises(ConfigurationError, match="other settings"):
        PrometheusHook(registry, max_partitions=3)
    with pytest.raises(ConfigurationError, match="max_partitions"):
        PrometheusHook(CollectorRegistry(), max_partitions=-1)


def test_the_global_registry_is_the_default():
    import prometheus_client

    hook = PrometheusHook(prefix=f"surefoot_test_{unique()}_")
    assert hook.registry is prometheus_client.REGISTRY


def test_a_failing_metric_never_breaks_a_request(make_api, registry, caplog, no_wait):
    hook = PrometheusHook(registry)

    class Broken:
        def labels(self, *args: Any) -> Any:
            raise RuntimeError("metric broken")

    hook._metrics.attempts = Broken()  # type: ignore[assignment]
    api = make_api(hook=hook)
    with caplog.at_level(logging.ERROR, logger="surefoot"):
        assert api.get(f"/flaky?fail=1&status=503&key={unique()}").status_code == 200
    assert any("Prometheus hook failed" in r.getMessage() for r in caplog.records)
    assert value(registry, "surefoot_requests_total") == 1  # the rest still counted


def test_wants_only_what_it_counts(registry):
    hook = PrometheusHook(registry)
    assert hook.wants(EventKind.ATTEMPT_DONE)
    assert hook.wants(EventKind.REQUEST_DONE)
    assert not hook.wants(EventKind.REQUEST_STARTED)
    assert not hook.wants(EventKind.ATTEMPT_SENT)
    assert not hook.wants(EventKind.SIGNATURE_APPLIED)


def test_combined_with_other_hooks(make_api, registry, no_wait):
    seen: list[Event] = []
    hook = surefoot.events.combine_hooks([PrometheusHook(registry), seen.append])
    api = make_api(hook=hook)
    assert api.get("/get").status_code == 200
    assert value(registry, "surefoot_requests_total") == 1
    assert any(e.kind is EventKind.ATTEMPT_SENT for e in seen)
