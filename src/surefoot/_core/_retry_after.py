"""Parsing ``Retry-After`` (RFC 9110 §10.2.3) and ``retry-after-ms``.

Pure and total: every input gives a number of seconds or ``None`` (absent or invalid,
meaning "fall back to backoff"); nothing raises.

* ``Retry-After: 120`` — delta-seconds, ASCII digits only, optional whitespace around.
  ``-1``, ``+1``, ``1.0``, ``inf``, ``nan``, ``""`` and non-ASCII digits are invalid.
* ``Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`` — an HTTP-date in any of the three
  forms (IMF-fixdate, obsolete RFC 850, asctime), always UTC, independent of the local
  time zone. A date in the past means "retry now" (0). Years 0001 to 9999 only: the
  Gregorian calendar has no year 0 (``0000`` is not a date: invalid, not "long ago").
* Every wait is a finite number of seconds, at most ``_CLAMP`` (a longer one is "very
  long" either way); a ``now`` that is not finite gives ``None`` for a date.
* ``retry-after-ms: 1500`` — milliseconds (a non-negative decimal), used by OpenAI-style
  APIs; it wins over ``Retry-After`` when both are valid, being more precise.
"""

from __future__ import annotations

import calendar
import math
import re
import time
from collections.abc import Callable

__all__ = ["parse_http_date", "parse_retry_after", "retry_after_from_headers"]

# Beyond this many digits the value is clamped: it is "very long" either way and must
# neither overflow a float nor become a sleep.
_MAX_DIGITS = 12
_CLAMP = 10.0**_MAX_DIGITS

_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_LONG_DAY = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_MON = r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIME = r"(\d{2}):(\d{2}):(\d{2})"
_IMF = re.compile(rf"{_DAY}, (\d{{2}}) {_MON} (\d{{4}}) {_TIME} GMT", re.ASCII)
_RFC850 = re.compile(rf"{_LONG_DAY}, (\d{{2}})-{_MON}-(\d{{2}}) {_TIME} GMT", re.ASCII)
_ASCTIME = re.compile(rf"{_DAY} {_MON} ([ \d]\d) {_TIME} (\d{{4}})", re.ASCII)
_DECIMAL = re.compile(r"\d{1,15}(?:\.\d{1,9})?", re.ASCII)
_OWS = " \t"
# The years the calendar module (and the proleptic Gregorian calendar) has: there is no
# year 0, and 10000 has five digits.
_MIN_YEAR, _MAX_YEAR = 1, 9999


def _timegm(year: int, month: int, day: int, hh: int, mm: int, ss: int) -> float | None:
    if not (_MIN_YEAR <= year <= _MAX_YEAR):
        return None
    if not (1 <= day <= 31 and hh <= 23 and mm <= 59 and ss <= 60):
        return None
    if day > calendar.monthrange(year, month)[1]:
        return None
    return float(calendar.timegm((year, month, day, hh, mm, min(ss, 59), 0, 0, 0)))


def parse_http_date(value: str, *, now: float | None = None) -> float | None:
    """An HTTP-date as a Unix timestamp (UTC), or ``None`` if it is not one.

    ``now`` (a Unix timestamp) resolves RFC 850's two-digit years (RFC 9110 §5.6.7: a
    year more than 50 years in the future is taken to be in the past century).
    """
    text = value.strip(_OWS)
    if m := _IMF.fullmatch(text):
        day, mon, year, hh, mm, ss = m.groups()
        return _timegm(int(year), _MONTHS[mon], int(day), int(hh), int(mm), int(ss))
    if m := _RFC850.fullmatch(text):
        day, mon, yy, hh, mm, ss = m.groups()
        current = _year_of(now)
        if current is None:
            return None
        year = (current // 100) * 100 + int(yy)
        if year > current + 50:
            year -= 100
        return _timegm(year, _MONTHS[mon], int(day), int(hh), int(mm), int(ss))
    if m := _ASCTIME.fullmatch(text):
        mon, day, hh, mm, ss, year = m.groups()
        return _timegm(int(year), _MONTHS[mon], int(day.strip()), int(hh), int(mm), int(ss))
    return None


def _year_of(now: float | None) -> int | None:
    """The UTC year of Unix time ``now`` (2000 when not given), ``None`` if it has none."""
    if now is None:
        return 2000
    try:
        return time.gmtime(now).tm_year
    except (OverflowError, OSError, ValueError):  # NaN, infinities, beyond time_t
        return None


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, ``now`` being the Unix time.

    ``None`` for an absent or invalid value. Past dates give 0. A decimal number of
    seconds (``0.25``, not in RFC 9110 but sent by some servers) is accepted.
    """
    if value is None:
        return None
    text = value.strip(_OWS)
    if not text:
        return None
    if text.isascii() and text.isdigit():
        if len(text) > _MAX_DIGITS:
            return _CLAMP
        return float(int(text))
    if _DECIMAL.fullmatch(text):
        # Not RFC 9110 (delay-seconds are whole), but servers send "0.25": it is their
        # advice all the same, to the millisecond rather than rounded up to a second.
        return min(float(text), _CLAMP)
    when = parse_http_date(text, now=now)
    if when is None or not math.isfinite(now):  # (no wait can be told from a date then)
        return None
    return min(max(0.0, when - now), _CLAMP)


def parse_retry_after_ms(value: str | None) -> float | None:
    if value is None:
        return None
    text = value.strip(_OWS)
    if not _DECIMAL.fullmatch(text):
        return None
    return float(text) / 1000.0


def retry_after_from_headers(get: Callable[[str], str | None], *, now: float) -> float | None:
    """The server's requested wait from response headers; ``get`` looks a header up by
    its lower-case name. ``retry-after-ms`` wins over ``Retry-After`` when both are valid."""
    ms = parse_retry_after_ms(get("retry-after-ms"))
    if ms is not None:
        return ms
    return parse_retry_after(get("retry-after"), now=now)
