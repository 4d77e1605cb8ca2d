"""The README's worked example of the HMAC scheme stays true."""

from __future__ import annotations

import re
from pathlib import Path

from surefoot.signing import HmacSigner, HmacVerifier, HttpRequest, SignedRequest
from surefoot.signing._hmac import body_digest, canonical_string

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
URL = "https://API.Example.com:443/a%20b/c?b=2&a=1"
BODY = b'{"x":1}'
NONCE = "00112233445566778899aabbccddeeff"


def test_canonical_string_matches_readme():
    block = re.search(r"```\n(SUREFOOT-HMAC-SHA256\nPOST\n.*?)\n```", README, re.S)
    assert block is not None
    text = canonical_string(
        "POST", URL, timestamp="1700000000", nonce=NONCE, digest=body_digest(BODY)
    )
    assert text == block.group(1)


def test_signature_matches_readme_and_verifies():
    signer = HmacSigner("my-key-id", "my-secret", nonce_factory=lambda: NONCE)
    headers = signer.sign(HttpRequest("POST", URL, {}, BODY), now=1700000000)
    assert headers["X-Signature"] in README
    verifier = HmacVerifier({"my-key-id": "my-secret"})
    assert (
        verifier.verify(SignedRequest.of("POST", URL, headers, BODY), now=1700000010).key_id
        == "my-key-id"
    )
