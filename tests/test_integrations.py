"""The recipes of the Integrations page -- Flask-Session, Flask-Limiter, RQ --
on the extension's client, against a real server."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
from flask import Flask, session
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_session import Session
from rq import Queue, SimpleWorker

from flask_and_redis import Redis

from servers import RedisServer

MakeApp = Callable[..., Flask]

pytestmark = pytest.mark.usefixtures("flush_servers")


def word_count(text: str) -> int:
    """An RQ job: the worker imports it by name."""
    return len(text.split())


def test_flask_session_stores_sessions_with_the_extensions_client(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_app(
        REDIS_URL=redis_server.url(db=6), SESSION_TYPE="redis", SECRET_KEY="dev"
    )
    redis = Redis(app)
    app.config["SESSION_REDIS"] = app.extensions["redis"]["REDIS"]
    Session(app)

    @app.get("/visit")
    def visit() -> str:
        session["visits"] = session.get("visits", 0) + 1
        return str(session["visits"])

    client = app.test_client()
    assert [client.get("/visit").text for _ in range(3)] == ["1", "2", "3"]
    assert app.session_interface.client is redis.connection
    with redis_server.client(db=6) as direct:
        assert len(direct.keys("session:*")) == 1


def test_flask_limiter_counts_on_the_extensions_pool(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_app(REDIS_URL=redis_server.url(db=7))
    Redis(app)
    pool = app.extensions["redis"]["REDIS"].connection_pool
    app.config["RATELIMIT_STORAGE_URI"] = "redis://"
    app.config["RATELIMIT_STORAGE_OPTIONS"] = {"connection_pool": pool}
    limiter = Limiter(get_remote_address, app=app, default_limits=["2 per minute"])

    @app.get("/")
    def index() -> str:
        return "ok"

    client = app.test_client()
    assert [client.get("/").status_code for _ in range(3)] == [200, 200, 429]
    assert limiter._storage.storage.connection_pool is pool
    with redis_server.client(db=7) as direct:
        (key,) = direct.keys("LIMITS:*")
        assert direct.get(key) == b"3"


@pytest.fixture
def quiet_rq() -> Iterator[None]:
    logger = logging.getLogger("rq.worker")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


@pytest.mark.usefixtures("quiet_rq")
def test_rq_queue_and_worker_on_the_extensions_client(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_app(REDIS_URL=redis_server.url(db=8))
    redis = Redis(app)

    with app.app_context():
        queue = Queue("emails", connection=redis.connection)
        job = queue.enqueue(word_count, "one two three")
        worker = SimpleWorker([queue], connection=redis.connection)
        assert worker.work(burst=True, max_jobs=10) is True

    assert job.get_status(refresh=True) == "finished"
    assert job.return_value() == 3
    assert queue.connection is app.extensions["redis"]["REDIS"]


@pytest.mark.usefixtures("quiet_rq")
def test_rq_needs_a_client_that_does_not_decode_responses(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_app(REDIS_URL=redis_server.url(db=8), REDIS_DECODE_RESPONSES=True)
    redis = Redis(app)

    with app.app_context():
        queue = Queue(connection=redis.connection)
        job = queue.enqueue(word_count, "one two")
        # The worker cannot read the pickled job back, logs it and quits.
        SimpleWorker([queue], connection=redis.connection).work(burst=True)

    assert job.get_status(refresh=True) == "queued"
