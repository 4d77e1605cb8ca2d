"""AWS Signature Version 4: the AWS test suite, the signer, the verifier, and
SigningAuth.sigv4 end to end on requests and httpx (verified server side against what the
sandbox saw)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

import surefoot
import surefoot.httpx
from adapters import Api, recording_transport
from surefoot import ConfigurationError, RetryPolicy, SignatureError
from surefoot.errors import (
    BadSignature,
    BodyDigestMismatch,
    CredentialScopeMismatch,
    InsufficientCoverage,
    MalformedSignature,
    MissingHeader,
    PolicyViolation,
    ReplayedNonce,
    SignatureExpired,
    SigningError,
    TimestampSkew,
    UnknownKey,
)
from surefoot.signing import (
    HttpRequest,
    SignedRequest,
    SigningAuth,
    SigV4Credentials,
    SigV4Signer,
    SigV4Verifier,
    _sigv4,
)
from surefoot.signing._sigv4 import (
    canonical_headers,
    canonical_query,
    canonical_request,
    canonical_uri,
    signing_key,
    string_to_sign,
)
from surefoot.stores import MemoryNonceCache
from surefoot.testing import FakeClock

# -- the AWS SigV4 test suite ---------------------------------------------------------------

SUITE = Path(__file__).parent / "vectors" / "aws-sigv4"
ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION, SERVICE = "us-east-1", "service"
SUITE_NOW = 1440938160.0  # 20150830T123600Z
assert time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(SUITE_NOW)) == "20150830T123600Z"
# get-vanilla-with-session-token signs this token (not in its .req; see its .creq).
VANILLA_TOKEN = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"
STS_TOKEN = (SUITE / "post-sts-token" / "readme.txt").read_text().split()[-1]
CASES = sorted(p.parent for p in SUITE.rglob("*.req"))

# No case is skipped. botocore skips normalize-path/get-space and three
# get-vanilla-query-order-* cases because of its test harness rather than of SigV4: it
# parses each .req with http.server (a raw space inside the request target, as in
# get-space, is not a valid request line) and passes the query to its signer as a dict
# ("multiple query params of the same key not supported"), which loses repeated names
# and their order. Here the request line is split at its first and last space, and the
# canonical query is computed from the raw query string, repeats included and sorted by
# (name, value) — which is what the suite expects.


def parse_req(text: str) -> tuple[str, str, list[tuple[str, str]], bytes]:
    """(method, target, header pairs, body) of a raw .req/.sreq: folded lines kept as
    ``\\n`` + the line, repeated headers kept in order."""
    head, _, body = text.partition("\n\n")
    first, *lines = head.split("\n")
    method, rest = first.split(" ", 1)
    target = rest.rsplit(" ", 1)[0]
    headers: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            name, value = headers[-1]
            headers[-1] = (name, f"{value}\n{line}")
        elif line:
            name, _, value = line.partition(":")
            headers.append((name, value))
    return method, target, headers, body.encode()


def suite_case(case: Path) -> dict[str, Any]:
    name = case.name
    method, target, headers, body = parse_req((case / f"{name}.req").read_text("utf-8"))
    host = next(v for n, v in headers if n.lower() == "host")
    token = {"get-vanilla-with-session-token": VANILLA_TOKEN}.get(name)
    if name.startswith("post-sts-header-"):
        token = STS_TOKEN
    return {
        "name": name,
        "method": method,
        "url": f"https://{host}{target}",
        "headers": headers,
        "body": body or None,
        "token": token,
        "creq": (case / f"{name}.creq").read_text("utf-8"),
        "sts": (case / f"{name}.sts").read_text("utf-8"),
        "authz": (case / f"{name}.authz").read_text("utf-8"),
        "sreq": (case / f"{name}.sreq").read_text("utf-8"),
    }


def suite_signer(case: dict[str, Any]) -> SigV4Signer:
    return SigV4Signer(
        SigV4Credentials(ACCESS_KEY, SECRET_KEY, case["token"]),
        REGION,
        SERVICE,
        signed_headers="all",  # the suite signs every header of its requests
        # post-sts-header-after: the token is added after signing, outside the signature.
        sign_session_token=case["name"] != "post-sts-header-after",
    )


def test_the_suite_is_complete():
    assert len(CASES) == 34
    assert {"get-space", "get-vanilla-query-order-key", "post-sts-header-after"} <= {
        c.name for c in CASES
    }
    for name in ("LICENSE", "NOTICE", "README.md"):
        assert (SUITE / name).is_file()


@pytest.mark.parametrize("case_dir", CASES, ids=lambda p: p.name)
def test_suite_case(case_dir: Path):
    case = suite_case(case_dir)
    parts = suite_signer(case).sign_parts(
        HttpRequest(case["method"], case["url"], case["headers"], case["body"]), now=SUITE_NOW
    )
    assert parts.canonical_request == case["creq"]
    assert parts.string_to_sign == case["sts"]
    assert parts.headers["Authorization"] == case["authz"]
    assert parts.headers["X-Amz-Date"] == "20150830T123600Z"
    if case["token"]:
        assert parts.headers["X-Amz-Security-Token"] == case["token"]


@pytest.mark.parametrize("case_dir", CASES, ids=lambda p: p.name)
def test_suite_case_with_the_building_blocks(case_dir: Path):
    """The public functions alone reproduce .creq and .sts (the signer adds nothing)."""
    case = suite_case(case_dir)
    signed = [(n, v) for n, v in case["headers"] if n.lower() != "x-amz-security-token"]
    if case["token"] and case["name"] != "post-sts-header-after":
        signed.append(("X-Amz-Security-Token", case["token"]))
    creq, signed_names = canonical_request(
        case["method"], case["url"], signed, hashlib.sha256(case["body"] or b"").hexdigest()
    )
    assert creq == case["creq"]
    sts = string_to_sign("20150830T123600Z", "20150830/us-east-1/service/aws4_request", creq)
    assert sts == case["sts"]
    assert f"SignedHeaders={signed_names}," in case["authz"]


@pytest.mark.parametrize("case_dir", CASES, ids=lambda p: p.name)
def test_suite_signed_request_verifies(case_dir: Path):
    """The verifier accepts each .sreq (the suite's signed request) as received."""
    case = suite_case(case_dir)
    method, target, headers, body = parse_req(case["sreq"])
    host = next(v for n, v in headers if n.lower() == "host")
    verifier = SigV4Verifier({ACCESS_KEY: SECRET_KEY}, region=REGION, service=SERVICE)
    args = (method, f"https://{host}{target}", headers, body or None)
    if case["name"] == "get-vanilla-with-session-token":
        # The suite's quirk: this .sreq carries get-vanilla's signature, not its .authz.
        with pytest.raises(BadSignature):
            verifier.verify(SignedRequest.of(*args), now=SUITE_NOW)
        return
    if case["name"] == "post-sts-header-after":
        # Policy: every x-amz-* header present must be signed; this one is added after.
        with pytest.raises(InsufficientCoverage):
            verifier.verify(SignedRequest.of(*args), now=SUITE_NOW)
        return
    assert verifier.verify(SignedRequest.of(*args), now=SUITE_NOW).key_id == ACCESS_KEY


def test_signing_key_derivation_matches_aws_documentation():
    # AWS's documented example: secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY,
    # 20120215 / us-east-1 / iam.
    key = signing_key(SECRET_KEY, "20120215", "us-east-1", "iam")
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


# -- canonical pieces -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "s3", "expected"),
    [
        ("", False, "/"),
        ("/", False, "/"),
        ("/a/b/", False, "/a/b/"),
        ("/a%20b", False, "/a%2520b"),  # double encoding for every service but S3
        ("/a%20b", True, "/a%20b"),
        ("/a b/$x", True, "/a%20b/%24x"),
        ("/a%2fb/c", True, "/a%2Fb/c"),  # an encoded slash stays one segment, upper hex
        ("/caf%C3%A9", True, "/caf%C3%A9"),
        ("/café", False, "/caf%C3%A9"),
        ("//a//b/./c/../d", False, "/a/b/d"),
        ("//a//b/./c/../d", True, "//a//b/./c/../d"),  # S3: never normalised
        ("/a/..", False, "/"),
        ("/a/b/..", False, "/a"),
        ("/-._~AZaz09", False, "/-._~AZaz09"),
        ("/.hidden/x", False, "/.hidden/x"),
        ("relative", False, "/relative"),
    ],
)
def test_canonical_uri(path: str, s3: bool, expected: str):
    assert canonical_uri(path, s3=s3) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ""),
        ("a=1", "a=1"),
        ("b=2&a=1&a=0", "a=0&a=1&b=2"),
        ("a&b=", "a=&b="),
        ("a=1&&b=2&", "a=1&b=2"),
        ("x=a+b", "x=a%2Bb"),  # + is a literal plus (as AWS's SDKs canonicalise it)
        ("x=a%2Bb%20c", "x=a%2Bb%20c"),
        ("x=a%20b&y=%2f", "x=a%20b&y=%2F"),
        ("x=a b/c", "x=a%20b%2Fc"),
        ("%E1%88%B4=1&Z=2", "%E1%88%B4=1&Z=2"),
        ("k=v=w", "k=v%3Dw"),
        ("B=1&a=1", "B=1&a=1"),  # byte order: upper case first
        ("~=1&-=2", "-=2&~=1"),
    ],
)
def test_canonical_query(query: str, expected: str):
    assert canonical_query(query) == expected


def test_canonical_query_skip_drops_the_signature():
    assert canonical_query("b=1&X-Amz-Signature=ab&a=2", skip="X-Amz-Signature") == "a=2&b=1"


def test_canonical_headers_trim_fold_and_repeat():
    block, signed = canonical_headers(
        [("My-H", "  a   b  "), ("my-h", "c\n   d"), ("Host", "x"), ("A", "\t1 ")]
    )
    assert block == "a:1\nhost:x\nmy-h:a b,c d\n"
    assert signed == "a;host;my-h"


# -- the signer -----------------------------------------------------------------------------

CREDS = SigV4Credentials(ACCESS_KEY, SECRET_KEY)
NOW = 1_700_000_000.0  # 20231114T221320Z
URL = "https://api.example.com/v1/items?limit=10&cursor=abc"
BODY = b'{"sku":"book"}'
BODY_SHA256 = hashlib.sha256(BODY).hexdigest()


def make_signer(**kwargs: Any) -> SigV4Signer:
    kwargs.setdefault("region", REGION)
    kwargs.setdefault("service", "execute-api")
    return SigV4Signer(kwargs.pop("credentials", CREDS), **kwargs)


def make_verifier(**kwargs: Any) -> SigV4Verifier:
    kwargs.setdefault("region", REGION)
    kwargs.setdefault("service", "execute-api")
    return SigV4Verifier({ACCESS_KEY: SECRET_KEY}, **kwargs)


def authz_fields(authorization: str) -> dict[str, str]:
    algorithm, _, rest = authorization.partition(" ")
    assert algorithm == "AWS4-HMAC-SHA256"
    return dict(part.strip().split("=", 1) for part in rest.split(","))


def test_sign_default_headers_and_signed_set():
    headers = {"Content-Type": "application/json", "User-Agent": "x", "Content-Length": "14",
               "X-Amz-Target": "Svc.Op", "Accept": "*/*"}
    out = make_signer().sign(HttpRequest("POST", URL, headers, BODY), now=NOW)
    assert out["X-Amz-Date"] == "20231114T221320Z"
    assert set(out) == {"X-Amz-Date", "Authorization"}
    fields = authz_fields(out["Authorization"])
    assert fields["Credential"] == f"{ACCESS_KEY}/20231114/us-east-1/execute-api/aws4_request"
    assert fields["SignedHeaders"] == "content-type;host;x-amz-date;x-amz-target"
    assert len(fields["Signature"]) == 64


def test_signed_headers_option_adds_names_or_all():
    headers = {"Content-Type": "a/b", "User-Agent": "x", "X-Custom": "1"}
    extra = make_signer(signed_headers=["x-custom"]).sign(
        HttpRequest("GET", URL, headers, b""), now=NOW
    )
    assert authz_fields(extra["Authorization"])["SignedHeaders"] == (
        "content-type;host;x-amz-date;x-custom"
    )
    every = make_signer(signed_headers="all").sign(HttpRequest("GET", URL, headers, b""), now=NOW)
    assert authz_fields(every["Authorization"])["SignedHeaders"] == (
        "content-type;host;user-agent;x-amz-date;x-custom"
    )
    with pytest.raises(ConfigurationError):
        make_signer(signed_headers="everything")


def test_host_header_wins_over_the_url():
    with_host = make_signer().sign(HttpRequest("GET", URL, {"Host": "other.example"}, b""), now=NOW)
    parts = make_signer().sign_parts(
        HttpRequest("GET", URL, {"Host": "other.example"}, b""), now=NOW
    )
    assert "host:other.example\n" in parts.canonical_request
    assert with_host == parts.headers
    default_port = make_signer().sign_parts(
        HttpRequest("GET", "https://API.example.com:443/x", {}, b""), now=NOW
    )
    assert "host:api.example.com\n" in default_port.canonical_request
    other_port = make_signer().sign_parts(
        HttpRequest("GET", "http://127.0.0.1:8080/x", {}, b""), now=NOW
    )
    assert "host:127.0.0.1:8080\n" in other_port.canonical_request


def test_stale_signature_headers_are_replaced_not_signed_twice():
    """A re-signed redirect hop passes the previous attempt's headers back in."""
    signer = make_signer(credentials=SigV4Credentials(ACCESS_KEY, SECRET_KEY, "tok"))
    first = signer.sign(HttpRequest("GET", URL, {"Accept": "*/*"}, b""), now=NOW)
    again = signer.sign(HttpRequest("GET", URL, {"Accept": "*/*", **first}, b""), now=NOW + 5)
    assert again["X-Amz-Date"] != first["X-Amz-Date"]
    assert authz_fields(again["Authorization"])["SignedHeaders"] == (
        "host;x-amz-date;x-amz-security-token"
    )
    # A stale X-Amz-Content-SHA256 is overwritten with this body's hash, and signed.
    stale = signer.sign(HttpRequest("POST", URL, {"x-amz-content-sha256": "0" * 64}, BODY), now=NOW)
    assert stale["X-Amz-Content-SHA256"] == BODY_SHA256


def test_session_token_signed_or_added_after():
    creds = SigV4Credentials(ACCESS_KEY, SECRET_KEY, "session-token")
    signed = make_signer(credentials=creds).sign(HttpRequest("GET", URL, {}, b""), now=NOW)
    assert signed["X-Amz-Security-Token"] == "session-token"
    assert "x-amz-security-token" in authz_fields(signed["Authorization"])["SignedHeaders"]
    after = make_signer(credentials=creds, sign_session_token=False).sign(
        HttpRequest("GET", URL, {}, b""), now=NOW
    )
    assert after["X-Amz-Security-Token"] == "session-token"
    assert authz_fields(after["Authorization"])["SignedHeaders"] == "host;x-amz-date"


def test_s3_content_sha256_and_unsigned_payload():
    s3 = make_signer(service="s3")
    out = s3.sign_parts(HttpRequest("PUT", "https://b.s3.amazonaws.com/k%20ey", {}, BODY), now=NOW)
    assert out.headers["X-Amz-Content-SHA256"] == BODY_SHA256
    assert out.canonical_request.splitlines()[1] == "/k%20ey"  # no double encoding
    assert out.canonical_request.endswith("\n" + BODY_SHA256)
    assert "x-amz-content-sha256" in authz_fields(out.headers["Authorization"])["SignedHeaders"]
    unsigned = make_signer(service="s3", unsigned_payload=True).sign_parts(
        HttpRequest("PUT", "https://b.s3.amazonaws.com/k", {}, BODY), now=NOW
    )
    assert unsigned.headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    assert unsigned.canonical_request.endswith("\nUNSIGNED-PAYLOAD")
    # Elsewhere no X-Amz-Content-SHA256, unless asked for (or for unsigned payloads).
    assert "X-Amz-Content-SHA256" not in make_signer().sign(
        HttpRequest("PUT", URL, {}, BODY), now=NOW
    )
    assert make_signer(unsigned_payload=True).sign(HttpRequest("PUT", URL, {}, BODY), now=NOW)[
        "X-Amz-Content-SHA256"
    ] == "UNSIGNED-PAYLOAD"
    with pytest.raises(ConfigurationError):
        make_signer(unsigned_payload=True, content_sha256=False)


def test_signing_key_is_cached_per_day(monkeypatch: pytest.MonkeyPatch):
    calls: list[tuple[str, ...]] = []
    real = _sigv4.signing_key

    def counting(*args: str) -> bytes:
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(_sigv4, "signing_key", counting)
    signer = make_signer()
    for i in range(50):
        signer.sign(HttpRequest("GET", URL, {}, b""), now=NOW + i)
    assert len(calls) == 1
    signer.sign(HttpRequest("GET", URL, {}, b""), now=NOW + 86_400)  # the next UTC day: a new key
    assert len(calls) == 2
    assert calls[0][1:] == ("20231114", "us-east-1", "execute-api")
    assert calls[1][1] == "20231115"


def test_credentials_provider_is_called_per_signature_and_rotates():
    rotated = iter(
        [SigV4Credentials("AKID1", "secret-1", "t1"), SigV4Credentials("AKID2", "secret-2")]
    )
    signer = make_signer(credentials=lambda: next(rotated))
    one = signer.sign(HttpRequest("GET", URL, {}, b""), now=NOW)
    two = signer.sign(HttpRequest("GET", URL, {}, b""), now=NOW)
    assert authz_fields(one["Authorization"])["Credential"].startswith("AKID1/")
    assert one["X-Amz-Security-Token"] == "t1"
    assert authz_fields(two["Authorization"])["Credential"].startswith("AKID2/")
    assert "X-Amz-Security-Token" not in two
    verifier = SigV4Verifier({"AKID1": "secret-1", "AKID2": "secret-2"}, region=REGION,
                             service="execute-api")
    assert verifier.verify(
        SignedRequest.of("GET", URL, {"Host": "api.example.com", **two}, b""), now=NOW
    ).key_id == "AKID2"


def test_signer_uses_its_clock():
    clock = FakeClock(start_wall=NOW)
    signer = make_signer(clock=clock)
    first = signer.sign(HttpRequest("GET", URL, {}, b""))
    clock.advance(61)
    second = signer.sign(HttpRequest("GET", URL, {}, b""))
    assert first["X-Amz-Date"] == "20231114T221320Z"
    assert second["X-Amz-Date"] == "20231114T221421Z"
    assert first["Authorization"] != second["Authorization"]


def test_configuration_errors():
    with pytest.raises(ConfigurationError):
        SigV4Credentials("", "s")
    for bad in ("AK/ID", "AK,ID", "AK ID", "AK=ID", "AK\nID"):
        with pytest.raises(ConfigurationError):
            SigV4Credentials(bad, "s")
    with pytest.raises(ConfigurationError):
        SigV4Credentials("AKID", "")
    with pytest.raises(ConfigurationError):
        SigV4Credentials("AKID", "s", "tok\nen")
    with pytest.raises(ConfigurationError):
        make_signer(region="us east")
    with pytest.raises(ConfigurationError):
        make_signer(service="")
    with pytest.raises(ConfigurationError):
        make_verifier(skew=0)
    with pytest.raises(ConfigurationError):
        make_signer().presign("GET", URL, expires=604_801)


def test_reprs_do_not_contain_secrets():
    auth = SigningAuth.sigv4(ACCESS_KEY, SECRET_KEY, REGION, "s3", session_token="tok-secret")
    for obj in (auth, auth.signer, SigV4Credentials(ACCESS_KEY, SECRET_KEY, "tok-secret"),
                make_verifier()):
        text = repr(obj)
        assert SECRET_KEY not in text
        assert "tok-secret" not in text


# -- the verifier ---------------------------------------------------------------------------


def signed_request(
    method: str = "POST",
    url: str = URL,
    body: bytes | None = BODY,
    *,
    headers: dict[str, str] | None = None,
    signer: SigV4Signer | None = None,
    now: float = NOW,
) -> tuple[str, str, Any, bytes | None]:
    """A request as the server receives it: Host and the signature headers included."""
    sent: Any = CaseInsensitiveDict({"Host": urlsplit(url).netloc,
                                     "Content-Type": "application/json"})
    sent.update(headers or {})
    sent.update((signer or make_signer()).sign(HttpRequest(method, url, sent, body), now=now))
    return method, url, sent, body


def test_roundtrip():
    assert make_verifier().verify(SignedRequest.of(*signed_request()), now=NOW).key_id == ACCESS_KEY


def test_roundtrip_with_callable_keys_repeated_headers_and_pairs():
    signer = make_signer(signed_headers=["x-multi"])
    pairs = [("Host", "api.example.com"), ("X-Multi", "a"), ("X-Multi", "b")]
    added = signer.sign(HttpRequest("GET", URL, pairs, b""), now=NOW)
    received = [*pairs, *added.items()]
    # The same signature is verified in two forms: no replay check (nonces=False).
    verifier = SigV4Verifier(lambda k: SECRET_KEY if k == ACCESS_KEY else None,
                             region=REGION, service="execute-api", nonces=False)
    assert (
        verifier.verify(SignedRequest.of("GET", URL, received, b""), now=NOW).key_id == ACCESS_KEY
    )
    # A server that joined the repeats (WSGI does: "a,b") sees the same value.
    joined = {"Host": "api.example.com", "X-Multi": "a,b", **added}
    assert verifier.verify(SignedRequest.of("GET", URL, joined, b""), now=NOW).key_id == ACCESS_KEY
    swapped = [("Host", "api.example.com"), ("X-Multi", "b"), ("X-Multi", "a"),
               *added.items()]
    with pytest.raises(BadSignature):
        verifier.verify(SignedRequest.of("GET", URL, swapped, b""), now=NOW)


@pytest.mark.parametrize(
    "tamper",
    ["method", "path", "query", "query_value", "host", "content_type", "date", "body"],
)
def test_tampering_is_rejected(tamper: str):
    method, url, headers, body = signed_request()
    if tamper == "method":
        method = "PUT"
    elif tamper == "path":
        url = url.replace("/v1/items", "/v1/item")
    elif tamper == "query":
        url += "&admin=1"
    elif tamper == "query_value":
        url = url.replace("limit=10", "limit=11")
    elif tamper == "host":
        headers["Host"] = "evil.example.com"
    elif tamper == "content_type":
        headers["Content-Type"] = "text/plain"
    elif tamper == "date":
        headers["X-Amz-Date"] = "20231114T221321Z"
    elif tamper == "body":
        body = b'{"sku":"boom"}'
    with pytest.raises(BadSignature):
        make_verifier().verify(SignedRequest.of(method, url, headers, body), now=NOW)


def test_body_digest_header_is_checked():
    s3_signer = make_signer(service="s3")
    verifier = make_verifier(service="s3")
    method, url, headers, _ = signed_request(signer=s3_signer)
    with pytest.raises(BodyDigestMismatch):
        verifier.verify(SignedRequest.of(method, url, headers, b"other body"), now=NOW)
    headers["X-Amz-Content-SHA256"] = "nothex"
    with pytest.raises(MalformedSignature):
        verifier.verify(SignedRequest.of(method, url, headers, BODY), now=NOW)


def test_unsigned_payload_only_where_allowed():
    unsigned = make_signer(unsigned_payload=True)
    request = signed_request(signer=unsigned)
    with pytest.raises(BodyDigestMismatch):
        make_verifier().verify(SignedRequest.of(*request), now=NOW)
    assert (
        make_verifier(allow_unsigned_payload=True)
        .verify(SignedRequest.of(*request), now=NOW)
        .key_id
        == ACCESS_KEY
    )
    s3_request = signed_request(signer=make_signer(service="s3", unsigned_payload=True))
    assert (
        make_verifier(service="s3").verify(SignedRequest.of(*s3_request), now=NOW).key_id
        == ACCESS_KEY
    )


@pytest.mark.parametrize("offset", [-901, 901, 86_400])
def test_clock_skew_outside_15_minutes(offset: float):
    with pytest.raises(TimestampSkew):
        make_verifier().verify(SignedRequest.of(*signed_request(now=NOW + offset)), now=NOW)


@pytest.mark.parametrize("offset", [-900, 0, 900])
def test_clock_skew_inside_15_minutes(offset: float):
    assert (
        make_verifier().verify(SignedRequest.of(*signed_request(now=NOW + offset)), now=NOW).key_id
        == ACCESS_KEY
    )


def test_custom_skew_and_verifier_clock():
    request = signed_request(now=NOW - 100)
    with pytest.raises(TimestampSkew):
        make_verifier(skew=60).verify(SignedRequest.of(*request), now=NOW)
    clock = FakeClock(start_wall=NOW)
    assert make_verifier(clock=clock).verify(SignedRequest.of(*request)).key_id == ACCESS_KEY
    clock.advance(1_000)
    with pytest.raises(TimestampSkew):
        make_verifier(clock=clock).verify(SignedRequest.of(*request))


def test_unknown_key_and_wrong_secret():
    with pytest.raises(UnknownKey):
        SigV4Verifier({"OTHER": "x"}, region=REGION, service="execute-api").verify(
            SignedRequest.of(*signed_request()), now=NOW
        )
    with pytest.raises(BadSignature):
        SigV4Verifier({ACCESS_KEY: "wrong"}, region=REGION, service="execute-api").verify(
            SignedRequest.of(*signed_request()), now=NOW
        )


@pytest.mark.parametrize(
    ("region", "service"), [("eu-west-1", "execute-api"), (REGION, "s3"), (REGION, "iam")]
)
def test_credential_scope_must_be_the_verifiers(region: str, service: str):
    with pytest.raises(CredentialScopeMismatch):
        make_verifier(region=region, service=service).verify(
            SignedRequest.of(*signed_request()), now=NOW
        )


def test_scope_date_must_be_the_request_date():
    method, url, headers, body = signed_request()
    headers["Authorization"] = headers["Authorization"].replace("/20231114/", "/20231113/")
    with pytest.raises(CredentialScopeMismatch):
        make_verifier().verify(SignedRequest.of(method, url, headers, body), now=NOW)


def test_unsigned_amz_header_and_unsigned_host_are_rejected():
    method, url, headers, body = signed_request()
    headers["X-Amz-Acl"] = "public-read"  # added after signing
    with pytest.raises(InsufficientCoverage):
        make_verifier().verify(SignedRequest.of(method, url, headers, body), now=NOW)
    method, url, headers, body = signed_request()
    headers["Authorization"] = headers["Authorization"].replace(
        "content-type;host;x-amz-date", "content-type;x-amz-date"
    )
    with pytest.raises(InsufficientCoverage):
        make_verifier().verify(SignedRequest.of(method, url, headers, body), now=NOW)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda h: h.pop("Authorization"), MissingHeader),
        (lambda h: h.pop("X-Amz-Date"), MissingHeader),
        (lambda h: h.pop("Content-Type"), MissingHeader),  # signed but not received
        (lambda h: h.update(Authorization="AWS4-HMAC-SHA256 garbage"), MalformedSignature),
        (lambda h: h.update(Authorization="Bearer abc"), MalformedSignature),
        (lambda h: h.update({"X-Amz-Date": "２０２３1114T221320Z"}), MalformedSignature),
        (lambda h: h.update(Authorization=h["Authorization"][:-2]), MalformedSignature),
        (lambda h: h.update({"X-Amz-Date": "2023-11-14T22:13:20Z"}), MalformedSignature),
        (lambda h: h.update({"X-Amz-Date": "20231399T221320Z"}), MalformedSignature),
        (
            lambda h: h.update(
                Authorization=h["Authorization"].replace(
                    "content-type;host", "host;content-type"
                )
            ),
            MalformedSignature,
        ),
        (
            lambda h: h.update(
                Authorization=h["Authorization"].replace("/aws4_request", "/aws4_request/x")
            ),
            MalformedSignature,
        ),
        (
            lambda h: h.update(
                Authorization=h["Authorization"].replace("/aws4_request", "/aws5_request")
            ),
            CredentialScopeMismatch,
        ),
    ],
)
def test_missing_and_malformed(change: Any, error: type[SignatureError]):
    method, url, headers, body = signed_request()
    change(headers)
    with pytest.raises(error) as caught:
        make_verifier().verify(SignedRequest.of(method, url, headers, body), now=NOW)
    assert SECRET_KEY not in str(caught.value)


def test_upper_case_signature_hex_is_accepted():
    method, url, headers, body = signed_request()
    head, _, signature = headers["Authorization"].rpartition("=")
    headers["Authorization"] = f"{head}={signature.upper()}"
    assert (
        make_verifier().verify(SignedRequest.of(method, url, headers, body), now=NOW).key_id
        == ACCESS_KEY
    )


def test_replays_are_rejected_with_a_nonce_cache():
    request = signed_request()
    verifier = make_verifier(nonces=MemoryNonceCache())
    assert verifier.verify(SignedRequest.of(*request), now=NOW).key_id == ACCESS_KEY
    with pytest.raises(ReplayedNonce):
        verifier.verify(SignedRequest.of(*request), now=NOW + 1)
    # A failed verification records nothing.
    method, url, headers, body = signed_request(now=NOW + 1)
    with pytest.raises(BadSignature):
        verifier.verify(SignedRequest.of("PUT", url, headers, body), now=NOW + 1)
    assert (
        verifier.verify(SignedRequest.of(method, url, headers, body), now=NOW + 1).key_id
        == ACCESS_KEY
    )
    # With nonces=False (AWS's behaviour) the same request verifies again.
    lenient = make_verifier(nonces=False)
    assert lenient.nonces is None
    for _ in range(2):
        assert lenient.verify(SignedRequest.of(*request), now=NOW).key_id == ACCESS_KEY


# -- replay protection: on by default, nonces=False to opt out ------------------------------


def test_default_verifier_refuses_an_identical_request_in_the_same_second():
    """SigV4 has no nonce and X-Amz-Date has one-second resolution: the same GET sent twice
    in one second is one signature. By default (no ``nonces`` given) the second is refused
    as a replay, by an in-process cache."""
    verifier = make_verifier()
    assert isinstance(verifier.nonces, MemoryNonceCache)
    assert verifier.blocking is False
    first = signed_request("GET", body=None)
    again = signed_request("GET", body=None)  # signed again, within the same second
    assert first == again
    assert verifier.verify(SignedRequest.of(*first), now=NOW).key_id == ACCESS_KEY
    with pytest.raises(ReplayedNonce):
        verifier.verify(SignedRequest.of(*again), now=NOW)
    # A second later it is another signature: accepted.
    later = signed_request("GET", body=None, now=NOW + 1)
    assert verifier.verify(SignedRequest.of(*later), now=NOW + 1).key_id == ACCESS_KEY
    # Each default verifier has its own cache.
    assert make_verifier().verify(SignedRequest.of(*first), now=NOW).key_id == ACCESS_KEY


def test_nonces_false_accepts_identical_requests_in_the_same_second():
    verifier = make_verifier(nonces=False)
    assert verifier.nonces is None
    request = signed_request("GET", body=None)
    for offset in (0, 0, 1, 900):
        assert verifier.verify(SignedRequest.of(*request), now=NOW + offset).key_id == ACCESS_KEY


@pytest.mark.parametrize("nonces", [None, False, "cache"], ids=["default", "off", "cache"])
def test_replay_outside_the_skew_window_is_refused_whatever_the_nonces(nonces: Any):
    verifier = make_verifier(nonces=MemoryNonceCache() if nonces == "cache" else nonces)
    request = signed_request("GET", body=None)
    assert verifier.verify(SignedRequest.of(*request), now=NOW).key_id == ACCESS_KEY
    for late in (NOW + verifier.skew + 1, NOW + 2 * verifier.skew + 2, NOW - verifier.skew - 1):
        with pytest.raises(TimestampSkew):
            verifier.verify(SignedRequest.of(*request), now=late)


def test_presigned_url_is_single_use_by_default_and_reusable_with_nonces_false():
    url = presigned_url()
    default = make_verifier(service="s3")
    default.verify(SignedRequest.of("GET", url, PRESIGN_HOST, b""), now=NOW)
    with pytest.raises(ReplayedNonce):
        default.verify(SignedRequest.of("GET", url, PRESIGN_HOST, b""), now=NOW + 10)
    lenient = make_verifier(service="s3", nonces=False)
    for offset in (0, 10, 300):
        lenient.verify(SignedRequest.of("GET", url, PRESIGN_HOST, b""), now=NOW + offset)
    with pytest.raises(SignatureExpired):  # expired is expired, replay check or not
        lenient.verify(SignedRequest.of("GET", url, PRESIGN_HOST, b""), now=NOW + 301)


@pytest.mark.parametrize("nonces", [True, 0, "memory", object()])
def test_nonces_must_be_a_cache_a_store_false_or_none(nonces: Any):
    with pytest.raises(ConfigurationError):
        make_verifier(nonces=nonces)


def test_errors_are_signature_errors_with_reasons():
    assert issubclass(InsufficientCoverage, SignatureError)
    assert issubclass(CredentialScopeMismatch, PolicyViolation)
    assert issubclass(SignatureExpired, TimestampSkew)
    assert CredentialScopeMismatch.reason == "credential_scope"
    assert SignatureExpired.reason == "expired"


# -- properties -----------------------------------------------------------------------------

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=8
)


@settings(max_examples=150, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    segments=st.lists(_text, max_size=4),
    pairs=st.lists(st.tuples(_text, _text), max_size=4),
    amz=st.dictionaries(st.sampled_from(["x-amz-meta-a", "x-amz-acl", "content-type"]),
                        st.text(alphabet="abc XYZ;=/", min_size=1, max_size=10), max_size=3),
    body=st.binary(max_size=64),
    service=st.sampled_from(["execute-api", "s3"]),
)
def test_roundtrip_property(method, segments, pairs, amz, body, service):
    from urllib.parse import quote as q

    path = "/" + "/".join(q(seg, safe="") for seg in segments)
    query = "&".join(f"{q(k, safe='')}={q(v, safe='')}" for k, v in pairs)
    url = f"https://api.example.com{path}" + (f"?{query}" if query else "")
    request = signed_request(method, url, body or None, headers=amz,
                             signer=make_signer(service=service))
    verifier = make_verifier(service=service)
    assert verifier.verify(SignedRequest.of(*request), now=NOW).key_id == ACCESS_KEY
    if body:
        flipped = bytes([body[0] ^ 1]) + body[1:]
        with pytest.raises((BadSignature, BodyDigestMismatch)):
            verifier.verify(SignedRequest.of(request[0], request[1], request[2], flipped), now=NOW)


@settings(max_examples=200, deadline=None)
@given(authorization=st.text(max_size=300), date=st.text(max_size=20), url_tail=_text)
def test_verify_only_raises_signature_errors(authorization, date, url_tail):
    headers = {"Host": "api.example.com", "Authorization": "AWS4-HMAC-SHA256 " + authorization,
               "X-Amz-Date": date}
    with pytest.raises(SignatureError):
        make_verifier().verify(
            SignedRequest.of("GET", "https://api.example.com/" + url_tail, headers, b""), now=NOW
        )


# -- presigned URLs -------------------------------------------------------------------------


def test_presign_roundtrip_and_expiry():
    signer = make_signer(service="s3", credentials=SigV4Credentials(ACCESS_KEY, SECRET_KEY,
                                                                    "tok"))
    url = signer.presign("GET", "https://b.s3.amazonaws.com/photos/cat%20pic.jpg?versionId=3",
                         expires=300, now=NOW)
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Credential"] == f"{ACCESS_KEY}/20231114/us-east-1/s3/aws4_request"
    assert query["X-Amz-Expires"] == "300"
    assert query["X-Amz-SignedHeaders"] == "host"
    assert query["X-Amz-Security-Token"] == "tok"
    assert query["versionId"] == "3"
    assert urlsplit(url).path == "/photos/cat%20pic.jpg"
    verifier = make_verifier(service="s3")
    headers = {"Host": "b.s3.amazonaws.com"}
    assert (
        verifier.verify(SignedRequest.of("GET", url, headers, b""), now=NOW + 299).key_id
        == ACCESS_KEY
    )
    with pytest.raises(SignatureExpired):
        verifier.verify(SignedRequest.of("GET", url, headers, b""), now=NOW + 301)
    with pytest.raises(TimestampSkew):
        verifier.verify(SignedRequest.of("GET", url, headers, b""), now=NOW - 1_000)
    with pytest.raises(BadSignature):
        verifier.verify(SignedRequest.of("PUT", url, headers, b""), now=NOW)
    with pytest.raises(BadSignature):
        verifier.verify(
            SignedRequest.of("GET", url.replace("versionId=3", "versionId=4"), headers, b""),
            now=NOW,
        )
    with pytest.raises(BadSignature):
        verifier.verify(
            SignedRequest.of(
                "GET", url.replace("X-Amz-Expires=300", "X-Amz-Expires=900"), headers, b""
            ),
            now=NOW,
        )
    with pytest.raises(MissingHeader):
        verifier.verify(
            SignedRequest.of("GET", url.replace("X-Amz-Date=", "X-Amz-Datum="), headers, b""),
            now=NOW,
        )
    with pytest.raises(MalformedSignature):  # a parameter given twice
        verifier.verify(SignedRequest.of("GET", url + "&X-Amz-Expires=300", headers, b""), now=NOW)
    header_signed = signer.sign(HttpRequest("GET", url, {}, b""), now=NOW)
    with pytest.raises(MalformedSignature):  # two authentication mechanisms at once
        verifier.verify(SignedRequest.of("GET", url, {**headers, **header_signed}, b""), now=NOW)


def test_presign_refuses_what_no_message_can_carry_and_reads_header_pairs_once():
    signer = make_signer(service="s3")
    for url, headers in (("https://b.s3.amazonaws.com/k\ud800", None),
                         ("https://b.s3.amazonaws.com]/k", None),
                         ("https://b.s3.amazonaws.com/k", iter([("x-amz-meta-a", "\udcff")]))):
        with pytest.raises(SigningError, match="cannot sign"):
            signer.presign("GET", url, headers=headers, now=NOW)
    # header pairs from a generator: checked, then signed (read once, not lost)
    url = signer.presign("GET", "https://b.s3.amazonaws.com/k",
                         headers=(pair for pair in [("x-amz-meta-a", "1")]), now=NOW)
    assert dict(parse_qsl(urlsplit(url).query))["X-Amz-SignedHeaders"] == "host;x-amz-meta-a"
    request = SignedRequest.of("GET", url, {"Host": "b.s3.amazonaws.com", "X-Amz-Meta-A": "1"})
    assert make_verifier(service="s3").verify(request, now=NOW).key_id == ACCESS_KEY


def test_credentials_secret_must_have_a_utf8_encoding():
    with pytest.raises(ConfigurationError, match="secret_key"):
        SigV4Credentials(ACCESS_KEY, "secret\ud800")


def test_presign_non_s3_signs_the_body_hash():
    signer = make_signer()
    url = signer.presign("POST", "https://api.example.com/v1/x", body=BODY, now=NOW)
    verifier = make_verifier()
    headers = {"Host": "api.example.com"}
    assert (
        verifier.verify(SignedRequest.of("POST", url, headers, BODY), now=NOW).key_id == ACCESS_KEY
    )
    with pytest.raises(BadSignature):
        verifier.verify(SignedRequest.of("POST", url, headers, b"other"), now=NOW)


# -- SigningAuth.sigv4 end to end -----------------------------------------------------------

WAYS = (
    "requests_session_auth",
    "surefoot_client",
    "surefoot_httpx_client",
    "surefoot_httpx_async_client",
    "httpx_client_auth",
    "httpx_async_client_auth",
)
# Ways that run surefoot's pipeline (_core/_pipeline.py), which gives attempt_headers
# only the headers it adds itself (e.g. Idempotency-Key), not the request's own headers.
PIPELINE_WAYS = {"surefoot_client", "surefoot_httpx_client", "surefoot_httpx_async_client"}


def quiet(event: surefoot.Event) -> None:
    return None


def send(way: str, base: str, auth: Any, method: str, path: str, *, body: bytes | None = None,
         **kwargs: Any) -> Any:
    """One request through ``way``; returns the sandbox's echo."""
    url = base + path
    if way == "requests_session_auth":
        with requests.Session() as session:
            session.auth = auth
            response: Any = session.request(method, url, data=body, timeout=10, **kwargs)
    elif way == "surefoot_client":
        with surefoot.Client(base, auth=auth, hook=quiet) as api:
            response = api.request(method, path, data=body, **kwargs)
    elif way in ("surefoot_httpx_client", "surefoot_httpx_async_client"):
        kind = "httpx_sync" if way == "surefoot_httpx_client" else "httpx_async"
        api = Api(kind, base, auth=auth, hook=quiet)
        try:
            response = api.request(method, path, body=body, **kwargs)
        finally:
            api.close()
    elif way == "httpx_client_auth":
        with httpx.Client(auth=auth, timeout=10) as client:
            response = client.request(method, url, content=body, **kwargs)
    else:

        async def main() -> httpx.Response:
            async with httpx.AsyncClient(auth=auth, timeout=10) as client:
                return await client.request(method, url, content=body, **kwargs)

        response = asyncio.run(main())
    assert response.status_code == 200, response.text
    return response.json()


def verify_echo(echo: dict[str, Any], verifier: SigV4Verifier) -> dict[str, str]:
    """Verify what the server received; return the Authorization fields."""
    assert (
        verifier.verify(
            SignedRequest.of(
                echo["method"], echo["url"], echo["headers"], echo["data"].encode("utf-8")
            ),
            now=time.time(),
        ).key_id
        == ACCESS_KEY
    )
    authorization = next(v for k, v in echo["headers"].items() if k.lower() == "authorization")
    return authz_fields(authorization)


@pytest.fixture(params=WAYS)
def way(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_auth_get_with_query_and_odd_path(sandbox, way):
    auth = SigningAuth.sigv4(ACCESS_KEY, SECRET_KEY, REGION, "execute-api")
    echo = send(way, sandbox.url, auth, "GET", "/anything/a%20b/$x/caf%C3%A9",
                params=[("b", "2"), ("a", "1"), ("a", "0"), ("sp", "a b+c/d")])
    fields = verify_echo(echo, make_verifier())
    assert fields["SignedHeaders"] == "host;x-amz-date"


def test_auth_post_json_signs_content_type(sandbox, way):
    auth = SigningAuth.sigv4(ACCESS_KEY, SECRET_KEY, REGION, "execute-api")
    echo = send(way, sandbox.url, auth, "POST", "/anything/orders", json={"sku": "book"})
    fields = verify_echo(echo, make_verifier())
    assert fields["SignedHeaders"] == "content-type;host;x-amz-date"


def test_auth_post_verifies_on_every_way(sandbox, way):
    auth = SigningAuth.sigv4(ACCESS_KEY, SECRET_KEY, REGION, "execute-api")
    echo = send(way, sandbox.url, auth, "POST", "/anything/orders?dry_run=1",
                json={"sku": "book", "note": "café"})
    verify_echo(echo, make_verifier())


def test_auth_s3_put_with_amz_headers_and_session_token(sandbox, way):
    auth = SigningAuth.sigv4(
        ACCESS_KEY, SECRET_KEY, REGION, "s3", session_token="FQoGZXIvYXdzE//tok="
    )
    echo = send(way, sandbox.url, auth, "PUT", "/anything/bucket/photos//cat%20pic.jpg",
                body=b"\x00binary-ish but utf-8 safe",
                headers={"x-amz-meta-colour": "ginger   tabby", "Content-Type": "image/jpeg"})
    fields = verify_echo(echo, make_verifier(service="s3"))
    assert fields["SignedHeaders"] == (
        "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-colour;"
        "x-amz-security-token"
    )
    received = {k.lower(): v for k, v in echo["headers"].items()}
    assert received["x-amz-content-sha256"] == hashlib.sha256(
        b"\x00binary-ish but utf-8 safe"
    ).hexdigest()
    assert received["x-amz-security-token"] == "FQoGZXIvYXdzE//tok="


def test_auth_s3_unsigned_payload(sandbox, way):
    auth = SigningAuth.sigv4(ACCESS_KEY, SECRET_KEY, REGION, "s3", unsigned_payload=True)
    echo = send(way, sandbox.url, auth, "PUT", "/anything/bucket/key", body=b"data")
    received = {k.lower(): v for k, v in echo["headers"].items()}
    assert received["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    verify_echo(echo, make_verifier(service="s3"))
    with pytest.raises(BodyDigestMismatch):
        make_verifier(service="s3", allow_unsigned_payload=False).verify(
            SignedRequest.of(echo["method"], echo["url"], echo["headers"], b"data"), now=time.time()
        )


def test_every_attempt_is_signed_afresh(sandbox, no_wait):
    """Each retry gets a new X-Amz-Date and signature (httpx: the wire is recorded)."""
    sent: list[httpx.Request] = []
    auth = SigningAuth.sigv4(ACCESS_KEY, SECRET_KEY, REGION, "execute-api")
    api = Api("httpx_sync", sandbox.url, auth=auth, hook=quiet,
              retry=RetryPolicy(max_attempts=3), **recording_transport("httpx_sync", sent))
    try:
        response = api.get("/status/503", params={"retry_after": "2"})
    finally:
        api.close()
    assert response.status_code == 503
    assert len(sent) == 3
    dates = [r.headers["x-amz-date"] for r in sent]
    signatures = [r.headers["authorization"] for r in sent]
    assert len(set(dates)) == 3
    assert len(set(signatures)) == 3
    verifier = make_verifier(clock=no_wait)
    for r in sent:
        verifier.verify(
            SignedRequest.of(r.method, str(r.url), r.headers, r.content),
            now=_sigv4._utc_seconds(r.headers["x-amz-date"]),
        )


def test_signature_headers_do_not_follow_a_redirect_to_another_origin(sandbox):
    elsewhere = sandbox.url.replace("127.0.0.1", "localhost") + "/anything"
    auth = SigningAuth.sigv4(ACCESS_KEY, SECRET_KEY, REGION, "execute-api", session_token="tok")
    with surefoot.Client(sandbox.url, auth=auth, hook=quiet) as api:
        response = api.get("/redirect-to", params={"url": elsewhere})
    assert response.status_code == 200
    received = {k.lower() for k in response.json()["headers"]}
    assert not received & {"authorization", "x-amz-date", "x-amz-security-token"}


def test_same_origin_redirect_is_re_signed(sandbox):
    auth = SigningAuth.sigv4(ACCESS_KEY, SECRET_KEY, REGION, "execute-api")
    with requests.Session() as session:
        session.auth = auth
        response = session.get(sandbox.url + "/redirect-to",
                               params={"url": "/anything/after?x=1"}, timeout=10)
    assert [r.status_code for r in response.history] == [302]
    verify_echo(response.json(), make_verifier())


def test_presign_through_the_auth_object(sandbox):
    auth = SigningAuth.sigv4(ACCESS_KEY, SECRET_KEY, REGION, "s3")
    url = auth.signer.presign("GET", sandbox.url + "/anything/bucket/key?x=1", expires=60)
    echo = requests.get(url, timeout=10).json()
    assert (
        make_verifier(service="s3")
        .verify(
            SignedRequest.of(echo["method"], echo["url"], echo["headers"], b""), now=time.time()
        )
        .key_id
        == ACCESS_KEY
    )


def test_auth_from_credentials_provider(sandbox):
    calls: list[int] = []

    def provider() -> SigV4Credentials:
        calls.append(1)
        return SigV4Credentials(ACCESS_KEY, SECRET_KEY, f"token-{len(calls)}")

    auth = SigningAuth(SigV4Signer(provider, REGION, "execute-api"))
    with httpx.Client(auth=auth, timeout=10) as client:
        for _ in range(2):
            echo = client.get(sandbox.url + "/anything").json()
            verify_echo(echo, make_verifier())
    assert len(calls) == 2
    assert echo["headers"]["X-Amz-Security-Token"] == "token-2"


def test_repeated_headers_on_httpx_are_signed_as_sent(sandbox):
    """httpx sends repeated headers as separate lines; the server joins them with ","."""
    auth = SigningAuth.sigv4(ACCESS_KEY, SECRET_KEY, REGION, "execute-api")
    with httpx.Client(auth=auth, timeout=10) as client:
        response = client.get(
            sandbox.url + "/anything",
            headers=[("X-Amz-Meta-Tag", "a"), ("X-Amz-Meta-Tag", "b  c")],
        )
    echo = response.json()
    assert echo["headers"]["X-Amz-Meta-Tag"] == "a,b  c"
    fields = verify_echo(echo, make_verifier())
    assert fields["SignedHeaders"] == "host;x-amz-date;x-amz-meta-tag"


# -- differential: botocore -----------------------------------------------------------------


@pytest.mark.parametrize("service", ["execute-api", "s3"])
def test_same_signatures_as_botocore(service: str):
    """Byte-identical Authorization headers to botocore's SigV4Auth / S3SigV4Auth on
    random paths, queries, bodies, session tokens and header values (needs botocore;
    the benchmark's dependency)."""
    import datetime
    import random
    from unittest import mock
    from urllib.parse import quote

    import botocore.auth as ba  # in the dev extras: this test must run, not skip
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    moment = datetime.datetime(2023, 11, 14, 22, 13, 20)
    rng = random.Random(7)
    alphabet = "aZ09-_.~ !$&'()*+,;=:@%é/"

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))

    auth_class = ba.S3SigV4Auth if service == "s3" else ba.SigV4Auth
    for _ in range(150):
        token = "tok/123+=" if rng.random() < 0.3 else None
        path = "/" + "/".join(quote(text(), safe="/~") for _ in range(rng.randint(0, 3)))
        query = "&".join(
            f"{quote(text(), safe='-_.~')}={quote(text(), safe='-_.~')}"
            for _ in range(rng.randint(0, 3))
        )
        url = "https://api.example.com" + path + (f"?{query}" if query else "")
        body = rng.choice([b"", BODY, bytes(range(50))])
        headers = {"Content-Type": "application/json", "X-Amz-Meta-K": "  v   w "}
        request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
        with mock.patch.object(ba, "get_current_datetime", return_value=moment):
            auth_class(Credentials(ACCESS_KEY, SECRET_KEY, token), service, REGION).add_auth(
                request
            )
        ours = make_signer(
            credentials=SigV4Credentials(ACCESS_KEY, SECRET_KEY, token), service=service
        ).sign(HttpRequest("POST", url, headers, body or b""), now=NOW)
        assert ours["Authorization"] == request.headers["Authorization"], url


# -- replays are keyed on the resolved key, not the access key id as sent ------------------


def test_replay_under_another_spelling_of_the_access_key_is_rejected():
    """The access key id is not signed (only the credential scope is): with a lookup that
    ignores case, the same request sent again with ``Credential=akidexample/...`` must
    still be a replay."""
    verifier = SigV4Verifier(lambda k: SECRET_KEY if k.upper() == ACCESS_KEY else None,
                             region=REGION, service="execute-api", nonces=MemoryNonceCache())
    method, url, headers, body = signed_request()
    assert verifier.verify(SignedRequest.of(method, url, headers, body), now=NOW).key_id == (
        ACCESS_KEY)
    respelt = CaseInsensitiveDict(headers)
    respelt["Authorization"] = headers["Authorization"].replace(
        f"Credential={ACCESS_KEY}/", f"Credential={ACCESS_KEY.lower()}/")
    assert respelt["Authorization"] != headers["Authorization"]
    with pytest.raises(ReplayedNonce):
        verifier.verify(SignedRequest.of(method, url, respelt, body), now=NOW + 1)


def test_replay_under_an_alias_of_the_access_key_is_rejected():
    verifier = SigV4Verifier({ACCESS_KEY: SECRET_KEY, "AKIDALIAS": SECRET_KEY},
                             region=REGION, service="execute-api", nonces=MemoryNonceCache())
    method, url, headers, body = signed_request()
    verifier.verify(SignedRequest.of(method, url, headers, body), now=NOW)
    alias = CaseInsensitiveDict(headers)
    alias["Authorization"] = headers["Authorization"].replace(ACCESS_KEY, "AKIDALIAS")
    with pytest.raises(ReplayedNonce):
        verifier.verify(SignedRequest.of(method, url, alias, body), now=NOW + 1)


# -- presigned URLs: smuggled or repeated X-Amz-* parameters ---------------------------------

PRESIGN_TARGET = "https://b.s3.amazonaws.com/photos/cat.jpg?versionId=3"
PRESIGN_HOST = {"Host": "b.s3.amazonaws.com"}


def presigned_url() -> str:
    return make_signer(service="s3").presign("GET", PRESIGN_TARGET, expires=300, now=NOW)


@pytest.mark.parametrize("extra", [
    "X%2DAmz-Signature=" + "0" * 64,           # an encoded name: the canonical query
    "X-Amz%2DSignature=" + "0" * 64,           # drops it with the real signature
    "%58%2D%41mz%2D%53ignature=" + "0" * 64,
    "X%2DAmz-Signature=evil",
    "X%2DAmz-Expires=900",                     # any X-Amz-* parameter given twice
    "X-Amz-%45xpires=300",
    "X%2DAmz-Credential=AKIDEXAMPLE%2F20231114%2Fus-east-1%2Fs3%2Faws4_request",
    "X-Amz-Algorithm=AWS4-HMAC-SHA256",
])
def test_presign_smuggled_or_repeated_auth_parameter_is_refused(extra: str):
    url = presigned_url()
    verifier = make_verifier(service="s3")
    verifier.verify(SignedRequest.of("GET", url, PRESIGN_HOST, b""), now=NOW)
    with pytest.raises(MalformedSignature):
        verifier.verify(SignedRequest.of("GET", f"{url}&{extra}", PRESIGN_HOST, b""), now=NOW)
    # wherever it is put
    base, _, query = url.partition("?")
    with pytest.raises(MalformedSignature):
        verifier.verify(SignedRequest.of("GET", f"{base}?{extra}&{query}", PRESIGN_HOST, b""),
                        now=NOW)


def test_presign_auth_parameter_names_are_case_sensitive_and_decoded():
    url = presigned_url()
    verifier = make_verifier(service="s3")
    # Another case is another parameter (as for AWS): it is signed, so it cannot be added.
    with pytest.raises(BadSignature):
        verifier.verify(
            SignedRequest.of("GET", url + "&x-amz-signature=" + "0" * 64, PRESIGN_HOST, b""),
            now=NOW)
    # An encoded name is the same name: the URL is the same URL.
    encoded = url.replace("X-Amz-Signature=", "X%2DAmz-Signature=")
    assert encoded != url
    assert verifier.verify(SignedRequest.of("GET", encoded, PRESIGN_HOST, b""),
                           now=NOW).key_id == ACCESS_KEY


# -- presign and sign_session_token=False ----------------------------------------------------


def test_presign_leaves_the_session_token_unsigned_with_sign_session_token_false():
    with_token = SigV4Credentials(ACCESS_KEY, SECRET_KEY, "tok/en+=")
    plain = make_signer(service="s3").presign("GET", PRESIGN_TARGET, expires=300, now=NOW)
    after = make_signer(service="s3", credentials=with_token, sign_session_token=False).presign(
        "GET", PRESIGN_TARGET, expires=300, now=NOW)
    # The token is appended after the signature, which is the token-less one.
    assert after == plain + "&X-Amz-Security-Token=tok%2Fen%2B%3D"
    signed = make_signer(service="s3", credentials=with_token).presign(
        "GET", PRESIGN_TARGET, expires=300, now=NOW)
    query = dict(parse_qsl(urlsplit(signed).query))
    assert query["X-Amz-Security-Token"] == "tok/en+="
    assert query["X-Amz-Signature"] != dict(parse_qsl(urlsplit(plain).query))["X-Amz-Signature"]
    assert make_verifier(service="s3").verify(
        SignedRequest.of("GET", signed, PRESIGN_HOST, b""), now=NOW).key_id == ACCESS_KEY


# -- an empty header name is refused, never signed --------------------------------------------


@pytest.mark.parametrize("signed_headers", ["all", ()])
def test_empty_header_name_is_refused(signed_headers: Any):
    signer = make_signer(signed_headers=signed_headers)
    for headers in ({"": "x"}, [("", "x")], [(" ", "x")], CaseInsensitiveDict({"": "x"})):
        with pytest.raises(SigningError):
            signer.sign(HttpRequest("GET", URL, headers, b""), now=NOW)
        with pytest.raises(SigningError):
            signer.presign("GET", URL, headers=headers, now=NOW)
    with pytest.raises(SigningError):
        canonical_headers([("host", "a"), ("", "x")])


def test_empty_signed_header_name_is_a_configuration_error():
    for names in ([""], ["x-custom", " "]):
        with pytest.raises(ConfigurationError):
            make_signer(signed_headers=names)
