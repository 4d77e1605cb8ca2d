"""Learning quotas from response headers: IETF (current and legacy drafts), X-RateLimit,
GitHub, Discord, X/Twitter and OpenAI."""

from __future__ import annotations

import calendar
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surefoot.pacing._quota_headers import (
    QuotaObservation,
    parse_go_duration,
    parse_quota_headers,
)

NOW = float(calendar.timegm((2024, 6, 3, 11, 0, 0, 0, 0, 0)))  # 2024-06-03 11:00:00 UTC


def _getter(headers: dict[str, str]):
    lower = {k.lower(): v for k, v in headers.items()}
    return lambda name: lower.get(name.lower())


def parse(headers: dict[str, str], **kwargs) -> list[QuotaObservation]:
    return parse_quota_headers(_getter(headers), now=NOW, **kwargs)


def only(headers: dict[str, str], **kwargs) -> QuotaObservation:
    found = parse(headers, **kwargs)
    assert len(found) == 1, found
    return found[0]


def obs(limit=None, remaining=None, reset_after=None, window=None, policy=None, dialect=""):
    return QuotaObservation(
        limit=limit,
        remaining=remaining,
        reset_after=reset_after,
        window=window,
        policy=policy,
        dialect=dialect,
    )


# -- the observation ------------------------------------------------------------------


def test_observation_is_frozen_and_keyword_only():
    o = obs(limit=10, window=2.0)
    with pytest.raises(AttributeError):
        o.limit = 11  # type: ignore[misc]
    with pytest.raises(TypeError):
        QuotaObservation(10, 5, 1.0, 2.0)  # type: ignore[misc]
    assert not hasattr(o, "__dict__")


@pytest.mark.parametrize(
    ("limit", "window", "rate"),
    [
        (10, 2.0, 5.0),
        (100, 60.0, 100 / 60),
        (None, 2.0, None),
        (10, None, None),
        (0, 2.0, None),
        (10, 0.0, None),
    ],
)
def test_rate(limit, window, rate):
    assert obs(limit=limit, window=window).rate == rate


def test_no_headers_no_observations():
    assert parse({}) == []
    assert parse({"content-type": "application/json", "retry-after": "3"}) == []


# -- IETF (draft 08+) -------------------------------------------------------------------


def test_ietf_single_policy():
    headers = {"RateLimit-Policy": '"default";q=100;w=60', "RateLimit": '"default";r=50;t=30'}
    assert parse(headers) == [obs(100, 50, 30.0, 60.0, "default", "ietf")]
    assert parse(headers)[0].rate == pytest.approx(100 / 60)


def test_ietf_several_policies_joined_by_name():
    headers = {
        "RateLimit-Policy": '"burst";q=100;w=60, "daily";q=1000;w=86400;pk=:cHsdsRa894==:',
        "RateLimit": '"daily";r=900;t=43200, "burst";r=5;t=10',
    }
    assert parse(headers) == [
        obs(1000, 900, 43200.0, 86400.0, "daily", "ietf"),
        obs(100, 5, 10.0, 60.0, "burst", "ietf"),
    ]


@pytest.mark.parametrize(
    ("policy", "ratelimit"),
    [
        ("default;q=10;w=1", "default;r=3;t=1"),
        ('"default";q=10;w=1', "default;r=3;t=1"),
        ("default;q=10;w=1", '"default";r=3;t=1'),
        ('"default";q=10;w=1', '"default";r=3;t=1'),
    ],
)
def test_ietf_token_and_string_names_are_the_same_name(policy, ratelimit):
    headers = {"RateLimit-Policy": policy, "RateLimit": ratelimit}
    assert parse(headers) == [obs(10, 3, 1.0, 1.0, "default", "ietf")]


def test_ietf_unmatched_items_on_either_side():
    headers = {
        "RateLimit-Policy": '"a";q=10;w=1, "b";q=20;w=2',
        "RateLimit": '"b";r=7;t=2, "c";r=1;t=5',
    }
    assert parse(headers) == [
        obs(20, 7, 2.0, 2.0, "b", "ietf"),
        obs(None, 1, 5.0, None, "c", "ietf"),
        obs(10, None, None, 1.0, "a", "ietf"),
    ]


def test_ietf_policy_alone_and_ratelimit_alone():
    assert parse({"RateLimit-Policy": '"p";q=10;w=60'}) == [obs(10, None, None, 60.0, "p", "ietf")]
    assert parse({"RateLimit": '"p";r=0;t=12'}) == [obs(None, 0, 12.0, None, "p", "ietf")]


def test_ietf_policy_without_window_and_counter_without_reset():
    headers = {"RateLimit-Policy": '"p";q=10', "RateLimit": '"p";r=4'}
    assert parse(headers) == [obs(10, 4, None, None, "p", "ietf")]


def test_ietf_quota_units():
    headers = {
        "RateLimit-Policy": (
            '"req";q=10;w=1;qu="requests", "bytes";q=5000;w=1;qu="content-bytes", '
            '"conc";q=3;qu="concurrent-requests", "tok";q=5;w=2;qu=requests'
        ),
        "RateLimit": '"bytes";r=100;t=1, "req";r=9;t=1, "conc";r=1',
    }
    assert parse(headers) == [
        obs(10, 9, 1.0, 1.0, "req", "ietf"),
        obs(5, None, None, 2.0, "tok", "ietf"),
    ]


def test_ietf_duplicate_names_first_wins():
    headers = {
        "RateLimit-Policy": '"p";q=10;w=1, "p";q=99;w=9',
        "RateLimit": '"p";r=3;t=1, "p";r=8;t=8',
    }
    assert parse(headers) == [obs(10, 3, 1.0, 1.0, "p", "ietf")]


def test_ietf_combined_field_lines():
    # two RateLimit lines combined by the HTTP library with ", " are one valid List
    headers = {"RateLimit-Policy": '"a";q=1;w=1, "b";q=2;w=2', "RateLimit": '"a";r=1, "b";r=2'}
    assert [o.remaining for o in parse(headers)] == [1, 2]


def test_ietf_malformed_members_are_skipped_not_the_field():
    headers = {
        "RateLimit-Policy": (
            '"ok";q=10;w=60, "neg";q=-1;w=-5, "dec";q=1.5;w=2.5, "bool";q;w, '
            '"zero";q=0;w=0, 42;q=1;w=1, ("inner");q=1;w=1, :Ynl0ZXM=:;q=1, %"disp";q=1'
        ),
        "RateLimit": '"ok";r=-1;t=-1, "x";r="5";t=?1',
    }
    assert parse(headers) == [obs(10, None, None, 60.0, "ok", "ietf")]


@pytest.mark.parametrize(
    "bad",
    [
        '"a";q=10;w=1,',  # trailing comma
        '"a";q=10;w=1 "b"',  # no comma
        '"a;q=10',  # unterminated string
        '"a";Q=10',  # upper-case key
        '"a";q=1000000000000000',  # beyond the SF integer range
        "",
        "   ",
        '"caf\u00e9";q=1',  # not ASCII
        '"a";q=1, ' * 2000 + '"z";q=1',  # absurdly long
    ],
)
def test_ietf_malformed_field_is_ignored(bad):
    assert parse({"RateLimit-Policy": bad}) == []
    assert parse({"RateLimit": bad.replace("q=", "r=")}) == []


def test_ietf_reset_that_is_an_epoch_is_understood():
    headers = {"RateLimit": f'"p";r=1;t={int(NOW) + 40}'}
    assert only(headers).reset_after == 40.0


# -- IETF legacy ------------------------------------------------------------------------


def test_legacy_dictionary():
    headers = {"RateLimit": "limit=10, remaining=5, reset=3"}
    assert parse(headers) == [obs(10, 5, 3.0, None, None, "ietf-legacy")]


def test_legacy_dictionary_with_integer_policy_gives_window():
    headers = {"RateLimit": "limit=10, remaining=5, reset=3", "RateLimit-Policy": "10;w=1"}
    assert parse(headers) == [obs(10, 5, 3.0, 1.0, None, "ietf-legacy")]
    headers["RateLimit-Policy"] = "100;w=60, 10;w=1"
    assert only(headers).window == 1.0
    headers["RateLimit-Policy"] = "100;w=60"  # no policy for limit 10
    assert only(headers).window is None


def test_legacy_separate_fields():
    headers = {"RateLimit-Limit": "100", "RateLimit-Remaining": "99", "RateLimit-Reset": "50"}
    assert parse(headers) == [obs(100, 99, 50.0, None, None, "ietf-legacy")]


@pytest.mark.parametrize(
    ("limit_field", "limit", "window"),
    [
        ("10, 10;w=1", 10, 1.0),
        ("10, 10;w=1, 1000;w=3600", 10, 1.0),
        ("1000, 10;w=1, 1000;w=3600", 1000, 3600.0),
        ('10, 10;w=1;comment="fast"', 10, 1.0),
        ("10;w=5", 10, 5.0),
        ("10, 20;w=1", 10, None),
        ("10, 10;w=0", 10, None),
        ("10, 10;w=1.5", 10, None),
        ("10", 10, None),
    ],
)
def test_legacy_limit_with_policies(limit_field, limit, window):
    o = only({"RateLimit-Limit": limit_field, "RateLimit-Remaining": "4"})
    assert (o.limit, o.remaining, o.window, o.dialect) == (limit, 4, window, "ietf-legacy")


def test_legacy_limit_window_from_policy_field():
    headers = {"RateLimit-Limit": "10", "RateLimit-Policy": "10;w=2"}
    assert parse(headers) == [obs(10, None, None, 2.0, None, "ietf-legacy")]


def test_legacy_dictionary_wins_over_separate_fields():
    headers = {
        "RateLimit": "limit=10, remaining=5, reset=3",
        "RateLimit-Limit": "99",
        "RateLimit-Remaining": "98",
    }
    assert parse(headers) == [obs(10, 5, 3.0, None, None, "ietf-legacy")]


def test_legacy_separate_fields_used_when_dictionary_is_useless():
    headers = {"RateLimit": "limit=abc", "RateLimit-Limit": "99", "RateLimit-Remaining": "98"}
    assert parse(headers) == [obs(99, 98, None, None, None, "ietf-legacy")]


def test_current_and_legacy_forms_together():
    headers = {
        "RateLimit-Policy": '"p";q=10;w=1',
        "RateLimit": '"p";r=5;t=1',
        "RateLimit-Limit": "10",
        "RateLimit-Remaining": "5",
        "RateLimit-Reset": "1",
    }
    assert parse(headers) == [
        obs(10, 5, 1.0, 1.0, "p", "ietf"),
        obs(10, 5, 1.0, None, None, "ietf-legacy"),
    ]


@pytest.mark.parametrize(
    "headers",
    [
        {"RateLimit": "limit=-1, remaining=-5, reset=-3"},
        {"RateLimit": "limit=1.5, remaining=2.5, reset=?1"},
        {"RateLimit": 'limit="10", remaining=(5), reset=abc'},
        {"RateLimit": "limit, remaining, reset"},
        {"RateLimit": "limit=10 remaining=5"},
        {"RateLimit-Limit": "-10", "RateLimit-Remaining": "+5", "RateLimit-Reset": "1e3"},
        {"RateLimit-Limit": "0", "RateLimit-Remaining": "five", "RateLimit-Reset": "inf"},
        {"RateLimit-Limit": "\u0661\u0662", "RateLimit-Remaining": "\uff15"},
        {"RateLimit-Limit": "1" * 16, "RateLimit-Remaining": "9" * 40},
        {"RateLimit-Limit": "10,", "RateLimit-Remaining": "5 5", "RateLimit-Reset": "nan"},
    ],
)
def test_legacy_garbage_gives_nothing(headers):
    assert parse(headers) == []


def test_legacy_partly_valid():
    headers = {"RateLimit-Limit": "10", "RateLimit-Remaining": "-1", "RateLimit-Reset": "7"}
    assert parse(headers) == [obs(10, None, 7.0, None, None, "ietf-legacy")]


# -- X-RateLimit (generic) ---------------------------------------------------------------


def xrl(reset: str, **kwargs) -> QuotaObservation:
    headers = {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "59", "X-RateLimit-Reset": reset}
    return only(headers, **kwargs)


def test_x_ratelimit_delta():
    assert xrl("30") == obs(60, 59, 30.0, None, None, "x-ratelimit")


@pytest.mark.parametrize(
    ("reset", "expected"),
    [
        ("0", 0.0),
        ("1.5", 1.5),
        ("3600", 3600.0),
        ("86400", 86400.0),
        ("999999999", 999999999.0),  # just under 10**9: still a (very long) delta
        (str(int(NOW) + 90), 90.0),  # epoch seconds
        (f"{NOW + 2.25:.2f}", 2.25),  # decimal epoch
        (str(int(NOW) - 3600), 0.0),  # an epoch in the past: reset already happened
        ("1000000000", 0.0),  # 10**9 is an epoch (2001), long past
        (str(int(NOW) * 1000 + 1500), 1.5),  # epoch milliseconds
    ],
)
def test_x_ratelimit_auto_epoch_or_delta(reset, expected):
    assert xrl(reset).reset_after == pytest.approx(expected)


def test_x_ratelimit_forced_styles():
    assert xrl("30", reset_style="epoch").reset_after == 0.0  # 1970 + 30 s is long past
    assert xrl(str(int(NOW) + 90), reset_style="epoch").reset_after == 90.0
    assert xrl("30", reset_style="delta").reset_after == 30.0
    assert xrl(str(int(NOW) + 90), reset_style="delta").reset_after == NOW + 90


def test_auto_rule_does_not_depend_on_now():
    headers = {"X-RateLimit-Reset": "500"}
    for now in (0.0, NOW, 4e9):
        assert parse_quota_headers(_getter(headers), now=now)[0].reset_after == 500.0


@pytest.mark.parametrize(
    "bad",
    [
        "-30",
        "+30",
        "1e3",
        "inf",
        "nan",
        "Infinity",
        "",
        "  ",
        "0x10",
        "1.",
        ".5",
        "1.2.3",
        "\u0663\u0660",
        "\uff13\uff10",
        "3\u00b2",
        "1" * 16,
        "1." + "5" * 10,
        "30 s",
        "30, 30",
    ],
)
def test_x_ratelimit_bad_reset(bad):
    o = xrl(bad)
    assert (o.limit, o.remaining, o.reset_after) == (60, 59, None)


@pytest.mark.parametrize("bad", ["-1", "1.0", "abc", "", "\u0661", "1" * 16, "5, 5", "1e2", "0x1"])
def test_x_ratelimit_bad_counts(bad):
    headers = {"X-RateLimit-Limit": bad, "X-RateLimit-Remaining": bad, "X-RateLimit-Reset": "5"}
    assert parse(headers) == [obs(None, None, 5.0, None, None, "x-ratelimit")]


def test_x_ratelimit_whitespace_and_leading_zeros():
    headers = {"X-RateLimit-Limit": " 060\t", "X-RateLimit-Remaining": "\t007"}
    assert parse(headers) == [obs(60, 7, None, None, None, "x-ratelimit")]


def test_x_ratelimit_zero_limit_is_unknown_but_zero_remaining_counts():
    headers = {"X-RateLimit-Limit": "0", "X-RateLimit-Remaining": "0"}
    assert parse(headers) == [obs(None, 0, None, None, None, "x-ratelimit")]
    assert parse({"X-RateLimit-Limit": "0"}) == []


# -- GitHub -----------------------------------------------------------------------------


GITHUB = {
    "x-ratelimit-limit": "5000",
    "x-ratelimit-remaining": "4999",
    "x-ratelimit-used": "1",
    "x-ratelimit-reset": str(int(NOW) + 3599),
    "x-ratelimit-resource": "core",
}


def test_github():
    assert parse(GITHUB) == [obs(5000, 4999, 3599.0, None, "core", "github")]


def test_github_reset_is_always_epoch():
    headers = {**GITHUB, "x-ratelimit-reset": "60"}
    assert only(headers).reset_after == 0.0
    assert only(headers, reset_style="delta").reset_after == 0.0


def test_github_other_resources():
    for resource in ("search", "graphql", "code_search", "integration_manifest"):
        assert only({**GITHUB, "x-ratelimit-resource": resource}).policy == resource


def test_github_used_stands_in_for_missing_remaining():
    headers = {k: v for k, v in GITHUB.items() if k != "x-ratelimit-remaining"}
    assert only(headers).remaining == 4999
    headers["x-ratelimit-used"] = "6000"  # more than the limit: says nothing
    assert only(headers).remaining is None
    headers["x-ratelimit-used"] = "-1"
    assert only(headers).remaining is None


def test_github_bad_resource_keeps_the_numbers():
    headers = {**GITHUB, "x-ratelimit-resource": "\u00e9\u00e9"}
    assert only(headers) == obs(5000, 4999, 3599.0, None, None, "github")
    headers = {**GITHUB, "x-ratelimit-resource": "r" * 300}
    assert only(headers).policy is None


# -- Discord ----------------------------------------------------------------------------


DISCORD = {
    "X-RateLimit-Limit": "5",
    "X-RateLimit-Remaining": "1",
    "X-RateLimit-Reset": f"{NOW + 1.5:.3f}",
    "X-RateLimit-Reset-After": "1.5",
    "X-RateLimit-Bucket": "abcd1234",
}


def test_discord():
    assert parse(DISCORD) == [obs(5, 1, 1.5, None, "abcd1234", "discord")]


def test_discord_reset_after_preferred_then_epoch_reset():
    headers = {**DISCORD, "X-RateLimit-Reset-After": "64.57"}
    assert only(headers).reset_after == 64.57
    headers = {**DISCORD, "X-RateLimit-Reset-After": "soon"}
    assert only(headers).reset_after == pytest.approx(1.5)
    headers = {k: v for k, v in DISCORD.items() if k != "X-RateLimit-Reset-After"}
    assert only(headers) == obs(5, 1, pytest.approx(1.5), None, "abcd1234", "discord")


def test_discord_recognised_by_reset_after_alone():
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "0.25"}
    assert parse(headers) == [obs(None, 0, 0.25, None, None, "discord")]


# -- X / Twitter ------------------------------------------------------------------------


def test_x_twitter():
    headers = {
        "x-rate-limit-limit": "900",
        "x-rate-limit-remaining": "899",
        "x-rate-limit-reset": str(int(NOW) + 900),
    }
    assert parse(headers) == [obs(900, 899, 900.0, None, None, "x")]


def test_x_twitter_reset_is_epoch():
    headers = {"x-rate-limit-remaining": "3", "x-rate-limit-reset": "60"}
    assert parse(headers) == [obs(None, 3, 0.0, None, None, "x")]


# -- OpenAI -----------------------------------------------------------------------------


def test_openai_requests_only():
    headers = {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "150000",
        "x-ratelimit-remaining-tokens": "149984",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    assert parse(headers) == [obs(60, 59, 1.0, None, None, "openai")]


def test_openai_tokens_alone_give_nothing():
    headers = {"x-ratelimit-limit-tokens": "150000", "x-ratelimit-reset-tokens": "6m0s"}
    assert parse(headers) == []


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("1s", 1.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("0.5s", 0.5),
        ("0s", 0.0),
        ("0", 0.0),
        ("2h", 7200.0),
        ("1.5h", 5400.0),
        ("17ms", 0.017),
        ("100ns", 1e-7),
        ("3us", 3e-6),
        ("3\u00b5s", 3e-6),
        ("3\u03bcs", 3e-6),
        ("1m30s", 90.0),
        ("1s500ms", 1.5),
        (".5s", 0.5),
        ("1.s", 1.0),
        (" 2s\t", 2.0),
        ("1.5", 1.5),  # a bare number: seconds
        ("12", 12.0),
    ],
)
def test_go_durations(text, seconds):
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        " ",
        "-1s",
        "+1s",
        "s",
        "1x",
        "1h1",
        "1..5s",
        ".s",
        "1.2.3s",
        "1 s",
        "1S",
        "1H",
        "inf",
        "infs",
        "nan",
        "NaNs",
        "1e3s",
        "\u0661s",
        "\uff11s",
        "1" * 16 + "s",
        "1s" * 40,
        "1d",
        "ms",
    ],
)
def test_bad_go_durations(text):
    assert parse_go_duration(text) is None


def test_openai_bad_reset_keeps_counts():
    headers = {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "-6m",
    }
    assert parse(headers) == [obs(60, 0, None, None, None, "openai")]


# -- several dialects in one response ----------------------------------------------------


def test_all_dialects_at_once_in_a_stable_order():
    headers = {
        "RateLimit-Policy": '"p";q=10;w=1',
        "RateLimit": '"p";r=9;t=1',
        "RateLimit-Limit": "10",
        **GITHUB,
        "x-rate-limit-limit": "900",
        "x-ratelimit-limit-requests": "60",
    }
    assert [o.dialect for o in parse(headers)] == ["ietf", "ietf-legacy", "github", "x", "openai"]


def test_getter_returning_non_strings_is_tolerated():
    values = {"x-ratelimit-limit": b"60", "x-ratelimit-remaining": 5, "ratelimit": ["x"]}
    assert parse_quota_headers(values.get, now=NOW) == []  # type: ignore[arg-type]


def test_weird_now_gives_no_weird_numbers():
    headers = {"X-RateLimit-Reset": str(int(NOW) + 10)}
    for now in (math.nan, math.inf, -math.inf):
        for o in parse_quota_headers(_getter(headers), now=now):
            assert o.reset_after is None or (math.isfinite(o.reset_after) and o.reset_after >= 0)


# -- never raises ----------------------------------------------------------------------

HEADER_NAMES = (
    "ratelimit",
    "ratelimit-policy",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-ratelimit-reset-after",
    "x-ratelimit-bucket",
    "x-ratelimit-used",
    "x-ratelimit-resource",
    "x-rate-limit-limit",
    "x-rate-limit-remaining",
    "x-rate-limit-reset",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
)

FRAGMENTS = (
    '"p"',
    "p",
    "q",
    "w",
    "r",
    "t",
    "qu",
    "pk",
    "limit",
    "remaining",
    "reset",
    ";",
    "=",
    ",",
    " ",
    "\t",
    "(",
    ")",
    '"',
    "?1",
    ":YQ==:",
    "%",
    "0",
    "1",
    "9",
    "10",
    "-1",
    "1.5",
    "0.001",
    "999999999999999",
    "1000000000000000",
    "1717412400",
    "1717412400000",
    "inf",
    "nan",
    "h",
    "m",
    "s",
    "ms",
    "\u00b5s",
    ".",
    "\u0661",
    "\uff11",
    "\u00e9",
    "requests",
)

header_value = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(FRAGMENTS), max_size=20).map("".join),
)


def _sane(o: QuotaObservation) -> bool:
    counts_ok = all(v is None or (type(v) is int and v >= 0) for v in (o.limit, o.remaining))
    times_ok = all(
        v is None or (isinstance(v, float) and math.isfinite(v) and v >= 0)
        for v in (o.reset_after, o.window)
    )
    some_number = any(v is not None for v in (o.limit, o.remaining, o.reset_after, o.window))
    rate_ok = o.rate is None or (math.isfinite(o.rate) and o.rate > 0)
    return counts_ok and times_ok and some_number and rate_ok


@settings(max_examples=400, deadline=None)
@given(
    headers=st.dictionaries(
        st.sampled_from(HEADER_NAMES), header_value, max_size=len(HEADER_NAMES)
    ),
    now=st.floats(min_value=0, max_value=4e9),
    reset_style=st.sampled_from(["auto", "epoch", "delta"]),
)
def test_never_raises_and_numbers_are_sane(headers, now, reset_style):
    found = parse_quota_headers(headers.get, now=now, reset_style=reset_style)
    assert isinstance(found, list)
    for o in found:
        assert isinstance(o, QuotaObservation)
        assert _sane(o), o


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(HEADER_NAMES), value=header_value)
def test_each_header_alone_never_raises(name, value):
    for o in parse_quota_headers({name: value}.get, now=NOW):
        assert _sane(o), o


@given(st.text(max_size=40))
def test_go_duration_total(text):
    seconds = parse_go_duration(text)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


_NAMES = st.sampled_from([
    "RateLimit", "ratelimit-policy", "RATELIMIT-LIMIT", "X-RateLimit-Remaining",
    "x-ratelimit-reset-requests", "X-Rate-Limit-Limit", "Retry-After", "Content-Type",
    "x-request-id", "Rate", "XRateLimit", "r", "x",
])


_VALUES = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=8)


@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=12))
@settings(max_examples=300, deadline=None)
def test_quota_fields_reads_every_mapping_alike(pairs: list[tuple[str, str]]) -> None:
    """The fast read of requests' CaseInsensitiveDict finds what the general one finds in
    a plain dict and in httpx.Headers (the last of names differing only in case wins)."""
    import httpx
    import requests.structures

    from surefoot.pacing._quota_headers import quota_fields

    plain: dict[str, str] = {}
    for name, value in pairs:
        plain = {k: v for k, v in plain.items() if k.lower() != name.lower()}
        plain[name] = value
    expected = quota_fields(plain)
    assert quota_fields(requests.structures.CaseInsensitiveDict(plain)) == expected
    assert quota_fields(httpx.Headers(plain)) == expected


_FIELDS = st.sampled_from([
    "ratelimit", "ratelimit-policy", "ratelimit-limit", "ratelimit-remaining",
    "ratelimit-reset", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset",
    "x-ratelimit-reset-after", "x-ratelimit-resource", "x-ratelimit-bucket",
    "x-ratelimit-used", "x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset",
    "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
])
_FIELD_VALUES = st.one_of(
    st.sampled_from(['"default";q=100;w=60', '"default";r=5;t=30', "limit=10, remaining=3, "
                     "reset=4", "100", "0", "5", "1700000000", "2.5", "1m30s", "20ms",
                     "100;w=60", "core", "abc", "", "-1", '"a";r=1;t=2, "b";r=0;t=9']),
    _VALUES,
)


@given(st.dictionaries(_FIELDS, _FIELD_VALUES, max_size=8))
@settings(max_examples=1000, deadline=None)
def test_dialects_without_their_fields_are_skipped_without_changing_anything(
    fields: dict[str, str],
) -> None:
    """parse_quota_headers skips a dialect none of whose fields is present: what it finds
    is what running every dialect finds."""
    from surefoot.pacing import _quota_headers as q

    now = 1_700_000_000.0
    policy = q._sf_list(fields.get("ratelimit-policy"))
    every = [
        *q._ietf(fields.get, now, policy),
        q._ietf_legacy(fields.get, now, policy),
        q._x_ratelimit(fields.get, now, "auto"),
        q._x_twitter(fields.get, now),
        q._openai(fields.get),
    ]
    assert parse_quota_headers(fields.get, now=now) == [o for o in every if o is not None]
