"""Quart apps: one long-lived event loop serves every request, so an asyncio
prefix has one client (and pool) for the app's life, closed when the loop ends.

Warnings are errors and garbage is collected after each test: an unclosed
client or connection fails the test that left it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import pytest
import quart

from flask_and_redis import Redis

from servers import RedisServer

ASYNC = "redis.asyncio.Redis"
MakeQuartApp = Callable[..., quart.Quart]

pytestmark = pytest.mark.usefixtures("no_asyncio_leaks")


@pytest.fixture
def make_quart_app(make_app: Callable[..., Any]) -> MakeQuartApp:
    """Make Quart apps as ``make_app`` makes Flask ones."""
    return functools.partial(make_app, name="quart_app", app_class=quart.Quart)


def counting_app(
    make_quart_app: MakeQuartApp, server: RedisServer
) -> tuple[quart.Quart, Redis]:
    app = make_quart_app(REDIS_URL=server.url(), REDIS_CLASS=ASYNC)
    redis = Redis(app)

    @app.get("/")
    async def count() -> dict[str, int]:
        async with redis.pipeline() as pipe:
            pipe.incr("requests").client_list()
            requests, clients = await pipe.execute()
        return {
            "requests": requests,
            "connections": len(clients),
            "client": id(redis.connection),
        }

    return app, redis


async def get_json(client: Any, path: str = "/") -> Any:
    response = await client.get(path)
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await response.get_json()


def test_sequential_requests_share_the_loops_client_and_one_connection(
    make_quart_app: MakeQuartApp, server: RedisServer
) -> None:
    app, _ = counting_app(make_quart_app, server)

    async def main() -> list[dict[str, int]]:
        client = app.test_client()
        return [await get_json(client) for _ in range(200)]

    replies = asyncio.run(main())

    assert [reply["requests"] for reply in replies] == list(range(1, 201))
    assert {reply["connections"] for reply in replies} == {1}
    assert len({reply["client"] for reply in replies}) == 1
    assert server.wait_for_connected_clients(0) == 0


def test_concurrent_requests_reuse_the_pools_connections(
    make_quart_app: MakeQuartApp, server: RedisServer
) -> None:
    app, _ = counting_app(make_quart_app, server)
    concurrency = 20

    async def main() -> list[dict[str, int]]:
        client = app.test_client()
        replies = []
        for _ in range(10):
            replies += await asyncio.gather(
                *(get_json(client) for _ in range(concurrency))
            )
        return replies

    replies = asyncio.run(main())

    assert sorted(reply["requests"] for reply in replies) == list(range(1, 201))
    assert max(reply["connections"] for reply in replies) <= concurrency
    assert len({reply["client"] for reply in replies}) == 1
    assert server.wait_for_connected_clients(0) == 0


def test_a_served_app_closes_its_client_when_its_loop_ends(
    make_quart_app: MakeQuartApp, server: RedisServer
) -> None:
    app, _ = counting_app(make_quart_app, server)
    during: list[int] = []

    async def main() -> None:
        async with app.test_app() as test_app:  # startup and shutdown, as served
            client = test_app.test_client()
            await get_json(client)
            await get_json(client)
            during.append(server.connected_clients())

    asyncio.run(main())

    assert during == [1]
    assert server.wait_for_connected_clients(0) == 0


def test_one_extension_on_two_quart_apps_and_a_sync_prefix(
    make_quart_app: MakeQuartApp, server: RedisServer
) -> None:
    redis = Redis(config_prefix="ASYNC_REDIS")
    sync = Redis()
    apps = []
    for db in (1, 2):
        app = make_quart_app(
            name=f"app{db}",
            REDIS_URL=server.url(db),
            ASYNC_REDIS_URL=server.url(db),
            ASYNC_REDIS_CLASS=ASYNC,
        )
        redis.init_app(app)
        sync.init_app(app)

        @app.get("/")
        async def view() -> dict[str, Any]:
            await redis.incr("async")
            sync.incr("sync")
            return {
                "db": redis.connection_pool.connection_kwargs["db"],
                "async": int(await redis.get("async")),
                "sync": int(sync.get("sync")),
            }

        apps.append(app)

    async def main() -> list[Any]:
        first, second = (app.test_client() for app in apps)
        return [
            await get_json(first),
            await get_json(second),
            await get_json(first),
        ]

    assert asyncio.run(main()) == [
        {"db": 1, "async": 1, "sync": 1},
        {"db": 2, "async": 1, "sync": 1},
        {"db": 1, "async": 2, "sync": 2},
    ]
    # The two sync clients keep their pooled connections.
    assert server.wait_for_connected_clients(2) == 2
