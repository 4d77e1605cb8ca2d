"""RFC 9421 HTTP Message Signatures: the RFC's examples (tests/signing/vectors/rfc9421), every
derived component, the field parameters, the verifier's policy and errors, and the auth
object signing through surefoot's clients (requests and httpx) against the sandbox."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from surefoot.errors import (
    BadSignature,
    BodyDigestMismatch,
    ConfigurationError,
    DisallowedAlgorithm,
    InsufficientCoverage,
    MalformedSignature,
    MissingComponent,
    MissingHeader,
    PolicyViolation,
    ReplayedNonce,
    SignatureError,
    SignatureExpired,
    SigningError,
    TagMismatch,
    TimestampSkew,
    UnknownKey,
)
from surefoot.signing import (
    Component,
    HttpRequest,
    MessageSigner,
    MessageVerifier,
    RelatedRequest,
    SignatureKey,
    SignedRequest,
    VerifiedSignature,
    content_digest,
    verify_content_digest,
)
from surefoot.signing._rfc9421 import ALGORITHMS
from surefoot.stores import MemoryNonceCache

VECTORS = Path(__file__).parent / "vectors" / "rfc9421"
CREATED = 1618884473  # the examples' created time


# --- reading the RFC text ------------------------------------------------------------


def unwrap(block: str) -> str:
    """Undo RFC 8792 single-backslash line wrapping."""
    lines = block.split("\n")
    if not lines[0].startswith("NOTE: '\\' line wrapping per RFC 8792"):
        return block
    assert lines[1] == ""
    return re.sub(r"\\\n[ ]*", "", "\n".join(lines[2:]))


def sections(text: str) -> dict[str, list[str]]:
    """Heading → the (unwrapped) code blocks under it, in order."""
    out: dict[str, list[str]] = {}
    heading = ""
    for part in re.split(r"(?m)^(#+ .*)$", text):
        if part.startswith("#"):
            heading = part.lstrip("#").strip()
            heading = re.sub(r"\s*\{#.*\}$", "", heading)
            out.setdefault(heading, [])
        else:
            blocks = re.findall(r"(?ms)^~~~[^\n]*\n(.*?)\n~~~$", part)
            out.setdefault(heading, []).extend(unwrap(b) for b in blocks)
    return out


def parse_message(text: str) -> tuple[str, list[tuple[str, str]], bytes]:
    head, _, body = text.partition("\n\n")
    start, *lines = head.split("\n")
    headers = [(n, v.strip()) for n, _, v in (line.partition(":") for line in lines)]
    return start, headers, body.encode()


def signature_fields(block: str) -> dict[str, str]:
    """The Signature-Input and Signature lines of an example's header block."""
    out = {}
    for line in block.split("\n"):
        name, _, value = line.partition(": ")
        if name in ("Signature-Input", "Signature"):
            out[name] = value
    return out


APPENDIX = sections((VECTORS / "appendix-b-examples.md").read_text())
TEST_CASES = APPENDIX["Test Cases"]
REQUEST_LINE, REQUEST_HEADERS, REQUEST_BODY = parse_message(TEST_CASES[0])
RESPONSE_LINE, RESPONSE_HEADERS, RESPONSE_BODY = parse_message(TEST_CASES[1])
REQUEST_URL = "https://example.com/foo?param=Value&Pet=dog"
SHARED_SECRET = base64.b64decode(APPENDIX["Example Shared Secret"][0])


def pem(name: str, kind: str) -> bytes:
    return (VECTORS / f"test-key-{name}.{kind}").read_bytes()


KEY_ALGORITHMS = {
    "test-key-rsa-pss": ("rsa-pss", "rsa-pss-sha512"),
    "test-key-ecc-p256": ("ecc-p256", "ecdsa-p256-sha256"),
    "test-key-ed25519": ("ed25519", "ed25519"),
    "test-key-rsa": ("rsa", "rsa-v1_5-sha256"),
}


def private_key(key_id: str) -> SignatureKey:
    if key_id == "test-shared-secret":
        return SignatureKey("hmac-sha256", SHARED_SECRET, key_id=key_id)
    name, alg = KEY_ALGORITHMS[key_id]
    return SignatureKey.from_pem(alg, pem(name, "key"), key_id=key_id)  # type: ignore[arg-type]


def public_key(key_id: str) -> SignatureKey:
    if key_id == "test-shared-secret":
        return private_key(key_id)
    name, alg = KEY_ALGORITHMS[key_id]
    return SignatureKey.from_pem(alg, pem(name, "pem"), key_id=key_id)  # type: ignore[arg-type]


PUBLIC_KEYS = {key_id: public_key(key_id) for key_id in [*KEY_ALGORITHMS, "test-shared-secret"]}


def rfc_verifier(**kwargs) -> MessageVerifier:
    kwargs.setdefault("max_age", None)
    kwargs.setdefault("required_components", ())
    return MessageVerifier(PUBLIC_KEYS, **kwargs)


# B.2.4 erratum: the signature covers the real SHA-512 of the response body.
REAL_RESPONSE_DIGEST = content_digest(RESPONSE_BODY, "sha-512")
PUBLISHED_RESPONSE_DIGEST = dict(RESPONSE_HEADERS)["Content-Digest"]
FIXED_RESPONSE_HEADERS = [
    (n, REAL_RESPONSE_DIGEST if n == "Content-Digest" else v) for n, v in RESPONSE_HEADERS
]

# (section, label, key id, covered components, other signer options, message kind)
B2_CASES = [
    ("Minimal Signature Using rsa-pss-sha512", "sig-b21", "test-key-rsa-pss", (),
     {"nonce": "b3k2pp5k7z-50gnwp.yemd"}, "request"),
    ("Selective Covered Components using rsa-pss-sha512", "sig-b22", "test-key-rsa-pss",
     ("@authority", "content-digest", '@query-param;name="Pet"'), {"tag": "header-example"},
     "request"),
    ("Full Coverage using rsa-pss-sha512", "sig-b23", "test-key-rsa-pss",
     ("date", "@method", "@path", "@query", "@authority", "content-type", "content-digest",
      "content-length"), {}, "request"),
    ("Signing a Response using ecdsa-p256-sha256", "sig-b24", "test-key-ecc-p256",
     ("@status", "content-type", "content-digest", "content-length"), {}, "response"),
    ("Signing a Request using hmac-sha256", "sig-b25", "test-shared-secret",
     ("date", "@authority", "content-type"), {}, "request"),
    ("Signing a Request using ed25519", "sig-b26", "test-key-ed25519",
     ("date", "@method", "@path", "@authority", "content-type", "content-length"), {},
     "request"),
]
B2_IDS = [case[1] for case in B2_CASES]


def example_signer(label, key_id, components, options) -> MessageSigner:
    return MessageSigner(
        private_key(key_id), components=components, label=label,
        nonce=False, tag=options.get("tag"),
    )


# --- the vectors themselves ----------------------------------------------------------


def test_vectors_are_complete():
    for section, *_ in B2_CASES:
        assert len(APPENDIX[section]) == 2, section
    assert REQUEST_LINE == "POST /foo?param=Value&Pet=dog HTTP/1.1"
    assert RESPONSE_LINE == "HTTP/1.1 200 OK"
    assert len(SHARED_SECRET) == 64


@pytest.mark.parametrize("key_id", list(KEY_ALGORITHMS))
def test_key_files_match_the_appendix_text(key_id):
    name, _ = KEY_ALGORITHMS[key_id]
    text = (VECTORS / "appendix-b-examples.md").read_text()
    for kind in ("key", "pem"):
        assert pem(name, kind).decode().strip() in text


def test_request_content_digest_is_the_bodys_sha512():
    assert dict(REQUEST_HEADERS)["Content-Digest"] == content_digest(REQUEST_BODY, "sha-512")
    verify_content_digest(dict(REQUEST_HEADERS)["Content-Digest"], REQUEST_BODY)


def test_b24_erratum_published_response_digest_does_not_match_the_body():
    assert REAL_RESPONSE_DIGEST.startswith("sha-512=:mEWXIS7M")
    assert PUBLISHED_RESPONSE_DIGEST.startswith("sha-512=:JlEy2")
    with pytest.raises(BodyDigestMismatch):
        verify_content_digest(PUBLISHED_RESPONSE_DIGEST, RESPONSE_BODY)
    # ... and the published signature does not verify over the published digest.
    section, label, key_id, *_ = B2_CASES[3]
    fields = signature_fields(APPENDIX[section][1])
    headers = [*RESPONSE_HEADERS, *fields.items()]
    with pytest.raises(BadSignature):
        rfc_verifier().verify_response(200, headers, now=CREATED)


@pytest.mark.parametrize(("section", "label", "key_id", "components", "options", "kind"),
                         B2_CASES, ids=B2_IDS)
def test_b2_signature_base_is_reproduced(section, label, key_id, components, options, kind):
    expected_base, _ = APPENDIX[section]
    signer = example_signer(label, key_id, components, options)
    nonce = options.get("nonce")
    if kind == "request":
        base, _ = signer.request_base(
            HttpRequest("POST", REQUEST_URL, REQUEST_HEADERS), now=CREATED, nonce=nonce
        )
    else:
        base, _ = signer.response_base(200, FIXED_RESPONSE_HEADERS, now=CREATED)
    assert base == expected_base


@pytest.mark.parametrize(("section", "label", "key_id", "components", "options", "kind"),
                         B2_CASES, ids=B2_IDS)
def test_b2_published_signature_verifies(section, label, key_id, components, options, kind):
    _, header_block = APPENDIX[section]
    fields = signature_fields(header_block)
    verifier = rfc_verifier(expected_tag=options.get("tag"))
    if kind == "request":
        headers = [*REQUEST_HEADERS, *fields.items()]
        result = verifier.verify(
            SignedRequest.of("POST", REQUEST_URL, headers, REQUEST_BODY), now=CREATED + 5
        ).signature
    else:
        headers = [*FIXED_RESPONSE_HEADERS, *fields.items()]
        result = verifier.verify_response(200, headers, body=RESPONSE_BODY, now=CREATED + 5)
    assert result.label == label
    assert result.key_id == key_id
    assert result.created == CREATED
    assert result.nonce == options.get("nonce")
    assert result.tag == options.get("tag")
    assert result.covered == tuple(Component.parse(c).identifier for c in components)


@pytest.mark.parametrize("case", [B2_CASES[4], B2_CASES[5]], ids=["sig-b25", "sig-b26"])
def test_b25_b26_deterministic_signatures_match_byte_for_byte(case):
    section, label, key_id, components, options, _ = case
    _, header_block = APPENDIX[section]
    signer = example_signer(label, key_id, components, options)
    signed = signer.sign(HttpRequest("POST", REQUEST_URL, REQUEST_HEADERS), now=CREATED)
    assert signed == signature_fields(header_block)


@pytest.mark.parametrize("case", B2_CASES[:4], ids=B2_IDS[:4])
def test_b21_b24_fresh_nondeterministic_signatures_verify(case):
    section, label, key_id, components, options, kind = case
    signer = example_signer(label, key_id, components, options)
    verifier = rfc_verifier(expected_tag=options.get("tag"))
    if kind == "request":
        signed = signer.sign(
            HttpRequest("POST", REQUEST_URL, REQUEST_HEADERS),
            now=CREATED,
            nonce=options.get("nonce"),
        )
        fields = signature_fields(APPENDIX[section][1])
        assert signed["Signature-Input"] == fields["Signature-Input"]
        assert signed["Signature"] != fields["Signature"]  # randomised algorithms
        received = [*REQUEST_HEADERS, *signed.items()]
        verifier.verify(SignedRequest.of("POST", REQUEST_URL, received, REQUEST_BODY), now=CREATED)
    else:
        signed = signer.sign_response(200, FIXED_RESPONSE_HEADERS, now=CREATED)
        verifier.verify_response(200, [*FIXED_RESPONSE_HEADERS, *signed.items()],
                                 now=CREATED)


def test_section_3_2_example_verifies():
    blocks = sections((VECTORS / "section-3.2-example.md").read_text())
    (message, expected_base), = [b for b in blocks.values() if b]
    _, headers, body = parse_message(message)
    verifier = MessageVerifier(PUBLIC_KEYS, max_age=60, require_content_digest=True,
                               required_components=["@method", "@authority", "@path"])
    result = verifier.verify(
        SignedRequest.of("POST", REQUEST_URL, headers, body), now=CREATED + 1
    ).signature
    with pytest.raises(InsufficientCoverage):  # the query is not signed in this example
        MessageVerifier(PUBLIC_KEYS, max_age=None).verify(
            SignedRequest.of("POST", REQUEST_URL, headers), now=CREATED
        )
    assert result.key_id == "test-key-rsa-pss"
    assert result.algorithm == "rsa-pss-sha512"
    signer = MessageSigner(
        private_key("test-key-rsa-pss"), nonce=False,
        components=("@method", "@authority", "@path", "content-digest", "content-length",
                    "content-type"),
    )
    base, _ = signer.request_base(HttpRequest("POST", REQUEST_URL, headers), now=CREATED)
    assert base == expected_base


def test_b3_tls_terminating_proxy_example():
    blocks = APPENDIX["TLS-Terminating Proxies"]
    _, _, expected_base, signature, signed_message = blocks
    _, headers, body = parse_message(signed_message)
    url = "https://service.internal.example/foo?param=Value&Pet=dog"
    result = (
        MessageVerifier(PUBLIC_KEYS, max_age=None)
        .verify(SignedRequest.of("POST", url, headers), now=CREATED)
        .signature
    )
    assert result.label == "ttrp"
    assert dict(headers)["Signature"] == f"ttrp=:{signature.replace(chr(10), '')}:"
    signer = MessageSigner(
        private_key("test-key-ecc-p256"), nonce=False, label="ttrp",
        components=("@path", "@query", "@method", "@authority", "client-cert"),
    )
    unsigned = [(n, v) for n, v in headers if not n.startswith("Signature")]
    assert signer.request_base(HttpRequest("POST", url, unsigned), now=CREATED)[0] == expected_base
    fresh = signer.sign(HttpRequest("POST", url, unsigned), now=CREATED)
    MessageVerifier(PUBLIC_KEYS, max_age=None).verify(
        SignedRequest.of("POST", url, [*unsigned, *fresh.items()]), now=CREATED
    )


# --- derived components (RFC 9421 §2.2 examples) -------------------------------------


def base_lines(components, *, method="POST", url="https://www.example.com/path?param=value",
               headers=(), status=None, request=None, sf_types=None):
    signer = MessageSigner(SignatureKey("hmac-sha256", b"k" * 32), components=components,
                           created=False, nonce=False, sf_types=sf_types)
    if status is None:
        base, _ = signer.request_base(HttpRequest(method, url, list(headers)))
    else:
        base, _ = signer.response_base(status, list(headers), request=request)
    return base.split("\n")[:-1]


@pytest.mark.parametrize(("component", "url", "expected"), [
    ("@method", "https://www.example.com/path?param=value", "POST"),
    ("@target-uri", "https://www.example.com/path?param=value",
     "https://www.example.com/path?param=value"),
    ("@authority", "https://www.example.com/path?param=value", "www.example.com"),
    ("@authority", "https://WWW.Example.COM:443/path", "www.example.com"),
    ("@authority", "http://www.example.com:80/path", "www.example.com"),
    ("@authority", "http://www.example.com:8080/path", "www.example.com:8080"),
    ("@authority", "http://user:pw@www.example.com/path", "www.example.com"),
    ("@authority", "http://[::1]:8080/path", "[::1]:8080"),
    ("@scheme", "http://www.example.com/path?param=value", "http"),
    ("@scheme", "HTTPS://www.example.com/", "https"),
    ("@request-target", "https://www.example.com/path?param=value", "/path?param=value"),
    ("@request-target", "https://www.example.com/path", "/path"),
    ("@request-target", "https://www.example.com", "/"),
    ("@path", "https://www.example.com/path?param=value", "/path"),
    ("@path", "https://www.example.com", "/"),
    ("@path", "https://www.example.com/a%2Fb/c%20d", "/a%2Fb/c%20d"),
    ("@query", "https://www.example.com/path?param=value&foo=bar&baz=bat%2Dman",
     "?param=value&foo=bar&baz=bat%2Dman"),
    ("@query", "https://www.example.com/path?queryString", "?queryString"),
    ("@query", "https://www.example.com/path", "?"),
])
def test_derived_components(component, url, expected):
    assert base_lines([component], url=url) == [f'"{component}": {expected}']


def test_method_is_not_case_folded():
    assert base_lines(["@method"], method="get") == ['"@method": get']


@pytest.mark.parametrize(("name", "expected"), [
    ("baz", "batman"), ("qux", ""), ("param", "value"),
])
def test_query_param(name, expected):
    url = "https://www.example.com/path?param=value&foo=bar&baz=batman&qux="
    assert base_lines([f'@query-param;name="{name}"'], url=url) == [
        f'"@query-param";name="{name}": {expected}'
    ]


@pytest.mark.parametrize(("name", "expected"), [
    ("var", "this%20is%20a%20big%0Amultiline%20value"),
    ("bar", "with%20plus%20whitespace"),
    ("fa%C3%A7ade%22%3A%20", "something"),
])
def test_query_param_reencoding(name, expected):
    url = ("https://www.example.com/parameters?var=this%20is%20a%20big%0Amultiline%20value"
           "&bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something")
    assert base_lines([Component("@query-param", (("name", name),))], url=url) == [
        f'"@query-param";name="{name}": {expected}'
    ]


def test_query_param_absent_or_repeated_cannot_be_signed():
    comp = '@query-param;name="a"'
    with pytest.raises(SigningError):
        base_lines([comp], url="https://x.example/p?b=1")
    with pytest.raises(SigningError):
        base_lines([comp], url="https://x.example/p?a=1&a=2")


def test_status():
    assert base_lines(["@status"], status=200) == ['"@status": 200']
    with pytest.raises(SigningError):
        base_lines(["@status"])  # a request has no status


def test_request_derived_component_in_response_needs_req():
    with pytest.raises(SigningError):
        base_lines(["@method"], status=200)


# --- fields (RFC 9421 §2.1 examples) --------------------------------------------------

FIELDS = [
    ("Host", "www.example.com"),
    ("Date", "Tue, 20 Apr 2021 02:07:56 GMT"),
    ("X-OWS-Header", "   Leading and trailing whitespace.   "),
    ("Cache-Control", "max-age=60"),
    ("Cache-Control", "   must-revalidate"),
    ("Example-Dict", " a=1,    b=2;x=1;y=2,   c=(a   b   c)"),
    ("X-Empty-Header", ""),
]


def test_field_values():
    lines = base_lines(["host", "date", "x-ows-header", "cache-control", "example-dict",
                        "x-empty-header"], headers=FIELDS)
    assert lines == [
        '"host": www.example.com',
        '"date": Tue, 20 Apr 2021 02:07:56 GMT',
        '"x-ows-header": Leading and trailing whitespace.',
        '"cache-control": max-age=60, must-revalidate',
        '"example-dict": a=1,    b=2;x=1;y=2,   c=(a   b   c)',
        '"x-empty-header": ',
    ]


def test_field_names_in_any_case_and_mapping_kinds():
    import httpx
    import requests

    for headers in ({"content-type": "a/b"}, {"Content-Type": "a/b"},
                    requests.structures.CaseInsensitiveDict({"CONTENT-TYPE": "a/b"}),
                    httpx.Headers({"Content-Type": "a/b"}), [("Content-TYPE", "a/b")]):
        signer = MessageSigner(SignatureKey("hmac-sha256", b"k"), components=["Content-Type"],
                               created=False, nonce=False)
        assert signer.request_base(HttpRequest("GET", "https://x.example/", headers))[0].startswith(
            '"content-type": a/b\n')


def test_httpx_headers_keep_their_field_lines_for_bs():
    import httpx

    headers = httpx.Headers([("Example-Header", "value, with, lots"),
                             ("Example-Header", "of, commas")])
    assert base_lines(["example-header;bs"], headers=headers.multi_items()) == [
        '"example-header";bs: :dmFsdWUsIHdpdGgsIGxvdHM=:, :b2YsIGNvbW1hcw==:'
    ]
    signer = MessageSigner(SignatureKey("hmac-sha256", b"k"), components=["example-header;bs"],
                           created=False, nonce=False)
    assert signer.request_base(HttpRequest("GET", "https://x.example/", headers))[0].startswith(
        '"example-header";bs: :dmFsdWUsIHdpdGgsIGxvdHM=:, :b2YsIGNvbW1hcw==:\n')


def test_sf_parameter_reserialises():
    assert base_lines(['"example-dict";sf'], headers=FIELDS,
                      sf_types={"example-dict": "dictionary"}) == [
        '"example-dict";sf: a=1, b=2;x=1;y=2, c=(a b c)'
    ]
    with pytest.raises(SigningError):  # sf on a field of unknown type
        base_lines(['"example-dict";sf'], headers=FIELDS)


@pytest.mark.parametrize(("key", "expected"), [
    ("a", "1"), ("d", "?1"), ("b", "2;x=1;y=2"), ("c", "(a b c)"),
])
def test_key_parameter(key, expected):
    headers = [("Example-Dict", " a=1, b=2;x=1;y=2, c=(a   b    c), d")]
    assert base_lines([f'"example-dict";key="{key}"'], headers=headers) == [
        f'"example-dict";key="{key}": {expected}'
    ]


def test_key_parameter_missing_member():
    with pytest.raises(SigningError):
        base_lines(['"example-dict";key="zz"'], headers=[("Example-Dict", "a=1")])


def test_bs_parameter():
    headers = [("Example-Header", "value, with, lots"), ("Example-Header", "of, commas")]
    assert base_lines(["example-header", "example-header;bs"], headers=headers) == [
        '"example-header": value, with, lots, of, commas',
        '"example-header";bs: :dmFsdWUsIHdpdGgsIGxvdHM=:, :b2YsIGNvbW1hcw==:',
    ]


def test_req_parameter_in_a_response():
    request = RelatedRequest("POST", "https://example.com/foo?param=Value&Pet=dog",
                             REQUEST_HEADERS)
    response_headers = [("Content-Type", "application/json"),
                        ("Content-Digest", content_digest(b"{}", "sha-512"))]
    components = ["@status", "content-digest", "content-type", "@authority;req",
                  "@method;req", "@path;req", "content-digest;req"]
    lines = base_lines(components, status=503, headers=response_headers, request=request)
    assert lines == [
        '"@status": 503',
        f'"content-digest": {content_digest(b"{}", "sha-512")}',
        '"content-type": application/json',
        '"@authority";req: example.com',
        '"@method";req: POST',
        '"@path";req: /foo',
        f'"content-digest";req: {dict(REQUEST_HEADERS)["Content-Digest"]}',
    ]
    signer = MessageSigner(private_key("test-key-ecc-p256"), components=components)
    signed = signer.sign_response(503, response_headers, request=request, now=CREATED)
    verifier = rfc_verifier(required_components=["@status", "@method;req"])
    result = verifier.verify_response(503, [*response_headers, *signed.items()],
                                      request=request, now=CREATED)
    assert '"@method";req' in result.covered
    with pytest.raises(MissingComponent):  # the verifier needs the request too
        verifier.verify_response(503, [*response_headers, *signed.items()], now=CREATED)
    with pytest.raises(SigningError):
        signer.sign_response(503, response_headers, now=CREATED)


def test_missing_field_cannot_be_signed():
    with pytest.raises(SigningError):
        base_lines(["content-type"])


def test_line_breaks_and_non_ascii_are_refused():
    with pytest.raises(SigningError):
        base_lines(["x-a"], headers=[("X-A", "one\r\n two")])
    signer = MessageSigner(SignatureKey("hmac-sha256", b"k"), components=["x-a"])
    with pytest.raises(SigningError):
        signer.sign(HttpRequest("GET", "https://x.example/", [("X-A", "caf\u00e9")]))
    # ... but bs carries them
    assert base_lines(["x-a;bs"], headers=[("X-A", "caf\u00e9")]) == ['"x-a";bs: :Y2Fm6Q==:']


# --- component identifiers -------------------------------------------------------------


@pytest.mark.parametrize(("text", "identifier"), [
    ("@method", '"@method"'),
    ("Content-Type", '"content-type"'),
    ('@query-param;name="Pet"', '"@query-param";name="Pet"'),
    ('"@query-param";name="Pet"', '"@query-param";name="Pet"'),
    ('"example-dict";key="a"', '"example-dict";key="a"'),
    ("date;req", '"date";req'),
    ("content-digest;sf;req", '"content-digest";sf;req'),
    ("x;bs", '"x";bs'),
])
def test_component_parse(text, identifier):
    assert Component.parse(text).identifier == identifier


@pytest.mark.parametrize("text", [
    "@signature-params", "@unknown", "@query-param", '@method;name="x"', "@status;req",
    "x;bs;sf", 'x;bs;key="a"', "x;tr", "x;foo", 'x;sf="yes"', "x;key=1", '@path;sf',
    '"x";name="a"', "bad name", "",
])
def test_component_parse_rejects(text):
    with pytest.raises(ConfigurationError):
        Component.parse(text)


# --- keys and algorithms -----------------------------------------------------------


def fresh_keys():
    return {
        "hmac-sha256": (SignatureKey("hmac-sha256", b"s" * 32),) * 2,
        "ed25519": _pair("ed25519", ed25519.Ed25519PrivateKey.generate()),
        "ecdsa-p256-sha256": _pair("ecdsa-p256-sha256", ec.generate_private_key(ec.SECP256R1())),
        "rsa-pss-sha512": _pair("rsa-pss-sha512", private_key("test-key-rsa-pss")),
        "rsa-v1_5-sha256": _pair("rsa-v1_5-sha256", private_key("test-key-rsa")),
    }


def _pair(alg, key):
    if isinstance(key, SignatureKey):
        name = {"rsa-pss-sha512": "rsa-pss", "rsa-v1_5-sha256": "rsa"}[alg]
        return key, SignatureKey.from_pem(alg, pem(name, "pem"))
    return SignatureKey(alg, key), SignatureKey(alg, key.public_key())


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_every_algorithm_signs_and_verifies(alg):
    private, public = fresh_keys()[alg]
    assert private.algorithm == alg
    signature = private.sign(b"base")
    assert public.verify(b"base", signature)
    assert not public.verify(b"other base", signature)
    assert not public.verify(b"base", signature[:-1] + bytes([signature[-1] ^ 1]))
    assert not public.verify(b"base", b"")
    if alg == "ecdsa-p256-sha256":
        assert len(signature) == 64  # r || s, not DER
    if alg == "ed25519":
        assert len(signature) == 64


def test_ecdsa_rejects_der_encoded_signatures():
    from cryptography.hazmat.primitives import hashes

    raw = ec.generate_private_key(ec.SECP256R1())
    der = raw.sign(b"base", ec.ECDSA(hashes.SHA256()))
    assert not SignatureKey("ecdsa-p256-sha256", raw.public_key()).verify(b"base", der)


def test_public_keys_cannot_sign():
    _, public = fresh_keys()["ed25519"]
    assert not public.can_sign
    with pytest.raises(SigningError):
        public.sign(b"x")
    with pytest.raises(ConfigurationError):
        MessageSigner(public)


@pytest.mark.parametrize(("alg", "key"), [
    ("hmac-sha256", b""),
    ("hmac-sha256", 42),
    ("ed25519", b"not a pem"),
    ("ed25519", "ecc"),
    ("ecdsa-p256-sha256", "ed"),
    ("ecdsa-p256-sha256", "p384"),
    ("rsa-pss-sha512", "ed"),
    ("rsa-v1_5-sha256", "rsa1024"),
    ("nope", b"x"),
])
def test_key_must_suit_the_algorithm(alg, key):
    make = {
        "ecc": lambda: ec.generate_private_key(ec.SECP256R1()),
        "ed": ed25519.Ed25519PrivateKey.generate,
        "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
        "rsa1024": lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024),
    }
    with pytest.raises(ConfigurationError):
        SignatureKey(alg, make[key]() if isinstance(key, str) and key in make else key)


def test_reprs_do_not_contain_secrets():
    key = SignatureKey("hmac-sha256", b"top-secret-value", key_id="kid")
    signer = MessageSigner(key)
    verifier = MessageVerifier({"kid": key})
    for text in (repr(key), repr(signer), repr(verifier)):
        assert "top-secret" not in text
        assert "dG9w" not in text  # nor its base64
    private = private_key("test-key-ed25519")
    assert "PRIVATE" not in repr(private)
    assert "n4Ni" not in repr(private)


def test_signer_configuration_errors():
    key = SignatureKey("hmac-sha256", b"k")
    for kwargs in ({"label": "Sig"}, {"label": ""}, {"label": "a b"}, {"expires_in": 0},
                   {"components": ["@method", "@METHOD".lower()]}, {"tag": "t\u00e9"},
                   {"key_id": "k\n"}):
        with pytest.raises(ConfigurationError):
            MessageSigner(key, **kwargs)
    with pytest.raises(ConfigurationError):
        MessageSigner("not a key")  # type: ignore[arg-type]


def test_verifier_configuration_errors():
    for kwargs in ({"max_age": 0}, {"skew": -1}, {"allowed_algorithms": ["md5"]},
                   {"nonces": MemoryNonceCache(), "max_age": None}, {"nonces": object()}):
        with pytest.raises(ConfigurationError):
            MessageVerifier({}, **kwargs)


@pytest.mark.parametrize(("parameter", "value", "expected"), [
    ("expected_tag", "caf\u00e9", "printable ASCII"),
    ("expected_tag", "a\r\nb", "printable ASCII"),
    ("expected_tag", 1, "printable ASCII"),
    ("label", "sig1\r\nSet-Cookie: a=b", "structured-field key"),
    ("label", "Sig1", "structured-field key"),
    ("label", "1sig", "structured-field key"),
    ("label", "", "structured-field key"),
    ("label", "caf\u00e9", "structured-field key"),
])
def test_verifier_strings_for_structured_fields_are_checked_when_built(
    parameter, value, expected
):
    """What goes into the signature's fields and the challenge's Accept-Signature (tag,
    label) is checked when the verifier is built, not when challenge() would send it (a
    header injected with CR LF, a value no header can carry)."""
    with pytest.raises(ConfigurationError, match=expected) as caught:
        MessageVerifier({}, **{parameter: value})
    assert str(caught.value).startswith(parameter)
    if parameter == "expected_tag":  # the signer's tag alike
        with pytest.raises(ConfigurationError, match="^tag"):
            MessageSigner(SignatureKey("hmac-sha256", b"k"), tag=value)
    if parameter == "label":
        with pytest.raises(ConfigurationError, match="^label"):
            MessageSigner(SignatureKey("hmac-sha256", b"k"), label=value)


def test_verifier_with_a_valid_tag_and_label_challenges_with_them():
    verifier = MessageVerifier({}, expected_tag='a "b" \\ c', label="*sig-1.x_y")
    headers = dict(verifier.challenge(MissingHeader()))
    assert headers["Accept-Signature"].startswith("*sig-1.x_y=(")
    assert headers["Accept-Signature"].endswith(';tag="a \\"b\\" \\\\ c"')


@pytest.mark.parametrize(("parameter", "name"), [("key_id", "key_id"), ("tag", "tag")])
def test_signer_names_the_parameter_that_is_not_an_sf_string(parameter, name):
    with pytest.raises(ConfigurationError, match=f"^{name} must be a structured-field String"):
        MessageSigner(SignatureKey("hmac-sha256", b"k"), **{parameter: "caf\u00e9"})


@pytest.mark.parametrize("sf_types", [{"x-a": "bogus"}, {"x a": "item"}, {"": "list"}, 1])
def test_sf_types_are_checked_when_built(sf_types):
    with pytest.raises(ConfigurationError, match="sf_types"):
        MessageVerifier({}, sf_types=sf_types)
    with pytest.raises(ConfigurationError, match="sf_types"):
        MessageSigner(SignatureKey("hmac-sha256", b"k"), sf_types=sf_types)


@pytest.mark.parametrize("text", ["\u00e9;sf", "caf\u00e9;req", "\ud800;bs", "a\x00;sf",
                                  '"x-a";key="\u00e9"', 'x-a;key="a"b'])
def test_a_component_that_is_no_identifier_is_a_configuration_error_everywhere(text):
    """Component.parse, a signer's components, a verifier's required components and
    VerifiedSignature.covers: a ConfigurationError, never a bare ValueError."""
    key = SignatureKey("hmac-sha256", b"k")
    with pytest.raises(ConfigurationError):
        Component.parse(text)
    with pytest.raises(ConfigurationError):
        MessageSigner(key, components=[text])
    with pytest.raises(ConfigurationError):
        MessageVerifier({}, required_components=[text])
    signature = VerifiedSignature("sig1", "k", "hmac-sha256", ('"@method"',))
    with pytest.raises(ConfigurationError):
        signature.covers(text)


def test_component_parameters_must_be_sf_strings():
    for params in ((("key", "\u00e9"),), (("key", 1),), (("name", "a\nb"),), ((1, True),),
                   (("key",),)):
        with pytest.raises(ConfigurationError):
            Component("x-a", params)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Component(1)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Component.parse(None)  # type: ignore[arg-type]


def test_covers_skips_what_is_not_an_identifier():
    signature = VerifiedSignature("sig1", "k", "hmac-sha256", ("\u00e9;sf", '"@method"'))
    assert signature.covers("@method")
    assert not signature.covers("@path")


def test_verify_response_refuses_what_no_message_can_carry():
    key = SignatureKey("hmac-sha256", b"k", key_id="k")
    verifier = MessageVerifier({"k": key}, required_components=())
    related = RelatedRequest("GET", "http://[/p", {})
    for headers, request in (({"x-a": "\ud800"}, None), ([("x-a", 1)], None), ({}, related),
                             ({}, RelatedRequest("G\udcffT", "https://h/", {}))):
        with pytest.raises(MalformedSignature, match="malformed response"):
            verifier.verify_response(200, headers, request=request, now=CREATED)
    with pytest.raises(MalformedSignature, match="status"):
        verifier.verify_response("200", {}, now=CREATED)  # type: ignore[arg-type]


def test_signer_refuses_what_no_message_can_carry():
    signer = MessageSigner(SignatureKey("hmac-sha256", b"k"), components=["x-a;bs"])
    with pytest.raises(SigningError, match="cannot sign"):
        signer.sign(HttpRequest("GET", "https://h/", {"x-a": "\ud800"}))
    with pytest.raises(SigningError, match="cannot sign"):
        signer.sign_response(200, {"x-a": "\ud800"})
    with pytest.raises(SigningError, match="cannot sign"):
        signer.response_base(200, {"x-a": "ok"}, request=RelatedRequest("GET", "http://h]/"))
    # not signed, not split: a component over an unsplittable URL is refused, typed
    authority = MessageSigner(SignatureKey("hmac-sha256", b"k"), components=["@authority"])
    with pytest.raises(SigningError):
        authority.sign(HttpRequest("GET", "http://[/p", {}))


# --- the signer's parameters --------------------------------------------------------


def test_signature_params_order_and_values():
    key = SignatureKey("hmac-sha256", b"k", key_id='a "quoted" \\ id')
    signer = MessageSigner(key, components=["@method"], expires_in=60.9, include_alg=True,
                           tag="app", nonce_factory=lambda: "n-1")
    signed = signer.sign(HttpRequest("GET", "https://x.example/", {}), now=1000.7)
    assert signed["Signature-Input"] == (
        'sig1=("@method");created=1000;expires=1060;keyid="a \\"quoted\\" \\\\ id"'
        ';alg="hmac-sha256";nonce="n-1";tag="app"'
    )
    assert re.fullmatch(r"sig1=:[A-Za-z0-9+/]{43}=:", signed["Signature"])
    verifier = MessageVerifier({'a "quoted" \\ id': key}, required_components=["@method"])
    result = verifier.verify(
        SignedRequest.of("GET", "https://x.example/", signed), now=1001
    ).signature
    assert (result.created, result.expires, result.nonce, result.tag) == (1000, 1060, "n-1",
                                                                         "app")


def test_fresh_created_and_nonce_every_signature():
    signer = MessageSigner(SignatureKey("hmac-sha256", b"k", key_id="k"))
    first = signer.sign(HttpRequest("GET", "https://x.example/", {}), now=1)
    second = signer.sign(HttpRequest("GET", "https://x.example/", {}), now=2)
    nonces = [re.search(r'nonce="([^"]+)"', s["Signature-Input"]).group(1)
              for s in (first, second)]
    assert nonces[0] != nonces[1]
    assert all(re.fullmatch(r"[0-9a-f]{32}", n) for n in nonces)
    assert ";created=1;" in first["Signature-Input"]
    assert ";created=2;" in second["Signature-Input"]


def test_signer_uses_its_clock():
    class Clock:
        def wall(self):
            return 1234.5

        def monotonic(self):
            return 0.0

    signer = MessageSigner(SignatureKey("hmac-sha256", b"k"), clock=Clock(), nonce=False)
    assert (
        ";created=1234"
        in signer.sign(HttpRequest("GET", "https://x.example/", {}))["Signature-Input"]
    )


def test_bad_nonce_from_factory_is_refused():
    signer = MessageSigner(SignatureKey("hmac-sha256", b"k"), nonce_factory=lambda: "a\nb")
    with pytest.raises(SigningError):
        signer.sign(HttpRequest("GET", "https://x.example/", {}))


# --- the verifier -------------------------------------------------------------------

NOW = 1_700_000_000
URL = "https://api.example.com/v1/items?b=2&a=1"
BODY = b'{"sku": "book"}'
HMAC_KEY = SignatureKey("hmac-sha256", b"secret" * 6, key_id="key-1")


def signed_request(*, signer=None, method="POST", url=URL, body=BODY, now=NOW, extra=()):
    signer = signer or MessageSigner(
        HMAC_KEY, components=["@method", "@authority", "@path", "@query", "content-type",
                              "content-digest"])
    headers = [("Content-Type", "application/json"),
               ("Content-Digest", content_digest(body)), *extra]
    return [*headers, *signer.sign(HttpRequest(method, url, headers), now=now).items()]


def verifier(**kwargs) -> MessageVerifier:
    kwargs.setdefault("require_content_digest", True)
    return MessageVerifier({"key-1": HMAC_KEY}, **kwargs)


def test_roundtrip():
    result = (
        verifier().verify(SignedRequest.of("POST", URL, signed_request(), BODY), now=NOW).signature
    )
    assert result.key_id == "key-1"
    assert result.algorithm == "hmac-sha256"
    assert result.covers("@query")
    assert result.covers("Content-Digest")
    assert not result.covers("date")


def test_callable_key_resolver():
    v = MessageVerifier(lambda kid: HMAC_KEY if kid == "key-1" else None)
    v.verify(SignedRequest.of("POST", URL, signed_request(), BODY), now=NOW)
    with pytest.raises(UnknownKey):
        MessageVerifier(lambda kid: None).verify(
            SignedRequest.of("POST", URL, signed_request(), BODY), now=NOW
        )


@pytest.mark.parametrize(("method", "url"), [
    ("PUT", URL),
    ("POST", "https://api.example.com/v1/other?b=2&a=1"),
    ("POST", "https://api.example.com/v1/items?b=2&a=2"),
    ("POST", "https://api.example.com/v1/items?a=1&b=2"),
    ("POST", "https://evil.example.com/v1/items?b=2&a=1"),
    ("POST", "https://api.example.com:8443/v1/items?b=2&a=1"),
])
def test_tampered_request_is_bad_signature(method, url):
    with pytest.raises(BadSignature):
        verifier().verify(SignedRequest.of(method, url, signed_request(), BODY), now=NOW)


def test_tampered_header_is_bad_signature():
    headers = [(n, "text/plain" if n == "Content-Type" else v) for n, v in signed_request()]
    with pytest.raises(BadSignature):
        verifier().verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW)


def test_tampered_body_is_digest_mismatch():
    with pytest.raises(BodyDigestMismatch):
        verifier().verify(
            SignedRequest.of("POST", URL, signed_request(), b'{"sku": "car"}'), now=NOW
        )


def test_tampered_signature_params_are_bad_signature():
    for old, new in ((";created=", ";created=1"), ('keyid="key-1"', 'keyid="key-1";tag="x"')):
        headers = [(n, v.replace(old, new, 1) if n == "Signature-Input" else v)
                   for n, v in signed_request()]
        with pytest.raises((BadSignature, TimestampSkew)):
            verifier().verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW)


def test_wrong_key_is_bad_signature():
    other = SignatureKey("hmac-sha256", b"other" * 7, key_id="key-1")
    with pytest.raises(BadSignature):
        MessageVerifier({"key-1": other}).verify(
            SignedRequest.of("POST", URL, signed_request()), now=NOW
        )


def test_required_components_policy():
    signer = MessageSigner(HMAC_KEY, components=["@method", "@path"])
    headers = signed_request(signer=signer)
    with pytest.raises(InsufficientCoverage):  # default: @method @authority @path
        MessageVerifier({"key-1": HMAC_KEY}).verify(
            SignedRequest.of("POST", URL, headers), now=NOW
        )
    MessageVerifier({"key-1": HMAC_KEY}, required_components=["@path"]).verify(
        SignedRequest.of("POST", URL, headers), now=NOW
    )
    with pytest.raises(InsufficientCoverage):
        verifier().verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW)
    with pytest.raises(PolicyViolation):
        MessageVerifier({"key-1": HMAC_KEY}, required_components=['@query-param;name="a"']
                        ).verify(SignedRequest.of("POST", URL, headers), now=NOW)


@pytest.mark.parametrize(("covered", "ok"), [
    (["@method", "@target-uri"], True),
    (["@method", "@authority", "@request-target"], True),
    (["@method", "@authority", "@path", "@query"], True),
    (["@method", "@authority", "@path"], False),
    (["@method", "@request-target"], False),  # the authority is not in the request target
    (["@target-uri"], False),
])
def test_default_required_components_and_implied_parts(covered, ok):
    headers = signed_request(signer=MessageSigner(HMAC_KEY, components=covered))
    v = MessageVerifier({"key-1": HMAC_KEY})
    if ok:
        v.verify(SignedRequest.of("POST", URL, headers), now=NOW)
    else:
        with pytest.raises(InsufficientCoverage):
            v.verify(SignedRequest.of("POST", URL, headers), now=NOW)


def test_required_components_match_regardless_of_parameter_order():
    signer = MessageSigner(HMAC_KEY, components=['"example-dict";key="a";req'])
    signed = signer.sign_response(200, [], request=RelatedRequest(
        "GET", "https://x.example/", [("Example-Dict", "a=1")]), now=NOW)
    MessageVerifier({"key-1": HMAC_KEY}, required_components=['"example-dict";req;key="a"']
                    ).verify_response(200, signed, request=RelatedRequest(
                        "GET", "https://x.example/", [("Example-Dict", "a=1")]), now=NOW)


@pytest.mark.parametrize(("offset", "error"), [
    (-31 - 300, TimestampSkew),   # too old: max_age 300 + skew 30
    (31, TimestampSkew),          # created in the future beyond the skew
])
def test_created_window(offset, error):
    with pytest.raises(error):
        verifier().verify(
            SignedRequest.of("POST", URL, signed_request(), BODY), now=NOW - offset
        )


@pytest.mark.parametrize("offset", [-330, -1, 0, 30])
def test_created_window_accepts(offset):
    verifier().verify(
        SignedRequest.of("POST", URL, signed_request(), BODY), now=NOW - offset
    )


def test_expires():
    signer = MessageSigner(HMAC_KEY, expires_in=10)
    headers = signed_request(signer=signer)
    verifier(require_content_digest=False).verify(
        SignedRequest.of("POST", URL, headers), now=NOW + 40
    )
    with pytest.raises(SignatureExpired) as info:
        verifier(require_content_digest=False).verify(
            SignedRequest.of("POST", URL, headers), now=NOW + 41
        )
    assert isinstance(info.value, TimestampSkew)
    assert info.value.reason == "expired"


def test_created_required_by_default():
    signer = MessageSigner(HMAC_KEY, created=False)
    headers = signed_request(signer=signer)
    with pytest.raises(InsufficientCoverage):
        verifier().verify(SignedRequest.of("POST", URL, headers), now=NOW)
    MessageVerifier({"key-1": HMAC_KEY}, require_created=False).verify(
        SignedRequest.of("POST", URL, headers), now=NOW
    )


def test_expected_tag():
    tagged = MessageSigner(HMAC_KEY, tag="app-a")
    with pytest.raises(TagMismatch):
        MessageVerifier({"key-1": HMAC_KEY}, expected_tag="app-b").verify(
            SignedRequest.of("POST", URL, signed_request(signer=tagged)), now=NOW
        )
    with pytest.raises(TagMismatch):
        MessageVerifier({"key-1": HMAC_KEY}, expected_tag="app-a").verify(
            SignedRequest.of("POST", URL, signed_request(signer=MessageSigner(HMAC_KEY))), now=NOW
        )
    MessageVerifier({"key-1": HMAC_KEY}, expected_tag="app-a").verify(
        SignedRequest.of("POST", URL, signed_request(signer=tagged)), now=NOW
    )


def test_allowed_algorithms_and_pinned_key_algorithm():
    with pytest.raises(DisallowedAlgorithm):
        MessageVerifier({"key-1": HMAC_KEY}, allowed_algorithms=["ed25519"]).verify(
            SignedRequest.of("POST", URL, signed_request()), now=NOW
        )
    # alg must be the key's own: a signature claiming another algorithm is refused
    claims = MessageSigner(HMAC_KEY, include_alg=True)
    headers = [(n, v.replace('alg="hmac-sha256"', 'alg="ed25519"') if n == "Signature-Input"
                else v) for n, v in signed_request(signer=claims)]
    with pytest.raises(DisallowedAlgorithm):
        MessageVerifier({"key-1": HMAC_KEY}).verify(
            SignedRequest.of("POST", URL, headers), now=NOW
        )
    MessageVerifier({"key-1": HMAC_KEY}).verify(
        SignedRequest.of("POST", URL, signed_request(signer=claims)), now=NOW
    )


def test_verifier_with_only_the_public_key():
    raw = ed25519.Ed25519PrivateKey.generate()
    headers = signed_request(signer=MessageSigner(SignatureKey("ed25519", raw, key_id="ed")))
    public = SignatureKey("ed25519", raw.public_key())
    MessageVerifier({"ed": public}).verify(
        SignedRequest.of("POST", URL, headers), now=NOW
    )
    other = SignatureKey("ed25519", ed25519.Ed25519PrivateKey.generate().public_key())
    with pytest.raises(BadSignature):
        MessageVerifier({"ed": other}).verify(
            SignedRequest.of("POST", URL, headers), now=NOW
        )


def test_unknown_or_absent_key_id():
    with pytest.raises(UnknownKey):
        MessageVerifier({"other": HMAC_KEY}).verify(
            SignedRequest.of("POST", URL, signed_request(), BODY), now=NOW
        )
    signer = MessageSigner(SignatureKey("hmac-sha256", b"secret" * 6),  # no keyid
                           components=["@method", "@authority", "@path", "@query",
                                       "content-digest"])
    with pytest.raises(UnknownKey):
        verifier().verify(
            SignedRequest.of("POST", URL, signed_request(signer=signer), BODY), now=NOW
        )


def test_nonce_replay_is_rejected_and_recorded_only_when_valid():
    nonces = MemoryNonceCache()
    v = verifier(nonces=nonces)
    headers = signed_request()
    tampered = [(n, "text/plain" if n == "Content-Type" else v) for n, v in headers]
    with pytest.raises(BadSignature):
        v.verify(SignedRequest.of("POST", URL, tampered, BODY), now=NOW)
    assert len(nonces) == 0  # a bad signature does not burn the nonce
    v.verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW)
    with pytest.raises(ReplayedNonce):
        v.verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW + 1)
    assert len(nonces) == 1
    # the store key is namespaced, so the tutorial HMAC scheme's nonces never collide
    nonce = re.search(r'nonce="([^"]+)"', dict(headers)["Signature-Input"]).group(1)
    assert not nonces.add_if_absent("rfc9421:key-1", nonce, now=NOW, ttl=1)
    assert nonces.add_if_absent("key-1", nonce, now=NOW, ttl=1)


def test_nonce_required_with_a_nonce_store():
    signer = MessageSigner(HMAC_KEY, nonce=False)
    with pytest.raises(InsufficientCoverage):
        verifier(nonces=MemoryNonceCache()).verify(
            SignedRequest.of("POST", URL, signed_request(signer=signer)), now=NOW
        )
    verifier(nonces=MemoryNonceCache(), require_nonce=False, require_content_digest=False).verify(
        SignedRequest.of("POST", URL, signed_request(signer=signer)), now=NOW
    )


def test_nonces_through_the_sqlite_store(tmp_path):
    from surefoot.stores import SQLiteStore

    store = SQLiteStore(tmp_path / "state.db")
    try:
        first = verifier(nonces=store)  # the store itself, or store.nonces
        second = verifier(nonces=SQLiteStore(tmp_path / "state.db").nonces)
        headers = signed_request()
        first.verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW)
        with pytest.raises(ReplayedNonce):  # another process sharing the file
            second.verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW)
    finally:
        store.close()


@pytest.mark.parametrize(("name", "value", "error"), [
    ("Signature-Input", None, MissingHeader),
    ("Signature", None, MissingHeader),
    ("Signature-Input", "sig1=(\"@method\"", MalformedSignature),
    ("Signature-Input", "sig1=\"@method\";created=1700000000;keyid=\"key-1\"",
     MalformedSignature),
    ("Signature-Input", "other=(\"@method\");created=1700000000;keyid=\"key-1\"",
     MissingHeader),
    ("Signature", "sig1=\"not bytes\"", MalformedSignature),
    ("Signature", "sig1=:" + "A" * 20000 + ":", MalformedSignature),
    ("Signature-Input", "sig1=();créé=1", MalformedSignature),
])
def test_malformed_or_missing_fields(name, value, error):
    headers = [(n, v) for n, v in signed_request() if n != name]
    if value is not None:
        headers.append((name, value))
    with pytest.raises(error):
        MessageVerifier({"key-1": HMAC_KEY}, required_components=()).verify(
            SignedRequest.of("POST", URL, headers), now=NOW
        )


@pytest.mark.parametrize("signature_input", [
    'sig1=("@method" "@method");created=1700000000;keyid="key-1"',            # duplicate
    'sig1=("content-type" "Content-Type");created=1700000000;keyid="key-1"',  # bad case
    'sig1=("@method" "@path";foo);created=1700000000;keyid="key-1"',          # unknown param
    'sig1=("@method" @path);created=1700000000;keyid="key-1"',                # token
    'sig1=("@method" "@signature-params");created=1700000000;keyid="key-1"',
    'sig1=("@method" "@bogus");created=1700000000;keyid="key-1"',
    'sig1=("@method" "x";sf;bs);created=1700000000;keyid="key-1"',
    'sig1=("@method");created=1700000000;keyid="key-1";foo="bar"',            # unknown param
    'sig1=("@method");created="1700000000";keyid="key-1"',                   # wrong type
    'sig1=("@method");created=1700000000;keyid=key-1',                        # token keyid
    'sig1=("@method");created=1700000000.5;keyid="key-1"',
    'sig1=("@method");created=1700000000;expires=1699999999;keyid="key-1"',
    'sig1=("@method";req);created=1700000000;keyid="key-1"',  # req in a request: no request
])
def test_invalid_signature_input_is_rejected(signature_input):
    headers = [(n, signature_input if n == "Signature-Input" else v)
               for n, v in signed_request()]
    with pytest.raises((MalformedSignature, MissingComponent)) as info:
        MessageVerifier({"key-1": HMAC_KEY}, required_components=()).verify(
            SignedRequest.of("POST", URL, headers), now=NOW
        )
    assert "secret" not in str(info.value)


def test_duplicate_component_with_reordered_params_is_rejected():
    si = 'sig1=("x";req;bs "x";bs;req);created=1700000000;keyid="key-1"'
    with pytest.raises(MalformedSignature):
        MessageVerifier({"key-1": HMAC_KEY}, required_components=()).verify_response(
            200, [("Signature-Input", si), ("Signature", "sig1=:AAAA:")], now=NOW)


def test_missing_covered_component_in_the_received_message():
    headers = [(n, v) for n, v in signed_request() if n != "Content-Type"]
    with pytest.raises(MissingComponent):
        verifier().verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW)


def test_label_selection_with_several_signatures():
    a = MessageSigner(HMAC_KEY, label="a", tag="first")
    b = MessageSigner(SignatureKey("hmac-sha256", b"b" * 32, key_id="key-b"), label="b",
                      tag="second")
    sa = a.sign(HttpRequest("GET", URL, {}), now=NOW)
    sb = b.sign(HttpRequest("GET", URL, {}), now=NOW)
    headers = [("Signature-Input", sa["Signature-Input"] + ", " + sb["Signature-Input"]),
               ("Signature", sa["Signature"]), ("Signature", sb["Signature"])]
    keys = {"key-1": HMAC_KEY, "key-b": SignatureKey("hmac-sha256", b"b" * 32)}
    assert (
        MessageVerifier(keys).verify(SignedRequest.of("GET", URL, headers), now=NOW).signature.label
        == "a"
    )
    assert (
        MessageVerifier(keys, expected_tag="second")
        .verify(SignedRequest.of("GET", URL, headers), now=NOW)
        .signature.label
        == "b"
    )
    assert (
        MessageVerifier(keys, label="b")
        .verify(SignedRequest.of("GET", URL, headers), now=NOW)
        .signature.key_id
        == "key-b"
    )
    with pytest.raises(MissingHeader):
        MessageVerifier(keys, label="c").verify(
            SignedRequest.of("GET", URL, headers), now=NOW
        )


def test_all_errors_are_signature_errors_with_reasons():
    for error in (MissingComponent, InsufficientCoverage, DisallowedAlgorithm, TagMismatch,
                  SignatureExpired, PolicyViolation):
        assert issubclass(error, SignatureError)
        assert error.reason
        assert error().reason == error.reason


# --- sans-I/O ----------------------------------------------------------------------


def test_core_module_imports_no_http_library_nor_cryptography():
    code = (
        "import sys, surefoot.signing._rfc9421 as m, surefoot.signing._digest\n"
        "from surefoot._core._messages import HttpRequest\n"
        "signer = m.MessageSigner(m.SignatureKey('hmac-sha256', b'k'))\n"
        "signer.sign(HttpRequest('GET', 'https://x/', {}))\n"
        "print(sorted({n.split('.')[0] for n in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    loaded = set(json.loads(out.replace("'", '"')))
    assert not loaded & {"requests", "httpx", "redis", "urllib3", "cryptography"}


# --- the auth object, through real clients against the sandbox -----------------------

from surefoot.signing import SigningAuth  # noqa: E402

ED_PRIVATE = ed25519.Ed25519PrivateKey.generate()
AUTH_KEY = SignatureKey("ed25519", ED_PRIVATE, key_id="client-ed")
SERVER_KEYS = {"client-ed": SignatureKey("ed25519", ED_PRIVATE.public_key())}


def server_verify(payload: dict, **kwargs):
    """What a server does: verify the request the sandbox echoed back."""
    kwargs.setdefault("require_content_digest", True)
    kwargs.setdefault("nonces", MemoryNonceCache())
    headers = payload["headers"]
    return (
        MessageVerifier(SERVER_KEYS, **kwargs)
        .verify(
            SignedRequest.of(payload["method"], payload["url"], headers, payload["data"].encode())
        )
        .signature
    )


def test_auth_attempt_headers_unit():
    from surefoot.oauth import HttpRequest

    auth = SigningAuth.rfc9421(AUTH_KEY)
    assert auth.signs_body
    assert set(auth.credential_headers) == {"Signature-Input", "Signature", "Content-Digest"}
    out = auth.attempt_headers(HttpRequest("POST", URL, {"Content-Type": "a/b"}, BODY), None,
                               now=NOW)
    assert out["Content-Digest"] == content_digest(BODY)
    assert '("@method" "@authority" "@path" "@query" "content-digest")' in out[
        "Signature-Input"]
    again = auth.attempt_headers(HttpRequest("POST", URL, {}, BODY), None, now=NOW)
    assert again["Signature-Input"] != out["Signature-Input"]  # a fresh nonce
    no_digest = SigningAuth.rfc9421(AUTH_KEY, content_digest=None)
    assert not no_digest.signs_body
    assert "Content-Digest" not in no_digest.attempt_headers(HttpRequest("GET", URL, {}), None,
                                                             now=NOW)
    assert "<private key redacted>" in repr(auth)
    with pytest.raises(ConfigurationError):
        SigningAuth.rfc9421(AUTH_KEY, content_digest="md5")  # type: ignore[arg-type]


def test_surefoot_client_signs_against_the_sandbox(sandbox):
    import surefoot

    auth = SigningAuth.rfc9421(AUTH_KEY, tag="surefoot-test", expires_in=60)
    with surefoot.Client(sandbox.url, auth=auth) as api:
        response = api.post("/anything/orders?b=2&a=1", json={"sku": "book"})
    payload = response.json()
    result = server_verify(payload, expected_tag="surefoot-test")
    assert result.key_id == "client-ed"
    assert result.covers("@query")
    assert result.covers("content-digest")
    # the server sees exactly what was signed: tampering with the body or path fails
    with pytest.raises(BodyDigestMismatch):
        server_verify({**payload, "data": '{"sku": "car"}'})
    with pytest.raises(BadSignature):
        server_verify({**payload, "url": payload["url"].replace("orders", "admin")})


def test_surefoot_client_covers_request_headers(sandbox):
    import surefoot

    auth = SigningAuth.rfc9421(AUTH_KEY, components=["@method", "@target-uri", "content-type"])
    with surefoot.Client(sandbox.url, auth=auth) as api:
        response = api.put("/anything", data=b"raw", headers={"Content-Type": "text/plain"})
    result = server_verify(response.json(), required_components=["content-type"])
    assert result.covers("@target-uri")


def test_every_attempt_is_signed_afresh(sandbox, monkeypatch):
    import requests

    import surefoot

    sent: list[dict] = []
    original = requests.adapters.HTTPAdapter.send

    def recording_send(self, request, *args, **kwargs):
        sent.append(dict(request.headers))
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", recording_send)
    auth = SigningAuth.rfc9421(AUTH_KEY)
    policy = surefoot.RetryPolicy(max_attempts=3, backoff_initial=0.01, backoff_max=0.02)
    with surefoot.Client(sandbox.url, auth=auth, retry=policy) as api:
        response = api.get("/flaky/x?fail=2&fault=503&key=rfc9421")
    assert response.status_code == 200
    assert len(sent) == 3
    inputs = [h["Signature-Input"] for h in sent]
    assert len(set(inputs)) == 3  # a new nonce each time
    assert len({h["Signature"] for h in sent}) == 3


def test_requests_session_auth(sandbox):
    import requests

    with requests.Session() as session:
        session.auth = SigningAuth.rfc9421(AUTH_KEY)
        response = session.post(sandbox.url + "/anything?x=1", data=b"hello")
    assert server_verify(response.json()).key_id == "client-ed"


def test_plain_httpx_client_auth(sandbox):
    import httpx

    auth = SigningAuth.rfc9421(AUTH_KEY, components=["@method", "@authority", "@path",
                                                      "@query", "content-type"])
    with httpx.Client(auth=auth) as client:
        response = client.post(sandbox.url + "/anything", json={"a": 1})
    assert server_verify(response.json()).covers("content-type")


def test_surefoot_httpx_client(sandbox):
    from surefoot.httpx import Client

    with Client(sandbox.url, auth=SigningAuth.rfc9421(AUTH_KEY, content_digest="sha-512")
                ) as api:
        response = api.patch("/anything/1", content=b"patch body")
    payload = response.json()
    assert payload["headers"]["Content-Digest"].startswith("sha-512=:")
    server_verify(payload)


def test_surefoot_async_httpx_client(sandbox):
    import asyncio

    from surefoot.httpx import AsyncClient

    async def main():
        async with AsyncClient(sandbox.url, auth=SigningAuth.rfc9421(AUTH_KEY)) as api:
            return await api.post("/anything", content=b"async body")

    server_verify(asyncio.run(main()).json())


def test_streaming_body_cannot_be_signed(sandbox):
    import surefoot

    def chunks():
        yield b"a"

    with surefoot.Client(sandbox.url, auth=SigningAuth.rfc9421(AUTH_KEY)) as api,\
            pytest.raises(SigningError):
        api.post("/anything", data=chunks())


@pytest.mark.parametrize("client", ["requests", "surefoot-httpx", "session", "httpx"])
@pytest.mark.parametrize("status", [302, 307])
def test_same_origin_redirect_hop_is_signed_afresh(sandbox, client, status):
    import httpx
    import requests

    import surefoot
    from surefoot.httpx import Client as HttpxClient

    auth = SigningAuth.rfc9421(AUTH_KEY)
    path = f"/redirect-to?url=/anything/hop%3Fq%3D1&status_code={status}"
    if client == "requests":
        with surefoot.Client(sandbox.url, auth=auth) as api:
            response = api.post(path, data=b"body")
    elif client == "surefoot-httpx":
        with HttpxClient(sandbox.url, auth=auth) as api:
            response = api.post(path, content=b"body")
    elif client == "session":
        with requests.Session() as session:
            session.auth = auth
            response = session.post(sandbox.url + path, data=b"body")
    else:
        from surefoot.httpx import Transport

        with httpx.Client(auth=auth, follow_redirects=True, transport=Transport()) as plain:
            response = plain.post(sandbox.url + path, content=b"body")
    payload = response.json()
    assert payload["url"].endswith("/anything/hop?q=1")
    assert payload["data"] == ("body" if status == 307 else "")
    server_verify(payload)


def test_identifier_cache_never_lets_a_token_pass_for_a_string():
    v = MessageVerifier({"key-1": HMAC_KEY}, required_components=())
    url = "https://x.example/p?a=1"
    signer = MessageSigner(HMAC_KEY, components=['@query-param;name="a"'])
    v.verify(
        SignedRequest.of("GET", url, signer.sign(HttpRequest("GET", url, {}), now=NOW)), now=NOW
    )
    token_form = [(n, v_.replace('name="a"', "name=a")) for n, v_ in
                  signer.sign(HttpRequest("GET", url, {}), now=NOW).items()]
    with pytest.raises(MalformedSignature):
        v.verify(SignedRequest.of("GET", url, token_form), now=NOW)


def test_plain_httpx_async_client_auth(sandbox):
    import asyncio

    import httpx

    async def main():
        async with httpx.AsyncClient(auth=SigningAuth.rfc9421(AUTH_KEY)) as client:
            return await client.delete(sandbox.url + "/anything/7?force=1")

    assert server_verify(asyncio.run(main()).json()).covers("@query")


# --- content-digest covered in any form: the body is always checked ------------------

TAMPERED_BODY = b'{"sku": "car"}'
BODY_FORMS = ["content-digest", "content-digest;sf", 'content-digest;key="sha-256"',
              "content-digest;bs"]


def form_signer(form: str) -> MessageSigner:
    return MessageSigner(HMAC_KEY, components=["@method", "@authority", "@path", "@query",
                                               form])


@pytest.mark.parametrize("required", [False, True])
@pytest.mark.parametrize("form", BODY_FORMS)
def test_body_is_checked_whatever_form_content_digest_is_covered_in(form, required):
    headers = signed_request(signer=form_signer(form))
    v = verifier(require_content_digest=required)
    found = v.verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW).signature
    assert found.covers(form)
    with pytest.raises(BodyDigestMismatch):
        v.verify(SignedRequest.of("POST", URL, headers, TAMPERED_BODY), now=NOW)
    with pytest.raises(BodyDigestMismatch):  # a stripped body does not pass either
        v.verify(SignedRequest.of("POST", URL, headers, b""), now=NOW)


@pytest.mark.parametrize("form", BODY_FORMS[1:])
def test_response_body_is_checked_whatever_form_content_digest_is_covered_in(form):
    signer = MessageSigner(HMAC_KEY, components=["@status", form])
    fields = [("Content-Digest", content_digest(BODY, ["sha-256", "sha-512"]))]
    headers = [*fields, *signer.sign_response(200, fields, now=NOW).items()]
    v = verifier()
    v.verify_response(200, headers, body=BODY, now=NOW)
    with pytest.raises(BodyDigestMismatch):
        v.verify_response(200, headers, body=TAMPERED_BODY, now=NOW)


def test_covered_member_is_checked_not_the_others():
    """``key=`` covers one member: that one is checked against the body (an uncovered
    member an attacker adds for the new body does not make a tampered body pass)."""
    sha512 = content_digest(BODY, "sha-512")
    signer = form_signer('content-digest;key="sha-512"')
    base = [("Content-Type", "application/json"), ("Content-Digest", sha512)]
    headers = [*base, *signer.sign(HttpRequest("POST", URL, base), now=NOW).items()]
    verifier().verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW)
    forged = [(n, f"{v}, {content_digest(TAMPERED_BODY)}" if n == "Content-Digest" else v)
              for n, v in headers]
    verifier().verify(SignedRequest.of("POST", URL, forged, BODY), now=NOW)  # still covered
    with pytest.raises(BodyDigestMismatch):
        verifier().verify(SignedRequest.of("POST", URL, forged, TAMPERED_BODY), now=NOW)


@pytest.mark.parametrize("required", [False, True])
def test_covering_only_an_uncheckable_member_is_refused(required):
    """A signature over an ``md5`` member alone protects nothing this verifier can
    check: an attacker could add a ``sha-256`` member for another body."""
    signer = form_signer('content-digest;key="md5"')
    base = [("Content-Type", "application/json"),
            ("Content-Digest", "md5=:Sd/dVLAcvNLSq16eXua5uQ==:")]
    headers = [*base, *signer.sign(HttpRequest("POST", URL, base), now=NOW).items()]
    forged = [(n, f"{v}, {content_digest(TAMPERED_BODY)}" if n == "Content-Digest" else v)
              for n, v in headers]
    with pytest.raises(InsufficientCoverage):
        verifier(require_content_digest=required).verify(
            SignedRequest.of("POST", URL, forged, TAMPERED_BODY), now=NOW)


def test_content_digest_of_the_related_request_does_not_cover_the_response_body():
    request = RelatedRequest("POST", URL, [("Content-Digest", content_digest(BODY))])
    signer = MessageSigner(HMAC_KEY, components=["@status", "content-digest;req"])
    headers = list(signer.sign_response(200, [], request=request, now=NOW).items())
    v = verifier(require_content_digest=False)
    v.verify_response(200, headers, request=request, body=b"the response", now=NOW)
    with pytest.raises(InsufficientCoverage):
        verifier().verify_response(200, headers, request=request, body=b"the response",
                                   now=NOW)


@pytest.mark.parametrize("form", BODY_FORMS)
def test_signer_covering_content_digest_in_any_form_signs_the_body(form):
    assert form_signer(form).signs_body
    assert not form_signer("content-type").signs_body


def test_accept_signature_asks_for_content_digest_once():
    v = verifier(required_components=["@method", "content-digest;sf"])
    assert v.accept_signature == 'sig1=("@method" "content-digest";sf);created'


# --- replay protection needs created ----------------------------------------------------


def test_nonce_store_without_required_created_is_a_configuration_error():
    """Without ``created`` a signature stays valid after its nonce is forgotten
    (``max_age + 2 * skew``): a replay then passes. The configuration is refused."""
    for kwargs in ({}, {"require_nonce": False}):
        with pytest.raises(ConfigurationError, match="require_created=True"):
            MessageVerifier({"key-1": HMAC_KEY}, nonces=MemoryNonceCache(),
                            require_created=False, **kwargs)
    from surefoot.stores import MemoryStore

    with pytest.raises(ConfigurationError, match="require_created=True"):
        MessageVerifier({"key-1": HMAC_KEY}, nonces=MemoryStore(), require_created=False)
    # Each is fine alone.
    MessageVerifier({"key-1": HMAC_KEY}, nonces=MemoryNonceCache())
    MessageVerifier({"key-1": HMAC_KEY}, require_created=False)


def test_nonce_store_refuses_a_signature_without_created():
    signer = MessageSigner(HMAC_KEY, created=False, expires_in=365 * 24 * 3600)
    headers = signed_request(signer=signer)
    with pytest.raises(InsufficientCoverage):
        verifier(nonces=MemoryNonceCache()).verify(
            SignedRequest.of("POST", URL, headers, BODY), now=NOW)


def test_keyid_cannot_be_respelt():
    """The keyid is signed: a resolver that ignores case does not open a replay under
    another spelling (as it would for an unsigned key id)."""
    v = MessageVerifier(lambda kid: HMAC_KEY if kid.lower() == "key-1" else None,
                        nonces=MemoryNonceCache())
    headers = signed_request()
    v.verify(SignedRequest.of("POST", URL, headers, BODY), now=NOW)
    respelt = [(n, v_.replace('keyid="key-1"', 'keyid="KEY-1"') if n == "Signature-Input"
                else v_) for n, v_ in headers]
    with pytest.raises(BadSignature):
        v.verify(SignedRequest.of("POST", URL, respelt, BODY), now=NOW + 1)


# --- repeated field lines a server joined (WSGI: one HTTP_* value) -------------------

JOINED_URL = "https://api.example.com/v1/tags"


def joined_case(lines: list[tuple[str, str]], components: list[str]) -> list[tuple[str, str]]:
    """The signature fields of a GET whose field lines are ``lines`` (kept apart)."""
    signer = MessageSigner(HMAC_KEY, components=["@method", "@path", *components])
    return list(signer.sign(HttpRequest("GET", JOINED_URL, lines), now=NOW).items())


def received(fields: list[tuple[str, str]], signature: list[tuple[str, str]], *,
             joined: bool) -> SignedRequest:
    return SignedRequest.of("GET", JOINED_URL, [*fields, *signature], b"",
                            lines_joined=joined)


def joined_verifier() -> MessageVerifier:
    return MessageVerifier({"key-1": HMAC_KEY}, required_components=["@method", "@path"])


@pytest.mark.parametrize("component", ["x-tag", "x-tag;bs"])
@pytest.mark.parametrize("separator", [",", ", "])
def test_repeated_lines_joined_by_the_server_verify(component, separator):
    """Two ``X-Tag`` lines signed apart (``a, b``) reach a WSGI application as one value
    ``a,b`` (wsgiref, gunicorn, werkzeug) or ``a, b``: either verifies once the request
    says the server joined its lines."""
    signature = joined_case([("X-Tag", "a"), ("X-Tag", "b")], [component])
    found = joined_verifier().verify(
        received([("x-tag", f"a{separator}b")], signature, joined=True), now=NOW)
    assert found.key_id == "key-1"
    assert found.signature is not None
    assert found.signature.covers(component)


@pytest.mark.parametrize("component", ["x-tag", "x-tag;bs"])
def test_repeated_lines_joined_by_the_server_tampered_is_refused(component):
    signature = joined_case([("X-Tag", "a"), ("X-Tag", "b")], [component])
    for value in ("a,c", "b,a", "a", "a,b,c", "ab", "a;b"):
        with pytest.raises(BadSignature):
            joined_verifier().verify(received([("x-tag", value)], signature, joined=True),
                                     now=NOW)


def test_joined_value_is_read_as_one_line_first_and_strictly_without_the_flag():
    # One line with a comma: signed as it is, it verifies as it is, joined or not.
    one = joined_case([("X-Tag", "a,b")], ["x-tag"])
    for joined in (False, True):
        joined_verifier().verify(received([("x-tag", "a,b")], one, joined=joined), now=NOW)
    # Two lines, received as one value by a server that did not say it joined them (an
    # ASGI server gives every line apart): the value is taken as one line, and refused.
    two = joined_case([("X-Tag", "a"), ("X-Tag", "b")], ["x-tag"])
    with pytest.raises(BadSignature):
        joined_verifier().verify(received([("x-tag", "a,b")], two, joined=False), now=NOW)
    # ... and the two lines themselves verify, flag or not.
    for joined in (False, True):
        joined_verifier().verify(
            received([("x-tag", "a"), ("x-tag", "b")], two, joined=joined), now=NOW)


def test_commas_inside_quoted_strings_do_not_separate_lines():
    lines = [("X-Tag", '"x,y"'), ("X-Tag", "z")]
    signature = joined_case(lines, ["x-tag", "x-tag;bs"])
    joined_verifier().verify(received([("x-tag", '"x,y",z')], signature, joined=True),
                             now=NOW)
    for tampered in ('"x",y,z', '"x, y",z', '"x,y,z"'):
        with pytest.raises(BadSignature):
            joined_verifier().verify(received([("x-tag", tampered)], signature, joined=True),
                                     now=NOW)
    # An unterminated quoted string cannot be split safely: read as one line only.
    odd = joined_case([("X-Tag", '"x'), ("X-Tag", 'y"')], ["x-tag;bs"])
    with pytest.raises(BadSignature):
        joined_verifier().verify(received([("x-tag", '"x,y"')], odd, joined=True), now=NOW)


def test_byte_sequences_keep_the_join_unambiguous():
    """``;bs`` encodes each line apart: one line ``a, b`` is not two lines ``a`` and ``b``,
    so squeezing it into the server's ``a,b`` does not verify."""
    signature = joined_case([("X-Tag", "a, b")], ["x-tag;bs"])
    with pytest.raises(BadSignature):
        joined_verifier().verify(received([("x-tag", "a,b")], signature, joined=True),
                                 now=NOW)
    joined_verifier().verify(received([("x-tag", "a, b")], signature, joined=True), now=NOW)


def test_structured_fields_need_no_second_reading():
    """``;sf`` and ``;key=`` parse the value: the server's join gives the same one."""
    lines = [("CDN-Cache-Control", "max-age=60"), ("CDN-Cache-Control", "no-transform")]
    signature = joined_case(lines, ["cdn-cache-control;sf",
                                    '"cdn-cache-control";key="max-age"'])
    for value in ("max-age=60,no-transform", "max-age=60, no-transform"):
        for joined in (False, True):
            joined_verifier().verify(received([("cdn-cache-control", value)], signature,
                                              joined=joined), now=NOW)


def test_several_joined_fields_are_read_in_every_combination():
    """A one-line list (a browser's ``Accept``) next to a repeated field: each may be
    read either way, so the combination that was signed is found."""
    lines = [("Accept", "text/html,application/json"), ("X-Tag", "a"), ("X-Tag", "b"),
             ("X-Lang", "en"), ("X-Lang", "fr")]
    signature = joined_case(lines, ["accept", "x-tag", "x-lang"])
    fields = [("accept", "text/html,application/json"), ("x-tag", "a,b"),
              ("x-lang", "en,fr")]
    joined_verifier().verify(received(fields, signature, joined=True), now=NOW)
    with pytest.raises(BadSignature):
        joined_verifier().verify(received([*fields[:2], ("x-lang", "en,de")], signature,
                                          joined=True), now=NOW)


def test_more_joined_fields_than_combinations_are_read_all_one_way():
    names = ["x-a", "x-b", "x-c", "x-d", "x-e"]  # 2 ** 5 readings: past the limit (16)
    lines = [(name, value) for name in names for value in ("1", "2")]
    signature = joined_case(lines, names)
    fields = [(name, "1,2") for name in names]
    joined_verifier().verify(received(fields, signature, joined=True), now=NOW)
    # Past the limit a mix (one of them a one-line value) is not looked for: refused,
    # saying why.
    mixed = joined_case([*lines[:8], ("x-e", "1,2")], names)
    with pytest.raises(BadSignature) as caught:
        joined_verifier().verify(received(fields, mixed, joined=True), now=NOW)
    assert "joined" in str(caught.value)


def test_mixed_lines_of_one_field_cannot_be_told_apart_and_are_refused():
    """The documented limit: a field sent on several lines, one of which has a comma of
    its own (not followed by a space), joined by the server into ``a,b,c``: its lines
    cannot be told apart, and it is refused (never read some other way that verifies)."""
    signature = joined_case([("X-Tag", "a,b"), ("X-Tag", "c")], ["x-tag"])
    with pytest.raises(BadSignature) as caught:
        joined_verifier().verify(received([("x-tag", "a,b,c")], signature, joined=True),
                                 now=NOW)
    assert "x-tag" in str(caught.value)
    # Kept apart (ASGI), the same lines verify.
    joined_verifier().verify(
        received([("x-tag", "a,b"), ("x-tag", "c")], signature, joined=False), now=NOW)


def test_signed_request_of_lines_joined():
    assert SignedRequest.of("GET", JOINED_URL, {}).lines_joined is False
    assert SignedRequest.of("GET", JOINED_URL, {}, lines_joined=True).lines_joined is True
    assert SignedRequest.of("GET", JOINED_URL, [("a", "b")], lines_joined=True).lines_joined
