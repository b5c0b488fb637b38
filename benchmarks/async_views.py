"""Flask async views, which run in the extension's event loop, against sync
views, on one app driven by Flask's test client.

Four views: a sync view making two calls (``INCR``, then ``GET`` of 100 bytes)
through a sync prefix, a sync no-op view, an async view awaiting the same two
calls through an asyncio prefix, and an async no-op view. They take turns
request by request; the Redis part of each kind of view is the view minus its
no-op view, and the ratio of the two is computed round by round. Then the
server's count of connections received (``total_connections_received`` of
``INFO stats``) over sequential async requests on one thread, and over async
requests from four threads, each on an app of its own, so that its first
connection counts too.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import redis
from flask import Flask

from flask_and_redis import Redis

from .timing import Spread, alternating, interleave, per_round

COUNTER, KEY, VALUE = "benchmark:hits", "benchmark:value", b"v" * 100

#: (name, label), in the order of the report.
VIEWS = [
    ("sync", "sync view: ``INCR``, ``GET``"),
    ("sync_noop", "sync no-op view"),
    ("async", "async view: ``await`` ``INCR``, ``GET``"),
    ("async_noop", "async no-op view"),
]
#: The most the async view's Redis part may take, in sync view's Redis parts.
RATIO_TARGET = 1.5
#: Requests of the connection counts, and the most connections each may open.
SEQUENTIAL, SEQUENTIAL_TARGET = 1_400, 10
THREADS, PER_THREAD, THREADS_TARGET = 4, 50, 20


@dataclass(frozen=True)
class AsyncViewsResult:
    rounds: int
    requests: int  # of each view, per round
    microseconds: dict[str, Spread]  # per request, by view
    redis_part: dict[str, Spread]  # "sync", "async": the view minus its no-op
    ratio: Spread  # the async Redis part ÷ the sync one, round by round
    sequential: int  # requests on one thread
    sequential_connections: int  # connections the server received for them
    threaded: int  # requests on each of THREADS threads
    threaded_connections: int


def create_app(url: str) -> Flask:
    """An app with the four views, on a sync and an asyncio prefix."""
    app = Flask("benchmark_async_views")
    app.config.update(
        REDIS_URL=url, ASYNC_REDIS_URL=url, ASYNC_REDIS_CLASS="redis.asyncio.Redis"
    )
    sync, asynchronous = Redis(app), Redis(app, config_prefix="ASYNC_REDIS")

    @app.get("/sync")
    def sync_view() -> str:
        sync.incr(COUNTER)
        sync.get(KEY)
        return "ok"

    @app.get("/sync_noop")
    def sync_noop() -> str:
        return "ok"

    @app.get("/async")
    async def async_view() -> str:
        await asynchronous.incr(COUNTER)
        await asynchronous.get(KEY)
        return "ok"

    @app.get("/async_noop")
    async def async_noop() -> str:
        return "ok"

    return app


def _received(admin: redis.Redis) -> int:
    return int(admin.info("stats")["total_connections_received"])


def _connections(url: str, threads: int, requests: int) -> int:
    """Connections the server receives for *requests* async requests on each
    of *threads* threads, on a new app."""
    app = create_app(url)
    with redis.Redis.from_url(url) as admin:
        before = _received(admin)

        def send(_: int) -> None:
            client = app.test_client()
            for _ in range(requests):
                assert client.get("/async").status_code == 200

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(send, range(threads)))
        received = _received(admin) - before
    app.extensions["redis"]["ASYNC_REDIS"].close()
    app.extensions["redis"]["REDIS"].close()
    return received


def run(url: str, rounds: int, requests: int, scale: float) -> AsyncViewsResult:
    app = create_app(url)
    with redis.Redis.from_url(url) as admin:
        admin.set(KEY, VALUE)
    client = app.test_client()
    for name, _ in VIEWS:
        assert client.get(f"/{name}").status_code == 200, name
    paths = {name: f"/{name}" for name, _ in VIEWS}
    measure = alternating(
        {name: (lambda path=path: client.get(path)) for name, path in paths.items()},
        requests,
    )
    results = interleave({"views": measure}, rounds)["views"]
    app.extensions["redis"]["ASYNC_REDIS"].close()
    app.extensions["redis"]["REDIS"].close()
    seconds = {name: [result[name] for result in results] for name, _ in VIEWS}

    def part(view: str, noop: str) -> list[float]:
        return per_round(seconds, lambda a, b: a - b, view, noop)

    sync_part, async_part = part("sync", "sync_noop"), part("async", "async_noop")
    sequential = max(1, round(SEQUENTIAL * scale))
    threaded = max(1, round(PER_THREAD * scale))
    return AsyncViewsResult(
        rounds=rounds,
        requests=requests,
        microseconds={
            name: Spread.of([value * 1e6 for value in values])
            for name, values in seconds.items()
        },
        redis_part={
            "sync": Spread.of([value * 1e6 for value in sync_part]),
            "async": Spread.of([value * 1e6 for value in async_part]),
        },
        ratio=Spread.of([a / s for a, s in zip(async_part, sync_part, strict=True)]),
        sequential=sequential,
        sequential_connections=_connections(url, 1, sequential),
        threaded=threaded,
        threaded_connections=_connections(url, THREADS, threaded),
    )
