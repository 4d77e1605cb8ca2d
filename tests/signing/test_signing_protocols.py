"""One shape per concept: every scheme's signer is a ``Signer``, every verifier a
``Verifier``, and one auth object (``SigningAuth``) attaches any signer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

import surefoot
from surefoot import ConfigurationError, SignatureError, SigningAuth
from surefoot._adapters._auth import AuthBase
from surefoot._core._clock import Clock, default_clock
from surefoot.errors import BodyDigestMismatch, MalformedSignature, ReplayedNonce, SigningError
from surefoot.signing import (
    HmacSigner,
    HmacVerifier,
    HttpRequest,
    Identity,
    MessageSigner,
    MessageVerifier,
    SignatureKey,
    SignedRequest,
    Signer,
    SigV4Credentials,
    SigV4Signer,
    SigV4Verifier,
    VerifiedSignature,
    Verifier,
)
from surefoot.signing._protocols import message_flaw
from surefoot.stores import MemoryNonceCache, MemoryStore, SQLiteStore

NOW = 1_700_000_000.0
URL = "https://api.example.com/v1/orders?b=2&a=1"
BODY = b'{"sku": "pen"}'
HEADERS = {"Content-Type": "application/json", "X-Request-Id": "r-1"}
SECRET = "s3cr3t-never-shown"
ED_PRIVATE = ed25519.Ed25519PrivateKey.generate()


@dataclass
class Scheme:
    name: str
    auth: SigningAuth
    verifier: Verifier
    key_id: str


def schemes() -> list[Scheme]:
    """Each built-in scheme: its auth object and the verifier that accepts it."""
    return [
        Scheme("hmac", SigningAuth.hmac("key-h", SECRET),
               HmacVerifier({"key-h": SECRET}), "key-h"),
        Scheme(
            "rfc9421",
            SigningAuth.rfc9421(SignatureKey("ed25519", ED_PRIVATE, key_id="key-e")),
            MessageVerifier({"key-e": SignatureKey("ed25519", ED_PRIVATE.public_key())},
                            require_content_digest=True, nonces=MemoryNonceCache()),
            "key-e",
        ),
        Scheme(
            "sigv4",
            SigningAuth.sigv4("AKIDPROTOCOL", SECRET, "eu-west-1", "execute-api"),
            SigV4Verifier({"AKIDPROTOCOL": SECRET}, region="eu-west-1",
                          service="execute-api", nonces=MemoryNonceCache()),
            "AKIDPROTOCOL",
        ),
    ]


NAMES = ("hmac", "rfc9421", "sigv4")


def scheme_named(name: str) -> Scheme:
    """A fresh one (its verifier's nonce cache is empty)."""
    return {scheme.name: scheme for scheme in schemes()}[name]


def received(headers: dict[str, str], body: bytes = BODY) -> SignedRequest:
    """The request as the server gets it: the client's headers, the signature, a Host."""
    return SignedRequest.of("POST", URL, {"Host": "api.example.com", **headers}, body)


# -- every built-in object follows its protocol ------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_signers_and_verifiers_follow_the_protocols(name: str):
    scheme = scheme_named(name)
    assert isinstance(scheme.auth.signer, Signer)
    assert isinstance(scheme.verifier, Verifier)
    assert isinstance(scheme.auth, AuthBase)
    assert scheme.verifier.scheme == name


def test_direct_signers_and_verifiers_are_protocol_instances():
    signers = [
        HmacSigner("k", "s"),
        MessageSigner(SignatureKey("hmac-sha256", b"k" * 32, key_id="k")),
        SigV4Signer(SigV4Credentials("AKID", "s"), "us-east-1", "s3"),
    ]
    verifiers = [
        HmacVerifier({"k": "s"}),
        MessageVerifier({"k": SignatureKey("hmac-sha256", b"k" * 32)}),
        SigV4Verifier({"AKID": "s"}, region="us-east-1", service="s3"),
    ]
    assert all(isinstance(s, Signer) for s in signers)
    assert all(isinstance(v, Verifier) for v in verifiers)
    assert not isinstance(object(), Signer)
    assert not isinstance(object(), Verifier)


# -- sign with SigningAuth, verify through the Verifier protocol ---------------------------


@pytest.mark.parametrize("name", NAMES)
def test_sign_with_signing_auth_verify_with_the_verifier(name: str):
    scheme = scheme_named(name)
    auth, verifier = scheme.auth, scheme.verifier
    attempt = HttpRequest("POST", URL, HEADERS, BODY)
    added = dict(auth.attempt_headers(attempt, None, now=NOW))  # what the pipeline does
    assert set(added) <= set(auth.credential_headers)
    assert auth.signs_body

    found = verifier.verify(received({**HEADERS, **added}), now=NOW + 1)
    assert isinstance(found, Identity)
    assert (found.scheme, found.key_id) == (name, scheme.key_id)
    if name == "rfc9421":
        assert isinstance(found.signature, VerifiedSignature)
        assert found.signature.covers("content-digest")

    with pytest.raises(ReplayedNonce):  # each verifier remembers what it accepted
        verifier.verify(received({**HEADERS, **added}), now=NOW + 2)
    fresh = dict(auth.attempt_headers(attempt, None, now=NOW))
    with pytest.raises(SignatureError) as caught:
        verifier.verify(received({**HEADERS, **fresh}, b'{"sku": "car"}'), now=NOW + 1)
    assert isinstance(caught.value, (BodyDigestMismatch, surefoot.errors.BadSignature))
    challenge = dict(verifier.challenge(caught.value))
    assert "WWW-Authenticate" in challenge


@pytest.mark.parametrize("name", NAMES)
def test_signing_auth_takes_its_signers_properties(name: str):
    auth = scheme_named(name).auth
    signer = auth.signer
    assert auth.credential_headers == signer.credential_headers
    assert auth.signs_body is signer.signs_body
    assert auth.clock is signer.clock
    text = repr(auth)
    assert text.startswith("SigningAuth(")
    assert SECRET not in text
    assert "redacted" in text


def test_signing_auth_over_httpx_for_every_scheme():
    """Used alone (``httpx.Client(auth=...)``): the headers reach the server, and verify."""
    for scheme in schemes():
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request, seen: list[httpx.Request] = seen) -> httpx.Response:
            seen.append(request)
            return httpx.Response(200, json={"ok": True})

        with httpx.Client(auth=scheme.auth, transport=httpx.MockTransport(handler)) as client:
            client.post(URL, content=BODY, headers=HEADERS)
        (sent,) = seen
        request = SignedRequest.of(sent.method, str(sent.url), sent.headers, sent.content)
        assert scheme.verifier.verify(request).key_id == scheme.key_id


# -- your own signer -------------------------------------------------------------------------


class StaticTokenSigner:
    """A Signer of our own: a static token header and the body's length."""

    credential_headers = ("X-Token", "X-Body-Length")
    signs_body = True

    @property
    def clock(self) -> Clock:
        return default_clock

    def sign(self, request: HttpRequest, *, now: float | None = None) -> dict[str, str]:
        return {"X-Token": "tok-1", "X-Body-Length": str(len(request.body))}


def test_signing_auth_takes_any_signer():
    assert isinstance(StaticTokenSigner(), Signer)
    auth = SigningAuth(StaticTokenSigner())
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    with httpx.Client(auth=auth, transport=httpx.MockTransport(handler)) as client:
        client.post(URL, content=BODY)
    assert seen[0].headers["X-Token"] == "tok-1"
    assert seen[0].headers["X-Body-Length"] == str(len(BODY))
    with pytest.raises(ConfigurationError):
        SigningAuth(object())  # type: ignore[arg-type]


def test_sigv4_credentials_function():
    calls: list[int] = []

    def provider() -> SigV4Credentials:
        calls.append(1)
        return SigV4Credentials("AKIDROTATE", SECRET, f"token-{len(calls)}")

    auth = SigningAuth(SigV4Signer(provider, "eu-west-1", "execute-api"))
    verifier = SigV4Verifier({"AKIDROTATE": SECRET}, region="eu-west-1", service="execute-api")
    for expected in ("token-1", "token-2"):
        added = dict(auth.attempt_headers(HttpRequest("GET", URL, {}), None, now=NOW))
        assert added["X-Amz-Security-Token"] == expected
        request = SignedRequest.of("GET", URL, {"Host": "api.example.com", **added})
        assert verifier.verify(request, now=NOW).key_id == "AKIDROTATE"


# -- RFC 9421: the Content-Digest option of MessageSigner -----------------------------------


def test_message_signer_content_digest_option():
    key = SignatureKey("hmac-sha256", b"k" * 32, key_id="k")
    plain = MessageSigner(key)
    assert not plain.signs_body
    assert plain.credential_headers == ("Signature-Input", "Signature")
    assert "Content-Digest" not in plain.sign(HttpRequest("POST", URL, {}, BODY), now=NOW)

    digesting = MessageSigner(key, content_digest="sha-512")
    assert digesting.signs_body
    assert digesting.credential_headers == ("Signature-Input", "Signature", "Content-Digest")
    fields = digesting.sign(HttpRequest("POST", URL, {}, BODY), now=NOW)
    assert fields["Content-Digest"] == surefoot.signing.content_digest(BODY, "sha-512")
    assert '"content-digest"' in fields["Signature-Input"]
    verifier = MessageVerifier({"k": key}, require_content_digest=True)
    found = verifier.verify(SignedRequest.of("POST", URL, fields, BODY), now=NOW)
    assert found.signature is not None
    assert found.signature.covers("content-digest")
    with pytest.raises(BodyDigestMismatch):
        verifier.verify(SignedRequest.of("POST", URL, fields, b"other"), now=NOW)
    with pytest.raises(ConfigurationError):
        MessageSigner(key, content_digest="md5")  # type: ignore[arg-type]


# -- the received request and the nonce stores ----------------------------------------------


def test_signed_request_of_normalises_headers():
    pairs = SignedRequest.of("GET", URL, [("X-A", "1"), ("x-a", "2")]).headers
    assert pairs == (("x-a", "1"), ("x-a", "2"))
    lines = httpx.Headers([("X-A", "1"), ("X-A", "2"), ("Host", "h")])
    assert SignedRequest.of("GET", URL, lines).headers == (("x-a", "1"), ("x-a", "2"),
                                                            ("host", "h"))
    request = SignedRequest.of("GET", URL, {"X-Signature": "secret-sig"}, None)
    assert request.body == b""
    assert "secret-sig" not in repr(request)


@pytest.mark.parametrize("name", NAMES)
def test_verifiers_take_a_nonce_cache_or_a_store(name: str, tmp_path: Any):
    make = {
        "hmac": lambda nonces: HmacVerifier({"k": "s"}, nonces=nonces),
        "rfc9421": lambda nonces: MessageVerifier({}, nonces=nonces),
        "sigv4": lambda nonces: SigV4Verifier({}, region="r", service="s", nonces=nonces),
    }[name]
    store = MemoryStore()
    assert make(store).nonces is store.nonces
    cache = MemoryNonceCache()  # empty, so falsy: still the one used
    assert make(cache).nonces is cache
    assert make(store).blocking is False
    shared = SQLiteStore(tmp_path / "state.db")
    try:
        assert make(shared).nonces is shared.nonces
        assert make(shared.nonces).blocking is True
    finally:
        shared.close()
    with pytest.raises(ConfigurationError):
        make(object())


@pytest.mark.parametrize("name", NAMES)
def test_nonces_false_is_no_replay_check_for_every_verifier(name: str):
    """One shape: ``nonces=False`` means no replay check whatever the verifier;
    ``None`` is the verifier's default (a fresh in-process cache for the schemes whose
    every request carries a replay key, HMAC and SigV4; none for RFC 9421, whose nonce is
    optional); ``True`` is no cache."""
    make = {
        "hmac": lambda nonces: HmacVerifier({"k": "s"}, nonces=nonces),
        "rfc9421": lambda nonces: MessageVerifier({}, nonces=nonces),
        "sigv4": lambda nonces: SigV4Verifier({}, region="r", service="s", nonces=nonces),
    }[name]
    off = make(False)
    assert off.nonces is None
    assert off.blocking is False
    default = make(None).nonces
    if name == "rfc9421":
        assert default is None
        assert make(False).require_nonce is False
    else:
        assert isinstance(default, MemoryNonceCache)
        assert make(None).nonces is not default  # a fresh one each
    with pytest.raises(ConfigurationError):
        make(True)


def test_middleware_reexports_the_request_and_the_identity():
    import surefoot.middleware

    assert surefoot.middleware.SignedRequest is SignedRequest
    assert surefoot.middleware.Identity is Identity
    assert not hasattr(surefoot.middleware, "adapt")


# -- one rule for what no message can carry --------------------------------------------------

#: (method, url, headers) of requests no message can carry: a lone surrogate in the method,
#: the URL or a header, or a URL urlsplit refuses ("Invalid IPv6 URL").
UNCARRIABLE = [
    pytest.param("G\udcffT", URL, {}, id="method-surrogate"),
    pytest.param("POST", "https://api.example.com/v1\ud800", {}, id="path-surrogate"),
    pytest.param("POST", URL + "&a=\ud800", {}, id="query-surrogate"),
    pytest.param("POST", URL, {"X-Amz-Meta-A": "\ud800"}, id="header-value-surrogate"),
    pytest.param("POST", URL, {"X-\udcff": "a"}, id="header-name-surrogate"),
    pytest.param("POST", "http://[/p", {}, id="url-bracket-open"),
    pytest.param("POST", "http://h]/p", {}, id="url-bracket-close"),
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("method", "url", "headers"), UNCARRIABLE)
def test_a_request_no_message_can_carry_is_refused_typed(
    name: str, method: str, url: str, headers: dict[str, str]
):
    """Signers raise SigningError, verifiers MalformedSignature: never the
    UnicodeEncodeError or ValueError of an encoder or urlsplit."""
    scheme = scheme_named(name)
    with pytest.raises(SigningError, match="cannot sign"):
        scheme.auth.signer.sign(HttpRequest(method, url, {**HEADERS, **headers}, BODY), now=NOW)
    # a real signature of a carriable request, then the uncarriable one received with it
    signed = scheme.auth.signer.sign(HttpRequest("POST", URL, HEADERS, BODY), now=NOW)
    request = SignedRequest.of(method, url, {"Host": "api.example.com", **HEADERS, **signed,
                                             **headers}, BODY)
    with pytest.raises(MalformedSignature, match="malformed request"):
        scheme.verifier.verify(request, now=NOW)


@pytest.mark.parametrize("name", NAMES)
def test_a_signed_request_of_wrong_types_is_malformed(name: str):
    verifier = scheme_named(name).verifier
    for request in (
        SignedRequest(None, URL, (), b""),  # type: ignore[arg-type]
        SignedRequest("POST", b"https://h/p", (), b""),  # type: ignore[arg-type]
        SignedRequest("POST", URL, (("host", b"h"),), b""),  # type: ignore[arg-type]
        SignedRequest("POST", URL, (("host",),), b""),  # type: ignore[arg-type]
        SignedRequest("POST", URL, (), "body"),  # type: ignore[arg-type]
    ):
        with pytest.raises(MalformedSignature):
            verifier.verify(request, now=NOW)


def test_message_flaw_is_none_for_what_a_message_can_carry():
    assert message_flaw("GET", URL, HEADERS) is None
    assert message_flaw("GET", "https://[::1]:8443/caf\u00e9?q=\u20ac", [("x", "\u00e9")]) is None
    assert message_flaw(None, None, None) is None  # a response has no method nor URL
    # a request to sign (not strict): a value of another type is its HTTP library's business
    assert message_flaw("GET", URL, {"X-Bytes": b"v"}, strict=False) is None
    assert message_flaw("GET", URL, {"X-Bytes": b"v"}) == "a header field is not text"
    assert message_flaw("GET", "http://[/", ()) == "the URL cannot be parsed"
    assert message_flaw("GET", URL, {"a": "\ud800"}, strict=False) is not None
