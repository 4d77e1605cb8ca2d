"""Helpers of the instrumentation tests."""

from __future__ import annotations

import itertools
from typing import Any

import requests

import surefoot

#: fast retries; the ``no_wait`` fixture skips the waits anyway
FAST = surefoot.RetryPolicy(max_attempts=3, backoff_initial=0.01, backoff_max=0.05)

_keys = itertools.count()


def quiet(event: surefoot.Event) -> None:
    return None


def unique(prefix: str = "k") -> str:
    """A fresh ``/flaky`` counter key (the sandbox is shared by the session)."""
    return f"{prefix}{next(_keys)}"


def revoke_tokens(sandbox: Any) -> None:
    requests.post(sandbox.url + "/admin/revoke-tokens", timeout=10).raise_for_status()


def cc_auth(sandbox: Any, hook: surefoot.Hook = quiet,
            secret: str = "demo-secret") -> surefoot.BearerAuth:
    return surefoot.BearerAuth.client_credentials(
        sandbox.url + "/oauth/token", "demo-client", secret, hook=hook
    )
