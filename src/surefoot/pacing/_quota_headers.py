"""Learning a server's quota from its response headers. Pure and total.

:func:`parse_quota_headers` reads the rate-limit headers of one response and returns a
:class:`QuotaObservation` per quota it finds. It reads no clock (``now`` is passed in)
and never raises on what a server sends: a malformed field or member is ignored and the
rest still parses. An observation where nothing numeric survived is dropped.

Dialects (the ``dialect`` tag of each observation):

* ``"ietf"`` — draft-ietf-httpapi-ratelimit-headers (08 and later). ``RateLimit-Policy``
  is a Structured Field List of named policies (``"default";q=100;w=60``; the name may be
  a String or a Token) and ``RateLimit`` a List of the live counters
  (``"default";r=50;t=30``). They are joined by name: ``q`` → ``limit``, ``w`` →
  ``window``, ``r`` → ``remaining``, ``t`` → ``reset_after``. A policy with no counter
  item, or a counter item with no policy, still gives an observation (the other half
  ``None``). A policy whose quota unit ``qu`` is not ``"requests"`` (e.g.
  ``"content-bytes"``) is ignored, and so is its counter item. The first member of each
  name wins; later duplicates are ignored.
* ``"ietf-legacy"`` — the earlier drafts: ``RateLimit: limit=10, remaining=5, reset=3``
  (a Structured Field Dictionary), or else the three fields ``RateLimit-Limit``,
  ``RateLimit-Remaining`` and ``RateLimit-Reset`` (Integers, reset in delta seconds).
  ``RateLimit-Limit: 10, 10;w=1`` (the limit followed by quota policies) also gives the
  window, as does a ``RateLimit-Policy: 10;w=1`` of integer items. When both legacy
  forms are sent, the Dictionary wins.
* ``"x-ratelimit"`` — the common ``X-RateLimit-Limit``, ``-Remaining``, ``-Reset``. The
  reset may be epoch or delta seconds (see *Resets* below) and may be a decimal.
* ``"github"`` — the same headers plus ``X-RateLimit-Used`` and ``X-RateLimit-Resource``
  (→ ``policy``); recognised by ``X-RateLimit-Resource``. The reset is epoch seconds.
  With no valid remaining, ``limit - used`` stands in for it.
* ``"discord"`` — the same headers plus ``X-RateLimit-Reset-After`` (decimal seconds,
  preferred) and ``X-RateLimit-Bucket`` (→ ``policy``); recognised by either of those.
  Without ``Reset-After``, ``X-RateLimit-Reset`` is epoch seconds (decimal).
* ``"x"`` — X/Twitter's ``x-rate-limit-limit``, ``-remaining``, ``-reset`` (epoch).
* ``"openai"`` — ``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-requests`` and
  ``x-ratelimit-reset-requests``, whose reset is a Go duration (``6m0s``, ``20ms``,
  ``1h2m3.5s``; a bare non-negative number is taken as seconds). The ``-tokens``
  headers are a different quota and are ignored.

Values: counts are non-negative ASCII integers of at most 15 digits (the Structured
Field Integer range); resets stated as decimals have at most 15 integer and 9
fractional digits. Anything else — a sign, an exponent, ``inf``, ``nan``, non-ASCII
digits, a longer value, a list where one number is expected — makes that value ``None``
(longer values are ignored, not clamped). A ``limit`` or ``window`` of 0 says nothing
usable and is ``None`` too; ``remaining`` and ``reset_after`` may be 0. Structured
fields are parsed with ``http_sfv`` (RFC 8941/9651); one longer than
``_MAX_SF_LENGTH`` characters or not ASCII is ignored.

Resets: every reset becomes ``reset_after``, seconds from ``now`` (an epoch in the past
gives 0). With ``reset_style="auto"`` a value *v* is read by magnitude alone, so the
answer never depends on the local clock: *v* < 10⁹ is delta seconds (10⁹ s is 31.7
years, longer than any real window, and as an epoch it is 2001-09-09, before any real
response); 10⁹ ≤ *v* < 10¹² is epoch seconds (until the year 33658); *v* ≥ 10¹² is epoch
milliseconds. ``"epoch"`` and ``"delta"`` force a reading. ``reset_style`` governs only
the generic ``x-ratelimit`` dialect: GitHub, Discord and X state epochs and OpenAI a
duration. The IETF forms are delta seconds by specification; the ``"auto"`` rule is
applied to them whatever ``reset_style`` says, so a server wrongly sending an epoch
there is still understood (it agrees with "delta" for any sane value).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from http_sfv.dictionary import Dictionary as _SfDictionary
from http_sfv.item import Item as _SfItem
from http_sfv.list import List as _SfList
from http_sfv.types import DisplayString as _SfDisplayString

__all__ = ["QuotaObservation", "parse_go_duration", "parse_quota_headers", "quota_fields"]

ResetStyle = Literal["auto", "epoch", "delta"]

_OWS = " \t"
_MAX_DIGITS = 15
_MAX_FRACTION_DIGITS = 9
# Longer structured fields are ignored: real ones are a few dozen bytes, and http_sfv's
# parser is quadratic in the field length.
_MAX_SF_LENGTH = 4096
_MAX_LABEL_LENGTH = 256
_MAX_DURATION_LENGTH = 64
_EPOCH_SECONDS = 1e9
_EPOCH_MILLISECONDS = 1e12
_ASCII_DIGITS = frozenset("0123456789")
_GO_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign, what Go prints
    "\u03bcs": 1e-6,  # Greek small letter mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaObservation:
    """One quota as a response states it; any number the server did not state (or
    stated invalidly) is ``None``. All numbers are finite and non-negative.

    * ``limit`` — requests allowed per window (the quota).
    * ``remaining`` — requests left in the current window.
    * ``reset_after`` — seconds from the response until the window resets.
    * ``window`` — the window length in seconds.
    * ``policy`` — the policy, bucket or resource name, if any.
    * ``dialect`` — which header family it came from (see the module documentation).
    """

    limit: int | None
    remaining: int | None
    reset_after: float | None
    window: float | None
    policy: str | None = None
    dialect: str = ""

    @property
    def rate(self) -> float | None:
        """Requests per second (``limit / window``) when both are known and positive."""
        if self.limit is None or self.window is None:
            return None
        if self.limit <= 0 or self.window <= 0:
            return None
        return self.limit / self.window


# -- plain (non-structured) values ----------------------------------------------------


def _digits(text: str, max_length: int) -> bool:
    return 0 < len(text) <= max_length and all(c in _ASCII_DIGITS for c in text)


def _plain_int(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip(_OWS)
    return int(text) if _digits(text, _MAX_DIGITS) else None


def _plain_decimal(value: str | None) -> float | None:
    if value is None:
        return None
    text = value.strip(_OWS)
    whole, dot, fraction = text.partition(".")
    if not _digits(whole, _MAX_DIGITS):
        return None
    if dot and not _digits(fraction, _MAX_FRACTION_DIGITS):
        return None
    return float(text)


def _label(value: str | None) -> str | None:
    """A policy/bucket/resource name: printable ASCII, not empty, not absurdly long."""
    if value is None:
        return None
    text = value.strip(_OWS)
    if not 0 < len(text) <= _MAX_LABEL_LENGTH:
        return None
    if not all(" " <= c <= "~" for c in text):
        return None
    return text


def parse_go_duration(value: str | None) -> float | None:
    """Seconds from a Go ``time.Duration`` string (``1h2m3.5s``, ``20ms``, ``0s``), or
    ``None``. Signs are rejected; a bare non-negative number is taken as seconds."""
    if value is None:
        return None
    text = value.strip(_OWS)
    if not 0 < len(text) <= _MAX_DURATION_LENGTH:
        return None
    bare = _plain_decimal(text)
    if bare is not None:
        return bare
    total = 0.0
    i, n = 0, len(text)
    while i < n:
        start = i
        while i < n and (text[i] in _ASCII_DIGITS or text[i] == "."):
            i += 1
        number = text[start:i]
        start = i
        while i < n and text[i] not in _ASCII_DIGITS and text[i] != ".":
            i += 1
        factor = _GO_UNITS.get(text[start:i])
        if factor is None:
            return None
        whole, _, fraction = number.partition(".")
        if not whole and not fraction:  # no digits at all (also rejects a lone ".")
            return None
        if "." in fraction or len(whole) > _MAX_DIGITS or len(fraction) > _MAX_DIGITS:
            return None
        total += float(number) * factor
    return total if math.isfinite(total) else None


# -- structured fields (http_sfv behind a narrow, typed wrapper) ----------------------


@dataclass(frozen=True, slots=True)
class _Member:
    """A List or Dictionary member: an Item's bare value (``None`` for an Inner List)
    and its parameters."""

    value: object
    params: Mapping[str, object]


_NO_PARAMS: Mapping[str, object] = MappingProxyType({})


def _sf_data(value: str | None) -> bytes | None:
    if value is None:
        return None
    text = value.strip(_OWS)
    if not 0 < len(text) <= _MAX_SF_LENGTH or not text.isascii():
        return None
    return text.encode("ascii")


def _member(parsed: object) -> _Member:
    if isinstance(parsed, _SfItem):
        params: Mapping[str, object] = MappingProxyType(dict(parsed.params))
        bare: object = parsed.value
        return _Member(bare, params)
    return _Member(None, _NO_PARAMS)


#: Parsed fields are kept by their text (a server sends the same policy on every
#: answer): at most this many per kind, each at most ``_MAX_SF_LENGTH`` characters.
_SF_CACHE = 256


def _sf_list(value: str | None) -> tuple[_Member, ...]:
    """The members of a Structured Field List; empty if absent or malformed."""
    if value is None:
        return ()
    return _sf_list_of(value) if len(value) <= _MAX_SF_LENGTH else _sf_list_of.__wrapped__(value)


@functools.lru_cache(maxsize=_SF_CACHE)
def _sf_list_of(value: str) -> tuple[_Member, ...]:
    data = _sf_data(value)
    if data is None:
        return ()
    parsed = _SfList()
    try:
        parsed.parse(data)
        return tuple(_member(m) for m in parsed)
    except Exception:  # http_sfv raises ValueError, but any failure means "malformed"
        return ()


def _sf_dictionary(value: str | None) -> Mapping[str, _Member]:
    """The members of a Structured Field Dictionary; empty if absent or malformed."""
    if value is None:
        return _NO_MEMBERS
    if len(value) > _MAX_SF_LENGTH:  # (never kept: the cache holds short texts only)
        return _sf_dictionary_of.__wrapped__(value)
    return _sf_dictionary_of(value)


@functools.lru_cache(maxsize=_SF_CACHE)
def _sf_dictionary_of(value: str) -> Mapping[str, _Member]:
    data = _sf_data(value)
    if data is None:
        return _NO_MEMBERS
    parsed = _SfDictionary()
    try:
        parsed.parse(data)
        return MappingProxyType({str(k): _member(m) for k, m in parsed.items()})
    except Exception:
        return _NO_MEMBERS


_NO_MEMBERS: Mapping[str, _Member] = MappingProxyType({})


def _sf_item(value: str | None) -> _Member | None:
    """A Structured Field Item; ``None`` if absent or malformed."""
    if value is None:
        return None
    return _sf_item_of(value) if len(value) <= _MAX_SF_LENGTH else _sf_item_of.__wrapped__(value)


@functools.lru_cache(maxsize=_SF_CACHE)
def _sf_item_of(value: str) -> _Member | None:
    data = _sf_data(value)
    if data is None:
        return None
    parsed = _SfItem()
    try:
        parsed.parse(data)
        return _member(parsed)
    except Exception:
        return None


def _sf_count(value: object) -> int | None:
    """A non-negative Integer (``bool`` is an ``int`` in Python but a Boolean in SF)."""
    if type(value) is int and value >= 0:
        return value
    return None


def _sf_positive(value: object) -> int | None:
    count = _sf_count(value)
    return count if count else None


def _sf_name(value: object) -> str | None:
    """A String or Token (not a Display String), as ``str``."""
    if isinstance(value, str) and not isinstance(value, _SfDisplayString):
        return str(value)
    return None


def _sf_window(limit: int | None, members: Iterable[_Member]) -> float | None:
    """The window ``w`` of the first integer member equal to ``limit`` carrying one."""
    if limit is None:
        return None
    for member in members:
        if _sf_count(member.value) == limit:
            window = _sf_positive(member.params.get("w"))
            if window is not None:
                return float(window)
    return None


# -- resets and observations ----------------------------------------------------------


def _until(epoch: float, now: float) -> float:
    return max(0.0, epoch - now)


def _reset(value: float | None, style: ResetStyle, now: float) -> float | None:
    if value is None:
        return None
    if style == "delta":
        return value
    if style == "epoch":
        return _until(value, now)
    if value >= _EPOCH_MILLISECONDS:
        return _until(value / 1000.0, now)
    if value >= _EPOCH_SECONDS:
        return _until(value, now)
    return value


def _seconds(value: float | None) -> float | None:
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _observation(
    *,
    limit: int | None,
    remaining: int | None,
    reset_after: float | None,
    window: float | None,
    policy: str | None,
    dialect: str,
) -> QuotaObservation | None:
    limit = limit if limit is not None and limit > 0 else None
    remaining = remaining if remaining is not None and remaining >= 0 else None
    reset_after = _seconds(reset_after)
    window = _seconds(window) or None  # a zero window is meaningless
    if limit is None and remaining is None and reset_after is None and window is None:
        return None
    return QuotaObservation(
        limit=limit,
        remaining=remaining,
        reset_after=reset_after,
        window=window,
        policy=policy,
        dialect=dialect,
    )


# -- the dialects ---------------------------------------------------------------------

_Get = Callable[[str], str | None]


def _ietf(
    get: _Get, now: float, policy_members: Sequence[_Member]
) -> list[QuotaObservation | None]:
    policies: dict[str, tuple[int | None, float | None]] = {}
    ignored: set[str] = set()
    for member in policy_members:
        name = _sf_name(member.value)
        if name is None or name in policies or name in ignored:
            continue
        unit = member.params.get("qu")
        if unit is not None and _sf_name(unit) != "requests":
            ignored.add(name)
            continue
        w = _sf_positive(member.params.get("w"))
        policies[name] = (_sf_positive(member.params.get("q")), None if w is None else float(w))
    found: list[QuotaObservation | None] = []
    seen: set[str] = set()
    for member in _sf_list(get("ratelimit")):
        name = _sf_name(member.value)
        if name is None or name in seen or name in ignored:
            continue
        seen.add(name)
        limit, window = policies.get(name, (None, None))
        reset = _sf_count(member.params.get("t"))
        found.append(
            _observation(
                limit=limit,
                remaining=_sf_count(member.params.get("r")),
                reset_after=_reset(None if reset is None else float(reset), "auto", now),
                window=window,
                policy=name,
                dialect="ietf",
            )
        )
    for name, (limit, window) in policies.items():
        if name not in seen:
            found.append(
                _observation(
                    limit=limit,
                    remaining=None,
                    reset_after=None,
                    window=window,
                    policy=name,
                    dialect="ietf",
                )
            )
    return found


def _ietf_legacy(
    get: _Get, now: float, policy_members: Sequence[_Member]
) -> QuotaObservation | None:
    def reset_of(value: object) -> float | None:
        count = _sf_count(value)
        return _reset(None if count is None else float(count), "auto", now)

    fields = _sf_dictionary(get("ratelimit"))
    if fields:
        absent = _Member(None, {})
        limit = _sf_positive(fields.get("limit", absent).value)
        from_dictionary = _observation(
            limit=limit,
            remaining=_sf_count(fields.get("remaining", absent).value),
            reset_after=reset_of(fields.get("reset", absent).value),
            window=_sf_window(limit, policy_members),
            policy=None,
            dialect="ietf-legacy",
        )
        if from_dictionary is not None:
            return from_dictionary

    limit_members = _sf_list(get("ratelimit-limit"))
    limit = _sf_positive(limit_members[0].value) if limit_members else None
    remaining = _sf_item(get("ratelimit-remaining"))
    reset = _sf_item(get("ratelimit-reset"))
    return _observation(
        limit=limit,
        remaining=None if remaining is None else _sf_count(remaining.value),
        reset_after=None if reset is None else reset_of(reset.value),
        window=_sf_window(limit, limit_members) or _sf_window(limit, policy_members),
        policy=None,
        dialect="ietf-legacy",
    )


def _x_ratelimit(get: _Get, now: float, reset_style: ResetStyle) -> QuotaObservation | None:
    limit = _plain_int(get("x-ratelimit-limit"))
    remaining = _plain_int(get("x-ratelimit-remaining"))
    reset = _plain_decimal(get("x-ratelimit-reset"))
    resource = get("x-ratelimit-resource")
    bucket = get("x-ratelimit-bucket")
    reset_after_header = get("x-ratelimit-reset-after")
    if resource is not None:
        used = _plain_int(get("x-ratelimit-used"))
        if remaining is None and limit is not None and used is not None and used <= limit:
            remaining = limit - used
        dialect, policy, reset_after = "github", _label(resource), _reset(reset, "epoch", now)
    elif bucket is not None or reset_after_header is not None:
        reset_after = _plain_decimal(reset_after_header)
        if reset_after is None:
            reset_after = _reset(reset, "epoch", now)
        dialect, policy = "discord", _label(bucket)
    else:
        dialect, policy, reset_after = "x-ratelimit", None, _reset(reset, reset_style, now)
    return _observation(
        limit=limit,
        remaining=remaining,
        reset_after=reset_after,
        window=None,
        policy=policy,
        dialect=dialect,
    )


def _x_twitter(get: _Get, now: float) -> QuotaObservation | None:
    return _observation(
        limit=_plain_int(get("x-rate-limit-limit")),
        remaining=_plain_int(get("x-rate-limit-remaining")),
        reset_after=_reset(_plain_decimal(get("x-rate-limit-reset")), "epoch", now),
        window=None,
        policy=None,
        dialect="x",
    )


def _openai(get: _Get) -> QuotaObservation | None:
    return _observation(
        limit=_plain_int(get("x-ratelimit-limit-requests")),
        remaining=_plain_int(get("x-ratelimit-remaining-requests")),
        reset_after=parse_go_duration(get("x-ratelimit-reset-requests")),
        window=None,
        policy=None,
        dialect="openai",
    )


#: Every header :func:`parse_quota_headers` reads starts with one of these (lower case).
_QUOTA_PREFIXES = ("ratelimit", "x-ratelimit", "x-rate-limit")


def quota_fields(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers of ``headers`` that :func:`parse_quota_headers` may read, by lower-case
    name (the last one wins among names that differ only in case, as with a plain
    ``dict`` in :func:`~surefoot._core._policy.case_insensitive`). Empty for most
    responses, which then need no parsing at all: one pass over the names."""
    found: dict[str, str] = {}
    store = getattr(headers, "_store", None)
    if isinstance(store, dict) and type(headers).__module__ == "requests.structures":
        # requests' CaseInsensitiveDict keeps {lower-case name: (name, value)}: read it
        # directly (its items() goes through two generators per header)
        for lower, pair in store.items():
            if lower[:1] in "rx" and lower.startswith(_QUOTA_PREFIXES):
                found[lower] = pair[1]
        return found
    for name, value in headers.items():
        if name[:1] in "rRxX":
            lower = name.lower()
            if lower.startswith(_QUOTA_PREFIXES):
                found[lower] = value
    return found


def parse_quota_headers(
    get: Callable[[str], str | None],
    *,
    now: float,
    reset_style: ResetStyle = "auto",
) -> list[QuotaObservation]:
    """Every quota the response headers state, in the order IETF, IETF legacy,
    X-RateLimit (generic/GitHub/Discord), X, OpenAI.

    ``get`` looks a header up by its lower-case name (``None`` when absent); ``now`` is
    the Unix time, to turn epoch resets into seconds from now; ``reset_style`` says how
    to read the generic ``X-RateLimit-Reset`` (see the module documentation).
    """

    def header(name: str) -> str | None:
        value = get(name)
        return value if isinstance(value, str) else None

    # (a dialect none of whose fields is present states nothing: not parsed)
    policy_members = _sf_list(header("ratelimit-policy"))
    found: list[QuotaObservation | None] = []
    if policy_members or header("ratelimit") is not None:
        found += _ietf(header, now, policy_members)
    if any(header(name) is not None for name in _IETF_LEGACY_FIELDS):
        found.append(_ietf_legacy(header, now, policy_members))
    if any(header(name) is not None for name in _X_RATELIMIT_FIELDS):
        found.append(_x_ratelimit(header, now, reset_style))
    if any(header(name) is not None for name in _X_TWITTER_FIELDS):
        found.append(_x_twitter(header, now))
    if any(header(name) is not None for name in _OPENAI_FIELDS):
        found.append(_openai(header))
    return [observation for observation in found if observation is not None]


#: The fields without which each dialect states nothing (the others only qualify them).
_IETF_LEGACY_FIELDS = ("ratelimit", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")
_X_RATELIMIT_FIELDS = (
    "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "x-ratelimit-reset-after"
)
_X_TWITTER_FIELDS = ("x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset")
_OPENAI_FIELDS = (
    "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"
)
