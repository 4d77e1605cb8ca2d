"""What the verifiers keep between requests to verify faster, and that it changes nothing.

An RFC 9421 verifier keeps, per list of covered components (by its text), what it made of
it; the next request with the same list reads only its parameters. A SigV4 verifier keeps
what ``X-Amz-Date`` values and ``SignedHeaders`` lists parse to. Each is bounded (an
attacker varying them cannot grow memory), and a request that reuses a known list with
anything else wrong is refused exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from surefoot.errors import (
    BadSignature,
    InsufficientCoverage,
    MalformedSignature,
    SignatureError,
)
from surefoot.signing import (
    HttpRequest,
    MessageSigner,
    MessageVerifier,
    SignatureKey,
    SignedRequest,
    SigV4Credentials,
    SigV4Signer,
    SigV4Verifier,
    _sigv4,
)

URL = "https://api.example.com/v1/orders?b=2&a=1"
NOW = 1_700_000_000.0
KEY = SignatureKey("hmac-sha256", b"s" * 32, key_id="k")


def signed(components: tuple[str, ...] = ("@method", "@authority", "@path", "@query")) -> dict[
        str, str]:
    signer = MessageSigner(KEY, components=components, content_digest="sha-256")
    return signer.sign(HttpRequest("POST", URL, {"Content-Type": "text/plain"}, b"hi"), now=NOW)


def request(fields: dict[str, str]) -> SignedRequest:
    return SignedRequest.of("POST", URL, {"Content-Type": "text/plain", **fields}, b"hi")


def test_a_known_list_verifies_again_and_again() -> None:
    verifier = MessageVerifier({"k": KEY}, require_content_digest=True)
    for i in range(3):
        found = verifier.verify(request(signed()), now=NOW + i)
        assert found.key_id == "k"
        assert found.signature is not None
        assert found.signature.covered == ('"@method"', '"@authority"', '"@path"', '"@query"',
                                           '"content-digest"')
    assert len(verifier._plans) == 1


@pytest.mark.parametrize(("change", "error"), [
    (lambda si: si.replace(';keyid="k"', ";keyid=k"), MalformedSignature),  # a Token
    (lambda si: si + ";foo=1", MalformedSignature),  # unknown parameter
    (lambda si: si + ";created=1.5", MalformedSignature),  # a Decimal: http_sfv reads it
    (lambda si: si + ",", MalformedSignature),  # trailing comma
    (lambda si: si + " x", MalformedSignature),
    (lambda si: si.replace(")", ") "), MalformedSignature),  # a space before parameters
    (lambda si: si.replace('"@query"', '"@query";req'), InsufficientCoverage),
    (lambda si: si.replace('"@path"', '"@path" "@path"'), MalformedSignature),
    (lambda si: si.replace("created=1700000000", "created=1700000001"), BadSignature),
    # The parameters are serialised again from what was parsed (RFC 9421 §2.3): the same
    # values written otherwise give the same signature base (as before, too).
    (lambda si: si.replace(";created=", ";created=0"), None),
    (lambda si: si.replace("sig1=(", "sig1=( "), None),
])
def test_a_known_list_with_anything_else_wrong_is_refused(
        change: Callable[[str], str], error: type[SignatureError] | None) -> None:
    verifier = MessageVerifier({"k": KEY}, require_content_digest=True)
    assert verifier.verify(request(signed()), now=NOW).key_id == "k"  # the list is known
    fields = signed()
    fields["Signature-Input"] = change(fields["Signature-Input"])
    if error is None:
        assert verifier.verify(request(fields), now=NOW).key_id == "k"
    else:
        with pytest.raises(error):
            verifier.verify(request(fields), now=NOW)


def test_a_list_known_for_other_components_changes_nothing() -> None:
    verifier = MessageVerifier({"k": KEY}, required_components=("@method", "@path"))
    verifier.verify(request(signed(("@method", "@path"))), now=NOW)
    with pytest.raises(InsufficientCoverage):
        verifier.verify(request(signed(("@method",))), now=NOW)


def test_sigv4_parsed_dates_and_signed_headers_are_bounded() -> None:
    signer = SigV4Signer(SigV4Credentials("AKIA", "secret"), "eu-west-1", "execute-api",
                         signed_headers="all")
    verifier = SigV4Verifier({"AKIA": "secret"}, region="eu-west-1", service="execute-api",
                             nonces=False, skew=10**9)
    for i in range(600):
        headers = {"Host": "api.example.com", f"x-h{i}": "1"}
        added = signer.sign(HttpRequest("GET", URL, headers, b""), now=NOW + i * 86_400)
        found = verifier.verify(SignedRequest.of("GET", URL, {**headers, **added}, b""),
                                now=NOW + i * 86_400)
        assert found.key_id == "AKIA"
        assert len(_sigv4._DATES) <= _sigv4._MAX_CACHED
        assert len(_sigv4._SIGNED_NAMES) <= _sigv4._MAX_CACHED
