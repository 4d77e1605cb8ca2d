"""Origins (scheme, host, port), for keeping credentials on the origin they belong to."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["Origin", "credentials_allowed", "origin_of"]

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


def credentials_allowed(
    url: str, *, started_at: Origin | None = None, allowed: frozenset[Origin] | None = None
) -> bool:
    """Whether credentials may be sent to ``url``: the one rule every adapter applies.

    ``started_at`` is the origin the logical request started at: a redirect hop to another
    origin gets none (``None``: this is the first hop). ``allowed``, when set, is the set of
    origins the credentials belong to (a client's base URL).
    """
    origin = origin_of(url)
    return (started_at is None or started_at == origin) and (
        allowed is None or origin in allowed
    )
