"""`surefoot request` and `surefoot demo`, run as real subprocesses."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

import surefoot
from surefoot.cli._main import EXIT_AUTH, EXIT_HTTP, EXIT_OK, EXIT_TRANSPORT, EXIT_USAGE
from surefoot.signing import (
    HmacVerifier,
    MessageVerifier,
    SignatureKey,
    SignedRequest,
    SigV4Verifier,
)


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "surefoot", *args],
        capture_output=True,
        timeout=timeout,
        env=full_env,
        check=False,
    )


def test_get_prints_body_and_exits_0(sandbox):
    result = run("request", "GET", sandbox.url + "/get?x=1", "-H", "X-Trace: abc")
    assert result.returncode == EXIT_OK, result.stderr
    body = json.loads(result.stdout)
    assert body["args"] == {"x": "1"}
    assert body["headers"]["X-Trace"] == "abc"


def test_http_error_after_retries_exits_3(sandbox):
    result = run("request", "GET", sandbox.url + "/status/503", "--retries", "1", "-v")
    assert result.returncode == EXIT_HTTP
    assert sandbox.stats()["endpoints"]["/status"]["requests"] == 2
    assert b"attempt 2" in result.stderr


def test_not_found_exits_3_without_retry(sandbox):
    result = run("request", "GET", sandbox.url + "/status/404")
    assert result.returncode == EXIT_HTTP
    assert sandbox.stats()["endpoints"]["/status"]["requests"] == 1


def test_transport_failure_exits_4(closed_port):
    result = run("request", "GET", f"http://127.0.0.1:{closed_port}/x", "--retries", "1")
    assert result.returncode == EXIT_TRANSPORT
    assert b"connect" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("request", "GET", "not-a-url"),
        ("request", "GET", "http://127.0.0.1:1/", "-H", "no-colon"),
        ("request", "GET", "http://127.0.0.1:1/", "--hmac", "nocolon"),
        ("request", "GET", "http://127.0.0.1:1/", "--retries", "-1"),
        ("request",),
        ("frobnicate",),
    ],
)
def test_usage_errors_exit_2(args):
    assert run(*args).returncode == EXIT_USAGE


def test_hmac_signed_request(sandbox):
    result = run("request", "POST", sandbox.url + "/signed/cli", "-d", "hello",
                 "--hmac", "demo-key:demo-secret", "-v")
    assert result.returncode == EXIT_OK, result.stderr
    assert json.loads(result.stdout)["key_id"] == "demo-key"
    assert b"demo-secret" not in result.stderr


def test_hmac_secret_from_environment(sandbox):
    result = run("request", "GET", sandbox.url + "/signed/env", "--hmac", "demo-key:",
                 env={"SUREFOOT_HMAC_SECRET": "demo-secret"})
    assert result.returncode == EXIT_OK, result.stderr


def test_oauth2_with_token_cache_and_verbose_has_no_secrets(sandbox, tmp_path):
    cache = tmp_path / "tok.json"
    args = ("request", "GET", sandbox.url + "/protected",
            "--oauth2-token-url", sandbox.url + "/oauth/token",
            "--client-id", "demo-client", "--client-secret", "demo-secret",
            "--token-cache", str(cache), "-v")
    first = run(*args)
    assert first.returncode == EXIT_OK, first.stderr
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    token = json.loads(cache.read_text())["tokens"]
    access = next(iter(token.values()))["access_token"]
    second = run(*args)
    assert second.returncode == EXIT_OK
    assert sandbox.stats()["tokens_issued"] == 1  # the second run reused the cached token
    for output in (first.stderr, second.stderr, first.stdout):
        assert b"demo-secret" not in output
        assert access.encode() not in output


def test_oauth2_bad_secret_exits_5(sandbox):
    result = run("request", "GET", sandbox.url + "/protected",
                 "--oauth2-token-url", sandbox.url + "/oauth/token",
                 "--client-id", "demo-client", "--client-secret", "nope")
    assert result.returncode == EXIT_AUTH
    assert b"invalid_client" in result.stderr
    assert b"nope" not in result.stderr


def test_data_from_file_and_idempotency_key(sandbox, tmp_path):
    body = tmp_path / "order.json"
    body.write_text('{"sku": "pen"}')
    result = run("request", "POST", sandbox.url + "/orders?fail_after_commit=1",
                 "-H", "Content-Type: application/json", "-d", f"@{body}",
                 "--idempotency-key", "auto")
    assert result.returncode == EXIT_OK, result.stderr
    assert json.loads(result.stdout)["sku"] == "pen"
    assert sandbox.stats()["orders_created"] == 1


def test_demo_runs_and_passes():
    result = run("demo", timeout=60)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert b"demo passed" in result.stdout


# -- --sign: RFC 9421, SigV4 and the HMAC scheme, verified on the server side -------------

HMAC_SECRET = b"rfc9421-cli-secret-0123456789abcdef"
AWS_KEY_ID = "AKIDEXAMPLECLI"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
AWS_TOKEN = "session-token-that-must-stay-secret"
BODY = '{"amount": 100, "currency": "EUR"}'


def _echo(result) -> tuple[dict, bytes]:
    """The sandbox's echo of the request (/anything) and the body it received."""
    assert result.returncode == EXIT_OK, result.stderr
    echo = json.loads(result.stdout)
    return echo, echo["data"].encode()


def _no_aws_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


def run_env(*args: str, env: dict[str, str], timeout: float = 60):
    """Like ``run`` but with exactly this environment."""
    return subprocess.run([sys.executable, "-m", "surefoot", *args], capture_output=True,
                          timeout=timeout, env=env, check=False)


def test_sign_rfc9421_hmac_from_file_verified_by_server(sandbox, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(HMAC_SECRET + b"\n")  # the trailing newline is dropped
    result = run("request", "POST", sandbox.url + "/anything?b=2&a=1", "-d", BODY,
                 "-H", "Content-Type: application/json",
                 "--sign", f"rfc9421:hmac-sha256:cli-key:@{secret_file}", "-v")
    echo, body = _echo(result)
    verifier = MessageVerifier({"cli-key": SignatureKey("hmac-sha256", HMAC_SECRET)},
                               require_content_digest=True)
    verified = verifier.verify(
        SignedRequest.of(echo["method"], echo["url"], echo["headers"], body)
    ).signature
    assert verified.key_id == "cli-key"
    assert verified.algorithm == "hmac-sha256"
    assert verified.covered == ('"@method"', '"@authority"', '"@path"', '"@query"',
                                '"content-digest"')
    assert verified.nonce
    assert verified.created
    assert echo["headers"]["Content-Digest"].startswith("sha-256=:")
    assert b"* signing: RFC 9421 hmac-sha256, keyid 'cli-key'" in result.stderr
    for output in (result.stderr, result.stdout):
        assert HMAC_SECRET not in output
        assert base64.b64encode(HMAC_SECRET) not in output


def test_sign_rfc9421_hmac_base64_secret_from_env(sandbox):
    result = run("request", "GET", sandbox.url + "/anything",
                 "--sign", "rfc9421:hmac-sha256:env-key:env:MY_SIGNING_SECRET",
                 "--secret-encoding", "base64", "--sign-tag", "cli", "--sign-expires", "60",
                 env={"MY_SIGNING_SECRET": base64.b64encode(HMAC_SECRET).decode()})
    echo, body = _echo(result)
    verifier = MessageVerifier({"env-key": SignatureKey("hmac-sha256", HMAC_SECRET)},
                               expected_tag="cli")
    verified = verifier.verify(
        SignedRequest.of("GET", echo["url"], echo["headers"], body)
    ).signature
    assert verified.tag == "cli"
    assert verified.expires == verified.created + 60


def test_sign_rfc9421_ed25519_custom_components(sandbox, tmp_path):
    private = ed25519.Ed25519PrivateKey.generate()
    pem = tmp_path / "ed25519.pem"
    pem.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    result = run("request", "POST", sandbox.url + "/anything/orders?x=1", "-d", BODY,
                 "-H", "Content-Type: application/json", "-H", "X-Request-Id: r-42",
                 "--sign", f"rfc9421:ed25519:ed-key:@{pem}",
                 "--sign-components", '@method,@target-uri,content-type,x-request-id,'
                                      '@query-param;name="x"',
                 "--content-digest", "sha-512", "--sign-label", "cli", "-v")
    echo, body = _echo(result)
    public = SignatureKey("ed25519", private.public_key(), key_id="ed-key")
    verifier = MessageVerifier({"ed-key": public}, required_components=["@target-uri"],
                               require_content_digest=True, label="cli")
    verified = verifier.verify(
        SignedRequest.of("POST", echo["url"], echo["headers"], body)
    ).signature
    assert verified.covered == ('"@method"', '"@target-uri"', '"content-type"',
                                '"x-request-id"', '"@query-param";name="x"',
                                '"content-digest"')
    assert echo["headers"]["Content-Digest"].startswith("sha-512=:")
    # tampering with the body is caught through the covered Content-Digest
    with pytest.raises(surefoot.errors.BodyDigestMismatch):
        MessageVerifier({"ed-key": public}, label="cli").verify(
            SignedRequest.of("POST", echo["url"], echo["headers"], body + b" ")
        )
    assert b"PRIVATE KEY" not in result.stderr


def test_sign_rfc9421_encrypted_ecdsa_key_with_password_from_env(sandbox, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "p256.pem"
    pem.write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pem-password-123")))
    result = run("request", "DELETE", sandbox.url + "/anything/7",
                 "--sign", f"rfc9421:ecdsa-p256-sha256:ec-key:@{pem}",
                 "--key-password", "env:MY_PEM_PASSWORD", "-v",
                 env={"MY_PEM_PASSWORD": "pem-password-123"})
    echo, body = _echo(result)
    public = SignatureKey("ecdsa-p256-sha256", private.public_key(), key_id="ec-key")
    verified = (
        MessageVerifier({"ec-key": public})
        .verify(SignedRequest.of("DELETE", echo["url"], echo["headers"], body))
        .signature
    )
    assert verified.algorithm == "ecdsa-p256-sha256"
    assert b"pem-password-123" not in result.stderr
    wrong = run("request", "GET", sandbox.url + "/anything",
                "--sign", f"rfc9421:ecdsa-p256-sha256:ec-key:@{pem}",
                "--key-password", "env:MY_PEM_PASSWORD", env={"MY_PEM_PASSWORD": "nope-nope"})
    assert wrong.returncode == EXIT_USAGE
    assert b"nope-nope" not in wrong.stderr


def test_sign_rfc9421_without_content_digest(sandbox, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(HMAC_SECRET)
    result = run("request", "GET", sandbox.url + "/anything", "--content-digest", "none",
                 "--sign", f"rfc9421:hmac-sha256:k:@{secret_file}")
    echo, _ = _echo(result)
    assert "Content-Digest" not in echo["headers"]
    verified = (
        MessageVerifier({"k": SignatureKey("hmac-sha256", HMAC_SECRET)})
        .verify(SignedRequest.of("GET", echo["url"], echo["headers"]))
        .signature
    )
    assert "content-digest" not in " ".join(verified.covered)


def test_sign_rfc9421_default_key_variable(sandbox):
    result = run("request", "GET", sandbox.url + "/anything",
                 "--sign", "rfc9421:hmac-sha256:k",
                 env={"SUREFOOT_SIGNING_KEY": HMAC_SECRET.decode()})
    echo, _ = _echo(result)
    MessageVerifier({"k": SignatureKey("hmac-sha256", HMAC_SECRET)}).verify(
        SignedRequest.of("GET", echo["url"], echo["headers"])
    )


def test_sign_sigv4_from_environment_with_session_token(sandbox):
    env = {**_no_aws_env(), "AWS_ACCESS_KEY_ID": AWS_KEY_ID,
           "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "AWS_SESSION_TOKEN": AWS_TOKEN}
    result = run_env("request", "POST", sandbox.url + "/anything/v1/items?b=2&a=1", "-d", BODY,
                     "-H", "Content-Type: application/json", "-H", "X-Amz-Meta-Color: blue",
                     "--sign", "sigv4:eu-west-1:execute-api", "-v", env=env)
    echo, body = _echo(result)
    verifier = SigV4Verifier({AWS_KEY_ID: AWS_SECRET}, region="eu-west-1",
                             service="execute-api")
    assert (
        verifier.verify(SignedRequest.of("POST", echo["url"], echo["headers"], body)).key_id
        == AWS_KEY_ID
    )
    auth = echo["headers"]["Authorization"]
    assert "SignedHeaders=content-type;host;x-amz-date;x-amz-meta-color;x-amz-security-token,"\
        in auth
    assert echo["headers"]["X-Amz-Security-Token"] == AWS_TOKEN
    assert b"* signing: AWS SigV4, access key AKIDEXAMPLECLI, region eu-west-1" in result.stderr
    for secret in (AWS_SECRET.encode(), AWS_TOKEN.encode()):
        assert secret not in result.stderr


def test_sign_sigv4_s3_unsigned_payload_secret_from_file(sandbox, tmp_path):
    secret_file = tmp_path / "aws-secret"
    secret_file.write_text(AWS_SECRET + "\n")
    result = run_env("request", "PUT", sandbox.url + "/anything/bucket/my%20key.txt",
                     "-d", "file content", "--sign", "sigv4:us-east-1:s3",
                     "--aws-access-key-id", AWS_KEY_ID,
                     "--aws-secret-access-key", f"@{secret_file}", "--unsigned-payload",
                     env=_no_aws_env())
    echo, body = _echo(result)
    assert echo["headers"]["X-Amz-Content-Sha256"] == "UNSIGNED-PAYLOAD"
    verifier = SigV4Verifier({AWS_KEY_ID: AWS_SECRET}, region="us-east-1", service="s3")
    assert (
        verifier.verify(SignedRequest.of("PUT", echo["url"], echo["headers"], body)).key_id
        == AWS_KEY_ID
    )


def test_sign_hmac_scheme_from_file(sandbox, tmp_path):
    secret_file = tmp_path / "hmac"
    secret_file.write_text("demo-secret\n")
    result = run("request", "POST", sandbox.url + "/signed/cli", "-d", "hello",
                 "--sign", f"hmac:demo-key:@{secret_file}", "-v")
    assert result.returncode == EXIT_OK, result.stderr
    assert json.loads(result.stdout)["key_id"] == "demo-key"
    assert b"demo-secret" not in result.stderr
    echoed = run("request", "GET", sandbox.url + "/anything?q=1", "--sign", "hmac:k2",
                 env={"SUREFOOT_HMAC_SECRET": "s2"})
    echo, body = _echo(echoed)
    assert (
        HmacVerifier({"k2": "s2"})
        .verify(SignedRequest.of("GET", echo["url"], echo["headers"], body))
        .key_id
        == "k2"
    )


def test_sign_request_that_cannot_be_signed_exits_5(sandbox, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(HMAC_SECRET)
    result = run("request", "GET", sandbox.url + "/anything",
                 "--sign", f"rfc9421:hmac-sha256:k:@{secret_file}",
                 "--sign-components", "@method,x-not-sent")
    assert result.returncode == EXIT_AUTH
    assert b"cannot sign" in result.stderr
    assert HMAC_SECRET not in result.stderr
    assert sandbox.stats()["requests"] == 0


@pytest.fixture
def key_files(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(HMAC_SECRET)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot-a-key-super-secret\n"
                       "-----END PRIVATE KEY-----\n")
    public = tmp_path / "public.pem"
    public.write_bytes(ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return {"secret": str(secret), "garbage": str(garbage), "public": str(public),
            "missing": str(tmp_path / "nope")}


@pytest.mark.parametrize(
    "extra",
    [
        ("--sign", "rfc9421:hmac-sha256:k:super-secret-literal"),  # literal key refused
        ("--sign", "rfc9421:ed25519:k:super-secret-literal"),
        ("--sign", "hmac:k:super-secret-literal"),
        ("--sign", "bogus:k"),
        ("--sign", "rfc9421:hmac-md5:k:@{secret}"),
        ("--sign", "rfc9421:hmac-sha256::@{secret}"),
        ("--sign", "rfc9421:hmac-sha256:k:@{missing}"),
        ("--sign", "rfc9421:hmac-sha256:k:env:SUREFOOT_TEST_UNSET_VARIABLE"),
        ("--sign", "rfc9421:ed25519:k:@{garbage}"),
        ("--sign", "rfc9421:ed25519:k:@{public}"),
        ("--sign", "rfc9421:hmac-sha256:k:@{secret}", "--sign-components", "@bogus"),
        ("--sign", "rfc9421:hmac-sha256:k:@{secret}", "--sign-components", "@method,,@path"),
        ("--sign", "rfc9421:hmac-sha256:k:@{secret}", "--sign-label", "Bad Label"),
        ("--sign", "rfc9421:hmac-sha256:k:@{secret}", "--secret-encoding", "hex"),
        ("--sign", "rfc9421:hmac-sha256:k:@{secret}", "--unsigned-payload"),
        ("--sign", "rfc9421:hmac-sha256:k:@{secret}", "--sign", "sigv4:us-east-1:s3"),
        ("--sign", "sigv4:us-east-1"),
        ("--sign", "sigv4:us-east-1:s3"),  # no credentials in the environment
        ("--sign", "sigv4:us-east-1:s3", "--aws-access-key-id", "AKID",
         "--aws-secret-access-key", "super-secret-literal"),
        ("--sign", "sigv4:us-east-1:s3", "--sign-components", "@method"),
        ("--sign-components", "@method"),  # without --sign
        ("--content-digest", "sha-512"),
        ("--hmac", "k:super-secret-literal", "--sign", "hmac:k:@{secret}"),
        ("--sign", "hmac:k:@{secret}", "--token-cache", "@{missing}"),
    ],
)
def test_sign_usage_errors_exit_2_without_secrets(extra, key_files):
    args = [a.format(**key_files) for a in extra]
    env = {**_no_aws_env(), "SUREFOOT_TEST_UNSET_VARIABLE": ""}
    result = run_env("request", "GET", "http://127.0.0.1:1/", "-v", *args, env=env)
    assert result.returncode == EXIT_USAGE, result.stderr
    assert b"surefoot: error:" in result.stderr
    for secret in (b"super-secret-literal", HMAC_SECRET, b"not-a-key"):
        assert secret not in result.stderr
    assert b"Traceback" not in result.stderr


# -- D8: invalid input is refused up front: exit 2, one line on stderr, nothing sent -------

RETRY_AFTER_YEAR_0 = "Mon, 01 Jan 0000 00:00:00 GMT"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("request", "GET", "http://"), "URL must be an absolute http(s) URL"),
        (("request", "GET", "http://[::1"), "URL must be an absolute http(s) URL"),
        (("request", "GET", "http://h:99999/"), "port"),
        (("request", "GET", "http://h:abc/"), "port"),
        (("request", "GET", "http://a..b/"), "label"),
        (("request", "GE T", "{url}/get"), "method 'GE T'"),
        (("request", "GÉT", "{url}/get"), "method 'GÉT'"),
        (("request", "", "{url}/get"), "method is empty"),
        (("request", "GET", "{url}/get", "-H", "X-A: a\r\nX-B: b"), "header 'X-A'"),
        (("request", "GET", "{url}/get", "-H", "X-A: caf\u00e9 \u2603"), "Latin-1"),
        (("request", "GET", "{url}/get", "-H", "X-\u2603: a"), "header name"),
        (("request", "GET", "{url}/get", "--timeout", "nan"), "--timeout"),
        (("request", "GET", "{url}/get", "--deadline", "inf"), "--deadline"),
        (("request", "POST", "{url}/anything", "--idempotency-key", "k\r\nX-B: b"),
         "--idempotency-key"),
        (("request", "GET", "{url}/protected", "--oauth2-token-url", "http://[::1",
          "--client-id", "demo-client", "--client-secret", "demo-secret"),
         "--oauth2-token-url"),
        (("request", "GET", "{url}/protected", "--oauth2-token-url", "http://h:99999/t",
          "--client-id", "demo-client", "--client-secret", "demo-secret"),
         "--oauth2-token-url"),
        (("sandbox", "--port", "-5"), "--port"),
        (("sandbox", "--port", "65536"), "--port"),
    ],
)
def test_invalid_input_exits_2_with_one_line_and_sends_nothing(args, named, sandbox):
    result = run(*(a.format(url=sandbox.url) for a in args), timeout=30)
    stderr = result.stderr.decode()
    assert result.returncode == EXIT_USAGE, stderr
    assert "Traceback" not in stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith(("surefoot: error: ", "surefoot sandbox: error: ")), stderr
    assert named in stderr
    assert "X-B" not in stderr  # header values are never echoed (they may be secrets)
    assert result.stdout == b""
    assert sandbox.stats()["requests"] == 0


@pytest.fixture
def counting_server():
    """A raw loopback server that answers every connection with a retryable 503 and
    counts them: it sees a request even when its request line is malformed."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    seen: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    seen.append(conn.recv(65536))
                    conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\n"
                                 b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", seen
    stop.set()
    thread.join(5)
    listener.close()


def test_empty_method_is_refused_and_never_sent(counting_server):
    url, seen = counting_server
    result = run("request", "", url + "/anything", "--retries", "3", "-v", timeout=30)
    assert result.returncode == EXIT_USAGE, result.stderr
    assert result.stderr.decode().splitlines() == [
        "surefoot: error: the method is empty: give one, e.g. GET"
    ]
    assert seen == []


@pytest.fixture
def unusable_paths(tmp_path):
    regular = tmp_path / "a-file"
    regular.write_text("not a directory")
    return {"under_a_file": str(regular / "tok.json"), "a_directory": str(tmp_path)}


@pytest.mark.parametrize("which", ["under_a_file", "a_directory"])
def test_unopenable_token_cache_exits_2_before_any_request(which, unusable_paths, sandbox):
    path = unusable_paths[which]
    result = run("request", "GET", sandbox.url + "/protected",
                 "--oauth2-token-url", sandbox.url + "/oauth/token",
                 "--client-id", "demo-client", "--client-secret", "demo-secret",
                 "--token-cache", path)
    stderr = result.stderr.decode()
    assert result.returncode == EXIT_USAGE, stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith(f"surefoot: error: --token-cache {path}")
    assert result.stdout == b""
    assert sandbox.stats()["requests"] == 0  # not even the token request
    assert "demo-secret" not in stderr


def test_429_with_retry_after_in_year_0_is_an_http_error_not_a_traceback(sandbox):
    from urllib.parse import quote

    url = f"{sandbox.url}/status/429?retry_after={quote(RETRY_AFTER_YEAR_0)}"
    result = run("request", "GET", url, "--retries", "1", timeout=30)
    assert b"Traceback" not in result.stderr
    assert result.returncode == EXIT_HTTP, result.stderr
    assert len(result.stderr.splitlines()) <= 1
    assert sandbox.stats()["endpoints"]["/status"]["statuses"].get("429", 0) >= 1


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (RuntimeError("boom\nsecond line"), 1,  # EXIT_INTERNAL
         "surefoot: internal error: RuntimeError: boom second line (a bug in surefoot: "
         "please report it)"),
        (surefoot.errors.StoreError("cannot write token file t.json: Read-only file system"),
         EXIT_USAGE,
         "surefoot: error: token cache: cannot write token file t.json: Read-only file system"),
        (surefoot.errors.TokenResponseError("no access_token"), EXIT_AUTH,
         "surefoot: auth failed: no access_token"),
        (surefoot.errors.Unauthorized("401 after a refresh", response=requests.Response()),
         EXIT_AUTH, "surefoot: auth failed: 401 after a refresh"),
        (surefoot.errors.TransportError("connect failed", kind="connect"), EXIT_TRANSPORT,
         "surefoot: connect failed"),
    ],
)
def test_every_exception_maps_to_its_exit_code_and_one_line(
    error, code, line, monkeypatch, capsys, closed_port
):
    """The mapping is explicit: each branch of the error tree has its documented code, and
    anything else is an internal error (exit 1), never a usage error or a traceback."""
    from surefoot.cli._main import main
    from surefoot.requests import Client

    def fail(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(Client, "request", fail)
    assert main(["request", "GET", f"http://127.0.0.1:{closed_port}/x"]) == code
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [line]
    assert captured.out == ""


# -- one line for an HTTP error; the defaults in --help ------------------------------------


def test_an_http_error_after_retries_says_so_in_one_line(sandbox):
    result = run("request", "GET", sandbox.url + "/status/503", "--retries", "1",
                 "--deadline", "10")
    assert result.returncode == EXIT_HTTP
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("surefoot: HTTP 503 Service Unavailable after 2 attempts (")
    assert "no attempts left" in lines[0]


def test_an_http_error_without_retries_says_so_too(sandbox):
    result = run("request", "GET", sandbox.url + "/status/404")
    assert result.returncode == EXIT_HTTP
    assert result.stderr.decode() == "surefoot: HTTP 404 Not Found after 1 attempt\n"


def test_help_shows_the_defaults():
    result = run("request", "--help")
    text = " ".join(result.stdout.decode().split())  # (argparse wraps the lines)
    for option, default in (("--retries", "3"), ("--deadline", "60.0"), ("--timeout", "30.0"),
                            ("--retry-after-cap", "120.0")):
        after = text.split(f"{option} {option.lstrip('-').upper().replace('-', '_')}")[-1]
        assert f"(default: {default})" in after.split(" --")[0], option


def test_a_missing_extra_names_the_pip_install():
    code = ("import sys; sys.modules['requests'] = None\n"
            "from surefoot.cli import main\n"
            "sys.exit(main(['request', 'GET', 'http://127.0.0.1:9/']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                            check=False)
    assert result.returncode == EXIT_USAGE
    assert result.stderr.decode() == (
        "surefoot: error: surefoot request needs requests, which is not installed: "
        "pip install 'surefoot[cli]'\n")
