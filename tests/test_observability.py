"""What Redis does in each request: recorded commands, Server-Timing, the
Flask-DebugToolbar panel and OpenTelemetry's spans, against real servers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis as redis_py
from flask import Flask

from flask_and_redis import CommandRecord, Redis, get_recorded_commands

from servers import RedisServer, SentinelGroup, ServerCluster

MakeApp = Callable[..., Flask]
PW = "Hunter2-pa55word"


def summary(records: list[CommandRecord]) -> list[tuple[str, str, tuple[Any, ...]]]:
    return [(record.prefix, record.command, record.args) for record in records]


def test_a_request_records_its_commands_in_order_across_prefixes(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_app(
        REDIS_URL=redis_server.url(db=1),
        REDIS_RECORD_COMMANDS=True,
        CACHE_URL=redis_server.url(db=2),
        CACHE_RECORD_COMMANDS="yes",
        OTHER_URL=redis_server.url(db=3),  # records nothing
    )
    redis, cache, other = (
        Redis(app),
        Redis(app, config_prefix="CACHE"),
        Redis(app, config_prefix="OTHER"),
    )

    @app.get("/")
    def view() -> dict[str, Any]:
        redis.set("key", "value")
        other.get("key")
        cache.get("key")
        redis.get("key")
        records = get_recorded_commands()
        return {"summary": summary(records), "records": records}

    with app.test_client() as client:
        first = client.get("/").json
        second = client.get("/").json
    expected = [
        ["REDIS", "SET", ["key", "value"]],
        ["CACHE", "GET", ["key"]],
        ["REDIS", "GET", ["key"]],
    ]
    assert first["summary"] == second["summary"] == expected  # each its own
    for record in first["records"]:
        prefix, command, args, start, end, error = record
        assert start <= end and error is None


def test_nothing_is_recorded_outside_an_app_context(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    redis = Redis(make_app(REDIS_URL=redis_server.url(), REDIS_RECORD_COMMANDS=True))

    redis.set("key", "value")  # the one app, outside of its context

    assert get_recorded_commands() == []


def test_errors_durations_and_the_handshake(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_app(REDIS_URL=redis_server.url(), REDIS_RECORD_COMMANDS=True)
    redis = Redis(app)
    with redis_server.client() as setup:
        setup.set("text", "not a number")

    with app.app_context():
        redis.connection.connection_pool.disconnect()  # a new connection: HELLO
        redis.get("text")
        with pytest.raises(redis_py.ResponseError):
            redis.incr("text")
        records = get_recorded_commands()

    # The handshake (HELLO, CLIENT SETINFO) is redis-py's own: not recorded.
    assert [record.command for record in records] == ["GET", "INCRBY"]
    get, incr = records
    assert get.error is None and isinstance(incr.error, redis_py.ResponseError)
    for record in records:
        assert record.duration == record.end_time - record.start_time > 0


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (("AUTH", PW), ("***",)),
        (("AUTH", "app", PW), ("app", "***")),
        (("HELLO", 3, "AUTH", "app", PW), (3, "AUTH", "app", "***")),
        (
            ("MIGRATE", "h", 1, "", 0, 5, "AUTH", PW, "KEYS", "k"),
            ("h", 1, "", 0, 5, "AUTH", "***", "KEYS", "k"),
        ),
        (
            ("MIGRATE", "h", 1, "", 0, 5, "AUTH2", "app", PW, "KEYS", "k"),
            ("h", 1, "", 0, 5, "AUTH2", "app", "***", "KEYS", "k"),
        ),
        (
            ("ACL SETUSER", "app", "on", f">{PW}", "~app:*", "+@all"),
            ("app", "on", "***", "~app:*", "+@all"),
        ),
    ],
)
def test_passwords_never_reach_a_record(
    make_app: MakeApp,
    server: RedisServer,
    command: tuple[Any, ...],
    shown: tuple[Any, ...],
) -> None:
    app = make_app(REDIS_URL=server.url(), REDIS_RECORD_COMMANDS=True)
    redis = Redis(app)

    with app.app_context():
        try:
            redis.execute_command(*command)
        except redis_py.RedisError:
            pass  # an unknown user, a MIGRATE to nowhere: the record is the point
        (record,) = get_recorded_commands()

    assert record.args == shown
    assert PW not in repr(record)


def test_a_pipeline_and_a_transaction_are_one_record_each(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_app(REDIS_URL=redis_server.url(), REDIS_RECORD_COMMANDS=True)
    redis = Redis(app)

    with app.app_context():
        with redis.pipeline(transaction=False) as pipe:
            pipe.set("a", 1).get("a").execute()
        redis.transaction(lambda pipe: pipe.multi() or pipe.incr("a"), "a")
        records = get_recorded_commands()

    # (The transaction's WATCH is sent by the pipeline, on its connection.)
    assert summary(records) == [
        ("REDIS", "PIPELINE", (("SET", "a", 1), ("GET", "a"))),
        ("REDIS", "PIPELINE", (("INCRBY", "a", 1),)),
    ]


def test_asyncio_clients_record_gathered_commands(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_app(
        REDIS_URL=redis_server.url(),
        REDIS_CLASS="redis.asyncio.Redis",
        REDIS_RECORD_COMMANDS=True,
    )
    redis = Redis(app)

    @app.get("/")
    async def view() -> dict[str, Any]:
        await asyncio.gather(*(redis.set(f"key{n}", n) for n in range(3)))
        async with redis.pipeline() as pipe:
            await pipe.get("key0").get("key1").execute()
        return {"summary": repr(summary(get_recorded_commands()))}

    replies = [app.test_client().get("/").json for _ in range(2)]

    for reply in replies:  # each request has its own
        records = eval(reply["summary"])  # the repr of plain tuples
        assert sorted(records[:3]) == [
            ("REDIS", "SET", ("key0", 0)),
            ("REDIS", "SET", ("key1", 1)),
            ("REDIS", "SET", ("key2", 2)),
        ]
        assert records[3:] == [
            ("REDIS", "PIPELINE", (("GET", "key0"), ("GET", "key1")))
        ]


def test_sentinel_and_cluster_clients_record(
    make_app: MakeApp, sentinel_group: SentinelGroup, redis_cluster: ServerCluster
) -> None:
    app = make_app(
        REDIS_URL=sentinel_group.url(),
        REDIS_RECORD_COMMANDS=True,
        CLUSTER_URL=redis_cluster.url(),
        CLUSTER_RECORD_COMMANDS=True,
    )
    redis, cluster = Redis(app), Redis(app, config_prefix="CLUSTER")

    with app.app_context():
        redis.set("sentinel-key", 1)
        redis.replica.get("sentinel-key")
        cluster.set("cluster-key", 2)
        with cluster.pipeline() as pipe:
            pipe.get("cluster-key").execute()
        records = summary(get_recorded_commands())

    assert records == [
        ("REDIS", "SET", ("sentinel-key", 1)),
        ("REDIS", "GET", ("sentinel-key",)),
        ("CLUSTER", "SET", ("cluster-key", 2)),
        ("CLUSTER", "PIPELINE", (("GET", "cluster-key"),)),
    ]
    redis.replica.close()


def test_server_timing_names_each_prefix_the_request_used(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_app(
        REDIS_URL=redis_server.url(),
        REDIS_SERVER_TIMING=True,
        CACHE_URL=redis_server.url(db=1),
        CACHE_SERVER_TIMING=True,
    )
    redis, cache = Redis(app), Redis(app, config_prefix="CACHE")

    @app.get("/both")
    def both() -> str:
        redis.set("a", 1)
        redis.get("a")
        cache.get("a")
        return "ok"

    @app.get("/none")
    def none() -> str:
        return "ok"

    with app.test_client() as client:
        timing = client.get("/both").headers.get_all("Server-Timing")
        assert client.get("/none").headers.get_all("Server-Timing") == []

    (redis_entry,) = [entry for entry in timing if entry.startswith("redis;")]
    (cache_entry,) = [entry for entry in timing if entry.startswith("cache;")]
    assert redis_entry.endswith(';desc="2 commands"')
    assert cache_entry.endswith(';desc="1 command"')
    assert float(redis_entry.split(";")[1].removeprefix("dur=")) > 0


def test_recording_is_off_by_default(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_app(REDIS_URL=redis_server.url())
    redis = Redis(app)

    with app.app_context():
        redis.set("a", 1)
        assert get_recorded_commands() == []
    assert type(redis.connection) is redis_py.Redis  # not a recording subclass


@pytest.fixture
def toolbar_app(make_app: MakeApp, redis_server: RedisServer) -> Iterator[Flask]:
    from flask_debugtoolbar import DebugToolbarExtension

    app = make_app(
        REDIS_URL=redis_server.url(),
        REDIS_RECORD_COMMANDS=True,
        SECRET_KEY="toolbar",
        DEBUG_TB_PANELS=["flask_and_redis.DebugToolbarPanel"],
        DEBUG_TB_INTERCEPT_REDIRECTS=False,
    )
    app.debug = True
    redis = Redis(app)

    @app.get("/")
    def page() -> str:
        redis.set("toolbar-key", "x" * 500)
        redis.get("toolbar-key")
        return "<html><body>page</body></html>"

    DebugToolbarExtension(app)
    yield app


def test_the_debug_toolbar_panel_shows_the_commands_of_the_request(
    toolbar_app: Flask,
) -> None:
    html = toolbar_app.test_client().get("/").get_data(as_text=True)

    assert "Redis commands" in html
    assert "2 commands in" in html
    assert "<td>SET</td>" in html and "<td>GET</td>" in html
    assert "x" * 500 not in html  # arguments cut to a readable length
    assert "<td>total</td><td>2 commands</td>" in html


def test_opentelemetry_spans_nest_under_the_request_span(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = make_app(REDIS_URL=redis_server.url(), REDIS_RECORD_COMMANDS=True)
    FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    try:
        redis = Redis(app)

        @app.get("/traced")
        def traced() -> str:
            redis.set("traced", 1)
            with redis.pipeline() as pipe:
                pipe.get("traced").execute()
            return "ok"

        assert app.test_client().get("/traced").status_code == 200
    finally:
        RedisInstrumentor().uninstrument()
        FlaskInstrumentor().uninstrument_app(app)

    spans = exporter.get_finished_spans()
    (request,) = [span for span in spans if span.name == "GET /traced"]
    commands = [span for span in spans if span is not request]
    assert [span.name for span in commands] == ["SET", "GET"]
    for span in commands:
        assert span.parent is not None
        assert span.parent.span_id == request.context.span_id
        assert span.context.trace_id == request.context.trace_id
