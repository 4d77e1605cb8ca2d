"""surefoot: call third-party HTTP APIs without slipping.

Signed requests, self-refreshing tokens, retries, pacing and circuit breaking done right,
on requests and httpx (sync and async), through one sans-I/O core.

The root holds the common path; the rest lives in the subsystem namespaces:
:mod:`surefoot.requests` and :mod:`surefoot.httpx` (the two front doors),
:mod:`surefoot.signing`, :mod:`surefoot.oauth`, :mod:`surefoot.pacing`,
:mod:`surefoot.stores`, :mod:`surefoot.errors` (the whole error tree),
:mod:`surefoot.events`, :mod:`surefoot.testing`, :mod:`surefoot.middleware` and
:mod:`surefoot.sandbox`.

Everything here is loaded on first use: ``import surefoot`` imports no HTTP library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from surefoot._lazy import attach

if TYPE_CHECKING:
    from surefoot._core._effects import AuthStrategy
    from surefoot._core._history import Attempt, FailureKind, history_of
    from surefoot._core._policy import RetryPolicy
    from surefoot.errors import (
        CircuitOpen,
        ConfigurationError,
        DeadlineExceeded,
        RequestFailed,
        RetriesExhausted,
        RetryBudgetExhausted,
        SignatureError,
        SurefootError,
        TokenError,
        TransportError,
        Unauthorized,
    )
    from surefoot.events import Event, Hook, LoggingHook
    from surefoot.oauth._auth import BearerAuth
    from surefoot.pacing._config import PacingPolicy
    from surefoot.pacing._pacer import Pacer
    from surefoot.requests import Client
    from surefoot.signing._auth import SigningAuth

__version__ = "0.1.0"

__all__ = [
    "Attempt",
    "AuthStrategy",
    "BearerAuth",
    "CircuitOpen",
    "Client",
    "ConfigurationError",
    "DeadlineExceeded",
    "Event",
    "FailureKind",
    "Hook",
    "LoggingHook",
    "Pacer",
    "PacingPolicy",
    "RequestFailed",
    "RetriesExhausted",
    "RetryBudgetExhausted",
    "RetryPolicy",
    "SignatureError",
    "SigningAuth",
    "SurefootError",
    "TokenError",
    "TransportError",
    "Unauthorized",
    "__version__",
    "history_of",
]

#: the subsystem namespaces, importable as ``surefoot.<name>`` after ``import surefoot``.
_SUBMODULES = (
    "errors", "events", "httpx", "middleware", "oauth", "pacing", "requests",
    "sandbox", "signing", "stores", "testing",
)

if not TYPE_CHECKING:  # names are imported on first use
    __getattr__, __dir__ = attach(
        __name__,
        {
            "Attempt": "surefoot._core._history",
            "AuthStrategy": "surefoot._core._effects",
            "BearerAuth": "surefoot.oauth._auth",
            "CircuitOpen": "surefoot.errors",
            "Client": "surefoot.requests",
            "ConfigurationError": "surefoot.errors",
            "DeadlineExceeded": "surefoot.errors",
            "Event": "surefoot.events",
            "FailureKind": "surefoot._core._history",
            "Hook": "surefoot.events",
            "LoggingHook": "surefoot.events",
            "Pacer": "surefoot.pacing._pacer",
            "PacingPolicy": "surefoot.pacing._config",
            "RequestFailed": "surefoot.errors",
            "RetriesExhausted": "surefoot.errors",
            "RetryBudgetExhausted": "surefoot.errors",
            "RetryPolicy": "surefoot._core._policy",
            "SignatureError": "surefoot.errors",
            "SigningAuth": "surefoot.signing._auth",
            "SurefootError": "surefoot.errors",
            "TokenError": "surefoot.errors",
            "TransportError": "surefoot.errors",
            "Unauthorized": "surefoot.errors",
            "history_of": "surefoot._core._history",
        },
        _SUBMODULES,
    )


if TYPE_CHECKING:  # the namespaces, for type checkers
    from surefoot import errors as errors
    from surefoot import events as events
    from surefoot import httpx as httpx
    from surefoot import middleware as middleware
    from surefoot import oauth as oauth
    from surefoot import pacing as pacing
    from surefoot import requests as requests
    from surefoot import sandbox as sandbox
    from surefoot import signing as signing
    from surefoot import stores as stores
    from surefoot import testing as testing
