"""The sans-I/O request flow, driven by a scripted fake driver."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surefoot import (
    BearerAuth,
    DeadlineExceeded,
    FailureKind,
    RetriesExhausted,
    RetryPolicy,
    SigningAuth,
    TransportError,
    Unauthorized,
)
from surefoot._core._effects import FetchToken, Send, Sleep
from surefoot._core._pipeline import FlowResult, RequestView, request_flow
from surefoot._core._policy import Failure, ResponseInfo
from surefoot.errors import NotRetryable, RetryAfterTooLong
from surefoot.events import EventKind, redact_url
from surefoot.pacing import Quota
from surefoot.signing import HmacVerifier, SignedRequest
from surefoot.testing import FakeClock

T0 = 1_700_000_000.0
SECRET = "hmac-secret-never-in-events"
KEY_ID = "key-1"
URL = "https://api.example.com/v1/items?page=2"


@dataclasses.dataclass
class Run:
    result: FlowResult
    effects: list[Any]

    @property
    def sends(self) -> list[Send]:
        return [e for e in self.effects if isinstance(e, Send)]

    @property
    def sleeps(self) -> list[Sleep]:
        return [e for e in self.effects if isinstance(e, Sleep)]

    @property
    def fetches(self) -> list[FetchToken]:
        return [e for e in self.effects if isinstance(e, FetchToken)]


def drive(
    request: RequestView,
    outcomes: list[ResponseInfo | Failure],
    *,
    policy: RetryPolicy | None = None,
    auth: Any = None,
    clock: FakeClock | None = None,
    hook: Callable[[Any], None] | None = None,
    send_time: float = 0.1,
    key_factory: Callable[[], str] | None = None,
    on_send: Callable[[Send], None] | None = None,
) -> Run:
    clock = clock or FakeClock(start_wall=T0)
    kwargs: dict[str, Any] = {}
    if key_factory is not None:
        kwargs["key_factory"] = key_factory
    flow = request_flow(
        request,
        policy=policy or RetryPolicy(),
        auth=auth,
        clock=clock,
        hook=hook or (lambda event: None),
        rng=lambda: 0.5,
        **kwargs,
    )
    script = list(outcomes)
    effects: list[Any] = []
    try:
        effect = next(flow)
        while True:
            effects.append(effect)
            if isinstance(effect, Send):
                if on_send is not None:
                    on_send(effect)
                clock.advance(send_time)
                assert script, "the flow sent more attempts than scripted"
                value: Any = script.pop(0)
            elif isinstance(effect, Sleep):
                clock.sleep(effect.seconds)
                value = None
            elif isinstance(effect, FetchToken):
                value = effect.run()
            else:  # pragma: no cover
                raise AssertionError(effect)
            effect = flow.send(value)
    except StopIteration as stop:
        return Run(stop.value, effects)


def ok(status: int = 200, **headers: str) -> ResponseInfo:
    return ResponseInfo(status, {k.replace("_", "-"): v for k, v in headers.items()})


def get(url: str = URL, **kwargs: Any) -> RequestView:
    return RequestView("GET", url, **kwargs)


def post(url: str = URL, **kwargs: Any) -> RequestView:
    kwargs.setdefault("body", b'{"a":1}')
    return RequestView("POST", url, **kwargs)


def header(headers, name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


# -- history -------------------------------------------------------------------------------


def test_history_for_success():
    run = drive(get(), [ok(200)])
    assert run.result.error is None
    (attempt,) = run.result.history
    assert attempt.number == 1
    assert attempt.method == "GET"
    assert attempt.status == 200
    assert attempt.error is None
    assert attempt.wait_before == 0
    assert attempt.elapsed == pytest.approx(0.1)
    assert attempt.decision == "done"
    assert len(run.sends) == 1
    assert run.sleeps == []


def test_history_for_returned_error_responses():
    run = drive(get(), [ok(503), ok(502), ok(200)])
    assert run.result.error is None
    history = run.result.history
    assert [a.number for a in history] == [1, 2, 3]
    assert [a.status for a in history] == [503, 502, 200]
    assert history[0].decision.startswith("retry: status 503")
    assert history[1].decision.startswith("retry: status 502")
    assert history[2].decision == "done"
    assert [s.seconds for s in run.sleeps] == [0.25, 0.5]  # full jitter at rng 0.5
    assert [a.wait_before for a in history] == [0.0, 0.25, 0.5]
    assert [s.attempt for s in run.sends] == [1, 2, 3]


def test_history_for_raised_errors():
    run = drive(get(), [Failure(FailureKind.CONNECT), Failure(FailureKind.RESET), ok(200)])
    assert run.result.error is None
    assert [a.error for a in run.result.history] == ["connect", "reset", None]
    assert [a.status for a in run.result.history] == [None, None, 200]


def test_transport_failure_raises_with_history():
    run = drive(get(), [Failure(FailureKind.CONNECT), Failure(FailureKind.OTHER)])
    error = run.result.error
    assert isinstance(error, TransportError)
    assert error.kind == "other"
    assert [a.error for a in error.history] == ["connect", "other"]
    assert error.history == run.result.history
    assert error.attempts == 2


def test_transport_failures_exhausted_always_raise():
    policy = RetryPolicy(max_attempts=2, on_exhausted="return")
    run = drive(get(), [Failure(FailureKind.CONNECT)] * 2, policy=policy)
    assert isinstance(run.result.error, TransportError)
    assert run.result.error.kind == "connect"


# -- on_exhausted ---------------------------------------------------------------------------


def test_on_exhausted_raise():
    policy = RetryPolicy(on_exhausted="raise")
    run = drive(get(), [ok(503)] * 4, policy=policy)
    error = run.result.error
    assert isinstance(error, RetriesExhausted)
    assert len(error.history) == 4
    assert error.status == 503
    assert len(run.sleeps) == 3  # no wait after the final attempt
    assert "4 attempts" in str(error)


def test_on_exhausted_return():
    run = drive(get(), [ok(503)] * 4, policy=RetryPolicy(on_exhausted="return"))
    assert run.result.error is None
    assert len(run.result.history) == 4
    assert run.result.history[-1].decision.startswith("gave up")
    assert len(run.sleeps) == 3


def test_retry_after_too_long_raises_even_in_return_mode():
    run = drive(get(), [ok(503, Retry_After="3600")], policy=RetryPolicy(on_exhausted="return"))
    assert isinstance(run.result.error, RetryAfterTooLong)
    assert run.result.error.requested_wait == 3600.0
    assert run.sleeps == []


def test_post_not_retried_without_key():
    run = drive(post(), [ok(503)], policy=RetryPolicy(on_exhausted="raise"))
    assert isinstance(run.result.error, NotRetryable)
    assert len(run.sends) == 1


def test_retry_after_wait_is_exact():
    run = drive(get(), [ok(429, Retry_After="7"), ok(200)])
    assert [s.seconds for s in run.sleeps] == [7.0]
    assert run.result.history[1].wait_before == 7.0


# -- idempotency keys -----------------------------------------------------------------------


def test_auto_idempotency_key_same_on_every_attempt():
    keys = iter(["key-A", "key-B", "key-C"])
    run = drive(
        post(),
        [ok(503), Failure(FailureKind.READ_TIMEOUT), ok(200)],
        policy=RetryPolicy(idempotency_keys="auto"),
        key_factory=lambda: next(keys),
    )
    assert run.result.error is None
    assert [header(s.headers, "Idempotency-Key") for s in run.sends] == ["key-A"] * 3


def test_auto_idempotency_key_is_a_uuid_by_default():
    run = drive(post(), [ok(503), ok(200)], policy=RetryPolicy(idempotency_keys="auto"))
    values = {header(s.headers, "Idempotency-Key") for s in run.sends}
    assert len(values) == 1
    (value,) = values
    assert value is not None
    assert len(value) == 36


def test_custom_idempotency_header():
    policy = RetryPolicy(idempotency_keys="auto", idempotency_header="X-Request-Id")
    run = drive(post(), [ok(200)], policy=policy, key_factory=lambda: "k1")
    assert run.sends[0].headers == {"X-Request-Id": "k1"}


@pytest.mark.parametrize("name", ["Idempotency-Key", "idempotency-key", "IDEMPOTENCY-KEY"])
def test_caller_supplied_key_is_never_replaced(name):
    factory_calls = []

    def factory() -> str:
        factory_calls.append(1)
        return "generated"

    run = drive(
        post(headers={name: "mine"}),
        [ok(503), ok(503), ok(200)],
        policy=RetryPolicy(idempotency_keys="auto"),
        key_factory=factory,
    )
    assert factory_calls == []
    for send in run.sends:
        assert header(send.headers, "Idempotency-Key") in (None, "mine")
    # the caller's key makes the POST retryable
    assert len(run.sends) == 3
    assert run.result.error is None


def test_no_key_for_get_or_when_off():
    run = drive(get(), [ok(200)], policy=RetryPolicy(idempotency_keys="auto"))
    assert header(run.sends[0].headers, "Idempotency-Key") is None
    run = drive(post(), [ok(503)], policy=RetryPolicy(idempotency_keys="off"))
    assert header(run.sends[0].headers, "Idempotency-Key") is None
    assert len(run.sends) == 1


def test_patch_gets_a_key():
    run = drive(
        RequestView("PATCH", URL, body=b"{}"), [ok(503), ok(200)],
        policy=RetryPolicy(idempotency_keys="auto"), key_factory=lambda: "p",
    )
    assert [header(s.headers, "Idempotency-Key") for s in run.sends] == ["p", "p"]


# -- signatures per attempt ------------------------------------------------------------------


def test_signature_fresh_per_attempt():
    clock = FakeClock(start_wall=T0)
    auth = SigningAuth.hmac(KEY_ID, SECRET, clock=clock)
    verifier = HmacVerifier({KEY_ID: SECRET})
    body = b'{"amount":5}'
    verified: list[str] = []

    def check(send: Send) -> None:
        # verify each attempt as the server would, at the moment it arrives
        verified.append(
            verifier.verify(
                SignedRequest.of("POST", URL, dict(send.headers), body), now=clock.wall()
            ).key_id
        )

    run = drive(
        post(body=body, headers={"Idempotency-Key": "k"}),
        [ok(503, Retry_After="5"), Failure(FailureKind.CONNECT), ok(200)],
        auth=auth,
        clock=clock,
        on_send=check,
    )
    assert run.result.error is None
    assert verified == [KEY_ID] * 3
    sends = run.sends
    nonces = [s.headers["X-Nonce"] for s in sends]
    signatures = [s.headers["X-Signature"] for s in sends]
    timestamps = [int(s.headers["X-Timestamp"]) for s in sends]
    assert len(set(nonces)) == 3
    assert len(set(signatures)) == 3
    assert timestamps[0] == int(T0)
    assert timestamps[1] - timestamps[0] >= 5  # the Retry-After wait moved the clock
    assert timestamps[1] == int(T0 + 0.1 + 5)
    assert [s.seconds for s in run.sleeps][0] == 5.0


def test_credentials_withheld_on_cross_origin_hop():
    events: list = []
    auth = SigningAuth.hmac(KEY_ID, SECRET)
    run = drive(get(credentials_allowed=False), [ok(200)], auth=auth, hook=events.append)
    (send,) = run.sends
    assert "X-Signature" not in send.headers
    assert set(send.remove) == set(auth.credential_headers)
    assert EventKind.CREDENTIALS_WITHHELD in [e.kind for e in events]


STATIC = {"X-API-Key": "static-key", "Cookie": "session=abc", "X-Trace-Id": "trace-1"}


def test_redirect_elsewhere_withholds_credential_headers_without_auth():
    """A redirect hop to another origin carries no credential header, whoever set it,
    whether or not an auth object is set; other headers go on."""
    events: list = []
    run = drive(get(headers=STATIC, credentials_allowed=False, redirected_elsewhere=True),
                [ok(200)], hook=events.append)
    (send,) = run.sends
    assert {name.lower() for name in send.remove} == {"x-api-key", "cookie"}
    assert not send.headers
    (withheld,) = [e for e in events if e.kind is EventKind.CREDENTIALS_WITHHELD]
    assert "x-api-key" in withheld.reason
    assert "static-key" not in withheld.message()
    assert "abc" not in withheld.message()


def test_redirect_elsewhere_withholds_auth_and_credential_headers():
    auth = SigningAuth.hmac(KEY_ID, SECRET)
    run = drive(get(headers=STATIC, credentials_allowed=False, redirected_elsewhere=True),
                [ok(200)], auth=auth)
    (send,) = run.sends
    assert "X-Signature" not in send.headers
    removed = {name.lower() for name in send.remove}
    assert removed == {h.lower() for h in auth.credential_headers} | {"x-api-key", "cookie"}
    assert len(send.remove) == len(removed)  # each name once


def test_redirect_elsewhere_with_nothing_to_withhold_is_silent():
    events: list = []
    run = drive(get(headers={"X-Trace-Id": "t"}, credentials_allowed=False,
                    redirected_elsewhere=True), [ok(200)], hook=events.append)
    (send,) = run.sends
    assert send.remove == ()
    assert EventKind.CREDENTIALS_WITHHELD not in [e.kind for e in events]


def test_first_hop_outside_credential_origins_keeps_the_callers_headers():
    """Outside credential_origins (not a redirect) only the auth object's credentials are
    withheld: the caller chose that URL and its headers."""
    auth = SigningAuth.hmac(KEY_ID, SECRET)
    run = drive(get(headers=STATIC, credentials_allowed=False), [ok(200)], auth=auth)
    (send,) = run.sends
    assert set(send.remove) == set(auth.credential_headers)


# -- 401 refresh and replay -----------------------------------------------------------------


class CountingSource:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> dict[str, object]:
        self.calls += 1
        return {"access_token": f"bearer-token-{self.calls}", "expires_in": 3600}


def bearer(clock: FakeClock, events: list | None = None) -> tuple[BearerAuth, CountingSource]:
    source = CountingSource()
    hook = events.append if events is not None else (lambda e: None)
    return BearerAuth(source, clock=clock, hook=hook), source


def test_401_refreshes_once_and_replays():
    clock = FakeClock(start_wall=T0)
    auth, source = bearer(clock)
    run = drive(get(), [ok(401), ok(200)], auth=auth, clock=clock)
    assert run.result.error is None
    stale_fetches = [f for f in run.fetches if f.stale is not None]
    assert len(stale_fetches) == 1
    assert stale_fetches[0].stale.access_token == "bearer-token-1"
    assert [s.headers["Authorization"] for s in run.sends] == [
        "Bearer bearer-token-1",
        "Bearer bearer-token-2",
    ]
    assert source.calls == 2
    assert [a.status for a in run.result.history] == [401, 200]
    assert run.result.history[0].decision == "refresh token and replay"
    assert run.sleeps == []


def test_401_replay_does_not_spend_a_retry():
    clock = FakeClock(start_wall=T0)
    auth, _ = bearer(clock)
    policy = RetryPolicy(max_attempts=2)
    run = drive(get(), [ok(503), ok(401), ok(200)], auth=auth, clock=clock, policy=policy)
    assert [a.status for a in run.result.history] == [503, 401, 200]
    assert run.result.error is None


@pytest.mark.parametrize("mode", ["raise", "return"])
def test_second_401_ends(mode):
    clock = FakeClock(start_wall=T0)
    auth, source = bearer(clock)
    run = drive(get(), [ok(401), ok(401)], auth=auth, clock=clock,
                policy=RetryPolicy(on_exhausted=mode))
    assert len(run.sends) == 2
    assert len([f for f in run.fetches if f.stale is not None]) == 1
    assert source.calls == 2
    assert [a.status for a in run.result.history] == [401, 401]
    if mode == "raise":
        assert isinstance(run.result.error, Unauthorized)
        assert len(run.result.error.history) == 2
    else:
        assert run.result.error is None


def test_401_with_unreplayable_body_is_not_replayed():
    clock = FakeClock(start_wall=T0)
    auth, _ = bearer(clock)
    run = drive(post(replayable=False), [ok(401)], auth=auth, clock=clock,
                policy=RetryPolicy(on_exhausted="raise"))
    assert len(run.sends) == 1
    assert isinstance(run.result.error, Unauthorized)


def test_401_without_token_auth_is_just_a_response():
    run = drive(get(), [ok(401)], auth=SigningAuth.hmac(KEY_ID, SECRET))
    assert run.result.error is None
    assert len(run.sends) == 1
    assert run.fetches == []


# -- deadline -------------------------------------------------------------------------------


def test_deadline_prevents_overrunning_sleep():
    policy = RetryPolicy(deadline=10.0, on_exhausted="raise")
    run = drive(get(), [ok(503, Retry_After="8")], policy=policy, send_time=3.0)
    assert run.sleeps == []
    assert isinstance(run.result.error, DeadlineExceeded)
    assert len(run.result.history) == 1


def test_deadline_in_return_mode_returns_last_response():
    policy = RetryPolicy(deadline=10.0, on_exhausted="return")
    run = drive(get(), [ok(503, Retry_After="8")], policy=policy, send_time=3.0)
    assert run.sleeps == []
    assert run.result.error is None


def test_attempt_timeout_capped_by_deadline():
    clock = FakeClock(start_wall=T0)
    policy = RetryPolicy(deadline=10.0)
    run = drive(get(), [ok(503, Retry_After="2"), ok(200)], policy=policy, clock=clock,
                send_time=3.0)
    assert [s.timeout for s in run.sends] == [pytest.approx(10.0), pytest.approx(5.0)]
    unlimited = drive(get(), [ok(200)], policy=RetryPolicy(deadline=None))
    assert unlimited.sends[0].timeout is None


outcomes = st.one_of(
    st.sampled_from([200, 404, 408, 429, 500, 503]).map(ResponseInfo),
    st.builds(
        lambda s, ra: ResponseInfo(s, {"Retry-After": str(ra)}),
        st.sampled_from([429, 503]),
        st.integers(min_value=0, max_value=200),
    ),
    st.sampled_from(list(FailureKind)).map(Failure),
)


@given(
    script=st.lists(outcomes, min_size=1, max_size=12),
    send_time=st.floats(min_value=0, max_value=20),
    deadline=st.floats(min_value=0.5, max_value=120),
    max_attempts=st.integers(min_value=1, max_value=6),
    method=st.sampled_from(["GET", "POST"]),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_flow_never_sleeps_across_the_deadline(
    script, send_time, deadline, max_attempts, method, seed
):
    clock = FakeClock(start_wall=T0)
    rng = random.Random(seed)
    policy = RetryPolicy(max_attempts=max_attempts, deadline=deadline, retry_after_cap=None,
                         on_exhausted="raise")
    flow = request_flow(
        RequestView(method, URL, body=b"x"), policy=policy, auth=None, clock=clock,
        hook=lambda e: None, rng=rng.random,
    )
    start = clock.monotonic()
    end = start + deadline
    remaining = list(script)
    sends = 0
    try:
        effect = next(flow)
        while True:
            if isinstance(effect, Send):
                sends += 1
                assert effect.timeout is not None
                assert 0 < effect.timeout <= deadline + 1e-9
                assert clock.monotonic() + effect.timeout == pytest.approx(end)
                clock.advance(send_time)
                value = remaining.pop(0) if remaining else ResponseInfo(200)
            else:
                assert isinstance(effect, Sleep)
                assert effect.seconds >= 0
                assert (clock.monotonic() - start) + effect.seconds < deadline
                clock.sleep(effect.seconds)
                value = None
            effect = flow.send(value)
    except StopIteration as stop:
        result: FlowResult = stop.value
    assert sends <= max_attempts
    assert len(result.history) == sends
    if result.error is not None:
        assert result.error.history == result.history


# -- events ---------------------------------------------------------------------------------


def event_texts(event) -> list[str]:
    return [str(value) for value in event] + [event.message()]


def test_events_for_retries_and_giving_up_carry_no_secrets():
    events: list = []
    clock = FakeClock(start_wall=T0)
    auth = SigningAuth.hmac(KEY_ID, SECRET, clock=clock)
    url = "https://user:pa55word@api.example.com/v1?api_key=QUERYSECRET&page=1"
    run = drive(get(url), [ok(503), ok(503), ok(503), ok(503)], auth=auth, clock=clock,
                hook=events.append)
    kinds = [e.kind for e in events]
    assert kinds.count(EventKind.ATTEMPT_SENT) == 4
    assert kinds.count(EventKind.RETRY_SCHEDULED) == 3
    assert kinds.count(EventKind.GAVE_UP) == 1
    assert kinds[-2:] == [EventKind.GAVE_UP, EventKind.REQUEST_DONE]
    assert kinds[0] is EventKind.REQUEST_STARTED
    assert len({e.request_id for e in events}) == 1
    retry = next(e for e in events if e.kind is EventKind.RETRY_SCHEDULED)
    assert retry.wait == 0.25
    assert retry.status == 503
    assert retry.attempt == 1
    forbidden = [SECRET, "QUERYSECRET", "pa55word"]
    forbidden += [s.headers["X-Signature"] for s in run.sends]
    for event in events:
        for text in event_texts(event):
            for secret in forbidden:
                assert secret not in text
        if event.url:
            assert event.url == "https://api.example.com/v1?api_key=REDACTED&page=1"


def test_bearer_events_carry_no_token():
    events: list = []
    clock = FakeClock(start_wall=T0)
    auth, _ = bearer(clock, events)
    drive(get(), [ok(401), ok(503), ok(200)], auth=auth, clock=clock, hook=events.append)
    kinds = {e.kind for e in events}
    assert {EventKind.TOKEN_REFRESHED, EventKind.TOKEN_INVALIDATED, EventKind.ATTEMPT_DONE,
            EventKind.RETRY_SCHEDULED} <= kinds
    for event in events:
        for text in event_texts(event):
            assert "bearer-token-" not in text


def test_error_messages_are_redacted():
    url = "https://u:pw@api.example.com/x?token=TOPSECRET"
    run = drive(get(url), [ok(503)] * 4, policy=RetryPolicy(on_exhausted="raise"))
    message = str(run.result.error)
    assert "TOPSECRET" not in message
    assert "pw@" not in message


# -- redact_url -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://api.example.com/v1?api_key=abc123&token=def456&page=2",
            "https://api.example.com/v1?api_key=REDACTED&token=REDACTED&page=2",
        ),
        ("https://user:pass@api.example.com/p", "https://api.example.com/p"),
        ("https://user@api.example.com:8443/p", "https://api.example.com:8443/p"),
        (
            "https://api.example.com/?access_token=x&Signature=y&client_secret=z&q=ok",
            "https://api.example.com/?access_token=REDACTED&Signature=REDACTED"
            "&client_secret=REDACTED&q=ok",
        ),
        ("https://api.example.com/p?q=1#frag-token", "https://api.example.com/p?q=1"),
        ("https://api.example.com/p", "https://api.example.com/p"),
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_redact_url_percent_encoded_names():
    text = redact_url("https://h/p?api%5Fkey=s3cr3t&x=1")
    assert "s3cr3t" not in text
    assert "x=1" in text


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=20))
def test_redact_url_hides_any_secret_value(secret):
    url = f"https://me:{secret}@h.example/p?token={secret}&api_key={secret}"
    assert secret not in redact_url(url)


def test_redact_url_never_raises():
    for url in ("http://[::1", "", "not a url", "http://h/p?%zz=%zz"):
        assert isinstance(redact_url(url), str)


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("https://h/api;access_token=s3cr3t/items?q=1", "s3cr3t"),  # a matrix parameter
        ("https://h/a;v=1;Access_Token=s3cr3t;x=2/b", "s3cr3t"),
        ("https://h/p?jwt=eyJhbGciOiJIUzI1NiJ9.e30.sig", "eyJhbGciOiJIUzI1NiJ9"),
        ("https://h/token?client_assertion=eyJ.assertion.value&grant_type=x", "eyJ.assertion"),
        ("https://h/p?a=1;token=s3cr3t", "s3cr3t"),  # ';' as a query separator
        ("https://h/p?X-Amz-Credential=AKIDEXAMPLE%2F20240101&X-Amz-Signature=abcdef",
         "AKIDEXAMPLE"),
        ("https://h/p?x-amz-signature=abcdef0123", "abcdef0123"),
        ("https://h/cb?code=authz-code-123&state=ok", "authz-code-123"),
        ("https://h/p?API-KEY=s3cr3t", "s3cr3t"),
        ("https://h/p?%74oken=s3cr3t", "s3cr3t"),  # a percent-encoded name
        ("https://h/cb#access_token=s3cr3t&token_type=bearer", "s3cr3t"),  # fragment
        ("https://user:s3cr3t@h/p?q=1", "s3cr3t"),  # userinfo
        ("https://user:s3cr3t@h/p;jsessionid=s3cr3t", "s3cr3t"),
    ],
)
def test_redact_url_hides_credentials_in_query_matrix_params_fragment_userinfo(url, secret):
    redacted = redact_url(url)
    assert secret not in redacted
    assert redacted.startswith("https://h/")


@pytest.mark.parametrize(
    "url",
    [
        "https://h/p?codes=A1,B2",
        "https://h/p?zip_code=75001",
        "https://h/search?keyword=python",
        "https://h/books?author=knuth",
        "https://h/scan?barcode=4006381333931",
        "https://h/p;version=2/q?page=3&sort=-date",
    ],
)
def test_redact_url_keeps_what_only_contains_a_credential_name(url):
    assert redact_url(url) == url


def test_redact_url_keeps_the_query_as_sent():
    url = "https://h/p?q=a%20b+c&flag&token=s3cr3t&empty="
    assert redact_url(url) == "https://h/p?q=a%20b+c&flag&token=REDACTED&empty="


def test_credential_params_is_one_lower_case_list():
    from surefoot.events import CREDENTIAL_PARAMS

    assert all(name == name.lower() for name in CREDENTIAL_PARAMS)
    for name in ("access_token", "refresh_token", "id_token", "token", "api_key", "apikey",
                 "api-key", "key", "secret", "client_secret", "client_assertion",
                 "assertion", "password", "passwd", "pwd", "signature", "sig",
                 "x-amz-signature", "x-amz-credential", "x-amz-security-token", "code",
                 "jwt", "auth", "authorization", "session", "sessionid", "credential"):
        assert name in CREDENTIAL_PARAMS
        assert redact_url(f"https://h/p?{name.upper()}=v4lue") == (
            f"https://h/p?{name.upper()}=REDACTED")


_URLISH = st.text(alphabet=st.sampled_from(list("htps:/[]@?#;=&%+.-_a0\x00\n\t é\udc80")))


@given(st.one_of(st.text(), _URLISH, st.builds("https://{}".format, _URLISH)))
def test_redact_url_never_raises_on_any_string(url):
    assert isinstance(redact_url(url), str)


@given(st.text(), st.sampled_from(["access_token", "jwt", "client_assertion", "Code", "sig"]),
       st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=20))
def test_redact_url_hides_a_credential_after_any_path(path, name, secret):
    from urllib.parse import quote

    url = f"https://h.example/{quote(path)}?{name}={secret}"
    assert secret not in redact_url(url).partition("?")[2]



# -- pacing: a waiter looks again when the server may have stated room ---------------------


def test_a_paced_waiter_goes_early_when_room_is_stated_while_it_waits():
    from surefoot import Pacer, PacingPolicy

    clock = FakeClock(start_wall=T0)
    pacer = Pacer(PacingPolicy(safety=1.0, burst_ahead=120.0))
    policy_headers = {"RateLimit-Policy": '"default";q=10;w=1'}
    partition = pacer.partition_of(URL, {})
    start = clock.monotonic()
    pacer.reserve(partition, now=start)  # first contact
    room = {**policy_headers, "RateLimit": '"default";r=40;t=1'}
    pacer.report(partition, ResponseInfo(200, room), sent_at=start, now=start,
                 wall_now=clock.wall(), probe=False)
    pacer.limiter.refused(partition, sent_at=start)  # that room is void: wait in line
    for _ in range(20):  # 20 booked ahead: this request's slot is 2.1 s away
        pacer.reserve(partition, now=start)
    flow = request_flow(get(), policy=RetryPolicy(), auth=None, clock=clock,
                        hook=lambda event: None, rng=lambda: 0.5, pacer=pacer)
    effect = next(flow)
    sleeps: list[float] = []
    sent_at = None
    while True:
        if isinstance(effect, Sleep):
            sleeps.append(effect.seconds)
            clock.sleep(effect.seconds)
            if len(sleeps) == 2:  # meanwhile another request's answer states room
                now = clock.monotonic()
                pacer.report(partition, ResponseInfo(200, room), sent_at=now - 0.01,
                             now=now, wall_now=clock.wall(), probe=False)
            value: Any = None
        elif isinstance(effect, Send):
            sent_at = clock.monotonic() - start
            clock.advance(0.01)
            value = ResponseInfo(200, {})
        else:
            value = effect.run(clock)
        try:
            effect = flow.send(value)
        except StopIteration:
            break
    assert sleeps[0] < 0.5  # it looked again long before its slot...
    assert sent_at is not None
    assert sent_at < 1.0


@pytest.mark.parametrize("oversleep", [0.0, 0.3])
def test_the_pacer_is_told_how_late_after_its_slot_an_attempt_went(oversleep):
    # A thread starved of CPU wakes up after its slot: the pacer hears of it (a 429 of
    # the sends around it is then no sign that the server admits less than it states).
    from surefoot import Pacer, PacingPolicy

    reports: list[float] = []

    class SpyPacer(Pacer):  # (an in-process pacer is called by the flow itself)
        def report(self, *args: Any, **kwargs: Any) -> None:
            reports.append(kwargs["late"])
            super().report(*args, **kwargs)

    clock = FakeClock(start_wall=T0)
    pacer = SpyPacer(PacingPolicy(safety=1.0))
    partition = pacer.partition_of(URL, {})
    start = clock.monotonic()
    pacer.limiter.learn(partition, Quota.per_second(10), start)
    pacer.reserve(partition, now=start)  # the next slot is 0.1 s away
    pacer.limiter.answered(partition)  # (first contact is over)
    flow = request_flow(get(), policy=RetryPolicy(), auth=None, clock=clock,
                        hook=lambda event: None, rng=lambda: 0.5, pacer=pacer)
    effect = next(flow)
    while True:
        if isinstance(effect, Sleep):
            clock.sleep(effect.seconds + oversleep)
            value: Any = None
        elif isinstance(effect, Send):
            clock.advance(0.01)
            value = ResponseInfo(200, {})
        else:
            value = effect.run(clock)
        try:
            effect = flow.send(value)
        except StopIteration:
            break
    assert reports == pytest.approx([oversleep], abs=1e-9)
