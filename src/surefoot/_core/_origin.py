"""Origins (scheme, host, port), for keeping credentials on the origin they belong to.

The rule, the one every adapter applies (:func:`hop_rule`), for each request a logical
request sends (its first hop, then each redirect hop):

* the auth object's credentials go only to the origin the logical request started at,
  and, when a client has ``credential_origins``, only inside them
  (:func:`credentials_allowed`);
* a redirect hop to another origin than the one the logical request started at carries no
  credential at all, whether or not an auth object is set: neither the auth object's
  ``credential_headers`` nor any header named in :data:`CREDENTIAL_HEADERS`, whoever set
  it (the client's ``headers``, the caller's, the CLI's ``-H``) — :func:`withheld_headers`.

The first hop goes as the caller sent it (only the auth object obeys
``credential_origins`` there): the caller chose that URL and those headers. Costs nothing
on the common path: a first hop without ``credential_origins`` parses no URL.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple
from urllib.parse import urlsplit

__all__ = [
    "CREDENTIAL_HEADERS",
    "FIRST_HOP",
    "Hop",
    "Origin",
    "StartedAt",
    "credentials_allowed",
    "hop_rule",
    "origin_of",
    "withheld_headers",
]

Origin = tuple[str, str, "int | None"]

_DEFAULT_PORTS = {"http": 80, "https": 443}

#: Request headers that carry credentials whoever sets them, lower case (compared case
#: insensitively): never sent on a redirect hop to another origin. requests and httpx
#: drop ``Authorization`` themselves when the host changes and rebuild ``Cookie`` from
#: their cookie jar on every hop; the others they pass on. ``Cookie``: what the cookie jar
#: adds for the hop's host is withheld too (credentials only go where the request
#: started).
CREDENTIAL_HEADERS: frozenset[str] = frozenset({
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "api-key",
    "apikey",
    "x-auth-token",
    "x-access-token",
    "x-amz-security-token",
    "x-goog-api-key",
    "ocp-apim-subscription-key",
    "private-token",
    "x-vault-token",
})


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
    """Whether the auth object's credentials may be sent to ``url``.

    ``started_at`` is the origin the logical request started at: a redirect hop to another
    origin gets none (``None``: this is the first hop). ``allowed``, when set, is the set of
    origins the credentials belong to (a client's base URL).
    """
    return hop_rule(url, started_at=started_at, allowed=allowed).credentials_allowed


class Hop(NamedTuple):
    """What a request (a logical request's first hop, or one of its redirect hops) may
    carry."""

    #: The auth object's credentials may be attached.
    credentials_allowed: bool = True
    #: A redirect hop to another origin than the first hop's: no credential of any kind
    #: (:func:`withheld_headers`).
    elsewhere: bool = False


#: A first hop with no ``credential_origins``: everything goes, nothing was parsed.
FIRST_HOP = Hop()


class StartedAt:
    """Where a logical request started, marked on its first hop for its redirect hops:
    the first hop's URL, whose origin is parsed only when a redirect hop asks (a request
    that is not redirected parses nothing)."""

    __slots__ = ("_origin", "url")

    def __init__(self, url: str) -> None:
        self.url = url
        self._origin: Origin | None = None

    @property
    def origin(self) -> Origin:
        if self._origin is None:
            self._origin = origin_of(self.url)
        return self._origin


def hop_rule(
    url: str, *, started_at: Origin | None = None, allowed: frozenset[Origin] | None = None
) -> Hop:
    """The rule for ``url``: ``started_at`` as for :func:`credentials_allowed` (``None``:
    the first hop), ``allowed`` the ``credential_origins`` (``None``: any)."""
    if started_at is None and allowed is None:
        return FIRST_HOP
    origin = origin_of(url)
    elsewhere = started_at is not None and started_at != origin
    return Hop(not elsewhere and (allowed is None or origin in allowed), elsewhere)


def withheld_headers(
    headers: Iterable[str], auth_headers: Iterable[str] = ()
) -> tuple[str, ...]:
    """The header names a redirect hop to another origin goes without: the auth object's
    credential headers, and each of ``headers`` (the names a request carries) that is in
    :data:`CREDENTIAL_HEADERS`, as it is spelled there. Each name once, case
    insensitively."""
    out: dict[str, str] = {}
    for name in auth_headers:
        out.setdefault(name.lower(), name)
    for name in headers:
        lower = name.lower()
        if lower in CREDENTIAL_HEADERS:
            out.setdefault(lower, name)
    return tuple(out.values())
