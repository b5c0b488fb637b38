"""asyncio clients: a client per event loop, in Flask async views and coroutines.

Each event loop gets a client of its own, closed with its connections when the
loop shuts down: these tests check that every loop gets a working client, and
that the server's connection count comes back to where it was. Flask's async
views (and async hooks) all run in one loop that lives on: the tests of them
check that it keeps Flask's semantics, that connections are reused across
requests (counted by the server), and that ``LoopLocalClient.close()`` closes
them. Warnings are errors, and the fixture below collects garbage after each
test, so an unclosed client or connection (ResourceWarning) or a coroutine
never awaited (RuntimeWarning) fails the test that left it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import logging
import re
import subprocess
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis as redis_py
import redis.asyncio as redis_asyncio
from flask import Flask, current_app, g, request
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from flask_and_redis import (
    ClientSettings,
    ConfigurationError,
    LoopLocalClient,
    Redis,
    client_settings_from_config,
)

from servers import ACL_USERS, AUTH_PASSWORD, RedisServer, in_a_forked_child

MakeApp = Callable[..., Flask]

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("no_asyncio_leaks")

ASYNC = "redis.asyncio.Redis"


class TaggedAsyncRedis(redis_asyncio.Redis):
    """An asyncio subclass with a keyword of its own."""

    def __init__(self, *args: Any, tag: str = "none", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tag = tag


def async_app(make_app: MakeApp, server: RedisServer, **config: Any) -> Flask:
    return make_app(**{"REDIS_URL": server.url(), "REDIS_CLASS": ASYNC, **config})


async def connections_seen_by(redis: Redis) -> int:
    """How many connections the server has, counted over the client's own."""
    return len(await redis.client_list())


# -- Which classes are asyncio ones -------------------------------------------------


@pytest.mark.parametrize(
    ("client_class", "is_asyncio"),
    [
        (redis_py.Redis, False),
        (redis_asyncio.Redis, True),
        (TaggedAsyncRedis, True),
        (AsyncRedisCluster, True),
        (fakeredis.FakeRedis, False),
        (fakeredis.FakeAsyncRedis, True),
    ],
)
def test_asyncio_client_classes_are_recognised(
    client_class: type, is_asyncio: bool
) -> None:
    settings = client_settings_from_config({}, client_class=client_class)
    assert settings.is_asyncio is is_asyncio


class NoAclose:
    """An asyncio client class that cannot be closed, like redis-py 5.0.0's."""

    def __init__(self, **kwargs: Any) -> None:
        pass

    async def execute_command(self, *args: Any) -> None:
        pass


def test_an_asyncio_class_without_aclose_is_refused_at_init_app(
    make_app: MakeApp,
) -> None:
    app = make_app(REDIS_CLASS=NoAclose)

    with pytest.raises(ConfigurationError) as error:
        Redis(app)
    assert error.value.key == "REDIS_CLASS"
    assert "without aclose()" in str(error.value)
    assert "redis-py 5.0.1 or later" in str(error.value)


def test_an_asyncio_class_registers_a_loop_local_client(make_app: MakeApp) -> None:
    app = make_app(ASYNC_REDIS_CLASS=ASYNC, ASYNC_REDIS_URL="redis://cache:6380/2")
    redis = Redis(app, config_prefix="ASYNC_REDIS")

    registered = app.extensions["redis"]["ASYNC_REDIS"]
    assert isinstance(registered, LoopLocalClient)
    assert isinstance(registered.settings, ClientSettings)
    assert registered.settings.kwargs["port"] == 6380
    assert redis.settings_for(app) is registered.settings
    assert repr(registered) == (
        "<flask_and_redis.LoopLocalClient ASYNC_REDIS redis.asyncio.Redis to"
        " redis://cache:6380/2, clients in 0 event loops>"
    )


def test_the_repr_masks_the_password(
    make_app: MakeApp, redis_auth_server: RedisServer
) -> None:
    app = async_app(make_app, redis_auth_server)
    Redis(app)

    shown = repr(app.extensions["redis"]["REDIS"])
    assert AUTH_PASSWORD not in shown
    assert ":***@" in shown


# -- Without a running loop ----------------------------------------------------------


def test_without_a_running_loop_the_error_says_what_to_do(
    make_app: MakeApp, server: RedisServer
) -> None:
    app = async_app(make_app, server, REDIS_CLASS=TaggedAsyncRedis)
    redis = Redis(app)

    with app.app_context(), pytest.raises(RuntimeError) as error:
        redis.get("key")
    message = str(error.value)
    assert "REDIS has an asyncio client class" in message
    assert f"{__name__}.TaggedAsyncRedis" in message
    assert "no event loop is running" in message
    assert "async view" in message
    with pytest.raises(RuntimeError, match="no event loop is running"):
        app.extensions["redis"]["REDIS"].get("key")
    assert server.connected_clients() == 0


# -- In coroutines: one client per loop, closed with it ------------------------------


def test_one_client_per_loop_reused_within_it_and_closed_with_it(
    make_app: MakeApp, server: RedisServer
) -> None:
    app = async_app(make_app, server)
    redis = Redis(app)

    async def main() -> tuple[Any, int]:
        client = redis.connection
        assert redis.connection is client
        assert app.extensions["redis"]["REDIS"].client is client
        await redis.set("key", "value")
        assert await app.extensions["redis"]["REDIS"].get("key") == b"value"
        return client, await connections_seen_by(redis)

    with app.app_context():
        first, seen_first = asyncio.run(main())
        assert server.wait_for_connected_clients(0) == 0
        second, seen_second = asyncio.run(main())
    assert isinstance(first, redis_asyncio.Redis)
    assert second is not first
    assert (seen_first, seen_second) == (1, 1)
    assert server.wait_for_connected_clients(0) == 0
    assert "clients in 0 event loops" in repr(app.extensions["redis"]["REDIS"])


def test_loops_running_at_once_in_two_threads_have_their_own_clients(
    make_app: MakeApp, server: RedisServer
) -> None:
    app = async_app(make_app, server)
    redis = Redis(app)
    both_connected = threading.Barrier(2, timeout=10)
    seen: list[tuple[Any, int]] = []

    async def main() -> None:
        with app.app_context():
            await redis.incr("counter")
            await asyncio.to_thread(both_connected.wait)
            seen.append((redis.connection, await connections_seen_by(redis)))
            await asyncio.to_thread(both_connected.wait)

    threads = [threading.Thread(target=asyncio.run, args=(main(),)) for _ in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert [count for _, count in seen] == [2, 2]
    assert seen[0][0] is not seen[1][0]
    assert server.wait_for_connected_clients(0) == 0


def test_a_loop_run_by_hand_closes_the_client_in_shutdown_asyncgens(
    make_app: MakeApp, server: RedisServer
) -> None:
    app = async_app(make_app, server)
    redis = Redis(app)

    async def store() -> None:
        await redis.set("key", "value")

    loop = asyncio.new_event_loop()
    try:
        with app.app_context():
            loop.run_until_complete(store())
        assert server.connected_clients() == 1
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
    assert server.wait_for_connected_clients(0) == 0


# What asyncio, the socket module and redis-py say when the garbage collector
# closes a connection whose event loop was closed under it.
UNCLOSED = re.compile(r"unclosed\b|loop is closed")


@contextlib.contextmanager
def recorded_warnings() -> Iterator[list[tuple[type[Warning], str]]]:
    """Record warnings as (category, message) rather than raise them. Not
    with catch_warnings(record=True): its records hold on to the objects the
    warnings are about, and through them to their event loops."""
    caught: list[tuple[type[Warning], str]] = []

    def record(message: Warning | str, category: type[Warning], *_: Any) -> None:
        caught.append((category, str(message)))

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        yield caught


def test_loops_closed_without_shutting_down_do_not_pile_up(
    make_app: MakeApp, server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A loop closed without shutdown_asyncgens() cannot have its client
    closed: asyncio closes a transport through a callback on its loop. Each
    new loop's client lets go of those of the closed loops, so neither the
    loops nor the server's connections pile up.

    The garbage collector closes the sockets of the clients let go, and
    asyncio, the socket module and redis-py each warn "unclosed ..."
    (ResourceWarning) as it does: those warnings cannot be avoided, so they
    are recorded here, where any other warning fails the test."""
    app = async_app(make_app, server)
    redis = Redis(app)
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def store(value: object) -> None:
        await redis.set("key", value)

    with recorded_warnings() as caught, app.app_context():
        for value in range(50):
            loop = asyncio.new_event_loop()
            loop.run_until_complete(store(value))
            loop.close()
            loops.append(weakref.ref(loop))
        del loop
        gc.collect()
        # The last loop's client is let go when the next loop builds one.
        assert server.wait_for_connected_clients(1) == 1
        assert [loop for loop in loops if loop() is not None] == [loops[-1]]
        asyncio.run(store("last"))
        gc.collect()
        assert server.wait_for_connected_clients(0) == 0
        assert [loop for loop in loops if loop() is not None] == []

    assert [
        (category, message)
        for category, message in caught
        if not (category is ResourceWarning and UNCLOSED.match(message))
    ] == []
    assert any(message.startswith("unclosed transport") for _, message in caught)
    let_go = [
        record
        for record in caplog.records
        if record.name == "flask_and_redis"
        and "was closed without loop.shutdown_asyncgens()" in record.getMessage()
    ]
    assert len(let_go) == 50
    assert {record.levelno for record in let_go} == {logging.WARNING}
    assert "clients in 0 event loops" in repr(app.extensions["redis"]["REDIS"])


def test_a_loop_stopped_but_not_closed_keeps_its_client(
    make_app: MakeApp, server: RedisServer
) -> None:
    app = async_app(make_app, server)
    redis = Redis(app)

    async def client() -> Any:
        await redis.incr("counter")
        return redis.connection

    first_loop, second_loop = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        with app.app_context():
            first = first_loop.run_until_complete(client())
            # Building the second loop's client looks for closed loops: the
            # first is only stopped, and may run again.
            second = second_loop.run_until_complete(client())
            assert first_loop.run_until_complete(client()) is first
        assert second is not first
        assert server.connected_clients() == 2
    finally:
        for loop in (first_loop, second_loop):
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
    assert server.wait_for_connected_clients(0) == 0


def test_closing_the_client_in_its_loop_leaves_it_usable(
    make_app: MakeApp, server: RedisServer
) -> None:
    app = async_app(make_app, server)
    redis = Redis(app)

    async def main() -> object:
        async with redis.connection as client:
            await client.set("key", "value")
        assert server.wait_for_connected_clients(0) == 0
        return await redis.get("key")

    with app.app_context():
        assert asyncio.run(main()) == b"value"
    assert server.wait_for_connected_clients(0) == 0


def test_subclasses_by_class_and_by_path_and_custom_providers(
    make_app: MakeApp, server: RedisServer
) -> None:
    by_class = Redis(
        make_app(REDIS_URL=server.url(1), REDIS_CLASS=TaggedAsyncRedis, REDIS_TAG="a")
    )
    by_path = Redis(
        make_app(
            REDIS_URL=server.url(2),
            REDIS_CLASS=f"{__name__}.TaggedAsyncRedis",
            REDIS_OPTIONS={"tag": "b"},
        )
    )
    provided = Redis.from_custom_provider(
        TaggedAsyncRedis, make_app(REDIS_URL=server.url(3)), tag="c"
    )

    async def main() -> list[tuple[str, int]]:
        tags = []
        for extension in (by_class, by_path, provided):
            await extension.set("key", extension.connection.tag)
            tags.append(
                (
                    extension.connection.tag,
                    extension.connection_pool.connection_kwargs["db"],
                )
            )
        return tags

    assert asyncio.run(main()) == [("a", 1), ("b", 2), ("c", 3)]
    with server.client(db=2) as client:
        assert client.get("key") == b"b"
    assert server.wait_for_connected_clients(0) == 0


# -- Commands, pipelines, pub/sub, locks ---------------------------------------------


def test_commands_pipelines_pubsub_and_locks(
    make_app: MakeApp, server: RedisServer
) -> None:
    app = async_app(make_app, server, REDIS_DECODE_RESPONSES=True)
    redis = Redis(app)

    async def main() -> None:
        assert await redis.set("greeting", "hello") is True
        assert await redis.get("greeting") == "hello"
        assert await redis.incr("counter", 5) == 5
        with pytest.raises(TypeError, match="does not support"):
            redis["greeting"]  # redis-py's asyncio client has no item access

        async with redis.pipeline() as pipe:
            pipe.set("a", 1).incr("a").get("a")
            assert await pipe.execute() == [True, 2, "2"]
        async with redis.pipeline(transaction=False) as pipe:
            assert await pipe.incr("a").decr("a").execute() == [3, 2]

        async with redis.pubsub() as pubsub:
            await pubsub.subscribe("news")
            confirmation = await pubsub.get_message(timeout=5)
            assert confirmation is not None
            assert confirmation["type"] == "subscribe"
            assert await redis.publish("news", "extra") == 1
            message = await pubsub.get_message(timeout=5)
            assert message is not None
            assert (message["type"], message["data"]) == ("message", "extra")

        async with redis.lock("resource", timeout=10):
            assert await redis.exists("resource") == 1
        assert await redis.exists("resource") == 0

    with app.app_context():
        asyncio.run(main())
    with server.client() as client:
        assert client.get("a") == b"2"
    assert server.wait_for_connected_clients(0) == 0


def test_a_pubsub_left_open_is_closed_with_its_loop(
    make_app: MakeApp, server: RedisServer
) -> None:
    app = async_app(make_app, server)
    redis = Redis(app)

    async def main() -> int:
        pubsub = redis.pubsub()
        await pubsub.subscribe("news")
        return await connections_seen_by(redis)

    with app.app_context():
        assert asyncio.run(main()) == 2  # the pub/sub connection and the pool's
    assert server.wait_for_connected_clients(0) == 0


def test_a_write_that_does_not_end_times_out_and_closes_its_connection(
    make_app: MakeApp, server: RedisServer
) -> None:
    # On Python 3.11 the extension times writes itself (see _timed_writes).
    app = async_app(make_app, server, REDIS_SOCKET_TIMEOUT=0.2)
    redis = Redis(app)

    async def stalled(*args: Any) -> None:
        await asyncio.sleep(10)

    async def main() -> float:
        pool = redis.connection_pool
        connection = await pool.get_connection()
        try:
            await connection.send_command("PING")
            assert await connection.read_response() in (b"PONG", "PONG", True)
            connection._writer.drain = stalled  # a server that reads no more
            started = time.monotonic()
            with pytest.raises(redis_py.TimeoutError, match="Timeout writing"):
                await connection.send_command("PING")
            assert not connection.is_connected
            return time.monotonic() - started
        finally:
            await pool.release(connection)

    with app.app_context():
        assert asyncio.run(main()) < 1.0
    assert server.wait_for_connected_clients(0) == 0


# -- Flask async views ---------------------------------------------------------------


def received(server: RedisServer) -> int:
    """How many connections the server has received, counting this one."""
    with server.client() as client:
        return int(client.info("stats")["total_connections_received"])


def close(app: Flask, prefix: str = "REDIS") -> None:
    """Close a prefix's clients, in the loops that still run."""
    app.extensions["redis"][prefix].close()


def counting_app(make_app: MakeApp, server: RedisServer) -> Flask:
    """An app whose async view counts requests and reports how many
    connections the server had while it ran, and in which event loop."""
    app = async_app(make_app, server)
    redis = Redis(app)

    @app.get("/")
    async def count() -> dict[str, int]:
        async with redis.pipeline() as pipe:
            pipe.incr("requests").client_list()
            requests, clients = await pipe.execute()
        loop = id(asyncio.get_running_loop())
        return {"requests": requests, "connections": len(clients), "loop": loop}

    return app


def test_sequential_requests_reuse_one_connection_until_closed(
    make_app: MakeApp, server: RedisServer
) -> None:
    app = counting_app(make_app, server)
    client = app.test_client()
    before = received(server)

    replies = [client.get("/").json for _ in range(1_400)]

    assert [reply["requests"] for reply in replies] == list(range(1, 1_401))
    assert {reply["connections"] for reply in replies} == {1}
    assert len({reply["loop"] for reply in replies}) == 1
    # Counting the connection of received() itself.
    assert received(server) - before <= 10
    assert server.wait_for_connected_clients(1) == 1
    close(app)
    assert server.wait_for_connected_clients(0) == 0
    assert "clients in 0 event loops" in repr(app.extensions["redis"]["REDIS"])


def test_requests_from_several_threads_share_the_pool(
    make_app: MakeApp, server: RedisServer
) -> None:
    app = counting_app(make_app, server)
    threads = 4
    before = received(server)

    def requests(_: int) -> list[dict[str, int]]:
        client = app.test_client()
        return [client.get("/").json for _ in range(50)]

    with ThreadPoolExecutor(threads) as pool:
        replies = [
            reply for batch in pool.map(requests, range(threads)) for reply in batch
        ]

    assert sorted(reply["requests"] for reply in replies) == list(range(1, 201))
    assert len({reply["loop"] for reply in replies}) == 1
    # At most a connection per request in flight, kept for the next ones.
    assert max(reply["connections"] for reply in replies) <= threads
    assert received(server) - before <= 20
    close(app)
    assert server.wait_for_connected_clients(0) == 0


def test_views_running_at_once_each_get_their_own_replies(
    make_app: MakeApp, server: RedisServer
) -> None:
    """Four views wait on the server at once, in one loop, each on a
    connection of its own: each gets its own reply."""
    app = async_app(make_app, server)
    redis = Redis(app)
    views = 4

    @app.get("/<int:number>")
    async def view(number: int) -> dict[str, Any]:
        _, popped = await redis.blpop(f"queue:{number}", timeout=20)
        return {"popped": popped.decode(), "loop": id(asyncio.get_running_loop())}

    with ThreadPoolExecutor(views) as pool, server.client() as admin:
        replies = pool.map(
            lambda number: app.test_client().get(f"/{number}").json, range(views)
        )
        end = time.monotonic() + 10
        while admin.info("clients")["blocked_clients"] < views:
            assert time.monotonic() < end, "the views did not all wait"
            time.sleep(0.01)
        assert admin.info("clients")["connected_clients"] == views + 1
        for number in reversed(range(views)):
            admin.rpush(f"queue:{number}", f"value {number}")
        replies = list(replies)

    assert [reply["popped"] for reply in replies] == [
        f"value {number}" for number in range(views)
    ]
    assert len({reply["loop"] for reply in replies}) == 1
    close(app)
    assert server.wait_for_connected_clients(0) == 0


def test_async_hooks_and_views_run_in_one_loop(
    make_app: MakeApp, server: RedisServer
) -> None:
    app = async_app(make_app, server)
    redis = Redis(app)
    loops: list[int] = []

    @app.before_request
    async def count_request() -> None:
        loops.append(id(asyncio.get_running_loop()))
        await redis.incr("requests")

    @app.get("/")
    async def view() -> str:
        loops.append(id(asyncio.get_running_loop()))
        return str(int(await redis.get("requests")))

    client = app.test_client()
    assert [client.get("/").text for _ in range(3)] == ["1", "2", "3"]
    assert len(loops) == 6
    assert len(set(loops)) == 1
    assert server.wait_for_connected_clients(1) == 1
    close(app)
    assert server.wait_for_connected_clients(0) == 0


REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("REQUEST_ID")
SET_BY_VIEW: contextvars.ContextVar[str] = contextvars.ContextVar("SET_BY_VIEW")


def test_contexts_and_context_variables_are_those_of_the_request(
    make_app: MakeApp, server: RedisServer
) -> None:
    app = async_app(make_app, server)
    redis = Redis(app)
    seen_after: list[str] = []

    @app.before_request
    def identify() -> None:
        REQUEST_ID.set(request.args["id"])
        g.user = f"user {request.args['id']}"

    @app.get("/")
    async def view() -> dict[str, Any]:
        await redis.set(f"request:{REQUEST_ID.get()}", g.user)
        await asyncio.sleep(0.01)  # let the other requests' views run
        SET_BY_VIEW.set(f"set by {REQUEST_ID.get()}")
        return {
            "app": current_app.name,
            "id": request.args["id"],
            "request id": REQUEST_ID.get(),
            "user": g.user,
            "stored": (await redis.get(f"request:{REQUEST_ID.get()}")).decode(),
            "loop": id(asyncio.get_running_loop()),
        }

    @app.after_request
    def after(response: Any) -> Any:
        seen_after.append(SET_BY_VIEW.get("unset"))
        return response

    with ThreadPoolExecutor(4) as pool:
        replies = list(
            pool.map(
                lambda number: app.test_client().get(f"/?id={number}").json, range(8)
            )
        )

    assert [
        (reply["app"], reply["request id"], reply["user"], reply["stored"])
        for reply in replies
    ] == [(app.name, str(n), f"user {n}", f"user {n}") for n in range(8)]
    assert len({reply["loop"] for reply in replies}) == 1
    assert sorted(seen_after) == sorted(f"set by {n}" for n in range(8))


class Refused(Exception):
    pass


def test_exceptions_reach_flasks_error_handlers(
    make_app: MakeApp, server: RedisServer
) -> None:
    app = async_app(make_app, server)
    redis = Redis(app)

    @app.get("/refused")
    async def refused() -> str:
        await redis.set("refused", "yes")
        raise Refused("no")

    @app.get("/unknown-command")
    async def unknown_command() -> str:
        await redis.execute_command("NO-SUCH-COMMAND")
        return "unreachable"

    @app.get("/unhandled")
    async def unhandled() -> str:
        return str(1 / 0)

    @app.get("/")
    async def fine() -> str:
        return (await redis.get("refused")).decode()

    @app.errorhandler(Refused)
    def handle_refused(error: Refused) -> tuple[str, int]:
        return f"refused: {error}", 403

    @app.errorhandler(redis_py.RedisError)
    def handle_redis_error(error: redis_py.RedisError) -> tuple[str, int]:
        return type(error).__name__, 503

    client = app.test_client()
    responses = [client.get(path) for path in ("/refused", "/unknown-command", "/")]
    assert [(response.status_code, response.text) for response in responses] == [
        (403, "refused: no"),
        (503, "ResponseError"),
        (200, "yes"),
    ]
    assert client.get("/unhandled").status_code == 500
    app.testing = True  # then Flask raises it to the test client
    with pytest.raises(ZeroDivisionError):
        client.get("/unhandled")


def test_gather_runs_commands_of_one_view_at_once(
    make_app: MakeApp, server: RedisServer
) -> None:
    app = async_app(make_app, server)
    redis = Redis(app)

    @app.get("/")
    async def view() -> dict[str, Any]:
        # BLPOPs on keys pushed last: they wait for the pushes, on connections
        # of their own, so they must run at once.
        keys = [f"list:{number}" for number in range(5)]
        popped = asyncio.gather(*(redis.blpop(key, timeout=10) for key in keys))
        pushed = await asyncio.gather(*(redis.rpush(key, key) for key in keys))
        return {"popped": [value.decode() for _, value in await popped], "n": pushed}

    assert app.test_client().get("/").json == {
        "popped": [f"list:{number}" for number in range(5)],
        "n": [1] * 5,
    }
    close(app)
    assert server.wait_for_connected_clients(0) == 0


def test_tasks_a_view_leaves_running_are_cancelled_before_the_response(
    make_app: MakeApp, server: RedisServer
) -> None:
    app = async_app(make_app, server)
    redis = Redis(app)
    ended: list[str] = []

    async def wait_forever() -> None:
        try:
            await redis.blpop("never", timeout=0)
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise

    async def leave_a_task() -> None:
        asyncio.get_running_loop().create_task(wait_forever())

    @app.get("/")
    async def view() -> str:
        asyncio.create_task(wait_forever())
        await asyncio.create_task(leave_a_task())  # a task's task is the view's
        await asyncio.sleep(0.05)  # the BLPOPs wait on the server
        return "done"

    assert app.test_client().get("/").text == "done"
    assert ended == ["cancelled", "cancelled"]
    # Cancelled as they waited for a reply: redis-py closed their connections.
    assert server.wait_for_connected_clients(0) == 0


def test_a_pubsub_a_view_left_open_is_not_seen_by_other_requests(
    make_app: MakeApp, server: RedisServer
) -> None:
    app = async_app(make_app, server, REDIS_DECODE_RESPONSES=True)
    redis = Redis(app)

    @app.get("/subscribe")
    async def subscribe() -> str:
        pubsub = redis.pubsub()
        await pubsub.subscribe("news")  # and never closed
        return "subscribed"

    @app.get("/")
    async def view() -> dict[str, Any]:
        return {
            "subscribers": await redis.publish("news", "extra"),
            "ping": await redis.ping(),
            "echo": await redis.echo("mine"),
        }

    client = app.test_client()
    assert client.get("/subscribe").text == "subscribed"
    replies = [client.get("/").json for _ in range(5)]

    assert replies == [{"subscribers": 1, "ping": True, "echo": "mine"}] * 5
    assert server.wait_for_connected_clients(2) == 2  # the pub/sub's and the pool's
    close(app)  # closes the pub/sub's connection too
    assert server.wait_for_connected_clients(0) == 0


DROPPED_APP = """
import gc, sys, weakref
from flask import Flask
from flask_and_redis import Redis

app = Flask("dropped")
app.config.update(REDIS_URL=sys.argv[1], REDIS_CLASS="redis.asyncio.Redis")
redis = Redis(app)

@app.get("/")
async def view():
    return str(await redis.incr("requests"))

assert app.test_client().get("/").text == "1"
app.extensions["redis"]["REDIS"].close()
dropped = weakref.ref(app)
del app, redis, view
gc.collect()
sys.exit(0 if dropped() is None else 1)
"""


def test_a_closed_app_is_not_kept_by_the_views_loop_it_started(
    server: RedisServer,
) -> None:
    # In a process of its own, where its first async view starts the loop.
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", DROPPED_APP, server.url()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (done.returncode, done.stderr) == (0, "")
    assert server.wait_for_connected_clients(0) == 0


def test_an_async_view_run_from_an_async_view_is_refused_not_deadlocked(
    make_app: MakeApp, server: RedisServer
) -> None:
    app = async_app(make_app, server)
    Redis(app)

    @app.get("/inner")
    async def inner() -> str:
        return "inner"

    @app.get("/outer")
    async def outer() -> str:
        # Blocks the views loop, which the inner view would need: refused, as
        # Flask's own refuses an async view run in a thread with a running loop.
        return str(app.test_client().get("/inner").status_code)

    assert app.test_client().get("/outer").text == "500"


def test_del_async_to_sync_gives_back_flasks_loop_per_view(
    make_app: MakeApp, server: RedisServer
) -> None:
    app = counting_app(make_app, server)
    del app.async_to_sync
    client = app.test_client()
    before = received(server)

    replies = [client.get("/").json for _ in range(3)]

    assert [reply["requests"] for reply in replies] == [1, 2, 3]
    # A loop per view, which closes its client as it ends: a connection each.
    assert received(server) - before == 3 + 1
    assert server.wait_for_connected_clients(0) == 0


class OwnAsyncToSync(Flask):
    """An app class that runs each async view with asyncio.run()."""

    def async_to_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        return lambda *args, **kwargs: asyncio.run(func(*args, **kwargs))


def test_an_app_class_with_an_async_to_sync_of_its_own_keeps_it(
    make_app: MakeApp, server: RedisServer
) -> None:
    app = async_app(make_app, server, app_class=OwnAsyncToSync)
    redis = Redis(app)

    @app.get("/")
    async def view() -> str:
        return str(await redis.incr("requests"))

    client = app.test_client()
    before = received(server)

    assert [client.get("/").text for _ in range(2)] == ["1", "2"]
    assert "async_to_sync" not in vars(app)
    assert received(server) - before == 2 + 1  # an asyncio.run() each
    assert server.wait_for_connected_clients(0) == 0


def test_a_forked_worker_runs_its_views_in_a_loop_of_its_own(
    make_app: MakeApp, server: RedisServer
) -> None:
    app = counting_app(make_app, server)
    parent = app.test_client().get("/").json

    def in_the_worker() -> bool:
        child = app.test_client().get("/").json
        return bool(child["requests"] == 2 and child["loop"] != parent["loop"])

    assert in_a_forked_child(in_the_worker)
    assert app.test_client().get("/").json["loop"] == parent["loop"]


def test_a_sync_and_an_async_prefix_side_by_side(
    make_app: MakeApp, server: RedisServer
) -> None:
    app = make_app(
        REDIS_URL=server.url(db=0),
        ASYNC_REDIS_URL=server.url(db=1),
        ASYNC_REDIS_CLASS=ASYNC,
    )
    redis = Redis(app)
    async_redis = Redis(app, config_prefix="ASYNC_REDIS")

    @app.get("/sync")
    def sync_view() -> str:
        redis.incr("sync")
        return str(int(redis.get("sync")))

    @app.get("/async")
    async def async_view() -> str:
        await async_redis.incr("async")
        redis.incr("sync")  # a sync client works in an async view, blocking
        return f"{int(await async_redis.get('async'))} {int(redis.get('sync'))}"

    client = app.test_client()
    assert client.get("/sync").text == "1"
    assert client.get("/async").text == "1 2"
    assert client.get("/async").text == "2 3"
    assert client.get("/sync").text == "4"
    assert isinstance(app.extensions["redis"]["REDIS"], redis_py.Redis)
    assert isinstance(app.extensions["redis"]["ASYNC_REDIS"], LoopLocalClient)
    with app.app_context():
        assert redis.connection.get("async") is None  # another database
    # Each keeps one pooled connection; closing the async one leaves the other.
    assert server.wait_for_connected_clients(2) == 2
    close(app, "ASYNC_REDIS")
    assert server.wait_for_connected_clients(1) == 1


def test_two_async_prefixes_each_close_their_clients(
    make_app: MakeApp, server: RedisServer
) -> None:
    app = make_app(
        REDIS_URL=server.url(db=0),
        REDIS_CLASS=ASYNC,
        CACHE_URL=server.url(db=1),
        CACHE_CLASS=ASYNC,
    )
    redis = Redis(app)
    cache = Redis(app, config_prefix="CACHE")

    @app.get("/")
    async def view() -> str:
        await redis.set("where", "main")
        await cache.set("where", "cache")
        return f"{(await redis.get('where')).decode()} {len(await cache.client_list())}"

    client = app.test_client()
    assert [client.get("/").text for _ in range(20)] == ["main 2"] * 20
    close(app, "CACHE")
    assert server.wait_for_connected_clients(1) == 1
    close(app)
    assert server.wait_for_connected_clients(0) == 0


def test_an_authenticated_async_prefix(
    make_app: MakeApp, redis_auth_server: RedisServer
) -> None:
    app = make_app(
        REDIS_CLASS=ASYNC,
        REDIS_HOST=redis_auth_server.host,
        REDIS_PORT=redis_auth_server.port,
        REDIS_USERNAME="app",
        REDIS_PASSWORD=ACL_USERS["app"],
    )
    redis = Redis(app)

    @app.get("/")
    async def view() -> str:
        await redis.set("app:key", "value")
        return (await redis.get("app:key")).decode()

    assert app.test_client().get("/").text == "value"


def test_fakeredis_async_with_a_shared_server_keeps_data_across_requests(
    make_app: MakeApp,
) -> None:
    app = make_app(
        REDIS_CLASS="fakeredis.FakeAsyncRedis",
        REDIS_OPTIONS={"server": fakeredis.FakeServer()},
    )
    redis = Redis(app)

    @app.get("/")
    async def view() -> str:
        return str(await redis.incr("hits"))

    client = app.test_client()
    assert [client.get("/").text for _ in range(3)] == ["1", "2", "3"]
