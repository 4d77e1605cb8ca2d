"""Server-side signature verification as WSGI and ASGI middleware.

::

    from surefoot.middleware import VerifyASGI, VerifyWSGI
    from surefoot.signing import HmacVerifier

    verifier = HmacVerifier({"my-key-id": "my-secret"})
    app = VerifyWSGI(app, verifier, protect=["/v1"])        # Flask, Django, any WSGI app
    app = VerifyASGI(app, verifier, protect=["/v1"])        # Starlette, FastAPI, any ASGI app

The verifier is any :class:`~surefoot.signing.Verifier`: a
:class:`~surefoot.signing.HmacVerifier` (the tutorial's scheme), a
:class:`~surefoot.signing.MessageVerifier` (RFC 9421), a
:class:`~surefoot.signing.SigV4Verifier`, or your own. For each protected request the
middleware

1. reads the body (at most ``max_body`` bytes, else ``413``) and hands the application the
   same bytes: WSGI gets a fresh ``wsgi.input`` (and a ``CONTENT_LENGTH`` that matches);
   ASGI gets the body replayed through a wrapped ``receive``, after which ``receive`` is
   the server's own again (``http.disconnect`` passes through);
2. rebuilds the request as the client sent it: the method, the absolute URL (the scheme
   and ``Host`` of the request, or — only with ``trust_forwarded`` — those a trusted proxy
   put in ``X-Forwarded-Proto`` / ``X-Forwarded-Host``; the raw path and query as
   received when the server gives them: WSGI ``REQUEST_URI``/``RAW_URI``, ASGI
   ``raw_path``), the header field lines, and the body;
3. verifies it: ``verifier.verify(request)``, with the :class:`SignedRequest`. A valid
   request goes on to the application with an :class:`Identity` in
   ``environ["surefoot.identity"]`` (WSGI) or in ``scope["state"]["surefoot_identity"]``
   and ``scope["surefoot.identity"]`` (ASGI; Starlette: ``request.state.surefoot_identity``);
   :func:`identity` reads either. An invalid one gets ``401`` with the JSON body
   ``{"error": "invalid_signature", "reason": "<reason>"}`` and the verifier's challenge
   (``verifier.challenge(error)``: a ``WWW-Authenticate``; RFC 9421 adds an
   ``Accept-Signature`` saying what to sign when the signature is missing or falls short
   of the policy). A fail-closed nonce store that is down
   (:class:`~surefoot.StoreUnavailable`) gets ``503`` with ``Retry-After: 1``: the request
   may be fine, it could not be checked. Malformed requests get ``400`` and a short JSON
   body (``{"error": "bad_request", "message": ...}``), never an exception: an unparseable
   ``Content-Length``, a ``Host`` (or trusted ``X-Forwarded-Host``) that is not an
   RFC 3986 authority (``host[:port]``, a bracketed IPv6 or IPvFuture literal, a port up
   to 65535), a request target with spaces or control characters, a method or a field
   name that is not a token, a field value with CR, LF, NUL or another control character
   (or, WSGI, a character beyond Latin-1), and a request a verifier fails to parse
   (its ``ValueError``, logged at WARNING by type only). Field lines larger than
   ``MAX_HEADER_BYTES`` (64 KiB in all) get ``431``, a target longer than ``MAX_TARGET``
   (64 KiB) ``414``.

**A server that breaks PEP 3333 or the ASGI spec** — a value of another type or shape
where the middleware reads one: a ``PATH_INFO`` or ``REQUEST_METHOD`` that is not a
``str``, a ``wsgi.input`` that is no stream (or whose ``read`` gives no bytes), a
``scope["client"]`` or ``scope["server"]`` that is not a ``[host, port]`` pair, a header
or a body that is not bytes — cannot have its request rebuilt as the client sent it. One
rule for all of them: ``400`` (``{"error": "bad_request", ...}``) for that request, and a
WARNING log line naming the key and the value's type (never the value), so that the
server's bug is seen; never an exception. When the method or the path itself is wrong,
whether the request is protected cannot be told: it is refused all the same.

Responses and logs carry reason codes only: never a key, a secret, a signature or a
header value. Rejections are logged at DEBUG (store failures at WARNING) on the
``surefoot.middleware`` logger, with the method and path but not the query.

**Which paths.** ``protect`` is ``None`` (every request), a list of path prefixes
matched segment-wise (``"/api"`` protects ``/api`` and ``/api/...`` but not
``/apiary``) against the path the wrapped application routes on (WSGI ``PATH_INFO``, ASGI
``scope["path"]``) — as it is, with repeated slashes collapsed, and with ``.``/``..``
segments resolved (a match of any of the three protects the request) — or a predicate
``(method, path) -> bool``. Everything else passes through untouched. Protecting
everything and exempting a few paths with a predicate is the safer way round.

**Repeated headers.** ASGI servers give each field line; they are passed on as they are.
WSGI servers join repeated headers into one ``HTTP_*`` value (with ``,``, or ``", "``),
so :class:`VerifyWSGI` marks its :class:`SignedRequest` ``lines_joined``: a
:class:`~surefoot.signing.MessageVerifier` then verifies an RFC 9421 signature over a
repeated header (its lines joined with ``", "``, or one byte sequence each with ``bs``)
whichever way the server joined it, reading a value with a comma as one line or as the
lines it was joined from. A join that cannot be read back — one of the lines has a
comma of its own not followed by a space (``a,b`` and ``c`` arrive as ``a,b,c``) — is
refused (``401``, ``bad_signature``), never verified under another reading: send such a
header on one line. SigV4 joins repeated headers with ``,`` as wsgiref, gunicorn and
werkzeug do; the HMAC scheme signs no header but its own.

**Blocking.** The verifiers are synchronous. With a nonce store that does I/O (Redis,
SQLite; ``verifier.blocking``), :class:`VerifyASGI` runs the verification in a worker
thread (``asyncio.to_thread``; ``offload=`` forces it either way).

The shared request checking is in :mod:`._guard`, the WSGI side in :mod:`._wsgi`, the
ASGI side in :mod:`._asgi`.
"""

from __future__ import annotations

from surefoot.middleware._asgi import VerifyASGI
from surefoot.middleware._guard import (
    DEFAULT_MAX_BODY,
    ENVIRON_KEY,
    SCOPE_KEY,
    STATE_KEY,
    identity,
)
from surefoot.middleware._wsgi import VerifyWSGI
from surefoot.signing._protocols import Identity, SignedRequest

__all__ = [
    "DEFAULT_MAX_BODY",
    "ENVIRON_KEY",
    "SCOPE_KEY",
    "STATE_KEY",
    "Identity",
    "SignedRequest",
    "VerifyASGI",
    "VerifyWSGI",
    "identity",
]
