"""Real Redis servers for the whole test run; see servers.py.

The session fixtures start one server each, the first time a test asks for it,
and stop it at the end of the run. Tests share them, so a test that needs an
empty database asks for ``flush_servers``, and one that needs a pristine or
disposable server (restart, kill, odd config) starts its own with
``server_factory``.

Topologies (a Sentinel group, a cluster) take seconds to start, mostly spent
waiting: those the collected tests use start in the background, side by side,
as the tests start to run (not for ``--collect-only``). Their set-up times, and
the failover times the tests measure, are reported at the end of the run.
"""

from __future__ import annotations

import gc
import logging
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask

from servers import (
    ACL_RULES,
    AUTH_PASSWORD,
    RedisServer,
    SentinelGroup,
    ServerCluster,
    TLSFiles,
    find_server_binary,
    make_tls_files,
    server_binary_has_tls,
)


def pytest_report_header() -> str:
    try:
        binary = find_server_binary()
    except RuntimeError as error:
        return f"redis server: {error}"
    version = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    tls = "built in" if server_binary_has_tls(binary) else "terminated by TLSProxy"
    return f"redis server: {binary} ({version}; TLS {tls})"


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
def server(server_factory: Callable[..., RedisServer]) -> RedisServer:
    """A private server: its connection count is this test's alone."""
    return server_factory()


@pytest.fixture
def no_asyncio_leaks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail a test that leaves an unclosed client or a never-awaited coroutine
    behind (their warnings are errors), or makes asyncio log an error, such
    as one from closing a client at loop shutdown."""
    yield
    gc.collect()
    problems = [
        record.getMessage()
        for record in caplog.get_records("call")
        if record.name.startswith("asyncio") and record.levelno >= logging.WARNING
    ]
    assert problems == []


@pytest.fixture
def make_app() -> Iterator[Callable[..., Flask]]:
    """Make Flask apps: ``make_app(REDIS_URL=…, name=…)``, or apps of another
    class, such as ``app_class=quart.Quart``. The Redis clients registered on
    them are closed after the test: asyncio ones in the event loops that still
    run (the async views' loop); the others closed with their loops."""
    apps: list[Flask] = []

    def make(
        name: str = "test_app", app_class: Callable[[str], Any] = Flask, **config: Any
    ) -> Flask:
        app = app_class(name)
        app.config.update(config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        for client in app.extensions.get("redis", {}).values():
            close = getattr(client, "close", None)
            if callable(close):
                close()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail every attempt to resolve a name or open a connection, as a network
    that is down would, and record them; the test fails if there were any."""
    attempts: list[str] = []
    # Let the topologies starting in the background finish: their own
    # connections are not the test's.
    for future in list(_starting.values()):
        future.exception()

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


# -- TLS


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A CA, and server and client certificates it signed; another CA."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def redis_tls_server(tls_files: TLSFiles) -> Iterator[RedisServer]:
    """A server that speaks TLS only, with a certificate for 127.0.0.1 and
    localhost signed by ``tls_files.ca``; clients need no certificate."""
    with RedisServer(tls=tls_files) as server:
        yield server


@pytest.fixture(scope="session")
def redis_mtls_server(tls_files: TLSFiles) -> Iterator[RedisServer]:
    """Like ``redis_tls_server``, but clients need a certificate signed by
    ``tls_files.ca``."""
    with RedisServer(tls=tls_files, tls_auth_clients=True) as server:
        yield server


# -- Topologies, started in the background

Timings = dict[str, list[float]]
_timings: Timings = {}


def _timed(what: str, start: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        began = time.monotonic()
        started = start()
        _timings.setdefault(what, []).append(time.monotonic() - began)
        return started

    return run


# fixture name -> how to start it; fixtures named here start in the background
_TOPOLOGIES: dict[str, tuple[str, Callable[[], Any]]] = {
    "sentinel_group": (
        "set-up: sentinel group (1 master, 1 replica, 3 sentinels)",
        SentinelGroup,
    ),
    "redis_cluster": (
        "set-up: cluster (3 masters, 3 replicas)",
        lambda: ServerCluster(masters=3, replicas=1),
    ),
}
_starting: dict[str, Future[Any]] = {}
_executor = ThreadPoolExecutor(
    max_workers=len(_TOPOLOGIES), thread_name_prefix="topology"
)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    # Before pytest's own loop, which runs no test for --collect-only or after
    # a collection error: then nothing starts.
    option = session.config.option
    if option.collectonly or (
        session.testsfailed and not option.continue_on_collection_errors
    ):
        return
    used = {
        name for item in session.items for name in getattr(item, "fixturenames", ())
    }
    for name, (what, start) in _TOPOLOGIES.items():
        if name in used:
            _starting[name] = _executor.submit(_timed(what, start))


def _started(name: str) -> Any:
    future = _starting.pop(name, None)
    if future is None:  # not collected: e.g. a test run by its node id
        what, start = _TOPOLOGIES[name]
        return _timed(what, start)()
    return future.result()


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Topologies started for tests that did not run (-x, a failure above).
    for future in _starting.values():
        if future.exception() is None:
            future.result().stop()
    _executor.shutdown()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _timings:
        terminalreporter.section("topology timings (seconds)")
        for what, seconds in sorted(_timings.items()):
            shown = ", ".join(f"{value:.2f}" for value in seconds)
            terminalreporter.write_line(f"{what}: {shown}")
    if _figures:
        terminalreporter.section("measured figures")
        for line in _figures:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def record_timing() -> Callable[[str, float], None]:
    """``record_timing("failover: …", seconds)``: reported at the end of the run."""

    def record(what: str, seconds: float) -> None:
        _timings.setdefault(what, []).append(seconds)

    return record


_figures: list[str] = []


@pytest.fixture(scope="session")
def report_figure() -> Callable[[str], None]:
    """``report_figure("…")``: a line of measurements, such as the counts of a
    failover under load, shown at the end of the run."""
    return _figures.append


@pytest.fixture(scope="session")
def sentinel_group() -> Iterator[SentinelGroup]:
    """A master with one replica, watched by three sentinels, shared by the
    tests that do not change it."""
    group = _started("sentinel_group")
    yield group
    group.stop()


@pytest.fixture
def fresh_sentinel_group(
    record_timing: Callable[[str, float], None],
) -> Iterator[SentinelGroup]:
    """A sentinel group of the test's own, to fail over."""
    began = time.monotonic()
    with SentinelGroup() as group:
        record_timing(
            "set-up: sentinel group (1 master, 1 replica, 3 sentinels)",
            time.monotonic() - began,
        )
        yield group


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[ServerCluster]:
    """A cluster of three masters, each with a replica. A test that fails a
    node over brings it back."""
    cluster = _started("redis_cluster")
    yield cluster
    cluster.stop()
