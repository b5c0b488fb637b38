"""Each way of naming a server connects to it: TCP, unix sockets, passwords, ACL."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import pytest
from flask import Flask
from redis.exceptions import NoPermissionError

from flask_and_redis import Redis

from servers import ACL_USERS, AUTH_PASSWORD, RedisServer

MakeApp = Callable[..., Flask]

pytestmark = pytest.mark.usefixtures("flush_servers")


def assert_reaches(redis: Redis, server: RedisServer, db: int) -> None:
    """A write through the extension is read back by a client of *server*."""
    redis.set("reached", f"db{db}")
    with server.client(db=db) as client:
        assert client.get("reached") == f"db{db}".encode()


def test_host_and_port_keys(make_app: MakeApp, redis_server: RedisServer) -> None:
    app = make_app(REDIS_HOST="127.0.0.1", REDIS_PORT=redis_server.port, REDIS_DB=1)
    assert_reaches(Redis(app), redis_server, db=1)


def test_port_and_db_as_environment_strings(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_app(REDIS_PORT=str(redis_server.port), REDIS_DB="2")
    assert_reaches(Redis(app), redis_server, db=2)


@pytest.mark.parametrize("form", ["{path}", "unix://{path}", "file://{path}"])
def test_unix_socket_in_host(
    make_app: MakeApp, redis_unix_server: RedisServer, form: str
) -> None:
    assert redis_unix_server.unix_socket is not None
    app = make_app(
        REDIS_HOST=form.format(path=redis_unix_server.unix_socket), REDIS_DB=3
    )
    assert_reaches(Redis(app), redis_unix_server, db=3)


@pytest.mark.parametrize("query", ["?db=4", "?db=4&socket_timeout=2"])
def test_unix_url(
    make_app: MakeApp, redis_unix_server: RedisServer, query: str
) -> None:
    app = make_app(REDIS_URL=f"unix://{redis_unix_server.unix_socket}{query}")
    assert_reaches(Redis(app), redis_unix_server, db=4)


def test_url_with_trailing_slash_in_the_db(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/12/")
    assert_reaches(Redis(app), redis_server, db=12)


def test_password_key(make_app: MakeApp, redis_auth_server: RedisServer) -> None:
    app = make_app(REDIS_PORT=redis_auth_server.port, REDIS_PASSWORD=AUTH_PASSWORD)
    assert_reaches(Redis(app), redis_auth_server, db=0)


def test_password_in_url(make_app: MakeApp, redis_auth_server: RedisServer) -> None:
    app = make_app(
        REDIS_URL=f"redis://:{AUTH_PASSWORD}@127.0.0.1:{redis_auth_server.port}/5"
    )
    assert_reaches(Redis(app), redis_auth_server, db=5)


def test_url_fills_in_with_the_password_key(
    make_app: MakeApp, redis_auth_server: RedisServer
) -> None:
    app = make_app(
        REDIS_URL=f"redis://127.0.0.1:{redis_auth_server.port}/6",
        REDIS_PASSWORD=AUTH_PASSWORD,
    )
    assert_reaches(Redis(app), redis_auth_server, db=6)


def test_acl_user_from_keys(make_app: MakeApp, redis_auth_server: RedisServer) -> None:
    app = make_app(
        REDIS_PORT=redis_auth_server.port,
        REDIS_USERNAME="app",
        REDIS_PASSWORD=ACL_USERS["app"],
    )
    redis = Redis(app)

    redis.set("app:key", "allowed")
    assert redis.get("app:key") == b"allowed"
    with pytest.raises(NoPermissionError):
        redis.set("other:key", "refused")


def test_acl_user_in_url_with_an_escaped_password(
    make_app: MakeApp, server_factory: Callable[..., RedisServer]
) -> None:
    password = "p@ss/w:rd%?"
    server = server_factory(acl=[f"user odd on >{password} ~* +@all"])
    app = make_app(
        REDIS_URL=f"redis://odd:{quote(password, safe='')}@127.0.0.1:{server.port}/0"
    )
    redis = Redis(app)

    assert redis.acl_whoami() == "odd"
