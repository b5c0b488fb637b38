"""Real Redis servers for the whole test run; see servers.py.

The session fixtures start one server each, the first time a test asks for it,
and stop it at the end of the run. Tests share them, so a test that needs an
empty database asks for ``flush_servers``, and one that needs a pristine or
disposable server (restart, kill, odd config) starts its own with
``server_factory``.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from flask_and_redis import LoopLocalClient

from servers import ACL_RULES, AUTH_PASSWORD, RedisServer, find_server_binary


def pytest_report_header() -> str:
    try:
        binary = find_server_binary()
    except RuntimeError as error:
        return f"redis server: {error}"
    version = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return f"redis server: {binary} ({version})"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A server on a free TCP port of 127.0.0.1, without a password."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_unix_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisServer]:
    """A server on a unix socket only (``.port`` is 0), without a password."""
    socket_path = tmp_path_factory.mktemp("unix") / "redis.sock"
    with RedisServer(unix_socket=str(socket_path)) as server:
        yield server


@pytest.fixture(scope="session")
def redis_auth_server() -> Iterator[RedisServer]:
    """A TCP server whose ``default`` user has the password ``AUTH_PASSWORD``,
    with the ACL users of ``ACL_USERS``: ``app`` (keys ``app:*`` only) and
    ``reader`` (read-only)."""
    with RedisServer(password=AUTH_PASSWORD, acl=ACL_RULES) as server:
        yield server


@pytest.fixture
def flush_servers(
    redis_server: RedisServer,
    redis_unix_server: RedisServer,
    redis_auth_server: RedisServer,
) -> None:
    """Empty every database of the shared servers before the test."""
    for server in (redis_server, redis_unix_server, redis_auth_server):
        with server.client() as client:
            client.flushall()


@pytest.fixture
def server_factory() -> Iterator[Callable[..., RedisServer]]:
    """Start private servers: ``server_factory(**RedisServer options)``. They are
    stopped after the test."""
    servers: list[RedisServer] = []

    def start(**options: Any) -> RedisServer:
        server = RedisServer(**options)
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        server.stop()


@pytest.fixture
def make_app() -> Iterator[Callable[..., Flask]]:
    """Make Flask apps: ``make_app(REDIS_URL=…, name=…)``. The Redis clients
    registered on them are closed after the test (asyncio ones close with
    their event loops)."""
    apps: list[Flask] = []

    def make(name: str = "test_app", **config: Any) -> Flask:
        app = Flask(name)
        app.config.update(config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        for client in app.extensions.get("redis", {}).values():
            if isinstance(client, LoopLocalClient):
                continue  # its clients were closed as their event loops ended
            close = getattr(client, "close", None)
            if callable(close):
                close()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail every attempt to resolve a name or open a connection, as a network
    that is down would, and record them; the test fails if there were any."""
    attempts: list[str] = []

    def refuse(what: str) -> Callable[..., Any]:
        def refused(*args: Any, **kwargs: Any) -> Any:
            attempts.append(f"{what}{args[1:] if what.startswith('socket.') else args}")
            raise OSError(f"no network I/O in this test: {what}")

        return refused

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse(f"socket.{name}"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    yield attempts
    assert attempts == [], "network I/O was attempted"
