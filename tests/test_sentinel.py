"""Redis Sentinel: configuration, master and replica clients, and failovers
followed, against a group of real servers and sentinels."""

from __future__ import annotations

import asyncio
import gc
import importlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis as redis_py
from flask import Flask, request
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError

import flask_and_redis
from flask_and_redis import (
    ConfigurationError,
    Redis,
    SentinelSettings,
    client_settings_from_config,
)

from servers import (
    RedisServer,
    SentinelGroup,
    SwitchMasterAnnouncements,
    in_a_forked_child,
)

MakeApp = Callable[..., Flask]
RecordTiming = Callable[[str, float], None]

ASYNC = "redis.asyncio.Redis"
WATCHER_THREAD = "flask_and_redis: "  # the start of a failover watcher's name
_WATCH_INTERVAL = 0.25  # how often a watcher checks whether to stop


def watcher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(WATCHER_THREAD)]


@pytest.fixture
def sentinel_redis() -> Iterator[Callable[[Flask], Redis]]:
    """``sentinel_redis(app)``: ``Redis(app)``, whose master and replica
    clients are closed after the test."""
    made: list[tuple[Redis, Flask]] = []

    def make(app: Flask) -> Redis:
        redis = Redis(app)
        made.append((redis, app))
        return redis

    yield make
    for redis, app in made:
        if redis.settings_for(app).is_asyncio:
            continue  # make_app closes them, in their event loops
        with app.app_context():
            redis.replica.close()
            redis.connection.close()


# -- Configuration, without servers


def settings(**config: Any) -> SentinelSettings:
    found = client_settings_from_config(config)
    assert isinstance(found, SentinelSettings)
    return found


def test_url_names_sentinels_master_and_database() -> None:
    found = settings(
        REDIS_URL="redis+sentinel://app:pa55@s1:26380,s2,[::1]:26381/mymaster/3"
        "?socket_timeout=2"
    )

    assert found.sentinels == (("s1", 26380), ("s2", 26379), ("::1", 26381))
    assert found.service_name == "mymaster"
    assert found.kwargs["db"] == 3
    assert (found.kwargs["username"], found.kwargs["password"]) == ("app", "pa55")
    assert found.kwargs["socket_timeout"] == 2.0
    # The password is the master's, not the sentinels'.
    assert "password" not in found.sentinel_kwargs
    assert found.url == (
        "redis+sentinel://app:***@s1:26380,s2:26379,[::1]:26381/mymaster/3"
    )
    assert "pa55" not in repr(found)


@pytest.mark.parametrize(
    "sentinels",
    [["s1:26380", "s2:26381"], "s1:26380, s2:26381", [("s1", 26380), ("s2", "26381")]],
)
def test_keys_name_sentinels_and_master(sentinels: object) -> None:
    found = settings(
        REDIS_SENTINELS=sentinels,
        REDIS_SENTINEL_MASTER="cache",
        REDIS_DB="2",
        REDIS_PASSWORD="master-pw",
        REDIS_SENTINEL_USERNAME="watcher",
        REDIS_SENTINEL_PASSWORD="sentinel-pw",
        REDIS_SENTINEL_OPTIONS={"socket_timeout": "0.5"},
    )

    assert found.sentinels == (("s1", 26380), ("s2", 26381))
    assert found.service_name == "cache"
    assert (found.kwargs["db"], found.kwargs["password"]) == (2, "master-pw")
    assert found.sentinel_kwargs["username"] == "watcher"
    assert found.sentinel_kwargs["password"] == "sentinel-pw"
    assert found.sentinel_kwargs["socket_timeout"] == 0.5
    assert found.sources["db"] == "REDIS_DB"


def test_url_wins_over_keys_which_fill_in() -> None:
    found = settings(
        REDIS_URL="redis+sentinel://s1:1,s2:2/from-url",
        REDIS_SENTINELS=["k1:1"],
        REDIS_SENTINEL_MASTER="from-keys",
        REDIS_DB=4,
    )

    assert found.sentinels == (("s1", 1), ("s2", 2))
    assert found.service_name == "from-url"
    assert found.kwargs["db"] == 4


def test_url_sentinels_win_over_a_host_key() -> None:
    found = settings(REDIS_URL="redis+sentinel://s1/m", REDIS_HOST="h", REDIS_PORT=1)

    assert "host" not in found.kwargs and "port" not in found.kwargs


def test_master_name_from_the_key_when_the_url_has_none() -> None:
    found = settings(REDIS_URL="redis+sentinel://s1", REDIS_SENTINEL_MASTER="m")

    assert (found.service_name, found.sentinels) == ("m", (("s1", 26379),))


def test_tls_applies_to_master_replicas_and_sentinels(tmp_path: Any) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    found = settings(
        REDIS_URL="rediss+sentinel://s1/m",
        REDIS_SSL_CA_CERTS=str(ca),
        REDIS_SOCKET_CONNECT_TIMEOUT=1,
    )
    assert found.kwargs["ssl"] is True
    assert found.sentinel_kwargs["ssl"] is True
    assert found.sentinel_kwargs["ssl_ca_certs"] == str(ca)
    assert found.sentinel_kwargs["socket_connect_timeout"] == 1.0
    assert found.url.startswith("rediss+sentinel://")

    plain_sentinels = settings(
        REDIS_URL="rediss+sentinel://s1/m", REDIS_SENTINEL_OPTIONS={"ssl": False}
    )
    assert plain_sentinels.kwargs["ssl"] is True
    assert plain_sentinels.sentinel_kwargs["ssl"] is False


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        (
            {"REDIS_SENTINELS": ["s1:26379"]},
            "REDIS_SENTINEL_MASTER",
            "the master's name is missing",
        ),
        (
            {"REDIS_URL": "redis+sentinel://s1:26379"},
            "REDIS_SENTINEL_MASTER",
            "redis+sentinel://host:26379/mymaster/0",
        ),
        (
            {"REDIS_SENTINEL_MASTER": "m"},
            "REDIS_SENTINEL_MASTER",
            "no sentinels are configured",
        ),
        (
            {"REDIS_SENTINEL_PASSWORD": "hush-hush"},
            "REDIS_SENTINEL_PASSWORD",
            "*** is set, but no sentinels",
        ),
        (
            {"REDIS_URL": "redis://h:6379/0", "REDIS_SENTINELS": ["s1"]},
            "REDIS_URL",
            "names one server",
        ),
        (
            {
                "REDIS_SENTINELS": ["s1"],
                "REDIS_HOST": "h",
                "REDIS_SENTINEL_MASTER": "m",
            },
            "REDIS_HOST",
            "cannot be combined with the sentinels from REDIS_SENTINELS",
        ),
        (
            {"REDIS_SENTINELS": ["s1:port"], "REDIS_SENTINEL_MASTER": "m"},
            "REDIS_SENTINELS",
            "is not a list of addresses",
        ),
        (
            {"REDIS_SENTINELS": [], "REDIS_SENTINEL_MASTER": "m"},
            "REDIS_SENTINELS",
            "is not a list of addresses",
        ),
        (
            {"REDIS_URL": "redis+sentinel://s1:1,:2/m"},
            "REDIS_URL",
            "does not list its hosts",
        ),
        (
            {"REDIS_URL": "redis+sentinel://s1/m/zero"},
            "REDIS_URL",
            "/master_name[/db]",
        ),
        (
            {"REDIS_URL": "redis+sentinel://s1/m", "REDIS_SENTINEL_OPTIONS": "x"},
            "REDIS_SENTINEL_OPTIONS",
            "is not a mapping",
        ),
        (
            {
                "REDIS_URL": "redis+sentinel://s1/m",
                "REDIS_SENTINEL_OPTIONS": {"socket_timout": 1},
            },
            "REDIS_SENTINEL_OPTIONS['socket_timout']",
            "did you mean 'socket_timeout'?",
        ),
        (
            {
                "REDIS_URL": "redis+sentinel://s1/m",
                "REDIS_OPTIONS": {"connection_pool": 1},
            },
            "REDIS_OPTIONS['connection_pool']",
            "a connection pool cannot be given with Sentinel",
        ),
        (
            {
                "REDIS_URL": "redis+sentinel://s1/m",
                "REDIS_CONNECTION_POOL_CLASS": "redis.BlockingConnectionPool",
            },
            "REDIS_CONNECTION_POOL_CLASS",
            "cannot be used with Sentinel",
        ),
        (
            {"REDIS_URL": "redis+sentinel://s1/m", "REDIS_CLUSTER": True},
            "REDIS_CLUSTER",
            "configures Sentinel",
        ),
        (
            {"REDIS_URL": "redis+sentinel://s1/m", "REDIS_CLASS": "builtins.dict"},
            "REDIS_CLASS",
            "is not redis.Redis, redis.asyncio.Redis or a subclass of one",
        ),
        (
            {"REDIS_URL": "redis+sentinel://:pw@s1/m", "REDIS_SSL": True},
            "REDIS_SSL",
            "use a rediss+sentinel:// URL",
        ),
    ],
)
def test_configuration_errors(config: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        client_settings_from_config(config)

    assert error.value.key == key
    assert message in str(error.value)
    assert "hush-hush" not in str(error.value)


def test_init_app_connects_to_nothing_and_starts_no_thread() -> None:
    app = Flask(__name__)
    # Nothing listens on port 1: any connection would fail.
    app.config["REDIS_URL"] = "redis+sentinel://127.0.0.1:1/mymaster"
    redis = Redis(app)

    assert isinstance(redis.settings_for(app), SentinelSettings)
    assert redis.replica is not redis.connection
    assert watcher_threads() == []


def test_an_announced_master_is_trusted_while_other_sentinels_catch_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing listens on port 1: asking the sentinels fails.
    client = settings(REDIS_URL="redis+sentinel://127.0.0.1:1/mymaster").create_client()
    pool = client.connection_pool
    try:
        with pytest.raises(MasterNotFoundError):
            pool.get_master_address()
        # As the failover watcher does when a sentinel announces a new master.
        pool.sentinel_manager.announce("mymaster", ("10.0.0.9", 6380))
        assert pool.get_master_address() == ("10.0.0.9", 6380)
        # Then the sentinels are asked again.
        monkeypatch.setattr(flask_and_redis, "_ANNOUNCEMENT_TRUSTED_FOR", 0.0)
        pool.sentinel_manager.announce("mymaster", ("10.0.0.8", 6380))
        with pytest.raises(MasterNotFoundError):
            pool.get_master_address()
    finally:
        client.close()


def test_a_write_retried_after_its_master_died_reaches_the_announced_master(
    server_factory: Callable[..., RedisServer],
) -> None:
    # redis-py 6 and later reconnect a connection that a failed command
    # closed to the address it had: the retries would go to the dead master.
    old_master, new_master = server_factory(), server_factory()
    # Nothing listens on port 1: the announcements say where the master is.
    client = settings(
        REDIS_URL="redis+sentinel://127.0.0.1:1/mymaster",
        REDIS_RETRY=Retry(NoBackoff(), 2),
        REDIS_RETRY_ON_ERROR=[redis_py.ConnectionError],  # for redis-py 5
    ).create_client()
    sentinel_manager = client.connection_pool.sentinel_manager
    try:
        sentinel_manager.announce("mymaster", old_master.address)
        client.set("key", "old")
        with old_master.client() as admin, ThreadPoolExecutor(1) as executor:
            # The next write waits on the old master, which dies after a
            # new master is announced.
            admin.execute_command("CLIENT", "PAUSE", 10_000, "WRITE")
            write = executor.submit(client.set, "key", "new")
            wait_for(
                "the write waits on the old master",
                lambda: any("b" in entry["flags"] for entry in admin.client_list()),
                10,
            )
            sentinel_manager.announce("mymaster", new_master.address)
            old_master.kill()
            assert write.result(timeout=30) is True
    finally:
        client.close()
    with new_master.client() as new:
        assert new.get("key") == b"new"


def test_an_asyncio_write_retried_after_its_master_died_reaches_the_new_one(
    server_factory: Callable[..., RedisServer],
) -> None:
    # As for sync clients: redis.asyncio 6 and later reconnect a connection
    # that a failed command closed to the address it had.
    old_master, new_master = server_factory(), server_factory()
    # Nothing listens on port 1: the announcements say where the master is.
    client = settings(
        REDIS_URL="redis+sentinel://127.0.0.1:1/mymaster",
        REDIS_CLASS=ASYNC,
        REDIS_RETRY=AsyncRetry(NoBackoff(), 2),
        REDIS_RETRY_ON_ERROR=[redis_py.ConnectionError],  # for redis-py 5
    ).create_client()
    sentinel_manager = client.connection_pool.sentinel_manager

    async def main() -> None:
        sentinel_manager.announce("mymaster", old_master.address)
        await client.set("key", "old")
        with old_master.client() as admin:
            # The next write waits on the old master, which dies after a
            # new master is announced.
            admin.execute_command("CLIENT", "PAUSE", 10_000, "WRITE")
            write = asyncio.ensure_future(client.set("key", "new"))
            while not any("b" in entry["flags"] for entry in admin.client_list()):
                await asyncio.sleep(0.005)
            sentinel_manager.announce("mymaster", new_master.address)
            old_master.kill()
            assert await asyncio.wait_for(write, 30) is True

    async def closing() -> None:
        try:
            await main()
        finally:
            await client.aclose()

    asyncio.run(closing())
    with new_master.client() as new:
        assert new.get("key") == b"new"


def test_an_asyncio_connection_busy_as_the_master_changes_goes_no_further(
    server_factory: Callable[..., RedisServer],
) -> None:
    # redis.asyncio's pool takes back a connection to the old master, which
    # would write to it until it is demoted, unless the pool closes it.
    old_master, new_master = server_factory(), server_factory()
    # Nothing listens on port 1: the announcements say where the master is.
    client = settings(
        REDIS_URL="redis+sentinel://127.0.0.1:1/mymaster", REDIS_CLASS=ASYNC
    ).create_client()
    pool = client.connection_pool

    async def main() -> None:
        pool.sentinel_manager.announce("mymaster", old_master.address)
        await client.set("key", "old")
        with old_master.client() as admin:
            # The next write waits on the old master while a new one is
            # announced, as the failover watcher does.
            admin.execute_command("CLIENT", "PAUSE", 300, "WRITE")
            write = asyncio.ensure_future(client.set("key", "in flight"))
            while not any("b" in entry["flags"] for entry in admin.client_list()):
                await asyncio.sleep(0.005)
            pool.sentinel_manager.announce("mymaster", new_master.address)
            await pool.get_master_address()
            assert await write is True
        await client.set("key", "new")

    async def closing() -> None:
        try:
            await main()
        finally:
            await client.aclose()

    asyncio.run(closing())
    with old_master.client() as old, new_master.client() as new:
        assert (old.get("key"), new.get("key")) == (b"in flight", b"new")


@pytest.mark.parametrize("client_class", ["redis.Redis", ASYNC])
@pytest.mark.parametrize("scheme", ["redis+sentinel", "rediss+sentinel"])
def test_tls_and_acl_users_for_the_master_and_the_sentinels(
    scheme: str, client_class: str
) -> None:
    client = settings(
        REDIS_URL=f"{scheme}://app:app-pw@127.0.0.1:1/mymaster",
        REDIS_CLASS=client_class,
        REDIS_SENTINEL_USERNAME="watcher",
        REDIS_SENTINEL_PASSWORD="sentinel-pw",
    ).create_client()
    redis_py_module = "redis.asyncio" if client_class == ASYNC else "redis"
    managed = importlib.import_module(f"{redis_py_module}.sentinel")
    ssl_connection = importlib.import_module(f"{redis_py_module}.connection")
    pool = client.connection_pool
    sentinel_pool = pool.sentinel_manager.sentinels[0].connection_pool
    tls = scheme.startswith("rediss")
    try:
        assert issubclass(pool.connection_class, managed.SentinelManagedConnection)
        assert issubclass(pool.connection_class, ssl_connection.SSLConnection) == tls
        sentinel_connection = sentinel_pool.connection_class
        assert issubclass(sentinel_connection, ssl_connection.SSLConnection) == tls
        assert pool.connection_kwargs["username"] == "app"
        assert pool.connection_kwargs["password"] == "app-pw"
        assert sentinel_pool.connection_kwargs["username"] == "watcher"
        assert sentinel_pool.connection_kwargs["password"] == "sentinel-pw"
    finally:
        if client_class != ASYNC:  # an asyncio one that never connected needs none
            client.close()


def test_replica_of_an_app_without_sentinel_says_how_to_get_one(
    make_app: MakeApp,
) -> None:
    redis = Redis(make_app(REDIS_URL="redis://127.0.0.1:1/0"))

    with pytest.raises(RuntimeError, match="REDIS_SENTINELS"):
        redis.replica  # noqa: B018


# -- Against a group of servers and sentinels


def test_url_writes_to_the_master_and_reads_from_a_replica(
    make_app: MakeApp,
    sentinel_redis: Callable[[Flask], Redis],
    sentinel_group: SentinelGroup,
) -> None:
    redis = sentinel_redis(make_app(REDIS_URL=sentinel_group.url(db=1)))

    redis.set("sentinel:url", "written")
    assert redis.connection.wait(1, 5000) == 1  # replicated

    with sentinel_group.master().client(db=1) as master:
        assert master.get("sentinel:url") == b"written"
    assert redis.replica.get("sentinel:url") == b"written"
    assert redis.replica.info("replication")["role"] == "slave"
    assert redis.connection.info("replication")["role"] == "master"


def test_keys_give_the_same_clients(
    make_app: MakeApp,
    sentinel_redis: Callable[[Flask], Redis],
    sentinel_group: SentinelGroup,
) -> None:
    app = make_app(
        REDIS_SENTINELS=sentinel_group.sentinel_addresses,
        REDIS_SENTINEL_MASTER=sentinel_group.master_name,
        REDIS_DB=2,
        REDIS_DECODE_RESPONSES=True,
    )
    redis = sentinel_redis(app)

    redis.set("sentinel:keys", "written")
    redis.connection.wait(1, 5000)
    with sentinel_group.master().client(db=2) as master:
        assert master.get("sentinel:keys") == b"written"
    assert redis.replica.get("sentinel:keys") == "written"
    assert app.extensions["redis"]["REDIS"] is redis.connection


def test_replica_is_resolved_per_app(
    make_app: MakeApp,
    sentinel_redis: Callable[[Flask], Redis],
    sentinel_group: SentinelGroup,
) -> None:
    redis = Redis()
    first = make_app("first", REDIS_URL=sentinel_group.url(db=3))
    second = make_app("second", REDIS_URL=sentinel_group.url(db=4))
    for app in (first, second):
        redis.init_app(app)
        with app.app_context():
            redis.set("which", app.name)
            redis.connection.wait(1, 5000)

    for app in (first, second):
        with app.app_context():
            assert redis.replica.get("which") == app.name.encode()
            redis.replica.close()
            redis.connection.close()


def test_asyncio_master_and_replica_clients_per_event_loop(
    make_app: MakeApp, sentinel_group: SentinelGroup
) -> None:
    app = make_app(REDIS_URL=sentinel_group.url(db=6), REDIS_CLASS=ASYNC)
    redis = Redis(app)
    # (Those of the tests before it end within a quarter of a second.)
    wait_for("no watcher before", lambda: not watcher_threads(), 1.0)

    async def main() -> tuple[Any, Any, object, str, str]:
        await redis.set("sentinel:async", "written")
        assert await redis.connection.wait(1, 5000) == 1  # replicated
        replica, master = redis.replica, redis.connection
        assert replica.connection_pool.sentinel_manager is (
            master.connection_pool.sentinel_manager
        )
        assert len(watcher_threads()) == len(sentinel_group.sentinels)
        return (
            master,
            replica,
            await replica.get("sentinel:async"),
            (await replica.info("replication"))["role"],
            (await master.info("replication"))["role"],
        )

    with app.app_context():
        first = asyncio.run(main())
        # Closed with their loop: watchers stopped, connections closed.
        wait_for("the watchers end", lambda: watcher_threads() == [], 1.0)
        second = asyncio.run(main())
    assert isinstance(first[0], redis_py.asyncio.Redis)
    assert first[2:] == second[2:] == (b"written", "slave", "master")
    assert second[0] is not first[0] and second[1] is not first[1]
    wait_for("the watchers end", lambda: watcher_threads() == [], 1.0)
    with sentinel_group.master().client(db=6) as master:
        assert master.get("sentinel:async") == b"written"


def test_async_views_use_the_master_and_the_replica_of_the_views_loop(
    make_app: MakeApp, sentinel_group: SentinelGroup
) -> None:
    app = make_app(
        REDIS_SENTINELS=sentinel_group.sentinel_addresses,
        REDIS_SENTINEL_MASTER=sentinel_group.master_name,
        REDIS_DB=7,
        REDIS_CLASS=ASYNC,
        REDIS_DECODE_RESPONSES=True,
    )
    redis = Redis(app)
    wait_for("no watcher before", lambda: not watcher_threads(), 1.0)

    @app.put("/<key>")
    async def write(key: str) -> dict[str, Any]:
        await redis.set(key, request.get_data())
        await redis.connection.wait(1, 5000)
        return {
            "read": await redis.replica.get(key),
            "role": (await redis.replica.info("replication"))["role"],
            "replica": id(redis.replica),
        }

    client = app.test_client()
    replies = [client.put(f"/key:{n}", data=f"value {n}").json for n in range(3)]

    assert [(reply["read"], reply["role"]) for reply in replies] == [
        (f"value {n}", "slave") for n in range(3)
    ]
    assert len({reply["replica"] for reply in replies}) == 1  # the loop's own
    assert len(watcher_threads()) == len(sentinel_group.sentinels)
    app.extensions["redis"]["REDIS"].close()
    wait_for("the watchers end", lambda: watcher_threads() == [], 1.0)


def test_failover_watchers_start_on_first_use_and_stop_on_close(
    make_app: MakeApp, sentinel_group: SentinelGroup
) -> None:
    app = make_app(
        REDIS_URL=sentinel_group.url(),
        REDIS_SENTINEL_OPTIONS={"client_name": "watched-app"},
    )
    redis = Redis(app)
    # (Those of the tests before it end within a quarter of a second.)
    wait_for("no watcher before the first use", lambda: not watcher_threads(), 1.0)

    redis.ping()
    assert len(watcher_threads()) == len(sentinel_group.sentinels)
    assert all(named_clients(sentinel) for sentinel in sentinel_group.sentinels)

    started = time.monotonic()
    redis.connection.close()
    redis.replica.close()
    closing = time.monotonic() - started
    # Unwaited for: closing (or dropping an app) blocks no one. They end soon.
    wait_for("the watchers end", lambda: watcher_threads() == [], 1.0)
    assert closing < _WATCH_INTERVAL
    # Their connections, and those that asked where the master is, are closed.
    wait_for(
        "no connection left on the sentinels",
        lambda: not any(named_clients(s) for s in sentinel_group.sentinels),
        5,
    )


def named_clients(sentinel: Any, name: str = "watched-app") -> int:
    """How many connections named *name* a sentinel has."""
    with sentinel.client() as client:
        return sum(1 for entry in client.client_list() if entry["name"] == name)


def test_dropped_apps_leave_no_threads_or_connections(
    sentinel_group: SentinelGroup,
) -> None:
    # As an app factory in a test suite does: an app per test, used, dropped.
    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    wait_for("no watcher before", lambda: not watcher_threads(), 1.0)
    threads, files = threading.active_count(), open_files()
    for number in range(20):
        app = Flask(f"dropped{number}")
        app.config["REDIS_URL"] = sentinel_group.url()
        redis = Redis(app)
        redis.ping()  # which starts its watchers
        del app, redis
        gc.collect()  # the app's cycles: its client is closed with it

    wait_for("the watchers end", lambda: not watcher_threads(), 1.0)
    assert threading.active_count() == threads
    wait_for("the connections close", lambda: open_files() == files, 1.0)


def test_a_forked_worker_follows_failovers_itself(
    make_app: MakeApp, sentinel_group: SentinelGroup
) -> None:
    # As gunicorn --preload does: the app is made, and used, before forking.
    redis = Redis(make_app(REDIS_URL=sentinel_group.url(db=5)))
    redis.set("forked", "parent")

    def in_the_worker() -> bool:
        redis.set("forked", "child")
        return len(watcher_threads()) == len(sentinel_group.sentinels)

    assert in_a_forked_child(in_the_worker)
    assert redis.get("forked") == b"child"
    # The parent's own, once those of the tests before it have ended.
    wait_for(
        "the parent's watchers alone",
        lambda: len(watcher_threads()) == len(sentinel_group.sentinels),
        1.0,
    )
    redis.connection.close()
    redis.replica.close()


# -- Failovers


class Writer:
    """Writes ``marker:<n>`` with *write* (see :func:`writes_through`), one
    after the other, in a thread; remembers when each write was sent, when it
    was answered, and when it was acknowledged (a write that fails may still
    have been executed: a reply lost with the connection)."""

    def __init__(self, write: Callable[[str, int], bool]) -> None:
        self.write = write
        self.sent: dict[str, float] = {}  # key -> when
        self.answered: dict[str, float] = {}
        self.acknowledged: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, daemon=True)
        self._thread.start()

    def _write(self) -> None:
        number = 0
        while not self._stop.is_set():
            key = f"marker:{number}"
            number += 1
            self.sent[key] = time.monotonic()
            acknowledged = self.write(key, number)
            self.answered[key] = time.monotonic()
            if acknowledged:
                self.acknowledged[key] = self.answered[key]
            time.sleep(0.002)

    def last_acknowledged(self) -> float:
        return max(self.acknowledged.values(), default=0.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def writes_through(app: Flask, redis: Redis) -> Callable[[str, int], bool]:
    """``write(key, value)``, which tells whether the write was acknowledged:
    through *redis* in an app context, or for an asyncio client class, through
    an async view of *app*."""
    if not redis.settings_for(app).is_asyncio:

        def write(key: str, value: int) -> bool:
            with app.app_context():
                try:
                    redis.set(key, value)
                except redis_py.ConnectionError:  # no master, for now
                    return False
            return True

        return write

    @app.put("/markers/<key>")
    async def write_marker(key: str) -> str:
        await redis.set(key, request.get_data())
        return "OK"

    @app.errorhandler(redis_py.ConnectionError)  # no master, for now
    def unavailable(error: redis_py.ConnectionError) -> tuple[str, int]:
        return type(error).__name__, 503

    client = app.test_client()
    return lambda key, value: (
        client.put(f"/markers/{key}", data=str(value)).status_code == 200
    )


def wait_for(what: str, check: Callable[[], bool], deadline: float) -> None:
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"Not done within {deadline} s: {what}")
        time.sleep(0.005)


def subscribers(sentinel: Any) -> int:
    """How many clients listen for announcements on *sentinel*."""
    with sentinel.client() as client:
        return sum(1 for entry in client.client_list() if entry["sub"] != "0")


# Generous deadlines: these tests check correctness, not speed; the times they
# measure are reported at the end of the run.
FAILOVER_DEADLINE = 30.0
GRACE = 1.0  # writes this long after the announcement never reach the old master


def fail_over(
    group: SentinelGroup, write: Callable[[str, int], bool], cause: Callable[[], None]
) -> tuple[Writer, float, float]:
    """Write with *write* while *cause* makes the sentinels fail the master
    over, until the writes have gone on for a while after the first
    announcement. Return the writer, and when the failover was caused and
    first announced."""
    writer = Writer(write)
    announcements = SwitchMasterAnnouncements(group)
    try:
        wait_for(
            "writes before the failover", lambda: len(writer.acknowledged) > 20, 10
        )
        caused = time.monotonic()
        cause()
        wait_for(
            "an announcement", lambda: bool(announcements.heard), FAILOVER_DEADLINE
        )
        announced = announcements.time()
        assert announced is not None
        wait_for(
            "writes after the grace period",
            lambda: writer.last_acknowledged() > announced + GRACE + 0.5,
            FAILOVER_DEADLINE,
        )
    finally:
        writer.stop()
        announcements.close()
    return writer, caused, announced


# Each failover test writes through the extension, or through an async view
# with an asyncio client class.
CLIENT_CLASSES = pytest.mark.parametrize(
    "client_class", ["redis.Redis", ASYNC], ids=["sync", "asyncio"]
)


@pytest.mark.slow
@CLIENT_CLASSES
def test_a_forced_failover_is_followed(
    make_app: MakeApp,
    sentinel_redis: Callable[[Flask], Redis],
    fresh_sentinel_group: SentinelGroup,
    record_timing: RecordTiming,
    client_class: str,
) -> None:
    group = fresh_sentinel_group
    app = make_app(REDIS_URL=group.url(), REDIS_CLASS=client_class)
    redis = sentinel_redis(app)
    write = writes_through(app, redis)
    old_master = group.master()
    assert write("marker:first", 0)  # which starts the watchers
    # The watchers hear from sentinels that restart.
    for sentinel in group.sentinels:
        sentinel.restart()
    wait_for(
        "the watchers listen again",
        lambda: all(subscribers(sentinel) == 1 for sentinel in group.sentinels),
        10,
    )

    def force() -> None:
        with group.sentinels[0].client() as sentinel:
            sentinel.sentinel_failover(group.master_name)

    writer, forced, announced = fail_over(group, write, force)

    new_master = group.master()
    assert new_master is not old_master
    with old_master.client() as old:
        # Still a master: what it holds was written to it, not replicated.
        assert old.info("replication")["role"] == "master"
        on_old = {key.decode() for key in old.keys("marker:*")} - {"marker:first"}
    late = [
        key for key, when in writer.acknowledged.items() if when > announced + GRACE
    ]
    assert late and not on_old.intersection(late)
    with new_master.client() as new:
        assert new.exists(*late) == len(late)
    # Nothing sent after the grace period, acknowledged or not, reached it.
    assert all(writer.sent[key] <= announced + GRACE for key in on_old)

    first_on_new = min(
        when for key, when in writer.acknowledged.items() if key not in on_old
    )
    last_on_old = max(writer.answered[key] for key in on_old)
    what = f"failover, forced, {'asyncio' if client_class == ASYNC else 'sync'}"
    record_timing(f"{what}: SENTINEL FAILOVER to announcement", announced - forced)
    record_timing(
        f"{what}: SENTINEL FAILOVER to first write on the new master",
        first_on_new - forced,
    )
    record_timing(
        f"{what}: last write on the old master, after announcement",
        last_on_old - announced,
    )


@pytest.mark.slow
@CLIENT_CLASSES
def test_a_killed_master_is_replaced(
    make_app: MakeApp,
    sentinel_redis: Callable[[Flask], Redis],
    fresh_sentinel_group: SentinelGroup,
    record_timing: RecordTiming,
    client_class: str,
) -> None:
    group = fresh_sentinel_group
    app = make_app(
        REDIS_SENTINELS=group.sentinel_addresses,
        REDIS_SENTINEL_MASTER=group.master_name,
        REDIS_CLASS=client_class,
    )
    redis = sentinel_redis(app)
    old_master = group.master()

    writer, killed, announced = fail_over(
        group, writes_through(app, redis), old_master.kill
    )

    new_master = group.master()
    assert new_master is not old_master
    after_kill = [key for key, when in writer.acknowledged.items() if when > killed]
    with new_master.client() as new:
        assert new.exists(*after_kill) == len(after_kill)
    first_after_kill = min(writer.acknowledged[key] for key in after_kill)
    what = f"failover, killed master, {'asyncio' if client_class == ASYNC else 'sync'}"
    record_timing(f"{what}: kill to announcement", announced - killed)
    record_timing(
        f"{what}: kill to first write on the new master", first_after_kill - killed
    )
