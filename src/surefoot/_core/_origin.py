"""Origins (scheme, host, port), for keeping credentials on the origin they belong to."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["Origin", "origin_of"]

Origin = tuple[str, str, "int | None"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> Origin:
    """The origin of an absolute URL; default ports made explicit, host in lower case."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)
