"""Every example in the documentation runs: README.md and docs/**/*.md.

Each fenced ``python`` block, and each ``sh`` block that invokes the ``surefoot`` CLI, is
one test (its id is ``file:line``), run against a real sandbox on loopback. Other fences
(``text``, untagged, ``toml``, shell commands that are not the CLI) are not code.

**Default: a block runs as written**, in a fresh namespace (``sh``: a fresh ``bash -e``),
in an empty temporary working directory that is also ``$HOME``, with these rewrites of
its text (the reader sees the real-looking URLs, the test hits the sandbox):

* ``https://api.example.com`` -> the sandbox URL + the block's API prefix
  (``/anything`` by default, the echo route; see ``api=`` below);
* ``https://auth.example.com`` -> the sandbox URL (its ``/oauth/token``, ``/oauth/revoke``);
* ``http://127.0.0.1:8080`` (where the tutorial starts ``surefoot sandbox --port 8080``)
  -> the sandbox URL;
* ``redis+cluster://redis-a.internal:7000,...`` -> a real Redis Cluster (the
  ``redis_cluster_url`` fixture)
* ``redis+sentinel://sentinel-a.internal:26379,.../mymaster`` -> a real primary, replica
  and Sentinels (the ``redis_sentinel_url`` fixture)
* ``redis://redis.internal:6379/0`` -> a real ``redis-server`` (the ``redis_url`` fixture
  of ``tests/conftest.py``: skipped locally without the binary, a failure in CI);
* ``/var/lib/myapp/`` and ``/var/run/myapp/`` -> the temporary directory.

Blocks run with ``__name__ == "__docs__"`` (an ``if __name__ == "__main__":`` part does not
run), and the environment, ``sys.path`` and the modules imported from the working
directory are restored afterwards.

The sandbox knows the credentials the examples use (``client-id``/``client-secret``,
``my-key-id``/``my-secret``, and its own ``demo-*`` ones), and the working directory holds
the files they read: ``client.pem`` and ``client-key.pem`` (an Ed25519 private key),
``body.json``, ``order.json``, ``cat.jpg`` and ``secret.txt`` (``my-secret``).

**A directive** — an HTML comment on the line right before the fence (invisible on GitHub,
PyPI and the site) — changes that, with space-separated options::

    <!-- test: api=/signed given=signed_request -->
    <!-- test: continue -->
    <!-- test: skip="serves until interrupted" -->

* ``api=PATH`` — the sandbox route ``https://api.example.com`` stands for (``/signed``:
  HMAC-verified, ``/limited``: the quota, ``""``: the root);
* ``origin=URL[,URL]`` — more origins that stand for the same (an S3 bucket ...);
* ``given=NAME[,NAME]`` — predefine the names of these entries of :data:`GIVEN` (a
  server-side example receives ``method, url, headers, body``; ``sh``: environment);
* ``continue`` — run after the blocks before it in the same file, in their namespace
  and directory (a page that builds one program over several blocks);
* ``file=PATH`` — not run: written to ``PATH`` in the working directory, which is on
  ``sys.path`` (a project's files, imported by a later block that continues it);
* ``skip="REASON"`` — not runnable; the reason is required, and such blocks are counted
  (:data:`MAX_SKIPPED`).

**A check** — an HTML comment right after the closing fence, ``<!-- check: ... -->`` —
is Python run after the block in its namespace (plus ``sandbox``, the running
:class:`~surefoot.sandbox.Sandbox`; ``sh``: ``stdout``, ``stderr``), to assert what the
example claims.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import inspect
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from surefoot.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BIN = Path(sys.executable).parent

#: At most this many blocks may be marked ``skip`` (raise it only with a reason).
MAX_SKIPPED = 6

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
DIRECTIVE = re.compile(r"^\s*<!--\s*test:(?P<options>.*?)-->\s*$")
CHECK_OPEN = re.compile(r"^\s*<!--\s*check:(?P<rest>.*)$")
OPTIONS = {"api", "origin", "given", "continue", "skip", "file"}
CLI = re.compile(r"^(\s*[A-Z_][A-Z0-9_]*=\S*\s+)*surefoot\s", re.M)


@dataclass
class Block:
    path: str  # relative to the repository root
    line: int  # of the opening fence
    lang: str  # "python" or "sh"
    code: str
    options: dict[str, str] = field(default_factory=dict)
    check: str = ""

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def parse_options(text: str, where: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for token in shlex.split(text):
        name, _, value = token.partition("=")
        if name not in OPTIONS:
            raise ValueError(f"{where}: unknown test option {name!r}")
        options[name] = value
    if "skip" in options and not options["skip"].strip():
        raise ValueError(f"{where}: skip needs a reason: skip=\"...\"")
    return options


def extract(doc: Path) -> list[Block]:
    """The runnable blocks of one Markdown file, with their directives and checks."""
    rel = doc.relative_to(ROOT).as_posix()
    lines = doc.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    at = 0
    while at < len(lines):
        opened = FENCE.match(lines[at])
        if not opened:
            if DIRECTIVE.match(lines[at]) and not (
                at + 1 < len(lines) and FENCE.match(lines[at + 1])
            ):
                raise ValueError(f"{rel}:{at + 1}: a test directive must be right before a fence")
            at += 1
            continue
        start, indent, fence = at, opened["indent"], opened["fence"]
        lang = opened["lang"].lower()
        body: list[str] = []
        at += 1
        while at < len(lines) and not lines[at].strip().startswith(fence):
            line = lines[at]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            at += 1
        at += 1  # the closing fence
        code = "\n".join(body) + "\n"
        directive = DIRECTIVE.match(lines[start - 1]) if start else None
        options = parse_options(directive["options"], f"{rel}:{start}") if directive else {}
        check = ""
        if at < len(lines) and (opening := CHECK_OPEN.match(lines[at])):
            text = [opening["rest"]]
            while "-->" not in text[-1]:
                at += 1
                text.append(lines[at])
            text[-1] = text[-1].split("-->")[0]
            at += 1
            check = inspect.cleandoc("\n".join(text)).strip()
        if lang in {"sh", "bash", "shell", "console"}:
            if not (CLI.search(code) or options):
                continue  # a shell command, not the CLI: not an example of surefoot's
            lang = "sh"
        elif lang not in {"python", "py"}:
            if directive or check:
                raise ValueError(f"{rel}:{start + 1}: a ```{lang} block is never run")
            continue
        else:
            lang = "python"
        blocks.append(Block(rel, start + 1, lang, code, options, check))
    return blocks


BLOCKS = [block for doc in DOCS for block in extract(doc)]


# --- what the examples are given ------------------------------------------------------


@dataclass
class Context:
    sandbox: Sandbox
    api: str  # what https://api.example.com stands for
    tmp: Path
    env: dict[str, str]


def _signed_request(ctx: Context) -> dict[str, object]:
    """A request as a server receives it, signed by ``my-key-id``."""
    from surefoot.signing import HmacSigner, HttpRequest

    url = ctx.api + "/v1/payments"
    body = b'{"amount": 100}'
    headers = {"Content-Type": "application/json"}
    headers |= HmacSigner("my-key-id", "my-secret").sign(HttpRequest("POST", url, headers, body))
    return {"method": "POST", "url": url, "headers": headers, "body": body}


def _aws(ctx: Context) -> dict[str, object]:
    """AWS's documented example credentials (sh: in the environment)."""
    from surefoot.signing import SigV4Credentials

    access_key, secret_key = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    token = "example-session-token"
    ctx.env |= {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    return {
        "access_key": access_key, "secret_key": secret_key, "token": token,
        "get_credentials": lambda: SigV4Credentials(access_key, secret_key, token),
        "jpeg": (ctx.tmp / "cat.jpg").read_bytes(),
    }


def _tokens(ctx: Context) -> dict[str, object]:
    """A client-credentials grant on the sandbox and a retry policy."""
    import surefoot

    token_url = ctx.sandbox.url + "/oauth/token"
    cid, secret = "client-id", "client-secret"
    return {
        "token_url": token_url, "cid": cid, "secret": secret,
        "auth": surefoot.BearerAuth.client_credentials(token_url, cid, secret),
        "policy": surefoot.RetryPolicy(),
    }


def _refresh_token(ctx: Context) -> dict[str, object]:
    """A refresh token, as a login flow would have obtained it."""
    import requests

    answer = requests.post(
        ctx.sandbox.url + "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "orders:read"},
        auth=("client-id", "client-secret"),
        timeout=10,
    )
    answer.raise_for_status()
    return {"refresh_token_from_your_login_flow": answer.json()["refresh_token"]}


def _secrets(ctx: Context) -> dict[str, object]:
    """sh: the secrets the CLI examples read from the environment."""
    ctx.env |= {
        "API_SECRET": base64.b64encode(b"my-secret").decode(),
        "SUREFOOT_HMAC_SECRET": "my-secret",
        "SUREFOOT_CLIENT_SECRET": "client-secret",
    }
    return {}


GIVEN: dict[str, Callable[[Context], dict[str, object]]] = {
    "signed_request": _signed_request,
    "aws": _aws,
    "tokens": _tokens,
    "refresh_token": _refresh_token,
    "secrets": _secrets,
}


def _write_files(tmp: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp / "client.pem").write_bytes(pem)
    (tmp / "client-key.pem").write_bytes(pem)
    (tmp / "body.json").write_text('{"sku": "book"}')
    (tmp / "order.json").write_text('{"sku": "book", "quantity": 1}')
    (tmp / "cat.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a cat \xff\xd9")
    (tmp / "secret.txt").write_text("my-secret")


# --- running them ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def docs_sandbox() -> Iterator[Sandbox]:
    with Sandbox(
        clients={"client-id": "client-secret", "demo-client": "demo-secret"},
        hmac_keys={"my-key-id": "my-secret", "demo-key": "demo-secret"},
        refresh_tokens=True,
    ) as sandbox:
        yield sandbox


def chain(block: Block) -> list[Block]:
    """The block and, with ``continue``, the blocks of its file that it continues."""
    same_file = [b for b in BLOCKS if b.path == block.path and b.line <= block.line]
    out = [block]
    for earlier in reversed(same_file[:-1]):
        if "continue" not in out[0].options:
            break
        out.insert(0, earlier)
    return out


#: the Redis Cluster the docs' examples name, and what stands for it (a real cluster, the
#: ``redis_cluster_url`` fixture)
CLUSTER_URL = "redis+cluster://redis-a.internal:7000,redis-b.internal:7000"
#: the Sentinels the docs' examples name, and what stands for them (real ones, the
#: ``redis_sentinel_url`` fixture)
SENTINEL_URL = "redis+sentinel://sentinel-a.internal:26379,sentinel-b.internal:26379/mymaster"


def rewrite(code: str, block: Block, ctx: Context, redis_url: Callable[[], str],
            redis_cluster_url: Callable[[], str],
            redis_sentinel_url: Callable[[], str]) -> str:
    code = code.replace("https://api.example.com", ctx.api)
    for origin in filter(None, block.options.get("origin", "").split(",")):
        code = code.replace(origin, ctx.api)
    code = code.replace("https://auth.example.com", ctx.sandbox.url)
    code = code.replace("http://127.0.0.1:8080", ctx.sandbox.url)
    if "redis://redis.internal:6379/0" in code:
        code = code.replace("redis://redis.internal:6379/0", redis_url())
    if CLUSTER_URL in code:
        code = code.replace(CLUSTER_URL, redis_cluster_url())
    if SENTINEL_URL in code:
        code = code.replace(SENTINEL_URL, redis_sentinel_url())
    return re.sub(r"/var/(lib|run)/myapp/", lambda _: str(ctx.tmp) + "/", code)


def run_python(code: str, block: Block, namespace: dict[str, object]) -> None:
    compiled = compile(
        code, block.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )
    if compiled.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(compiled, namespace))  # noqa: S307 - top-level await in a block
    else:
        exec(compiled, namespace)  # noqa: S102


def run_sh(code: str, block: Block, ctx: Context, namespace: dict[str, object]) -> None:
    env = {**os.environ, **ctx.env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", code], cwd=ctx.tmp, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, (
        f"{block.id}: exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )
    namespace |= {"stdout": done.stdout, "stderr": done.stderr}


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_example_runs(
    block: Block,
    docs_sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    if "skip" in block.options:
        pytest.skip(f"not runnable: {block.options['skip']}")
    docs_sandbox.reset()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path))
    _write_files(tmp_path)
    environ = dict(os.environ)
    try:
        run_chain(block, docs_sandbox, tmp_path, request)
    finally:
        os.environ.clear()
        os.environ.update(environ)
        for name, module in list(sys.modules.items()):
            where = getattr(module, "__file__", None) or [*getattr(module, "__path__", ()), ""][0]
            if str(where).startswith(str(tmp_path)):
                del sys.modules[name]


def run_chain(
    block: Block, docs_sandbox: Sandbox, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for step in chain(block):
        ctx = Context(docs_sandbox, docs_sandbox.url + step.options.get("api", "/anything"),
                      tmp_path, {})
        for name in filter(None, step.options.get("given", "").split(",")):
            namespace |= GIVEN[name](ctx)
        code = rewrite(step.code, step, ctx, lambda: request.getfixturevalue("redis_url"),
                       lambda: request.getfixturevalue("redis_cluster_url"),
                       lambda: request.getfixturevalue("redis_sentinel_url"))
        if "file" in step.options:
            target = tmp_path / step.options["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(code, encoding="utf-8")
        elif step.lang == "python":
            run_python(code, step, namespace)
        else:
            run_sh(code, step, ctx, namespace)
        if step.check:
            check = rewrite(step.check, step, ctx, lambda: request.getfixturevalue("redis_url"),
                            lambda: request.getfixturevalue("redis_cluster_url"),
                            lambda: request.getfixturevalue("redis_sentinel_url"))
            exec(compile(check, f"{step.id} (check)", "exec"),  # noqa: S102
                 {**namespace, "sandbox": docs_sandbox})


# --- the harness itself ---------------------------------------------------------------


def test_there_are_examples_in_every_part() -> None:
    files = {b.path for b in BLOCKS}
    assert "README.md" in files
    assert len(BLOCKS) >= 25
    assert any(b.lang == "sh" for b in BLOCKS)


def test_skips_are_rare_and_explained() -> None:
    skipped = [b for b in BLOCKS if "skip" in b.options]
    assert len(skipped) <= MAX_SKIPPED, [f"{b.id}: {b.options['skip']}" for b in skipped]


def test_directives_name_known_fixtures() -> None:
    for block in BLOCKS:
        for name in filter(None, block.options.get("given", "").split(",")):
            assert name in GIVEN, f"{block.id}: unknown given {name!r}"
        if "continue" in block.options:
            assert len(chain(block)) > 1, f"{block.id}: continues nothing"


def test_extraction(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "text\n\n```python\na = 1\n```\n<!-- check: assert a == 1 -->\n\n"
        "```text\nnot code\n```\n\n```sh\npip install x\n```\n\n"
        "<!-- test: api=/signed given=aws continue -->\n```python\nb = a\n```\n"
        "<!-- check:\n  assert b == 1\n-->\n\n"
        "- item\n\n    ```sh\n    surefoot request GET https://api.example.com/x\n    ```\n"
    )
    global ROOT  # noqa: PLW0603
    saved, ROOT = ROOT, tmp_path
    try:
        blocks = extract(doc)
    finally:
        ROOT = saved
    assert [(b.line, b.lang) for b in blocks] == [(3, "python"), (17, "python"), (26, "sh")]
    assert blocks[0].check == "assert a == 1"
    assert blocks[1].options == {"api": "/signed", "given": "aws", "continue": ""}
    assert blocks[1].check == "assert b == 1"
    assert blocks[2].code == "surefoot request GET https://api.example.com/x\n"
