"""``BearerAuth.client_credentials`` checks its endpoint URLs when it is built."""

from __future__ import annotations

import pytest

from surefoot.errors import ConfigurationError
from surefoot.oauth import BearerAuth


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
