"""Token-endpoint answers and stored tokens are parsed totally: any bytes give a Token or
a typed surefoot error (never OverflowError, RecursionError, UnicodeEncodeError ...)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from surefoot.errors import (
    SurefootError,
    TokenEndpointError,
    TokenError,
    TokenResponseError,
)
from surefoot.oauth import ClientCredentials, HttpResponse, RefreshTokenGrant, Token
from surefoot.oauth._grants import parse_revocation_response
from surefoot.oauth._token import MAX_TOKEN_LIFETIME, token_from_callable_result

T0 = 1_700_000_000.0
ACCESS = "at-totality-secret"
DEEP = b"[" * 100_000 + b"]" * 100_000  # 200 kB, nested far past the recursion limit


def grant() -> ClientCredentials:
    return ClientCredentials(
        token_url="https://auth.example.com/token", client_id="c", client_secret="s"
    )


def refresh_grant() -> RefreshTokenGrant:
    return RefreshTokenGrant(
        token_url="https://auth.example.com/token",
        client_id="c",
        client_secret="s",
        refresh_token="rt-initial",
    )


def answer(status: int, body: bytes) -> HttpResponse:
    return HttpResponse(status, {"Content-Type": "application/json"}, body)


# -- the two reported cases ------------------------------------------------------------------


@pytest.mark.parametrize("digits", [400, 4000])
def test_expires_in_of_hundreds_of_digits_is_clamped(digits):
    body = b'{"access_token":"' + ACCESS.encode() + b'","expires_in":' + b"9" * digits + b"}"
    token = grant().parse_response(answer(200, body), now=T0)
    assert token.access_token == ACCESS
    assert token.expires_at == T0 + MAX_TOKEN_LIFETIME


def test_expires_in_digit_string_of_400_digits_is_clamped_too():
    body = json.dumps({"access_token": ACCESS, "expires_in": "9" * 400}).encode()
    token = grant().parse_response(answer(200, body), now=T0)
    assert token.expires_at == T0 + MAX_TOKEN_LIFETIME
    leading_zeros = json.dumps({"access_token": ACCESS, "expires_in": "0" * 400 + "60"})
    assert grant().parse_response(answer(200, leading_zeros.encode()), now=T0).expires_at == (
        T0 + 60
    )


def test_expires_in_past_pythons_digit_limit_is_a_token_response_error():
    body = b'{"access_token":"x","expires_in":' + b"9" * 5000 + b"}"
    with pytest.raises(TokenResponseError):
        grant().parse_response(answer(200, body), now=T0)


def test_deeply_nested_success_body_is_a_token_response_error():
    with pytest.raises(TokenResponseError) as info:
        grant().parse_response(answer(200, DEEP), now=T0)
    assert "not JSON" in str(info.value)


@pytest.mark.parametrize("status", [400, 401, 500])
def test_deeply_nested_error_body_is_a_token_endpoint_error(status):
    with pytest.raises(TokenEndpointError) as info:
        grant().parse_response(answer(status, DEEP), now=T0)
    assert type(info.value) is TokenEndpointError
    assert info.value.error == "http_error"
    assert info.value.status == status


def test_deeply_nested_revocation_answer_is_a_token_endpoint_error():
    with pytest.raises(TokenEndpointError):
        parse_revocation_response(answer(400, DEEP))


# -- the rest of the class --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires_in", "lifetime"),
    [
        (10**400, MAX_TOKEN_LIFETIME),
        (10**30, MAX_TOKEN_LIFETIME),
        (1e300, MAX_TOKEN_LIFETIME),
        (-(10**400), None),
        (False, None),
        (math.nan, None),
        (-math.inf, None),
        ({"seconds": 60}, None),
    ],
    ids=["1e400-int", "1e30-int", "1e300-float", "minus-1e400", "false", "nan", "-inf", "dict"],
)
def test_expires_in_extremes(expires_in, lifetime):
    token = token_from_callable_result({"access_token": ACCESS, "expires_in": expires_in}, now=T0)
    assert token.expires_at == (None if lifetime is None else T0 + lifetime)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_non_finite_expires_in_means_unknown_expiry(literal):
    body = b'{"access_token":"x","expires_in":' + literal + b"}"
    assert grant().parse_response(answer(200, body), now=T0).expires_at is None


@pytest.mark.parametrize(
    "access", ["\ud800abc", "caf\u00e9", "tab\there", "nul\x00", "del\x7f", "x\u2028y"]
)
def test_access_token_a_request_cannot_carry_is_refused(access):
    body = json.dumps({"access_token": access}).encode()  # ensure_ascii: escapes survive
    with pytest.raises(TokenResponseError) as info:
        grant().parse_response(answer(200, body), now=T0)
    assert access not in str(info.value)
    with pytest.raises(TokenResponseError):
        token_from_callable_result(access, now=T0)


def test_unusable_refresh_token_and_scope_are_ignored():
    body = json.dumps(
        {"access_token": ACCESS, "refresh_token": "\ud800rt", "scope": "\udfff"}
    ).encode()
    token = grant().parse_response(answer(200, body), now=T0)
    assert token.refresh_token is None
    assert token.scope is None
    repr(token)
    # a refresh-token grant keeps the refresh token it had instead
    kept = refresh_grant().parse_response(answer(200, body), now=T0)
    assert kept.refresh_token == "rt-initial"


def test_token_type_of_huge_integer_is_a_token_response_error():
    with pytest.raises(TokenResponseError) as info:
        token_from_callable_result({"access_token": ACCESS, "token_type": 10**5000}, now=T0)
    assert "int" in str(info.value)


def test_error_description_is_made_printable():
    body = json.dumps(
        {"error": "invalid_request\n", "error_description": "bad\r\nFAKE LOG LINE \ud800"}
    ).encode()
    with pytest.raises(TokenEndpointError) as info:
        grant().parse_response(answer(400, body), now=T0)
    message = str(info.value)
    assert "\n" not in message
    assert "\r" not in message
    message.encode("utf-8")
    assert info.value.description == "bad??FAKE LOG LINE ?"


@pytest.mark.parametrize(
    "data",
    [
        {"access_token": "x", "expires_at": 10**400},
        {"access_token": "x", "obtained_at": 10**400},
        {"access_token": "x", "obtained_at": math.nan},
        {"access_token": "x", "obtained_at": math.inf},
        {"access_token": "x", "obtained_at": True},
        {"access_token": "x", "expires_at": False},
        {"access_token": "x", "version": True},
        {"access_token": "x", "version": -1},
        {"access_token": "\ud800"},
        {"access_token": "a\nb"},
    ],
    ids=[
        "expires_at-1e400",
        "obtained_at-1e400",
        "obtained_at-nan",
        "obtained_at-inf",
        "obtained_at-bool",
        "expires_at-bool",
        "version-bool",
        "version-negative",
        "surrogate-access",
        "multiline-access",
    ],
)
def test_stored_token_from_json_is_total(data):
    assert Token.from_json(data) is None


def test_stored_token_drops_unusable_refresh_token_and_scope():
    token = Token.from_json({"access_token": "x", "refresh_token": "\ud800", "scope": "\udc00"})
    assert token == Token(access_token="x")


# -- properties -----------------------------------------------------------------------------

_TOKEN_KEYS = (
    "access_token",
    "token_type",
    "expires_in",
    "refresh_token",
    "scope",
    "error",
    "error_description",
    "expires_at",
    "obtained_at",
    "version",
)
_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**1000)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["Bearer", "bearer", "mac", "3600", "9" * 400, " 60 ", ACCESS])
)
_json_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_token_shaped = st.fixed_dictionaries(
    {}, optional=dict.fromkeys(_TOKEN_KEYS, _json_values)
) | st.fixed_dictionaries(
    {"access_token": st.text(max_size=30) | st.just(ACCESS)},
    optional=dict.fromkeys(_TOKEN_KEYS[1:], _json_values),
)
_FRAGMENTS = [
    b"9" * 400,
    b"-" + b"9" * 400,
    b"9" * 5000,
    b"1e400",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"[" * 100_000,
    b"{" * 5000,
    b'{"a":' * 3000,
    b"]" * 10,
    b"}",
    b"{",
    b'"',
    b"\\",
    b'"\\ud800"',
    b'"\\udfff\\ud800"',
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"\x00",
    b"\xc3",
    b"true",
    b"null",
    b",",
    b":",
    b'"access_token"',
    b'"expires_in":',
]


@st.composite
def _bodies(draw: st.DrawFn) -> bytes:
    value = draw(_token_shaped | _json_values)
    text = json.dumps(value, allow_nan=True).encode()
    kind = draw(st.sampled_from(["as_is", "splice", "wrap", "binary"]))
    if kind == "splice":
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(st.sampled_from(_FRAGMENTS)) + text[at:]
    elif kind == "wrap":
        depth = draw(st.sampled_from([1, 10, 900, 2000, 100_000]))
        text = b"[" * depth + text + b"]" * depth
    elif kind == "binary":
        text = draw(st.binary(max_size=64))
    return text


_STATUSES = st.sampled_from([200, 201, 204, 299, 301, 400, 401, 403, 429, 500, 503])


def _check_token(token: object, now: float) -> None:
    assert isinstance(token, Token)
    repr(token)  # the fingerprint encodes the access token
    assert token.access_token.encode("ascii")
    assert token.expires_at is None or now <= token.expires_at <= now + MAX_TOKEN_LIFETIME
    # and it survives a store round trip
    stored = json.loads(json.dumps(token.to_json()))
    assert Token.from_json(stored) == token


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_bodies(), status=_STATUSES, refresh=st.booleans())
def test_any_body_gives_a_token_or_a_typed_error(body, status, refresh):
    current = Token(access_token="old", refresh_token="rt-current", obtained_at=T0 - 10)
    source = refresh_grant() if refresh else grant()
    error: SurefootError | None = None
    try:
        token = source.parse_response(answer(status, body), now=T0, current=current)
    except SurefootError as exc:  # anything else fails the test
        error = exc
    if error is None:
        assert 200 <= status < 300
        _check_token(token, T0)
        return
    assert isinstance(error, TokenError)
    if 200 <= status < 300:
        assert isinstance(error, TokenResponseError)
    else:
        assert isinstance(error, TokenEndpointError)
    str(error).encode("utf-8")  # loggable


_stored_shaped = st.fixed_dictionaries(
    {"access_token": st.just(ACCESS) | st.text(max_size=10)},
    optional=dict.fromkeys(
        ("token_type", "expires_at", "obtained_at", "refresh_token", "scope", "version"),
        _leaves,
    ),
)


@settings(max_examples=300, deadline=None)
@given(data=_stored_shaped | _token_shaped | _json_values)
def test_any_stored_json_gives_a_token_or_none(data):
    token = Token.from_json(data)
    if token is not None:
        repr(token)
        assert Token.from_json(json.loads(json.dumps(token.to_json()))) == token


@settings(max_examples=200, deadline=None)
@given(data=_token_shaped)
def test_any_token_function_mapping_gives_a_token_or_a_typed_error(data):
    try:
        token = token_from_callable_result(data, now=T0)
    except TokenResponseError:
        return
    _check_token(token, T0)


@pytest.mark.parametrize(
    ("error", "expected"),
    [("invalid_client", "InvalidClient"), ("invalid_grant", "InvalidGrant"),
     ("temporarily_unavailable", "TokenEndpointError")],
)
def test_error_body_on_a_2xx_is_the_endpoints_error(error, expected):
    """A server answering 200 with an RFC 6749 §5.2 error body (authlib's client reads it
    as the endpoint's error too) gives the typed endpoint error, not "no access_token"."""
    body = json.dumps({"error": error, "error_description": "no luck"}).encode()
    with pytest.raises(TokenEndpointError) as info:
        grant().parse_response(answer(200, body), now=T0)
    assert type(info.value).__name__ == expected
    assert info.value.error == error
    assert info.value.status == 200


@pytest.mark.parametrize("body", [{"error": {"code": 1}}, {"error": "x", "access_token": 5}])
def test_2xx_with_a_non_string_error_or_an_access_token_stays_a_response_error(body):
    with pytest.raises(TokenResponseError):
        grant().parse_response(answer(200, json.dumps(body).encode()), now=T0)
