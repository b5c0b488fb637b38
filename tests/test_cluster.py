"""Redis Cluster: configuration, a client built on first use, and a real
cluster of three masters with a replica each."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis as redis_py
from flask import Flask
from redis.asyncio import RedisCluster as AsyncRedisCluster
from redis.cluster import LoadBalancingStrategy, RedisCluster
from redis.exceptions import ClusterDownError, RedisClusterException

from flask_and_redis import (
    ClusterSettings,
    ConfigurationError,
    LoopLocalClient,
    Redis,
    client_settings_from_config,
)

from servers import ServerCluster, key_in_slots, replica_linked

MakeApp = Callable[..., Flask]
RecordTiming = Callable[[str, float], None]


class TaggedCluster(RedisCluster):
    """A subclass with a keyword of its own."""

    def __init__(self, *args: Any, tag: str = "none", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tag = tag


# -- Configuration, without servers


def settings(**config: Any) -> ClusterSettings:
    found = client_settings_from_config(config)
    assert isinstance(found, ClusterSettings)
    return found


@pytest.mark.parametrize(
    ("config", "nodes"),
    [
        ({"REDIS_CLUSTER": True}, (("localhost", 6379),)),
        ({"REDIS_CLUSTER": "yes", "REDIS_URL": "redis://n1:7000/0"}, (("n1", 7000),)),
        (
            {"REDIS_CLUSTER": True, "REDIS_HOST": "n1", "REDIS_PORT": "7000"},
            (("n1", 7000),),
        ),
        ({"REDIS_CLUSTER_NODES": ["n1:7000", "n2"]}, (("n1", 7000), ("n2", 6379))),
        ({"REDIS_CLUSTER_NODES": "n1:7000,n2:7001"}, (("n1", 7000), ("n2", 7001))),
        (
            {"REDIS_URL": "redis+cluster://n1:7000,n2:7001"},
            (("n1", 7000), ("n2", 7001)),
        ),
        ({"REDIS_URL": "redis+cluster://n1:7000/0"}, (("n1", 7000),)),
        (
            {"REDIS_CLASS": "redis.cluster.RedisCluster", "REDIS_HOST": "n1"},
            (("n1", 6379),),
        ),
        (
            {"REDIS_CLASS": TaggedCluster, "REDIS_CLUSTER_NODES": ["n1:7000"]},
            (("n1", 7000),),
        ),
        ({"REDIS_CLASS": "redis.Redis", "REDIS_CLUSTER": True}, (("localhost", 6379),)),
    ],
)
def test_each_form_gives_a_cluster_client(config: dict[str, Any], nodes: Any) -> None:
    found = settings(**config)

    assert found.nodes == nodes
    assert issubclass(found.client_class, RedisCluster)
    assert not {"host", "port", "db"} & set(found.kwargs)


ASYNC = "redis.asyncio.Redis"
# The forms of an asyncio cluster prefix, with the startup nodes each names.
ASYNCIO_FORMS = [
    ({"REDIS_CLASS": ASYNC, "REDIS_URL": "redis+cluster://n1:7000,n2:7001"}, 2),
    ({"REDIS_CLASS": ASYNC, "REDIS_CLUSTER_NODES": ["n1:7000", "n2:7001"]}, 2),
    (
        {
            "REDIS_CLASS": "redis.asyncio.cluster.RedisCluster",
            "REDIS_HOST": "n1",
            "REDIS_PORT": 7000,
        },
        1,
    ),
    ({"REDIS_CLASS": "redis.asyncio.RedisCluster", "REDIS_URL": "redis://n1:7000"}, 1),
]


@pytest.mark.parametrize(("config", "nodes"), ASYNCIO_FORMS)
def test_each_asyncio_form_gives_an_asyncio_cluster_client(
    config: dict[str, Any], nodes: int
) -> None:
    found = settings(**config)

    assert found.nodes == (("n1", 7000), ("n2", 7001))[:nodes]
    assert found.client_class is AsyncRedisCluster
    assert found.is_asyncio
    assert not {"host", "port", "db"} & set(found.kwargs)


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(("config", "nodes"), ASYNCIO_FORMS)
def test_init_app_of_an_asyncio_cluster_prefix_connects_to_nothing(
    config: dict[str, Any], nodes: int
) -> None:
    app = Flask(__name__)
    app.config.update(config)
    Redis(app)

    assert isinstance(app.extensions["redis"]["REDIS"], LoopLocalClient)


def test_the_url_wins_over_the_node_keys() -> None:
    found = settings(
        REDIS_URL="redis+cluster://u:pw@n1:7000", REDIS_CLUSTER_NODES=["n2:7001"]
    )

    assert found.nodes == (("n1", 7000),)
    assert (found.kwargs["username"], found.kwargs["password"]) == ("u", "pw")
    assert found.url == "redis+cluster://u:***@n1:7000"
    assert "pw" not in repr(found)


def test_cluster_options_from_keys_and_options() -> None:
    found = settings(
        REDIS_CLUSTER=True,
        REDIS_READ_FROM_REPLICAS="false",
        REDIS_REQUIRE_FULL_COVERAGE="no",
        REDIS_LOAD_BALANCING_STRATEGY="round_robin_replicas",
        REDIS_SOCKET_TIMEOUT="2",
        REDIS_OPTIONS={"reinitialize_steps": "3", "dynamic_startup_nodes": "off"},
    )

    assert found.kwargs["read_from_replicas"] is False
    assert found.kwargs["require_full_coverage"] is False
    assert found.kwargs["load_balancing_strategy"] is (
        LoadBalancingStrategy.ROUND_ROBIN_REPLICAS
    )
    assert found.kwargs["socket_timeout"] == 2.0
    assert found.kwargs["reinitialize_steps"] == 3
    assert found.kwargs["dynamic_startup_nodes"] is False
    assert "retry" not in found.kwargs  # the cluster's own policy applies


def test_a_subclass_keyword() -> None:
    found = settings(REDIS_CLASS=TaggedCluster, REDIS_TAG="blue", REDIS_CLUSTER=True)

    assert found.kwargs["tag"] == "blue"


def test_database_zero_is_accepted() -> None:
    assert "db" not in settings(REDIS_CLUSTER=True, REDIS_DB="0").kwargs


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        ({"REDIS_CLUSTER": True, "REDIS_DB": 1}, "REDIS_DB", "only the database 0"),
        (
            {"REDIS_URL": "redis+cluster://n1/2"},
            "REDIS_URL",
            "only the database 0",
        ),
        (
            {"REDIS_URL": "redis+cluster://n1/0/1"},
            "REDIS_URL",
            "URL is /0, or none",
        ),
        ({"REDIS_CLUSTER": "maybe"}, "REDIS_CLUSTER", "expected true or false"),
        (
            {"REDIS_CLUSTER": True, "REDIS_SENTINEL_MASTER": "m"},
            "REDIS_SENTINEL_MASTER",
            "no sentinels are configured",
        ),
        (
            {"REDIS_CLUSTER": False, "REDIS_CLUSTER_NODES": ["n1"]},
            "REDIS_CLUSTER",
            "False, but REDIS_CLUSTER_NODES configures a Redis Cluster",
        ),
        (
            {"REDIS_CLUSTER": True, "REDIS_CLASS": "fakeredis.FakeRedis"},
            "REDIS_CLASS",
            "fakeredis.FakeRedis is not a cluster client class",
        ),
        (
            {"REDIS_CLASS": ASYNC, "REDIS_CLUSTER_NODES": ["n1"], "REDIS_DB": "3"},
            "REDIS_DB",
            "only the database 0",
        ),
        (
            {"REDIS_CLASS": ASYNC, "REDIS_URL": "redis+cluster://n1/2"},
            "REDIS_URL",
            "only the database 0",
        ),
        (
            {
                "REDIS_CLASS": "redis.asyncio.RedisCluster",
                "REDIS_HOST": "n1",
                "REDIS_DB": 1,
            },
            "REDIS_DB",
            "only the database 0",
        ),
        (
            {"REDIS_CLUSTER": True, "REDIS_URL": "unix:///run/redis.sock"},
            "REDIS_URL",
            "reached over TCP",
        ),
        (
            {"REDIS_CLUSTER": True, "REDIS_HOST": "/run/redis.sock"},
            "REDIS_HOST",
            "reached over TCP",
        ),
        (
            {"REDIS_CLUSTER_NODES": ["n1"], "REDIS_PORT": 7000},
            "REDIS_PORT",
            "cannot be combined with the cluster nodes from REDIS_CLUSTER_NODES",
        ),
        (
            {"REDIS_CLUSTER_NODES": ["n1:70000"]},
            "REDIS_CLUSTER_NODES",
            "is not a list of addresses",
        ),
        (
            {"REDIS_CLUSTER": True, "REDIS_OPTIONS": {"read_from_replica": True}},
            "REDIS_OPTIONS['read_from_replica']",
            "did you mean 'read_from_replicas'?",
        ),
        (
            {"REDIS_CLUSTER": True, "REDIS_LOAD_BALANCING_STRATEGY": "nearest"},
            "REDIS_LOAD_BALANCING_STRATEGY",
            "'round_robin', 'round_robin_replicas'",
        ),
        (
            {
                "REDIS_CLUSTER": True,
                "REDIS_CONNECTION_POOL_CLASS": "redis.BlockingConnectionPool",
            },
            "REDIS_CONNECTION_POOL_CLASS",
            "takes no connection pool",
        ),
        (
            {"REDIS_CLUSTER": True, "REDIS_OPTIONS": {"startup_nodes": []}},
            "REDIS_OPTIONS['startup_nodes']",
            "takes no keyword argument 'startup_nodes'",
        ),
    ],
)
def test_configuration_errors(config: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        client_settings_from_config(config)

    assert error.value.key == key
    assert message in str(error.value)


def test_init_app_connects_to_nothing() -> None:
    app = Flask(__name__)
    # Nothing listens on port 1; RedisCluster() itself would fail to connect.
    app.config["REDIS_CLUSTER_NODES"] = ["127.0.0.1:1"]
    redis = Redis(app)

    assert "REDIS" in app.extensions["redis"]
    with app.app_context(), pytest.raises(RedisClusterException):
        redis.connection  # noqa: B018


# -- Against a real cluster


@pytest.mark.parametrize("form", ["cluster flag", "node list", "url", "class"])
def test_each_form_reaches_every_master(
    make_app: MakeApp, redis_cluster: ServerCluster, form: str
) -> None:
    node = redis_cluster.nodes[0]
    config: dict[str, Any] = {
        "cluster flag": {"REDIS_CLUSTER": True, "REDIS_URL": node.url()},
        "node list": {"REDIS_CLUSTER_NODES": redis_cluster.node_addresses},
        "url": {"REDIS_URL": redis_cluster.url()},
        "class": {
            "REDIS_CLASS": "redis.cluster.RedisCluster",
            "REDIS_HOST": node.host,
            "REDIS_PORT": node.port,
        },
    }[form]
    app = make_app(**config)
    redis = Redis(app)

    masters = redis_cluster.masters()
    keys = [key_in_slots(redis_cluster.slots_of(master), form) for master in masters]
    with app.app_context():
        for key in keys:
            redis.set(key, form)
        assert isinstance(redis.connection, RedisCluster)
        assert app.extensions["redis"]["REDIS"] is redis.connection
    for key, master in zip(keys, masters, strict=True):
        with master.client() as client:
            assert client.get(key) == form.encode()


@pytest.mark.parametrize("form", range(len(ASYNCIO_FORMS)))
def test_each_asyncio_form_reaches_every_master_from_async_views(
    make_app: MakeApp, redis_cluster: ServerCluster, form: int
) -> None:
    # The keys of the form, naming the cluster's nodes.
    config, node = dict(ASYNCIO_FORMS[form][0]), redis_cluster.nodes[0]
    if "REDIS_CLUSTER_NODES" in config:
        config["REDIS_CLUSTER_NODES"] = redis_cluster.node_addresses
    if "REDIS_HOST" in config:
        config.update(REDIS_HOST=node.host, REDIS_PORT=node.port)
    if "REDIS_URL" in config:
        cluster_url = "+cluster" in config["REDIS_URL"]
        config["REDIS_URL"] = redis_cluster.url() if cluster_url else node.url()
    app = make_app(**config)
    redis = Redis(app)
    masters = redis_cluster.masters()
    keys = [key_in_slots(redis_cluster.slots_of(m), f"async{form}") for m in masters]

    @app.get("/")
    async def view() -> dict[str, Any]:
        for key in keys:
            await redis.set(key, "async")
        # Several nodes at once, and a pipeline split by node.
        values = await asyncio.gather(*(redis.get(key) for key in keys))
        async with redis.pipeline() as pipe:
            for key in keys:
                pipe.incr(f"{key}:count")
            counts = await pipe.execute()
        return {
            "values": [value.decode() for value in values],
            "counts": counts,
            "asyncio cluster": isinstance(redis.connection, AsyncRedisCluster),
        }

    assert app.test_client().get("/").json == {
        "values": ["async"] * len(keys),
        "counts": [1] * len(keys),
        "asyncio cluster": True,
    }
    for key, master in zip(keys, masters, strict=True):
        with master.client() as client:
            assert client.get(key) == b"async"
    app.extensions["redis"]["REDIS"].close()


def test_multi_key_commands_and_pipelines(
    make_app: MakeApp, redis_cluster: ServerCluster
) -> None:
    redis = Redis(make_app(REDIS_URL=redis_cluster.url(), REDIS_DECODE_RESPONSES=True))

    # One hash tag: one slot, so one node serves them all.
    redis.mset({"{user:1}:name": "Ada", "{user:1}:mail": "ada@example.com"})
    assert redis.mget("{user:1}:name", "{user:1}:mail") == ["Ada", "ada@example.com"]
    # Keys of every node: the cluster client refuses an atomic MGET, and
    # splits a non-atomic one by slot.
    keys = [f"spread:{number}" for number in range(30)]
    redis.mset_nonatomic({key: key for key in keys})
    assert redis.mget_nonatomic(keys) == keys
    with pytest.raises(RedisClusterException, match="same key slot"):
        redis.mget(keys)
    assert len({redis_cluster.master_for_key(key).port for key in keys}) == 3

    with redis.pipeline() as pipe:  # one round trip per node
        for key in keys:
            pipe.incr(f"{key}:count")
        assert pipe.execute() == [1] * len(keys)


def test_the_client_is_built_once_for_concurrent_first_uses(
    make_app: MakeApp, redis_cluster: ServerCluster
) -> None:
    app = make_app(REDIS_URL=redis_cluster.url())
    redis = Redis(app)
    start = threading.Barrier(8)
    clients: list[Any] = []

    def first_use() -> None:
        start.wait()
        with app.app_context():
            clients.append(redis.connection)

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(clients) == 8
    assert all(client is clients[0] for client in clients)


@pytest.mark.slow
def test_a_master_failure_is_survived(
    make_app: MakeApp, redis_cluster: ServerCluster, record_timing: RecordTiming
) -> None:
    app = make_app(REDIS_URL=redis_cluster.url())
    redis = Redis(app)
    key = "survivor"
    redis.set(key, "before")
    master = redis_cluster.master_for_key(key)
    replica = redis_cluster.replica_of(master)

    master.kill()
    killed = time.monotonic()
    try:
        deadline = killed + 30
        while True:  # the write fails until the replica takes over
            try:
                redis.set(key, "after")
                break
            except (redis_py.ConnectionError, ClusterDownError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        recovered = time.monotonic()
        assert redis.get(key) == b"after"
        with replica.client() as client:  # promoted: it serves the key now
            assert client.info("replication")["role"] == "master"
            assert client.get(key) == b"after"
    finally:
        # Back as the replica of its replica, for the tests after this one.
        master.restart()
        deadline = time.monotonic() + 30
        while not replica_linked(master) and time.monotonic() < deadline:
            time.sleep(0.05)
    record_timing(
        "failover, cluster: kill to first write on the new master", recovered - killed
    )
