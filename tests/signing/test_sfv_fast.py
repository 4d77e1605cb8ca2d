"""The fast structured-field parser (``surefoot.signing._sfv``) against ``http_sfv``.

The verifiers used to parse ``Signature-Input``, ``Signature`` and ``Content-Digest``
with ``http_sfv`` alone; they now read the subset those fields use with a faster parser
and hand everything else to ``http_sfv``. That must change nothing: for every text, the
fast path either gives up (``None``: ``http_sfv`` decides) or gives exactly what
``http_sfv`` gives — the same members in the same order, the same values of the same
types, the same parameters — and never accepts a text ``http_sfv`` refuses. Checked
differentially (old parser against new) on texts from the grammar, on tampered real
fields and on noise; the number of examples is ``SUREFOOT_SFV_EXAMPLES`` (default 3 000;
5 000 under CI).
"""

from __future__ import annotations

import base64
import os
import string
from typing import Any

import pytest
from http_sfv.dictionary import Dictionary
from http_sfv.item import InnerList, Item
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from surefoot.signing._sfv import SfInnerList, SfItem, SfMember, _fast, parse_dictionary

EXAMPLES = int(os.environ.get("SUREFOOT_SFV_EXAMPLES", "5000" if os.environ.get("CI") else "3000"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _value(value: object) -> tuple[str, object]:
    return (type(value).__name__, value)


def _params(params: Any) -> list[tuple[str, tuple[str, object]]]:
    return [(str(k), _value(v)) for k, v in params.items()]


def ours(parsed: dict[str, SfMember]) -> list[tuple[Any, ...]]:
    """Our result as plain data (types kept: a Token is not a str)."""
    out: list[tuple[Any, ...]] = []
    for key, member in parsed.items():
        if isinstance(member, SfInnerList):
            out.append((key, "inner", [(_value(i.value), _params(i.params)) for i in member.items],
                        _params(member.params)))
        else:
            assert isinstance(member, SfItem)
            out.append((key, "item", _value(member.value), _params(member.params)))
    return out


def old(text: str) -> list[tuple[Any, ...]] | None:
    """``http_sfv``'s result as the same plain data; ``None``: it refuses the text."""
    parsed = Dictionary()
    try:
        parsed.parse(text.encode("ascii"))
    except Exception:
        return None
    out: list[tuple[Any, ...]] = []
    for key, member in parsed.items():
        if isinstance(member, InnerList):
            out.append((key, "inner", [(_value(i.value), _params(i.params)) for i in member],
                        _params(member.params)))
        else:
            assert isinstance(member, Item)
            out.append((key, "item", _value(member.value), _params(member.params)))
    return out


def check_same(text: str) -> None:
    expected = old(text)
    fast = _fast(text)
    if fast is not None:  # the fast path answered: exactly http_sfv's answer
        assert expected is not None, f"fast path accepts what http_sfv refuses: {text!r}"
        assert ours(fast) == expected, text
    try:
        got = ours(parse_dictionary(text))
    except ValueError:
        assert expected is None, f"refused what http_sfv accepts: {text!r}"
    else:
        assert got == expected, text


# -- texts -------------------------------------------------------------------------------------

KEYS = st.sampled_from(["sig1", "sig2", "a", "*", "*x", "a.b-c_d*9", "sha-256", "sha-512",
                        "created", "keyid", "nonce", "alg", "tag", "expires", "req", "sf",
                        "key", "bs", "name", "A", "Sig1", "1a", "-a", "a b", ""])
STRINGS = st.one_of(
    st.sampled_from(['"@method"', '"@authority"', '"@path"', '"@query"', '"content-type"',
                     '"content-digest"', '"x"', '""', '"a\\"b"', '"a\\\\b"', '"a\\b"', '"a',
                     '"\\"', '"\x7f"', '"\x1f"', '"\t"', '"caf\u00e9"', '"a b ;,()=:"']),
    st.text(string.printable, max_size=8).map(lambda s: '"' + s + '"'),
)
NUMBERS = st.one_of(
    st.integers(-10**16, 10**16).map(str),
    st.sampled_from(["0", "-0", "00", "0000000000000001", "000000000000001", "999999999999999",
                     "1000000000000000", "-999999999999999", "1.5", "1.", "-", "--1", "1.2345",
                     "123456789012.1", "1234567890123.1", "1e3", "0x10"]),
    st.text("0123456789", min_size=1, max_size=18),
    st.text("0123456789", min_size=1, max_size=18).map(lambda s: "-" + s),
)
BYTES = st.one_of(
    st.binary(max_size=40).map(lambda b: ":" + base64.b64encode(b).decode() + ":"),
    st.text(string.ascii_letters + string.digits + "+/=", max_size=12).map(lambda s: f":{s}:"),
    st.sampled_from([":YQ==:", ":YQ=:", ":YQ:", ":YQ===:", ":Y:", "::", ":=:", ":YQ==YQ==:",
                     ":a-b_:", ":YQ==", ":", ":YQ== :"]),
)
OTHER = st.sampled_from(["?0", "?1", "?2", "?", "?10", "tok", "tok/en:x", "*tok", "@1700000000",
                         "@-1", "@1.5", "@99999999999999", '%"a"', '%"%e9"', '%"%E9"', "T",
                         "a=b", "()", "( )", "((1))", "(", ")"])
BARE = st.one_of(STRINGS, NUMBERS, BYTES, OTHER)
SPACE = st.sampled_from(["", "", "", " ", "  ", "\t", " \t"])


@st.composite
def params(draw: st.DrawFn) -> str:
    out = ""
    for _ in range(draw(st.integers(0, 3))):
        out += ";" + draw(st.sampled_from(["", "", " ", "  "])) + draw(KEYS)
        if draw(st.booleans()):
            out += "=" + draw(BARE)
    return out


@st.composite
def items(draw: st.DrawFn) -> str:
    return draw(BARE) + draw(params())


@st.composite
def inner_lists(draw: st.DrawFn) -> str:
    parts = [draw(items()) for _ in range(draw(st.integers(0, 4)))]
    seps = [draw(st.sampled_from([" ", " ", "  ", "", "\t"])) for _ in parts]
    body = "".join(sep + part for sep, part in zip(seps, parts, strict=True))
    return "(" + body + draw(st.sampled_from(["", "", " ", "  "])) + ")" + draw(params())


@st.composite
def dictionaries(draw: st.DrawFn) -> str:
    members = []
    for _ in range(draw(st.integers(1, 3))):
        key = draw(KEYS)
        kind = draw(st.sampled_from(["inner", "item", "item", "bare-key"]))
        if kind == "inner":
            members.append(f"{key}={draw(inner_lists())}")
        elif kind == "item":
            members.append(f"{key}={draw(items())}")
        else:
            members.append(key + draw(params()))
    text = ""
    for index, member in enumerate(members):
        if index:
            text += draw(SPACE) + draw(st.sampled_from([",", ",", ",", ";", ""])) + draw(SPACE)
        text += member
    return draw(st.sampled_from(["", "", " ", "\t"])) + text + draw(
        st.sampled_from(["", "", " ", "\t", ",", ", "]))


REAL = [
    'sig1=("@method" "@authority" "@path" "@query" "content-type" "content-digest")'
    ';created=1700000000;keyid="bench-key";nonce="0123456789abcdef0123456789abcdef"',
    'sig1=("@method" "@target-uri" "@query-param";name="Pet" "x-d";key="a" "x";sf "y";bs '
    '"content-digest";req);created=1618884473;expires=1618884773;keyid="k";alg="ed25519";tag="t"',
    "sig1=:wXcHHKtuNfKPXJeHNxeMOzS8TvkKrdI9SC+6HfKIbRzWW9zRdqnbO2YBBxzJu2I4wIJWJlwjZH8y+AgeYhKfBg==:"
    ", sig2=:YQ==:",
    "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:, sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2U"
    "FChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
    'sig-b21=();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd"',
]


@st.composite
def tampered(draw: st.DrawFn) -> str:
    """A real field with a few characters inserted, deleted or replaced."""
    text = draw(st.sampled_from(REAL))
    alphabet = st.sampled_from(list('"();=,:?*-. \t\\0123456789azAZ@%') + ["\x7f", "\u00e9"])
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        char = draw(alphabet)
        if action == "insert":
            text = text[:at] + char + text[at:]
        elif action == "delete":
            text = text[:at] + text[at + 1:]
        else:
            text = text[:at] + char + text[at + 1:]
    return text


FRAGMENTS = st.sampled_from(['"', "(", ")", ";", "=", ",", ":", "?", "*", " ", "\t", "\\", "-",
                             ".", "a", "z", "A", "0", "1", "9", "@", "%", "sig1", "created",
                             '"@method"', "YQ==", "1700000000", "0000000000000001"])
NOISE = st.one_of(
    st.lists(FRAGMENTS, max_size=24).map("".join),
    st.text(string.printable, max_size=40),
)


@SETTINGS
@given(dictionaries())
def test_grammar_texts_read_as_http_sfv_reads_them(text: str) -> None:
    check_same(text)


@SETTINGS
@given(tampered())
def test_tampered_fields_read_as_http_sfv_reads_them(text: str) -> None:
    check_same(text)


@SETTINGS
@given(NOISE)
def test_noise_reads_as_http_sfv_reads_it(text: str) -> None:
    check_same(text)


@pytest.mark.parametrize("text", [
    *REAL,
    # edges of the subset, each side of the line
    "a=123456789012345", "a=-123456789012345", "a=1234567890123456", "a=0000000000000001",
    "a=0000000000000001, b=1", 'a="x";b=0000000000000001', "a=(1 0000000000000001)",
    "a=1.5", "a=1.", "a=tok", "a=@1", 'a=%"x"', "a", "a;b=1", "a=1,", "a=1,,b=2", " a=1",
    "\ta=1", "a=1 ", "a=1\t", "a=1 ,\tb=2", "a=1, a=2, b=3", "a=1;x=1;x=2;y",
    "a=(1;x=1;x=2);x", "a=()", "a=(  )", 'a=("a""b")', 'a=( "a" ;x "b")', "a=1;b =2",
    "a=1; b=2", "a=:YQ:", "a=:YQ=:", "a=:YQ===:", "a=:Y:", "a=?10", "a=?2", 'a="\\x"',
    'a="\\"\\\\"', "A=1", "*a=1", "a*.-_9=1", "a=1;B=2", "a=((1))", "a=(1)(2)", "",
    " ", "a=\u00e9",
])
def test_edge_cases(text: str) -> None:
    check_same(text)


def test_fast_path_takes_the_real_fields() -> None:
    # the point of it: the fields verifiers read every request never reach http_sfv
    for text in REAL:
        assert _fast(text) is not None, text


def test_inner_list_items_come_from_its_text() -> None:
    # a verifier caches by the Inner List's text: the same text is the same Items
    parsed = parse_dictionary(REAL[0])
    member = parsed["sig1"]
    assert isinstance(member, SfInnerList)
    assert member.source == ('("@method" "@authority" "@path" "@query" "content-type" '
                             '"content-digest")')
    assert [i.value for i in member.items] == ["@method", "@authority", "@path", "@query",
                                               "content-type", "content-digest"]
    assert list(member.params) == ["created", "keyid", "nonce"]


def _lists_read(texts: list[str]) -> set[str]:
    """The Inner Lists' texts a verifier would keep from these fields (read, items too)."""
    known: set[str] = set()
    for text in texts:
        try:
            parsed = parse_dictionary(text)
        except ValueError:
            continue
        for member in parsed.values():
            if isinstance(member, SfInnerList) and member.source is not None:
                assert isinstance(member.items, list)  # (read, as before it is kept)
                known.add(member.source)
    return known


@SETTINGS
@given(st.one_of(dictionaries(), tampered(), NOISE), st.lists(
    st.one_of(st.sampled_from(REAL), dictionaries(), tampered()), max_size=3),
    st.booleans())
def test_lists_known_before_read_the_same(text: str, others: list[str], itself: bool) -> None:
    """``known`` (the lists a verifier read before) skips reading a list again, and
    changes no result: with lists from other fields, and with the field's own."""
    known = _lists_read([*others, text] if itself else others)
    expected = old(text)
    fast = _fast(text, known)
    if fast is not None:
        assert expected is not None, f"fast path accepts what http_sfv refuses: {text!r}"
        assert ours(fast) == expected, text
    try:
        got = ours(parse_dictionary(text, known))
    except ValueError:
        assert expected is None, f"refused what http_sfv accepts: {text!r}"
    else:
        assert got == expected, text


@pytest.mark.parametrize(("text", "known"), [
    ('sig1=("a)" "b");x=1', '("a)'),  # (not a list: never known; the field read in full)
    ('sig1=("a") "b");x=1', '("a")'),
    ('sig1=("a");x=1;y, sig2=("a")', '("a")'),
    ('sig1=("a")x', '("a")'),
    ('sig1=("a"),', '("a")'),
    ('sig1=("a" :YQ==:)', '("a" :YQ==:)'),
    ('sig1=( "a" );created=1700000000', '( "a" )'),
])
def test_known_edge_cases(text: str, known: str) -> None:
    expected = old(text)
    try:
        got = ours(parse_dictionary(text, {known}))
    except ValueError:
        assert expected is None
    else:
        assert got == expected
