"""Full OAuth2 client flows: the refresh-token grant with rotation, client authentication
(client_secret_basic, client_secret_post, private_key_jwt), extra parameters kept on
every refresh, typed ``invalid_grant`` and RFC 7009 revocation.

Most tests run against a real, independently written authorization server (authlib's,
``tests/_oauth_server.py``) and assert on that server's own record of what it received;
the rest against the sandbox, and a few sans-I/O unit tests.
"""

from __future__ import annotations

import base64
import functools
import json
import multiprocessing
import os
import threading
import time
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

import surefoot
from _oauth_server import BASIC_SECRET, POST_SECRET, OAuthServer
from surefoot import BearerAuth, ConfigurationError, TokenError
from surefoot.errors import InvalidGrant
from surefoot.oauth import (
    ClientCredentials,
    ClientSecretPost,
    HttpRequest,
    HttpResponse,
    PrivateKeyJwt,
    PublicClient,
    RefreshTokenGrant,
    Token,
    TokenCache,
)
from surefoot.sandbox import Sandbox
from surefoot.stores import MemoryTokenStore

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def quiet(event: object) -> None:
    pass


def form_of(request: HttpRequest) -> dict[str, list[str]]:
    return parse_qs(request.body.decode(), keep_blank_values=True)


def expired(token: dict[str, Any], *, version: int = 1) -> Token:
    """The server's token, stored as it would be after its access token expired."""
    now = time.time()
    return Token(
        access_token=token["access_token"],
        refresh_token=token["refresh_token"],
        expires_at=now - 60,
        obtained_at=now - 3660,
        scope=token.get("scope"),
        version=version,
    )


def refreshes(server: OAuthServer) -> list[dict[str, Any]]:
    return [e for e in server.log if e["grant_type"] == "refresh_token"]


# -- sans-I/O: the grants and client authentication -------------------------------------------


def test_refresh_grant_sends_the_current_refresh_token_and_keeps_parameters() -> None:
    grant = RefreshTokenGrant(
        token_url="https://as.example/token", client_id="cid", client_secret="s3cret-value",
        refresh_token="rt-initial", scope="read",
        extra={"audience": "api", "resource": ["https://r1", "https://r2"]},
    )
    first = form_of(grant.build_request(None))
    assert first == {
        "grant_type": ["refresh_token"], "refresh_token": ["rt-initial"], "scope": ["read"],
        "audience": ["api"], "resource": ["https://r1", "https://r2"],
    }
    current = Token(access_token="at", refresh_token="rt-rotated", version=3)
    second = form_of(grant.build_request(current))
    assert second["refresh_token"] == ["rt-rotated"]
    assert {k: v for k, v in second.items() if k != "refresh_token"} == {
        k: v for k, v in first.items() if k != "refresh_token"
    }
    assert "rt-initial" not in repr(grant)
    assert "s3cret-value" not in repr(grant)


def test_refresh_grant_parse_keeps_the_old_refresh_token_when_not_rotated() -> None:
    grant = RefreshTokenGrant(token_url="https://as.example/token", client_id="cid",
                              client_secret="sec", refresh_token="rt-0", scope="read")
    current = Token(access_token="old", refresh_token="rt-1", scope="read write")
    body = json.dumps({"access_token": "new", "token_type": "Bearer", "expires_in": 60})
    token = grant.parse_response(HttpResponse(200, {}, body.encode()), now=1000.0,
                                 current=current)
    assert token.refresh_token == "rt-1"
    assert token.scope == "read"
    rotated = json.dumps({"access_token": "new", "token_type": "Bearer",
                          "refresh_token": "rt-2", "scope": "read"})
    assert grant.parse_response(HttpResponse(200, {}, rotated.encode()), now=1000.0,
                                current=current).refresh_token == "rt-2"


def test_refresh_grant_cache_key_and_configuration() -> None:
    a = RefreshTokenGrant(token_url="https://as/t", client_id="c", client_secret="s",
                          refresh_token="user-a")
    b = RefreshTokenGrant(token_url="https://as/t", client_id="c", client_secret="s",
                          refresh_token="user-b")
    assert a.cache_key != b.cache_key  # two users' grants never share a store entry
    assert a.cache_key == RefreshTokenGrant(token_url="https://as/t", client_id="c",
                                            client_secret="s", refresh_token="user-a").cache_key
    assert "user-a" not in a.cache_key
    with pytest.raises(TokenError):
        RefreshTokenGrant(token_url="https://as/t", client_id="c",
                          client_secret="s").build_request(None)
    for bad in (
        {"client_secret": ""},
        {"auth_method": "private_key_jwt"},
        {"auth_method": "none"},  # with a secret
        {"extra": {"grant_type": "password"}},
        {"extra": {"refresh_token": "x"}},
        {"refresh_token": "a\nb"},
        {"token_url": "ftp://as/t"},
        {"revocation_url": "/revoke"},
    ):
        kwargs: dict[str, Any] = {"token_url": "https://as/t", "client_id": "c",
                                  "client_secret": "s", **bad}
        with pytest.raises(ConfigurationError):
            RefreshTokenGrant(**kwargs)
    public = RefreshTokenGrant(token_url="https://as/t", client_id="app", auth_method="none",
                               refresh_token="rt")
    assert isinstance(public.client_auth, PublicClient)
    assert form_of(public.build_request(None))["client_id"] == ["app"]
    assert "Authorization" not in public.build_request(None).headers


def test_client_secret_basic_is_form_urlencoded_first() -> None:
    request = ClientCredentials(token_url="https://as/t", client_id="id:1",
                                client_secret="a:b%c&d+e").build_request()
    encoded = request.headers["Authorization"].removeprefix("Basic ")
    assert base64.b64decode(encoded) == b"id%3A1:a%3Ab%25c%26d%2Be"
    post = ClientCredentials(token_url="https://as/t", client_id="id",
                             client_secret="x", auth_method="client_secret_post")
    assert isinstance(post.client_auth, ClientSecretPost)
    assert form_of(post.build_request())["client_secret"] == ["x"]


def _public_jwk(key: Any) -> Any:
    from cryptography.hazmat.primitives import serialization

    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    for kind in (RSAKey, ECKey, OKPKey):
        try:
            return kind.import_key(pem)
        except Exception:  # noqa: BLE001 - try the next key type
            continue
    raise AssertionError("unknown key type")


@functools.cache
def keys() -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "RS256": rsa_key,
        "PS256": rsa_key,
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "ES384": ec.generate_private_key(ec.SECP384R1()),
        "EdDSA": ed25519.Ed25519PrivateKey.generate(),
        "Ed25519": ed25519.Ed25519PrivateKey.generate(),
    }


ALGS = ["RS256", "PS256", "ES256", "ES384", "EdDSA", "Ed25519"]


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
@pytest.mark.parametrize("alg", ALGS)
def test_private_key_jwt_assertion_verifies_with_joserfc(alg: str) -> None:
    key = keys()[alg]
    explicit = alg in ("PS256", "Ed25519")
    auth = PrivateKeyJwt("my-client", key, alg=alg if explicit else None, key_id="k1")
    assert auth.alg == alg
    now = time.time()
    assertion = auth.assertion(token_url="https://as.example/token", now=now)
    decoded = jwt.decode(assertion, _public_jwk(key), algorithms=[alg])
    assert decoded.header == {"alg": alg, "typ": "JWT", "kid": "k1"}
    claims = decoded.claims
    assert claims["iss"] == claims["sub"] == "my-client"
    assert claims["aud"] == "https://as.example/token"
    assert claims["iat"] == int(now)
    assert 0 < claims["exp"] - claims["iat"] <= 60
    assert len(claims["jti"]) >= 20
    other = jwt.decode(auth.assertion(token_url="https://as.example/token", now=now),
                       _public_jwk(key), algorithms=[alg])
    assert other.claims["jti"] != claims["jti"]  # never replayed


def test_private_key_jwt_configuration() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = keys()["ES256"].private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
    auth = PrivateKeyJwt("c", pem.decode(), audience="https://as.example")
    assert auth.alg == "ES256"
    assert "PRIVATE" not in repr(auth)
    request = ClientCredentials(token_url="https://as.example/token",
                                client_auth=auth).build_request(now=time.time())
    form = form_of(request)
    assert form["client_assertion_type"] == [ASSERTION_TYPE]
    assert form["client_id"] == ["c"]
    assert "Authorization" not in request.headers
    claims = jwt.decode(form["client_assertion"][0], _public_jwk(keys()["ES256"]),
                        algorithms=["ES256"]).claims
    assert claims["aud"] == "https://as.example"
    with pytest.raises(ConfigurationError):
        PrivateKeyJwt("c", keys()["ES256"], alg="RS256")
    with pytest.raises(ConfigurationError):
        PrivateKeyJwt("c", keys()["RS256"], alg="EdDSA")
    with pytest.raises(ConfigurationError):
        PrivateKeyJwt("c", b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigurationError):
        PrivateKeyJwt("c", rsa.generate_private_key(public_exponent=65537, key_size=1024))
    with pytest.raises(ConfigurationError):
        ClientCredentials(token_url="https://as/t", client_secret="s", client_auth=auth)
    with pytest.raises(ConfigurationError):
        ClientCredentials(token_url="https://as/t", client_id="other", client_auth=auth)


class ScriptedSender:
    def __init__(self, *answers: HttpResponse) -> None:
        self.answers = list(answers)
        self.requests: list[HttpRequest] = []

    def __call__(self, request: HttpRequest, timeout: float | None) -> HttpResponse:
        self.requests.append(request)
        return self.answers.pop(0)


def _answer(status: int, body: dict[str, Any]) -> HttpResponse:
    return HttpResponse(status, {}, json.dumps(body).encode())


def test_each_attempt_gets_a_fresh_assertion() -> None:
    sender = ScriptedSender(
        _answer(503, {}), _answer(200, {"access_token": "ok", "expires_in": 60}),
    )
    grant = ClientCredentials(token_url="https://as/t",
                              client_auth=PrivateKeyJwt("c", keys()["EdDSA"]))
    cache = TokenCache(grant, sender=sender, hook=quiet,
                       fetch_policy=surefoot.RetryPolicy(max_attempts=3, backoff_initial=0.01,
                                                         backoff_max=0.01))
    assert cache.get().access_token == "ok"
    assertions = [form_of(r)["client_assertion"][0] for r in sender.requests]
    assert len(assertions) == 2
    assert assertions[0] != assertions[1]


def test_revocation_outcomes() -> None:
    grant = RefreshTokenGrant(token_url="https://as/t", client_id="c", client_secret="s",
                              refresh_token="rt-0", revocation_url="https://as/revoke")
    token = Token(access_token="at-1", refresh_token="rt-1", expires_at=time.time() + 600,
                  obtained_at=time.time(), version=1)
    # the server cannot revoke access tokens: fine, the grant is revoked
    store = MemoryTokenStore()
    store.save(grant.cache_key, token)
    sender = ScriptedSender(_answer(200, {}), _answer(400, {"error": "unsupported_token_type"}))
    cache = TokenCache(grant, store=store, sender=sender, hook=quiet)
    assert cache.revoke() is True
    assert [form_of(r)["token_type_hint"] for r in sender.requests] == [
        ["refresh_token"], ["access_token"]]
    assert all(r.url == "https://as/revoke" for r in sender.requests)
    assert store.load(grant.cache_key) is None
    # the server refuses to revoke the refresh token: typed, and the token stays
    store.save(grant.cache_key, token)
    token = store.load(grant.cache_key)  # at the version the deletion left (2, not 1)
    assert token is not None
    assert token.version == 2
    sender = ScriptedSender(_answer(401, {"error": "invalid_client"}))
    cache = TokenCache(grant, store=store, sender=sender, hook=quiet)
    with pytest.raises(surefoot.errors.InvalidClient):
        cache.close(revoke=True)
    assert store.load(grant.cache_key) == token
    cache.close()  # revoke_on_close is off: nothing sent
    assert len(sender.requests) == 1


def test_invalid_grant_while_another_holder_rotates_is_not_an_error() -> None:
    """Our lease was taken over (it ran out): the server rejects our stale refresh token,
    and the other holder's token is not stored yet. We wait for it instead of failing."""
    store = MemoryTokenStore()
    grant = RefreshTokenGrant(token_url="https://as/t", client_id="c", client_secret="s",
                              refresh_token="rt-0")
    key = grant.cache_key
    store.save(key, Token(access_token="old", refresh_token="rt-0",
                          expires_at=time.time() - 10, obtained_at=time.time() - 70,
                          version=1))

    def other_holder() -> None:
        time.sleep(0.2)
        store.save(key, Token(access_token="theirs", refresh_token="rt-1",
                              expires_at=time.time() + 600, obtained_at=time.time(),
                              version=2), expected_version=1)
        store.release_lease(key, "other")

    def sender(request: HttpRequest, timeout: float | None) -> HttpResponse:
        store.release_lease(key, next(iter(store._leases.values()))[0])
        assert store.try_lease(key, "other", 5.0)  # our lease ran out; someone took it
        threading.Thread(target=other_holder).start()
        return _answer(400, {"error": "invalid_grant"})

    cache = TokenCache(grant, store=store, sender=sender, hook=quiet)
    token = cache.get(deadline=time.monotonic() + 5)
    assert token.access_token == "theirs"


# -- against authlib's authorization server ---------------------------------------------------


def test_client_secret_basic_against_authlib(oauth_server: OAuthServer) -> None:
    auth = BearerAuth.client_credentials(oauth_server.token_url, "basic-client", BASIC_SECRET,
                                         scope="read", hook=quiet)
    token = auth.cache.get()
    assert token.scope == "read"
    [entry] = oauth_server.log
    assert entry["status"] == 200
    assert entry["auth_method"] == "client_secret_basic"
    assert entry["client_id"] == "basic-client"
    with pytest.raises(surefoot.errors.InvalidClient):
        BearerAuth.client_credentials(oauth_server.token_url, "basic-client", "wrong",
                                      hook=quiet).cache.get()
    assert oauth_server.counts["requests:client_credentials"] == 2  # not retried


def test_client_secret_post_against_authlib(oauth_server: OAuthServer) -> None:
    auth = BearerAuth.client_credentials(oauth_server.token_url, "post-client", POST_SECRET,
                                         auth_method="client_secret_post", hook=quiet)
    auth.cache.get()
    [entry] = oauth_server.log
    assert (entry["status"], entry["auth_method"]) == (200, "client_secret_post")


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
@pytest.mark.parametrize("client_id", ["jwt-rsa", "jwt-ec", "jwt-ed"])
def test_private_key_jwt_against_authlib(oauth_server: OAuthServer, client_id: str) -> None:
    key = oauth_server.keys[client_id]
    auth = BearerAuth.client_credentials(
        oauth_server.token_url, client_auth=PrivateKeyJwt(client_id, key), scope="read",
        hook=quiet,
    )
    auth.cache.get()
    auth.cache.refresh_if_current(auth.cache.get())
    assert [(e["status"], e["auth_method"]) for e in oauth_server.log] == [
        (200, "private_key_jwt"), (200, "private_key_jwt"),
    ]
    (h1, c1), (_, c2) = oauth_server.assertions
    assert h1["alg"] == {"jwt-rsa": "RS256", "jwt-ec": "ES256", "jwt-ed": "EdDSA"}[client_id]
    assert c1["iss"] == c1["sub"] == client_id
    assert c1["aud"] == oauth_server.token_url
    assert c1["jti"] != c2["jti"]
    # the refresh-token grant authenticates the same way
    issued = oauth_server.issue(client_id, scope="read")
    refreshing = BearerAuth.refresh_token(
        oauth_server.token_url, client_auth=PrivateKeyJwt(client_id, key),
        refresh_token=issued["refresh_token"], hook=quiet,
    )
    refreshing.cache.get()
    assert refreshes(oauth_server)[-1]["status"] == 200
    assert refreshes(oauth_server)[-1]["auth_method"] == "private_key_jwt"


def test_refresh_rotation_against_authlib(oauth_server: OAuthServer) -> None:
    issued = oauth_server.issue("basic-client", scope="read write")
    store = MemoryTokenStore()
    auth = BearerAuth.refresh_token(
        oauth_server.token_url, "basic-client", BASIC_SECRET,
        refresh_token=issued["refresh_token"], store=store, hook=quiet,
    )
    cache = auth.cache
    sent = [issued["refresh_token"]]
    token = cache.get()
    for _ in range(3):
        assert token.refresh_token not in sent  # rotated
        sent.append(token.refresh_token)
        stored = store.load(cache.key)
        assert stored == token  # access and refresh token replaced together
        token = cache.refresh_if_current(token)
    assert [e["refresh_token"] for e in refreshes(oauth_server)] == sent
    assert [e["status"] for e in refreshes(oauth_server)] == [200] * 4
    assert token.version == 4
    # the rotated-away refresh tokens are dead on the server
    r = requests.post(oauth_server.token_url, timeout=5, data={
        "grant_type": "refresh_token", "refresh_token": sent[1],
        "client_id": "post-client", "client_secret": POST_SECRET})
    assert r.json()["error"] == "invalid_grant"


def test_refresh_without_rotation_keeps_the_refresh_token(oauth_server: OAuthServer) -> None:
    oauth_server.rotate = False
    issued = oauth_server.issue("post-client")
    cache = BearerAuth.refresh_token(
        oauth_server.token_url, "post-client", POST_SECRET, auth_method="client_secret_post",
        refresh_token=issued["refresh_token"], hook=quiet,
    ).cache
    first = cache.get()
    second = cache.refresh_if_current(first)
    assert first.refresh_token == second.refresh_token == issued["refresh_token"]
    assert second.access_token != first.access_token
    assert [e["status"] for e in refreshes(oauth_server)] == [200, 200]


def test_scope_audience_and_resources_kept_on_every_refresh(oauth_server: OAuthServer) -> None:
    issued = oauth_server.issue("basic-client", scope="read write")
    extra = {"audience": "https://api.example", "resource": ["https://r1", "https://r2"]}
    cache = BearerAuth.refresh_token(
        oauth_server.token_url, "basic-client", BASIC_SECRET,
        refresh_token=issued["refresh_token"], scope="read", extra=extra, hook=quiet,
    ).cache
    token = cache.get()
    for _ in range(3):
        token = cache.refresh_if_current(token)
    assert len(refreshes(oauth_server)) == 4
    for entry in refreshes(oauth_server):
        assert entry["status"] == 200
        assert entry["scope"] == "read"
        assert entry["audience"] == "https://api.example"
        assert entry["resource"] == ["https://r1", "https://r2"]
    assert token.scope == "read"
    record = oauth_server.by_access[token.access_token]
    assert (record.scope, record.audience) == ("read", "https://api.example")
    # and for client credentials
    cc = BearerAuth.client_credentials(oauth_server.token_url, "basic-client", BASIC_SECRET,
                                       scope="write", extra=extra, hook=quiet).cache
    cc.refresh_if_current(cc.get())
    for entry in [e for e in oauth_server.log if e["grant_type"] == "client_credentials"]:
        assert (entry["scope"], entry["audience"]) == ("write", "https://api.example")
        assert entry["resource"] == ["https://r1", "https://r2"]


def test_invalid_grant_is_typed_and_never_retried(oauth_server: OAuthServer) -> None:
    issued = oauth_server.issue("basic-client")
    oauth_server.by_refresh[issued["refresh_token"]].refresh_revoked = True
    cache = BearerAuth.refresh_token(
        oauth_server.token_url, "basic-client", BASIC_SECRET,
        refresh_token=issued["refresh_token"], hook=quiet,
    ).cache
    with pytest.raises(InvalidGrant) as caught:
        cache.get()
    assert caught.value.error == "invalid_grant"
    assert caught.value.status == 400
    assert issued["refresh_token"] not in str(caught.value)
    assert len(refreshes(oauth_server)) == 1
    with pytest.raises(InvalidGrant):  # the dead refresh token is not sent again
        cache.get()
    assert len(refreshes(oauth_server)) == 1


def test_the_dead_refresh_tokens_remembered_are_bounded(oauth_server: OAuthServer) -> None:
    from surefoot.oauth._cache import _MAX_DEAD, _fingerprint

    cache = BearerAuth.refresh_token(
        oauth_server.token_url, "basic-client", BASIC_SECRET, refresh_token="r-0", hook=quiet,
    ).cache
    for i in range(3 * _MAX_DEAD):
        cache._bury(f"r-{i}")
    assert len(cache._dead_refresh) == _MAX_DEAD
    assert _fingerprint(f"r-{3 * _MAX_DEAD - 1}") in cache._dead_refresh  # the newest stay
    assert _fingerprint("r-0") not in cache._dead_refresh


def test_rotated_away_refresh_token_adopts_the_other_holders_token(
    oauth_server: OAuthServer,
) -> None:
    """Holder A's lease ran out mid-refresh; B rotated. A's request with the old refresh
    token gets invalid_grant: A re-reads the store and uses B's token — not an error."""
    issued = oauth_server.issue("basic-client")
    store = MemoryTokenStore()
    grant = RefreshTokenGrant(token_url=oauth_server.token_url, client_id="basic-client",
                              client_secret=BASIC_SECRET, refresh_token=issued["refresh_token"])
    store.save(grant.cache_key, expired(issued))

    class LeaseAlwaysFree:  # B does not see A's lease: it expired
        def __init__(self) -> None:
            # the store's methods as attributes, not through __getattr__: from Python 3.12
            # on, isinstance() against a runtime-checkable Protocol (TokenStore) does not
            # see attributes that only __getattr__ gives
            for name in ("load", "load_versioned", "save", "delete", "renew_lease",
                         "release_lease"):
                if hasattr(store, name):
                    setattr(self, name, getattr(store, name))

        def try_lease(self, key: str, owner: str, ttl: float) -> bool:
            return True

    b = TokenCache(grant, store=LeaseAlwaysFree(), hook=quiet)  # type: ignore[arg-type]
    from surefoot.oauth._sender import send

    def slow_sender(request: HttpRequest, timeout: float | None) -> HttpResponse:
        b.get()  # B refreshes while A's request is in flight
        return send(request, timeout)

    a = TokenCache(grant, store=store, sender=slow_sender, hook=quiet)
    token = a.get()
    assert token == b.get()
    assert token.version == 2
    statuses = [(e["status"], e["error"]) for e in refreshes(oauth_server)]
    assert statuses == [(200, None), (400, "invalid_grant")]  # B's, then A's stale one


def _storm(cache: TokenCache, threads: int) -> tuple[list[str], list[str]]:
    seen: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def call() -> None:
        try:
            start.wait(30)
            token = cache.get(deadline=time.monotonic() + 30)
            with lock:
                seen.append(token.access_token)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")

    pool = [threading.Thread(target=call) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    return seen, errors


def test_64_threads_expired_token_rotating_refresh_one_call(oauth_server: OAuthServer) -> None:
    issued = oauth_server.issue("basic-client")
    grant = RefreshTokenGrant(token_url=oauth_server.token_url, client_id="basic-client",
                              client_secret=BASIC_SECRET, refresh_token=issued["refresh_token"])
    store = MemoryTokenStore()
    store.save(grant.cache_key, expired(issued))
    cache = TokenCache(grant, store=store, hook=quiet)
    seen, errors = _storm(cache, 64)
    assert errors == []
    assert len(seen) == 64
    assert len(set(seen)) == 1
    assert oauth_server.counts["requests:refresh_token"] == 1
    assert oauth_server.counts["error:invalid_grant"] == 0
    assert oauth_server.by_access[seen[0]].refresh_token == store.load(cache.key).refresh_token


def _fleet_worker(kind: str, where: str, token_url: str, initial: str, threads: int,
                  barrier: Any, results: Any) -> None:
    stores = surefoot.stores
    shared = stores.SQLiteStore(where) if kind == "sqlite" else stores.RedisStore(where)
    grant = RefreshTokenGrant(token_url=token_url, client_id="basic-client",
                              client_secret=BASIC_SECRET, refresh_token=initial)
    cache = TokenCache(grant, store=shared, hook=quiet)
    cache.peek()  # loaded the expired token before the storm
    barrier.wait(60)
    seen, errors = _storm(cache, threads)
    results.put((os.getpid(), seen, errors))
    shared.close()


@pytest.mark.parametrize("kind", ["sqlite", "redis", "redis-cluster"])
def test_four_processes_share_one_rotating_refresh(
    kind: str, oauth_server: OAuthServer, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    where = (request.getfixturevalue("redis_cluster_url" if kind == "redis-cluster"
                                     else "redis_url") if kind.startswith("redis")
             else str(tmp_path / "state.db"))
    issued = oauth_server.issue("basic-client")
    grant = RefreshTokenGrant(token_url=oauth_server.token_url, client_id="basic-client",
                              client_secret=BASIC_SECRET, refresh_token=issued["refresh_token"])
    stores = surefoot.stores
    seed = stores.SQLiteStore(where) if kind == "sqlite" else stores.RedisStore(where)
    seed.tokens.save(grant.cache_key, expired(issued, version=5))
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_fleet_worker, args=(kind, where, oauth_server.token_url,
                                                issued["refresh_token"], 16, barrier, results))
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    try:
        outcomes = [results.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
    assert all(p.exitcode == 0 for p in procs)
    assert [e for _, _, errs in outcomes for e in errs] == []
    tokens = [t for _, seen, _ in outcomes for t in seen]
    assert len(tokens) == 64
    assert len(set(tokens)) == 1
    assert oauth_server.counts["requests:refresh_token"] == 1
    assert oauth_server.counts["error:invalid_grant"] == 0
    stored = seed.tokens.load(grant.cache_key)
    assert stored is not None
    assert stored.version == 6
    assert stored.access_token == tokens[0]
    assert stored.refresh_token == oauth_server.by_access[tokens[0]].refresh_token
    seed.close()


def test_revocation_on_close(oauth_server: OAuthServer) -> None:
    issued = oauth_server.issue("basic-client")
    store = MemoryTokenStore()
    auth = BearerAuth.refresh_token(
        oauth_server.token_url, "basic-client", BASIC_SECRET,
        refresh_token=issued["refresh_token"], revocation_url=oauth_server.revocation_url,
        store=store, hook=quiet, revoke_on_close=True,
    )
    token = auth.cache.get()
    auth.cache.close()
    assert oauth_server.counts["revocations"] == 2
    assert [hint for hint, _ in oauth_server.revoked] == ["refresh_token", "access_token"]
    record = oauth_server.by_access[token.access_token]
    assert record.access_revoked
    assert record.refresh_revoked
    assert store.load(auth.cache.key) is None
    assert auth.cache.peek() is None
    answer = requests.get(oauth_server.url + "/protected", timeout=5,
                          headers={"Authorization": f"Bearer {token.access_token}"})
    assert answer.status_code == 401
    with pytest.raises(InvalidGrant):  # the grant is over
        auth.cache.get()
    # client credentials with private_key_jwt: the access token is revoked
    cc = BearerAuth.client_credentials(
        oauth_server.token_url, client_auth=PrivateKeyJwt("jwt-ec", oauth_server.keys["jwt-ec"]),
        revocation_url=oauth_server.revocation_url, hook=quiet,
    ).cache
    access = cc.get().access_token
    assert cc.revoke() is True
    assert oauth_server.by_access[access].access_revoked
    assert cc.revoke() is False  # nothing left to revoke
    with pytest.raises(ConfigurationError):
        BearerAuth.client_credentials(oauth_server.token_url, "basic-client", BASIC_SECRET,
                                      hook=quiet).cache.close(revoke=True)


def test_bearer_auth_refreshes_on_401_through_the_client(oauth_server: OAuthServer) -> None:
    issued = oauth_server.issue("basic-client", scope="read")
    auth = BearerAuth.refresh_token(oauth_server.token_url, "basic-client", BASIC_SECRET,
                                    refresh_token=issued["refresh_token"], hook=quiet)
    with surefoot.Client(oauth_server.url, auth=auth) as api:
        assert api.get("/protected").status_code == 200
        first = auth.cache.peek()
        assert first is not None
        oauth_server.by_access[first.access_token].access_revoked = True
        assert api.get("/protected").status_code == 200  # 401 -> one refresh -> replay
    assert [e["status"] for e in refreshes(oauth_server)] == [200, 200]
    assert oauth_server.counts["protected:401"] == 1


def test_async_tasks_share_one_rotating_refresh(oauth_server: OAuthServer) -> None:
    import asyncio

    from surefoot.httpx import AsyncClient

    issued = oauth_server.issue("basic-client", scope="read")
    grant = RefreshTokenGrant(token_url=oauth_server.token_url, client_id="basic-client",
                              client_secret=BASIC_SECRET, refresh_token=issued["refresh_token"])
    store = MemoryTokenStore()
    store.save(grant.cache_key, expired(issued))
    auth = BearerAuth(grant, store=store, hook=quiet)

    async def main() -> list[int]:
        async with AsyncClient(oauth_server.url, auth=auth) as api:
            answers = await asyncio.gather(*(api.get("/protected") for _ in range(16)))
        return [a.status_code for a in answers]

    assert asyncio.run(main()) == [200] * 16
    assert oauth_server.counts["requests:refresh_token"] == 1
    assert oauth_server.counts["error:invalid_grant"] == 0


# -- against the sandbox -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def rotating_sandbox() -> Any:
    with Sandbox(refresh_tokens=True, token_ttl=3600.0) as sandbox:
        yield sandbox


def _sandbox_refresh_token(sandbox: Sandbox) -> dict[str, Any]:
    answer = requests.post(sandbox.url + "/oauth/token", timeout=5,
                           data={"grant_type": "client_credentials", "scope": "read"},
                           auth=("demo-client", "demo-secret"))
    body: dict[str, Any] = answer.json()
    assert "refresh_token" in body
    return body


def test_sandbox_refresh_rotation_and_stats(rotating_sandbox: Sandbox) -> None:
    rotating_sandbox.reset()
    issued = _sandbox_refresh_token(rotating_sandbox)
    url = rotating_sandbox.url
    auth = BearerAuth.refresh_token(url + "/oauth/token", "demo-client", "demo-secret",
                                    refresh_token=issued["refresh_token"],
                                    revocation_url=url + "/oauth/revoke", hook=quiet)
    token = auth.cache.get()
    assert token.refresh_token not in (None, issued["refresh_token"])
    token = auth.cache.refresh_if_current(token)
    with surefoot.Client(url, auth=auth) as api:
        assert api.get("/protected").json()["scope"] == "read"
    stats = rotating_sandbox.stats()
    assert (stats["refreshes"], stats["invalid_grants"]) == (2, 0)
    # reusing a rotated refresh token is invalid_grant, and ends its family
    stale = BearerAuth.refresh_token(url + "/oauth/token", "demo-client", "demo-secret",
                                     refresh_token=issued["refresh_token"], hook=quiet).cache
    with pytest.raises(InvalidGrant):
        stale.get()
    stats = rotating_sandbox.stats()
    assert (stats["invalid_grants"], stats["refresh_reuses"]) == (1, 1)
    with pytest.raises(InvalidGrant):  # the family is revoked: our current one too
        auth.cache.refresh_if_current(token)
    # revocation
    fresh = BearerAuth.refresh_token(
        url + "/oauth/token", "demo-client", "demo-secret",
        refresh_token=_sandbox_refresh_token(rotating_sandbox)["refresh_token"],
        revocation_url=url + "/oauth/revoke", hook=quiet,
    ).cache
    fresh.get()
    assert fresh.revoke()
    assert rotating_sandbox.stats()["revocations"] == 2


def test_sandbox_threads_share_one_refresh(rotating_sandbox: Sandbox) -> None:
    rotating_sandbox.reset()
    issued = _sandbox_refresh_token(rotating_sandbox)
    grant = RefreshTokenGrant(token_url=rotating_sandbox.url + "/oauth/token",
                              client_id="demo-client", client_secret="demo-secret",
                              refresh_token=issued["refresh_token"])
    store = MemoryTokenStore()
    store.save(grant.cache_key, expired(issued))
    seen, errors = _storm(TokenCache(grant, store=store, hook=quiet), 32)
    assert errors == []
    assert len(set(seen)) == 1
    stats = rotating_sandbox.stats()
    assert (stats["refreshes"], stats["invalid_grants"]) == (1, 0)


def test_sandbox_without_refresh_tokens_rejects_the_grant(sandbox: Sandbox) -> None:
    answer = requests.post(sandbox.url + "/oauth/token", timeout=5,
                           data={"grant_type": "client_credentials"},
                           auth=("demo-client", "demo-secret"))
    assert "refresh_token" not in answer.json()
    answer = requests.post(sandbox.url + "/oauth/token", timeout=5,
                           data={"grant_type": "refresh_token", "refresh_token": "x"},
                           auth=("demo-client", "demo-secret"))
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant")
