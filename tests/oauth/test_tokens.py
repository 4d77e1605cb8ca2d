"""Tokens, freshness and the sans-I/O client-credentials grant."""

from __future__ import annotations

import base64
import json
import math
from urllib.parse import parse_qs

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surefoot import ConfigurationError, TokenError
from surefoot.errors import InvalidClient, InvalidGrant, TokenEndpointError, TokenResponseError
from surefoot.oauth import ClientCredentials, HttpRequest, HttpResponse, Token
from surefoot.oauth._token import Freshness, freshness, leeway_for, token_from_callable_result

ACCESS = "at-very-secret-access-token"
REFRESH = "rt-very-secret-refresh-token"
T0 = 1_700_000_000.0
CLIENT_SECRET = "p@ss:w"


def make_token(**kwargs) -> Token:
    kwargs.setdefault("access_token", ACCESS)
    kwargs.setdefault("refresh_token", REFRESH)
    kwargs.setdefault("obtained_at", T0)
    kwargs.setdefault("expires_at", T0 + 3600)
    return Token(**kwargs)


def grant(**kwargs) -> ClientCredentials:
    kwargs.setdefault("token_url", "https://auth.example.com/oauth/token")
    kwargs.setdefault("client_id", "a b")
    kwargs.setdefault("client_secret", CLIENT_SECRET)
    return ClientCredentials(**kwargs)


def response(status: int, body: object, headers=None) -> HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResponse(status, headers or {"Content-Type": "application/json"}, raw)


# -- Token ------------------------------------------------------------------------------


def test_token_repr_and_str_hide_secrets():
    token = make_token(scope="read", version=3)
    for text in (repr(token), str(token), f"{token}", repr([token]), repr({"t": token})):
        assert ACCESS not in text
        assert REFRESH not in text
    assert token.fingerprint in repr(token)
    assert "version=3" in repr(token)


def test_fingerprint_is_stable_and_short():
    assert make_token().fingerprint == make_token(version=9).fingerprint
    assert make_token().fingerprint != make_token(access_token="other").fingerprint
    assert len(make_token().fingerprint) == 10
    assert make_token().fingerprint not in ACCESS


def test_json_roundtrip():
    token = make_token(scope="a b", version=4, token_type="Bearer")
    data = json.loads(json.dumps(token.to_json()))
    assert Token.from_json(data) == token
    minimal = Token(access_token="x")
    assert Token.from_json(json.loads(json.dumps(minimal.to_json()))) == minimal


def test_from_json_defaults():
    token = Token.from_json({"access_token": "abc"})
    assert token == Token(access_token="abc")
    assert token is not None
    assert token.expires_at is None
    assert token.token_type == "Bearer"


@pytest.mark.parametrize(
    "data",
    [
        None,
        "abc",
        42,
        ["access_token", "x"],
        {},
        {"access_token": ""},
        {"access_token": None},
        {"access_token": 123},
        {"token": "x"},
        {"access_token": "x", "expires_at": math.nan},
        {"access_token": "x", "expires_at": math.inf},
        {"access_token": "x", "expires_at": "tomorrow"},
        {"access_token": "x", "obtained_at": "yesterday"},
        {"access_token": "x", "version": "1"},
        {"access_token": "x", "version": 1.5},
        {"access_token": "x", "token_type": 7},
    ],
)
def test_from_json_garbage_is_none(data):
    assert Token.from_json(data) is None


def test_from_json_drops_bad_optional_fields():
    token = Token.from_json({"access_token": "x", "refresh_token": 5, "scope": ["a"]})
    assert token is not None
    assert token.refresh_token is None
    assert token.scope is None


# -- freshness --------------------------------------------------------------------------------


def test_short_token_leeway():
    token = make_token(expires_at=T0 + 30)
    assert leeway_for(token, leeway=60, leeway_ratio=0.1) == pytest.approx(3.0)
    assert freshness(token, T0) is Freshness.FRESH
    assert freshness(token, T0 + 10) is Freshness.FRESH
    assert freshness(token, T0 + 26.9) is Freshness.FRESH
    assert freshness(token, T0 + 27) is Freshness.REFRESH_SOON
    assert freshness(token, T0 + 28.5) is Freshness.REFRESH_SOON
    assert freshness(token, T0 + 29) is Freshness.EXPIRED  # less than a second left
    assert freshness(token, T0 + 30) is Freshness.EXPIRED
    assert freshness(token, T0 + 1e6) is Freshness.EXPIRED


def test_hour_token_refreshes_a_minute_early():
    token = make_token(expires_at=T0 + 3600)
    assert leeway_for(token, leeway=60, leeway_ratio=0.1) == 60.0
    assert freshness(token, T0 + 3539.9) is Freshness.FRESH
    assert freshness(token, T0 + 3540) is Freshness.REFRESH_SOON
    assert freshness(token, T0 + 3598.9) is Freshness.REFRESH_SOON
    assert freshness(token, T0 + 3599) is Freshness.EXPIRED


def test_freshness_edge_cases():
    assert freshness(None, T0) is Freshness.EXPIRED
    assert freshness(make_token(expires_at=None), T0 + 10**9) is Freshness.FRESH
    assert leeway_for(make_token(expires_at=None), leeway=60, leeway_ratio=0.1) == 0.0
    # expiry before it was obtained: no negative leeway
    odd = make_token(expires_at=T0 - 10)
    assert leeway_for(odd, leeway=60, leeway_ratio=0.1) == 0.0
    assert freshness(odd, T0) is Freshness.EXPIRED


@given(
    lifetime=st.floats(min_value=0, max_value=1e7),
    offset=st.floats(min_value=-10, max_value=2e7),
    leeway=st.floats(min_value=0, max_value=3600),
    ratio=st.floats(min_value=0, max_value=1),
)
def test_freshness_never_fresh_within_last_second(lifetime, offset, leeway, ratio):
    token = make_token(expires_at=T0 + lifetime)
    state = freshness(token, T0 + offset, leeway=leeway, leeway_ratio=ratio)
    if T0 + offset >= T0 + lifetime - 1.0:
        assert state is Freshness.EXPIRED
    else:
        assert state is not Freshness.EXPIRED
    stored = token.expires_at - token.obtained_at
    assert 0 <= leeway_for(token, leeway=leeway, leeway_ratio=ratio) <= min(leeway, stored * ratio)


# -- ClientCredentials.build_request ---------------------------------------------------------


def test_client_secret_basic_request():
    request = grant(scope="read write").build_request()
    assert isinstance(request, HttpRequest)
    assert request.method == "POST"
    assert request.url == "https://auth.example.com/oauth/token"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["Accept"] == "application/json"
    scheme, _, encoded = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    # RFC 6749 §2.3.1: id and secret encoded before Basic encoding, a space as %20 (read
    # the same by servers decoding with unquote and with unquote_plus)
    assert base64.b64decode(encoded) == b"a%20b:p%40ss%3Aw"
    form = parse_qs(request.body.decode(), keep_blank_values=True)
    assert form == {"grant_type": ["client_credentials"], "scope": ["read write"]}
    assert CLIENT_SECRET.encode() not in request.body


def test_client_secret_post_request():
    request = grant(auth_method="client_secret_post", extra={"audience": "api"}).build_request()
    assert "Authorization" not in request.headers
    form = parse_qs(request.body.decode(), keep_blank_values=True)
    assert form == {
        "grant_type": ["client_credentials"],
        "audience": ["api"],
        "client_id": ["a b"],
        "client_secret": [CLIENT_SECRET],
    }


def test_request_and_grant_reprs_hide_secret():
    g = grant()
    request = g.build_request()
    assert CLIENT_SECRET not in repr(g)
    assert request.headers["Authorization"] not in repr(request)
    assert "Basic" not in repr(request)
    assert CLIENT_SECRET not in repr(grant(auth_method="client_secret_post").build_request())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"token_url": "ftp://auth.example.com/token"},
        {"token_url": "/relative/token"},
        {"client_id": ""},
        {"auth_method": "private_key_jwt"},
    ],
)
def test_grant_configuration_errors(kwargs):
    with pytest.raises(ConfigurationError):
        grant(**kwargs)


# -- ClientCredentials.parse_response --------------------------------------------------------


def test_parse_success():
    token = grant().parse_response(
        response(200, {"access_token": ACCESS, "token_type": "bearer", "expires_in": 3600,
                       "refresh_token": REFRESH, "scope": "read"}),
        now=T0,
    )
    assert token.access_token == ACCESS
    assert token.token_type == "Bearer"
    assert token.expires_at == T0 + 3600
    assert token.obtained_at == T0
    assert token.refresh_token == REFRESH
    assert token.scope == "read"


def test_parse_success_without_token_type_or_expiry():
    token = grant().parse_response(response(200, {"access_token": ACCESS}), now=T0)
    assert token.access_token == ACCESS
    assert token.expires_at is None


@pytest.mark.parametrize(
    "body",
    [b"<html>secret-looking-page</html>", b"\xff\xfe\x00garbage", b"", b"null", b"[1, 2]"],
)
def test_parse_garbage_200(body):
    with pytest.raises(TokenResponseError) as info:
        grant().parse_response(HttpResponse(200, {}, body), now=T0)
    message = str(info.value)
    if body.strip():
        assert body.decode("utf-8", "replace") not in message
    assert "secret-looking-page" not in message


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"access_token": ""},
        {"access_token": "   "},
        {"access_token": None},
        {"access_token": 12345},
        {"token_type": "Bearer"},
        {"access_token": "abc\r\nX-Injected: 1"},
    ],
)
def test_parse_unusable_token(data):
    with pytest.raises(TokenResponseError):
        grant().parse_response(response(200, data), now=T0)


@pytest.mark.parametrize("token_type", ["mac", "DPoP", "", 5, None])
def test_parse_non_bearer(token_type):
    with pytest.raises(TokenResponseError):
        grant().parse_response(
            response(200, {"access_token": ACCESS, "token_type": token_type}), now=T0
        )


def test_invalid_client():
    with pytest.raises(InvalidClient) as info:
        grant().parse_response(
            response(401, {"error": "invalid_client", "error_description": "bad secret"}), now=T0
        )
    assert info.value.error == "invalid_client"
    assert info.value.description == "bad secret"
    assert info.value.status == 401
    assert info.value.retryable is False
    assert isinstance(info.value, TokenError)
    assert CLIENT_SECRET not in str(info.value)


def test_invalid_grant():
    with pytest.raises(InvalidGrant) as info:
        grant().parse_response(response(400, {"error": "invalid_grant"}), now=T0)
    assert info.value.error == "invalid_grant"


@pytest.mark.parametrize(
    "code", ["invalid_scope", "unauthorized_client", "temporarily_unavailable"]
)
def test_other_error_codes(code):
    with pytest.raises(TokenEndpointError) as info:
        grant().parse_response(response(400, {"error": code}), now=T0)
    assert type(info.value) is TokenEndpointError
    assert info.value.error == code
    assert info.value.status == 400


def test_error_without_json():
    with pytest.raises(TokenEndpointError) as info:
        grant().parse_response(HttpResponse(502, {}, b"<html>bad gateway</html>"), now=T0)
    assert type(info.value) is TokenEndpointError
    assert info.value.status == 502
    assert "<html>" not in str(info.value)


@pytest.mark.parametrize(
    ("expires_in", "lifetime"),
    [
        (3600, 3600.0),
        ("3600", 3600.0),
        (" 120 ", 120.0),
        (59.5, 59.5),
        (0, 0.0),
        (-5, None),
        ("-5", None),
        ("soon", None),
        ("1e3", None),
        ("１２", None),
        (math.inf, None),
        (True, None),
        (None, None),
        ([3600], None),
    ],
)
def test_expires_in(expires_in, lifetime):
    data = {"access_token": ACCESS, "expires_in": expires_in}
    raw = json.dumps(data, allow_nan=True).encode()
    token = grant().parse_response(HttpResponse(200, {}, raw), now=T0)
    if lifetime is None:
        assert token.expires_at is None
    else:
        assert token.expires_at == T0 + lifetime


def test_expires_in_clamped():
    token = grant().parse_response(response(200, {"access_token": ACCESS,
                                                  "expires_in": 10**30}), now=T0)
    assert token.expires_at is not None
    assert math.isfinite(token.expires_at)
    assert token.expires_at <= T0 + 10 * 365 * 86400


# -- token functions ---------------------------------------------------------------------------


def test_token_from_callable_result():
    assert token_from_callable_result(" abc ", now=T0) == Token(access_token="abc", obtained_at=T0)
    token = make_token()
    assert token_from_callable_result(token, now=T0) is token
    mapped = token_from_callable_result({"access_token": "m", "expires_in": 10}, now=T0)
    assert mapped.expires_at == T0 + 10
    for bad in ("", "  ", "a\nb", 42, None, b"bytes"):
        with pytest.raises(TokenResponseError):
            token_from_callable_result(bad, now=T0)
