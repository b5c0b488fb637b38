"""The connection pool class: <prefix>_CONNECTION_POOL_CLASS and _TIMEOUT.

A blocking pool makes a request wait for a free connection when all
``max_connections`` are in use, where redis-py's default pool fails at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis as redis_py
from flask import Flask
from redis.asyncio import BlockingConnectionPool as AsyncBlockingPool
from redis.connection import UnixDomainSocketConnection

from flask_and_redis import ConfigurationError, Redis

from servers import ACL_USERS, RedisServer

MakeApp = Callable[..., Flask]

BLOCKING = "redis.BlockingConnectionPool"


@contextmanager
def all_connections_taken(client: redis_py.Redis) -> Iterator[None]:
    """Take every connection of the client's pool for the duration."""
    pool = client.connection_pool
    taken = [pool.get_connection() for _ in range(pool.max_connections)]
    try:
        yield
    finally:
        for connection in taken:
            pool.release(connection)


def test_a_blocking_pool_is_built_from_the_config(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_app(
        REDIS_URL=redis_server.url(db=3),
        REDIS_SOCKET_TIMEOUT=4,
        REDIS_MAX_CONNECTIONS="3",
        REDIS_CONNECTION_POOL_CLASS=BLOCKING,
        REDIS_CONNECTION_POOL_TIMEOUT="2.5",
    )
    redis = Redis(app)

    pool = redis.connection.connection_pool
    assert type(pool) is redis_py.BlockingConnectionPool
    assert (pool.max_connections, pool.timeout) == (3, 2.5)
    kwargs = pool.connection_kwargs
    assert (kwargs["port"], kwargs["db"], kwargs["socket_timeout"]) == (
        redis_server.port,
        3,
        4.0,
    )
    redis.set("key", "value")
    with redis_server.client(db=3) as client:
        assert client.get("key") == b"value"


def test_the_class_may_be_given_as_a_class(make_app: MakeApp) -> None:
    app = make_app(REDIS_CONNECTION_POOL_CLASS=redis_py.BlockingConnectionPool)

    pool = Redis(app).connection.connection_pool
    # redis-py's own defaults for what is not configured.
    assert type(pool) is redis_py.BlockingConnectionPool
    assert (pool.max_connections, pool.timeout) == (50, 20)


def test_a_blocking_pool_keeps_the_unix_socket_and_the_credentials(
    make_app: MakeApp,
    redis_unix_server: RedisServer,
    server_factory: Callable[..., RedisServer],
) -> None:
    unix_app = make_app("unix", REDIS_URL=redis_unix_server.url(db=2))
    acl_server = server_factory(acl=[f"user app on >{ACL_USERS['app']} ~* +@all"])
    acl_app = make_app(
        "acl", REDIS_URL=acl_server.url(username="app", password=ACL_USERS["app"])
    )
    redis = Redis()
    for app in (unix_app, acl_app):
        app.config["REDIS_CONNECTION_POOL_CLASS"] = BLOCKING
        redis.init_app(app)

    with unix_app.app_context():
        pool = redis.connection.connection_pool
        assert pool.connection_class is UnixDomainSocketConnection
        assert redis.ping() is True
    with acl_app.app_context():
        assert redis.acl_whoami() == "app"


def test_threads_wait_for_a_connection_of_a_blocking_pool(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_app(
        REDIS_URL=redis_server.url(),
        REDIS_MAX_CONNECTIONS=2,
        REDIS_CONNECTION_POOL_CLASS=BLOCKING,
        REDIS_CONNECTION_POOL_TIMEOUT=30,
    )
    redis = Redis(app)
    answers: list[Any] = []

    def ping() -> None:
        with app.app_context():
            answers.append(redis.ping())

    with all_connections_taken(redis.connection):
        waiting = [threading.Thread(target=ping) for _ in range(4)]
        for thread in waiting:
            thread.start()
        # They cannot have a connection before one is released.
        waiting[0].join(0.2)
        assert answers == []
    for thread in waiting:
        thread.join()

    assert answers == [True] * 4
    assert redis_server.connected_clients() <= 2


def test_a_blocking_pool_gives_up_after_its_timeout(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_app(
        REDIS_URL=redis_server.url(),
        REDIS_MAX_CONNECTIONS=1,
        REDIS_CONNECTION_POOL_CLASS=BLOCKING,
        REDIS_CONNECTION_POOL_TIMEOUT=0.05,
    )
    redis = Redis(app)

    with all_connections_taken(redis.connection):
        with pytest.raises(redis_py.ConnectionError, match="No connection available"):
            redis.ping()


def test_the_default_pool_fails_at_once_when_all_connections_are_taken(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    # What the blocking pool is for: the same config without it.
    redis = Redis(make_app(REDIS_URL=redis_server.url(), REDIS_MAX_CONNECTIONS=1))

    with all_connections_taken(redis.connection):
        with pytest.raises(redis_py.ConnectionError, match="Too many connections"):
            redis.ping()


def test_closing_the_client_closes_its_blocking_pool(
    make_app: MakeApp, server_factory: Callable[..., RedisServer]
) -> None:
    server = server_factory()
    app = make_app(
        REDIS_URL=server.url(),
        REDIS_MAX_CONNECTIONS=3,
        REDIS_CONNECTION_POOL_CLASS=BLOCKING,
    )
    redis = Redis(app)
    with all_connections_taken(redis.connection):
        pass  # connects them all
    assert server.connected_clients() == 3

    redis.connection.close()

    assert server.connected_clients() == 0


def test_an_asyncio_client_takes_the_asyncio_blocking_pool(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_app(
        REDIS_CLASS="redis.asyncio.Redis",
        REDIS_URL=redis_server.url(db=4),
        REDIS_MAX_CONNECTIONS=1,
        REDIS_CONNECTION_POOL_CLASS="redis.asyncio.BlockingConnectionPool",
        REDIS_CONNECTION_POOL_TIMEOUT=10,
    )
    redis = Redis(app)

    async def two_at_once() -> tuple[type, list[Any]]:
        # The event loop's client, closed when the loop shuts down.
        pool = redis.connection.connection_pool
        answers = await asyncio.gather(redis.ping(), redis.echo("second"))
        return type(pool), list(answers)

    assert asyncio.run(two_at_once()) == (AsyncBlockingPool, [True, b"second"])


class PoolessProvider:
    """A client class that takes any keyword but has no connection pool."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


def test_a_client_class_without_a_pool_refuses_a_pool_class(
    make_app: MakeApp,
) -> None:
    app = make_app(REDIS_CONNECTION_POOL_CLASS=BLOCKING)

    with pytest.raises(ConfigurationError) as caught:
        Redis.from_custom_provider(PoolessProvider, app)

    assert caught.value.key == "REDIS_CONNECTION_POOL_CLASS"
    assert "has no connection pool" in str(caught.value)
