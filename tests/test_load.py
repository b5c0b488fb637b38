"""Many threads, two apps, two prefixes: no leaked connections, no cross-talk.

One extension per prefix, each registered on both apps, so every call resolves
its client from the current app context while other threads use the other app.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from flask import Flask

from flask_and_redis import Redis

from servers import RedisServer

MakeApp = Callable[..., Flask]

THREADS = 32
APP_NAMES = ("first", "second")
PREFIXES = ("REDIS", "CACHE")
# Database of each app and prefix.
DATABASES = {("first", "REDIS"): 1, ("first", "CACHE"): 2}
DATABASES |= {("second", "REDIS"): 3, ("second", "CACHE"): 4}
DEADLINE = 120.0  # bounds every wait of these tests
TOTAL = "(all)"


def create_apps(
    make_app: MakeApp, server: RedisServer, **config: object
) -> tuple[list[Flask], Redis, Redis]:
    """Two apps, each with a client per prefix on a database of its own; each
    client names itself after its app and prefix, for CLIENT LIST."""
    apps = []
    for name in APP_NAMES:
        app_config: dict[str, object] = {}
        for prefix in PREFIXES:
            app_config[f"{prefix}_URL"] = server.url(db=DATABASES[name, prefix])
            app_config[f"{prefix}_CLIENT_NAME"] = f"{name}-{prefix}"
            for key, value in config.items():
                app_config[f"{prefix}_{key}"] = value
        apps.append(make_app(name, **app_config))
    store, cache = Redis(), Redis(config_prefix="CACHE")
    for app in apps:
        store.init_app(app)
        cache.init_app(app)
    return apps, store, cache


def run_threads(work: Callable[[int], None], count: int = THREADS) -> list[str]:
    """Run ``work(number)`` in *count* threads at once; return their errors."""
    errors: list[str] = []
    start = threading.Barrier(count)

    def run(number: int) -> None:
        try:
            start.wait(DEADLINE)
            work(number)
        except Exception as error:
            errors.append(f"thread {number}: {type(error).__name__}: {error}")

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    assert not any(thread.is_alive() for thread in threads), "threads did not end"
    return errors


@contextmanager
def client_list_sampler(server: RedisServer) -> Iterator[Counter[str]]:
    """Sample ``CLIENT LIST`` while the block runs; yield the highest count of
    connections seen for each client name, and for all of them (``TOTAL``).

    A connection has no name yet while it says hello: it counts only in the
    total."""
    highest: Counter[str] = Counter()
    stop = threading.Event()

    def sample() -> None:
        with server.client(client_name="sampler") as client:
            while True:
                seen = Counter(entry["name"] for entry in client.client_list())
                del seen["sampler"]
                seen[TOTAL] = seen.total()
                del seen[""]
                for name, count in seen.items():
                    highest[name] = max(highest[name], count)
                if stop.wait(0.02):
                    return

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        yield highest
    finally:
        stop.set()
        thread.join(DEADLINE)


# -- No connection leaks --------------------------------------------------------

REQUESTS = 10_000
POOL_SIZE = 4


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "limit"),
    [
        # redis-py's default pool opens a connection per concurrent user.
        ({}, THREADS),
        # A blocking pool of POOL_SIZE: the other threads wait their turn.
        (
            {
                "MAX_CONNECTIONS": POOL_SIZE,
                "CONNECTION_POOL_CLASS": "redis.BlockingConnectionPool",
                "CONNECTION_POOL_TIMEOUT": DEADLINE,
            },
            POOL_SIZE,
        ),
    ],
    ids=["default-pool", "blocking-pool"],
)
def test_ten_thousand_requests_stay_within_the_pool_limits(
    make_app: MakeApp,
    server_factory: Callable[..., RedisServer],
    config: dict[str, object],
    limit: int,
) -> None:
    server = server_factory()
    apps, store, cache = create_apps(make_app, server, **config)
    for app in apps:

        @app.get("/hit")
        def hit() -> str:
            store.incr("hits")
            cache.incr("hits")
            return "ok"

    def work(number: int) -> None:
        share, extra = divmod(REQUESTS, THREADS)
        clients = [app.test_client() for app in apps]
        for request in range(share + (number < extra)):
            response = clients[(number + request) % 2].get("/hit")
            if response.status_code != 200:
                raise AssertionError(f"status {response.status_code}")

    assert server.connected_clients() == 0
    with client_list_sampler(server) as highest:
        errors = run_threads(work)

    assert errors == []
    names = {f"{app}-{prefix}" for app, prefix in DATABASES}
    assert set(highest) == names | {TOTAL}
    assert max(highest[name] for name in names) <= limit
    assert highest[TOTAL] <= limit * len(names)
    with server.client() as client:
        entries = [e for e in client.client_list() if e["name"] in names]
        assert len(entries) <= limit * len(names)
        for (app_name, _), db in DATABASES.items():
            client.select(db)
            assert client.get("hits") == str(REQUESTS // 2).encode(), app_name
    for app in apps:
        for connection in app.extensions["redis"].values():
            connection.close()
    assert server.connected_clients() == 0


# -- No cross-talk ----------------------------------------------------------------

WRITES = 50  # per thread, app and prefix


def test_every_value_lands_in_its_apps_database(
    make_app: MakeApp, server_factory: Callable[..., RedisServer]
) -> None:
    server = server_factory()
    apps, store, cache = create_apps(make_app, server)
    extensions = {"REDIS": store, "CACHE": cache}
    mix_ups: list[str] = []

    def work(number: int) -> None:
        for write in range(WRITES):
            # A thread changes app at every write, while other threads use the
            # other app: the client must follow each thread's app context.
            for app in apps[write % 2 :] + apps[: write % 2]:
                with app.app_context():
                    for prefix, redis in extensions.items():
                        key = f"t{number}:{write}"
                        value = f"{app.name}-{prefix}:{key}"
                        redis.set(key, value)
                        read = redis.get(key)
                        if read != value.encode():
                            mix_ups.append(f"{value} read back as {read!r}")

    errors = run_threads(work)

    assert errors == []
    assert mix_ups == []
    expected_keys = {f"t{n}:{w}" for n in range(THREADS) for w in range(WRITES)}
    for (app_name, prefix), db in DATABASES.items():
        with server.client(db=db) as client:
            assert client.dbsize() == THREADS * WRITES
            values = dict(zip(expected_keys, client.mget(expected_keys), strict=True))
        assert {
            key for key, value in values.items() if value is not None
        } == expected_keys
        wrong = {
            key: value
            for key, value in values.items()
            if value != f"{app_name}-{prefix}:{key}".encode()
        }
        assert wrong == {}, f"{app_name} {prefix}: {len(wrong)} values of others"
