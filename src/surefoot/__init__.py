"""surefoot: call third-party HTTP APIs without slipping.

Signed requests, self-refreshing tokens, retries, pacing and circuit breaking done right,
on requests and httpx (sync and async), through one sans-I/O core.

The root holds the common path; the rest lives in the subsystem namespaces:
:mod:`surefoot.requests` and :mod:`surefoot.httpx` (the two front doors),
:mod:`surefoot.signing`, :mod:`surefoot.oauth`, :mod:`surefoot.pacing`,
:mod:`surefoot.stores`, :mod:`surefoot.errors` (the whole error tree),
:mod:`surefoot.events` (and its ready-made hooks in :mod:`surefoot.instrumentation`),
:mod:`surefoot.testing`, :mod:`surefoot.middleware` and :mod:`surefoot.sandbox`.

Everything here is loaded on first use: ``import surefoot`` imports no HTTP library.
"""

from __future__ import annotations

from surefoot._lazy import attach

#: ``typing.TYPE_CHECKING`` without importing typing (type checkers read it by its name).
TYPE_CHECKING = False

__version__ = "0.1.0"

#: the subsystem namespaces, importable as ``surefoot.<name>`` after ``import surefoot``.
_SUBMODULES = (
    "errors", "events", "httpx", "instrumentation", "middleware", "oauth", "pacing",
    "requests", "sandbox", "signing", "stores", "testing",
)

if TYPE_CHECKING:  # the common path, and the namespaces
    from surefoot import errors as errors
    from surefoot import events as events
    from surefoot import httpx as httpx
    from surefoot import instrumentation as instrumentation
    from surefoot import middleware as middleware
    from surefoot import oauth as oauth
    from surefoot import pacing as pacing
    from surefoot import requests as requests
    from surefoot import sandbox as sandbox
    from surefoot import signing as signing
    from surefoot import stores as stores
    from surefoot import testing as testing
    from surefoot._adapters._auth import BasicAuth as BasicAuth
    from surefoot._core._effects import AuthStrategy as AuthStrategy
    from surefoot._core._history import Attempt as Attempt
    from surefoot._core._history import FailureKind as FailureKind
    from surefoot._core._history import history_of as history_of
    from surefoot._core._policy import RetryPolicy as RetryPolicy
    from surefoot.errors import CircuitOpen as CircuitOpen
    from surefoot.errors import ConfigurationError as ConfigurationError
    from surefoot.errors import DeadlineExceeded as DeadlineExceeded
    from surefoot.errors import RequestFailed as RequestFailed
    from surefoot.errors import RetriesExhausted as RetriesExhausted
    from surefoot.errors import RetryBudgetExhausted as RetryBudgetExhausted
    from surefoot.errors import SignatureError as SignatureError
    from surefoot.errors import SurefootError as SurefootError
    from surefoot.errors import TokenError as TokenError
    from surefoot.errors import TransportError as TransportError
    from surefoot.errors import Unauthorized as Unauthorized
    from surefoot.events import Event as Event
    from surefoot.events import Hook as Hook
    from surefoot.events import LoggingHook as LoggingHook
    from surefoot.oauth._auth import BearerAuth as BearerAuth
    from surefoot.pacing._config import PacingPolicy as PacingPolicy
    from surefoot.pacing._pacer import Pacer as Pacer
    from surefoot.requests import Client as Client
    from surefoot.signing._auth import SigningAuth as SigningAuth
else:  # names are imported on first use
    __getattr__, __dir__, __all__ = attach(__name__, __file__, _SUBMODULES)
    __all__ += ["__version__"]
