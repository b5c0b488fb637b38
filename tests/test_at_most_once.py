"""A command runs at most once, a frozen server fails a request fast, and the
handshake's failures are told without the password: against real servers,
frozen with SIGSTOP, killed, or without HELLO."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import redis as redis_py
from flask import Flask

from flask_and_redis import Redis

from servers import RedisServer

MakeApp = Callable[..., Flask]
PW = "Hunter2-pa55word"


@contextmanager
def frozen(server: RedisServer, thaw_after: float) -> Iterator[None]:
    """Stop the server (SIGSTOP), and let it go on (SIGCONT) after *thaw_after*
    seconds, whatever the test is doing then."""
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    thaw = threading.Timer(thaw_after, os.kill, (pid, signal.SIGCONT))
    thaw.start()
    try:
        yield
    finally:
        thaw.join()


def test_a_write_that_times_out_is_not_sent_again(
    make_app: MakeApp, server: RedisServer
) -> None:
    # redis-py's own policy sends it again, on a new connection, until the
    # server wakes: it then runs both.
    redis = Redis(make_app(REDIS_URL=server.url(), REDIS_SOCKET_TIMEOUT=0.5))
    redis.set("n", 0)

    with frozen(server, thaw_after=1.5):
        started = time.monotonic()
        with pytest.raises(redis_py.TimeoutError):
            redis.incr("n")
        failed_after = time.monotonic() - started

    assert redis.get("n") == b"1"
    assert failed_after < 2 * 0.5  # once, not once per retry


def test_an_asyncio_write_that_times_out_is_not_sent_again(
    make_app: MakeApp, server: RedisServer
) -> None:
    app = make_app(
        REDIS_URL=server.url(),
        REDIS_SOCKET_TIMEOUT=0.5,
        REDIS_CLASS="redis.asyncio.Redis",
    )
    redis = Redis(app)

    async def incr_while_frozen() -> bytes:
        await redis.set("n", 0)
        with frozen(server, thaw_after=1.5):
            with pytest.raises(redis_py.TimeoutError):
                await redis.incr("n")
        return await redis.get("n")

    with app.app_context():
        assert asyncio.run(incr_while_frozen()) == b"1"


@pytest.mark.parametrize("socket_timeout", [None, 1.0])
def test_a_frozen_server_fails_a_request_within_its_timeouts(
    make_app: MakeApp, server: RedisServer, socket_timeout: float | None
) -> None:
    config = {"REDIS_URL": server.url()}
    if socket_timeout is not None:
        config["REDIS_SOCKET_TIMEOUT"] = socket_timeout
    redis = Redis(make_app(**config))
    timeout = redis.connection.connection_pool.connection_kwargs["socket_timeout"]
    connect_timeout = redis.connection.connection_pool.connection_kwargs.get(
        "socket_connect_timeout"
    )
    redis.ping()

    with frozen(server, thaw_after=3 * timeout):
        started = time.monotonic()
        with pytest.raises(redis_py.TimeoutError):
            redis.get("n")  # a read, too, fails with the first timeout
        failed_after = time.monotonic() - started

    # The bounds the docs promise (docs/reliability.rst): 2t + the connect
    # timeout, and 12 s with the default config.
    assert failed_after < 2 * timeout + (connect_timeout or 0)
    assert failed_after < 12


def test_a_server_that_restarts_within_a_second_keeps_requests_succeeding(
    make_app: MakeApp, server: RedisServer
) -> None:
    redis = Redis(make_app(REDIS_URL=server.url()))
    redis.ping()
    server.kill()
    restart = threading.Timer(0.5, server.start)
    restart.start()
    try:
        # Refused connections are retried: nothing was sent.
        assert redis.set("after", "restart") is True
    finally:
        restart.join()
    assert redis.get("after") == b"restart"


@pytest.fixture
def no_hello(server_factory: Callable[..., RedisServer]) -> RedisServer:
    """A server that does not know HELLO (a proxy, an old server), which
    quotes the arguments of the commands it does not know."""
    return server_factory(password=PW, extra={"rename-command": 'HELLO ""'})


@pytest.mark.parametrize("client_class", ["redis.Redis", "redis.asyncio.Redis"])
def test_a_server_without_hello_says_what_to_set_without_the_password(
    make_app: MakeApp, no_hello: RedisServer, client_class: str
) -> None:
    app = make_app(
        REDIS_URL=f"redis://:{PW}@{no_hello.host}:{no_hello.port}/0",
        REDIS_CLASS=client_class,
        REDIS_PROTOCOL=3,
    )
    redis = Redis(app)

    async def ping() -> object:
        return await redis.ping()

    with app.app_context(), pytest.raises(redis_py.ResponseError) as caught:
        redis.ping() if client_class == "redis.Redis" else asyncio.run(ping())

    assert "REDIS_PROTOCOL = 2" in str(caught.value)
    assert PW not in str(caught.value)
    assert caught.value.__context__ is None and caught.value.__cause__ is None


def test_a_server_without_hello_works_with_protocol_2(
    make_app: MakeApp, no_hello: RedisServer
) -> None:
    redis = Redis(
        make_app(
            REDIS_URL=f"redis://:{PW}@{no_hello.host}:{no_hello.port}/0",
            REDIS_PROTOCOL=2,
        )
    )
    assert redis.ping() is True


def test_a_missing_password_says_which_key_to_set(
    make_app: MakeApp, redis_auth_server: RedisServer
) -> None:
    redis = Redis(
        make_app(
            REDIS_URL=f"redis://{redis_auth_server.host}:{redis_auth_server.port}/0",
            REDIS_PROTOCOL=3,
        )
    )
    with pytest.raises(redis_py.AuthenticationError, match="set REDIS_PASSWORD"):
        redis.ping()
