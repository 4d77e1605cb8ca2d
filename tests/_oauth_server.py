"""A real, independently written OAuth2 authorization server for the tests: authlib's
``AuthorizationServer`` (RFC 6749 client-credentials and refresh-token grants, refresh
token rotation with the old one revoked, RFC 7523 ``private_key_jwt`` client
authentication, RFC 7009 revocation) behind a small WSGI adapter, served on loopback by
``wsgiref`` in a thread.

Nothing here is surefoot: the server decides by authlib's own rules, and the tests read
its own record of what it saw (``log``, ``counts``). Token requests are serialised (one at
a time, like a database transaction would make them), so a refresh token that was
rotated away is ``invalid_grant`` exactly as on a real server.

Endpoints: ``POST /oauth/token``, ``POST /oauth/revoke``, ``GET /protected`` (checks a
bearer access token).
"""

from __future__ import annotations

import json
import secrets
import socketserver
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    OAuth2Payload,
    OAuth2Request,
    TokenMixin,
    grants,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError

ALL_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


# -- models ------------------------------------------------------------------------------


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str | None = None
    auth_method: str = "client_secret_basic"
    public_key: Any = None  # a joserfc key, for private_key_jwt
    scope: str = "read write admin"
    grant_types: tuple[str, ...] = ("client_credentials", "refresh_token")

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        allowed = set(self.scope.split())
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client_secret is not None and secrets.compare_digest(
            self.client_secret.encode(), client_secret.encode()
        )

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass
class TokenRecord(TokenMixin):
    client_id: str
    access_token: str
    refresh_token: str | None
    scope: str
    expires_in: int
    issued_at: float
    audience: str | None = None
    resources: tuple[str, ...] = ()
    access_revoked: bool = False
    refresh_revoked: bool = False
    user: str = "alice"

    def check_client(self, client: Client) -> bool:
        return self.client_id == client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.access_revoked

    def get_user(self) -> str:
        return self.user

    def get_client(self) -> Any:
        return None


# -- the WSGI adapter ----------------------------------------------------------------------


class _Payload(OAuth2Payload):
    def __init__(self, form: dict[str, list[str]]) -> None:
        self._datalist = defaultdict(list, form)
        self._data = {k: v[0] for k, v in form.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class _Request(OAuth2Request):
    def __init__(self, method: str, uri: str, headers: dict[str, str],
                 form: dict[str, list[str]]) -> None:
        super().__init__(method, uri, headers=headers)
        self.payload = _Payload(form)
        self._form = self.payload.data

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _Headers(dict[str, str]):
    """Header names looked up case-insensitively (authlib asks for ``Authorization``)."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


# -- authlib grants and endpoints, configured ------------------------------------------------


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post",
                                   "private_key_jwt"]


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation

    def authenticate_refresh_token(self, refresh_token: str) -> TokenRecord | None:
        record = self.server.by_refresh.get(refresh_token)
        if record is None or record.refresh_revoked:
            return None
        return record

    def authenticate_user(self, refresh_token: TokenRecord) -> str:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: TokenRecord) -> None:
        if self.server.rotate:
            refresh_token.refresh_revoked = True  # a rotated refresh token dies

    def issue_token(self, user: str, refresh_token: TokenRecord) -> dict[str, Any]:
        self.INCLUDE_NEW_REFRESH_TOKEN = self.server.rotate
        token: dict[str, Any] = super().issue_token(user, refresh_token)
        return token


class JwtClientAuth(JWTBearerClientAssertion):
    """RFC 7523 §2.2 client authentication, registered as ``private_key_jwt``."""

    CLIENT_AUTH_METHOD = "private_key_jwt"
    ALGORITHMS = ("RS256", "PS256", "ES256", "ES384", "EdDSA", "Ed25519")

    def __init__(self, server: OAuthServer) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self.server = server

    def get_audiences(self) -> list[str]:
        return [self.server.token_url, self.server.url]

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        key = f"{claims['sub']}:{jti}"
        with self.server.state:
            if key in self.server.seen_jtis:
                return False
            self.server.seen_jtis.add(key)
            return True

    def resolve_client_public_key(self, client: Client) -> Any:
        return client.public_key

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        # joserfc only accepts its "recommended" algorithms by default; allow the
        # RFC 7518/8037 ones a client may use.
        from authlib.oauth2.rfc6749 import InvalidClientError

        try:
            token = jwt.decode(assertion, resolve_key, algorithms=list(self.ALGORITHMS))
        except JoseError as exc:
            raise InvalidClientError(description=exc.description) from exc
        self.verify_claims(token.claims)
        with self.server.state:
            self.server.assertions.append((dict(token.header), dict(token.claims)))
        return token.claims


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ALL_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        server: OAuthServer = self.server
        if token_type_hint == "access_token":
            return server.by_access.get(token_string)
        if token_type_hint == "refresh_token":
            return server.by_refresh.get(token_string)
        return server.by_access.get(token_string) or server.by_refresh.get(token_string)

    def revoke_token(self, token: TokenRecord, request: Any) -> None:
        hint = request.form.get("token_type_hint")
        token.access_revoked = True
        if hint != "access_token":
            token.refresh_revoked = True
        self.server.counts["revocations"] += 1
        self.server.revoked.append((hint, token.client_id))


# -- the server ----------------------------------------------------------------------------


class OAuthServer(AuthorizationServer):
    """authlib's authorization server, with in-memory clients and tokens."""

    def __init__(self, *, access_ttl: int = 3600) -> None:
        super().__init__(scopes_supported=["read", "write", "admin"])
        self.url = ""
        self.token_url = ""
        self.revocation_url = ""
        self.access_ttl = access_ttl
        self.rotate = True
        self.state = threading.RLock()  # one token/revocation request at a time
        self.clients: dict[str, Client] = {}
        self.register_grant(ClientCredentialsGrant)
        self.register_grant(RefreshTokenGrant)
        self.register_client_auth_method("private_key_jwt", JwtClientAuth(self))
        self.register_endpoint(Revocation)
        self.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=lambda **_: "at-" + secrets.token_urlsafe(24),
                refresh_token_generator=lambda **_: "rt-" + secrets.token_urlsafe(24),
                expires_generator=lambda client, grant_type: self.access_ttl,
            ),
        )
        self._httpd: WSGIServer | None = None
        self.keys: dict[str, Any] = {}
        self.reset()

    # state
    def reset(self) -> None:
        with self.state:
            self.rotate = True
            self.access_ttl = 3600
            self.by_access: dict[str, TokenRecord] = {}
            self.by_refresh: dict[str, TokenRecord] = {}
            self.seen_jtis: set[str] = set()
            self.log: list[dict[str, Any]] = []
            self.counts: Counter[str] = Counter()
            self.assertions: list[tuple[dict[str, Any], dict[str, Any]]] = []
            self.revoked: list[tuple[str | None, str]] = []

    def add_client(self, client: Client) -> Client:
        self.clients[client.client_id] = client
        return client

    def issue(self, client_id: str, *, scope: str = "read write", audience: str | None = None,
              expires_in: int | None = None) -> dict[str, Any]:
        """A token with a refresh token, as an authorization-code flow would have
        issued it (the user consented earlier)."""
        client = self.clients[client_id]
        token: dict[str, Any] = self.generate_token(
            "authorization_code", client, user="alice", scope=scope,
            expires_in=expires_in or self.access_ttl, include_refresh_token=True,
        )
        with self.state:
            self._store(token, client_id, audience=audience, resources=())
        return token

    # authlib hooks
    def query_client(self, client_id: str) -> Client | None:
        return self.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        form = request.payload.datalist
        old: TokenRecord | None = request.refresh_token
        refresh = token.get("refresh_token")
        if refresh is None and old is not None:  # not rotating: the old one stays
            token_refresh = old.refresh_token
        else:
            token_refresh = refresh
        record = self._store(
            {**token, "refresh_token": token_refresh},
            request.client.client_id,
            audience=(form.get("audience") or [None])[0],
            resources=tuple(form.get("resource") or ()),
        )
        if old is not None:
            record.user = old.user
        self.counts["issued:" + request.payload.grant_type] += 1

    def _store(self, token: dict[str, Any], client_id: str, *, audience: str | None,
               resources: tuple[str, ...]) -> TokenRecord:
        record = TokenRecord(
            client_id=client_id,
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            scope=token.get("scope", ""),
            expires_in=int(token.get("expires_in", self.access_ttl)),
            issued_at=time.time(),
            audience=audience,
            resources=resources,
        )
        self.by_access[record.access_token] = record
        if record.refresh_token:
            self.by_refresh[record.refresh_token] = record
        return record

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        return request  # already built by the WSGI adapter

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, bytes, Any]:
        return status, json.dumps(body).encode(), list(headers)

    # WSGI
    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ["REQUEST_METHOD"]
        headers = _Headers()
        for name, value in environ.items():
            if name.startswith("HTTP_"):
                headers[name[5:].replace("_", "-").lower()] = value
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length).decode() if length else ""
        form = parse_qs(raw, keep_blank_values=True)
        uri = self.url + path
        if path == "/protected":
            status, body, extra = self._protected(headers)
        elif path in ("/oauth/token", "/oauth/revoke") and method == "POST":
            request = _Request(method, uri, headers, form)
            with self.state:
                if path == "/oauth/token":
                    status, body, extra = self.create_token_response(request)
                else:
                    status, body, extra = self.create_endpoint_response("revocation", request)
                self._record(path, request, form, status, body)
        else:
            status, body, extra = 404, b'{"error": "not_found"}', []
        names = {k.lower() for k, _ in extra}
        out = list(extra) + ([] if "content-type" in names else [("Content-Type",
                                                                   "application/json")])
        start_response(f"{status} X", out)
        return [body]

    def _record(self, path: str, request: _Request, form: dict[str, list[str]], status: int,
                body: bytes) -> None:
        try:
            answer = json.loads(body) if body else {}
        except ValueError:
            answer = {}
        entry = {
            "path": path,
            "grant_type": request.payload.data.get("grant_type"),
            "auth_method": request.auth_method,
            "status": status,
            "error": answer.get("error") if isinstance(answer, dict) else None,
            "scope": request.payload.data.get("scope"),
            "audience": request.payload.data.get("audience"),
            "resource": form.get("resource", []),
            "refresh_token": request.payload.data.get("refresh_token"),
            "client_id": request.client.client_id if request.client else None,
        }
        self.log.append(entry)
        kind = "revoke" if path.endswith("revoke") else entry["grant_type"]
        self.counts[f"requests:{kind}"] += 1
        if entry["error"]:
            self.counts[f"error:{entry['error']}"] += 1
            self.counts[f"error:{kind}:{entry['error']}"] += 1

    def _protected(self, headers: _Headers) -> tuple[int, bytes, list[tuple[str, str]]]:
        auth = headers.get("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        with self.state:
            record = self.by_access.get(value.strip()) if scheme.lower() == "bearer" else None
            self.counts["protected"] += 1
            ok = record is not None and not record.is_revoked() and not record.is_expired()
            if not ok:
                self.counts["protected:401"] += 1
        if not ok or record is None:
            return 401, b'{"error": "invalid_token"}', [
                ("WWW-Authenticate", 'Bearer error="invalid_token"')]
        body = {"scope": record.scope, "audience": record.audience, "client_id": record.client_id}
        return 200, json.dumps(body).encode(), []

    # lifecycle
    def start(self) -> OAuthServer:
        httpd = make_server("127.0.0.1", 0, self, server_class=_ThreadingWSGIServer,
                            handler_class=_QuietHandler)
        self._httpd = httpd
        self.url = f"http://127.0.0.1:{httpd.server_port}"
        self.token_url = self.url + "/oauth/token"
        self.revocation_url = self.url + "/oauth/revoke"
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         name="authlib-oauth-server", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 128


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


# -- the test setup ------------------------------------------------------------------------

#: Secrets with characters that Basic auth must form-urlencode (RFC 6749 §2.3.1).
BASIC_SECRET = "s3cr:t%&=+/é"
POST_SECRET = "p0st-secret"


def make_keys() -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    return {
        "jwt-rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "jwt-ec": ec.generate_private_key(ec.SECP256R1()),
        "jwt-ed": ed25519.Ed25519PrivateKey.generate(),
    }


def build_server() -> OAuthServer:
    """The server with its clients: ``basic-client`` (client_secret_basic),
    ``post-client`` (client_secret_post), ``jwt-rsa``/``jwt-ec``/``jwt-ed``
    (private_key_jwt; private keys in ``server.keys``), ``public-client`` (none)."""
    from cryptography.hazmat.primitives import serialization
    from joserfc.jwk import ECKey, OKPKey, RSAKey

    server = OAuthServer()
    server.keys = make_keys()
    server.add_client(Client("basic-client", BASIC_SECRET, "client_secret_basic"))
    server.add_client(Client("post-client", POST_SECRET, "client_secret_post"))
    for client_id, kind in (("jwt-rsa", RSAKey), ("jwt-ec", ECKey), ("jwt-ed", OKPKey)):
        public = server.keys[client_id].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        server.add_client(Client(client_id, None, "private_key_jwt",
                                 public_key=kind.import_key(public)))
    server.add_client(Client("public-client", None, "none",
                             grant_types=("refresh_token",)))
    return server
