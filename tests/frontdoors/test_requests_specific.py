"""requests-only behaviour: surefoot's auth objects on a plain ``requests.Session``.

Everything about the clients (retries, tokens, signing, redirects through
``surefoot.Client``) runs on all three adapters in ``tests/frontdoors/test_conformance.py``.
"""

from __future__ import annotations

import requests

import surefoot
from surefoot import BearerAuth, SigningAuth


def quiet(event: surefoot.Event) -> None:
    return None


def cc_auth(sandbox, **kwargs) -> BearerAuth:
    return BearerAuth.client_credentials(
        sandbox.url + "/oauth/token", "demo-client", "demo-secret", hook=quiet, **kwargs
    )


def test_session_auth_hmac_alone(sandbox):
    session = requests.Session()
    session.auth = SigningAuth.hmac("demo-key", "demo-secret")
    assert session.post(sandbox.url + "/signed/p", data=b"x", timeout=5).status_code == 200
    same = session.get(sandbox.url + "/redirect-to", params={"url": "/signed/q"}, timeout=5)
    assert same.status_code == 200, same.text
    other = sandbox.url.replace("127.0.0.1", "localhost") + "/headers"
    cross = session.get(sandbox.url + "/redirect-to", params={"url": other}, timeout=5)
    echoed = {k.lower() for k in cross.json()["headers"]}
    assert not echoed & {"x-api-key", "x-signature", "x-nonce"}


def test_session_auth_bearer_refreshes_once_on_401(sandbox):
    session = requests.Session()
    session.auth = cc_auth(sandbox)
    assert session.get(sandbox.url + "/protected", timeout=5).status_code == 200
    requests.post(sandbox.url + "/admin/revoke-tokens", timeout=5)
    response = session.get(sandbox.url + "/protected", timeout=5)
    assert response.status_code == 200
    assert sandbox.stats()["tokens_issued"] == 2
