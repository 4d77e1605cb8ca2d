"""``BearerAuth.client_credentials`` checks its endpoint URLs when it is built; a grant's
repr and cache key never show a credential its URLs carry."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from surefoot.errors import ConfigurationError
from surefoot.oauth import BearerAuth, ClientCredentials, RefreshTokenGrant, Token, TokenCache
from surefoot.stores import MemoryTokenStore


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[::1", "it cannot be parsed"),
        ("http://", "no host"),
        ("https://:443/token", "no host"),
        ("/oauth/token", "no http:// or https:// scheme"),
        ("ftp://auth.example.com/token", "no http:// or https:// scheme"),
        ("https://auth.example.com:99999/token", "the port is not a number"),
        ("https://auth.example.com:0/token", "the port is not a number"),
        ("https://auth.example.com:abc/token", "the port is not a number"),
        ("https://auth..example.com/token", "empty label"),
        ("https://auth.example.com/token\r\nX: y", "control character"),
    ],
)
def test_bad_token_url_raises_at_construction(url, reason):
    with pytest.raises(ConfigurationError) as info:
        BearerAuth.client_credentials(url, "client", "client-secret")
    message = str(info.value)
    assert message.startswith(
        "token_url must be an absolute http(s) URL with a host and a valid port"
    )
    assert reason in message
    assert "client-secret" not in message


@pytest.mark.parametrize("kind", ["client_credentials", "refresh_token"])
@pytest.mark.parametrize(
    "url", ["http://[::1", "http://", "https://auth.example.com:99999/token",
            "https://auth..example.com/token", "https://auth.example.com/t\r\nX: y"],
)
@pytest.mark.parametrize("field", ["token_url", "revocation_url"])
def test_grant_classes_check_their_urls_as_bearer_auth_does(kind, url, field):
    """The grant dataclasses, built directly, check their URLs with the same rule."""
    good = "https://auth.example.com/token"
    urls = {"token_url": good, "revocation_url": None, field: url}
    extra = {} if kind == "client_credentials" else {"refresh_token": "rt"}
    grant_type = ClientCredentials if kind == "client_credentials" else RefreshTokenGrant
    with pytest.raises(ConfigurationError) as info:
        grant_type(client_id="c", client_secret="client-secret", **urls, **extra)
    assert str(info.value).startswith(f"{field} must be an absolute http(s) URL with a host")
    assert "client-secret" not in str(info.value)


def test_unclosed_ipv6_bracket_raises_configuration_error():
    with pytest.raises(ConfigurationError, match="token_url"):
        BearerAuth.client_credentials(token_url="http://[::1", client_id="c",
                                      client_secret="s")


def test_the_url_is_not_repeated_in_the_message():
    with pytest.raises(ConfigurationError) as info:
        BearerAuth.client_credentials("https://auth.example.com:99999/t?key=hunter2", "c", "s")
    assert "hunter2" not in str(info.value)


def test_bad_revocation_url_raises_at_construction():
    with pytest.raises(ConfigurationError, match="revocation_url"):
        BearerAuth.client_credentials(
            "https://auth.example.com/token", "c", "s", revocation_url="http://[::1"
        )


@pytest.mark.parametrize(
    "url",
    [
        "https://auth.example.com/oauth/token",
        "http://127.0.0.1:8080/oauth/token",
        "http://[::1]:8080/oauth/token",
        "https://auth.example.com.:443/token",
        "https://Auth.Example.com/token?audience=x",
    ],
)
def test_good_token_urls_are_accepted(url):
    auth = BearerAuth.client_credentials(url, "c", "s")
    assert auth.cache is not None


# -- URLs carrying credentials: the reprs and the cache key show them redacted ---------------

SECRET = "hunter2-url-secret"


def _grants(token_url: str, revocation_url: str | None = None) -> list[Any]:
    return [
        ClientCredentials(token_url=token_url, client_id="c", client_secret="s",
                          revocation_url=revocation_url),
        RefreshTokenGrant(token_url=token_url, client_id="c", client_secret="s",
                          refresh_token="rt", revocation_url=revocation_url),
    ]


@pytest.mark.parametrize(
    ("token_url", "revocation_url"),
    [
        (f"https://as.example.com/token?api_key={SECRET}&tenant=t1", None),
        (f"https://c:{SECRET}@as.example.com/token", None),
        ("https://as.example.com/token", f"https://as.example.com/revoke?access_token={SECRET}"),
    ],
)
def test_grant_reprs_and_cache_keys_show_no_url_credential(token_url, revocation_url):
    for grant in _grants(token_url, revocation_url):
        shown = repr(grant)
        assert SECRET not in shown
        assert "as.example.com/token" in shown  # still says where it points
        assert SECRET not in grant.cache_key
        cache = TokenCache(grant, store=MemoryTokenStore())
        cache.store.save(cache.key, Token(access_token="a", expires_at=None))
        for text in (repr(cache), repr(cache.store), cache.key):
            assert SECRET not in text
    if revocation_url is not None:
        assert "revocation_url='https://as.example.com/revoke?access_token=REDACTED'" in shown
    else:
        assert "token_url='https://as.example.com/token" in shown


def test_grant_repr_keeps_the_dataclass_fields_but_the_secrets():
    grant = ClientCredentials(token_url="https://as.example.com/token", client_id="c",
                              client_secret="the-client-secret", scope="read")
    assert repr(grant) == (
        "ClientCredentials(token_url='https://as.example.com/token', client_id='c', "
        "auth_method='client_secret_basic', scope='read', extra=mappingproxy({}), "
        "client_auth=ClientSecretBasic(client_id='c'), revocation_url=None)"
    )


@pytest.mark.parametrize(
    "token_url",
    [
        "https://as.example.com/oauth/token",
        "https://as.example.com/oauth/token?audience=api&tenant=t1",
        "http://127.0.0.1:8080/oauth/token",
    ],
)
def test_cache_key_of_a_url_without_credentials_is_unchanged(token_url):
    """Keys already in stores stay valid: a URL without credentials gives the key it
    always gave."""
    cc, rt = _grants(token_url)
    assert cc.cache_key == f"client_credentials:c@{token_url}"
    fingerprint = hashlib.sha256(b"rt").hexdigest()[:16]
    assert rt.cache_key == f"refresh_token:c@{token_url}#{fingerprint}"


def test_cache_keys_of_urls_differing_only_in_a_credential_differ():
    a, b = (ClientCredentials(token_url=f"https://as.example.com/t?api_key={key}",
                              client_id="c", client_secret="s") for key in ("k-1", "k-2"))
    assert a.cache_key != b.cache_key
    for grant in (a, b):
        assert grant.cache_key.startswith(
            "client_credentials:c@https://as.example.com/t?api_key=REDACTED~")
