"""Sign and verify cost per request: surefoot against the peers, side by side in one run.

Schemes and contenders (all on the same request: ``POST`` with a small JSON body, a query
and three headers; a fresh timestamp and nonce per call where the scheme has them):

* **raw primitives** (baselines): HMAC-SHA256 of the tutorial's canonical string,
  Ed25519 sign and verify of an RFC 9421 signature base (``cryptography``).
* **tutorial HMAC scheme**: ``surefoot.signing.HmacSigner`` / ``HmacVerifier`` against a bare
  hand-written implementation of the same canonical string (target: within 2x).
* **RFC 9421 hmac-sha256 and ed25519**: ``surefoot.signing.MessageSigner`` (with
  ``content_digest="sha-256"``) / ``MessageVerifier`` against pyauth's
  ``http-message-signatures`` (``HTTPMessageSigner.sign(..., body=...)`` /
  ``HTTPMessageVerifier.verify(..., body=...)``), covering the same components.
* **AWS SigV4**: ``surefoot.signing.SigV4Signer.sign`` against botocore's
  ``SigV4Auth.add_auth`` on an ``AWSRequest`` and ``requests_aws4auth.AWS4Auth`` on a
  prepared ``requests`` request, signing the same headers; ``SigV4Verifier`` (no peer
  verifies SigV4), against surefoot's own SigV4 sign.

Targets (``TARGETS``): issue 6's for signing, issue 14's for verifying — RFC 9421
HMAC verify in µs (read next to raw HMAC), RFC 9421 Ed25519 verify as a ratio to the raw
Ed25519 verify, SigV4 verify as a ratio to SigV4 sign, each ratio measured in the same
round; a summary line after the table shows each verify next to its baseline.

surefoot's signers sign an ``HttpRequest`` (``Signer.sign``) and its verifiers verify a
``SignedRequest`` (``Verifier.verify``), built from the received headers with the inputs
(as the middleware builds it before verifying).

Every contender is built and its output cross-checked (each library's signatures are
verified by another implementation) before anything is measured. Then rounds: in each,
every contender runs one batch of N operations, in a shuffled order; a figure is the
median across rounds of the per-round mean, and a ratio the median of the per-round
ratios to its baseline measured in the same round.

    .venv/bin/python bench/signing.py [--ops N] [--rounds R] [--quick] [--seed S]

Writes ``bench/results/signing.json`` (see ``bench/README.md``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import hashlib
import hmac
import json
import random
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from botocore.auth import SigV4Auth as BotocoreSigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotocoreCredentials
from cryptography.hazmat.primitives.asymmetric import ed25519
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    MappingKeyResolver,
    algorithms,
)
from requests_aws4auth import AWS4Auth

import surefoot
from _env import platform_info
from _env import version as _version
from _stats import quartiles
from surefoot.signing._hmac import canonical_string

RESULTS = Path(__file__).resolve().parent / "results" / "signing.json"

# -- the request every contender signs ------------------------------------------------------

METHOD = "POST"
URL = "https://api.example.com/v1/payments?currency=EUR&mode=live"
HOST = "api.example.com"
BODY = b'{"amount":100,"currency":"EUR","reference":"order-1234"}'
HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json",
    "X-Request-Id": "7f3c9a2e-5b1d-4e8f-9a6c-2d4b8e1f0a37",
}
#: What surefoot's signers sign (the attempt as it will be sent).
REQUEST = surefoot.signing.HttpRequest(METHOD, URL, HEADERS, BODY)
#: RFC 9421 covered components, for both libraries (content-digest of the body last).
COMPONENTS = ("@method", "@authority", "@path", "@query", "content-type", "content-digest")
HMAC_KEY_ID, HMAC_SECRET = "bench-key", b"bench-secret-0123456789abcdef0123"
ED_KEY_ID = "bench-ed25519"
AWS_ACCESS_KEY, AWS_SECRET = "AKIDEXAMPLEBENCH", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
AWS_REGION, AWS_SERVICE = "eu-west-1", "execute-api"
#: SigV4: every library signs these (botocore signs all headers by default).
SIGV4_SIGNED = ("host", "content-type", "accept", "x-request-id", "x-amz-date")

#: Targets of issues 6 (signing) and 14 (verifying): name -> (limit, kind) where kind is
#: "us" (µs per op) or "ratio" (to the contender's baseline, measured in the same round:
#: the raw primitive for RFC 9421 verify, SigV4 sign for SigV4 verify).
TARGETS: dict[str, tuple[float, str]] = {
    "tutorial.surefoot.sign": (2.0, "ratio"),
    "rfc9421_hmac.surefoot.sign": (25.0, "us"),
    "rfc9421_ed25519.surefoot.sign": (50.0, "us"),
    "sigv4.surefoot.sign": (20.0, "us"),
    "rfc9421_hmac.surefoot.verify": (20.0, "us"),
    "rfc9421_ed25519.surefoot.verify": (1.2, "ratio"),
    "sigv4.surefoot.verify": (2.0, "ratio"),
}


# -- contenders ------------------------------------------------------------------------------


@dataclass
class Contender:
    """One operation, measured in batches.

    A sign contender calls ``call()`` per operation. A verify contender gets ``n`` fresh
    signed inputs from ``make_input()`` before the batch (not timed) and calls
    ``check(item)`` on each; ``check`` raises if one does not verify.
    """

    name: str  # scheme.library.op
    scheme: str
    library: str
    op: str
    baseline: str = ""  # the contender its per-round ratio is computed against
    call: Callable[[], object] | None = None
    make_input: Callable[[], Any] | None = None
    check: Callable[[Any], object] | None = None
    note: str = ""

    def run_batch(self, n: int) -> int:
        """Nanoseconds for ``n`` operations."""
        clock = time.perf_counter_ns
        if self.check is None:
            call = self.call
            assert call is not None
            start = clock()
            for _ in range(n):
                call()
            return clock() - start
        assert self.make_input is not None
        inputs = [self.make_input() for _ in range(n)]
        check = self.check
        start = clock()
        for item in inputs:
            check(item)
        return clock() - start


class _Message:
    """The request interface pyauth's resolver reads: method, absolute URL, headers."""

    __slots__ = ("headers", "method", "url")

    def __init__(self, method: str, url: str, headers: dict[str, str]) -> None:
        self.method, self.url, self.headers = method, url, headers


def _fail(name: str, what: str) -> None:
    raise RuntimeError(f"{name}: cross-check failed: {what}")


# -- raw primitives ----------------------------------------------------------------------------


def raw_contenders(ed_private: ed25519.Ed25519PrivateKey) -> list[Contender]:
    text = canonical_string(
        METHOD,
        URL,
        timestamp="1700000000",
        nonce="0" * 32,
        digest=hashlib.sha256(BODY).hexdigest(),
    ).encode()
    base = _rfc9421_base(ed25519_key(ed_private)).encode()
    signature = ed_private.sign(base)
    public = ed_private.public_key()
    digest = hmac.digest
    return [
        Contender(
            "raw.hmac_sha256",
            "raw",
            "hashlib",
            "hmac",
            call=lambda: digest(HMAC_SECRET, text, "sha256"),
            note="HMAC-SHA256 of the tutorial's canonical string",
        ),
        Contender(
            "raw.ed25519.sign",
            "raw",
            "cryptography",
            "sign",
            call=lambda: ed_private.sign(base),
            note="Ed25519 signature of an RFC 9421 signature base",
        ),
        Contender(
            "raw.ed25519.verify",
            "raw",
            "cryptography",
            "verify",
            call=lambda: public.verify(signature, base),
        ),
    ]


# -- the tutorial's HMAC scheme -----------------------------------------------------------------


def bare_tutorial_sign(
    key_id: str, secret: bytes, method: str, url: str, body: bytes
) -> dict[str, str]:
    """A bare hand-written implementation of the scheme's canonical string: what the
    tutorial's ``custom_auth.py`` would do (no percent re-encoding of path and query,
    which gives the same string for this URL)."""
    parts = urlsplit(url)
    timestamp = str(int(time.time()))
    nonce = secrets.token_hex(16)
    digest = hashlib.sha256(body).hexdigest()
    query = "&".join(sorted(item for item in parts.query.split("&") if item))
    text = "\n".join(
        (
            "SUREFOOT-HMAC-SHA256",
            method.upper(),
            parts.path or "/",
            query,
            parts.netloc.lower(),
            timestamp,
            nonce,
            digest,
        )
    )
    return {
        "X-API-Key": key_id,
        "X-Timestamp": timestamp,
        "X-Nonce": nonce,
        "X-Content-SHA256": digest,
        "X-Signature": hmac.new(secret, text.encode(), hashlib.sha256).hexdigest(),
    }


def bare_tutorial_verify(
    secret: bytes, method: str, url: str, headers: dict[str, str], body: bytes
) -> None:
    """The bare counterpart: recompute, compare in constant time, check the window (no
    nonce cache)."""
    parts = urlsplit(url)
    timestamp, nonce = headers["X-Timestamp"], headers["X-Nonce"]
    if abs(time.time() - int(timestamp)) > 300:
        raise ValueError("timestamp outside the window")
    digest = hashlib.sha256(body).hexdigest()
    if not hmac.compare_digest(digest, headers["X-Content-SHA256"]):
        raise ValueError("body digest")
    query = "&".join(sorted(item for item in parts.query.split("&") if item))
    text = "\n".join(
        (
            "SUREFOOT-HMAC-SHA256",
            method.upper(),
            parts.path or "/",
            query,
            parts.netloc.lower(),
            timestamp,
            nonce,
            digest,
        )
    )
    mac = hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac, headers["X-Signature"]):
        raise ValueError("bad signature")


def received(headers: Any) -> surefoot.signing.SignedRequest:
    """The request as a verifier gets it."""
    return surefoot.signing.SignedRequest.of(METHOD, URL, headers, BODY)


def tutorial_contenders() -> list[Contender]:
    signer = surefoot.signing.HmacSigner(HMAC_KEY_ID, HMAC_SECRET)
    verifier = surefoot.signing.HmacVerifier({HMAC_KEY_ID: HMAC_SECRET})
    # cross-checks: each implementation's output verifies with the other
    bare = bare_tutorial_sign(HMAC_KEY_ID, HMAC_SECRET, METHOD, URL, BODY)
    checker = surefoot.signing.HmacVerifier({HMAC_KEY_ID: HMAC_SECRET})
    if checker.verify(received(bare)).key_id != HMAC_KEY_ID:
        _fail("tutorial.bare", "surefoot does not verify it")
    bare_tutorial_verify(HMAC_SECRET, METHOD, URL, signer.sign(REQUEST), BODY)

    def signed() -> dict[str, str]:
        return signer.sign(REQUEST)

    return [
        Contender(
            "tutorial.bare.sign",
            "tutorial",
            "bare",
            "sign",
            baseline="raw.hmac_sha256",
            call=lambda: bare_tutorial_sign(HMAC_KEY_ID, HMAC_SECRET, METHOD, URL, BODY),
            note="hand-written canonical string + HMAC",
        ),
        Contender(
            "tutorial.surefoot.sign",
            "tutorial",
            "surefoot",
            "sign",
            baseline="tutorial.bare.sign",
            call=signed,
            note="HmacSigner.sign",
        ),
        Contender(
            "tutorial.bare.verify",
            "tutorial",
            "bare",
            "verify",
            baseline="raw.hmac_sha256",
            make_input=signed,
            check=lambda h: bare_tutorial_verify(HMAC_SECRET, METHOD, URL, h, BODY),
            note="recompute + compare, no nonce cache",
        ),
        Contender(
            "tutorial.surefoot.verify",
            "tutorial",
            "surefoot",
            "verify",
            baseline="tutorial.bare.verify",
            make_input=lambda: received(signed()),
            check=verifier.verify,
            note="HmacVerifier.verify, with its nonce cache",
        ),
    ]


# -- RFC 9421 -----------------------------------------------------------------------------------


def ed25519_key(private: ed25519.Ed25519PrivateKey) -> surefoot.signing.SignatureKey:
    return surefoot.signing.SignatureKey("ed25519", private, key_id=ED_KEY_ID)


def _rfc9421_base(key: surefoot.signing.SignatureKey) -> str:
    signer = surefoot.signing.MessageSigner(key, components=COMPONENTS)
    headers = {**HEADERS, "Content-Digest": surefoot.signing.content_digest(BODY)}
    base, _ = signer.request_base(surefoot.signing.HttpRequest(METHOD, URL, headers, BODY))
    return base


def rfc9421_contenders(
    scheme: str,
    key: surefoot.signing.SignatureKey,
    algorithm: type[algorithms.HTTPSignatureAlgorithm],
    private: Any,
    public: Any,
    raw_sign: str,
    raw_verify: str,
) -> list[Contender]:
    key_id = key.key_id
    assert key_id is not None
    signer = surefoot.signing.MessageSigner(key, components=COMPONENTS, content_digest="sha-256")
    verifier = surefoot.signing.MessageVerifier(
        {key_id: key}, nonces=surefoot.stores.MemoryNonceCache(), require_content_digest=True
    )
    resolver = MappingKeyResolver(public_keys={key_id: public}, private_keys={key_id: private})
    peer_signer = HTTPMessageSigner(signature_algorithm=algorithm, key_resolver=resolver)
    peer_verifier = HTTPMessageVerifier(signature_algorithm=algorithm, key_resolver=resolver)
    peer_components = COMPONENTS[:-1]  # with body=..., pyauth adds content-digest itself

    def sign() -> dict[str, str]:
        return signer.sign(REQUEST)  # Signature-Input, Signature and Content-Digest

    def peer_sign() -> _Message:
        message = _Message(METHOD, URL, dict(HEADERS))
        peer_signer.sign(
            message,
            key_id=key_id,
            nonce=secrets.token_hex(16),
            label="sig1",
            include_alg=False,
            covered_component_ids=peer_components,
            body=BODY,
        )
        return message

    def signed_headers() -> dict[str, str]:
        return {**HEADERS, **sign()}

    def signed_message() -> _Message:
        return _Message(METHOD, URL, signed_headers())

    # cross-checks: pyauth verifies surefoot's signatures and the other way round, and
    # both cover the same components
    peer_result = peer_verifier.verify(signed_message(), body=BODY)
    if len(peer_result) != 1 or peer_result[0].body != BODY:
        _fail(f"{scheme}.surefoot", "pyauth does not verify its signature and body")
    theirs = peer_sign().headers
    verifier = surefoot.signing.MessageVerifier({key_id: key}, require_content_digest=True)
    got = verifier.verify(received(theirs)).signature
    ours = verifier.verify(received(signed_headers())).signature
    if got is None or ours is None:
        _fail(f"{scheme}.pyauth", "no signature details")
    elif got.covered != ours.covered or not got.nonce:
        _fail(f"{scheme}.pyauth", f"covers {got.covered}, surefoot covers {ours.covered}")

    return [
        Contender(
            f"{scheme}.surefoot.sign",
            scheme,
            "surefoot",
            "sign",
            baseline=raw_sign,
            call=sign,
            note="MessageSigner.sign (with its Content-Digest)",
        ),
        Contender(
            f"{scheme}.pyauth.sign",
            scheme,
            "http-message-signatures",
            "sign",
            baseline=f"{scheme}.surefoot.sign",
            call=peer_sign,
            note="HTTPMessageSigner.sign(body=...)",
        ),
        Contender(
            f"{scheme}.surefoot.verify",
            scheme,
            "surefoot",
            "verify",
            baseline=raw_verify,
            make_input=lambda: received(signed_headers()),
            check=verifier.verify,
            note="MessageVerifier.verify (and the body's digest), with a nonce cache",
        ),
        Contender(
            f"{scheme}.pyauth.verify",
            scheme,
            "http-message-signatures",
            "verify",
            baseline=f"{scheme}.surefoot.verify",
            make_input=signed_message,
            check=lambda m: peer_verifier.verify(m, body=BODY),
            note="HTTPMessageVerifier.verify(body=...), no nonces",
        ),
    ]


# -- SigV4 --------------------------------------------------------------------------------------


def sigv4_contenders() -> list[Contender]:
    signer = surefoot.signing.SigV4Signer(
        surefoot.signing.SigV4Credentials(AWS_ACCESS_KEY, AWS_SECRET),
        AWS_REGION,
        AWS_SERVICE,
        signed_headers=SIGV4_SIGNED,
    )
    # SigV4 has no nonce: the same request signed twice in one second is one signature,
    # which the default replay check refuses the second time. The bench verifies the same
    # signatures over and over, so it measures the signature check alone (nonces=False).
    verifier = surefoot.signing.SigV4Verifier(
        {AWS_ACCESS_KEY: AWS_SECRET}, region=AWS_REGION, service=AWS_SERVICE, nonces=False
    )
    boto = BotocoreSigV4Auth(
        BotocoreCredentials(AWS_ACCESS_KEY, AWS_SECRET), AWS_SERVICE, AWS_REGION
    )
    aws_request = AWSRequest(method=METHOD, url=URL, data=BODY, headers=dict(HEADERS))
    aws4 = AWS4Auth(
        AWS_ACCESS_KEY, AWS_SECRET, AWS_REGION, AWS_SERVICE, include_hdrs=[*SIGV4_SIGNED, "x-amz-*"]
    )
    prepared = requests.Request(METHOD, URL, data=BODY, headers=HEADERS).prepare()

    def sign() -> dict[str, str]:
        return signer.sign(REQUEST)

    def boto_sign() -> None:
        boto.add_auth(aws_request)  # replaces Authorization and X-Amz-Date on each call

    def signed() -> dict[str, str]:
        return {"Host": HOST, **HEADERS, **sign()}

    # cross-checks: surefoot's verifier accepts every library's output, and all sign the
    # same headers (requests-aws4auth also sends and signs x-amz-content-sha256)
    def verify_received(headers: Any, name: str, expected: str) -> None:
        pairs = [(str(k), str(v)) for k, v in headers.items()]
        if not any(k.lower() == "host" for k, _ in pairs):
            pairs.append(("Host", HOST))
        if verifier.verify(received(pairs)).key_id != AWS_ACCESS_KEY:
            _fail(name, "not verified")
        authorization = {k.lower(): v for k, v in pairs}["authorization"]
        if f"SignedHeaders={expected}," not in authorization:
            _fail(name, f"signs {authorization.split('SignedHeaders=')[1].split(',')[0]}")

    common = ";".join(sorted(SIGV4_SIGNED))
    verify_received(signed(), "sigv4.surefoot", common)
    boto_sign()
    verify_received(aws_request.headers, "sigv4.botocore", common)
    aws4(prepared)
    verify_received(
        prepared.headers,
        "sigv4.requests-aws4auth",
        ";".join(sorted((*SIGV4_SIGNED, "x-amz-content-sha256"))),
    )

    return [
        Contender(
            "sigv4.surefoot.sign",
            "sigv4",
            "surefoot",
            "sign",
            baseline="raw.hmac_sha256",
            call=sign,
            note="SigV4Signer.sign",
        ),
        Contender(
            "sigv4.botocore.sign",
            "sigv4",
            "botocore",
            "sign",
            baseline="sigv4.surefoot.sign",
            call=boto_sign,
            note="SigV4Auth.add_auth(AWSRequest)",
        ),
        Contender(
            "sigv4.aws4auth.sign",
            "sigv4",
            "requests-aws4auth",
            "sign",
            baseline="sigv4.surefoot.sign",
            call=lambda: aws4(prepared),
            note="AWS4Auth(PreparedRequest)",
        ),
        Contender(
            "sigv4.surefoot.verify",
            "sigv4",
            "surefoot",
            "verify",
            baseline="sigv4.surefoot.sign",
            make_input=lambda: received(signed()),
            check=verifier.verify,
            note="SigV4Verifier.verify (no peer verifies SigV4)",
        ),
    ]


def build_contenders() -> list[Contender]:
    """All contenders, in reporting order (each checked once here)."""
    ed_private = ed25519.Ed25519PrivateKey.generate()
    hmac_key = surefoot.signing.SignatureKey("hmac-sha256", HMAC_SECRET, key_id=HMAC_KEY_ID)
    return [
        *raw_contenders(ed_private),
        *tutorial_contenders(),
        *rfc9421_contenders(
            "rfc9421_hmac",
            hmac_key,
            algorithms.HMAC_SHA256,
            HMAC_SECRET,
            HMAC_SECRET,
            "raw.hmac_sha256",
            "raw.hmac_sha256",
        ),
        *rfc9421_contenders(
            "rfc9421_ed25519",
            ed25519_key(ed_private),
            algorithms.ED25519,
            ed_private,
            ed_private.public_key(),
            "raw.ed25519.sign",
            "raw.ed25519.verify",
        ),
        *sigv4_contenders(),
    ]


# -- measuring ----------------------------------------------------------------------------------


def measure(
    contenders: list[Contender], *, n: int, rounds: int, rng: random.Random
) -> dict[str, list[float]]:
    """Per contender, the mean ns per operation of each round."""
    for contender in contenders:  # warm-up
        contender.run_batch(n)
    samples: dict[str, list[float]] = {c.name: [] for c in contenders}
    order = list(contenders)
    started = time.monotonic()
    for index in range(rounds):
        rng.shuffle(order)
        for contender in order:
            gc.collect()
            samples[contender.name].append(contender.run_batch(n) / n)
        if index == 0 or (index + 1) % 10 == 0 or index + 1 == rounds:
            print(f"  round {index + 1}/{rounds} ({time.monotonic() - started:.0f} s)", flush=True)
    return samples


@dataclass
class Figure:
    name: str
    scheme: str
    library: str
    op: str
    note: str
    us_per_op: float
    us_iqr: tuple[float, float]
    baseline: str
    ratio: float | None  # median per-round ratio to the baseline
    ratio_iqr: tuple[float, float] | None
    target: str = ""
    status: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def summarize(contenders: list[Contender], samples: dict[str, list[float]]) -> list[Figure]:
    figures = []
    for c in contenders:
        mine = samples[c.name]
        ratio = ratio_iqr = None
        if c.baseline:
            ratios = [m / b for m, b in zip(mine, samples[c.baseline], strict=True)]
            ratio, ratio_iqr = statistics.median(ratios), quartiles(ratios)
        us = statistics.median(mine) / 1000
        low, high = quartiles(mine)
        figure = Figure(
            c.name,
            c.scheme,
            c.library,
            c.op,
            c.note,
            us,
            (low / 1000, high / 1000),
            c.baseline,
            ratio,
            ratio_iqr,
        )
        target = TARGETS.get(c.name)
        if target is not None:
            limit, kind = target
            if kind == "us":
                figure.target = f"<= {limit:g} µs"
                figure.status = "ok" if us <= limit else "MISSED"
            else:
                figure.target = f"<= {limit:g}x {c.baseline}"
                figure.status = "ok" if ratio is not None and ratio <= limit else "MISSED"
        figures.append(figure)
    return figures


# -- reporting ----------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    return {
        **platform_info(),
        "cryptography": _version("cryptography"),
        "http-message-signatures": _version("http-message-signatures"),
        "botocore": _version("botocore"),
        "requests-aws4auth": _version("requests-aws4auth"),
        "http-sfv": _version("http-sfv"),
        "surefoot": surefoot.__version__,
    }


def print_table(figures: list[Figure]) -> None:
    header = (
        f"{'contender':<31} {'µs/op':>8} {'IQR µs':>15}  {'baseline':<31} "
        f"{'x base':>7}  {'target':<32} status"
    )
    print(header)
    print("-" * len(header))
    scheme = None
    for f in figures:
        if scheme is not None and f.scheme != scheme:
            print()
        scheme = f.scheme
        ratio = f"{f.ratio:>7.2f}" if f.ratio is not None else f"{'':>7}"
        iqr = f"{f.us_iqr[0]:.1f}-{f.us_iqr[1]:.1f}"
        print(
            f"{f.name:<31} {f.us_per_op:>8.1f} {iqr:>15}  {f.baseline or '-':<31} {ratio}  "
            f"{f.target:<32} {f.status}".rstrip()
        )


def print_verify_summary(figures: list[Figure]) -> None:
    """The verify figures next to the primitives they are compared with (issue 14)."""
    by_name = {f.name: f for f in figures}

    def pair(name: str) -> str:
        f, base = by_name[name], by_name[by_name[name].baseline]
        return (f"{f.us_per_op:.1f} µs = {f.ratio or 0:.2f}x {base.name} "
                f"({base.us_per_op:.1f} µs)")

    print("verify, side by side with its baseline (median per-round ratio):")
    for name in ("rfc9421_hmac.surefoot.verify", "rfc9421_ed25519.surefoot.verify",
                 "sigv4.surefoot.verify"):
        print(f"  {name:<32} {pair(name)}")


def build_result(
    figures: list[Figure],
    samples: dict[str, list[float]],
    *,
    n: int,
    rounds: int,
    info: dict[str, Any],
) -> dict[str, Any]:
    by_name = {f.name: f for f in figures}

    def us(name: str) -> float:
        return round(by_name[name].us_per_op, 2)

    def ratio(name: str) -> float | None:
        found = by_name[name].ratio
        return None if found is None else round(found, 3)

    return {
        "targets": {
            f.name: {
                "target": f.target,
                "us_per_op": round(f.us_per_op, 2),
                "ratio": None if f.ratio is None else round(f.ratio, 3),
                "status": f.status,
            }
            for f in figures
            if f.status
        },
        "headline": {
            "tutorial_sign_ratio_vs_bare": round(by_name["tutorial.surefoot.sign"].ratio or 0, 3),
            "rfc9421_hmac_sign_us": us("rfc9421_hmac.surefoot.sign"),
            "rfc9421_ed25519_sign_us": us("rfc9421_ed25519.surefoot.sign"),
            "sigv4_sign_us": us("sigv4.surefoot.sign"),
            "pyauth_hmac_sign_us": us("rfc9421_hmac.pyauth.sign"),
            "pyauth_ed25519_sign_us": us("rfc9421_ed25519.pyauth.sign"),
            "botocore_sigv4_sign_us": us("sigv4.botocore.sign"),
            "aws4auth_sigv4_sign_us": us("sigv4.aws4auth.sign"),
            "raw_hmac_sha256_us": us("raw.hmac_sha256"),
            "raw_ed25519_sign_us": us("raw.ed25519.sign"),
            "raw_ed25519_verify_us": us("raw.ed25519.verify"),
            # verifying (issue 14); a ratio is the median per-round ratio to its baseline
            "rfc9421_hmac_verify_us": us("rfc9421_hmac.surefoot.verify"),
            "ratio_hmac_verify_vs_raw": ratio("rfc9421_hmac.surefoot.verify"),
            "rfc9421_ed25519_verify_us": us("rfc9421_ed25519.surefoot.verify"),
            "ratio_ed25519_verify_vs_raw": ratio("rfc9421_ed25519.surefoot.verify"),
            "sigv4_verify_us": us("sigv4.surefoot.verify"),
            "ratio_sigv4_verify_vs_sign": ratio("sigv4.surefoot.verify"),
            "tutorial_verify_us": us("tutorial.surefoot.verify"),
            "pyauth_hmac_verify_us": us("rfc9421_hmac.pyauth.verify"),
            "pyauth_ed25519_verify_us": us("rfc9421_ed25519.pyauth.verify"),
        },
        "contenders": {
            f.name: {
                "scheme": f.scheme,
                "library": f.library,
                "op": f.op,
                "what": f.note,
                "us_per_op": round(f.us_per_op, 3),
                "us_iqr": [round(x, 3) for x in f.us_iqr],
                "baseline": f.baseline or None,
                "ratio_vs_baseline": None if f.ratio is None else round(f.ratio, 4),
                "ratio_iqr": None if f.ratio_iqr is None else [round(x, 4) for x in f.ratio_iqr],
                "target": f.target or None,
                "status": f.status or None,
            }
            for f in figures
        },
        "request": {
            "method": METHOD,
            "url": URL,
            "headers": HEADERS,
            "body_bytes": len(BODY),
            "rfc9421_components": list(COMPONENTS),
            "sigv4_signed_headers": list(SIGV4_SIGNED),
        },
        "rounds": rounds,
        "ops_per_batch": n,
        "machine": info,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "per_round_us": {
            name: [round(v / 1000, 3) for v in values] for name, values in samples.items()
        },
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=200, help="operations per batch (200)")
    parser.add_argument("--rounds", type=int, default=60, help="rounds (60)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 rounds x 50 ops")
    parser.add_argument("--seed", type=int, default=None, help="seed of the round order")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON path ({RESULTS})")
    args = parser.parse_args(argv)
    if args.quick:
        args.ops, args.rounds = 50, 5
    if args.ops < 1 or args.rounds < 1:
        parser.error("--ops and --rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine_info()
    print(
        f"python {info['python']} ({info['implementation']}) on {info['platform']}, "
        f"{info['cpu_count']} CPUs; cryptography {info['cryptography']}, "
        f"http-message-signatures {info['http-message-signatures']}, "
        f"botocore {info['botocore']}, requests-aws4auth {info['requests-aws4auth']}, "
        f"surefoot {info['surefoot']}"
    )
    print(
        f"{args.rounds} rounds x {args.ops} operations per contender, shuffled order per "
        f"round; {METHOD} {URL} with a {len(BODY)}-byte JSON body"
    )
    contenders = build_contenders()
    print(f"{len(contenders)} contenders built and cross-checked")
    samples = measure(contenders, n=args.ops, rounds=args.rounds, rng=random.Random(args.seed))
    figures = summarize(contenders, samples)
    print()
    print("median µs per operation (IQR across rounds); x base: median per-round ratio")
    print_table(figures)
    print()
    for f in figures:
        if f.status:
            shown = f"{f.ratio:.2f}x" if "x" in f.target else f"{f.us_per_op:.1f} µs"
            print(f"target {f.name}: {shown} ({f.target}): {f.status}")
    print_verify_summary(figures)
    result = build_result(figures, samples, n=args.ops, rounds=args.rounds, info=info)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    if args.quick:
        print("(--quick: a smoke run, not a measurement)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
