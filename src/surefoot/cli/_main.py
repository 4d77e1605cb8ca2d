"""The ``surefoot`` command: ``request`` (curl-like), ``demo`` and ``sandbox``.

Exit codes of ``surefoot request``:

====  =====================================================================
0     the final response is 2xx
1     internal error: an exception outside surefoot's error tree (a bug)
2     usage error: bad options, URL, method or header, unusable --token-cache
3     HTTP error: the final response (after retries) is not 2xx
4     transport failure: no response (connection, timeout, deadline)
5     auth failure: the token could not be obtained or the request signed
====  =====================================================================

Every failure is one line on stderr, never a traceback: invalid input is refused before
anything is sent, with a message naming what is wrong (``surefoot: error: ...``).

Signing: ``--sign hmac:KEY_ID[:SOURCE]``, ``--sign rfc9421:ALG:KEY_ID[:SOURCE]`` or
``--sign sigv4:REGION:SERVICE`` (see :mod:`surefoot.cli._sign`); key material comes from
``@FILE`` or ``env:NAME``, never from the command line.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from surefoot._extras import require
from surefoot.cli._sign import CliUsage as _Usage
from surefoot.cli._sign import add_sign_options, check_companions, describe, sign_auth
from surefoot.errors import (
    AuthError,
    ConfigurationError,
    RequestFailed,
    StoreError,
    SurefootError,
)
from surefoot.events import Event, EventKind
from surefoot.oauth._url import check_http_url

__all__ = [
    "EXIT_AUTH",
    "EXIT_HTTP",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_TRANSPORT",
    "EXIT_USAGE",
    "main",
]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_HTTP = 3
EXIT_TRANSPORT = 4
EXIT_AUTH = 5


class StderrHook:
    """``-v``: one line per attempt, wait, refresh and decision, on stderr. Events carry
    no secrets, so neither does this output."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr

    def __call__(self, event: Event) -> None:
        kind = event.kind
        text: str | None = None
        if kind is EventKind.ATTEMPT_SENT:
            text = f"> attempt {event.attempt}: {event.method} {event.url}"
        elif kind is EventKind.ATTEMPT_DONE:
            what = f"HTTP {event.status}" if event.status is not None else f"error {event.error}"
            ms = (event.elapsed or 0) * 1000
            text = f"< attempt {event.attempt}: {what} in {ms:.0f} ms"
        elif kind is EventKind.RETRY_SCHEDULED:
            text = f"* waiting {event.wait:.2f} s: {event.reason}"
        elif kind is EventKind.GAVE_UP:
            text = f"* gave up: {event.reason}"
        elif kind in (
            EventKind.TOKEN_REFRESHED,
            EventKind.TOKEN_INVALIDATED,
            EventKind.TOKEN_REFRESH_FAILED,
        ):
            text = f"* token: {kind.value.replace('_', ' ')} ({event.reason})"
        elif kind is EventKind.CREDENTIALS_WITHHELD:
            text = f"* credentials withheld: {event.reason} ({event.url})"
        if text:
            print(text, file=self.stream, flush=True)


def _pair(value: str, what: str) -> tuple[str, str]:
    name, sep, secret = value.partition(":")
    if not sep or not name:
        raise _Usage(f"{what} must look like ID:SECRET")
    return name, secret


#: An RFC 9110 token (section 5.6.2): what a method or a header name may be.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _shown(text: str) -> str:
    """``text`` quoted for an error message: escaped, on one line, at most 40 characters."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _check_method(method: str) -> None:
    if not method:
        raise _Usage("the method is empty: give one, e.g. GET")
    if not _TOKEN.fullmatch(method):
        raise _Usage(
            f"method {_shown(method)} is not an HTTP token "
            "(ASCII letters, digits and !#$%&'*+-.^_`|~ only)"
        )


def _check_header_value(value: str, what: str) -> None:
    """A header value is sent as Latin-1 bytes without line breaks (RFC 9110 section 5.5).
    The message names the header, never the value, which may be a credential."""
    for char in value:
        code = ord(char)
        if code > 0xFF:
            raise _Usage(
                f"{what} has characters outside Latin-1 (header values are bytes: "
                "percent-encode other text)"
            )
        if (code < 0x20 and char != "\t") or code == 0x7F:
            raise _Usage(f"{what} contains a line break or another control character")


def _headers_from(raw_headers: Sequence[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw in raw_headers:
        name, sep, value = raw.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise _Usage(f"bad header {_shown(raw.split(':')[0])}: use 'Name: value'")
        if not _TOKEN.fullmatch(name):
            raise _Usage(f"header name {_shown(name)} is not an HTTP token")
        _check_header_value(value, f"header {name!r}")
        headers[name] = value
    return headers


def _check_seconds(value: float, option: str, *, zero: bool = False) -> None:
    if not (math.isfinite(value) and (value > 0 or (zero and value == 0))):
        kind = "a finite number >= 0" if zero else "a positive, finite number"
        raise _Usage(f"{option} must be {kind} of seconds")


def _check_url(url: str, option: str) -> None:
    """An absolute http(s) URL with a host and a valid port, that requests can send."""
    import requests

    try:
        check_http_url(url, option)
    except ConfigurationError as exc:
        raise _Usage(str(exc)) from None
    try:  # what requests itself refuses (e.g. an invalid IDNA host)
        requests.PreparedRequest().prepare_url(url, None)
    except requests.RequestException as exc:  # its message would repeat the URL
        raise _Usage(f"{option} cannot be sent: {type(exc).__name__}") from None


def _check_token_cache(path: str) -> None:
    """The token file must be creatable or readable and writable: checked before the
    request, as the store only finds out in the middle of it."""
    target = os.path.abspath(path)
    try:
        if os.path.isdir(target):
            raise _Usage(f"--token-cache {path} is a directory, not a file")
        folder = os.path.dirname(target)
        while not os.path.lexists(folder):  # the store creates the missing folders
            folder = os.path.dirname(folder)
        if not os.path.isdir(folder):
            raise _Usage(f"--token-cache {path}: {folder} is not a directory")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise _Usage(f"--token-cache {path}: cannot create files in {folder}")
        if os.path.lexists(target) and not os.access(target, os.R_OK | os.W_OK):
            raise _Usage(f"--token-cache {path}: cannot read and write it")
    except OSError as exc:
        raise _Usage(f"--token-cache {path}: {exc.strerror}") from None


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="surefoot", description="Call HTTP APIs without slipping."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    req = sub.add_parser("request", help="send one request, curl-like")
    req.add_argument("method", help="HTTP method, e.g. GET")
    req.add_argument("url", help="absolute URL")
    req.add_argument("-H", "--header", action="append", default=[], metavar="'Name: value'")
    req.add_argument("-d", "--data", help="request body; @FILE reads a file, @- stdin")
    req.add_argument("--retries", type=int, default=3,
                     help="retries after the first try (default: %(default)s)")
    req.add_argument("--deadline", type=float, default=60.0,
                     help="seconds for everything, waits included (default: %(default)s)")
    req.add_argument("--timeout", type=float, default=30.0,
                     help="seconds per attempt (default: %(default)s)")
    req.add_argument("--retry-after-cap", type=float, default=120.0,
                     help="the longest Retry-After honoured, in seconds; a longer one fails "
                          "at once (default: %(default)s)")
    req.add_argument(
        "--idempotency-key", help="'auto' to generate one for POST/PATCH, or the key to send"
    )
    req.add_argument("--hmac", metavar="KEY_ID:SECRET", help="sign with the HMAC scheme "
                     "(an empty SECRET reads $SUREFOOT_HMAC_SECRET; prefer "
                     "--sign hmac:KEY_ID:@FILE, which keeps the secret out of ps)")
    req.add_argument("--oauth2-token-url")
    req.add_argument("--client-id")
    req.add_argument("--client-secret", help="or $SUREFOOT_CLIENT_SECRET")
    req.add_argument("--oauth2-auth-method", choices=("basic", "post"), default="basic")
    req.add_argument("--scope")
    req.add_argument("--token-cache", metavar="PATH", help="persist the token in this file")
    req.add_argument("-v", "--verbose", action="store_true", help="attempts and waits on stderr")
    add_sign_options(req)

    demo = sub.add_parser("demo", help="walk through every flow against the embedded sandbox")
    demo.add_argument("--quiet", action="store_true", help="only the summary")

    sub.add_parser("sandbox", help="run the sandbox API (see `surefoot sandbox --help`)",
                   add_help=False)
    return parser


def _read_data(value: str | None) -> bytes | None:
    if value is None:
        return None
    if value == "@-":
        return sys.stdin.buffer.read()
    if value.startswith("@"):
        try:
            with open(value[1:], "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise _Usage(f"cannot read {value[1:]}: {exc.strerror}") from exc
    return value.encode()


def _auth_from(args: argparse.Namespace, hook: Any) -> Any:
    from surefoot.oauth._auth import BearerAuth
    from surefoot.signing._auth import SigningAuth
    from surefoot.stores._file import FileTokenStore

    chosen = [name for name, given in (("--hmac", args.hmac), ("--sign", args.sign),
                                       ("--oauth2-token-url", args.oauth2_token_url)) if given]
    if len(chosen) > 1:
        raise _Usage(f"use one of {', '.join(chosen)}, not several")
    if args.token_cache and not args.oauth2_token_url:
        raise _Usage("--token-cache needs --oauth2-token-url")
    if args.sign:
        return sign_auth(args)
    check_companions(args, None)
    if args.hmac:
        key_id, secret = _pair(args.hmac, "--hmac")
        secret = secret or os.environ.get("SUREFOOT_HMAC_SECRET", "")
        if not secret:
            raise _Usage("--hmac needs a secret (KEY_ID:SECRET or $SUREFOOT_HMAC_SECRET)")
        return SigningAuth.hmac(key_id, secret)
    if args.oauth2_token_url:
        client_secret: str = args.client_secret or os.environ.get("SUREFOOT_CLIENT_SECRET", "")
        if not args.client_id or not client_secret:
            raise _Usage("--oauth2-token-url needs --client-id and --client-secret")
        _check_url(args.oauth2_token_url, "--oauth2-token-url")
        if args.token_cache:
            _check_token_cache(args.token_cache)
        store = FileTokenStore(args.token_cache) if args.token_cache else None
        return BearerAuth.client_credentials(
            args.oauth2_token_url,
            args.client_id,
            client_secret,
            auth_method="client_secret_post"
            if args.oauth2_auth_method == "post"
            else "client_secret_basic",
            scope=args.scope,
            store=store,
            hook=hook,
        )
    return None


def _request(args: argparse.Namespace) -> int:
    import requests

    from surefoot._core._policy import RetryPolicy
    from surefoot.requests import Client

    _check_method(args.method)
    _check_url(args.url, "URL")
    if args.retries < 0:
        raise _Usage("--retries must be >= 0")
    _check_seconds(args.deadline, "--deadline")
    _check_seconds(args.timeout, "--timeout")
    _check_seconds(args.retry_after_cap, "--retry-after-cap", zero=True)
    headers = _headers_from(args.header)
    idempotency: dict[str, Any] = {}
    if args.idempotency_key == "auto":
        idempotency["idempotency_keys"] = "auto"
    elif args.idempotency_key:
        _check_header_value(args.idempotency_key, "--idempotency-key")
        headers["Idempotency-Key"] = args.idempotency_key
    hook = StderrHook() if args.verbose else (lambda event: None)
    try:
        policy = RetryPolicy(
            max_attempts=args.retries + 1,
            deadline=args.deadline,
            retry_after_cap=args.retry_after_cap,
            **idempotency,
        )
        auth = _auth_from(args, hook)
    except ValueError as exc:
        raise _Usage(str(exc)) from exc
    if args.verbose and auth is not None and args.sign:
        print(describe(auth), file=sys.stderr, flush=True)
    body = _read_data(args.data)
    with Client(args.url, auth=auth, retry=policy, hook=hook, timeout=args.timeout) as client:
        try:
            response = client.request(args.method, args.url, headers=headers, data=body)
        except AuthError:
            raise  # an auth failure (see _failed), even a final 401 (Unauthorized)
        except RequestFailed as exc:
            if not isinstance(exc.response, requests.Response):
                raise  # no response: a transport failure (see _failed)
            _say(f"surefoot: {exc}")
            sys.stdout.buffer.write(exc.response.content)
            return EXIT_HTTP
    if args.verbose:
        print(f"< HTTP {response.status_code} {response.reason}", file=sys.stderr)
    sys.stdout.buffer.write(response.content)
    sys.stdout.buffer.flush()
    if 200 <= response.status_code < 300:
        return EXIT_OK
    _say(_http_error_line(response))
    return EXIT_HTTP


def _http_error_line(response: Any) -> str:
    """``surefoot: HTTP 503 Service Unavailable after 4 attempts (gave up: ...)``: the one
    line for a final response that is not 2xx."""
    from surefoot._core._history import history_of

    history = history_of(response)
    line = f"surefoot: HTTP {response.status_code}"
    if response.reason:
        line += f" {response.reason}"
    n = len(history)
    line += f" after {n} attempt{'s' * (n != 1)}"
    decision = history[-1].decision if history else ""
    if decision and decision != "done":
        line += f" ({decision})"
    return line


def _say(text: str) -> None:
    """One line on stderr, whatever line breaks ``text`` holds."""
    print(" ".join(text.split()), file=sys.stderr, flush=True)


def _failed(exc: Exception, prog: str) -> int:
    """One line on stderr for the exception that ended a command, and its exit code: the
    documented code for each branch of surefoot's error tree, ``EXIT_INTERNAL`` for
    anything else (a bug; a one-line message rather than a traceback)."""
    if isinstance(exc, (_Usage, ConfigurationError)):
        _say(f"{prog}: error: {exc}")
        return EXIT_USAGE
    if isinstance(exc, StoreError):  # the --token-cache file, a local configuration
        _say(f"{prog}: error: token cache: {exc}")
        return EXIT_USAGE
    if isinstance(exc, AuthError):  # TokenError, Unauthorized, SigningError
        _say(f"{prog}: auth failed: {exc}")
        return EXIT_AUTH
    if isinstance(exc, SurefootError):  # RequestFailed without a response
        _say(f"{prog}: {exc}")
        return EXIT_TRANSPORT
    _say(f"{prog}: internal error: {type(exc).__name__}: {exc} (a bug in surefoot: please "
         "report it)")
    return EXIT_INTERNAL


def _sandbox(argv: list[str]) -> int:
    from surefoot.sandbox._cli import main as sandbox_main

    try:  # (the sandbox's own main checks its options: exit 2, one line)
        return sandbox_main(argv)
    except Exception as exc:
        return _failed(exc, "surefoot sandbox")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["sandbox"]:
        return _sandbox(arguments[1:])
    parser = _build_parser()
    args = parser.parse_args(arguments)
    try:
        if args.command in ("request", "demo"):  # both send with requests
            require("requests", extra="cli", what=f"surefoot {args.command}")
        if args.command == "request":
            return _request(args)
        if args.command == "demo":
            from surefoot.cli._demo import run_demo

            return run_demo(quiet=args.quiet)
    except Exception as exc:
        return _failed(exc, "surefoot")
    parser.print_help()
    return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
