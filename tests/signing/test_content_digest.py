"""RFC 9530 Content-Digest: generation and verification against the body."""

from __future__ import annotations

import hashlib

import pytest

from surefoot.errors import (
    BodyDigestMismatch,
    ConfigurationError,
    MalformedSignature,
    MissingHeader,
    SignatureError,
)
from surefoot.signing import content_digest, verify_content_digest
from surefoot.signing._digest import DIGEST_ALGORITHMS

HELLO = b'{"hello": "world"}'
# RFC 9530 §2 / RFC 9421 Appendix B: the digests of {"hello": "world"}
HELLO_SHA256 = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
HELLO_SHA512 = ("sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyeal"
                "dVLvRwEmTHWXvJwew==:")


def test_rfc_examples():
    assert content_digest(HELLO) == HELLO_SHA256
    assert content_digest(HELLO, "sha-256") == HELLO_SHA256
    assert content_digest(HELLO, "sha-512") == HELLO_SHA512


def test_several_algorithms_in_order():
    assert content_digest(HELLO, ["sha-512", "sha-256"]) == f"{HELLO_SHA512}, {HELLO_SHA256}"
    assert DIGEST_ALGORITHMS == ("sha-256", "sha-512")


def test_empty_body():
    expected = "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
    assert content_digest(None) == content_digest(b"") == expected
    assert verify_content_digest(expected, None) == ("sha-256",)


def test_large_body_matches_hashlib():
    body = bytes(range(256)) * 4096
    value = content_digest(body, "sha-512")
    import base64

    assert base64.b64decode(value[len("sha-512=:"):-1]) == hashlib.sha512(body).digest()
    assert verify_content_digest(value, body) == ("sha-512",)


@pytest.mark.parametrize("algorithm", ["md5", "sha-1", "", "SHA-256"])
def test_unsupported_algorithm_is_a_configuration_error(algorithm):
    with pytest.raises(ConfigurationError):
        content_digest(HELLO, algorithm)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        verify_content_digest(HELLO_SHA256, HELLO, algorithms=[algorithm])
    with pytest.raises(ConfigurationError):
        content_digest(HELLO, [])


@pytest.mark.parametrize("value", [
    HELLO_SHA256,
    HELLO_SHA512,
    f"{HELLO_SHA256}, {HELLO_SHA512}",
    f"md5=:Sd/dVLAcvNLSq16eXua5uQ==:, {HELLO_SHA256}",          # deprecated member ignored
    f"  {HELLO_SHA512}  ",
    f"unixsum=30637, {HELLO_SHA256};x=1",                        # params are allowed
])
def test_verify_accepts(value):
    checked = verify_content_digest(value, HELLO)
    assert set(checked) <= {"sha-256", "sha-512"}
    assert checked


def test_verify_reports_every_checked_algorithm():
    assert verify_content_digest(f"{HELLO_SHA512}, {HELLO_SHA256}", HELLO) == (
        "sha-512", "sha-256")
    assert verify_content_digest(f"{HELLO_SHA512}, {HELLO_SHA256}", HELLO,
                                 algorithms=["sha-512"]) == ("sha-512",)


@pytest.mark.parametrize("value", [
    content_digest(b"other"),
    f"{HELLO_SHA256}, {content_digest(b'other', 'sha-512')}",   # every member must match
    f"{content_digest(b'other')}, {HELLO_SHA512}",
    "sha-256=:AAAA:",
])
def test_verify_rejects_mismatch(value):
    with pytest.raises(BodyDigestMismatch):
        verify_content_digest(value, HELLO)


@pytest.mark.parametrize("value", [
    "not a dictionary!",
    "sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",      # not a byte sequence
    'sha-256="X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE="',
    "sha-256=(:AAAA:)",
    "md5=:Sd/dVLAcvNLSq16eXua5uQ==:",                             # nothing supported
    "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:, ",
    "sha-256=:\u00e9:",
    "sha-256=:" + "A" * 5000 + ":",
])
def test_verify_rejects_malformed(value):
    with pytest.raises(MalformedSignature):
        verify_content_digest(value, HELLO)


@pytest.mark.parametrize("value", [None, "", "  "])
def test_verify_missing(value):
    with pytest.raises(MissingHeader):
        verify_content_digest(value, HELLO)


def test_errors_are_signature_errors_without_digests_in_messages():
    for value in (content_digest(b"other"), "junk"):
        with pytest.raises(SignatureError) as info:
            verify_content_digest(value, HELLO)
        assert "X48E9" not in str(info.value)


def test_sha512_only_policy_refuses_sha256():
    with pytest.raises(MalformedSignature):
        verify_content_digest(HELLO_SHA256, HELLO, algorithms=["sha-512"])
