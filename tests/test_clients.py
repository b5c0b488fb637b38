"""Custom client classes: REDIS_CLASS, subclasses, fakeredis, custom providers.

Fakes are the subject here; the other test files use real servers.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import fakeredis
import pytest
import redis as redis_py
from flask import Flask

from flask_and_redis import ConfigurationError, Redis

from servers import RedisServer

MakeApp = Callable[..., Flask]


class TaggedRedis(redis_py.Redis):
    """A subclass with a keyword of its own, handing the rest to redis.Redis."""

    def __init__(self, *args: Any, tag: str = "none", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tag = tag


class KeywordsOnly:
    """A provider without from_url that keeps whatever it is given."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def get(self, name: str) -> str:
        return f"value of {name}"


class NoArguments:
    def ping(self) -> bool:
        return True


def test_a_subclass_with_its_own_init_gets_its_keywords_and_the_bases(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_app(
        REDIS_CLASS=TaggedRedis,
        REDIS_TAG="blue",
        REDIS_URL=redis_server.url(db=2),
        REDIS_SOCKET_TIMEOUT="2.5",
    )
    redis = Redis(app)

    client = redis.connection
    assert isinstance(client, TaggedRedis)
    assert client.tag == "blue"
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["port"], kwargs["db"]) == (redis_server.port, 2)
    assert kwargs["socket_timeout"] == 2.5
    assert redis.ping() is True


def test_the_class_may_be_a_dotted_path(make_app: MakeApp) -> None:
    module = __name__
    app = make_app(REDIS_CLASS=f"{module}.TaggedRedis", REDIS_OPTIONS={"tag": "red"})

    assert Redis(app).connection.tag == "red"


def test_fakeredis_by_dotted_path(make_app: MakeApp) -> None:
    app = make_app(REDIS_CLASS="fakeredis.FakeRedis", REDIS_DB=3)
    redis = Redis(app)

    redis.set("key", "value")

    assert isinstance(redis.connection, fakeredis.FakeRedis)
    assert redis.get("key") == b"value"
    assert redis.connection.connection_pool.connection_kwargs["db"] == 3


def test_custom_provider_replaces_the_class(make_app: MakeApp) -> None:
    app = make_app(REDIS_CLASS="redis.Redis", REDIS_DECODE_RESPONSES=True)
    redis = Redis.from_custom_provider(fakeredis.FakeRedis, app)

    redis["key"] = "value"

    assert isinstance(redis.connection, fakeredis.FakeRedis)
    assert redis["key"] == "value"


def test_custom_provider_with_init_app_and_prefix(make_app: MakeApp) -> None:
    app = make_app(CACHE_DB=5)
    redis = Redis.from_custom_provider(fakeredis.FakeRedis, config_prefix="CACHE")
    redis.init_app(app)

    assert app.extensions["redis"]["CACHE"] is redis.connection
    assert redis.connection.connection_pool.connection_kwargs["db"] == 5


def test_provider_without_from_url_gets_keyword_arguments(make_app: MakeApp) -> None:
    app = make_app(REDIS_URL="redis://:pw@example.test:6390/4")
    redis = Redis.from_custom_provider(KeywordsOnly, app, socket_timeout=3)

    assert redis.connection.kwargs == {
        "socket_timeout": 3.0,
        "password": "pw",
        "host": "example.test",
        "port": 6390,
        "db": 4,
    }
    assert redis.get("key") == "value of key"


def test_provider_taking_nothing_works_unconfigured(make_app: MakeApp) -> None:
    redis = Redis.from_custom_provider(NoArguments, make_app())

    assert redis.ping() is True


def test_provider_taking_nothing_refuses_configured_keys(make_app: MakeApp) -> None:
    app = make_app(REDIS_PORT=6390)

    with pytest.raises(ConfigurationError, match="takes no keyword argument 'port'"):
        Redis.from_custom_provider(NoArguments, app)


def test_none_provider_raises_assertion_error() -> None:
    with pytest.raises(AssertionError, match="provider is None"):
        Redis.from_custom_provider(None)  # type: ignore[arg-type]


def test_none_provider_raises_assertion_error_under_optimisation() -> None:
    code = (
        "from flask_and_redis import Redis\n"
        "try:\n"
        "    Redis.from_custom_provider(None)\n"
        "except AssertionError as error:\n"
        "    print('raised:', error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-O", "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.startswith("raised: The custom provider is None")


def test_strict_is_accepted_for_flask_redis_compatibility(make_app: MakeApp) -> None:
    redis = Redis(make_app(), strict=True)

    assert "strict" not in redis.client_kwargs
    assert isinstance(redis.connection, redis_py.Redis)


def test_strict_is_accepted_by_init_app_too(make_app: MakeApp) -> None:
    redis = Redis()
    redis.init_app(make_app(), strict=False)

    assert isinstance(redis.connection, redis_py.Redis)


def test_code_keywords_are_defaults_under_config(make_app: MakeApp) -> None:
    app = make_app(REDIS_DECODE_RESPONSES=False)
    redis = Redis(app, decode_responses=True, socket_timeout=9)

    kwargs = redis.connection.connection_pool.connection_kwargs
    assert kwargs["decode_responses"] is False
    assert kwargs["socket_timeout"] == 9


def test_init_app_keywords_override_the_extensions(make_app: MakeApp) -> None:
    redis = Redis(socket_timeout=9, client_name="extension")
    app = make_app()
    redis.init_app(app, client_name="init-app")

    kwargs = redis.connection.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["client_name"]) == (9, "init-app")
