"""A Flask app keeps serving while its Redis server goes away and comes back.

The app runs in a real threaded WSGI server and is driven over HTTP by several
threads. During the outage each request fails within the configured timeouts
and retries, and the app's error handler sees redis-py's ``ConnectionError``;
once the server is back every request succeeds, with the same app and the same
client, and the server's connection count stays within the pool size.
"""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import redis as redis_py
from flask import Flask
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from werkzeug.serving import make_server

from flask_and_redis import Redis

from servers import RedisServer, Workers

MakeApp = Callable[..., Flask]

CLIENT_THREADS = 8
POOL_SIZE = CLIENT_THREADS
TIMEOUT = 0.5  # socket and connect timeouts, seconds
RETRIES = 2
BACKOFF_CAP = 0.05
# The longest a failing command may take with this config: each attempt may
# wait for a connect and a read, with a back-off between attempts.
WORST_FAILURE = (RETRIES + 1) * 2 * TIMEOUT + RETRIES * BACKOFF_CAP
# A correctness deadline, not a speed claim: a request that takes longer than
# this hangs past the configured timeouts.
REQUEST_DEADLINE = 4 * WORST_FAILURE
PHASE_DEADLINE = 30.0  # bounds every wait of the test itself


@dataclass(frozen=True)
class Response:
    started: float
    finished: float
    status: int
    body: str

    @property
    def duration(self) -> float:
        return self.finished - self.started


def create_app(make_app: MakeApp, server: RedisServer) -> Flask:
    """The app under test, configured for outages as the Reliability docs say."""
    app = make_app(
        "outage",
        REDIS_URL=server.url(),
        REDIS_SOCKET_TIMEOUT=TIMEOUT,
        REDIS_SOCKET_CONNECT_TIMEOUT=TIMEOUT,
        REDIS_RETRY=Retry(ExponentialBackoff(cap=BACKOFF_CAP, base=0.01), RETRIES),
        REDIS_MAX_CONNECTIONS=POOL_SIZE,
        REDIS_CONNECTION_POOL_CLASS="redis.BlockingConnectionPool",
        REDIS_CONNECTION_POOL_TIMEOUT=PHASE_DEADLINE,
    )
    redis = Redis(app)

    @app.get("/hit")
    def hit() -> str:
        return str(redis.incr("hits"))

    @app.errorhandler(redis_py.ConnectionError)
    @app.errorhandler(redis_py.TimeoutError)
    def redis_unavailable(error: redis_py.RedisError) -> tuple[str, int]:
        return f"redis unavailable: {type(error).__name__}", 503

    return app


@contextmanager
def serving(app: Flask) -> Iterator[int]:
    """Serve *app* from a threaded WSGI server on a free port; yield the port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(PHASE_DEADLINE)


class Traffic(Workers):
    """Threads requesting ``/hit`` one after the other until stopped."""

    def __init__(self, port: int, threads: int) -> None:
        super().__init__(threads, PHASE_DEADLINE)
        self.port = port
        self.responses: list[Response] = []
        self._lock = threading.Lock()

    def work(self, number: int) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            # The HTTP timeout is far beyond the deadline: a hang shows as a
            # long duration, which the test reports, not as a client error.
            connection = http.client.HTTPConnection(
                "127.0.0.1", self.port, timeout=PHASE_DEADLINE
            )
            try:
                connection.request("GET", "/hit")
                reply = connection.getresponse()
                response = Response(
                    started, time.monotonic(), reply.status, reply.read().decode()
                )
            finally:
                connection.close()
            with self._lock:
                self.responses.append(response)

    def wait_for(self, count: int, since: float, status: int | None = None) -> None:
        """Wait until *count* requests started after *since* have finished
        (with *status*, if given)."""
        deadline = time.monotonic() + PHASE_DEADLINE
        while len(self.since(since, status)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"fewer than {count} requests finished within"
                    f" {PHASE_DEADLINE:.0f} s: {self.since(since)[-5:]}"
                )
            time.sleep(0.01)

    def since(self, moment: float, status: int | None = None) -> list[Response]:
        with self._lock:
            return [
                response
                for response in self.responses
                if response.started >= moment
                and (status is None or response.status == status)
            ]

    def between(self, start: float, end: float) -> list[Response]:
        with self._lock:
            return [
                response
                for response in self.responses
                if response.started >= start and response.finished <= end
            ]


@pytest.mark.slow
def test_requests_fail_clearly_during_a_restart_and_succeed_after(
    make_app: MakeApp, server_factory: Callable[..., RedisServer]
) -> None:
    server = server_factory()
    app = create_app(make_app, server)

    with serving(app) as port, Traffic(port, CLIENT_THREADS) as traffic:
        began = time.monotonic()
        traffic.wait_for(5 * CLIENT_THREADS, since=began, status=200)
        connections_before = server.connected_clients()

        stopping = time.monotonic()
        server.stop()
        stopped = time.monotonic()
        traffic.wait_for(3 * CLIENT_THREADS, since=stopped, status=503)
        restarting = time.monotonic()
        server.start()  # the same port, an empty dataset
        restarted = time.monotonic()
        traffic.wait_for(10 * CLIENT_THREADS, since=restarted)

    before = traffic.between(began, stopping)
    during = traffic.between(stopped, restarting)
    after = traffic.since(restarted)
    assert before and all(response.status == 200 for response in before)
    assert {(r.status, r.body) for r in during} == {
        (503, "redis unavailable: ConnectionError")
    }
    assert all(response.duration < REQUEST_DEADLINE for response in during)
    assert [r for r in after if r.status != 200] == []
    # Each request after the restart was counted once by the new server.
    assert len({response.body for response in after}) == len(after)
    assert 0 < connections_before <= POOL_SIZE
    assert 0 < server.connected_clients() <= POOL_SIZE


@pytest.mark.slow
def test_a_frozen_server_times_out_instead_of_hanging(
    make_app: MakeApp, server_factory: Callable[..., RedisServer]
) -> None:
    # A server that accepts connections but never answers (here: stopped by
    # SIGSTOP; in life: overloaded, or cut off by a firewall) makes redis-py
    # raise TimeoutError, which is not a ConnectionError: handle both.
    server = server_factory()
    app = create_app(make_app, server)
    assert server.pid is not None

    with serving(app) as port, Traffic(port, 2) as traffic:
        began = time.monotonic()
        traffic.wait_for(4, since=began, status=200)
        os.kill(server.pid, signal.SIGSTOP)
        try:
            frozen = time.monotonic()
            traffic.wait_for(4, since=frozen, status=503)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        thawed = time.monotonic()
        traffic.wait_for(10, since=thawed)

    during = traffic.between(frozen, thawed)
    assert {(r.status, r.body) for r in during} == {
        (503, "redis unavailable: TimeoutError")
    }
    assert all(response.duration < REQUEST_DEADLINE for response in during)
    assert [r for r in traffic.since(thawed) if r.status != 200] == []


@pytest.mark.parametrize("retries", [0, RETRIES])
def test_a_pooled_connection_to_a_restarted_server_is_replaced(
    make_app: MakeApp, server_factory: Callable[..., RedisServer], retries: int
) -> None:
    # No request needs to fail after an outage nobody saw: the pool notices
    # that the server closed a connection before using it, even without retries.
    server = server_factory()
    app = make_app(
        REDIS_URL=server.url(), REDIS_RETRY=Retry(ExponentialBackoff(), retries)
    )
    redis = Redis(app)
    redis.set("key", "before")

    server.restart()

    assert redis.get("key") is None
    assert redis.set("key", "after") is True
