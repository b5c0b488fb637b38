"""Several databases in one app, and one extension on several apps."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable

import pytest
from flask import Flask

from flask_and_redis import Redis

from servers import RedisServer

MakeApp = Callable[..., Flask]

pytestmark = pytest.mark.usefixtures("flush_servers")


def test_two_prefixes_use_two_databases(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_app(
        REDIS_URL=redis_server.url(db=1),
        CACHE_URL=redis_server.url(db=2),
    )
    store = Redis(app)
    cache = Redis(app, config_prefix="CACHE")

    with app.app_context():
        store.set("key", "store")
        cache.set("key", "cache")

    with redis_server.client(db=1) as db1, redis_server.client(db=2) as db2:
        assert db1.get("key") == b"store"
        assert db2.get("key") == b"cache"
    assert app.extensions["redis"]["REDIS"] is not app.extensions["redis"]["CACHE"]


def test_extensions_dict_holds_each_prefix_client(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_app(REDIS_URL=redis_server.url(), SESSIONS_DB=3)
    store = Redis(app)
    sessions = Redis()
    sessions.init_app(app, config_prefix="SESSIONS")

    with app.app_context():
        assert app.extensions["redis"]["REDIS"] is store.connection
        assert app.extensions["redis"]["SESSIONS"] is sessions.connection
    assert sessions.connection.connection_pool.connection_kwargs["db"] == 3


def test_one_extension_on_two_apps_follows_the_app_context(
    make_app: MakeApp, redis_server: RedisServer, redis_unix_server: RedisServer
) -> None:
    tcp_app = make_app("tcp", REDIS_URL=redis_server.url(db=4))
    unix_app = make_app("unix", REDIS_URL=redis_unix_server.url(db=5))
    redis = Redis()
    redis.init_app(tcp_app)
    redis.init_app(unix_app)

    with tcp_app.app_context():
        redis.set("where", "tcp")
    with unix_app.app_context():
        redis.set("where", "unix")
        assert redis.get("where") == b"unix"
    with tcp_app.app_context():
        assert redis.get("where") == b"tcp"

    with redis_server.client(db=4) as tcp, redis_unix_server.client(db=5) as unix:
        assert tcp.get("where") == b"tcp"
        assert unix.get("where") == b"unix"


def test_nested_app_contexts_use_the_innermost_app(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    outer = make_app("outer", REDIS_DB=6, REDIS_PORT=redis_server.port)
    inner = make_app("inner", REDIS_DB=7, REDIS_PORT=redis_server.port)
    redis = Redis()
    redis.init_app(outer)
    redis.init_app(inner)

    with outer.app_context():
        assert redis.connection is outer.extensions["redis"]["REDIS"]
        with inner.app_context():
            assert redis.connection is inner.extensions["redis"]["REDIS"]
        assert redis.connection is outer.extensions["redis"]["REDIS"]


def test_each_app_may_have_its_own_prefix(make_app: MakeApp) -> None:
    first = make_app("first", REDIS_DB=1)
    second = make_app("second", OTHER_DB=2)
    redis = Redis()
    redis.init_app(first)
    redis.init_app(second, config_prefix="OTHER")

    assert redis.settings_for(first).prefix == "REDIS"
    assert redis.settings_for(second).prefix == "OTHER"
    assert (
        second.extensions["redis"]["OTHER"].connection_pool.connection_kwargs["db"] == 2
    )


def test_outside_a_context_a_single_app_is_used(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_app(REDIS_URL=redis_server.url(db=8))
    redis = Redis(app)

    redis.set("outside", "yes")

    assert redis.connection is app.extensions["redis"]["REDIS"]
    with redis_server.client(db=8) as client:
        assert client.get("outside") == b"yes"


def test_outside_a_context_two_apps_are_ambiguous(make_app: MakeApp) -> None:
    redis = Redis()
    redis.init_app(make_app("one"))
    redis.init_app(make_app("two"))

    with pytest.raises(RuntimeError, match="2 applications") as caught:
        redis.get("key")
    assert "app_context()" in str(caught.value)


def test_a_second_app_makes_the_first_ambiguous_outside_a_context(
    make_app: MakeApp,
) -> None:
    redis = Redis()
    first = make_app("first")
    redis.init_app(first)
    assert redis.connection is first.extensions["redis"]["REDIS"]

    redis.init_app(make_app("second"))

    with pytest.raises(RuntimeError, match="outside of application context"):
        redis.connection  # noqa: B018


def test_an_unregistered_extension_says_to_call_init_app() -> None:
    redis = Redis()

    with pytest.raises(RuntimeError, match=r"init_app\(app\)"):
        redis.connection  # noqa: B018


def test_the_app_of_the_context_must_be_registered(make_app: MakeApp) -> None:
    redis = Redis(make_app("registered"))
    stranger = make_app("stranger")

    with stranger.app_context():
        with pytest.raises(RuntimeError, match="'stranger' is not registered"):
            redis.get("key")
        with pytest.raises(RuntimeError, match="not registered"):
            redis.connection  # noqa: B018


def test_the_same_prefix_twice_on_one_app_is_refused(make_app: MakeApp) -> None:
    app = make_app()
    first = Redis(app)

    with pytest.raises(RuntimeError, match="already registered") as caught:
        Redis(app)
    assert "config_prefix='REDIS2'" in str(caught.value)
    assert app.extensions["redis"] == {"REDIS": first.connection}


def test_the_duplicate_prefix_error_suggests_a_free_prefix(make_app: MakeApp) -> None:
    app = make_app()
    Redis(app, config_prefix="REDIS2")
    Redis(app)

    with pytest.raises(RuntimeError, match="already registered") as caught:
        Redis(app, config_prefix="REDIS2")
    assert "config_prefix='REDIS3'" in str(caught.value)


def test_one_extension_twice_on_one_app_is_refused(make_app: MakeApp) -> None:
    app = make_app()
    redis = Redis(app)

    with pytest.raises(RuntimeError, match="call init_app once per app") as caught:
        redis.init_app(app, config_prefix="OTHER")
    assert "create another extension" in str(caught.value)
    assert list(app.extensions["redis"]) == ["REDIS"]


def test_threads_with_different_apps_get_their_own_clients(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    apps = [make_app(f"app{db}", REDIS_URL=redis_server.url(db=db)) for db in (9, 10)]
    redis = Redis()
    for app in apps:
        redis.init_app(app)
    errors: list[str] = []

    def work(app: Flask, db: int) -> None:
        with app.app_context():
            for number in range(200):
                redis.set(f"key:{number}", db)
                if redis.get(f"key:{number}") != str(db).encode():
                    errors.append(f"db {db} read another app's value")

    threads = [
        threading.Thread(target=work, args=(app, db))
        for app, db in zip(apps, (9, 10), strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    for db in (9, 10):
        with redis_server.client(db=db) as client:
            assert {client.get(f"key:{n}") for n in range(200)} == {str(db).encode()}


def test_a_collected_app_is_forgotten_outside_a_context() -> None:
    app = Flask("short_lived")
    app.config["REDIS_CLASS"] = "fakeredis.FakeRedis"
    redis = Redis(app)
    assert redis.connection is app.extensions["redis"]["REDIS"]  # cached now

    del app
    gc.collect()

    with pytest.raises(RuntimeError, match="not registered on any application"):
        redis.connection  # noqa: B018
