"""RFC 9530 ``Content-Digest``: generate it for a body and verify a body against it.

``Content-Digest`` is a Structured Field Dictionary from a hash algorithm to the Byte
Sequence of the hash of the message content (the bytes on the wire, after any
Content-Encoding)::

    Content-Digest: sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:

Supported algorithms are the two the RFC marks *standard*, ``sha-256`` and ``sha-512``.
The deprecated ones (``md5``, ``sha``, ``unixsum``, ``unixcksum``, ``adler``, ``crc32c``)
and unknown ones are ignored when verifying, as RFC 9530 §2 allows; a field with no
supported member does not verify. Every supported member present must match.

The header value is untrusted input, parsed as ``http_sfv`` parses it (by
:func:`surefoot.signing._sfv.parse_dictionary`: the common forms fast, anything else by
``http_sfv`` itself); generating it needs no parser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Collection, Iterable
from typing import Literal

from surefoot.errors import (
    BodyDigestMismatch,
    ConfigurationError,
    MalformedSignature,
    MissingHeader,
)
from surefoot.signing._sfv import SfItem, parse_dictionary

__all__ = [
    "DIGEST_ALGORITHMS",
    "DigestAlgorithm",
    "content_digest",
    "verify_content_digest",
]

DigestAlgorithm = Literal["sha-256", "sha-512"]

_HASHES: dict[str, Callable[[bytes], hashlib._Hash]] = {
    "sha-256": hashlib.sha256,
    "sha-512": hashlib.sha512,
}
#: The algorithms surefoot generates and verifies, strongest last.
DIGEST_ALGORITHMS: tuple[DigestAlgorithm, ...] = ("sha-256", "sha-512")
_MAX_FIELD_LENGTH = 4096  # a few real members are ~150 characters; http_sfv is quadratic


def _hash(algorithm: str) -> Callable[[bytes], hashlib._Hash]:
    try:
        return _HASHES[algorithm]
    except KeyError:
        raise ConfigurationError(
            f"unsupported Content-Digest algorithm {algorithm!r}; use one of "
            + ", ".join(DIGEST_ALGORITHMS)
        ) from None


def content_digest(
    body: bytes | None, algorithms: DigestAlgorithm | Iterable[DigestAlgorithm] = "sha-256"
) -> str:
    """The ``Content-Digest`` value for ``body`` (``None`` is the empty body).

    ``content_digest(b'{"hello": "world"}', "sha-512")`` →
    ``'sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:'``.
    Several algorithms give several members, in the order given.
    """
    data = body or b""
    names = (algorithms,) if isinstance(algorithms, str) else tuple(algorithms)
    if not names:
        raise ConfigurationError("at least one Content-Digest algorithm is needed")
    return ", ".join(
        f"{name}=:{base64.b64encode(_hash(name)(data).digest()).decode('ascii')}:"
        for name in names
    )


def verify_content_digest(
    value: str | None,
    body: bytes | None,
    *,
    algorithms: Collection[str] = DIGEST_ALGORITHMS,
) -> tuple[str, ...]:
    """Check ``body`` against a received ``Content-Digest`` value.

    Returns the algorithms that were checked (every member whose algorithm is in
    ``algorithms``). Raises :class:`~surefoot.MissingHeader` (no value),
    :class:`~surefoot.MalformedSignature` (not a Dictionary, a member that is not a Byte
    Sequence, or no member with an accepted algorithm) or
    :class:`~surefoot.BodyDigestMismatch` (a member does not match; compared in
    constant time).
    """
    if algorithms is not DIGEST_ALGORITHMS:  # (a caller's own: check them)
        for name in algorithms:
            _hash(name)
    if value is None:
        raise MissingHeader("missing header Content-Digest")
    text = value.strip(" \t")
    if not text:
        raise MissingHeader("missing header Content-Digest")
    if len(text) > _MAX_FIELD_LENGTH or not text.isascii():
        raise MalformedSignature("Content-Digest is not a valid structured field")
    try:
        parsed = parse_dictionary(text)
    except ValueError:
        raise MalformedSignature("Content-Digest is not a valid structured field") from None
    data = body or b""
    checked: list[str] = []
    matched = True
    for name, member in parsed.items():
        if name not in algorithms:
            continue  # deprecated or unknown algorithms are ignored (RFC 9530 §2)
        if not isinstance(member, SfItem) or type(member.value) is not bytes:
            raise MalformedSignature(f"Content-Digest member {name} is not a byte sequence")
        expected = _HASHES[name](data).digest()
        matched &= hmac.compare_digest(expected, member.value)
        checked.append(name)
    if not checked:
        raise MalformedSignature(
            "Content-Digest has no member with an accepted algorithm ("
            + ", ".join(sorted(algorithms)) + ")"
        )
    if not matched:
        raise BodyDigestMismatch("Content-Digest does not match the body")
    return tuple(checked)
