"""The base of the auth objects: one object, attachable every way.

An auth object (:class:`~surefoot.BearerAuth`, the signing auth objects) is an
:class:`~surefoot._core._effects.AuthStrategy` for surefoot's clients, transports and
adapter, and attaches on its own too:

* ``session.auth = auth`` (requests): :func:`surefoot._adapters._requests.attach_auth`;
* ``httpx.Client(auth=auth)`` / ``httpx.AsyncClient(auth=auth)``: it is an ``httpx.Auth``
  (when httpx is installed) whose auth flows are in :mod:`surefoot._adapters._httpx`.

Used alone, it runs the same pipeline as everywhere else with a no-retry policy
(:data:`STANDALONE`): credentials for each attempt, one refresh-and-replay on 401, and
credentials kept on their origin across redirects. Nothing here imports an HTTP library
but httpx's ``Auth`` base class, the only way httpx accepts an auth object.
"""

from __future__ import annotations

import base64
import dataclasses
import random
from collections.abc import AsyncGenerator, Generator, Mapping
from typing import TYPE_CHECKING

from surefoot._core._clock import Clock, default_clock
from surefoot._core._effects import TokenSource
from surefoot._core._messages import HttpRequest
from surefoot._core._pipeline import Flow, RequestView, request_flow
from surefoot._core._policy import RetryPolicy
from surefoot.errors import ConfigurationError
from surefoot.events import Hook, LoggingHook

if TYPE_CHECKING:
    import httpx
    import requests

    from surefoot.oauth._token import Token

try:  # with httpx installed, the auth objects are httpx.Auth too: httpx.Client(auth=...)
    from httpx import Auth as _HttpxAuth
except ImportError:  # pragma: no cover - httpx is optional
    _HttpxAuth = object  # type: ignore[assignment,misc]

__all__ = ["STANDALONE", "AuthBase", "BasicAuth", "standalone_flow"]

#: The policy of an auth object used alone: no retries (the HTTP client's own business),
#: no deadline; the 401 refresh-and-replay is not a retry and still happens once.
STANDALONE = RetryPolicy(max_attempts=1, deadline=None)


class AuthBase(_HttpxAuth):
    """What every auth object is: an :class:`~surefoot._core._effects.AuthStrategy`, a
    requests auth and an ``httpx.Auth``. Subclasses provide ``credential_headers`` and
    ``attempt_headers`` (and ``token_source``, ``signs_body``, ``clock``, ``hook`` when
    they differ from the defaults)."""

    requires_request_body = True  # the body is signed, and replayed after a 401

    @property
    def credential_headers(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def signs_body(self) -> bool:
        return False

    @property
    def token_source(self) -> TokenSource | None:
        return None

    @property
    def clock(self) -> Clock:
        """The clock of the attempts' ``now`` (and of the standalone flow's waits)."""
        source = self.token_source
        return source.clock if source is not None else default_clock

    @property
    def hook(self) -> Hook:
        """Where the standalone flow's events go."""
        return LoggingHook()

    def attempt_headers(
        self, request: HttpRequest, token: Token | None, *, now: float
    ) -> Mapping[str, str]:
        raise NotImplementedError

    # -- used alone ----------------------------------------------------------------------

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        from surefoot._adapters._requests import attach_auth

        return attach_auth(self, request)

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        from surefoot._adapters._httpx import sync_auth_flow

        return sync_auth_flow(self, request)

    def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        from surefoot._adapters._httpx import async_auth_flow

        return async_auth_flow(self, request)


class BasicAuth(AuthBase):
    """``Authorization: Basic ...`` (RFC 7617) with a user name and a password: what a
    ``(user, password)`` tuple given as ``auth=`` becomes, as in requests. Like every auth
    object, its header never follows a redirect to another origin. The password is never
    shown (``repr`` redacts it)."""

    __slots__ = ("_header", "username")

    def __init__(self, username: str, password: str) -> None:
        if not isinstance(username, str) or not isinstance(password, str):
            raise ConfigurationError("BasicAuth takes a user name and a password (str, str)")
        if ":" in username:
            raise ConfigurationError("a Basic auth user name cannot contain ':' (RFC 7617)")
        self.username = username
        pair = f"{username}:{password}"
        try:  # requests' encoding (Latin-1); UTF-8 for what Latin-1 cannot encode
            raw = pair.encode("latin-1")
        except UnicodeEncodeError:
            raw = pair.encode("utf-8")
        self._header = "Basic " + base64.b64encode(raw).decode("ascii")

    def __repr__(self) -> str:
        return f"BasicAuth({self.username!r}, password=<redacted>)"

    @property
    def credential_headers(self) -> tuple[str, ...]:
        return ("Authorization",)

    def attempt_headers(
        self, request: HttpRequest, token: Token | None, *, now: float
    ) -> Mapping[str, str]:
        return {"Authorization": self._header}


def standalone_flow(auth: AuthBase, view: RequestView, headers: Mapping[str, str]) -> Flow:
    """The flow of ``auth`` used alone, for the request ``view``: the no-retry policy, the
    auth object's clock and hook. ``headers`` are the request's headers as they are now:
    each attempt's credentials are then applied to the request itself."""
    return request_flow(dataclasses.replace(view, headers=headers), policy=STANDALONE,
                        auth=auth, clock=auth.clock, hook=auth.hook, rng=random.random)
