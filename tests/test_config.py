"""Good configuration: app config in, client settings and clients out.

``client_settings_from_config`` is a pure function, so most tests here read
the settings it makes (``kwargs``, ``sources``, ``url``, ``masked_kwargs()``)
and what a client built from them hands its connection pool, without a
server. The tables write config keys without their prefix: ``keys(PORT=1)``.
Bad configuration is in test_bad_config.py, ``mask_url`` in test_secrets.py.
"""

from __future__ import annotations

import inspect
import logging
import os
import ssl
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio
from flask import Flask
from redis.backoff import NoBackoff
from redis.connection import Connection, SSLConnection
from redis.retry import Retry

from flask_and_redis import (
    ClientSettings,
    ConfigurationError,
    Redis,
    client_settings_from_config,
)

from servers import free_port

MakeApp = Callable[..., Flask]
Build = Callable[[ClientSettings], Any]

PW = "Hunter2-pa55word"  # a password that must never show
FILE = __file__
DIR = str(Path(__file__).parent)


# -- Helpers -----------------------------------------------------------------


class SubRedis(redis.Redis):
    """A subclass with a keyword of its own, handing the rest to redis.Redis."""

    def __init__(self, *args: Any, extra: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.extra = extra


class TakesAnything:
    """A client class that accepts any keyword argument."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


class Closed:
    """A client class with a fixed set of keywords, typed by their defaults."""

    def __init__(
        self, host: str = "localhost", *, flag: bool = False, count: int = 1
    ) -> None:
        self.host = host
        self.flag = flag
        self.count = count


def keys(**values: Any) -> dict[str, Any]:
    """Config keys of the prefix REDIS: ``keys(PORT=1)`` is ``{"REDIS_PORT": 1}``."""
    return {f"REDIS_{name}": value for name, value in values.items()}


def settings(
    config: dict[str, Any] | None = None, prefix: str = "REDIS", **options: Any
) -> ClientSettings:
    return client_settings_from_config(config or {}, prefix, **options)


@pytest.fixture
def build() -> Iterator[Build]:
    """Build clients from settings, and close them after the test."""
    clients: list[Any] = []

    def create(client_settings: ClientSettings) -> Any:
        client = client_settings.create_client()
        clients.append(client)
        return client

    yield create
    for client in clients:
        client.close()


def configured(result: ClientSettings) -> dict[str, Any]:
    """The keyword arguments that came from the config or code, without the
    ones Flask-And-Redis sets itself (source "default")."""
    return {
        name: value
        for name, value in result.kwargs.items()
        if result.sources[name] != "default"
    }


def configured_sources(result: ClientSettings) -> dict[str, str]:
    """The sources of the keyword arguments of :func:`configured`."""
    return {
        name: source for name, source in result.sources.items() if source != "default"
    }


def reached(client: Any, names: Iterable[str]) -> dict[str, Any]:
    """What a client's pool gives its connections for the keywords *names*,
    and ``ssl``: whether the connections are TLS ones."""
    pool = client.connection_pool
    given = {**pool.connection_kwargs, "max_connections": pool.max_connections}
    given["unix_socket_path"] = given.get("path")
    given["ssl"] = issubclass(pool.connection_class, SSLConnection)
    return {name: given.get(name, "missing") for name in {"ssl", *names}}


def retry_summary(retry: Retry | None) -> tuple[Any, ...] | None:
    """What a Retry does: its backoff class (inside the fail-fast one of the
    extension's default policy), retry count and retried errors."""
    if retry is None:
        return None
    backoff = getattr(retry._backoff, "backoff", retry._backoff)
    return (type(backoff), retry._retries, retry._supported_errors)


def comparable(client: Any) -> tuple[Any, ...]:
    """The connection class, pool size and connection keyword arguments of a
    client, with helper objects (which are new for every client) replaced by
    their types and the retry policy by what it does."""
    pool = client.connection_pool
    kwargs = {}
    for name, value in pool.connection_kwargs.items():
        if name == "retry":
            kwargs[name] = retry_summary(value)
        elif isinstance(value, (str, bytes, int, float, bool, type(None), list)):
            kwargs[name] = value
        else:
            kwargs[name] = type(value)
    return pool.connection_class, pool.max_connections, kwargs


# -- Nothing configured ---------------------------------------------------------


def test_nothing_configured_is_redis_on_localhost(make_app: MakeApp) -> None:
    result = settings({})
    assert result.client_class is redis.Redis
    assert configured(result) == {}
    assert result.url == "redis://localhost:6379/0"
    app = make_app()
    Redis(app)
    client = app.extensions["redis"]["REDIS"]
    assert type(client) is redis.Redis
    assert client.connection_pool.connection_class is Connection
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("localhost", 6379, 0)


# -- P_URL and the discrete keys: each reaches the client ------------------------

URLS = [
    ("redis://h", dict(host="h")),
    ("redis://h:6380/2", dict(host="h", port=6380, db=2)),
    ("rediss://h:6380/2", dict(host="h", port=6380, db=2, ssl=True)),
    ("unix:///run/redis.sock", dict(unix_socket_path="/run/redis.sock")),
    ("unix:///s?db=3", dict(unix_socket_path="/s", db=3)),
    ("unix://u:pw@/s", dict(unix_socket_path="/s", username="u", password="pw")),
    ("redis://:p%40s%2Fw%3Ar%25@h", dict(password="p@s/w:r%", host="h")),
    ("redis://al%40ice:pw@h", dict(username="al@ice", password="pw", host="h")),
    ("redis://alice@h", dict(username="alice", host="h")),
    ("redis://:pw@h", dict(password="pw", host="h")),
    ("redis://h/5?db=3", dict(host="h", db=3)),
    ("redis://h:6380/12/", dict(host="h", port=6380, db=12)),
    ("redis://h?socket_timeout=2", dict(host="h", socket_timeout=2.0)),
    ("redis://h?socket_timeout=none", dict(host="h", socket_timeout=None)),
    ("redis:///?socket_connect_timeout=1.5", dict(socket_connect_timeout=1.5)),
    ("redis://h?decode_responses=true", dict(host="h", decode_responses=True)),
    ("redis://h?health_check_interval=30", dict(host="h", health_check_interval=30.0)),
    ("redis:///?max_connections=7", dict(max_connections=7)),
    ("redis:///?client_name=web", dict(client_name="web")),
    ("redis://h?protocol=2", dict(host="h", protocol=2)),
    ("redis://[::1]:6380/1", dict(host="::1", port=6380, db=1)),
    ("redis:///4", dict(db=4)),
    ("  redis://h/1  ", dict(host="h", db=1)),
]


@pytest.mark.parametrize(("url", "expected"), URLS)
def test_url(url: str, expected: dict[str, Any], build: Build) -> None:
    result = settings(keys(URL=url))
    assert configured(result) == expected
    assert {name: type(result.kwargs[name]) for name in expected} == {
        name: type(value) for name, value in expected.items()
    }
    assert configured_sources(result) == dict.fromkeys(expected, "REDIS_URL")
    assert reached(build(result), expected) == {"ssl": False, **expected}


KEYS = [
    (keys(HOST="example.com"), dict(host="example.com")),
    (keys(HOST="127.0.0.1"), dict(host="127.0.0.1")),
    (keys(HOST="::1"), dict(host="::1")),
    (keys(HOST="fe80::1"), dict(host="fe80::1")),
    (keys(HOST="/run/redis.sock"), dict(unix_socket_path="/run/redis.sock")),
    (keys(HOST="unix:///run/redis.sock"), dict(unix_socket_path="/run/redis.sock")),
    (keys(HOST="file:///run/redis.sock"), dict(unix_socket_path="/run/redis.sock")),
    (keys(UNIX_SOCKET_PATH="/s"), dict(unix_socket_path="/s")),
    (keys(PORT="6380"), dict(port=6380)),
    (keys(DB="3"), dict(db=3)),
    (keys(USERNAME="app"), dict(username="app")),
    (keys(PASSWORD=PW), dict(password=PW)),
    (keys(SOCKET_TIMEOUT="2.5"), dict(socket_timeout=2.5)),
    (keys(DECODE_RESPONSES="true"), dict(decode_responses=True)),
    (keys(MAX_CONNECTIONS="20"), dict(max_connections=20)),
    (keys(CLIENT_NAME="web"), dict(client_name="web")),
    (keys(HEALTH_CHECK_INTERVAL=30), dict(health_check_interval=30.0)),
    (keys(SSL=True), dict(ssl=True)),
    (keys(OPTIONS={"socket_timeout": 5, "db": 1}), dict(socket_timeout=5.0, db=1)),
]


@pytest.mark.parametrize(("config", "expected"), KEYS)
def test_discrete_key(
    config: dict[str, Any], expected: dict[str, Any], build: Build
) -> None:
    result = settings(config)
    assert configured(result) == expected
    (source,) = config
    assert configured_sources(result) == dict.fromkeys(expected, source)
    assert reached(build(result), expected) == {"ssl": False, **expected}


def test_options_pass_objects_through(build: Build) -> None:
    retry = Retry(NoBackoff(), 0)
    client = build(settings(keys(OPTIONS={"retry": retry})))
    summary = retry_summary(client.connection_pool.connection_kwargs["retry"])
    assert summary == (NoBackoff, 0, retry._supported_errors)


# -- TLS -------------------------------------------------------------------------


def test_ssl_keys(build: Build) -> None:
    result = settings(
        keys(
            HOST="example.com",
            SSL="true",
            SSL_CA_CERTS=FILE,
            SSL_CERTFILE=Path(FILE),
            SSL_KEYFILE=FILE,
            SSL_CA_PATH=DIR,
            SSL_CERT_REQS="optional",
            SSL_CHECK_HOSTNAME="false",
        )
    )
    expected = dict(ssl_ca_certs=FILE, ssl_certfile=FILE, ssl_keyfile=FILE)
    expected.update(ssl_ca_path=DIR, ssl_cert_reqs="optional")
    assert configured(result) == {
        "host": "example.com",
        "ssl": True,
        "ssl_check_hostname": False,
        **expected,
    }
    assert result.sources["ssl_certfile"] == "REDIS_SSL_CERTFILE"
    assert result.url == "rediss://example.com:6379/0"
    assert reached(build(result), expected) == {"ssl": True, **expected}


@pytest.mark.parametrize("config", [keys(SSL=True), keys(URL="rediss://h")])
def test_tls_verifies_certificates_by_default(
    config: dict[str, Any], build: Build
) -> None:
    result = settings(config)
    assert result.kwargs["ssl_check_hostname"] is True
    assert result.sources["ssl_check_hostname"] == "default"
    kwargs = build(result).connection_pool.connection_kwargs
    assert kwargs["ssl_cert_reqs"] in ("required", ssl.CERT_REQUIRED)
    assert kwargs["ssl_check_hostname"] is True


def test_tls_checks_the_host_name_unless_told_not_to() -> None:
    off = settings(keys(SSL=True, SSL_CHECK_HOSTNAME="false"))
    assert off.kwargs["ssl_check_hostname"] is False
    assert off.sources["ssl_check_hostname"] == "REDIS_SSL_CHECK_HOSTNAME"
    assert "ssl_check_hostname" not in settings({}).kwargs


def test_rediss_url_with_ssl_keys(build: Build) -> None:
    config = keys(URL=f"rediss://app:{PW}@h:6380/0", SSL_CA_CERTS=FILE)
    result = settings({**config, **keys(SSL_CERT_REQS="none")})
    assert (result.kwargs["ssl"], result.sources["ssl"]) == (True, "REDIS_URL")
    assert result.sources["ssl_ca_certs"] == "REDIS_SSL_CA_CERTS"
    assert reached(build(result), ["ssl_cert_reqs"]) == {
        "ssl": True,
        "ssl_cert_reqs": "none",
    }


@pytest.mark.parametrize("config", [keys(URL="redis://h/0"), keys(HOST="/s")])
def test_tls_given_in_code_gives_way_to_a_plain_url_or_a_socket(
    config: dict[str, Any],
) -> None:
    assert "ssl" not in settings(config, defaults={"ssl": True}).kwargs


def test_tls_options_set_to_none_do_not_count_as_set() -> None:
    result = settings(keys(SSL_CA_CERTS=None, SSL_CERTFILE=None))
    assert result.kwargs["ssl_ca_certs"] is None
    assert not result.kwargs.get("ssl")


# -- The client class --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (redis.Redis, redis.Redis),
        ("redis.Redis", redis.Redis),
        ("redis.client.Redis", redis.Redis),
        ("redis.client:Redis", redis.Redis),
        ("redis:StrictRedis", redis.StrictRedis),
        ("fakeredis.FakeRedis", fakeredis.FakeRedis),
        (SubRedis, SubRedis),
        (f"{__name__}:SubRedis", SubRedis),
        (f"{__name__}.SubRedis", SubRedis),
        ("redis.asyncio.Redis", redis.asyncio.Redis),
    ],
)
def test_client_class(value: object, expected: type) -> None:
    assert settings(keys(CLASS=value)).client_class is expected


def test_fakeredis_by_path_builds_a_fake(build: Build) -> None:
    client = build(settings(keys(CLASS="fakeredis.FakeRedis", DB="3")))
    assert isinstance(client, fakeredis.FakeRedis)
    assert client.connection_pool.connection_kwargs["db"] == 3
    client.set("key", "value")
    assert client.get("key") == b"value"


def test_subclass_keywords_are_config_keys(build: Build) -> None:
    result = settings(keys(CLASS=f"{__name__}.SubRedis", EXTRA="7", PORT="6380"))
    assert configured(result) == {"extra": 7, "port": 6380}
    client = build(result)
    assert isinstance(client, SubRedis)
    assert client.extra == 7
    assert client.connection_pool.connection_kwargs["port"] == 6380


def test_class_keywords_are_read_by_the_type_of_their_default() -> None:
    result = settings(keys(CLASS=Closed, FLAG="on", COUNT="7"))
    assert configured(result) == {"flag": True, "count": 7}
    client = result.create_client()
    assert (client.flag, client.count) == (True, 7)
    with pytest.raises(ConfigurationError) as caught:
        settings(keys(CLASS=Closed, COUNT="many"))
    assert caught.value.key == "REDIS_COUNT"
    assert "'many'" in str(caught.value)
    assert "an integer" in str(caught.value)


def test_classes_taking_any_keyword_and_none() -> None:
    result = settings(keys(CLASS=TakesAnything, OPTIONS={"whatever": 1}))
    assert result.create_client().kwargs == {"whatever": 1}
    nothing = settings(keys(CLASS="builtins.object"))
    assert dict(nothing.kwargs) == {}
    assert type(nothing.create_client()) is object


def keywords(client_class: type) -> set[str]:
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    parameters = inspect.signature(client_class).parameters.values()
    return {parameter.name for parameter in parameters if parameter.kind in named}


@pytest.mark.parametrize(
    ("client_class", "base"),
    [
        (redis.Redis, redis.Redis),
        (redis.asyncio.Redis, redis.asyncio.Redis),
        (SubRedis, redis.Redis),
        (fakeredis.FakeRedis, redis.Redis),
    ],
    ids=["redis", "redis.asyncio", "subclass", "fakeredis"],
)
def test_every_keyword_of_the_client_class_is_known(
    client_class: type, base: type
) -> None:
    # redis-py 6 and later wrap Redis.__init__ in a decorator that takes
    # **kwargs; a subclass taking **kwargs hands them on to its base.
    for name in keywords(client_class) | keywords(base):
        with pytest.raises(ConfigurationError) as caught:
            settings(keys(CLASS=client_class, OPTIONS={f"{name}_": 1}))
        assert caught.value.key == f"REDIS_OPTIONS['{name}_']"
        assert f"did you mean {name!r}?" in str(caught.value)


# -- Precedence: URL over keys over OPTIONS over code -------------------------------

PRECEDENCE = [
    # keyword, URL, then the value from each layer
    ("host", "redis://url-host", "url-host", "key-host", "option-host", "code-host"),
    ("port", "redis://h:7001", 7001, 7002, 7003, 7004),
    ("db", "redis://h/1", 1, 2, 3, 4),
    ("username", "redis://url-user@h", "url-user", "key-user", "opt-user", "code-user"),
    ("password", "redis://:url-pw@h", "url-pw", "key-pw", "option-pw", "code-pw"),
    ("unix_socket_path", "unix:///url.sock", "/url.sock", "/key", "/option", "/code"),
    ("socket_timeout", "redis://h?socket_timeout=1", 1.0, 2.0, 3.0, 4.0),
    ("decode_responses", "redis://h?decode_responses=true", True, False, True, False),
    ("client_name", "redis://h?client_name=url", "url", "key", "option", "code"),
    ("max_connections", "redis://h?max_connections=1", 1, 2, 3, 4),
]


@pytest.mark.parametrize(
    "top", range(4), ids=["top-url", "top-keys", "top-options", "top-code"]
)
@pytest.mark.parametrize(
    ("name", "url", "by_url", "by_key", "by_option", "by_code"), PRECEDENCE
)
def test_precedence(
    top: int,
    name: str,
    url: str,
    by_url: object,
    by_key: object,
    by_option: object,
    by_code: object,
) -> None:
    key = "REDIS_HOST" if name == "unix_socket_path" else f"REDIS_{name.upper()}"
    config: dict[str, Any] = {}
    if top <= 0:
        config["REDIS_URL"] = url
    if top <= 1:
        config[key] = by_key
    if top <= 2:
        config["REDIS_OPTIONS"] = {name: by_option}
    result = settings(config, defaults={name: by_code})
    assert result.kwargs[name] == (by_url, by_key, by_option, by_code)[top]
    assert result.sources[name] == ("REDIS_URL", key, "REDIS_OPTIONS", "code")[top]


def test_sources_of_a_mixed_config() -> None:
    result = settings(
        keys(
            URL=f"redis://app:{PW}@example.com/1?socket_timeout=2",
            PORT="6380",
            DB=5,
            OPTIONS={"socket_timeout": 9, "health_check_interval": 10},
        ),
        defaults={"decode_responses": True, "db": 7, "client_name": "code"},
    )
    assert configured(result) == {
        "host": "example.com",
        "port": 6380,
        "db": 1,
        "username": "app",
        "password": PW,
        "socket_timeout": 2.0,
        "health_check_interval": 10.0,
        "decode_responses": True,
        "client_name": "code",
    }
    assert configured_sources(result) == {
        **dict.fromkeys(("host", "db", "username", "password"), "REDIS_URL"),
        "socket_timeout": "REDIS_URL",
        "port": "REDIS_PORT",
        "health_check_interval": "REDIS_OPTIONS",
        "decode_responses": "code",
        "client_name": "code",
    }


URL_AND_KEYS = [
    (keys(URL="redis://h/2", PORT=6380), dict(host="h", db=2, port=6380)),
    (keys(URL="redis://h", PASSWORD=PW), dict(host="h", password=PW)),
    (keys(URL="redis://h", SOCKET_TIMEOUT="3"), dict(host="h", socket_timeout=3.0)),
    (keys(URL="redis://h", DB="4"), dict(host="h", db=4)),
    (keys(URL="redis://u@h", PASSWORD=PW), dict(host="h", username="u", password=PW)),
    (keys(URL="unix:///s", DB=2), dict(unix_socket_path="/s", db=2)),
    (keys(URL="redis:///3", HOST="h"), dict(host="h", db=3)),
]


@pytest.mark.parametrize(("config", "expected"), URL_AND_KEYS)
def test_discrete_keys_fill_what_the_url_leaves_out(
    config: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert configured(settings(config)) == expected


# -- Transport: the highest layer that says how to connect decides ----------------


TRANSPORTS = [
    # config, keyword arguments in code, what the client gets
    (keys(URL="unix:///s", HOST="h", PORT=1), {}, dict(unix_socket_path="/s")),
    (keys(URL="unix:///s", OPTIONS=dict(port=1)), {}, dict(unix_socket_path="/s")),
    (keys(URL="unix:///s"), dict(host="c", port=2), dict(unix_socket_path="/s")),
    (keys(URL="redis://h/0", HOST="/s"), {}, dict(host="h", db=0)),
    (keys(URL="redis://h", OPTIONS=dict(unix_socket_path="/o")), {}, dict(host="h")),
    (keys(URL="redis://h"), dict(unix_socket_path="/c"), dict(host="h")),
    (keys(HOST="/s", OPTIONS=dict(port=1)), {}, dict(unix_socket_path="/s")),
    (keys(HOST="/s"), dict(host="c"), dict(unix_socket_path="/s")),
    (keys(HOST="/s"), dict(port=1), dict(unix_socket_path="/s")),
    (keys(PORT=1, OPTIONS=dict(unix_socket_path="/o")), {}, dict(port=1)),
    (keys(OPTIONS=dict(host="o")), dict(unix_socket_path="/c"), dict(host="o")),
    (keys(URL="redis:///3", HOST="/s"), {}, dict(unix_socket_path="/s", db=3)),
    ({}, dict(unix_socket_path="/c"), dict(unix_socket_path="/c")),
]


@pytest.mark.parametrize(("config", "code", "expected"), TRANSPORTS)
def test_the_highest_layer_naming_a_transport_drops_the_others(
    config: dict[str, Any], code: dict[str, Any], expected: dict[str, Any], build: Build
) -> None:
    result = settings(config, defaults=code)
    assert configured(result) == expected
    assert reached(build(result), expected) == {"ssl": False, **expected}


# -- Prefixes --------------------------------------------------------------------


def test_a_prefix_reads_only_its_own_keys() -> None:
    config = {
        **keys(URL=f"redis://:{PW}@redis-host:6380/1", PORT="bad", OPTIONS="bad"),
        **keys(CLASS="no_such_module.Client", SOCKET_TIMEOUT=1),
        "CACHE_HOST": "cache-host",
        "CACHE_DB": "2",
        "CACHE_OPTIONS": {"socket_timeout": 3},
    }
    result = settings(config, "CACHE")
    assert result.prefix == "CACHE"
    assert result.client_class is redis.Redis
    assert configured(result) == {"host": "cache-host", "db": 2, "socket_timeout": 3.0}
    assert configured_sources(result) == {
        "host": "CACHE_HOST",
        "db": "CACHE_DB",
        "socket_timeout": "CACHE_OPTIONS",
    }


def test_two_prefixes_on_one_app(make_app: MakeApp) -> None:
    app = make_app(
        REDIS_URL="redis://example.com:6380/1",
        CACHE_URL="redis://cache.example.com:6381/2",
        CACHE_DECODE_RESPONSES="yes",
    )
    Redis(app)
    Redis(app, config_prefix="CACHE")
    main = app.extensions["redis"]["REDIS"].connection_pool.connection_kwargs
    cache = app.extensions["redis"]["CACHE"].connection_pool.connection_kwargs
    assert (main["host"], main["port"], main["db"]) == ("example.com", 6380, 1)
    assert main["decode_responses"] is False
    assert (cache["host"], cache["port"], cache["db"]) == ("cache.example.com", 6381, 2)
    assert cache["decode_responses"] is True


@pytest.mark.parametrize("prefix", ["REDIS", "CACHE", "redis", "CACHE_REDIS", "R2"])
def test_a_config_prefix(make_app: MakeApp, prefix: str) -> None:
    app = make_app(**{f"{prefix}_DB": "5"})
    Redis(app, config_prefix=prefix)
    client = app.extensions["redis"][prefix]
    assert client.connection_pool.connection_kwargs["db"] == 5


@pytest.mark.parametrize(
    "key",
    [
        "REDIS_QUEUE_NAME",
        "REDIS_CACHE_URL",
        "REDIS_2_URL",  # the URL of the prefix REDIS_2, not a typo of REDIS_URL
        "REDIS_RO_HOST",
        "REDIS_B_DB",
        "REDIS_CACHE_DB",
        "REDIS_SESSION_PASSWORD",
        "REDIS_LOCK_PASSWORD",
    ],
)
def test_keys_of_other_uses_and_longer_prefixes_are_left_alone(key: str) -> None:
    assert configured(settings({key: "1"})) == {}


# -- Strings, as the environment gives them -----------------------------------------

BOOLEANS = [
    *[(text, True) for text in ("true", "yes", "on", "1", "TRUE", " Yes ", "On")],
    *[(text, False) for text in ("false", "no", "off", "0", "FALSE", " No ", "Off")],
    (True, True),
    (False, False),
    (1, True),
    (0, False),
]

COERCION = [
    ("REDIS_PORT", " 6380 ", "port", 6380),
    ("REDIS_PORT", 1, "port", 1),
    ("REDIS_PORT", "65535", "port", 65535),
    ("REDIS_DB", "0", "db", 0),
    ("REDIS_DB", "15", "db", 15),
    *[
        ("REDIS_DECODE_RESPONSES", raw, "decode_responses", out)
        for raw, out in BOOLEANS
    ],
    ("REDIS_SOCKET_KEEPALIVE", "off", "socket_keepalive", False),
    ("REDIS_RETRY_ON_TIMEOUT", "yes", "retry_on_timeout", True),
    ("REDIS_SINGLE_CONNECTION_CLIENT", "false", "single_connection_client", False),
    ("REDIS_SOCKET_TIMEOUT", "2", "socket_timeout", 2.0),
    ("REDIS_SOCKET_TIMEOUT", 3, "socket_timeout", 3.0),
    ("REDIS_SOCKET_TIMEOUT", 0.25, "socket_timeout", 0.25),
    ("REDIS_SOCKET_TIMEOUT", "none", "socket_timeout", None),
    ("REDIS_SOCKET_TIMEOUT", "None", "socket_timeout", None),
    ("REDIS_SOCKET_TIMEOUT", "null", "socket_timeout", None),
    ("REDIS_SOCKET_TIMEOUT", None, "socket_timeout", None),
    ("REDIS_SOCKET_CONNECT_TIMEOUT", "none", "socket_connect_timeout", None),
    ("REDIS_SOCKET_CONNECT_TIMEOUT", "0.5", "socket_connect_timeout", 0.5),
    ("REDIS_MAX_CONNECTIONS", "none", "max_connections", None),
    ("REDIS_HEALTH_CHECK_INTERVAL", "30", "health_check_interval", 30.0),
    ("REDIS_HEALTH_CHECK_INTERVAL", "0", "health_check_interval", 0.0),
    ("REDIS_PROTOCOL", "2", "protocol", 2),
    ("REDIS_PROTOCOL", 3, "protocol", 3),
    ("REDIS_ENCODING", "latin-1", "encoding", "latin-1"),
    ("REDIS_SSL", "on", "ssl", True),
]


@pytest.mark.parametrize(
    ("key", "raw", "name", "expected"),
    COERCION,
    ids=[f"{key}={raw!r}" for key, raw, _, _ in COERCION],
)
def test_coercion(key: str, raw: object, name: str, expected: object) -> None:
    result = settings({key: raw})
    assert configured(result) == {name: expected}
    assert type(result.kwargs[name]) is type(expected)


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """Set a FLASK_* environment variable, with none left over from outside."""
    for name in list(os.environ):
        if name.startswith("FLASK_"):
            monkeypatch.delenv(name)
    return monkeypatch.setenv


@pytest.mark.parametrize(
    ("variable", "text", "name", "expected"),
    [
        ("FLASK_REDIS_PORT", "6380", "port", 6380),  # JSON: an int
        ("FLASK_REDIS_PORT", '"6380"', "port", 6380),  # JSON: a string
        ("FLASK_REDIS_SOCKET_TIMEOUT", "2.5", "socket_timeout", 2.5),
        ("FLASK_REDIS_SOCKET_TIMEOUT", "null", "socket_timeout", None),
        ("FLASK_REDIS_SOCKET_TIMEOUT", "none", "socket_timeout", None),  # not JSON
        ("FLASK_REDIS_DECODE_RESPONSES", "true", "decode_responses", True),
        ("FLASK_REDIS_DECODE_RESPONSES", "yes", "decode_responses", True),
        ("FLASK_REDIS_PASSWORD", "12345678", "password", "12345678"),  # a JSON int
        ("FLASK_REDIS_OPTIONS__socket_timeout", "3", "socket_timeout", 3.0),
        ("FLASK_REDIS_URL", "redis://h:6380/2", "port", 6380),
    ],
)
def test_from_prefixed_env(
    make_app: MakeApp,
    environ: Callable[[str, str], None],
    variable: str,
    text: str,
    name: str,
    expected: object,
) -> None:
    environ(variable, text)
    app = make_app()
    app.config.from_prefixed_env()
    result = Redis(app).settings_for(app)
    assert result.kwargs[name] == expected
    assert type(result.kwargs[name]) is type(expected)
    client = app.extensions["redis"]["REDIS"]
    assert reached(client, [name])[name] == expected


class SettingsClass:
    REDIS_PORT = "6380"
    REDIS_DECODE_RESPONSES = "on"


@pytest.mark.parametrize("loader", ["from_object", "from_mapping", "from_pyfile"])
def test_strings_from_other_config_loaders(
    make_app: MakeApp, tmp_path: Path, loader: str
) -> None:
    app = make_app()
    if loader == "from_object":
        app.config.from_object(SettingsClass)
    elif loader == "from_mapping":
        app.config.from_mapping(vars(SettingsClass))
    else:
        path = tmp_path / "settings.cfg"
        path.write_text("REDIS_PORT = '6380'\nREDIS_DECODE_RESPONSES = 'on'\n")
        app.config.from_pyfile(str(path))
    Redis(app)
    kwargs = app.extensions["redis"]["REDIS"].connection_pool.connection_kwargs
    assert (kwargs["port"], kwargs["decode_responses"]) == (6380, True)


# -- A URL and the equivalent keys give the same client ----------------------------

EQUIVALENT = [
    ("redis://localhost:6379/0", keys(HOST="localhost", PORT=6379, DB=0)),
    ("redis://u:pw@h:1", keys(HOST="h", PORT="1", USERNAME="u", PASSWORD="pw")),
    ("redis:///0?socket_timeout=2.5", keys(DB=0, SOCKET_TIMEOUT="2.5")),
    ("redis:///0?decode_responses=true", keys(DB=0, DECODE_RESPONSES="true")),
    ("redis://h?health_check_interval=10", keys(HOST="h", HEALTH_CHECK_INTERVAL=10)),
    ("rediss://h:6380/0", keys(HOST="h", PORT=6380, SSL=True)),
    ("unix:///run/redis.sock?db=2", keys(HOST="/run/redis.sock", DB=2)),
    ("redis://[::1]:1?max_connections=5", keys(HOST="::1", PORT=1, MAX_CONNECTIONS=5)),
]


@pytest.mark.parametrize(("url", "config"), EQUIVALENT)
def test_url_and_keys_give_the_same_client(
    url: str, config: dict[str, Any], build: Build
) -> None:
    from_url = build(settings(keys(URL=url)))
    from_keys = build(settings(config))
    assert type(from_url) is type(from_keys) is redis.Redis
    assert comparable(from_url) == comparable(from_keys)


@pytest.mark.parametrize(("url", "config"), EQUIVALENT)
def test_url_keeps_the_constructor_retry_and_timeouts(
    url: str, config: dict[str, Any], build: Build
) -> None:
    ours = build(settings(keys(URL=url))).connection_pool.connection_kwargs
    # The constructor's defaults, for the same transport.
    unix = url.startswith("unix:")
    plain = redis.Redis(unix_socket_path="/s") if unix else redis.Redis()
    theirs = redis.Redis.from_url(url)
    try:
        defaults = plain.connection_pool.connection_kwargs
        default_retry = retry_summary(defaults.get("retry"))
        # The extension keeps the constructor's retry policy and timeouts...
        assert retry_summary(ours.get("retry")) == default_retry
        for name in ("socket_timeout", "socket_connect_timeout"):
            if name not in url:
                assert ours.get(name) == defaults.get(name), name
        # ...which redis-py 8's own from_url drops: the split is not inherited.
        from_url_kwargs = theirs.connection_pool.connection_kwargs
        if int(redis.__version__.split(".")[0]) >= 8:
            assert default_retry is not None
            assert default_retry[1] > 0
            assert retry_summary(from_url_kwargs.get("retry")) != default_retry
    finally:
        plain.close()
        theirs.close()


# -- ClientSettings: url, masked_kwargs, repr -------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "url"),
    [
        ({}, "redis://localhost:6379/0"),
        (dict(host="example.com", port=6380, db=2), "redis://example.com:6380/2"),
        (dict(username="app", password=PW), "redis://app:***@localhost:6379/0"),
        (dict(password=PW), "redis://:***@localhost:6379/0"),
        (dict(username="app"), "redis://app@localhost:6379/0"),
        (dict(username="al@ice", password=PW), "redis://al%40ice:***@localhost:6379/0"),
        (dict(ssl=True, host="example.com"), "rediss://example.com:6379/0"),
        (dict(host="::1", port=6380), "redis://[::1]:6380/0"),
        (dict(unix_socket_path="/s", db=3, password=PW), "unix://:***@/s?db=3"),
        (dict(unix_socket_path="/run/redis.sock"), "unix:///run/redis.sock?db=0"),
    ],
)
def test_settings_url(kwargs: dict[str, Any], url: str) -> None:
    client_settings = ClientSettings("REDIS", redis.Redis, kwargs)
    assert client_settings.url == url
    assert PW not in repr(client_settings)
    assert f"url={url!r}" in repr(client_settings)


def test_settings_url_from_config() -> None:
    result = settings(keys(URL=f"rediss://app:{PW}@example.com/4"))
    assert result.url == "rediss://app:***@example.com:6379/4"


def test_masked_kwargs() -> None:
    result = settings(
        keys(
            URL=f"rediss://app:{PW}@example.com/0",
            SSL_PASSWORD=f"key-{PW}",
            CLIENT_NAME="web",
        )
    )
    assert result.masked_kwargs() == {
        "username": "app",
        "password": "***",
        "host": "example.com",
        "db": 0,
        "ssl": True,
        "ssl_password": "***",
        "client_name": "web",
        "ssl_check_hostname": True,
        # The handshake that masks the password in the server's complaints,
        # and the default retry policy (redis-py 6 and later have one).
        "redis_connect_func": result.kwargs["redis_connect_func"],
        # And redis-py 8's driver info, looked up once rather than per client.
        **{
            name: result.kwargs[name]
            for name in ("retry", "driver_info")
            if name in result.kwargs
        },
    }
    # The client still gets the real secrets.
    assert result.kwargs["password"] == PW
    assert result.kwargs["ssl_password"] == f"key-{PW}"


def test_masked_kwargs_keep_no_password_as_none() -> None:
    client_settings = ClientSettings("REDIS", redis.Redis, {"password": None})
    assert client_settings.masked_kwargs() == {"password": None}


@pytest.mark.parametrize(
    "config",
    [
        keys(PASSWORD=None),
        keys(USERNAME=None),
        keys(URL=f"redis://:{PW}@example.com/0", PASSWORD=None),
    ],
)
def test_none_credentials_mean_none(config: dict[str, Any]) -> None:
    result = settings(config)
    assert result.kwargs.get("username") is None
    expected = PW if "REDIS_URL" in config else None
    assert result.kwargs.get("password") == expected


def test_settings_repr() -> None:
    result = settings({"CACHE_URL": f"redis://app:{PW}@example.com:6380/1"}, "CACHE")
    assert repr(result) == (
        "ClientSettings(prefix='CACHE', client_class=redis.Redis,"
        " url='redis://app:***@example.com:6380/1')"
    )
    subclass = settings(keys(CLASS=SubRedis, PASSWORD=PW))
    assert f"client_class={__name__}.SubRedis" in repr(subclass)
    assert PW not in repr(subclass)


def test_extension_repr_masks_the_password(make_app: MakeApp) -> None:
    extension = Redis(make_app(REDIS_URL=f"redis://app:{PW}@example.com:6380/1"))
    assert repr(extension) == (
        "<flask_and_redis.Redis REDIS redis://app:***@example.com:6380/1>"
    )


# -- init_app: no network I/O, nothing registered on failure ----------------------


@pytest.mark.parametrize(
    "config",
    [
        keys(URL="redis://127.0.0.1:{port}/0"),
        keys(URL=f"redis://:{PW}@127.0.0.1:{{port}}/0?socket_connect_timeout=30"),
        keys(URL="rediss://127.0.0.1:{port}/0"),
        keys(URL="unix://{tmp}/nothing-listens.sock"),
        keys(URL="redis://nothing-resolves.invalid:{port}/0"),
        keys(HOST="nothing-resolves.invalid", PORT="{port}"),
        keys(SSL=True, SSL_CA_CERTS=FILE, HEALTH_CHECK_INTERVAL=10),
        keys(CONNECTION_POOL_CLASS="redis.BlockingConnectionPool", MAX_CONNECTIONS=4),
        keys(CLASS="redis.asyncio.Redis"),
    ],
)
def test_init_app_makes_no_connection(
    make_app: MakeApp, tmp_path: Path, no_network: list[str], config: dict[str, Any]
) -> None:
    # Nothing listens on the port. no_network fails the test if init_app
    # connects or resolves a name.
    app = make_app(**config)
    for key, value in config.items():
        if isinstance(value, str):
            app.config[key] = value.format(port=free_port(), tmp=tmp_path)
    Redis(app)
    assert "REDIS" in app.extensions["redis"]


def test_failed_init_app_leaves_the_app_untouched(make_app: MakeApp) -> None:
    app = make_app(REDIS_DB="0")
    first = Redis(app)
    before = dict(app.extensions["redis"])
    app.config["CACHE_PORT"] = "not-a-port"
    second = Redis()
    with pytest.raises(ConfigurationError):
        second.init_app(app, config_prefix="CACHE")
    assert app.extensions["redis"] == before
    assert first.settings_for(app).prefix == "REDIS"
    with pytest.raises(RuntimeError):
        second.settings_for(app)
    # Fixed, the same extension registers fine.
    app.config["CACHE_PORT"] = "6380"
    second.init_app(app, config_prefix="CACHE")
    cache = app.extensions["redis"]["CACHE"]
    assert cache.connection_pool.connection_kwargs["port"] == 6380


def test_init_app_log_has_no_password(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(REDIS_URL=f"rediss://app:{PW}@example.com/0", REDIS_SSL_PASSWORD=PW)
    with caplog.at_level(logging.DEBUG, logger="flask_and_redis"):
        Redis(app)
    assert "example.com" in caplog.text
    assert PW not in caplog.text


def test_code_kwargs_are_defaults_under_config(make_app: MakeApp) -> None:
    app = make_app(REDIS_SOCKET_TIMEOUT="7")
    extension = Redis(socket_timeout=1, decode_responses=True, db=1)
    extension.init_app(app, db=2)
    result = extension.settings_for(app)
    assert configured(result) == {
        "socket_timeout": 7.0,
        "decode_responses": True,
        "db": 2,
    }
    assert configured_sources(result) == {
        "socket_timeout": "REDIS_SOCKET_TIMEOUT",
        "decode_responses": "code",
        "db": "code",
    }
