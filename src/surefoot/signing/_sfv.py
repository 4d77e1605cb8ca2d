"""Structured-field Dictionaries (RFC 8941) as the verifiers read them, fast and strict.

``Signature-Input``, ``Signature`` (RFC 9421) and ``Content-Digest`` (RFC 9530) are
Dictionaries, and a verifier parses them on every request. :func:`parse_dictionary` gives
exactly what ``http_sfv`` gives — the same members, values, types and parameters, in the
same order, and a ``ValueError`` for exactly the values ``http_sfv`` refuses — but reads
the subset these fields use itself, with a few compiled regular expressions instead of
``http_sfv``'s byte-by-byte parser (RFC 9421 verification spent most of its time there):

* members ``key=value`` separated by commas (optional spaces and tabs around them);
* values: Items, and Inner Lists of Items (a ``(`` and spaces between the Items);
* bare items: Strings, Byte Sequences, Integers of at most 15 digits, Booleans;
* parameters on Items and Inner Lists, of those bare items or flags.

Everything else — Tokens, Decimals, Dates, Display Strings, a member without ``=``, an
Integer of 16 digits or more (``http_sfv`` lets one with leading zeros through at the end
of the field), base64 that does not decode, and every syntax error — is handed as it is
to ``http_sfv``, which decides: its verdict and its values are the answer. So the fast
path never accepts what ``http_sfv`` refuses, nor reads anything differently
(``tests/signing/test_sfv_fast.py`` checks it differentially, old parser against new).

The values are plain objects: :class:`SfItem` (``value``, ``params``) and
:class:`SfInnerList` (``items``, ``params``, and the Inner List's text, ``source``, by
which a verifier caches what it made of the same list before). ``http_sfv`` is imported
only when a value needs it.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Container

__all__ = ["SfInnerList", "SfItem", "SfMember", "parse_dictionary"]

# The bare items of the fast subset: String (printable ASCII, "\" escaping only '"' and
# "\"; the loop unrolled, far faster than an alternation per character), Byte Sequence
# (base64 characters), Integer (at most 15 digits, not followed by a digit or a "."),
# Boolean.
_STRING = r'"[ !#-\[\]-~]*(?:\\["\\][ !#-\[\]-~]*)*"'
_BYTES = r":[A-Za-z0-9+/=]*:"
_INTEGER = r"-?[0-9]{1,15}(?![0-9.])"
_BOOLEAN = r"\?[01]"
# (One group for a whole bare item, its type told by its first character: a group per
# type, with the Integer's lookahead, makes the matching twice as slow.)
_BARE_NC = rf"{_STRING}|{_BYTES}|{_INTEGER}|{_BOOLEAN}"
_KEY = r"[a-z*][a-z0-9_\-.*]*"
_PARAMS_NC = rf"(?:; *{_KEY}(?:=(?:{_BARE_NC}))?)*"
_ITEM_NC = rf"(?:{_BARE_NC}){_PARAMS_NC}"
_INNER_NC = rf"\( *(?:{_ITEM_NC}(?: +{_ITEM_NC})*)? *\)"

#: One member: (spaces, only before the first,) its key, "=", an Inner List (its text) or
#: a bare item (its text), its parameters (their text), and what follows: spaces and
#: tabs, a comma, spaces and tabs. What the pattern leaves unmatched is handed over.
_MEMBER = re.compile(
    rf" *({_KEY})=(?:({_INNER_NC})|({_BARE_NC}))({_PARAMS_NC})[ \t]*(,[ \t]*)?")
#: A member whose value may be an Inner List read before (see parse_dictionary's
#: ``known``): as _MEMBER, with the list taken up to the first ")" unchecked (group 2).
_KNOWN_MEMBER = re.compile(
    rf" *({_KEY})=(\([^)]*\))({_PARAMS_NC})[ \t]*(,[ \t]*)?")
#: One parameter in the text of parameters the patterns above matched (name; the text
#: of its value, empty for a flag).
_PARAM = re.compile(rf"; *({_KEY})(?:=({_BARE_NC}))?")
#: One Item in the text of an Inner List: its bare item, the text of its parameters.
_ITEM = re.compile(rf"({_BARE_NC})({_PARAMS_NC})")
#: The commonest field of all, whole: one member, a Byte Sequence without parameters
#: (``Signature``, ``Content-Digest``): read in one step, as _fast reads it.
_ONE_BYTE_SEQUENCE = re.compile(rf"({_KEY})=:([A-Za-z0-9+/=]*):")
_UNESCAPE = re.compile(r"\\(.)")


class SfItem:
    """An Item: a bare value (``str``, ``bytes``, ``int``, ``bool``; or, from
    ``http_sfv``, a ``Token``, ``Decimal``, ``datetime`` or ``DisplayString``) and its
    parameters, in order."""

    __slots__ = ("params", "value")

    def __init__(self, value: object, params: dict[str, object]) -> None:
        self.value = value
        self.params = params

    def __repr__(self) -> str:
        return f"SfItem({self.value!r}, {self.params!r})"


class SfInnerList:
    """An Inner List: its Items, its parameters, and (when read by the fast path) its
    text from ``(`` to ``)``: the same text is always the same Items. The Items are read
    from it on first use (a verifier that knows the text needs none of them)."""

    __slots__ = ("_items", "params", "source")

    def __init__(self, items: list[SfItem] | None, params: dict[str, object],
                 source: str | None = None) -> None:
        self._items = items
        self.params = params
        self.source = source

    @property
    def items(self) -> list[SfItem]:
        items = self._items
        if items is None:
            assert self.source is not None
            items = self._items = _inner_items(self.source)
        return items

    def __repr__(self) -> str:
        return f"SfInnerList({self.items!r}, {self.params!r})"


SfMember = SfItem | SfInnerList


# -- the fast path ------------------------------------------------------------------------


def _bare(text: str) -> object:
    """The value of a bare item of the fast subset from its text (that _BARE_NC matched:
    its first character tells its type). Raises ``binascii.Error`` for base64 that does
    not decode (the caller hands the field over)."""
    first = text[0]
    if first == '"':
        text = text[1:-1]
        return _UNESCAPE.sub(r"\1", text) if "\\" in text else text
    if first == ":":  # as http_sfv's base64.standard_b64decode (not strict)
        return binascii.a2b_base64(text[1:-1])
    if first == "?":
        return text == "?1"
    return int(text)


def _params(text: str) -> dict[str, object]:
    """The parameters in their text (that a pattern above matched), in order; a name
    given twice keeps its first place and its last value, as in http_sfv."""
    return {name: _bare(value) if value else True for name, value in _PARAM.findall(text)}


def _inner_items(source: str) -> list[SfItem]:
    """The Items of an Inner List's text that :data:`_MEMBER` matched."""
    return [
        SfItem(_bare(value), _params(params) if params else {})
        for value, params in _ITEM.findall(source, 1, len(source) - 1)
    ]


def _fast(text: str, known: Container[str] = ()) -> dict[str, SfMember] | None:
    """The Dictionary, or ``None``: not (all) in the fast subset, or not valid."""
    out: dict[str, SfMember] = {}
    pos, end = 0, len(text)
    member, known_member = _MEMBER.match, _KNOWN_MEMBER.match
    try:
        while True:
            found = known_member(text, pos) if known else None
            if found is not None and found.group(2) in known:
                # The list is one read before (see parse_dictionary): its Items are.
                key, source, params, comma = found.groups()
                out[key] = SfInnerList(None, _params(params) if params else {}, source)
            else:
                found = member(text, pos)
                if found is None:
                    return None
                key, source, value, params, comma = found.groups()
                if source is not None:
                    # Items are read on first use, but a Byte Sequence must decode now
                    # (else http_sfv decides): a list that may hold one is read at once.
                    out[key] = SfInnerList(_inner_items(source) if ":" in source else None,
                                           _params(params) if params else {}, source)
                else:  # (a repeated key: the last value, at the first's place)
                    out[key] = SfItem(_bare(value), _params(params) if params else {})
            pos = found.end()
            if pos == end:
                return None if comma else out  # (a trailing comma: refused)
            if comma is None:
                return None
    except binascii.Error:
        return None


# -- the slow path: http_sfv ---------------------------------------------------------------


def _slow(text: str) -> dict[str, SfMember]:
    from http_sfv.dictionary import Dictionary
    from http_sfv.item import InnerList

    parsed = Dictionary()
    try:
        parsed.parse(text.encode("ascii"))  # (not ASCII: UnicodeEncodeError, a ValueError)
    except Exception as exc:  # http_sfv raises ValueError; any failure means invalid
        raise ValueError("not a valid structured-field Dictionary") from exc
    out: dict[str, SfMember] = {}
    for key, member in parsed.items():
        if isinstance(member, InnerList):
            out[str(key)] = SfInnerList(
                [SfItem(item.value, dict(item.params)) for item in member], dict(member.params))
        else:
            out[str(key)] = SfItem(member.value, dict(member.params))
    return out


def parse_dictionary(text: str, known: Container[str] = ()) -> dict[str, SfMember]:
    """The Dictionary ``text`` (ASCII; the caller bounds its length) holds, as
    ``http_sfv`` reads it; ``ValueError`` where ``http_sfv`` refuses it.

    ``known``: texts of Inner Lists (:attr:`SfInnerList.source`) this function gave
    before, whose Items were read without error. A member ``key=`` followed by one of
    them is not checked again: an Inner List ends at its first ``)`` outside a String
    and nothing past it is read to read it, so when the text up to the first ``)`` after
    ``key=`` is such a list, the list there is exactly that one (a ``)`` inside one of
    its Strings makes a text that is no valid list, hence not known: the field is then
    read in full). Only its parameters, and what follows, are read."""
    one = _ONE_BYTE_SEQUENCE.fullmatch(text)
    if one is not None:
        try:
            return {one.group(1): SfItem(binascii.a2b_base64(one.group(2)), {})}
        except binascii.Error:
            pass  # (http_sfv decides)
    found = _fast(text, known)
    return found if found is not None else _slow(text)
