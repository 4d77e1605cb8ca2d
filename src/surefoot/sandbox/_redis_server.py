"""A throw-away ``redis-server`` on a free loopback port, for tests and benchmarks.

::

    with RedisServer() as server:
        store = RedisStore(server.url)
        ...
        server.kill()      # chaos: the server dies mid-run
        server.start()     # back on the same port, empty

It runs the real ``redis-server`` binary (Debian: ``apt-get install redis-server``),
with no persistence, in a temporary directory.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType

__all__ = ["RedisServer", "RedisServerNotFound"]


class RedisServerNotFound(RuntimeError):
    """No ``redis-server`` binary on PATH (or at ``$SUREFOOT_REDIS_SERVER``)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process. ``port=0`` picks a free port."""

    def __init__(self, *, port: int = 0, binary: str | None = None) -> None:
        found = binary or os.environ.get("SUREFOOT_REDIS_SERVER") or shutil.which("redis-server")
        if not found:
            raise RedisServerNotFound(
                "redis-server not found (Debian/Ubuntu: apt-get install -y redis-server)"
            )
        self.binary = found
        self.port = port or _free_port()
        self._dir = tempfile.mkdtemp(prefix="surefoot-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self.running:
            return self
        self._process = subprocess.Popen(  # noqa: S603 - our own argument list
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self._dir,
                "--daemonize", "no",
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            if self._process.poll() is not None:
                err = (self._process.stderr.read() if self._process.stderr else b"").decode()
                raise RuntimeError(f"redis-server exited at start: {err.strip()[:500]}")
            if self._ping():
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: the server vanishes at once, as in a crash."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(5)
        self._process = None

    def stop(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                process.kill()
                process.wait(5)
        self._process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
