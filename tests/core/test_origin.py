"""The origin rule for credentials (``_core/_origin.py``), and what the core's messages show."""

from __future__ import annotations

import pytest

from surefoot._core import _origin
from surefoot._core._messages import HttpRequest
from surefoot._core._origin import (
    CREDENTIAL_HEADERS,
    FIRST_HOP,
    Hop,
    StartedAt,
    credentials_allowed,
    hop_rule,
    origin_of,
    withheld_headers,
)

A = "https://api.example.com/v1/items"
A_OTHER_PATH = "https://API.example.com:443/v2"
B = "https://evil.example.net/collect"


def test_first_hop_without_credential_origins_parses_nothing(monkeypatch):
    def no_parsing(url: str) -> _origin.Origin:
        raise AssertionError("the first hop parsed its URL")

    monkeypatch.setattr(_origin, "origin_of", no_parsing)
    assert hop_rule(A) is FIRST_HOP
    assert credentials_allowed(A)
    start = StartedAt(A)  # marking the first hop parses nothing either
    assert start.url == A


def test_started_at_parses_its_origin_once_when_a_hop_asks(monkeypatch):
    calls: list[str] = []

    def counting(url: str) -> _origin.Origin:
        calls.append(url)
        return origin_of(url)

    monkeypatch.setattr(_origin, "origin_of", counting)
    start = StartedAt(A)
    assert start.origin == ("https", "api.example.com", 443)
    assert start.origin == ("https", "api.example.com", 443)
    assert calls == [A]


@pytest.mark.parametrize(
    ("url", "allowed", "expected"),
    [
        (A_OTHER_PATH, None, Hop(credentials_allowed=True, elsewhere=False)),
        (B, None, Hop(credentials_allowed=False, elsewhere=True)),
        ("http://api.example.com/v1", None, Hop(False, True)),  # another scheme
        ("https://api.example.com:8443/v1", None, Hop(False, True)),  # another port
        (A_OTHER_PATH, frozenset({origin_of(A)}), Hop(True, False)),
        (A_OTHER_PATH, frozenset({origin_of(B)}), Hop(False, False)),
        (B, frozenset({origin_of(A), origin_of(B)}), Hop(False, True)),
    ],
)
def test_redirect_hop_rule(url, allowed, expected):
    started_at = origin_of(A)
    assert hop_rule(url, started_at=started_at, allowed=allowed) == expected
    assert credentials_allowed(url, started_at=started_at, allowed=allowed) is (
        expected.credentials_allowed
    )


def test_first_hop_outside_credential_origins_withholds_only_the_auth():
    assert hop_rule(B, allowed=frozenset({origin_of(A)})) == Hop(False, False)


def test_credential_headers_are_a_fixed_lower_case_list():
    assert all(name == name.lower() for name in CREDENTIAL_HEADERS)
    assert {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key",
            "x-auth-token", "x-access-token", "x-amz-security-token", "x-goog-api-key",
            "ocp-apim-subscription-key"} <= CREDENTIAL_HEADERS


def test_withheld_headers_case_insensitive_each_once():
    headers = ["X-API-Key", "AUTHORIZATION", "Content-Type", "x-trace-id", "Cookie"]
    withheld = withheld_headers(headers, ("Authorization", "X-Signature"))
    assert withheld == ("Authorization", "X-Signature", "X-API-Key", "Cookie")
    assert withheld_headers(["Accept", "X-Request-Id"]) == ()


def test_http_request_repr_shows_no_url_credential():
    request = HttpRequest(
        "POST", "https://user:hunter2@as.example.com/t;jsessionid=s1?api_key=k1&x=1#f", {}
    )
    shown = repr(request)
    assert shown == "HttpRequest(POST https://as.example.com/t;jsessionid=REDACTED)"
    for secret in ("hunter2", "s1", "k1"):
        assert secret not in shown
    assert repr(HttpRequest("GET", A, {})) == f"HttpRequest(GET {A})"
