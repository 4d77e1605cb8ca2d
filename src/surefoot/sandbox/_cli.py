"""``surefoot sandbox`` / ``python -m surefoot.sandbox``: serve the sandbox in the foreground."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from surefoot.errors import ConfigurationError
from surefoot.sandbox._app import SandboxConfig

__all__ = ["build_parser", "main"]


def _pair(text: str) -> tuple[str, str]:
    ident, sep, secret = text.partition(":")
    if not sep or not ident or not secret:
        raise argparse.ArgumentTypeError("expected ID:SECRET")
    return ident, secret


def build_parser(prog: str = "surefoot sandbox") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run the surefoot sandbox API (prints its base URL as the first line).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (0 picks a free port)")
    parser.add_argument("--rate", type=float, default=10.0, help="/limited quota per second")
    parser.add_argument("--burst", type=int, default=10, help="/limited burst size")
    parser.add_argument(
        "--quota-partition",
        choices=("credential", "global", "client"),
        default="credential",
        help="what shares one /limited quota: the API key or bearer client (credential, "
        "the default), every request (global), or each X-Client-Id header (client)",
    )
    parser.add_argument("--token-ttl", type=float, default=3600.0, help="access token lifetime")
    parser.add_argument("--skew", type=float, default=300.0, help="allowed signature skew, s")
    parser.add_argument("--seed", type=int, default=None, help="seed of fault randomness")
    parser.add_argument(
        "--client",
        metavar="ID:SECRET",
        type=_pair,
        action="append",
        help="OAuth2 client (repeatable; default demo-client:demo-secret)",
    )
    parser.add_argument(
        "--hmac-key",
        metavar="ID:SECRET",
        type=_pair,
        action="append",
        help="HMAC signing key (repeatable; default demo-key:demo-secret)",
    )
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; 0 on a clean stop, 1 if the server cannot start."""
    from surefoot.sandbox import serve

    args = build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        print("surefoot sandbox: error: --port must be 0 to 65535 (0 picks a free port)",
              file=sys.stderr)
        return 2
    options: dict[str, object] = {}
    if args.client:
        options["clients"] = dict(args.client)
    if args.hmac_key:
        options["hmac_keys"] = dict(args.hmac_key)
    try:
        config = SandboxConfig(
            rate=args.rate,
            burst=args.burst,
            quota_partition=args.quota_partition,
            token_ttl=args.token_ttl,
            skew=args.skew,
            seed=args.seed,
            verbose=args.verbose,
            **options,  # type: ignore[arg-type]
        )
    except ConfigurationError as exc:
        print(f"surefoot sandbox: {exc}", file=sys.stderr)
        return 2

    # Signals raise KeyboardInterrupt in the main thread (as Ctrl-C does): a handler that
    # set a threading.Event could deadlock on the Event's lock held by the waiting thread.
    def _on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _on_signal)

    def _ready(url: str) -> None:
        print(url, flush=True)
        if args.verbose:
            print(
                f"surefoot sandbox: clients {', '.join(config.clients)}; "
                f"hmac keys {', '.join(config.hmac_keys)}; Ctrl-C to stop",
                file=sys.stderr,
                flush=True,
            )

    try:
        serve(config, host=args.host, port=args.port, on_ready=_ready)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"surefoot sandbox: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
