"""`surefoot request` and `surefoot demo`, run as real subprocesses."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from surefoot._cli import EXIT_AUTH, EXIT_HTTP, EXIT_OK, EXIT_TRANSPORT, EXIT_USAGE


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
