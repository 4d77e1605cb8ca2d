"""The API-key + timestamp + nonce + HMAC-SHA256 signing scheme."""

from __future__ import annotations

import hashlib
import hmac
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surefoot import ConfigurationError, SignatureError, SigningAuth
from surefoot.errors import (
    BadSignature,
    BodyDigestMismatch,
    MalformedSignature,
    MissingHeader,
    ReplayedNonce,
    TimestampSkew,
    UnknownKey,
)
from surefoot.signing import HmacHeaders, HmacSigner, HmacVerifier, HttpRequest, SignedRequest
from surefoot.signing._hmac import (
    canonical_host,
    canonical_path,
    canonical_query,
    canonical_string,
)
from surefoot.stores import MemoryNonceCache
from surefoot.testing import FakeClock

SECRET = "s3cr3t-value-that-must-not-leak"
KEY_ID = "key-1"
NOW = 1_700_000_000.0
NONCE = "0123456789abcdef0123456789abcdef"
URL = "https://API.Example.com:443/a%20b/c?b=2&a=1&a=0&x"
BODY = b'{"x":1}'
BODY_SHA256 = "5041bf1f713df204784353e82f6a4a535931cb64f1f4b4a5aeaffcb720918b22"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def counting_nonces():
    counter = itertools.count()
    return lambda: f"{next(counter):032x}"


def make_signer(**kwargs) -> HmacSigner:
    kwargs.setdefault("nonce_factory", counting_nonces())
    return HmacSigner(KEY_ID, SECRET, **kwargs)


def make_verifier(**kwargs) -> HmacVerifier:
    return HmacVerifier({KEY_ID: SECRET}, **kwargs)


def signed(method="POST", url=URL, body=BODY, *, signer=None, now=NOW):
    signer = signer or make_signer()
    return signer.sign(HttpRequest(method, url, {}, body), now=now)


# -- the canonical string ---------------------------------------------------------------


def test_canonical_string_exact_value():
    text = canonical_string(
        "post", URL, timestamp="1700000000", nonce=NONCE, digest=BODY_SHA256
    )
    assert text == (
        "SUREFOOT-HMAC-SHA256\n"
        "POST\n"
        "/a%20b/c\n"
        "a=0&a=1&b=2&x=\n"
        "api.example.com\n"
        "1700000000\n"
        "0123456789abcdef0123456789abcdef\n"
        "5041bf1f713df204784353e82f6a4a535931cb64f1f4b4a5aeaffcb720918b22"
    )


def test_signed_headers_exact_values():
    signer = HmacSigner(KEY_ID, SECRET, nonce_factory=lambda: NONCE)
    headers = signer.sign(HttpRequest("POST", URL, {}, BODY), now=NOW + 0.9)
    expected_text = (
        "SUREFOOT-HMAC-SHA256\nPOST\n/a%20b/c\na=0&a=1&b=2&x=\napi.example.com\n"
        f"1700000000\n{NONCE}\n{BODY_SHA256}"
    )
    assert headers == {
        "X-API-Key": KEY_ID,
        "X-Timestamp": "1700000000",
        "X-Nonce": NONCE,
        "X-Content-SHA256": BODY_SHA256,
        "X-Signature": hmac.new(
            SECRET.encode(), expected_text.encode(), hashlib.sha256
        ).hexdigest(),
    }
    assert hashlib.sha256(BODY).hexdigest() == BODY_SHA256


def test_empty_body_digest():
    for body in (None, b""):
        assert signed(body=body)["X-Content-SHA256"] == EMPTY_SHA256


def test_default_nonce_is_32_lower_hex_and_fresh():
    signer = HmacSigner(KEY_ID, SECRET)
    nonces = {signer.sign(HttpRequest("GET", URL, {}, b""), now=NOW)["X-Nonce"] for _ in range(50)}
    assert len(nonces) == 50
    for nonce in nonces:
        assert len(nonce) == 32
        assert set(nonce) <= set("0123456789abcdef")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", "/"),
        ("/", "/"),
        ("/a b", "/a%20b"),
        ("/a%7Eb", "/a~b"),
        ("/a%7eb", "/a~b"),
        ("/a+b", "/a%2Bb"),
        ("/caf%C3%A9", "/caf%C3%A9"),
        ("/café", "/caf%C3%A9"),
        ("/a%2fb", "/a%2Fb"),
        ("/a/b", "/a/b"),
        ("/-_.~", "/-_.~"),
        ("/a:b@c", "/a%3Ab%40c"),
    ],
)
def test_canonical_path(path, expected):
    assert canonical_path(path) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ""),
        ("&&", ""),
        ("b=2&a=1", "a=1&b=2"),
        ("a=2&a=10&a=1", "a=1&a=10&a=2"),
        ("x", "x="),
        ("a=b=c", "a=b%3Dc"),
        ("q=1+2", "q=1%2B2"),
        ("q=a%20b", "q=a%20b"),
        ("q=a/b", "q=a%2Fb"),
        ("q=%7e", "q=~"),
        ("k%3D=v", "k%3D=v"),
    ],
)
def test_canonical_query(query, expected):
    assert canonical_query(query) == expected


@pytest.mark.parametrize(
    ("scheme", "netloc", "expected"),
    [
        ("https", "API.Example.com:443", "api.example.com"),
        ("https", "example.com", "example.com"),
        ("http", "example.com:80", "example.com"),
        ("http", "example.com:443", "example.com:443"),
        ("https", "example.com:80", "example.com:80"),
        ("https", "example.com:8443", "example.com:8443"),
        ("https", "user:pw@Example.com", "example.com"),
        ("http", "[::1]:8080", "[::1]:8080"),
        ("https", "[::1]:443", "[::1]"),
        ("https", "[::1]", "[::1]"),
    ],
)
def test_canonical_host(scheme, netloc, expected):
    assert canonical_host(scheme, netloc) == expected


# -- roundtrip and tampering ----------------------------------------------------------------


def test_sign_verify_roundtrip():
    assert (
        make_verifier().verify(SignedRequest.of("POST", URL, signed(), BODY), now=NOW).key_id
        == KEY_ID
    )


def test_roundtrip_with_callable_key_lookup_and_bytes_secret():
    signer = HmacSigner(KEY_ID, SECRET.encode())
    verifier = HmacVerifier(lambda k: SECRET if k == KEY_ID else None)
    headers = signer.sign(HttpRequest("GET", URL, {}, b""), now=NOW)
    assert verifier.verify(SignedRequest.of("GET", URL, headers, b""), now=NOW).key_id == KEY_ID


def test_header_names_are_case_insensitive_on_verify():
    headers = {k.lower(): v for k, v in signed().items()}
    assert (
        make_verifier().verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW).key_id
        == KEY_ID
    )


def test_query_order_independence():
    headers = signed(url="https://api.example.com/a%20b/c?b=2&a=1&a=0&x")
    verifier = make_verifier()
    assert (
        verifier.verify(
            SignedRequest.of(
                "POST", "https://api.example.com/a%20b/c?x&a=0&b=2&a=1", headers, BODY
            ),
            now=NOW,
        ).key_id
        == KEY_ID
    )


def test_equivalent_urls_verify():
    # host case, default port, percent-encoding case and unreserved characters
    headers = signed(url="https://API.Example.com:443/a%7eb?q=%7e", body=None, method="GET")
    assert (
        make_verifier()
        .verify(SignedRequest.of("get", "https://api.example.com/a~b?q=~", headers, b""), now=NOW)
        .key_id
        == KEY_ID
    )


def test_tampered_body():
    with pytest.raises(BodyDigestMismatch):
        make_verifier().verify(SignedRequest.of("POST", URL, signed(), b'{"x":2}'), now=NOW)
    with pytest.raises(BodyDigestMismatch):
        make_verifier().verify(SignedRequest.of("POST", URL, signed(), b""), now=NOW)


def test_body_with_matching_forged_digest_header_fails():
    headers = signed()
    headers["X-Content-SHA256"] = hashlib.sha256(b'{"x":2}').hexdigest()
    with pytest.raises(BadSignature):
        make_verifier().verify(SignedRequest.of("POST", URL, headers, b'{"x":2}'), now=NOW)


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("POST", "https://api.example.com/a%20b/d?b=2&a=1&a=0&x"),  # path
        ("POST", "https://api.example.com/a%20b/c?b=3&a=1&a=0&x"),  # query value
        ("POST", "https://api.example.com/a%20b/c?b=2&a=1&a=0"),  # query item removed
        ("POST", "https://api.example.com/a%20b/c?b=2&a=1&a=0&x&y=1"),  # query item added
        ("PUT", URL),  # method
        ("POST", "https://evil.example.com/a%20b/c?b=2&a=1&a=0&x"),  # host
        ("POST", "https://api.example.com:8443/a%20b/c?b=2&a=1&a=0&x"),  # port
    ],
)
def test_tampered_request_is_bad_signature(method, url):
    with pytest.raises(BadSignature):
        make_verifier().verify(SignedRequest.of(method, url, signed(), BODY), now=NOW)


def test_tampered_timestamp_or_nonce_header():
    for name, value in (("X-Timestamp", str(int(NOW) + 1)), ("X-Nonce", "f" * 32)):
        headers = signed()
        headers[name] = value
        with pytest.raises(BadSignature):
            make_verifier().verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW)


def test_wrong_secret():
    verifier = HmacVerifier({KEY_ID: "another-secret"})
    with pytest.raises(BadSignature):
        verifier.verify(SignedRequest.of("POST", URL, signed(), BODY), now=NOW)


def test_unknown_key():
    headers = signed()
    headers["X-API-Key"] = "key-2"
    with pytest.raises(UnknownKey):
        make_verifier().verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW)
    with pytest.raises(UnknownKey):
        HmacVerifier(lambda k: None).verify(SignedRequest.of("POST", URL, signed(), BODY), now=NOW)


@pytest.mark.parametrize("name", HmacHeaders().names())
@pytest.mark.parametrize("how", ["absent", "empty", "blank"])
def test_missing_header(name, how):
    headers = signed()
    if how == "absent":
        del headers[name]
    else:
        headers[name] = "" if how == "empty" else "   "
    with pytest.raises(MissingHeader) as info:
        make_verifier().verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW)
    assert info.value.reason == "missing_header"


@pytest.mark.parametrize("offset", [-301, 301, -10_000, 86_400])
def test_timestamp_outside_window(offset):
    with pytest.raises(TimestampSkew):
        make_verifier().verify(SignedRequest.of("POST", URL, signed(), BODY), now=NOW + offset)


@pytest.mark.parametrize("offset", [-300, -1, 0, 1, 299, 300])
def test_timestamp_inside_window(offset):
    assert (
        make_verifier()
        .verify(SignedRequest.of("POST", URL, signed(), BODY), now=NOW + offset)
        .key_id
        == KEY_ID
    )


def test_custom_skew():
    verifier = make_verifier(skew=5)
    assert (
        verifier.verify(SignedRequest.of("POST", URL, signed(), BODY), now=NOW + 5).key_id == KEY_ID
    )
    with pytest.raises(TimestampSkew):
        verifier.verify(SignedRequest.of("POST", URL, signed(), BODY), now=NOW + 6)


def test_verifier_uses_its_clock():
    clock = FakeClock(start_wall=NOW)
    verifier = make_verifier(clock=clock)
    assert verifier.verify(SignedRequest.of("POST", URL, signed(), BODY)).key_id == KEY_ID
    clock.advance(301)
    with pytest.raises(TimestampSkew):
        verifier.verify(SignedRequest.of("POST", URL, signed(), BODY))


def test_signer_uses_its_clock():
    clock = FakeClock(start_wall=NOW + 0.5)
    headers = make_signer(clock=clock).sign(HttpRequest("GET", URL, {}, b""))
    assert headers["X-Timestamp"] == "1700000000"
    clock.advance(42)
    assert (
        make_signer(clock=clock).sign(HttpRequest("GET", URL, {}, b""))["X-Timestamp"]
        == "1700000042"
    )


def test_replay_is_rejected():
    verifier = make_verifier()
    headers = signed()
    assert verifier.verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW).key_id == KEY_ID
    with pytest.raises(ReplayedNonce):
        verifier.verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW + 1)
    # still rejected at the edge of the timestamp window
    with pytest.raises(ReplayedNonce):
        verifier.verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW + 300)


def test_nonces_false_turns_the_replay_check_off():
    """One shape for every verifier: ``nonces=False`` is no replay check (the signer's
    nonce is fresh per attempt, so only a replay repeats one); the default is a fresh
    in-process cache, and a replay outside the window is refused anyway."""
    assert isinstance(make_verifier().nonces, MemoryNonceCache)
    verifier = make_verifier(nonces=False)
    assert verifier.nonces is None
    assert verifier.blocking is False
    headers = signed()
    for offset in (0, 1, 300):
        assert verifier.verify(SignedRequest.of("POST", URL, headers, BODY),
                               now=NOW + offset).key_id == KEY_ID
    with pytest.raises(TimestampSkew):
        verifier.verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW + 301)


def test_same_nonce_other_key_is_not_a_replay():
    verifier = HmacVerifier({KEY_ID: SECRET, "key-2": "other"})
    a = HmacSigner(KEY_ID, SECRET, nonce_factory=lambda: NONCE).sign(
        HttpRequest("GET", URL, {}, b""), now=NOW
    )
    b = HmacSigner("key-2", "other", nonce_factory=lambda: NONCE).sign(
        HttpRequest("GET", URL, {}, b""), now=NOW
    )
    assert verifier.verify(SignedRequest.of("GET", URL, a, b""), now=NOW).key_id == KEY_ID
    assert verifier.verify(SignedRequest.of("GET", URL, b, b""), now=NOW).key_id == "key-2"


def test_failed_signature_does_not_consume_the_nonce():
    verifier = make_verifier()
    good = HmacSigner(KEY_ID, SECRET, nonce_factory=lambda: NONCE).sign(
        HttpRequest("POST", URL, {}, BODY), now=NOW
    )
    forged = dict(good)
    forged["X-Signature"] = "0" * 64
    with pytest.raises(BadSignature):
        verifier.verify(SignedRequest.of("POST", URL, forged, BODY), now=NOW)
    forged_by_other_secret = HmacSigner(KEY_ID, "wrong", nonce_factory=lambda: NONCE).sign(
        HttpRequest("POST", URL, {}, BODY), now=NOW
    )
    with pytest.raises(BadSignature):
        verifier.verify(SignedRequest.of("POST", URL, forged_by_other_secret, BODY), now=NOW)
    with pytest.raises(BodyDigestMismatch):
        verifier.verify(SignedRequest.of("POST", URL, good, b"other"), now=NOW)
    with pytest.raises(TimestampSkew):
        verifier.verify(SignedRequest.of("POST", URL, good, BODY), now=NOW + 1000)
    # the genuine request with that nonce still passes
    assert verifier.verify(SignedRequest.of("POST", URL, good, BODY), now=NOW).key_id == KEY_ID
    with pytest.raises(ReplayedNonce):
        verifier.verify(SignedRequest.of("POST", URL, good, BODY), now=NOW)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Signature", "é" * 64),
        ("X-Signature", "ａｂｃ"),
        ("X-Content-SHA256", "é" * 64),
        ("X-Timestamp", "１７００"),
        ("X-Timestamp", "-1700000000"),
        ("X-Timestamp", "1700000000.5"),
        ("X-Timestamp", "1" * 13),
        ("X-Nonce", "nonce\x00"),
        ("X-Nonce", "ñ" * 8),
        ("X-Nonce", "a" * 129),
    ],
)
def test_malformed_headers(name, value):
    headers = signed()
    headers[name] = value
    with pytest.raises(MalformedSignature) as info:
        make_verifier().verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW)
    assert isinstance(info.value, SignatureError)


def test_upper_case_hex_signature_accepted():
    headers = signed()
    headers["X-Signature"] = headers["X-Signature"].upper()
    headers["X-Content-SHA256"] = headers["X-Content-SHA256"].upper()
    assert (
        make_verifier().verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW).key_id
        == KEY_ID
    )


def test_custom_header_names():
    names = HmacHeaders(
        api_key="Api-Key", timestamp="Date-Seconds", nonce="Once", digest="Digest-256",
        signature="Sig",
    )
    headers = make_signer(headers=names).sign(HttpRequest("POST", URL, {}, BODY), now=NOW)
    assert set(headers) == {"Api-Key", "Date-Seconds", "Once", "Digest-256", "Sig"}
    assert headers["Api-Key"] == KEY_ID
    verifier = make_verifier(headers=names)
    assert verifier.verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW).key_id == KEY_ID
    # the default verifier does not find its headers
    with pytest.raises(MissingHeader):
        make_verifier().verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW)
    auth = SigningAuth.hmac(KEY_ID, SECRET, headers=names)
    assert auth.credential_headers == ("Api-Key", "Date-Seconds", "Once", "Digest-256", "Sig")


def test_configuration_errors():
    with pytest.raises(ConfigurationError):
        HmacSigner("", SECRET)
    with pytest.raises(ConfigurationError):
        HmacSigner("key\nid", SECRET)
    with pytest.raises(ConfigurationError):
        HmacSigner(KEY_ID, "")
    with pytest.raises(ConfigurationError):
        HmacVerifier({}, skew=0)


# -- nonce cache -----------------------------------------------------------------------------


def test_memory_nonce_cache_expiry():
    cache = MemoryNonceCache()
    assert cache.add_if_absent("k", "n1", now=0.0, ttl=10.0) is True
    assert cache.add_if_absent("k", "n1", now=5.0, ttl=10.0) is False
    assert cache.add_if_absent("k", "n1", now=9.999, ttl=10.0) is False
    assert cache.add_if_absent("k2", "n1", now=9.999, ttl=10.0) is True
    assert cache.add_if_absent("k", "n1", now=10.0, ttl=10.0) is True
    assert cache.add_if_absent("k", "n1", now=15.0, ttl=10.0) is False


def test_memory_nonce_cache_drops_expired_entries():
    cache = MemoryNonceCache()
    for i in range(100):
        cache.add_if_absent("k", str(i), now=float(i), ttl=10.0)
    assert len(cache) <= 11
    cache.add_if_absent("k", "late", now=1000.0, ttl=10.0)
    assert len(cache) == 1


def test_memory_nonce_cache_bounded():
    # Full of unexpired nonces, the cache refuses (forgetting one would open a replay
    # window); when_full="evict" forgets the oldest instead.
    from surefoot.errors import StoreUnavailable

    cache = MemoryNonceCache(max_entries=5)
    for i in range(5):
        assert cache.add_if_absent("k", str(i), now=0.0, ttl=100.0) is True
    with pytest.raises(StoreUnavailable):
        cache.add_if_absent("k", "5", now=0.0, ttl=100.0)
    assert cache.add_if_absent("k", "4", now=0.0, ttl=100.0) is False
    evicting = MemoryNonceCache(max_entries=5, when_full="evict")
    for i in range(20):
        assert evicting.add_if_absent("k", str(i), now=0.0, ttl=100.0) is True
    assert len(evicting) <= 5


def test_verifier_replay_expires_with_window():
    verifier = make_verifier(skew=5)
    headers = signed()
    assert verifier.verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW).key_id == KEY_ID
    with pytest.raises(ReplayedNonce):
        verifier.verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW + 5)
    # past the window, the timestamp check rejects it instead
    with pytest.raises(TimestampSkew):
        verifier.verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW + 12)


# -- no secrets in reprs ---------------------------------------------------------------------


def test_reprs_do_not_contain_secret():
    signer = HmacSigner(KEY_ID, SECRET)
    verifier = HmacVerifier({KEY_ID: SECRET})
    auth = SigningAuth.hmac(KEY_ID, SECRET)
    for obj in (signer, verifier, auth):
        for text in (repr(obj), str(obj)):
            assert SECRET not in text
            assert "redacted" in text
    assert KEY_ID in repr(signer)


def test_errors_do_not_contain_secret_or_signature():
    headers = signed()
    verifier = HmacVerifier({KEY_ID: SECRET})
    with pytest.raises(SignatureError) as info:
        verifier.verify(SignedRequest.of("GET", URL, headers, BODY), now=NOW)
    assert SECRET not in str(info.value)
    assert headers["X-Signature"] not in str(info.value)


# -- properties ------------------------------------------------------------------------------

methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "get", "Post"])
path_segments = st.lists(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#"),
        max_size=8,
    ),
    max_size=4,
)
query_pairs = st.lists(
    st.tuples(
        st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                       blacklist_characters="&=#"), max_size=6),
        st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="&#"),
                max_size=6),
    ),
    max_size=5,
)


def build_url(segments, pairs):
    path = "/" + "/".join(segments)
    query = "&".join(f"{k}={v}" for k, v in pairs)
    return f"https://api.example.com{path}" + (f"?{query}" if query else "")


@given(methods, path_segments, query_pairs, st.binary(max_size=200), st.randoms())
def test_roundtrip_property(method, segments, pairs, body, rnd):
    url = build_url(segments, pairs)
    headers = HmacSigner(KEY_ID, SECRET).sign(HttpRequest(method, url, {}, body), now=NOW)
    verifier = make_verifier()
    assert verifier.verify(SignedRequest.of(method, url, headers, body), now=NOW).key_id == KEY_ID
    # the query order does not matter
    shuffled = list(pairs)
    rnd.shuffle(shuffled)
    headers = HmacSigner(KEY_ID, SECRET).sign(HttpRequest(method, url, {}, body), now=NOW)
    assert (
        verifier.verify(
            SignedRequest.of(method, build_url(segments, shuffled), headers, body), now=NOW
        ).key_id
        == KEY_ID
    )


@given(methods, path_segments, query_pairs, st.binary(min_size=1, max_size=200), st.data())
def test_flipping_any_body_byte_fails(method, segments, pairs, body, data):
    url = build_url(segments, pairs)
    headers = HmacSigner(KEY_ID, SECRET).sign(HttpRequest(method, url, {}, body), now=NOW)
    index = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    bit = data.draw(st.integers(min_value=0, max_value=7))
    tampered = bytearray(body)
    tampered[index] ^= 1 << bit
    with pytest.raises(BodyDigestMismatch):
        make_verifier().verify(SignedRequest.of(method, url, headers, bytes(tampered)), now=NOW)


@given(st.text(max_size=80), st.text(max_size=80))
def test_verify_only_raises_signature_errors(signature, digest):
    headers = signed()
    headers["X-Signature"] = signature
    headers["X-Content-SHA256"] = digest
    with pytest.raises(SignatureError):
        make_verifier().verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW)


# -- replays are keyed on the resolved key, not the key id as sent ------------------------


def test_replay_under_another_spelling_of_the_key_id_is_rejected():
    """``X-API-Key`` is not signed: with a lookup that ignores case, the same request
    sent again as ``MY-KEY`` instead of ``my-key`` must still be a replay."""
    verifier = HmacVerifier(lambda k: SECRET if k.lower() == "my-key" else None)
    headers = HmacSigner("my-key", SECRET).sign(HttpRequest("POST", URL, {}, BODY), now=NOW)
    assert verifier.verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW).key_id == (
        "my-key")
    for spelling in ("MY-KEY", "My-Key", "my-key"):
        respelt = {**headers, "X-API-Key": spelling}
        with pytest.raises(ReplayedNonce):
            verifier.verify(SignedRequest.of("POST", URL, respelt, BODY), now=NOW + 1)


def test_replay_under_an_alias_of_the_key_is_rejected():
    verifier = HmacVerifier({"old-name": SECRET, "new-name": SECRET, "other": "other"})
    headers = HmacSigner("old-name", SECRET, nonce_factory=lambda: NONCE).sign(
        HttpRequest("GET", URL, {}, b""), now=NOW)
    verifier.verify(SignedRequest.of("GET", URL, headers, b""), now=NOW)
    with pytest.raises(ReplayedNonce):
        verifier.verify(SignedRequest.of("GET", URL, {**headers, "X-API-Key": "new-name"}, b""),
                        now=NOW)
    # The same nonce under another secret is another key's: not a replay.
    other = HmacSigner("other", "other", nonce_factory=lambda: NONCE).sign(
        HttpRequest("GET", URL, {}, b""), now=NOW)
    assert verifier.verify(SignedRequest.of("GET", URL, other, b""), now=NOW).key_id == "other"


def test_nonce_store_key_reveals_neither_key_id_spelling_nor_secret():
    recorded: list[str] = []

    class Recording(MemoryNonceCache):
        def add_if_absent(self, key_id: str, nonce: str, *, now: float, ttl: float) -> bool:
            recorded.append(key_id)
            return super().add_if_absent(key_id, nonce, now=now, ttl=ttl)

    verifier = HmacVerifier(lambda k: SECRET if k.lower() == KEY_ID else None,
                            nonces=Recording())
    for spelling, n in ((KEY_ID, 0), (KEY_ID.upper(), 1)):
        headers = HmacSigner(spelling, SECRET, nonce_factory=lambda n=n: f"{n:032x}").sign(
            HttpRequest("GET", URL, {}, b""), now=NOW)
        verifier.verify(SignedRequest.of("GET", URL, headers, b""), now=NOW)
    assert len(recorded) == 2
    assert recorded[0] == recorded[1]
    assert recorded[0].startswith("hmac:")
    assert SECRET not in recorded[0]
    assert KEY_ID not in recorded[0].lower()


# -- an absurd port is not a crash --------------------------------------------------------


def test_canonical_host_with_an_absurdly_long_port_does_not_raise():
    """``int()`` refuses strings of more than 4300 digits (ValueError): a Host sent with
    such a port must give a canonical host (and a SignatureError), not crash."""
    huge = "9" * 5001
    assert canonical_host("https", f"a.example:{huge}") == f"a.example:{huge}"
    assert canonical_host("https", f"[::1]:{huge}") == f"[::1]:{huge}"
    assert canonical_host("https", "a.example:" + "0" * 600 + "443") == "a.example"
    url = f"https://a.example:{huge}/x"
    headers = signed("GET", url, b"")
    assert make_verifier().verify(SignedRequest.of("GET", url, headers, b""), now=NOW).key_id == (
        KEY_ID)
    other = f"https://a.example:{huge[:-1]}8/x"
    with pytest.raises(BadSignature):
        make_verifier().verify(SignedRequest.of("GET", other, headers, b""), now=NOW)
