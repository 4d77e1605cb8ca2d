"""A throw-away ``redis-server`` on a free loopback port, for tests and benchmarks.

::

    with RedisServer() as server:
        store = RedisStore(server.url)
        ...
        server.kill()      # chaos: the server dies mid-run
        server.start()     # back on the same port, empty

It runs the real ``redis-server`` binary (Debian: ``apt-get install redis-server``),
with no persistence, in a temporary directory.

:class:`RedisClusterServer` is a real Redis Cluster of such servers (3 primaries, one
replica each by default), made with ``redis-cli --cluster create``::

    with RedisClusterServer() as cluster:
        store = RedisStore(cluster.url)         # redis+cluster://127.0.0.1:P1,...
        cluster.failover(cluster.primary_of_slot(1234))   # its replica takes over

:class:`RedisSentinelServer` is a primary, its replica and Redis Sentinels watching them
(``redis-server --sentinel``)::

    with RedisSentinelServer() as setup:
        store = RedisStore(setup.url)           # redis+sentinel://127.0.0.1:S1,.../surefoot
        setup.failover()                        # SENTINEL FAILOVER
        setup.crash_primary()                   # or: kill -9, and the Sentinels promote
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from types import TracebackType

__all__ = ["RedisClusterServer", "RedisSentinelServer", "RedisServer", "RedisServerNotFound"]


class RedisServerNotFound(RuntimeError):
    """No ``redis-server`` binary on PATH (or at ``$SUREFOOT_REDIS_SERVER``)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process. ``port=0`` picks a free port."""

    def __init__(
        self, *, port: int = 0, binary: str | None = None, args: Sequence[str] = ()
    ) -> None:
        self.binary = _binary(binary)
        self.port = port or _free_port()
        #: Extra ``redis-server`` arguments (e.g. ``--cluster-enabled yes``).
        self.args = tuple(args)
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
            self._argv(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
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

    def _argv(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir,
            "--daemonize", "no",
            "--loglevel", "warning",
            *self.args,
        ]

    def _ping(self) -> bool:
        return self.command("PING", timeout=0.2).startswith("+PONG")

    def command(self, *words: str, timeout: float = 2.0) -> str:
        """One command, its raw RESP reply (a first line, or a bulk string's text);
        ``""`` if the server cannot be reached."""
        request = f"*{len(words)}\r\n" + "".join(
            f"${len(w.encode())}\r\n{w}\r\n" for w in words
        )
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
                sock.sendall(request.encode())
                reply = b""
                while b"\r\n" not in reply:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return reply.decode(errors="replace")
                    reply += chunk
                head, _, body = reply.partition(b"\r\n")
                if not head.startswith(b"$") or head == b"$-1":
                    return head.decode(errors="replace")
                size = int(head[1:])
                while len(body) < size + 2:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                return body[:size].decode(errors="replace")
        except (OSError, ValueError):
            return ""

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


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_cluster_port(taken: set[int]) -> int:
    """A free port whose Cluster bus port (+10000) is free too: both below the
    ephemeral range, where the kernel's free ports would put the bus past 65535."""
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randrange(20000, 30000)
        if port not in taken and _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def _binary(binary: str | None) -> str:
    found = binary or os.environ.get("SUREFOOT_REDIS_SERVER") or shutil.which("redis-server")
    if not found:
        raise RedisServerNotFound(
            "redis-server not found (Debian/Ubuntu: apt-get install -y redis-server)"
        )
    return found


def _cli(server_binary: str) -> str:
    beside = os.path.join(os.path.dirname(server_binary), "redis-cli")
    found = (
        os.environ.get("SUREFOOT_REDIS_CLI")
        or (beside if os.access(beside, os.X_OK) else None)
        or shutil.which("redis-cli")
    )
    if not found:
        raise RedisServerNotFound(
            "redis-cli not found (Debian/Ubuntu: apt-get install -y redis-server; it comes "
            "with it)"
        )
    return found


def _info(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition(":")
        if sep:
            fields[name] = value
    return fields


class RedisClusterServer:
    """A Redis Cluster of real ``redis-server`` processes on free loopback ports:
    ``primaries`` primaries with ``replicas`` replicas each (``--cluster-enabled yes``,
    no persistence), joined by ``redis-cli --cluster create``. ``node_timeout`` (ms) is
    how long a silent primary takes to be failed over."""

    def __init__(
        self,
        *,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout: int = 2000,
        binary: str | None = None,
    ) -> None:
        if primaries < 3:
            raise ValueError("a Redis Cluster needs at least 3 primaries")
        self.binary = _binary(binary)
        self.cli = _cli(self.binary)
        self.replicas = replicas
        self.nodes: list[RedisServer] = []
        ports: set[int] = set()
        while len(ports) < primaries * (1 + replicas):
            ports.add(_free_cluster_port(ports))
        for port in sorted(ports):
            self.nodes.append(RedisServer(port=port, binary=self.binary, args=(
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", str(node_timeout),
                # the replica of a primary that stops must take over on its own
                "--cluster-replica-validity-factor", "0",
                "--appendonly", "no",
            )))
        self.primaries = primaries
        self._created = False

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every node (any one is enough to start from)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self, timeout: float = 30.0) -> RedisClusterServer:
        for node in self.nodes:
            node.start()
        if not self._created:
            result = subprocess.run(  # noqa: S603 - our own argument list
                [
                    self.cli, "--cluster", "create",
                    *(f"127.0.0.1:{n.port}" for n in self.nodes),
                    "--cluster-replicas", str(self.replicas),
                    "--cluster-yes",
                ],
                capture_output=True,
                timeout=timeout,
                check=False,
            )
            if result.returncode != 0:
                self.close()
                out = (result.stdout + result.stderr).decode(errors="replace")
                raise RuntimeError(f"redis-cli --cluster create failed: {out.strip()[-800:]}")
            self._created = True
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until every node says ``cluster_state:ok``, agrees on every slot, and every
        replica's link to its primary is up."""
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            if all(self._ready(node) for node in self.nodes):
                return
            time.sleep(0.05)
        raise RuntimeError("the Redis Cluster did not become ready")

    def _ready(self, node: RedisServer) -> bool:
        info = _info(node.command("CLUSTER", "INFO"))
        if info.get("cluster_state") != "ok" or info.get("cluster_slots_assigned") != "16384":
            return False
        if info.get("cluster_known_nodes") != str(len(self.nodes)):
            return False
        replication = _info(node.command("INFO", "replication"))
        if replication.get("role") == "slave":
            return replication.get("master_link_status") == "up"
        return replication.get("connected_slaves") == str(self.replicas)

    def _cluster_nodes(self, node: RedisServer) -> list[list[str]]:
        return [line.split() for line in node.command("CLUSTER", "NODES").splitlines() if line]

    def primary_of_slot(self, slot: int) -> RedisServer:
        """The node that serves ``slot`` now."""
        for node in self.nodes:
            for fields in self._cluster_nodes(node):
                if "myself" in fields[2] and "master" in fields[2]:
                    for spec in fields[8:]:
                        first, _, last = spec.partition("-")
                        if not first.isdigit():
                            continue  # a slot being migrated
                        if int(first) <= slot <= int(last or first):
                            return node
        raise RuntimeError(f"no primary serves slot {slot}")

    def replicas_of(self, primary: RedisServer) -> list[RedisServer]:
        """The replicas of ``primary``."""
        me = next(f[0] for f in self._cluster_nodes(primary) if "myself" in f[2])
        found = []
        for node in self.nodes:
            for fields in self._cluster_nodes(node):
                if "myself" in fields[2] and fields[3] == me:
                    found.append(node)
        return found

    def failover(self, primary: RedisServer, timeout: float = 10.0) -> RedisServer:
        """``CLUSTER FAILOVER`` on a replica of ``primary`` (a manual failover: the
        replica catches up, then takes over); returns it once it serves as primary."""
        replica = self.replicas_of(primary)[0]
        reply = replica.command("CLUSTER", "FAILOVER")
        if not reply.startswith("+OK"):
            raise RuntimeError(f"CLUSTER FAILOVER failed: {reply}")
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            if _info(replica.command("INFO", "replication")).get("role") == "master":
                return replica
            time.sleep(0.01)
        raise RuntimeError("the replica did not take over")

    def flush(self) -> None:
        """Empty every primary (replicas follow)."""
        for node in self.nodes:
            node.command("FLUSHALL")  # a replica refuses: its primary's flush reaches it

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisClusterServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _resp_request(words: Sequence[str]) -> bytes:
    return (f"*{len(words)}\r\n" + "".join(
        f"${len(w.encode())}\r\n{w}\r\n" for w in words
    )).encode()


class _Reply:
    """Reads one RESP2 reply from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def read(self) -> object:
        line = self._line()
        kind, rest = line[:1], line[1:].decode(errors="replace")
        if kind == b"+":
            return rest
        if kind == b"-":
            return RuntimeError(rest)
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            while len(self.buffer) < size + 2:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                self.buffer += chunk
            data, self.buffer = self.buffer[:size], self.buffer[size + 2:]
            return data.decode(errors="replace")
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self.read() for _ in range(size)]
        raise ValueError(f"not a RESP2 reply: {line[:50]!r}")


def _query(port: int, words: Sequence[str], timeout: float) -> object:
    """One command to ``127.0.0.1:port``, its reply parsed (an error reply is a
    :class:`RuntimeError` returned, not raised); ``None`` if unreachable."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(_resp_request(words))
            return _Reply(sock).read()
    except (OSError, ValueError):
        return None


class _SentinelProcess(RedisServer):
    """``redis-server <config> --sentinel``: one Sentinel, its config file (which it
    rewrites) in its own temporary directory."""

    def __init__(self, *, binary: str, monitor: str) -> None:
        super().__init__(binary=binary)
        self.config = os.path.join(self._dir, "sentinel.conf")
        self.log = os.path.join(self._dir, "sentinel.log")
        with open(self.config, "w", encoding="utf-8") as out:
            out.write(
                f"port {self.port}\nbind 127.0.0.1\ndaemonize no\ndir {self._dir}\n"
                f"loglevel notice\nlogfile {self.log}\n{monitor}"
            )

    def _argv(self) -> list[str]:
        return [self.binary, self.config, "--sentinel"]


class RedisSentinelServer:
    """A primary, one replica and ``sentinels`` Redis Sentinels watching them (service
    ``service``), all real processes on free loopback ports, no persistence::

        with RedisSentinelServer() as setup:
            store = RedisStore(setup.url)     # redis+sentinel://127.0.0.1:S1,.../surefoot
            setup.failover()                  # SENTINEL FAILOVER: the replica takes over
            setup.crash_primary()             # kill -9; the Sentinels promote the replica

    The quorum is a majority of the Sentinels. A primary that does not answer for
    ``down_after`` ms is down; ``failover_timeout`` (ms) is Sentinel's
    ``failover-timeout`` (a Sentinel does not fail the same primary over again within
    twice that)."""

    def __init__(
        self,
        *,
        sentinels: int = 3,
        service: str = "surefoot",
        down_after: int = 500,
        failover_timeout: int = 2000,
        binary: str | None = None,
    ) -> None:
        if sentinels < 1:
            raise ValueError("at least one Sentinel")
        self.binary = _binary(binary)
        self.service = service
        self.quorum = sentinels // 2 + 1
        self.down_after = down_after
        self.failover_timeout = failover_timeout
        #: The data nodes: the first is the primary at start, the second its replica.
        self.nodes = [
            RedisServer(binary=self.binary, args=self._node_args()) for _ in range(2)
        ]
        self.nodes[1].args = self._node_args(replica_of=self.nodes[0])
        monitor = (
            f"sentinel monitor {service} 127.0.0.1 {self.nodes[0].port} {self.quorum}\n"
            f"sentinel down-after-milliseconds {service} {down_after}\n"
            f"sentinel failover-timeout {service} {failover_timeout}\n"
            f"sentinel parallel-syncs {service} 1\n"
        )
        self.sentinels: list[RedisServer] = [
            _SentinelProcess(binary=self.binary, monitor=monitor) for _ in range(sentinels)
        ]

    @staticmethod
    def _node_args(replica_of: RedisServer | None = None) -> tuple[str, ...]:
        args: tuple[str, ...] = (
            # a replica's first sync at once (no 5 s wait for more replicas)
            "--repl-diskless-sync", "yes",
            "--repl-diskless-sync-delay", "0",
        )
        if replica_of is not None:
            args += ("--replicaof", "127.0.0.1", str(replica_of.port))
        return args

    @property
    def url(self) -> str:
        """``redis+sentinel://`` with every Sentinel and the service name."""
        return (
            "redis+sentinel://"
            + ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
            + f"/{self.service}"
        )

    def start(self, timeout: float = 30.0) -> RedisSentinelServer:
        try:
            for node in self.nodes:
                node.start()
            for sentinel in self.sentinels:
                sentinel.start()
            self.wait_ready(timeout)
        except BaseException:
            self.close()
            raise
        return self

    # -- state -----------------------------------------------------------------------

    def role(self, node: RedisServer) -> str | None:
        """``"master"``, ``"slave"``, or ``None`` (not answering)."""
        return _info(node.command("INFO", "replication", timeout=0.5)).get("role")

    def sentinel_primary(self, sentinel: RedisServer | None = None) -> int | None:
        """The port of the primary a Sentinel (the first by default) names now."""
        reply = _query((sentinel or self.sentinels[0]).port,
                       ("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service), 0.5)
        if isinstance(reply, list) and len(reply) == 2:
            return int(str(reply[1]))
        return None

    def _sentinel_view(self, sentinel: RedisServer) -> dict[str, str]:
        reply = _query(sentinel.port, ("SENTINEL", "MASTER", self.service), 0.5)
        if not isinstance(reply, list):
            return {}
        return {str(k): str(v) for k, v in zip(reply[::2], reply[1::2], strict=False)}

    @property
    def primary(self) -> RedisServer:
        """The data node that is the primary now (by its own ``ROLE``, Sentinels aside)."""
        for node in self.nodes:
            if node.running and self.role(node) == "master":
                return node
        raise RuntimeError("no data node is a primary")

    def _other(self, node: RedisServer) -> RedisServer:
        return next(n for n in self.nodes if n is not node)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the primary has its replica (link up), and every Sentinel names that
        primary, knows the replica and the other Sentinels, and sees nothing down."""
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            if self._ready():
                return
            time.sleep(0.05)
        raise RuntimeError("the Redis Sentinel setup did not become ready")

    def _ready(self) -> bool:
        try:
            primary = self.primary
        except RuntimeError:
            return False
        replica = self._other(primary)
        replication = _info(replica.command("INFO", "replication", timeout=0.5))
        if replication.get("master_port") != str(primary.port) or (
            replication.get("master_link_status") != "up"
        ):
            return False
        for sentinel in self.sentinels:
            view = self._sentinel_view(sentinel)
            if (
                view.get("port") != str(primary.port)
                or view.get("flags") != "master"
                or view.get("num-slaves") != "1"
                or view.get("num-other-sentinels") != str(len(self.sentinels) - 1)
            ):
                return False
            replicas = _query(sentinel.port, ("SENTINEL", "REPLICAS", self.service), 0.5)
            if not isinstance(replicas, list) or not replicas:
                return False
            fields = replicas[0]
            if not isinstance(fields, list):
                return False
            seen = {str(k): str(v) for k, v in zip(fields[::2], fields[1::2], strict=False)}
            if seen.get("port") != str(replica.port) or seen.get("flags") != "slave":
                return False
        return True

    def _wait_switch(self, old: RedisServer, timeout: float) -> RedisServer:
        """Until every Sentinel names the other node, and it says it is a primary."""
        new = self._other(old)
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            if all(self.sentinel_primary(s) == new.port for s in self.sentinels) and (
                self.role(new) == "master"
            ):
                return new
            time.sleep(0.005)
        raise RuntimeError("the Sentinels did not switch to the replica")

    # -- failovers -------------------------------------------------------------------

    def failover(self, timeout: float = 20.0) -> RedisServer:
        """``SENTINEL FAILOVER``: the replica is promoted (the old primary, still up,
        is made its replica by the Sentinels a few seconds later); returns the new
        primary once every Sentinel names it."""
        old = self.primary
        reply = _query(self.sentinels[0].port, ("SENTINEL", "FAILOVER", self.service), 2.0)
        if reply != "OK":
            raise RuntimeError(f"SENTINEL FAILOVER failed: {reply}")
        return self._wait_switch(old, timeout)

    def crash_primary(self, timeout: float = 30.0) -> RedisServer:
        """``kill -9`` of the primary; returns the replica once the Sentinels have
        promoted it and every one names it. The old primary stays down
        (:meth:`restart` brings it back, as a replica)."""
        old = self.primary
        old.kill()
        return self._wait_switch(old, timeout)

    def restart(self, node: RedisServer, timeout: float = 30.0) -> None:
        """Start a stopped data node again, as a replica of the primary, and wait until
        everything is as after :meth:`start`."""
        node.args = self._node_args(replica_of=self._other(node))
        node.start()
        self.wait_ready(timeout)

    # -- ending ----------------------------------------------------------------------

    def stop(self) -> None:
        for server in [*self.sentinels, *self.nodes]:
            server.stop()

    def close(self) -> None:
        for server in [*self.sentinels, *self.nodes]:
            server.close()

    def __enter__(self) -> RedisSentinelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
