"""What the pipeline asks its driver to do: one immutable, typed record per operation.

A flow (:func:`~surefoot._core._pipeline.request_flow`) yields these effects and is sent
back each one's result. The driver carries them out (sync or async); the flow never does
I/O. Each effect says what it returns:

* :class:`Send` — send one attempt → a :class:`~surefoot._core._policy.ResponseInfo` or a
  :class:`~surefoot._core._policy.Failure`;
* :class:`Sleep` — wait → ``None``;
* :class:`FetchToken` — a token from a :class:`TokenSource` (refreshed if ``stale`` is the
  current one) → the :class:`~surefoot.oauth.Token`;
* the pacer's operations (:class:`OnRequest`, :class:`Reserve`, :class:`Admit`,
  :class:`ReportOutcome`, :class:`TryRetry`) → what that operation returns. Each is O(1)
  and never waits; with a shared store (``pacer.does_io``) it is one round trip, which an
  async driver runs off the event loop.

``deadline`` (on the token and the pacer effects) is the request's deadline, an instant on
the flow's clock (``None``: none): the driver bounds the store calls the effect makes by
what is left of it.

Also here, the two things the pipeline needs of the objects it is given:
:class:`AuthStrategy` (an auth object) and :class:`TokenSource` (a token cache).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from surefoot._core._clock import Clock
from surefoot._core._messages import HttpRequest
from surefoot._core._policy import Failure, ResponseInfo
from surefoot._core._state import REQUEST_EVENTS, RequestEvents

if TYPE_CHECKING:
    from surefoot.oauth._token import Token
    from surefoot.pacing._breaker import Admission
    from surefoot.pacing._gcra import Reservation
    from surefoot.pacing._pacer import Pacer

__all__ = [
    "Admit",
    "AuthStrategy",
    "Effect",
    "FetchToken",
    "Gate",
    "OnRequest",
    "PacerEffect",
    "ReportOutcome",
    "Reserve",
    "Send",
    "Sleep",
    "TokenSource",
    "TryRetry",
]


@runtime_checkable
class TokenSource(Protocol):
    """A source of bearer tokens (:class:`~surefoot.oauth.TokenCache` is one).

    ``deadline`` is an instant on the source's ``clock.monotonic()``; ``None``: no limit.
    The async variants never block the event loop.
    """

    @property
    def clock(self) -> Clock: ...

    def get(self, *, deadline: float | None = None) -> Token: ...

    def refresh_if_current(self, stale: Token, *, deadline: float | None = None) -> Token: ...

    async def get_async(self, *, deadline: float | None = None) -> Token: ...

    async def refresh_if_current_async(
        self, stale: Token, *, deadline: float | None = None
    ) -> Token: ...


@runtime_checkable
class AuthStrategy(Protocol):
    """What the pipeline needs of an auth object (:class:`~surefoot.BearerAuth`, the
    signing auth objects, or your own).

    * ``credential_headers`` — the header names it sets: they never reach another origin;
    * ``signs_body`` — the body is covered, so a body that cannot be read in advance
      (a stream) cannot be sent with it;
    * ``token_source`` — where its bearer token comes from (``None``: it needs none);
    * ``attempt_headers(request, token, now=)`` — the headers for one attempt, given the
      attempt as it will be sent (``request.headers``: its other headers) and the token
      (``None`` without a ``token_source``); ``now`` is Unix time.
    """

    @property
    def credential_headers(self) -> tuple[str, ...]: ...

    @property
    def signs_body(self) -> bool: ...

    @property
    def token_source(self) -> TokenSource | None: ...

    def attempt_headers(
        self, request: HttpRequest, token: Token | None, *, now: float
    ) -> Mapping[str, str]: ...


class Send(NamedTuple):
    """Send attempt number ``attempt``: add ``headers``, remove the ``remove`` names
    (credentials on a cross-origin hop), and cap its timeouts at ``timeout`` (what is left
    of the deadline; ``None``: no cap)."""

    attempt: int
    headers: Mapping[str, str]
    remove: tuple[str, ...]
    timeout: float | None


class Sleep(NamedTuple):
    seconds: float


class FetchToken(NamedTuple):
    """A token from ``source``: the current one, or (``stale`` set: after a 401) a
    refreshed one unless someone already replaced ``stale``. ``events``: the logical
    request's, which the source's token events are reported to as well
    (:data:`~surefoot._core._state.REQUEST_EVENTS`)."""

    source: TokenSource
    deadline: float | None
    stale: Token | None = None
    events: RequestEvents | None = None

    def run(self) -> Token:
        reset = REQUEST_EVENTS.set(self.events)
        try:
            if self.stale is not None:
                return self.source.refresh_if_current(self.stale, deadline=self.deadline)
            return self.source.get(deadline=self.deadline)
        finally:
            REQUEST_EVENTS.reset(reset)

    async def run_async(self) -> Token:
        # (the source's worker threads run in a copy of this context: they see it too)
        reset = REQUEST_EVENTS.set(self.events)
        try:
            if self.stale is not None:
                return await self.source.refresh_if_current_async(
                    self.stale, deadline=self.deadline
                )
            return await self.source.get_async(deadline=self.deadline)
        finally:
            REQUEST_EVENTS.reset(reset)


class OnRequest(NamedTuple):
    """A logical request starts on ``partition`` (demand accounting)."""

    pacer: Pacer
    partition: str
    deadline: float | None = None

    def run(self, clock: Clock) -> None:
        self.pacer.on_request(self.partition, now=clock.monotonic())


class Gate(NamedTuple):
    """The start of an attempt (:meth:`~surefoot.Pacer.gate`): the logical request's
    arrival when ``arrival``, its slot, and the breaker's verdict when the slot is now."""

    pacer: Pacer
    partition: str
    arrival: bool
    deadline: float | None = None

    def run(self, clock: Clock) -> tuple[Reservation, Admission | None]:
        return self.pacer.gate(self.partition, arrival=self.arrival, now=clock.monotonic())


class Reserve(NamedTuple):
    """Book (or re-book, replacing ``previous``) the next rate-limit slot."""

    pacer: Pacer
    partition: str
    previous: Reservation | None
    deadline: float | None = None

    def run(self, clock: Clock) -> Reservation:
        return self.pacer.reserve(self.partition, self.previous, now=clock.monotonic())


class Release(NamedTuple):
    """Give back a reserved slot the attempt will not use (it gives up instead)."""

    pacer: Pacer
    partition: str
    reservation: Reservation
    deadline: float | None = None

    def run(self, clock: Clock) -> None:
        self.pacer.release(self.partition, self.reservation, now=clock.monotonic())


class Admit(NamedTuple):
    """Ask the partition's circuit breaker whether this attempt may go."""

    pacer: Pacer
    partition: str
    deadline: float | None = None

    def run(self, clock: Clock) -> Admission:
        return self.pacer.admit(self.partition, now=clock.monotonic())


class ReportOutcome(NamedTuple):
    """Tell the pacer how an attempt sent at ``sent_at`` ended (quota headers, pauses,
    the adaptive rate, the breaker)."""

    pacer: Pacer
    partition: str
    outcome: ResponseInfo | Failure
    sent_at: float
    probe: bool
    #: Seconds the attempt went after its paced slot.
    late: float = 0.0
    deadline: float | None = None

    def run(self, clock: Clock) -> None:
        self.pacer.report(
            self.partition,
            self.outcome,
            sent_at=self.sent_at,
            now=clock.monotonic(),
            wall_now=clock.wall(),
            probe=self.probe,
            late=self.late,
        )


class TryRetry(NamedTuple):
    """Spend a retry from the retry budget (``False``: the budget is spent)."""

    pacer: Pacer
    deadline: float | None = None

    def run(self, clock: Clock) -> bool:
        return self.pacer.try_retry(clock.monotonic())


PacerEffect = OnRequest | Gate | Reserve | Release | Admit | ReportOutcome | TryRetry
PACER_EFFECTS = (OnRequest, Gate, Reserve, Release, Admit, ReportOutcome, TryRetry)
Effect = Send | Sleep | FetchToken | PacerEffect
