"""surefoot on requests: the convenience client and the transport adapter.

::

    import surefoot.requests

    with surefoot.requests.Client("https://api.example.com", auth=auth) as api:
        api.get("/v1/items")                       # a requests.Response

    session.mount("https://", surefoot.requests.SurefootAdapter(retry=policy, auth=auth))

``surefoot.Client`` is this module's :class:`Client`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from surefoot._extras import missing

try:
    import requests
except ImportError as exc:
    raise missing(
        exc, "requests", extra="requests", what="surefoot.requests (surefoot.Client)"
    ) from None

from surefoot._adapters._client import BaseUrl, RevokesOnClose, SyncVerbs
from surefoot._adapters._client import passed as _passed
from surefoot._adapters._requests import SurefootAdapter, classify_requests_error
from surefoot._core._clock import Clock
from surefoot._core._effects import AuthStrategy
from surefoot._core._policy import RetryPolicy
from surefoot.errors import ConfigurationError
from surefoot.events import Hook
from surefoot.pacing._config import DEFAULT_PACING, PacingPolicy
from surefoot.pacing._pacer import Pacer

__all__ = ["Client", "SurefootAdapter", "classify_requests_error"]


class Client(BaseUrl, RevokesOnClose, SyncVerbs[requests.Response]):
    """``Client(base_url, auth=..., retry=RetryPolicy(...))`` with ``get/post/put/patch/
    delete/request(method, path, **kwargs)``; kwargs are those of :mod:`requests`.

    Every request runs through :class:`SurefootAdapter`. The caller's dicts (headers,
    params, json) are never mutated. The auth object's credentials only ever go to
    ``base_url``'s origin, and a redirect to another origin is followed without any
    credential: neither the auth object's nor a credential header such as ``X-API-Key``
    or ``Authorization`` set in ``headers`` or per request
    (:data:`surefoot._core._origin.CREDENTIAL_HEADERS`). ``repr`` shows ``base_url``
    redacted.

    ``pacing``: a :class:`PacingPolicy` (this client's own pacer; the default one learns
    the quota from the headers, adapts once throttled and budgets retries), a shared
    :class:`Pacer`, or ``None`` for no pacing at all.

    ``pool_maxsize``: the connections kept alive per host (requests' default, 10); a
    client shared by more threads than that needs as many, or opens a new connection
    for each request beyond them.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: AuthStrategy | tuple[str, str] | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | tuple[float, float] | None = 30.0,
        headers: Mapping[str, str] | None = None,
        hook: Hook | None = None,
        clock: Clock | None = None,
        rng: Callable[[], float] | None = None,
        session: requests.Session | None = None,
        pacing: PacingPolicy | Pacer | None = DEFAULT_PACING,
        pool_maxsize: int = 10,
    ) -> None:
        if isinstance(pool_maxsize, bool) or not isinstance(pool_maxsize, int) or (
            pool_maxsize < 1
        ):
            raise ConfigurationError(
                f"pool_maxsize must be a positive int (connections per host), "
                f"not {pool_maxsize!r}"
            )
        self._set_base_url(base_url)
        self.timeout = timeout
        self.session = session or requests.Session()
        self.adapter = SurefootAdapter(
            retry=retry,
            auth=auth,
            hook=hook,
            clock=clock,
            rng=rng,
            credential_origins=[self.base_url],
            pacing=pacing,
            pool_maxsize=pool_maxsize,
        )
        self.session.mount("http://", self.adapter)
        self.session.mount("https://", self.adapter)
        if headers:
            self.session.headers.update(headers)

    def __repr__(self) -> str:
        return f"Client({self._shown_base_url!r}, adapter={self.adapter!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the session; with an auth built with ``revoke_on_close=True``, revoke its
        token too (once, best-effort: a failure is logged, not raised)."""
        try:
            self.session.close()
        finally:
            self._revoke_on_close(self.adapter.auth)

    def request(self, method: str, path: str, **kwargs: object) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        # the caller's keyword arguments are requests' own, passed through as they are
        return self.session.request(method.upper(), self.url_for(path), **_passed(kwargs))
