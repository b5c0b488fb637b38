"""Flask-Caching on the extension's client, against a real server: the
cached views, memoized functions, delete and clear of the beginner's guide."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask_caching import Cache

from flask_and_redis import ConfigurationError, Redis

from servers import RedisServer, ServerCluster, free_port

MakeApp = Callable[..., Flask]
BACKEND = "flask_and_redis.flask_caching_backend"

pytestmark = pytest.mark.usefixtures("flush_servers")


def make_cached_app(make_app: MakeApp, server: RedisServer, **config: Any) -> Flask:
    """The guide's app: a cached home page, a memoized square, and views that
    delete the home page's entry and clear the cache."""
    app = make_app(
        REDIS_URL=server.url(db=4),
        CACHE_TYPE=BACKEND,
        CACHE_DEFAULT_TIMEOUT=60,
        **config,
    )
    Redis(app)
    cache = Cache(app)
    app.extensions["calls"] = calls = {"home": 0, "square": 0}

    @app.route("/")
    @cache.cached(timeout=30, key_prefix="homepage")
    def home() -> str:
        calls["home"] += 1
        return f"Home generated {calls['home']} times"

    @app.route("/square/<int:num>")
    @cache.memoize(timeout=60)
    def square(num: int) -> str:
        calls["square"] += 1
        return f"Square of {num} is {num * num}"

    @app.route("/clear-cache")
    def clear_cache() -> str:
        cache.clear()
        return "All cache cleared!"

    @app.route("/delete-homepage-cache")
    def delete_homepage_cache() -> str:
        cache.delete("homepage")
        return "Homepage cache deleted!"

    return app


def test_the_cache_uses_the_extensions_client(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_cached_app(make_app, redis_server)
    (backend,) = app.extensions["cache"].values()

    assert backend._write_client is app.extensions["redis"]["REDIS"]
    assert backend._read_client is app.extensions["redis"]["REDIS"]


def test_cached_view_is_stored_under_its_key_prefix_with_its_timeout(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_cached_app(make_app, redis_server)
    client = app.test_client()

    first = client.get("/").text
    second = client.get("/").text

    assert first == second == "Home generated 1 times"
    with redis_server.client(db=4) as redis:
        # CACHE_KEY_PREFIX (Flask-Caching's default) goes before key_prefix.
        assert redis.exists("flask_cache_homepage") == 1
        assert 0 < redis.ttl("flask_cache_homepage") <= 30


def test_memoize_caches_per_argument(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_cached_app(make_app, redis_server)
    client = app.test_client()

    answers = [client.get(f"/square/{num}").text for num in (4, 5, 4, 5)]

    assert answers == ["Square of 4 is 16", "Square of 5 is 25"] * 2
    assert app.extensions["calls"]["square"] == 2
    with redis_server.client(db=4) as redis:
        keys = redis.keys("flask_cache_*")
        assert len(keys) == 3  # two results and the function's version
        assert all(0 < redis.ttl(key) <= 60 for key in keys)


def test_delete_drops_one_entry(make_app: MakeApp, redis_server: RedisServer) -> None:
    app = make_cached_app(make_app, redis_server)
    client = app.test_client()
    client.get("/")
    client.get("/square/3")

    assert client.get("/delete-homepage-cache").text == "Homepage cache deleted!"

    assert client.get("/").text == "Home generated 2 times"
    client.get("/square/3")
    assert app.extensions["calls"]["square"] == 1


def test_clear_deletes_only_the_caches_keys(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_cached_app(make_app, redis_server)
    client = app.test_client()
    client.get("/")
    (backend,) = app.extensions["cache"].values()
    backend.set_many({f"entry:{num}": num for num in range(1500)})  # > 1 batch
    with redis_server.client(db=4) as redis:
        redis.set("comments:1", "kept")
        redis.set("flask_cache", "kept: not under the prefix")

        assert client.get("/clear-cache").text == "All cache cleared!"

        assert sorted(redis.keys()) == [b"comments:1", b"flask_cache"]
    assert client.get("/").text == "Home generated 2 times"


def test_clear_matches_the_key_prefix_literally(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    # As a glob pattern, "cache[1]*" would match "cache1:…" too.
    app = make_cached_app(make_app, redis_server, CACHE_KEY_PREFIX="cache[1]")
    (backend,) = app.extensions["cache"].values()
    backend.set("entry", "value")
    with redis_server.client(db=4) as redis:
        redis.set("cache1:other", "kept")

        backend.clear()

        assert redis.keys() == [b"cache1:other"]


def test_flask_cachings_own_redis_cache_flushes_the_database_without_a_prefix(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    # Why the backend insists on a key prefix: the docs say so.
    app = make_app(
        CACHE_TYPE="RedisCache",
        CACHE_REDIS_URL=redis_server.url(db=4),
        CACHE_KEY_PREFIX="",
    )
    cache = Cache(app)
    with redis_server.client(db=4) as redis:
        redis.set("comments:1", "lost")
        with app.app_context():
            cache.clear()
        assert redis.keys() == []
    with app.app_context():
        cache.cache._write_client.close()


def test_a_named_prefix(make_app: MakeApp, redis_server: RedisServer) -> None:
    app = make_app(
        REDIS_URL=redis_server.url(db=1),
        CACHE_REDIS_URL=redis_server.url(db=5),
        CACHE_TYPE=BACKEND,
        CACHE_REDIS_CONFIG_PREFIX="CACHE_REDIS",
    )
    Redis(app)
    # CACHE_REDIS_URL, … mean what they mean to Flask-Caching's RedisCache.
    Redis(app, config_prefix="CACHE_REDIS")
    cache = Cache(app)

    with app.app_context():
        cache.set("answer", 42)
        assert cache.get("answer") == 42
    with redis_server.client(db=5) as redis:
        assert redis.keys() == [b"flask_cache_answer"]


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        (
            {"CACHE_REDIS_CONFIG_PREFIX": "CACHE"},
            "CACHE_REDIS_CONFIG_PREFIX",
            "'CACHE' is not a Redis prefix of the app 'test_app'"
            " (its prefixes: 'REDIS'); register the extension first",
        ),
        (
            {"REDIS_CLASS": "redis.asyncio.Redis"},
            "CACHE_REDIS_CONFIG_PREFIX",
            "an asyncio client",
        ),
        (
            {"CACHE_KEY_PREFIX": ""},
            "CACHE_KEY_PREFIX",
            "'' is empty; the cache's keys share the database",
        ),
        ({"CACHE_ARGS": ["localhost"]}, "CACHE_ARGS", "is not used by this backend"),
    ],
)
def test_configuration_errors(
    make_app: MakeApp, config: dict[str, Any], key: str, message: str
) -> None:
    app = make_app(CACHE_TYPE=BACKEND, **config)
    Redis(app)

    with pytest.raises(ConfigurationError, match=re.escape(message)) as caught:
        Cache(app)

    assert caught.value.key == key


@pytest.mark.parametrize(
    ("config", "client_kwargs", "key"),
    [
        ({"REDIS_DECODE_RESPONSES": True}, {}, "REDIS_DECODE_RESPONSES"),
        (
            {"REDIS_URL": "redis://localhost:6379/0?decode_responses=yes"},
            {},
            "REDIS_URL",
        ),
        ({"REDIS_OPTIONS": {"decode_responses": True}}, {}, "REDIS_OPTIONS"),
        ({}, {"decode_responses": True}, "keyword argument 'decode_responses'"),
    ],
)
def test_a_client_that_decodes_responses_is_refused_naming_where_it_is_set(
    make_app: MakeApp,
    config: dict[str, Any],
    client_kwargs: dict[str, Any],
    key: str,
) -> None:
    app = make_app(CACHE_TYPE=BACKEND, **config)
    Redis(app, **client_kwargs)

    with pytest.raises(ConfigurationError) as caught:
        Cache(app)

    assert caught.value.key == key
    assert str(caught.value) == (
        f"{key}: decode_responses is on, but the cache's pickled values cannot be"
        " decoded; give the cache a prefix of its own, without it."
    )


def test_the_cache_of_a_cluster_makes_no_connection_when_created(
    no_network: list[str],
) -> None:
    app = Flask(__name__)  # not make_app, whose clean-up would build the client
    app.config.update(
        REDIS_CLUSTER_NODES=[f"127.0.0.1:{free_port()}"], CACHE_TYPE=BACKEND
    )
    Redis(app)

    Cache(app)  # the no_network fixture fails the test on any connection

    assert no_network == []


def keys_by_node(cluster: ServerCluster, pattern: str) -> list[list[bytes]]:
    """The keys matching *pattern* on each master of *cluster*."""
    found = []
    for master in cluster.masters():
        with master.client() as client:
            found.append(sorted(client.keys(pattern)))
    return found


def test_a_cache_on_a_cluster(make_app: MakeApp, redis_cluster: ServerCluster) -> None:
    app = make_app(
        REDIS_URL=redis_cluster.url(),
        CACHE_TYPE=BACKEND,
        CACHE_KEY_PREFIX="cluster_cache:",
    )
    redis = Redis(app)
    cache = Cache(app)

    with app.app_context():
        redis.set("cluster_cache_other", "kept: not under the prefix")
        cache.set_many({f"entry:{num}": num for num in range(30)})
        assert cache.get("entry:7") == 7
        entries = keys_by_node(redis_cluster, "cluster_cache:*")

        cache.clear()

        assert cache.get("entry:7") is None
        assert sum(keys_by_node(redis_cluster, "cluster_cache*"), []) == [
            b"cluster_cache_other"
        ]
        redis.delete("cluster_cache_other")
    assert len(entries) == 3 and all(entries)  # clear() went to every node
