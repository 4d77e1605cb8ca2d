"""The options every front door takes (``retry``, ``auth``, ``hook``), checked when the
client is built: a wrong type fails there, naming what is expected, not at the first
request with an ``AttributeError``. The obvious forms are accepted: a ``(user, password)``
tuple is Basic auth, as in requests."""

from __future__ import annotations

from surefoot._adapters._auth import BasicAuth
from surefoot._core._effects import AuthStrategy
from surefoot._core._policy import RetryPolicy
from surefoot.errors import ConfigurationError
from surefoot.events import Hook, LoggingHook

__all__ = ["check_auth", "check_hook", "check_retry"]

#: what an auth object must have (:class:`~surefoot._core._effects.AuthStrategy`)
_AUTH_MEMBERS = ("credential_headers", "signs_body", "token_source", "attempt_headers")


def _shown_type(value: object) -> str:
    kind = type(value)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def check_retry(retry: object) -> RetryPolicy:
    """``retry=``: a :class:`RetryPolicy`, or ``None`` for the default one."""
    if retry is None:
        return RetryPolicy()
    if isinstance(retry, RetryPolicy):
        return retry
    hint = (f" (for {retry} attempts: RetryPolicy(max_attempts={retry}))"
            if isinstance(retry, int) and not isinstance(retry, bool) else "")
    raise ConfigurationError(
        f"retry must be a surefoot.RetryPolicy or None, not {_shown_type(retry)}{hint}")


def check_auth(auth: object) -> AuthStrategy | None:
    """``auth=``: a surefoot auth object (or any object with the
    :class:`~surefoot.AuthStrategy` members), a ``(user, password)`` tuple (Basic auth),
    or ``None``."""
    if auth is None:
        return None
    if isinstance(auth, tuple):
        if len(auth) == 2 and all(isinstance(part, str) for part in auth):
            return BasicAuth(auth[0], auth[1])
        raise ConfigurationError(
            "an auth tuple must be (user name, password), two strings (Basic auth)")
    if all(hasattr(auth, name) for name in _AUTH_MEMBERS):
        return auth  # type: ignore[return-value]  # (checked: an AuthStrategy)
    raise ConfigurationError(
        "auth must be a surefoot auth object (surefoot.BearerAuth, surefoot.SigningAuth, "
        "surefoot.BasicAuth, or an AuthStrategy of your own), a (user, password) tuple, "
        f"or None; not {_shown_type(auth)}"
        + (" (an HTTP library's own auth object goes on that library's client or session "
           "instead)" if callable(auth) else ""))


def check_hook(hook: object) -> Hook:
    """``hook=``: a callable taking an :class:`~surefoot.Event`, or ``None`` for the
    default (the ``surefoot`` logger)."""
    if hook is None:
        return LoggingHook()
    if callable(hook):
        return hook
    raise ConfigurationError(
        f"hook must be a callable taking a surefoot.Event (or None), not {_shown_type(hook)}")
