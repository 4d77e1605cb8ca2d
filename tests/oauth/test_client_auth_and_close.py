"""Client authentication with awkward credentials, and ``revoke_on_close`` on the clients.

* ``client_secret_basic`` percent-encodes the client id and secret (a space is ``%20``,
  never ``+``) before Base64, so servers that decode with ``unquote`` (authlib) and with
  ``unquote_plus`` (the sandbox, RFC 6749 §2.3.1 to the letter) read the same credentials.
* Closing ``surefoot.Client``, ``surefoot.httpx.Client`` or ``surefoot.httpx.AsyncClient``
  whose auth was built with ``revoke_on_close=True`` revokes the token (RFC 7009), once,
  best-effort and within a short timeout.

Against real servers: authlib's authorization server (``tests/_oauth_server.py``) and the
sandbox.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, unquote_plus

import httpx
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

import surefoot
import surefoot.httpx
from _oauth_server import BASIC_SECRET, Client, OAuthServer
from surefoot import BearerAuth, ConfigurationError
from surefoot._adapters import _client
from surefoot.oauth import ClientSecretBasic, TokenCache
from surefoot.sandbox import Sandbox

#: A client id and secret with everything Basic auth must survive: a space, ``+``, ``:``,
#: ``%``, ``/``, ``=``, ``&`` and non-ASCII.
AWKWARD_ID = "my client+:%é/1"
AWKWARD_SECRET = "s3 cr+t:%20 é&=/~"


def quiet(event: object) -> None:
    pass


def encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def basic_pair(auth: ClientSecretBasic) -> str:
    headers: dict[str, str] = {}
    auth.apply([], headers, token_url="https://as.example/token", now=0.0)
    scheme, _, encoded = headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(encoded, validate=True).decode("ascii")


# -- client_secret_basic encoding ---------------------------------------------------------


def test_basic_header_percent_encodes_a_space_as_20_not_plus() -> None:
    pair = basic_pair(ClientSecretBasic("a b+c", "p w+:%é"))
    assert pair == "a%20b%2Bc:p%20w%2B%3A%25%C3%A9"
    assert "+" not in pair


@given(client_id=st.text(min_size=1), secret=st.text(min_size=1))
def test_basic_pair_decodes_the_same_with_unquote_and_unquote_plus(
    client_id: str, secret: str
) -> None:
    try:
        auth = ClientSecretBasic(client_id, secret)
    except ConfigurationError:  # a lone surrogate cannot be sent at all: refused when built
        assert not (encodable(client_id) and encodable(secret))
        return
    pair = basic_pair(auth)
    raw_id, sep, raw_secret = pair.partition(":")
    assert sep == ":"
    for decode in (unquote, unquote_plus):
        assert (decode(raw_id), decode(raw_secret)) == (client_id, secret)


@pytest.fixture
def awkward_server(oauth_server: OAuthServer) -> OAuthServer:
    """The authlib server, with a ``client_secret_basic`` client whose id and secret need
    encoding, and one whose secret is ``a b`` (to show ``a+b`` is refused)."""
    oauth_server.add_client(Client(AWKWARD_ID, AWKWARD_SECRET, "client_secret_basic"))
    oauth_server.add_client(Client("spaced", "a b", "client_secret_basic"))
    return oauth_server


def test_authlib_server_accepts_basic_credentials_with_space_plus_colon_percent_unicode(
    awkward_server: OAuthServer,
) -> None:
    auth = BearerAuth.client_credentials(
        awkward_server.token_url, AWKWARD_ID, AWKWARD_SECRET,
        revocation_url=awkward_server.revocation_url, hook=quiet,
    )
    token = auth.cache.get()
    record = awkward_server.by_access[token.access_token]
    assert record.client_id == AWKWARD_ID
    assert [(e["path"], e["auth_method"], e["client_id"], e["status"])
            for e in awkward_server.log] == [
        ("/oauth/token", "client_secret_basic", AWKWARD_ID, 200)]
    # the revocation endpoint authenticates the client the same way
    assert auth.cache.revoke() is True
    assert record.access_revoked
    assert awkward_server.log[-1]["status"] == 200
    assert awkward_server.log[-1]["client_id"] == AWKWARD_ID


def test_authlib_server_tells_a_space_from_a_plus(awkward_server: OAuthServer) -> None:
    assert BearerAuth.client_credentials(
        awkward_server.token_url, "spaced", "a b", hook=quiet).cache.get()
    with pytest.raises(surefoot.errors.InvalidClient):
        BearerAuth.client_credentials(
            awkward_server.token_url, "spaced", "a+b", hook=quiet).cache.get()


def test_sandbox_accepts_the_same_awkward_basic_credentials() -> None:
    """The sandbox decodes with ``unquote_plus``: the same header works there too."""
    with Sandbox(clients={AWKWARD_ID: AWKWARD_SECRET}) as sandbox:
        auth = BearerAuth.client_credentials(sandbox.url + "/oauth/token", AWKWARD_ID,
                                             AWKWARD_SECRET, hook=quiet)
        with surefoot.Client(sandbox.url, auth=auth) as api:
            assert api.get("/protected").json()["client_id"] == AWKWARD_ID


# -- revoke_on_close on the clients -------------------------------------------------------


STACKS = ["requests", "httpx", "httpx-async"]


def use_and_close_twice(stack: str, url: str, auth: BearerAuth) -> int:
    """A request through the ``stack``'s client, then close it twice; the status."""
    if stack == "requests":
        api = surefoot.Client(url, auth=auth)
        status = api.get("/protected").status_code
        api.close()
        api.close()
        return status
    if stack == "httpx":
        with surefoot.httpx.Client(url, auth=auth) as hapi:
            status = hapi.get("/protected").status_code
        hapi.close()
        return status

    async def main() -> int:
        async with surefoot.httpx.AsyncClient(url, auth=auth) as aapi:
            answer = await aapi.get("/protected")
        await aapi.aclose()
        return answer.status_code

    return asyncio.run(main())


def accepted(url: str, access_token: str) -> bool:
    answer = requests.get(url + "/protected", timeout=5,
                          headers={"Authorization": f"Bearer {access_token}"})
    return answer.status_code == 200


@pytest.mark.parametrize("stack", STACKS)
def test_closing_the_client_revokes_the_token_once(
    oauth_server: OAuthServer, stack: str
) -> None:
    auth = BearerAuth.client_credentials(
        oauth_server.token_url, "basic-client", BASIC_SECRET,
        revocation_url=oauth_server.revocation_url, hook=quiet, revoke_on_close=True,
    )
    assert use_and_close_twice(stack, oauth_server.url, auth) == 200
    [access] = oauth_server.by_access
    assert oauth_server.by_access[access].access_revoked
    assert oauth_server.counts["requests:revoke"] == 1
    assert oauth_server.counts["revocations"] == 1
    assert oauth_server.revoked == [("access_token", "basic-client")]
    assert not accepted(oauth_server.url, access)
    assert auth.cache.peek() is None


@pytest.mark.parametrize("stack", STACKS)
def test_closing_the_client_revokes_nothing_without_revoke_on_close(
    oauth_server: OAuthServer, stack: str
) -> None:
    auth = BearerAuth.client_credentials(
        oauth_server.token_url, "basic-client", BASIC_SECRET,
        revocation_url=oauth_server.revocation_url, hook=quiet,
    )
    assert use_and_close_twice(stack, oauth_server.url, auth) == 200
    assert oauth_server.counts["requests:revoke"] == 0
    [access] = oauth_server.by_access
    assert accepted(oauth_server.url, access)
    assert auth.cache.peek() is not None


def test_closing_the_client_revokes_the_refresh_grant(oauth_server: OAuthServer) -> None:
    issued = oauth_server.issue("basic-client")
    auth = BearerAuth.refresh_token(
        oauth_server.token_url, "basic-client", BASIC_SECRET,
        refresh_token=issued["refresh_token"], revocation_url=oauth_server.revocation_url,
        hook=quiet, revoke_on_close=True,
    )
    with surefoot.httpx.Client(oauth_server.url, auth=auth) as api:
        assert api.get("/protected").status_code == 200
        token = auth.cache.peek()
    assert token is not None
    assert [hint for hint, _ in oauth_server.revoked] == ["refresh_token", "access_token"]
    record = oauth_server.by_access[token.access_token]
    assert record.access_revoked
    assert record.refresh_revoked


def test_closing_the_client_revokes_at_the_sandbox(sandbox: Sandbox) -> None:
    auth = BearerAuth.client_credentials(
        sandbox.url + "/oauth/token", "demo-client", "demo-secret",
        revocation_url=sandbox.url + "/oauth/revoke", hook=quiet, revoke_on_close=True,
    )
    with surefoot.Client(sandbox.url, auth=auth) as api:
        assert api.get("/protected").status_code == 200
        token = auth.cache.peek()
    assert token is not None
    assert sandbox.stats()["revocations"] == 1
    assert not accepted(sandbox.url, token.access_token)


def test_closing_an_unused_client_sends_nothing(oauth_server: OAuthServer) -> None:
    auth = BearerAuth.client_credentials(
        oauth_server.token_url, "basic-client", BASIC_SECRET,
        revocation_url=oauth_server.revocation_url, hook=quiet, revoke_on_close=True,
    )
    surefoot.Client(oauth_server.url, auth=auth).close()
    assert oauth_server.log == []


def test_revoke_on_close_needs_a_revocation_url() -> None:
    """Asked for, but impossible: refused when built, not skipped silently at close."""
    with pytest.raises(ConfigurationError, match="revocation_url"):
        BearerAuth.client_credentials("https://as.example/token", "id", "secret",
                                      revoke_on_close=True)
    with pytest.raises(ConfigurationError, match="revocation_url"):
        TokenCache(lambda: "a-token", revoke_on_close=True)


# -- best-effort and bounded ----------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def _revoking_auth(server: OAuthServer, revocation_url: str) -> BearerAuth:
    # the default hook: its events are logged too, and must not show the token either
    return BearerAuth.client_credentials(
        server.token_url, "basic-client", BASIC_SECRET,
        revocation_url=revocation_url, revoke_on_close=True,
    )


def _assert_failure_logged(caplog: pytest.LogCaptureFixture, token: Any) -> None:
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING
                and "revoking the token on close failed" in r.getMessage()]
    assert warnings, caplog.text
    assert token.access_token not in caplog.text
    assert BASIC_SECRET not in caplog.text


@pytest.mark.parametrize("stack", STACKS)
def test_a_failed_revocation_is_logged_not_raised(
    oauth_server: OAuthServer, closed_port: int, stack: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="surefoot")
    auth = _revoking_auth(oauth_server, f"http://127.0.0.1:{closed_port}/oauth/revoke")
    assert use_and_close_twice(stack, oauth_server.url, auth) == 200
    token = auth.cache.peek()
    assert token is not None  # not revoked: kept
    _assert_failure_logged(caplog, token)
    # the second close tries nothing
    assert sum("revoking the token on close" in r.getMessage() for r in caplog.records) == 1
    assert sum(r.getMessage().startswith("attempt_sent POST") and "/oauth/revoke" in
               r.getMessage() for r in caplog.records) == 3  # one close's attempts


def test_a_refused_revocation_is_logged_not_raised(
    oauth_server: OAuthServer, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="surefoot")
    auth = BearerAuth.client_credentials(
        oauth_server.token_url, "basic-client", BASIC_SECRET,
        revocation_url=oauth_server.url + "/nowhere", revoke_on_close=True,
    )
    with surefoot.Client(oauth_server.url, auth=auth) as api:
        assert api.get("/protected").status_code == 200
    token = auth.cache.peek()
    assert token is not None
    _assert_failure_logged(caplog, token)


def test_revocation_on_close_is_bounded_by_a_short_timeout(
    oauth_server: OAuthServer, silent_port: int, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert 0 < _client.REVOKE_ON_CLOSE_TIMEOUT <= 10
    monkeypatch.setattr(_client, "REVOKE_ON_CLOSE_TIMEOUT", 0.5)
    caplog.set_level(logging.DEBUG, logger="surefoot")
    auth = _revoking_auth(oauth_server, f"http://127.0.0.1:{silent_port}/oauth/revoke")
    api = surefoot.Client(oauth_server.url, auth=auth)
    assert api.get("/protected").status_code == 200
    started = time.monotonic()
    api.close()
    assert time.monotonic() - started < 3.0
    token = auth.cache.peek()
    assert token is not None
    _assert_failure_logged(caplog, token)


def test_async_close_does_not_block_the_event_loop(
    oauth_server: OAuthServer, silent_port: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_client, "REVOKE_ON_CLOSE_TIMEOUT", 0.5)
    auth = _revoking_auth(oauth_server, f"http://127.0.0.1:{silent_port}/oauth/revoke")
    auth.cache.hook = quiet

    async def main() -> int:
        ticks = 0
        stop = False

        async def ticker() -> None:
            nonlocal ticks
            while not stop:
                ticks += 1
                await asyncio.sleep(0.01)

        api = surefoot.httpx.AsyncClient(oauth_server.url, auth=auth)
        assert (await api.get("/protected")).status_code == 200
        task = asyncio.create_task(ticker())
        await api.aclose()
        stop = True
        await task
        return ticks

    assert asyncio.run(main()) >= 10


def test_the_http_client_is_closed_even_when_revocation_fails(
    oauth_server: OAuthServer, closed_port: int,
) -> None:
    auth = _revoking_auth(oauth_server, f"http://127.0.0.1:{closed_port}/oauth/revoke")
    auth.cache.hook = quiet
    with surefoot.httpx.Client(oauth_server.url, auth=auth) as api:
        api.get("/protected")
    with pytest.raises(RuntimeError):
        api.http.get(oauth_server.url + "/protected")
    assert isinstance(api.http, httpx.Client)
