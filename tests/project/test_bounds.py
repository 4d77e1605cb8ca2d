"""Every per-key structure an attacker can grow is bounded (issue 14, "the hot path").

An attacker who varies the Host, the API key, the nonce or the key id of what a client
sends or a verifier receives must not grow memory without limit. One test per structure
drives many distinct keys through the public path (the calls the pipeline makes on its
:class:`~surefoot.Pacer`, the verifiers, the middleware) with a small configured bound
where the bound is configurable, and checks the count stays within it (and, where
memory is measured, that each key beyond the bound costs next to nothing); the default
bounds' values are checked apart. ``bench/memory.py`` runs the same attacks at scale.
"""

from __future__ import annotations

import gc
import io
import secrets
import tracemalloc
from collections.abc import Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from surefoot import Pacer, PacingPolicy
from surefoot._core._policy import ResponseInfo
from surefoot.errors import ReplayedNonce, SignatureError, StoreUnavailable
from surefoot.middleware import VerifyWSGI
from surefoot.pacing import BreakerPolicy, Quota, RateLimiter
from surefoot.pacing import _pacer as pacer_module
from surefoot.pacing._gcra import EVICT_SCAN, MAX_PARTITIONS
from surefoot.pacing._state import LocalPacerState
from surefoot.signing import (
    HmacSigner,
    HmacVerifier,
    HttpRequest,
    MessageVerifier,
    SignatureKey,
    SignedRequest,
    SigV4Credentials,
    SigV4Signer,
    SigV4Verifier,
    _rfc9421,
)
from surefoot.stores import MemoryNonceCache
from surefoot.stores._failure import FailureMode
from surefoot.stores._memory import NONCE_MAX_ENTRIES
from surefoot.stores._nonces import LOCAL_MAX_ENTRIES, _LocalFallback
from surefoot.stores._pacing_fallback import MAX_PARTITIONS as FALLBACK_MAX_PARTITIONS

WALL = 1_800_000_000.0
QUOTA = ResponseInfo(200, {"RateLimit-Policy": '"default";q=10;w=1',
                           "RateLimit": '"default";r=9;t=1'})
NO_QUOTA = ResponseInfo(200, {})
THROTTLED = ResponseInfo(429, {})
URL = "https://api.bounds.test/v1/orders"


# -- helpers -------------------------------------------------------------------------------


def small_pacer(bound: int, **policy: Any) -> Pacer:
    """A pacer whose state keeps at most ``bound`` partitions (the knob every per-partition
    table of the local state follows)."""
    pacer = Pacer(PacingPolicy(**policy))
    state = pacer.state
    assert isinstance(state, LocalPacerState)
    state.limiter.max_partitions = bound
    return pacer


def attempt(pacer: Pacer, partition: str, info: ResponseInfo, now: float,
            *, late: float = 0.0) -> float:
    """What the pipeline does for one attempt: reserve, admit, count, report. The slot."""
    slot = pacer.reserve(partition, now=now).at
    pacer.admit(partition, now=now)
    pacer.on_request(partition, now=now)
    pacer.report(partition, info, sent_at=now - late, now=now, wall_now=WALL + now,
                 probe=False, late=late)
    return slot


def local(pacer: Pacer) -> LocalPacerState:
    state = pacer.state
    assert isinstance(state, LocalPacerState)
    return state


@pytest.fixture
def traced() -> Iterator[None]:
    gc.collect()
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def traced_bytes() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


# -- the default bounds ----------------------------------------------------------------------


def test_default_bounds() -> None:
    assert MAX_PARTITIONS == 10_000
    assert RateLimiter().max_partitions == MAX_PARTITIONS
    assert local(Pacer()).limiter.max_partitions == MAX_PARTITIONS
    assert EVICT_SCAN >= 1
    cache = MemoryNonceCache()
    assert cache.max_entries == NONCE_MAX_ENTRIES == 1_000_000
    assert cache.when_full == "refuse"
    fallback = _LocalFallback(FailureMode("open", "bounds"))
    assert fallback.local.max_entries == LOCAL_MAX_ENTRIES == 100_000
    assert fallback.local.when_full == "evict"  # fail-open: available first
    verifier = SigV4Verifier({"AKIA": "s"}, region="eu-west-1", service="execute-api")
    assert verifier._signing_keys.max_entries == 1024
    assert SigV4Signer(SigV4Credentials("AKIA", "s"), "eu-west-1", "s3")._keys.max_entries == 16
    assert _rfc9421._MAX_CACHED_IDENTIFIERS == 512
    assert FALLBACK_MAX_PARTITIONS == 4096


# -- pacing partitions -----------------------------------------------------------------------


def test_partitions_of_hosts_stating_a_quota_are_bounded(traced: None) -> None:
    bound, keys = 300, 3000
    pacer = small_pacer(bound)
    state = local(pacer)
    now = 0.0
    half = 0
    for i in range(keys):
        now += 1e-3
        attempt(pacer, f"h{i}.attack.test", QUOTA, now)
        if i + 1 == keys // 2:
            half = traced_bytes()
    full = traced_bytes()
    assert len(state.limiter) <= bound
    assert len(state._arrivals) <= bound
    assert len(state._sends) <= bound
    # Past the bound a new host costs what the Pacer's own tables keep (bounded at
    # 40,000 entries, a few hundred bytes each), not a partition's state (~2 kB).
    assert (full - half) / (keys - keys // 2) < 600


def test_partitions_of_hosts_answering_429_are_bounded() -> None:
    bound, keys = 200, 2000
    pacer = small_pacer(bound)
    state = local(pacer)
    for i in range(keys):
        attempt(pacer, f"h{i}.attack.test", THROTTLED, 1.0 + i * 1e-3)
    assert len(state.limiter) <= bound
    assert len(state._adaptive) <= bound
    assert len(state._oks) <= bound
    assert len(state._sends) <= bound


def test_partitions_of_api_keys_are_bounded() -> None:
    bound, keys = 200, 2000
    pacer = small_pacer(bound, partition_by="api_key")
    for i in range(keys):
        partition = pacer.partition_of(URL, {"x-api-key": f"key-{i}"})
        attempt(pacer, partition, QUOTA, 1.0 + i * 1e-3)
    assert len(local(pacer).limiter) <= bound


def test_a_flood_of_new_hosts_does_not_evict_a_learned_quota() -> None:
    """The live partition (its quota learned, its schedule booked ahead) is kept while
    thousands of partitions that state nothing push the table over its bound: its
    next slots continue its schedule at the learned rate (10/s)."""
    pacer = small_pacer(100)
    slots = [attempt(pacer, "live.test", QUOTA, 0.0) for _ in range(5)]
    assert slots == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    for i in range(2000):
        attempt(pacer, f"junk{i}.attack.test", NO_QUOTA, 0.01 + i * 1e-6)
    assert len(local(pacer).limiter) <= 100
    again = [attempt(pacer, "live.test", QUOTA, 0.02) for _ in range(5)]
    assert again == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9])


def test_an_evicted_partition_voids_the_reservations_of_its_old_schedule() -> None:
    """Every partition holds state (a configured quota, slots booked ahead): the least
    recently used goes. A waiter still holding a slot of its old schedule must book
    again, not be let go beside the new schedule's slots."""
    limiter = RateLimiter([Quota.per_second(1)], max_partitions=2)
    old = [limiter.reserve("a", 0.0) for _ in range(3)]
    assert [r.at for r in old] == [0.0, 1.0, 2.0]
    limiter.reserve("b", 0.0)
    limiter.reserve("c", 0.0)  # "a" is evicted
    assert "a" not in limiter
    assert len(limiter) == 2
    fresh = limiter.reserve("a", 0.5)
    assert fresh.at == 0.5
    assert not limiter.still_valid(old[2])


def test_a_learned_quota_survives_eviction_among_partitions_that_all_hold_state() -> None:
    pacer = small_pacer(100)
    for _ in range(5):
        attempt(pacer, "live.test", QUOTA, 0.0)
    for i in range(500):  # every one states a quota too: the least recently used goes
        attempt(pacer, f"h{i}.attack.test", QUOTA, 0.01)
    assert "live.test" not in local(pacer).limiter
    slots = [attempt(pacer, "live.test", QUOTA, 0.02) for _ in range(5)]
    assert all(b - a >= 0.1 - 1e-9 for a, b in zip(slots[1:], slots[2:], strict=False))


# -- breakers --------------------------------------------------------------------------------


def test_breakers_are_bounded() -> None:
    bound, keys = 200, 2000
    pacer = small_pacer(bound, breaker=BreakerPolicy())
    for i in range(keys):
        attempt(pacer, f"h{i}.attack.test", NO_QUOTA, 1.0 + i * 1e-3)
    assert len(local(pacer)._breakers) <= bound


def test_a_breaker_that_holds_no_state_is_like_a_fresh_one() -> None:
    from surefoot.pacing._breaker import CircuitBreaker

    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=2))
    assert breaker.allow(0.0).allowed
    breaker.on_result(0.0, ok=True)
    assert not breaker.holds_state(0.0)
    breaker.on_result(0.1, ok=False)
    assert breaker.holds_state(0.1)
    breaker.on_result(0.2, ok=False)  # open
    assert breaker.holds_state(0.2)
    assert not breaker.allow(0.3).allowed


# -- the Pacer's own per-partition tables ------------------------------------------------------


def test_the_pacers_first_contact_table_is_bounded() -> None:
    pacer = Pacer(PacingPolicy())
    for i in range(40_100):
        pacer.report(f"h{i}", NO_QUOTA, sent_at=0.0, now=0.0, wall_now=WALL, probe=False)
    assert len(pacer._answered) <= 40_001


def test_the_pacers_tables_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    bound, keys = 300, 1000
    monkeypatch.setattr(pacer_module, "_MAX_REMEMBERED", bound, raising=False)
    pacer = Pacer(PacingPolicy())
    openai = ResponseInfo(200, {"x-ratelimit-limit-requests": "100",
                                "x-ratelimit-remaining-requests": "50",
                                "x-ratelimit-reset-requests": "500ms"})
    for round_ in range(2):
        for i in range(keys):
            now = round_ * 2.0 + i * 1e-4
            jumping = ResponseInfo(200, {"X-RateLimit-Limit": "100",
                                         "X-RateLimit-Remaining": "99",
                                         "X-RateLimit-Reset": str(1 + 60 * round_)})
            attempt(pacer, f"x{i}", jumping, now)
            attempt(pacer, f"o{i}", openai, now, late=0.05)
            attempt(pacer, f"q{i}", QUOTA, now)
    for name in ("_server_learned", "_answered", "_sent_learned", "_late_told", "_resets",
                 "_windows", "_longest", "_refills"):
        assert len(getattr(pacer, name)) <= bound + 1, name


# -- nonces ------------------------------------------------------------------------------------


def hmac_requests(n: int, *, at: float = WALL) -> Iterator[tuple[SignedRequest, float]]:
    signer = HmacSigner("bounds-key", "bounds-secret")
    for i in range(n):
        now = at + i * 1e-3
        headers = signer.sign(HttpRequest("POST", URL, {}, b"{}"), now=now)
        yield SignedRequest.of("POST", URL, headers, b"{}"), now


def test_a_full_nonce_cache_refuses_instead_of_forgetting(traced: None) -> None:
    bound = 500
    cache = MemoryNonceCache(max_entries=bound)
    verifier = HmacVerifier({"bounds-key": "bounds-secret"}, nonces=cache)
    accepted: list[tuple[SignedRequest, float]] = []
    refused = 0
    for request, now in hmac_requests(2000):
        try:
            verifier.verify(request, now=now)
            accepted.append((request, now))
        except StoreUnavailable:
            refused += 1
    assert len(cache) == bound
    assert len(accepted) == bound
    assert refused == 1500
    # Nothing accepted was forgotten: every one is still a replay while full.
    for request, now in accepted[:10]:
        with pytest.raises(ReplayedNonce):
            verifier.verify(request, now=now + 1.0)
    # Once the first pairs expire (ttl 2 * skew + 1 = 601 s), new requests go in again.
    later = WALL + 602.0
    for request, now in hmac_requests(10, at=later):
        verifier.verify(request, now=now)
    assert len(cache) <= bound


def test_a_nonce_costs_the_same_however_long_it_is(traced: None) -> None:
    cache = MemoryNonceCache(max_entries=2000)
    start = traced_bytes()
    for i in range(1000):
        cache.add_if_absent("rfc9421:" + "k" * 2000, f"{i}" + "n" * 8000, now=0.0, ttl=60.0)
    per_pair = (traced_bytes() - start) / 1000
    assert per_pair < 256, per_pair


def test_an_evicting_nonce_cache_is_bounded_and_always_available() -> None:
    cache = MemoryNonceCache(max_entries=100, when_full="evict")
    for i in range(1000):
        assert cache.add_if_absent("k", secrets.token_hex(8) + str(i), now=0.0, ttl=60.0)
    assert len(cache) == 100


def test_the_middleware_answers_503_when_the_nonce_cache_is_full() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    verifier = HmacVerifier({"bounds-key": "bounds-secret"},
                            nonces=MemoryNonceCache(max_entries=5))
    wrapped = VerifyWSGI(app, verifier)
    signer = HmacSigner("bounds-key", "bounds-secret")
    statuses = []
    for _ in range(8):
        headers = signer.sign(HttpRequest("POST", URL, {}, b"{}"))
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "POST", "PATH_INFO": "/v1/orders", "QUERY_STRING": "",
            "HTTP_HOST": "api.bounds.test", "wsgi.url_scheme": "https",
            "CONTENT_LENGTH": "2", "wsgi.input": io.BytesIO(b"{}"),
        }
        for name, value in headers.items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        setup_testing_defaults(environ)
        seen: list[str] = []
        b"".join(wrapped(environ, lambda status, headers, exc=None: seen.append(status)))
        statuses.append(seen[0].split()[0])
    assert statuses == ["200"] * 5 + ["503"] * 3


# -- cached signing keys and parsed identifiers ------------------------------------------------


def test_sigv4_derived_keys_are_bounded() -> None:
    keys = {f"AKIA{i:016d}": f"secret-{i}" for i in range(300)}
    verifier = SigV4Verifier(keys, region="eu-west-1", service="execute-api", nonces=False)
    verifier._signing_keys.max_entries = 50
    for access_key, secret in keys.items():
        signer = SigV4Signer(SigV4Credentials(access_key, secret), "eu-west-1", "execute-api")
        headers = signer.sign(HttpRequest("GET", URL, {}, b""), now=WALL)
        headers["host"] = "api.bounds.test"
        verifier.verify(SignedRequest.of("GET", URL, headers, b""), now=WALL)
    assert len(verifier._signing_keys._table) <= 50


def test_sigv4_signer_header_decisions_are_bounded() -> None:
    signer = SigV4Signer(SigV4Credentials("AKIA", "secret"), "eu-west-1", "execute-api")
    for i in range(700):
        signer.sign(HttpRequest("GET", URL, {f"x-custom-{i}": "1"}, b""), now=WALL)
    assert len(signer._decisions) <= 512


@pytest.mark.parametrize("required", [None, ()])
def test_rfc9421_identifiers_and_plans_are_bounded(required: tuple[str, ...] | None) -> None:
    """Signature-Input is read before the signature is checked: an unsigned request may
    name any component, and any list of them (with the default required components,
    and with none required)."""
    key = SignatureKey("hmac-sha256", b"s" * 32, key_id="k")
    verifier = (MessageVerifier({"k": key}) if required is None
                else MessageVerifier({"k": key}, required_components=required))
    for i in range(700):
        headers = {
            "Signature-Input": f'sig1=("@method" "x-h{i}");created={int(WALL)};keyid="k"',
            "Signature": "sig1=:AAAA:",
            f"x-h{i}": "1",
        }
        with pytest.raises(SignatureError):
            verifier.verify(SignedRequest.of("GET", URL, headers, b""), now=WALL)
        assert len(verifier._plans) <= _rfc9421._MAX_CACHED_PLANS
    assert len(verifier._identifiers) <= _rfc9421._MAX_CACHED_IDENTIFIERS
