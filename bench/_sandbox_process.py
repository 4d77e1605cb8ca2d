"""The sandbox API as a subprocess, for the benchmarks.

Running the server in another process keeps it off the benchmark's GIL. Its base URL is the
first line it prints; it is stopped on exit, also on error. :class:`QuotaSandbox` is one
with a quota, and the admin calls the quota benchmarks make.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests

__all__ = ["QuotaSandbox", "RawServerProcess", "SandboxProcess"]


class SandboxProcess:
    """``python -m surefoot.sandbox --port 0 [options]`` in a subprocess."""

    def __init__(self, options: Sequence[str] = (), timeout: float = 20.0) -> None:
        self.options = list(options)
        self.timeout = timeout
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def command(self) -> list[str]:
        """The subprocess's argument list; it must print its base URL as its first line."""
        return [sys.executable, "-m", "surefoot.sandbox", "--port", "0", *self.options]

    def url_from(self, line: str) -> str:
        """The base URL in the subprocess's first line (the sandbox prints just that)."""
        return line.strip().rstrip("/")

    def __enter__(self) -> SandboxProcess:
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            self.url = self.url_from(self._first_line())
            if not self.url.startswith("http://127.0.0.1:"):
                raise RuntimeError(f"sandbox printed {self.url!r}, not a 127.0.0.1 URL")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _first_line(self) -> str:
        process = self.process
        assert process is not None
        assert process.stdout is not None
        stdout = process.stdout
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=self.timeout)
        except queue.Empty:
            raise RuntimeError(f"sandbox printed no URL within {self.timeout:g} s") from None
        if not line:
            raise RuntimeError(f"sandbox exited with code {process.wait()} before printing a URL")
        return line

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()


class RawServerProcess(SandboxProcess):
    """``bench/_raw_server.py`` in a subprocess: an independent raw-asyncio loopback server."""

    def command(self) -> list[str]:
        from pathlib import Path

        return [sys.executable, str(Path(__file__).resolve().parent / "_raw_server.py")]


class QuotaSandbox(SandboxProcess):
    """The sandbox subprocess with a quota of ``rate``/s and ``burst``, plus its admin
    calls."""

    def __init__(self, rate: float, burst: int, timeout: float = 20.0) -> None:
        import requests  # here: the benchmarks without a quota do not load requests

        super().__init__(["--rate", repr(rate), "--burst", str(burst)], timeout)
        self.rate, self.burst = rate, burst
        self.admin: requests.Session = requests.Session()
        self.admin.trust_env = False

    def __enter__(self) -> QuotaSandbox:
        super().__enter__()
        return self

    def reset(self) -> None:
        self.admin.post(f"{self.url}/admin/reset", timeout=10).raise_for_status()

    def outage(self, seconds: float) -> None:
        response = self.admin.post(f"{self.url}/admin/outage", params={"seconds": seconds},
                                   timeout=10)
        response.raise_for_status()

    def stats(self) -> dict[str, Any]:
        response = self.admin.get(f"{self.url}/stats", timeout=10)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        self.admin.close()
        super().stop()
