"""Client methods and item access through the extension, against a real server."""

from __future__ import annotations

import asyncio
import copy
import logging
import pickle
import pydoc
from collections.abc import Callable
from unittest import mock

import pytest
import redis as redis_py
import redis.asyncio as redis_asyncio
from flask import Flask
from redis.cluster import RedisCluster

from flask_and_redis import Redis

from servers import RedisServer, ServerCluster

MakeApp = Callable[..., Flask]

pytestmark = pytest.mark.usefixtures("flush_servers")


@pytest.fixture
def app(make_app: MakeApp, redis_server: RedisServer) -> Flask:
    return make_app(REDIS_URL=redis_server.url(db=0))


@pytest.fixture
def redis(app: Flask) -> Redis:
    return Redis(app)


def test_commands_reach_the_server(redis: Redis, redis_server: RedisServer) -> None:
    assert redis.set("greeting", "hello") is True
    assert redis.get("greeting") == b"hello"
    assert redis.incr("counter", 5) == 5
    assert redis.hset("hash", mapping={"a": "1"}) == 1
    with redis_server.client() as client:
        assert client.hgetall("hash") == {b"a": b"1"}


def test_pipeline_is_the_clients(redis: Redis) -> None:
    with redis.pipeline() as pipe:
        pipe.set("a", 1).incr("a").get("a")
        assert pipe.execute() == [True, 2, b"2"]


def test_pubsub_is_the_clients(redis: Redis) -> None:
    with redis.pubsub() as pubsub:
        pubsub.subscribe("news")
        assert pubsub.get_message(timeout=1)["type"] == "subscribe"
        assert redis.publish("news", "hello") == 1
        message = pubsub.get_message(timeout=1)
    assert message is not None
    assert message["data"] == b"hello"


def test_item_access(redis: Redis, redis_server: RedisServer) -> None:
    redis["key"] = "value"
    with redis_server.client() as client:
        assert client.get("key") == b"value"
    assert redis["key"] == b"value"
    assert "key" in redis
    del redis["key"]
    assert "key" not in redis
    with pytest.raises(KeyError):
        redis["key"]


def test_methods_carry_the_clients_name_and_docs(redis: Redis) -> None:
    assert redis.get.__name__ == "get"
    assert redis.get.__doc__ == redis_py.Redis.get.__doc__
    shown = pydoc.render_doc(redis.get, renderer=pydoc.plaintext)
    assert "get(name" in shown
    assert "Return the value at key ``name``" in shown
    assert {"get", "set", "pipeline", "pubsub"} <= set(dir(redis))


def test_instance_attributes_of_the_client_are_reachable(redis: Redis) -> None:
    assert redis.connection_pool is redis.connection.connection_pool


def test_instance_attributes_of_a_custom_client_are_reachable(
    make_app: MakeApp,
) -> None:
    class Client:
        def __init__(self) -> None:
            self.instance_only_attribute = "set in __init__"

    redis = Redis.from_custom_provider(Client, make_app())

    assert redis.instance_only_attribute == "set in __init__"
    redis.connection.instance_only_attribute = "changed"
    assert redis.instance_only_attribute == "changed"


def test_instance_attributes_of_asyncio_clients_are_reachable(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    class MarkedAsyncRedis(redis_asyncio.Redis):
        def __init__(self, **kwargs: object) -> None:
            super().__init__(**kwargs)
            self.marker_of_each_loop_client = id(self)

    redis = Redis.from_custom_provider(
        MarkedAsyncRedis, make_app(REDIS_URL=redis_server.url())
    )

    async def markers() -> tuple[int, int]:
        assert await redis.ping() is True  # the loop's first client
        return redis.marker_of_each_loop_client, id(redis.connection)

    marker, client_id = asyncio.run(markers())
    assert marker == client_id


class MarkedCluster(RedisCluster):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.marker_of_the_cluster_client = id(self)


def test_instance_attributes_of_a_cluster_client_are_reachable(
    make_app: MakeApp, redis_cluster: ServerCluster
) -> None:
    app = make_app(
        REDIS_CLASS=f"{__name__}.MarkedCluster",
        REDIS_CLUSTER_NODES=redis_cluster.node_addresses,
    )
    redis = Redis(app)

    with app.app_context():
        assert redis.ping() is True  # builds the cluster client
        assert redis.marker_of_the_cluster_client == id(redis.connection)


def test_the_extension_keeps_the_fast_attribute_lookup() -> None:
    # A __getattr__ (or __getattribute__) on the class would send every
    # lookup on the extension down CPython's slow path: see benchmarks/.
    assert "__getattr__" not in dir(Redis)
    assert Redis.__getattribute__ is object.__getattribute__


def test_unknown_attributes_raise_attribute_error(redis: Redis) -> None:
    with pytest.raises(AttributeError, match="no_such_command"):
        redis.no_such_command  # noqa: B018
    with pytest.raises(AttributeError):
        redis._private  # noqa: B018


def test_client_attributes_cannot_be_set_on_the_extension(redis: Redis) -> None:
    with pytest.raises(AttributeError, match=r"patch the client"):
        redis.get = lambda name: None


def test_patching_the_client_is_seen_through_the_extension(redis: Redis) -> None:
    with mock.patch.object(redis.connection, "get", return_value=b"mocked") as get:
        assert redis.get("key") == b"mocked"
    get.assert_called_once_with("key")
    assert redis.get("key") is None


def test_patching_the_client_class_is_seen_through_the_extension(
    redis: Redis,
) -> None:
    with mock.patch.object(redis_py.Redis, "get", return_value=b"class-wide"):
        assert redis.get("key") == b"class-wide"


def test_client_attributes_cannot_be_deleted_or_patched_on_the_extension(
    redis: Redis,
) -> None:
    with pytest.raises(AttributeError, match=r"patch the client"):
        del redis.get
    with pytest.raises(AttributeError, match=r"patch the client"):
        with mock.patch.object(redis, "get"):
            pass


def test_the_class_attributes_carry_the_clients_docs(redis: Redis) -> None:
    assert "Return the value at key" in (type(redis).get.__doc__ or "")


def test_copy_shares_the_registrations(redis: Redis, app: Flask) -> None:
    copied = copy.copy(redis)

    assert copied is not redis
    with app.app_context():
        assert copied.connection is redis.connection


def test_apps_registered_on_a_copy_are_its_own(redis: Redis, make_app: MakeApp) -> None:
    copied = copy.copy(redis)
    other = make_app("other")

    copied.init_app(other)

    with other.app_context():
        assert copied.connection is other.extensions["redis"]["REDIS"]
        with pytest.raises(RuntimeError, match="not registered"):
            redis.connection  # noqa: B018


def test_pickling_says_why_it_cannot(redis: Redis) -> None:
    with pytest.raises(TypeError, match="init_app"):
        pickle.dumps(redis)


def test_repr_shows_prefix_and_masked_url(
    make_app: MakeApp, redis_auth_server: RedisServer
) -> None:
    app = make_app(REDIS_URL=redis_auth_server.url(username="app", password="app-pa55"))
    redis = Redis(app)

    assert repr(redis) == (
        f"<flask_and_redis.Redis REDIS"
        f" redis://app:***@127.0.0.1:{redis_auth_server.port}/0>"
    )
    assert repr(Redis(config_prefix="OTHER")) == (
        "<flask_and_redis.Redis OTHER on 0 apps>"
    )


def test_init_app_logs_where_it_connects_without_the_password(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(REDIS_URL="redis://user:hunter2-secret@example.test:6380/3")

    with caplog.at_level(logging.DEBUG, logger="flask_and_redis"):
        Redis(app)

    assert "redis://user:***@example.test:6380/3" in caplog.text
    assert "hunter2" not in caplog.text


def test_connection_in_hot_loops_is_the_client(redis: Redis, app: Flask) -> None:
    with app.app_context():
        client = redis.connection
    assert isinstance(client, redis_py.Redis)
    assert client is app.extensions["redis"]["REDIS"]
