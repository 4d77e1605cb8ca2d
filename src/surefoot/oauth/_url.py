"""Endpoint URLs checked when the configuration is built, not on the first request."""

from __future__ import annotations

from urllib.parse import urlsplit

from surefoot.errors import ConfigurationError

__all__ = ["check_http_url"]

_EXPECTED = "an absolute http(s) URL with a host and a valid port, like https://host[:port]/path"


def check_http_url(url: object, name: str) -> None:
    """Raise :class:`ConfigurationError` naming ``name`` unless ``url`` is an absolute
    ``http``/``https`` URL with a host and, if it has one, a port from 1 to 65535.

    The message says what is wrong but never repeats the URL: its query or userinfo may
    hold a credential.
    """
    reason = _problem(url)
    if reason is not None:
        raise ConfigurationError(f"{name} must be {_EXPECTED} ({reason})")


def _problem(url: object) -> str | None:
    if not isinstance(url, str):
        return f"got {type(url).__name__}, not a string"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return "it contains a control character"
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket: "http://[::1"
        return "it cannot be parsed"
    if parts.scheme.lower() not in ("http", "https"):
        return "no http:// or https:// scheme"
    try:
        hostname = parts.hostname
        port = parts.port
    except ValueError:  # a port that is not a number, or out of 0-65535
        return "the port is not a number from 1 to 65535"
    if not hostname:
        return "no host"
    if ":" not in hostname:  # a name or an IPv4 address, not an IPv6 one
        labels = hostname[:-1].split(".") if hostname.endswith(".") else hostname.split(".")
        if not all(0 < len(label) <= 63 for label in labels):
            return "the host has an empty label or one longer than 63 characters"
    if port is not None and not 1 <= port <= 65535:
        return "the port is not a number from 1 to 65535"
    return None
