"""``surefoot request --sign ...``: building a signing auth object from the command line.

Three schemes::

    --sign hmac:KEY_ID[:SOURCE]           the tutorial's HMAC scheme (X-Signature ...)
    --sign rfc9421:ALG:KEY_ID[:SOURCE]    RFC 9421 HTTP Message Signatures
    --sign sigv4:REGION:SERVICE           AWS Signature Version 4

Key material never comes from the command line, where ``ps`` and shell history would
show it. A ``SOURCE`` is ``@PATH`` (a file; for an HMAC secret one trailing newline is
dropped) or ``env:NAME`` (an environment variable). Without one, ``hmac:`` reads
``$SUREFOOT_HMAC_SECRET`` and ``rfc9421:`` reads ``$SUREFOOT_SIGNING_KEY``. Asymmetric keys
are PEM private keys; HMAC secrets are raw bytes unless ``--secret-encoding`` says
``base64`` or ``hex``. SigV4 reads ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and
``AWS_SESSION_TOKEN``, or ``--aws-access-key-id`` and ``--aws-secret-access-key`` /
``--aws-session-token`` (each a ``SOURCE``).

Error messages name the file or variable, never its content.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from surefoot.signing._auth import SigningAuth

__all__ = [
    "DEFAULT_HMAC_ENV",
    "DEFAULT_KEY_ENV",
    "CliUsage",
    "add_sign_options",
    "check_companions",
    "describe",
    "read_source",
    "sign_auth",
    "split_components",
]

DEFAULT_HMAC_ENV = "SUREFOOT_HMAC_SECRET"
DEFAULT_KEY_ENV = "SUREFOOT_SIGNING_KEY"
_SCHEMES = ("hmac", "rfc9421", "sigv4")


class CliUsage(Exception):
    """A usage error: the command exits with status 2 and this message (no secrets)."""


def add_sign_options(req: argparse.ArgumentParser) -> None:
    """The ``--sign`` option and its companions, on the ``request`` sub-parser."""
    group = req.add_argument_group(
        "signing",
        "Key material is read from @FILE or env:NAME, never from the command line.",
    )
    group.add_argument(
        "--sign",
        action="append",
        metavar="SCHEME:...",
        help="hmac:KEY_ID[:SOURCE] | rfc9421:ALG:KEY_ID[:SOURCE] | sigv4:REGION:SERVICE "
        "(SOURCE: @FILE or env:NAME)",
    )
    group.add_argument(
        "--sign-components",
        metavar="LIST",
        help="RFC 9421: comma-separated covered components "
        "(default @method,@authority,@path,@query; content-digest is added)",
    )
    group.add_argument(
        "--content-digest",
        choices=("sha-256", "sha-512", "none"),
        default="sha-256",
        help="RFC 9421: send and cover an RFC 9530 Content-Digest (default sha-256)",
    )
    group.add_argument("--sign-label", default="sig1", help="RFC 9421 signature label")
    group.add_argument("--sign-tag", help="RFC 9421 tag parameter")
    group.add_argument(
        "--sign-expires", type=float, metavar="SECONDS", help="RFC 9421 expires = created + S"
    )
    group.add_argument(
        "--secret-encoding",
        choices=("raw", "base64", "hex"),
        default="raw",
        help="how an HMAC secret is encoded in its file or variable (default raw)",
    )
    group.add_argument(
        "--key-password", metavar="SOURCE", help="password of an encrypted PEM key (@FILE|env:NAME)"
    )
    group.add_argument("--aws-access-key-id", help="SigV4 access key id (or $AWS_ACCESS_KEY_ID)")
    group.add_argument(
        "--aws-secret-access-key",
        metavar="SOURCE",
        help="SigV4 secret key: @FILE or env:NAME (default $AWS_SECRET_ACCESS_KEY)",
    )
    group.add_argument(
        "--aws-session-token",
        metavar="SOURCE",
        help="SigV4 session token: @FILE or env:NAME (default $AWS_SESSION_TOKEN)",
    )
    group.add_argument(
        "--unsigned-payload", action="store_true", help="SigV4: sign UNSIGNED-PAYLOAD (S3)"
    )


def read_source(source: str, what: str, *, strip_newline: bool = False) -> bytes:
    """Key material from ``@PATH`` or ``env:NAME``. Anything else is refused without
    being repeated (it may be a secret pasted on the command line)."""
    if source.startswith("@") and len(source) > 1:
        path = os.path.expanduser(source[1:])
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise CliUsage(f"{what}: cannot read {source[1:]}: {exc.strerror}") from None
        if strip_newline:
            data = data.removesuffix(b"\n").removesuffix(b"\r")
        if not data:
            raise CliUsage(f"{what}: {source[1:]} is empty")
        return data
    if source.startswith("env:") and len(source) > 4:
        name = source[4:]
        value = os.environ.get(name)
        if not value:
            raise CliUsage(f"{what}: environment variable {name} is not set or empty")
        return os.fsencode(value)
    raise CliUsage(
        f"{what} must be @FILE or env:NAME (key material is never taken from the command line)"
    )


def _decode_secret(raw: bytes, encoding: str, what: str) -> bytes:
    if encoding == "raw":
        return raw
    try:
        if encoding == "base64":
            return base64.b64decode(raw.strip(), validate=True)
        return bytes.fromhex(raw.strip().decode("ascii"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise CliUsage(f"{what} is not valid {encoding}") from None


def split_components(text: str) -> list[str]:
    """Split ``--sign-components`` on commas outside double quotes."""
    out: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            out.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    out.append("".join(current).strip())
    if quoted or any(not item for item in out):
        raise CliUsage("--sign-components must be a comma-separated list of components")
    return out


def check_companions(args: argparse.Namespace, scheme: str | None) -> None:
    """Refuse signing options that do not apply to the chosen scheme (``None``: no
    ``--sign`` at all)."""
    rfc9421_only = {
        "--sign-components": args.sign_components is not None,
        "--content-digest": args.content_digest != "sha-256",
        "--sign-label": args.sign_label != "sig1",
        "--sign-tag": args.sign_tag is not None,
        "--sign-expires": args.sign_expires is not None,
        "--key-password": args.key_password is not None,
    }
    sigv4_only = {
        "--aws-access-key-id": args.aws_access_key_id is not None,
        "--aws-secret-access-key": args.aws_secret_access_key is not None,
        "--aws-session-token": args.aws_session_token is not None,
        "--unsigned-payload": args.unsigned_payload,
    }
    misplaced = [
        name
        for name, given in (
            *((n, g and scheme != "rfc9421") for n, g in rfc9421_only.items()),
            *((n, g and scheme != "sigv4") for n, g in sigv4_only.items()),
            ("--secret-encoding", args.secret_encoding != "raw" and scheme in ("sigv4", None)),
        )
        if given
    ]
    if misplaced:
        where = f"--sign {scheme}:..." if scheme else "a request without --sign"
        raise CliUsage(f"{', '.join(misplaced)} does not apply to {where}")


def sign_auth(args: argparse.Namespace) -> SigningAuth:
    """The auth object ``args.sign`` asks for (``args.sign`` is a one-item list)."""
    if len(args.sign) != 1:
        raise CliUsage("--sign can be given once")
    spec: str = args.sign[0]
    scheme, _, rest = spec.partition(":")
    if scheme not in _SCHEMES:
        raise CliUsage("--sign must start with hmac:, rfc9421: or sigv4:")
    check_companions(args, scheme)
    if scheme == "hmac":
        return _hmac(rest, args)
    if scheme == "rfc9421":
        return _rfc9421(rest, args)
    return _sigv4(rest, args)


def _hmac(rest: str, args: argparse.Namespace) -> SigningAuth:
    from surefoot.signing._auth import SigningAuth

    key_id, _, source = rest.partition(":")
    if not key_id:
        raise CliUsage("use --sign hmac:KEY_ID[:@FILE|:env:NAME]")
    raw = read_source(source or f"env:{DEFAULT_HMAC_ENV}", "the HMAC secret", strip_newline=True)
    return SigningAuth.hmac(key_id, _decode_secret(raw, args.secret_encoding, "the HMAC secret"))


def _rfc9421(rest: str, args: argparse.Namespace) -> SigningAuth:
    from surefoot.signing._auth import SigningAuth
    from surefoot.signing._rfc9421 import ALGORITHMS, SignatureKey

    algorithm, _, rest = rest.partition(":")
    key_id, _, source = rest.partition(":")
    if algorithm not in ALGORITHMS:
        raise CliUsage(
            "use --sign rfc9421:ALG:KEY_ID[:@FILE|:env:NAME] with ALG one of "
            + ", ".join(ALGORITHMS)
        )
    if not key_id:
        raise CliUsage("--sign rfc9421:ALG:KEY_ID[:SOURCE] needs a KEY_ID")
    alg = algorithm
    source = source or f"env:{DEFAULT_KEY_ENV}"
    if alg == "hmac-sha256":
        raw = read_source(source, "the signing key", strip_newline=True)
        key = SignatureKey(
            alg, _decode_secret(raw, args.secret_encoding, "the signing key"), key_id=key_id
        )
    else:
        if args.secret_encoding != "raw":
            raise CliUsage(f"--secret-encoding applies to HMAC secrets, not {alg} keys")
        pem = read_source(source, "the signing key")
        password = (
            read_source(args.key_password, "--key-password", strip_newline=True)
            if args.key_password
            else None
        )
        key = SignatureKey(alg, pem, key_id=key_id, password=password)
        if not key.can_sign:
            raise CliUsage("the signing key is a public key: give the private key")
    options: dict[str, Any] = {}
    if args.sign_components is not None:
        options["components"] = split_components(args.sign_components)
    return SigningAuth.rfc9421(
        key,
        content_digest=None if args.content_digest == "none" else args.content_digest,
        label=args.sign_label,
        tag=args.sign_tag,
        expires_in=args.sign_expires,
        **options,
    )


def _sigv4(rest: str, args: argparse.Namespace) -> SigningAuth:
    from surefoot.signing._auth import SigningAuth

    region, _, service = rest.partition(":")
    if not region or not service or ":" in service:
        raise CliUsage("use --sign sigv4:REGION:SERVICE, e.g. sigv4:us-east-1:s3")
    access_key = args.aws_access_key_id or os.environ.get("AWS_ACCESS_KEY_ID", "")
    if not access_key:
        raise CliUsage("SigV4 needs --aws-access-key-id or $AWS_ACCESS_KEY_ID")
    secret = read_source(
        args.aws_secret_access_key or "env:AWS_SECRET_ACCESS_KEY",
        "the AWS secret access key",
        strip_newline=True,
    )
    token_source = args.aws_session_token or (
        "env:AWS_SESSION_TOKEN" if os.environ.get("AWS_SESSION_TOKEN") else None
    )
    token = (
        read_source(token_source, "the AWS session token", strip_newline=True)
        if token_source
        else None
    )
    try:
        secret_text = secret.decode()
        token_text = None if token is None else token.decode()
    except UnicodeDecodeError:
        raise CliUsage("the AWS secret key and session token must be UTF-8 text") from None
    return SigningAuth.sigv4(
        access_key,
        secret_text,
        region,
        service,
        session_token=token_text,
        unsigned_payload=args.unsigned_payload,
    )


def describe(auth: Any) -> str:
    """One line for ``-v`` about how requests are signed (names and ids, no secrets)."""
    from surefoot.signing._hmac import HmacSigner
    from surefoot.signing._rfc9421 import MessageSigner
    from surefoot.signing._sigv4 import SigV4Signer

    signer = getattr(auth, "signer", None)
    if isinstance(signer, MessageSigner):
        covered = " ".join(c.identifier for c in signer.components)
        return (
            f"* signing: RFC 9421 {signer.key.algorithm}, keyid {signer.key_id!r}, "
            f"label {signer.label!r}, covering ({covered})"
        )
    if isinstance(signer, SigV4Signer):
        access_key = signer.credentials().access_key
        return (
            f"* signing: AWS SigV4, access key {access_key}, region {signer.region}, "
            f"service {signer.service}"
        )
    if isinstance(signer, HmacSigner):
        return f"* signing: HMAC scheme (X-Signature), key id {signer.key_id!r}"
    return f"* signing: {type(auth).__name__}"
