"""The attempt history carried by every outcome of a logical request."""

from __future__ import annotations

import enum
from typing import NamedTuple

__all__ = ["Attempt", "FailureKind", "history_of"]


class FailureKind(str, enum.Enum):
    """How an attempt failed below HTTP. The adapters classify their exceptions into these."""

    #: The connection could not be established: the request never reached the server.
    CONNECT = "connect"
    #: Waiting for a free connection from the pool timed out: nothing was sent.
    POOL_TIMEOUT = "pool_timeout"
    #: Sending the request timed out; part of it may have reached the server.
    WRITE_TIMEOUT = "write_timeout"
    #: The request was sent but the response did not arrive in time.
    READ_TIMEOUT = "read_timeout"
    #: The connection was reset or closed after (part of) the request was sent.
    RESET = "reset"
    #: The response was cut short (fewer bytes than announced, broken chunking).
    TRUNCATED = "truncated"
    #: Anything else (TLS errors, invalid responses ...): never retried.
    OTHER = "other"

    @property
    def request_sent(self) -> bool:
        """Whether the server may have received (and processed) the request."""
        return self not in (FailureKind.CONNECT, FailureKind.POOL_TIMEOUT)


class Attempt(NamedTuple):
    """One attempt of a logical request (immutable).

    ``status`` is set when the attempt got a response, ``error`` (a :class:`FailureKind`
    value) when it failed below HTTP. ``wait_before`` is the time slept before it,
    ``started``/``elapsed`` are monotonic seconds. ``decision`` says what surefoot did
    next and why (``"done"``, ``"retry: status 503 ..."``, ``"gave up: ..."``).
    """

    number: int
    method: str
    status: int | None
    error: str | None
    wait_before: float
    started: float
    elapsed: float
    decision: str = ""

    def describe(self) -> str:
        what = f"HTTP {self.status}" if self.status is not None else f"error {self.error}"
        text = f"#{self.number} {self.method} -> {what} in {self.elapsed * 1000:.1f} ms"
        if self.wait_before:
            text = f"(waited {self.wait_before:.3f} s) " + text
        if self.decision:
            text += f" [{self.decision}]"
        return text


def history_of(response: object) -> tuple[Attempt, ...]:
    """The attempts surefoot recorded for a response (``requests.Response`` or
    ``httpx.Response``), oldest first; empty for a response surefoot did not handle."""
    history = getattr(response, "surefoot_history", None)
    if history is None:
        extensions = getattr(response, "extensions", None)
        if isinstance(extensions, dict):
            history = extensions.get("surefoot.history")
    return tuple(history or ())
