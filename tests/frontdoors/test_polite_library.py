"""A polite library: wrong configuration fails when the client is built, naming what is
expected; the obvious forms are accepted; a missing extra names its pip install; nothing
is printed unless the application configures logging; errors say what happened where."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import textwrap

import pytest

import surefoot
from adapters import KINDS, Api
from surefoot import BasicAuth, BearerAuth, ConfigurationError, RetryPolicy
from surefoot.errors import DeadlineExceeded, MissingExtra, TokenEndpointError


def _client(kind: str, base_url: str, **kwargs: object) -> object:
    if kind == "requests":
        return surefoot.Client(base_url, **kwargs)
    if kind == "httpx_sync":
        return surefoot.httpx.Client(base_url, **kwargs)
    return surefoot.httpx.AsyncClient(base_url, **kwargs)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"retry": 3}, r"retry must be a surefoot.RetryPolicy or None, not int \(for 3 "
                       r"attempts: RetryPolicy\(max_attempts=3\)\)"),
        ({"retry": {"max_attempts": 3}}, "retry must be a surefoot.RetryPolicy or None, not dict"),
        ({"auth": object()}, "auth must be a surefoot auth object .* not object$"),
        ({"auth": ("user",)}, r"an auth tuple must be \(user name, password\)"),
        ({"auth": ("user", 1)}, r"an auth tuple must be \(user name, password\)"),
        ({"hook": 5}, "hook must be a callable taking a surefoot.Event"),
        ({"pacing": "on"}, "pacing must be a surefoot.PacingPolicy, a surefoot.Pacer or None"),
    ],
)
def test_wrong_options_fail_when_the_client_is_built(kind, options, expected):
    with pytest.raises(ConfigurationError, match=expected):
        _client(kind, "http://api.example.test", **options)


def test_an_http_library_auth_object_is_refused_with_a_hint():
    import requests.auth

    with pytest.raises(ConfigurationError, match="requests.auth.HTTPBasicAuth.*instead"):
        surefoot.Client("http://api.example.test", auth=requests.auth.HTTPBasicAuth("u", "p"))


@pytest.mark.parametrize("kind", KINDS)
def test_a_user_password_tuple_is_basic_auth(kind, sandbox):
    api = Api(kind, sandbox.url, auth=("alice", "s3cr3t:ü"))
    try:
        sent = api.get("/headers").json()["headers"]["Authorization"]
    finally:
        api.close()
    assert sent == "Basic " + base64.b64encode("alice:s3cr3t:ü".encode("latin-1")).decode()


def test_basic_auth_repr_and_checks():
    assert "s3cr3t" not in repr(BasicAuth("alice", "s3cr3t"))
    with pytest.raises(ConfigurationError, match="cannot contain ':'"):
        BasicAuth("a:b", "pw")
    with pytest.raises(ConfigurationError):
        BasicAuth("alice", None)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
def test_a_static_token_string_is_a_bearer_token(kind, sandbox):
    api = Api(kind, sandbox.url, auth=BearerAuth("static-token-123"))
    try:
        sent = api.get("/headers").json()["headers"]["Authorization"]
    finally:
        api.close()
    assert sent == "Bearer static-token-123"
    assert "static-token-123" not in repr(BearerAuth("static-token-123").cache)


@pytest.mark.parametrize("source", [42, None, b"bytes-token"])
def test_a_token_source_of_the_wrong_type_fails_at_once(source):
    with pytest.raises(ConfigurationError, match="the token source must be a token"):
        BearerAuth(source)  # type: ignore[arg-type]


@pytest.mark.parametrize("token", ["", " padded ", "two\nlines"])
def test_a_static_token_must_be_a_plain_string(token):
    with pytest.raises(ConfigurationError, match="a static token must be"):
        BearerAuth(token)


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("blocked", "access", "extra"),
    [
        ("requests", "surefoot.Client('http://x.test')", "requests"),
        ("httpx", "surefoot.httpx.Client('http://x.test')", "httpx"),
        ("redis", "surefoot.stores.RedisStore('redis://127.0.0.1:1')", "redis"),
        ("cryptography",
         "surefoot.signing.SignatureKey('ed25519', b'x' * 32, key_id='k')", "signing"),
    ],
)
def test_a_missing_extra_names_its_pip_install(blocked, access, extra):
    result = run_python(f"""
        import sys
        sys.modules[{blocked!r}] = None
        import surefoot
        try:
            {access}
        except ImportError as exc:
            from surefoot.errors import MissingExtra
            assert isinstance(exc, MissingExtra), type(exc)
            print(exc.extra, exc)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{extra} ")
    assert f"pip install 'surefoot[{extra}]'" in result.stdout


def test_a_missing_extra_is_a_short_traceback():
    result = run_python("""
        import sys
        sys.modules['requests'] = None
        import surefoot
        surefoot.Client('http://x.test')
    """)
    # without the lines of ^ and ~ under a frame's source (Python 3.11+; from 3.13 on, the
    # -c code's own line is shown, and marked, too)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip(" ^~")]
    assert lines[-1] == ("surefoot.errors.MissingExtra: surefoot.requests (surefoot.Client) "
                         "needs requests, which is not installed: pip install "
                         "'surefoot[requests]'")
    assert len(lines) <= 6, result.stderr  # no import-machinery frames, no chained error


def test_missing_extra_is_a_configuration_error_and_an_import_error():
    error = MissingExtra("x", "pkg", "extra")
    assert isinstance(error, ConfigurationError)
    assert isinstance(error, ImportError)
    assert error.name == "pkg"
    assert error.extra == "extra"


def test_nothing_is_printed_unless_logging_is_configured(sandbox):
    code = f"""
        import surefoot
        from surefoot.testing import testing
        auth = surefoot.BearerAuth.client_credentials(
            {sandbox.url!r} + "/oauth/token", "demo-client", "wrong-secret")
        with testing():
            client = surefoot.Client({sandbox.url!r}, retry=surefoot.RetryPolicy(max_attempts=2))
            client.get("/status/503")          # gives up: a WARNING event
            try:
                surefoot.Client({sandbox.url!r}, auth=auth).get("/get")
            except surefoot.TokenError:
                pass                           # a failed first token: a WARNING event
        print("done")
    """
    quiet = run_python(code)
    assert quiet.returncode == 0, quiet.stderr
    assert (quiet.stdout, quiet.stderr) == ("done\n", "")
    logged = run_python("import logging; logging.basicConfig()\n" + textwrap.dedent(code))
    assert "gave_up GET" in logged.stderr
    failed = next(line for line in logged.stderr.splitlines() if "token_refresh_failed" in line)
    assert f"token_refresh_failed GET {sandbox.url}/get reason=first token: " in failed
    assert "expired" not in failed
    assert "wrong-secret" not in failed


def test_a_token_endpoint_error_names_the_endpoint_redacted(sandbox):
    auth = BearerAuth.client_credentials(sandbox.url + "/oauth/wrong?api_key=KEYSECRET",
                                         "demo-client", "demo-secret")
    with surefoot.Client(sandbox.url, auth=auth) as client, pytest.raises(
        TokenEndpointError
    ) as info:
        client.get("/get")
    message = str(info.value)
    assert f"(from {sandbox.url}/oauth/wrong?api_key=REDACTED)" in message
    assert "KEYSECRET" not in message
    assert "demo-secret" not in message


def test_a_deadline_error_says_what_used_the_deadline(sandbox):
    policy = RetryPolicy(max_attempts=10, deadline=1.0, attempt_timeout=0.3, backoff_initial=0.05,
                         backoff_max=0.05)
    with surefoot.Client(sandbox.url, retry=policy) as client, pytest.raises(
        DeadlineExceeded
    ) as info:
        client.get("/delay/2")
    message = str(info.value)
    history = info.value.history
    assert f"{len(history)} attempts took " in message
    # (the longest attempt is a 0.3 s read timeout; a loaded machine ends it later)
    assert re.search(r"\(the longest: #\d, read_timeout, \d\.\d{3} s\) and the waits "
                     r"\d\.\d{3} s$", message), message


@pytest.mark.parametrize("kind", KINDS)
def test_a_failing_hook_never_breaks_a_request(kind, sandbox, caplog):
    def broken(event: surefoot.Event) -> None:
        raise RuntimeError("instrument down")

    api = Api(kind, sandbox.url, hook=broken, auth=BearerAuth.client_credentials(
        sandbox.url + "/oauth/token", "demo-client", "demo-secret", hook=broken))
    try:
        assert api.get("/get").status_code == 200
    finally:
        api.close()
    assert "surefoot event hook" in caplog.text
    assert "instrument down" in caplog.text


def test_combined_hooks_build_only_the_events_some_hook_wants():
    from surefoot.events import EventKind, LoggingHook, combine_hooks

    class Only:
        def __init__(self, kind: EventKind) -> None:
            self.kind, self.seen = kind, []

        def wants(self, kind: EventKind) -> bool:
            return kind is self.kind

        def __call__(self, event: surefoot.Event) -> None:
            self.seen.append(event.kind)

    first, second = Only(EventKind.GAVE_UP), Only(EventKind.ATTEMPT_SENT)
    hook = combine_hooks([first, second])
    assert hook.wants(EventKind.GAVE_UP)
    assert not hook.wants(EventKind.RETRY_SCHEDULED)
    hook(surefoot.Event(EventKind.ATTEMPT_SENT))
    assert (first.seen, second.seen) == ([], [EventKind.ATTEMPT_SENT])
    everything = combine_hooks([first, lambda event: None])  # no wants(): wants all
    assert everything.wants(EventKind.RETRY_SCHEDULED)
    assert combine_hooks([LoggingHook()]).wants(EventKind.GAVE_UP)


def test_event_fields_are_the_set_ones():
    from surefoot.events import Event, EventKind

    assert Event(EventKind.ATTEMPT_SENT).fields() == {"request_id": 0}
    event = Event(EventKind.RETRY_SCHEDULED, "GET", "https://a.test/x", 1, 503, None, 0.0,
                  None, "backoff", 7, "a.test")
    assert event.fields() == {"method": "GET", "url": "https://a.test/x", "attempt": 1,
                              "status": 503, "wait": 0.0, "reason": "backoff",
                              "request_id": 7, "partition": "a.test"}
