"""A lean threaded HTTP/1.1 keep-alive WSGI server built on the standard library.

One daemon thread per connection, connections kept alive, bodies buffered so that every
response carries ``Content-Length``. The application gets socket control through the
environ key ``surefoot.connection`` (:class:`ConnectionControl`) to simulate resets,
silent closes and truncated responses.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from _typeshed import OptExcInfo
    from _typeshed.wsgi import WSGIApplication

__all__ = ["MAX_BODY", "ConnectionControl", "SandboxHTTPServer"]

#: Largest request body accepted (413 above).
MAX_BODY = 16 * 1024 * 1024
_MAX_LINE = 65536
_MAX_HEADERS = 100
_VERSIONS = frozenset({"HTTP/1.1", "HTTP/1.0"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_HOP_BY_HOP = frozenset({"content-length", "connection", "transfer-encoding", "keep-alive"})
_LINGER_RESET = struct.pack("ii", 1, 0)
_date_cache: list[Any] = [0, ""]


def _http_date() -> str:
    now = int(time.time())
    cache = _date_cache
    if cache[0] != now:
        cache[1] = formatdate(now, usegmt=True)
        cache[0] = now
    return str(cache[1])


def _reason(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Unknown"


class _HTTPError(Exception):
    """A request the server itself rejects; answered, then the connection is closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _ClientGone(Exception):
    """The client closed the connection mid-request."""


class ConnectionControl:
    """Ends the current connection abnormally. After any call nothing more is written."""

    __slots__ = ("_handler", "taken")

    def __init__(self, handler: _Handler) -> None:
        self._handler = handler
        self.taken = False

    def _take(self) -> socket.socket | None:
        if self.taken:
            return None
        self.taken = True
        self._handler.close_connection = True
        sock: socket.socket = self._handler.connection
        return sock

    def _close(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self._handler.rfile.close()  # drop the makefile() reference so close() is real
        sock.close()

    def reset(self) -> None:
        """Close with SO_LINGER (1, 0): the client sees ECONNRESET, no response."""
        sock = self._take()
        if sock is None:
            return
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self._close(sock)

    def close(self) -> None:
        """Close without a response (a clean FIN)."""
        sock = self._take()
        if sock is None:
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        self._close(sock)

    def take_over(self, write: Callable[[socket.socket], None]) -> None:
        """Hand the raw socket to ``write`` (a response written by hand: a trickled
        body, say), then close it. Nothing happens if the connection is already ended."""
        sock = self._take()
        if sock is None:
            return
        try:
            write(sock)
        finally:
            self._close(sock)

    def truncate(
        self,
        status: int | str,
        headers: Iterable[tuple[str, str]],
        body_prefix: bytes,
        announced_length: int,
    ) -> None:
        """Send headers announcing ``announced_length`` bytes, only ``body_prefix``, then close."""
        sock = self._take()
        if sock is None:
            return
        status_line = f"{status} {_reason(status)}" if isinstance(status, int) else status
        lines = [f"HTTP/1.1 {status_line}\r\n", f"Date: {_http_date()}\r\n"]
        lines.extend(
            f"{name}: {value}\r\n" for name, value in headers if name.lower() not in _HOP_BY_HOP
        )
        lines.append(f"Content-Length: {max(announced_length, len(body_prefix) + 1)}\r\n\r\n")
        with contextlib.suppress(OSError):
            sock.sendall("".join(lines).encode("latin-1") + body_prefix)
            sock.shutdown(socket.SHUT_RDWR)
        self._close(sock)


class _Handler(BaseHTTPRequestHandler):
    """Parses HTTP/1.1 requests (lean, no email parser) and runs the WSGI application."""

    protocol_version = "HTTP/1.1"
    server_version = "surefoot-sandbox"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 120.0  # idle keep-alive connections are dropped after this
    server: SandboxHTTPServer
    control: ConnectionControl

    def setup(self) -> None:
        super().setup()
        self.control = ConnectionControl(self)
        self.requestline = ""
        self.command = ""
        self.request_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def handle_one_request(self) -> None:
        try:
            self._serve_one()
        except _HTTPError as exc:
            self._send_error(exc.status, exc.message)
        except (OSError, _ClientGone):
            self.close_connection = True
        except Exception:
            self.close_connection = True
            sys.stderr.write("surefoot sandbox: internal server error\n")
            traceback.print_exc(file=sys.stderr)
            self._send_error(500, "internal server error")

    # -- request parsing -------------------------------------------------------------------

    def _read_line(self, too_long: int) -> bytes:
        line = self.rfile.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise _HTTPError(too_long, "line too long")
        return line

    def _read_headers(self) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = []
        while True:
            line = self._read_line(431)
            if not line:
                raise _ClientGone
            if line in (b"\r\n", b"\n"):
                return headers
            if line[:1] in (b" ", b"\t"):
                raise _HTTPError(400, "obsolete header line folding")
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep or not _TOKEN.fullmatch(name):
                raise _HTTPError(400, "malformed header line")
            headers.append((name, value.strip()))
            if len(headers) > _MAX_HEADERS:
                raise _HTTPError(431, "too many headers")

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self._read_line(400)
            if not line:
                raise _ClientGone
            size_text = line.split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(size_text):
                raise _HTTPError(400, "malformed chunk size")
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > MAX_BODY:
                raise _HTTPError(413, "request body too large")
            data = self.rfile.read(size)
            if len(data) < size:
                raise _ClientGone
            chunks.append(data)
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise _HTTPError(400, "malformed chunk")
        for _ in range(_MAX_HEADERS):  # trailers: read and ignore
            line = self._read_line(431)
            if not line:
                raise _ClientGone
            if line in (b"\r\n", b"\n"):
                return b"".join(chunks)
        raise _HTTPError(431, "too many trailers")

    def _serve_one(self) -> None:
        request_line = self._request_line()
        if request_line is None:
            return
        method, target, version = request_line
        env, framing = self._environ(self._read_headers(), version)
        env["wsgi.input"] = io.BytesIO(self._read_body(env, *framing))
        self._locate(env, method, target, version)
        response = self._run_app(env)
        if response is None:  # the application took the connection over
            self.close_connection = True
            return
        self._write_response(method, version, *response)

    def _request_line(self) -> tuple[str, str, str] | None:
        """(method, target, version); ``None`` at the end of the connection or for a stray
        CRLF between requests (allowed)."""
        line = self._read_line(414)
        if not line:
            self.close_connection = True
            return None
        if line in (b"\r\n", b"\n"):
            self.close_connection = False
            return None
        text = line.decode("latin-1").rstrip("\r\n")
        self.requestline = text
        parts = text.split(" ")
        if len(parts) != 3:
            raise _HTTPError(400, "malformed request line")
        method, target, version = parts
        self.command, self.path = method, target
        if version not in _VERSIONS:
            raise _HTTPError(505 if version.startswith("HTTP/") else 400, "unsupported version")
        self.request_version = version
        if not _TOKEN.fullmatch(method):
            raise _HTTPError(400, "malformed method")
        return method, target, version

    def _environ(
        self, headers: list[tuple[str, str]], version: str
    ) -> tuple[dict[str, Any], tuple[str | None, str | None, bool]]:
        """The WSGI environ of the headers, and the body's framing: (Content-Length,
        Transfer-Encoding, Expect: 100-continue). Sets ``close_connection``."""
        env = self.server.base_environ.copy()
        close = version == "HTTP/1.0"
        content_length: str | None = None
        transfer_encoding: str | None = None
        expect_continue = False
        for name, value in headers:
            key = name.upper().replace("-", "_")
            if key == "CONTENT_LENGTH":
                if content_length is not None and content_length != value:
                    raise _HTTPError(400, "conflicting Content-Length headers")
                content_length = value
                continue
            if key == "CONTENT_TYPE":
                env["CONTENT_TYPE"] = value
                continue
            if key == "CONNECTION":
                tokens = {t.strip() for t in value.lower().split(",")}
                if "close" in tokens:
                    close = True
                elif "keep-alive" in tokens and version == "HTTP/1.0":
                    close = False
            elif key == "TRANSFER_ENCODING":
                transfer_encoding = value
            elif key == "EXPECT":
                expect_continue = value.lower() == "100-continue"
            key = "HTTP_" + key
            env[key] = f"{env[key]},{value}" if key in env else value
        self.close_connection = close
        if version == "HTTP/1.1" and "HTTP_HOST" not in env:
            raise _HTTPError(400, "missing Host header")
        return env, (content_length, transfer_encoding, expect_continue)

    def _read_body(
        self,
        env: dict[str, Any],
        content_length: str | None,
        transfer_encoding: str | None,
        expect_continue: bool,
    ) -> bytes:
        body = b""
        if transfer_encoding is not None:
            if content_length is not None:
                raise _HTTPError(400, "both Transfer-Encoding and Content-Length")
            if transfer_encoding.lower() != "chunked":
                raise _HTTPError(501, "unsupported Transfer-Encoding")
            if expect_continue:
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = self._read_chunked()
            env["CONTENT_LENGTH"] = str(len(body))
        elif content_length is not None:
            if not (content_length.isascii() and content_length.isdigit()):
                raise _HTTPError(400, "malformed Content-Length")
            size = int(content_length)
            if size > MAX_BODY:
                raise _HTTPError(413, "request body too large")
            if size:
                if expect_continue:
                    self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = self.rfile.read(size)
                if len(body) < size:
                    raise _ClientGone
            env["CONTENT_LENGTH"] = str(size)
        return body

    def _locate(self, env: dict[str, Any], method: str, target: str, version: str) -> None:
        """The request target and the connection, in the environ."""
        raw = target
        if target.startswith(("http://", "https://")):  # absolute-form
            rest = target.split("://", 1)[1]
            slash = rest.find("/")
            authority, raw = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
            env.setdefault("HTTP_HOST", authority)
        elif not target.startswith("/") and target != "*":
            raise _HTTPError(400, "malformed request target")
        path, _, query = raw.partition("?")
        env["REQUEST_METHOD"] = method
        env["PATH_INFO"] = unquote(path, "latin-1") if "%" in path else path
        env["QUERY_STRING"] = query
        env["REQUEST_URI"] = env["RAW_URI"] = raw
        env["SERVER_PROTOCOL"] = version
        env["REMOTE_ADDR"] = self.client_address[0]
        env["REMOTE_PORT"] = str(self.client_address[1])
        env["surefoot.connection"] = self.control

    # -- application -----------------------------------------------------------------------

    def _run_app(self, env: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes] | None:
        state: list[Any] = []
        chunks: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None, /
        ) -> Callable[[bytes], object]:
            if exc_info is None and state:
                raise AssertionError("start_response called twice without exc_info")
            state[:] = [status, headers]
            return chunks.append

        try:
            result = self.server.app(env, start_response)
            try:
                if isinstance(result, list):
                    chunks.extend(result)
                else:
                    chunks.extend(chunk for chunk in result if chunk)
            finally:
                closer = getattr(result, "close", None)
                if closer is not None:
                    closer()
        except Exception:
            if self.control.taken:
                return None
            sys.stderr.write("surefoot sandbox: application error\n")
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            return (
                "500 Internal Server Error",
                [("Content-Type", "application/json")],
                (b'{"error": "internal server error"}'),
            )
        if self.control.taken:
            return None
        if not state:
            self.close_connection = True
            return "500 Internal Server Error", [], b""
        return state[0], state[1], chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _write_response(
        self, method: str, version: str, status: str, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        code = int(status[:3])
        lines = [f"HTTP/1.1 {status}\r\nServer: surefoot-sandbox\r\nDate: {_http_date()}\r\n"]
        for name, value in headers:
            if "\n" in value or "\r" in value or not _TOKEN.fullmatch(name):
                raise _HTTPError(500, "invalid response header")
            if name.lower() in _HOP_BY_HOP:
                if name.lower() == "connection" and "close" in value.lower():
                    self.close_connection = True
                continue
            lines.append(f"{name}: {value}\r\n")
        if code in (204, 304) or code < 200:
            body = b""
        else:
            lines.append(f"Content-Length: {len(body)}\r\n")
            if method == "HEAD":
                body = b""
        if self.close_connection:
            lines.append("Connection: close\r\n")
        elif version == "HTTP/1.0":
            lines.append("Connection: keep-alive\r\n")
        lines.append("\r\n")
        try:
            data = "".join(lines).encode("latin-1")
        except UnicodeEncodeError:
            raise _HTTPError(500, "invalid response header") from None
        self.wfile.write(data + body if body else data)
        if self.server.verbose:
            self.log_request(code, len(body))

    def _send_error(self, status: int, message: str) -> None:
        self.close_connection = True
        if self.control.taken:
            return
        body = json.dumps({"error": message}).encode()
        head = (
            f"HTTP/1.1 {status} {_reason(status)}\r\nServer: surefoot-sandbox\r\n"
            f"Date: {_http_date()}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            self.wfile.write(head.encode("latin-1") + body)
        if self.server.verbose:
            self.log_error("%s %s", status, message)


class SandboxHTTPServer(ThreadingHTTPServer):
    """Threaded HTTP/1.1 server running a WSGI application; tracks open connections."""

    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], app: WSGIApplication, *, verbose: bool = False
    ) -> None:
        self.app = app
        self.verbose = verbose
        self.base_environ: dict[str, Any] = {}
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # Skip HTTPServer.server_bind: its socket.getfqdn() can block on reverse DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.base_environ = {
            "SCRIPT_NAME": "",
            "SERVER_NAME": self.server_name,
            "SERVER_PORT": str(self.server_port),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
        }

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut down every open connection so that its handler thread ends."""
        with self._connections_lock:
            connections = list(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)
