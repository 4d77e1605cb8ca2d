"""Retry-After / retry-after-ms parsing (RFC 9110 §10.2.3)."""

from __future__ import annotations

import calendar
import datetime as dt
import math
import os
import time
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surefoot._core._retry_after import (
    _CLAMP,
    parse_retry_after_ms,
    retry_after_from_headers,
)
from surefoot.pacing import parse_http_date, parse_retry_after

NOW = float(calendar.timegm((2019, 6, 3, 11, 0, 0, 0, 0, 0)))  # 2019-06-03 11:00:00 UTC


def _getter(headers: dict[str, str]):
    lower = {k.lower(): v for k, v in headers.items()}
    return lambda name: lower.get(name.lower())


# -- delta-seconds ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0.0), ("1000", 1000.0), ("\t42 ", 42.0), (" 7\t", 7.0), ("007", 7.0)],
)
def test_delta_seconds(value, expected):
    result = parse_retry_after(value, now=NOW)
    assert result == expected
    assert isinstance(result, float)


@pytest.mark.parametrize(
    "value",
    [
        "-1",
        "+1",
        "1.",
        ".5",
        "1.0.0",
        "1,5",
        "1e3",
        "inf",
        "nan",
        "Infinity",
        "",
        " ",
        "\t",
        "４２",  # fullwidth digits
        "٤٢",  # Arabic-Indic digits
        "²",  # superscript two: str.isdigit() is True for it
        "1 2",
        "0x10",
        "garbage",
        "12abc",
        "tomorrow",
        "\n42",
    ],
)
def test_invalid_delta_seconds_fall_back(value):
    assert parse_retry_after(value, now=NOW) is None


@pytest.mark.parametrize(("value", "expected"), [("0.25", 0.25), ("1.0", 1.0), (" 2.5 ", 2.5)])
def test_decimal_seconds_are_accepted(value, expected):
    # not RFC 9110, but what some servers send: their advice, to the millisecond
    assert parse_retry_after(value, now=NOW) == expected


def test_none_is_none():
    assert parse_retry_after(None, now=NOW) is None


@pytest.mark.parametrize("value", ["9999999999", "9" * 50, "1" + "0" * 49, "9" * 4000])
def test_huge_values_are_clamped_without_overflow(value):
    result = parse_retry_after(value, now=NOW)
    assert result is not None
    assert math.isfinite(result)
    assert result == (float(int(value)) if len(value) <= 12 else _CLAMP)
    # very long either way: far above any sane cap
    assert result >= 9_999_999_999.0


# -- HTTP-date ----------------------------------------------------------------------------

HTTP_DATES = [
    "Mon, 03 Jun 2019 11:30:12 GMT",  # IMF-fixdate
    "Monday, 03-Jun-19 11:30:12 GMT",  # obsolete RFC 850
    "Mon Jun  3 11:30:12 2019",  # asctime
]


@pytest.fixture(params=["UTC", "America/New_York", "Asia/Kolkata", "Pacific/Kiritimati"])
def local_tz(request):
    if not hasattr(time, "tzset"):  # pragma: no cover - Windows
        pytest.skip("time.tzset is POSIX only")
    old = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    try:
        yield request.param
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.mark.parametrize("value", HTTP_DATES)
def test_http_date_forms_independent_of_local_timezone(value, local_tz):
    # make sure the zone really is in effect (except UTC), so the test can catch mktime()
    if local_tz != "UTC":
        assert time.localtime(NOW).tm_hour != 11
    assert parse_retry_after(value, now=NOW) == 1812.0
    assert parse_http_date(value, now=NOW) == NOW + 1812.0


def test_http_date_surrounding_whitespace():
    assert parse_retry_after(" \tMon, 03 Jun 2019 11:30:12 GMT\t", now=NOW) == 1812.0


@pytest.mark.parametrize(
    "value",
    [
        "Mon, 03 Jun 2019 10:59:59 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "Mon, 03 Jun 2019 11:00:00 GMT",
    ],
)
def test_past_date_is_zero(value):
    assert parse_retry_after(value, now=NOW) == 0.0


@pytest.mark.parametrize(
    "value",
    [
        "Sat, 30 Feb 2019 11:30:12 GMT",  # Feb 30
        "Fri, 29 Feb 2019 11:30:12 GMT",  # not a leap year
        "Mon, 03 Jun 2019 25:30:12 GMT",  # hour 25
        "Mon, 03 Jun 2019 24:00:00 GMT",
        "Mon, 03 Jun 2019 11:60:12 GMT",
        "Mon, 00 Jun 2019 11:30:12 GMT",
        "Mon, 32 Jun 2019 11:30:12 GMT",
        "Saturday, 30-Feb-19 11:30:12 GMT",
        "Mon Jun 31 11:30:12 2019",
        "Mon Jun  3 25:30:12 2019",
        "Mon, 03 Foo 2019 11:30:12 GMT",
        "Mon, 03 Jun 2019 11:30:12 UTC",
        "Mon, 03 Jun 2019 11:30:12",
        "mon, 03 jun 2019 11:30:12 gmt",
        "2019-06-03T11:30:12Z",
    ],
)
def test_invalid_dates_are_none(value):
    assert parse_retry_after(value, now=NOW) is None
    assert parse_http_date(value, now=NOW) is None


def test_leap_day_is_valid():
    when = parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT")
    assert when == calendar.timegm((2024, 2, 29, 0, 0, 0, 0, 0, 0))


def test_rfc850_two_digit_year_uses_now():
    # RFC 9110 §5.6.7: more than 50 years in the future means the past century
    now_2019 = NOW
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", now=now_2019) == calendar.timegm(
        (1994, 11, 6, 8, 49, 37, 0, 0, 0)
    )
    assert parse_http_date("Tuesday, 03-Jun-25 11:30:12 GMT", now=now_2019) == calendar.timegm(
        (2025, 6, 3, 11, 30, 12, 0, 0, 0)
    )


# -- retry-after-ms and precedence --------------------------------------------------------


def test_retry_after_ms_parsing():
    assert parse_retry_after_ms("1500") == 1.5
    assert parse_retry_after_ms(" 250.5 ") == pytest.approx(0.2505)
    assert parse_retry_after_ms("0") == 0.0
    for bad in (None, "", "-5", "+5", "1e3", "nan", "inf", "１", "abc", "1.", ".5"):
        assert parse_retry_after_ms(bad) is None, bad


def test_retry_after_ms_wins_over_retry_after():
    get = _getter({"Retry-After": "30", "retry-after-ms": "1500"})
    assert retry_after_from_headers(get, now=NOW) == 1.5


def test_retry_after_ms_header_lookup_is_case_insensitive():
    get = _getter({"RETRY-AFTER": "30", "Retry-After-Ms": "250"})
    assert retry_after_from_headers(get, now=NOW) == 0.25


@pytest.mark.parametrize("bad_ms", ["abc", "-1", "", "nan", "1e3"])
def test_invalid_ms_falls_back_to_retry_after(bad_ms):
    get = _getter({"Retry-After": "30", "retry-after-ms": bad_ms})
    assert retry_after_from_headers(get, now=NOW) == 30.0


def test_only_retry_after_date():
    get = _getter({"Retry-After": HTTP_DATES[0]})
    assert retry_after_from_headers(get, now=NOW) == 1812.0


def test_neither_header():
    assert retry_after_from_headers(_getter({}), now=NOW) is None
    assert retry_after_from_headers(_getter({"Retry-After": "soon"}), now=NOW) is None


# -- properties -----------------------------------------------------------------------------


@given(st.text(), st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_parse_retry_after_is_total(value, now):
    result = parse_retry_after(value, now=now)
    assert result is None or (isinstance(result, float) and math.isfinite(result) and result >= 0)


@given(
    st.text(alphabet=st.sampled_from(" \t0123456789,:-JanFebMonGMTSunday")),
    st.floats(min_value=0, max_value=4e9, allow_nan=False),
)
def test_parse_retry_after_is_total_on_date_like_text(value, now):
    result = parse_retry_after(value, now=now)
    assert result is None or (math.isfinite(result) and result >= 0)


@given(st.integers(min_value=0))
def test_integer_roundtrip(n):
    expected = float(n) if n < 10**12 else _CLAMP
    assert parse_retry_after(str(n), now=NOW) == expected


@given(st.integers(min_value=0, max_value=10**12 - 1))
def test_integer_roundtrip_exact_below_clamp(n):
    assert parse_retry_after(str(n), now=NOW) == n


@given(st.integers(min_value=0, max_value=10**15 - 1))
def test_retry_after_ms_integer_roundtrip(n):
    assert parse_retry_after_ms(str(n)) == n / 1000.0


@given(st.datetimes(min_value=dt.datetime(1970, 1, 2)))
def test_imf_fixdate_roundtrip(when):
    text = format_datetime(when.replace(tzinfo=dt.timezone.utc), usegmt=True)
    expected = calendar.timegm(when.replace(microsecond=0).timetuple())
    assert parse_http_date(text) == expected


# -- totality: every year an HTTP-date can spell, any `now` ------------------------------

_WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
_LONG_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
                  "Sunday"]
_MONTH_NAMES = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                "Dec"]


def _usable(result: float | None) -> bool:
    return result is None or (isinstance(result, float) and math.isfinite(result)
                              and result >= 0)


@pytest.mark.parametrize(
    "value", ["Mon, 01 Jan 0000 00:00:00 GMT", "Mon Jan  1 00:00:00 0000"]
)
def test_year_zero_is_not_a_date(value):
    # there is no year 0 in the Gregorian calendar: invalid (fall back), never a crash
    assert parse_retry_after(value, now=NOW) is None
    assert parse_http_date(value, now=NOW) is None
    assert retry_after_from_headers(_getter({"Retry-After": value}), now=NOW) is None


def test_year_one_and_year_9999_are_dates():
    assert parse_retry_after("Mon, 01 Jan 0001 00:00:00 GMT", now=NOW) == 0.0
    assert parse_retry_after("Mon Jan  1 00:00:00 0001", now=NOW) == 0.0
    far = parse_retry_after("Fri, 31 Dec 9999 23:59:60 GMT", now=NOW)
    assert far == calendar.timegm((9999, 12, 31, 23, 59, 59, 0, 0, 0)) - NOW


@pytest.mark.parametrize("now", [math.nan, math.inf, -math.inf])
def test_a_date_with_a_now_that_is_no_time_is_none(now):
    for value in [*HTTP_DATES, "Fri, 31 Dec 9999 23:59:59 GMT"]:
        assert parse_retry_after(value, now=now) is None


@pytest.mark.parametrize(("now", "expected"), [(1e300, 0.0), (1e20, 0.0), (-1e300, _CLAMP)])
def test_a_date_against_a_far_away_now_is_clamped(now, expected):
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now=now) == expected
    # a two-digit year needs the year of `now`: there is none beyond time_t
    assert parse_retry_after("Monday, 03-Jun-19 11:30:12 GMT", now=now) in (None, expected)


def test_every_year_in_every_form_parses_without_raising():
    for year in range(10000):
        imf = f"Mon, 01 Mar {year:04d} 12:00:00 GMT"
        asctime = f"Mon Mar  1 12:00:00 {year:04d}"
        for value in (imf, asctime):
            result = parse_retry_after(value, now=NOW)
            assert _usable(result), value
            assert (result is None) == (year == 0), value


@pytest.mark.parametrize("value", ["1" + "0" * 400, "999999999999999.999999999"])
def test_huge_numbers_are_clamped(value):
    assert parse_retry_after(value, now=NOW) == _CLAMP


_nows = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-62135596800.0 - 86400 * 366, max_value=253402300800.0 + 86400 * 366),
)


@st.composite
def _http_dates(draw: st.DrawFn) -> str:
    year = draw(st.integers(min_value=0, max_value=9999))
    month = draw(st.sampled_from(_MONTH_NAMES))
    day = draw(st.integers(min_value=0, max_value=39))
    hh, mm, ss = (draw(st.integers(min_value=0, max_value=99)) for _ in range(3))
    clock = f"{hh:02d}:{mm:02d}:{ss:02d}"
    form = draw(st.sampled_from(["imf", "asctime", "rfc850"]))
    if form == "imf":
        return f"{draw(st.sampled_from(_WEEKDAYS))}, {day:02d} {month} {year:04d} {clock} GMT"
    if form == "asctime":
        return f"{draw(st.sampled_from(_WEEKDAYS))} {month} {day:>2} {clock} {year:04d}"
    return f"{draw(st.sampled_from(_LONG_WEEKDAYS))}, {day:02d}-{month}-{year % 100:02d} " \
           f"{clock} GMT"


@given(st.one_of(_http_dates(), st.text()), _nows)
def test_every_http_date_and_any_text_is_total(value, now):
    assert _usable(parse_retry_after(value, now=now))
    when = parse_http_date(value, now=now)
    assert when is None or math.isfinite(when)
    get = _getter({"Retry-After": value, "retry-after-ms": value})
    assert _usable(retry_after_from_headers(get, now=now))
    assert _usable(parse_retry_after_ms(value))
