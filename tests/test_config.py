"""The configuration layer: app config in, client settings out.

``client_settings_from_config`` and its helpers are pure functions, so almost
every test here inspects the settings, or the keyword arguments a built client
hands its connection pool, without a server. The ``init_app`` tests check that
configuration is read and validated there, with no network I/O.
"""

from __future__ import annotations

import inspect
import logging
import os
import ssl
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio
from flask import Flask
from redis.backoff import NoBackoff
from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.retry import Retry

from flask_and_redis import (
    ClientSettings,
    ConfigurationError,
    Redis,
    _constructor_keywords,
    _resolve_client_class,
    client_settings_from_config,
)

from servers import free_port

#: A password that must never show in an error, a repr or a log line.
PW = "Hunter2-pa55word"


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


class NoInit:
    """A client class without an ``__init__``: it takes no keyword argument."""


class Closed:
    """A client class with a fixed set of keywords, typed by their defaults."""

    def __init__(
        self, host: str = "localhost", *, flag: bool = False, count: int = 1
    ) -> None:
        self.host = host
        self.flag = flag
        self.count = count


def settings(
    config: dict[str, Any] | None = None, prefix: str = "REDIS", **options: Any
) -> ClientSettings:
    return client_settings_from_config(config or {}, prefix, **options)


@pytest.fixture
def build() -> Iterator[Callable[[ClientSettings], Any]]:
    """Build clients from settings, and close them after the test."""
    clients: list[Any] = []

    def create(client_settings: ClientSettings) -> Any:
        client = client_settings.create_client()
        clients.append(client)
        return client

    yield create
    for client in clients:
        client.close()


@pytest.fixture
def app() -> Iterator[Flask]:
    app = Flask(__name__)
    yield app
    for client in app.extensions.get("redis", {}).values():
        client.close()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """Real certificate-like files (their content is never loaded: nothing
    connects), a directory, and a path that does not exist."""
    paths = {}
    for name in ("ca", "cert", "key"):
        path = tmp_path / f"{name}.pem"
        path.write_text("-----BEGIN CERTIFICATE-----\n")
        paths[name] = str(path)
    paths["dir"] = str(tmp_path)
    paths["missing"] = str(tmp_path / "missing.pem")
    return paths


def fill_text(text: str, files: dict[str, str]) -> str:
    """Replace ``{ca}``-style placeholders in *text* with real paths."""
    for name, path in files.items():
        text = text.replace(f"{{{name}}}", path)
    return text


def fill(config: dict[str, Any], files: dict[str, str]) -> dict[str, Any]:
    """Replace the placeholders in the string values of *config*."""
    return {
        key: fill_text(value, files) if isinstance(value, str) else value
        for key, value in config.items()
    }


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


def retry_summary(retry: Retry | None) -> tuple[Any, ...] | None:
    """What a Retry does: its backoff class (inside the fail-fast one of the
    extension's default policy), retry count and retried errors."""
    if retry is None:
        return None
    retries = retry.get_retries() if hasattr(retry, "get_retries") else retry._retries
    backoff = getattr(retry._backoff, "backoff", retry._backoff)
    return (type(backoff), retries, retry._supported_errors)


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


def check_error(error: ConfigurationError, key: str, shown: str, accepted: str) -> None:
    """The error names the key, shows the bad value, says what is accepted,
    and never shows the password."""
    assert isinstance(error, ValueError)
    assert type(error) is ConfigurationError
    message = str(error)
    assert error.key == key
    assert key in message
    assert shown in message
    assert accepted in message
    assert PW not in message
    assert PW not in repr(error)
    assert all(PW not in str(arg) for arg in error.args)


# -- Nothing configured ---------------------------------------------------------


def test_nothing_configured_is_redis_on_localhost(
    build: Callable[[ClientSettings], Any],
) -> None:
    result = settings({})
    assert result.client_class is redis.Redis
    assert configured(result) == {}
    assert configured_sources(result) == {}
    assert result.url == "redis://localhost:6379/0"
    client = build(result)
    assert type(client) is redis.Redis
    pool = client.connection_pool
    assert pool.connection_class is Connection
    assert pool.connection_kwargs["host"] == "localhost"
    assert pool.connection_kwargs["port"] == 6379
    assert pool.connection_kwargs["db"] == 0


def test_nothing_configured_through_init_app(app: Flask) -> None:
    Redis(app)
    client = app.extensions["redis"]["REDIS"]
    assert type(client) is redis.Redis
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("localhost", 6379, 0)
    assert client.connection_pool.connection_class is Connection


# -- P_URL ---------------------------------------------------------------------

URLS = [
    pytest.param("redis://example.com", {"host": "example.com"}, id="host"),
    pytest.param(
        "redis://example.com:6380/2",
        {"host": "example.com", "port": 6380, "db": 2},
        id="host-port-db",
    ),
    pytest.param(
        "rediss://example.com:6380/2",
        {"host": "example.com", "port": 6380, "db": 2, "ssl": True},
        id="rediss",
    ),
    pytest.param(
        "unix:///run/redis.sock", {"unix_socket_path": "/run/redis.sock"}, id="unix"
    ),
    pytest.param(
        "unix:///run/redis.sock?db=3",
        {"unix_socket_path": "/run/redis.sock", "db": 3},
        id="unix-db",
    ),
    pytest.param(
        "unix://app:pw@/run/redis.sock?db=3",
        {
            "unix_socket_path": "/run/redis.sock",
            "db": 3,
            "username": "app",
            "password": "pw",
        },
        id="unix-credentials",
    ),
    pytest.param(
        "redis://app:p%40ss%2Fw%3Ard%25@example.com/0",
        {"username": "app", "password": "p@ss/w:rd%", "host": "example.com", "db": 0},
        id="credentials-percent-decoded",
    ),
    pytest.param(
        "redis://al%40ice:pw@example.com",
        {"username": "al@ice", "password": "pw", "host": "example.com"},
        id="username-percent-decoded",
    ),
    pytest.param(
        "redis://alice@example.com",
        {"username": "alice", "host": "example.com"},
        id="user-only",
    ),
    pytest.param(
        "redis://:pw@example.com",
        {"password": "pw", "host": "example.com"},
        id="password-only",
    ),
    pytest.param(
        "redis://example.com/5?db=3",
        {"host": "example.com", "db": 3},
        id="db-option-wins-over-path",
    ),
    pytest.param(
        "redis://example.com:6380/12/",
        {"host": "example.com", "port": 6380, "db": 12},
        id="trailing-slash",
    ),
    pytest.param(
        "redis://example.com/0?socket_timeout=2&decode_responses=true",
        {
            "host": "example.com",
            "db": 0,
            "socket_timeout": 2.0,
            "decode_responses": True,
        },
        id="typed-options",
    ),
    pytest.param(
        "redis://example.com?socket_timeout=none&socket_connect_timeout=1.5",
        {"host": "example.com", "socket_timeout": None, "socket_connect_timeout": 1.5},
        id="timeout-none",
    ),
    pytest.param(
        "redis://example.com?health_check_interval=30&max_connections=7"
        "&client_name=web&protocol=2&retry_on_timeout=yes",
        {
            "host": "example.com",
            "health_check_interval": 30.0,
            "max_connections": 7,
            "client_name": "web",
            "protocol": 2,
            "retry_on_timeout": True,
        },
        id="more-options",
    ),
    pytest.param(
        "redis://[::1]:6380/1", {"host": "::1", "port": 6380, "db": 1}, id="ipv6"
    ),
    pytest.param("redis:///4", {"db": 4}, id="db-only"),
    pytest.param(
        "  redis://example.com/1  ", {"host": "example.com", "db": 1}, id="spaces"
    ),
]


@pytest.mark.parametrize(("url", "expected"), URLS)
def test_url(url: str, expected: dict[str, Any]) -> None:
    result = settings({"REDIS_URL": url})
    assert configured(result) == expected
    for name, value in expected.items():
        assert type(result.kwargs[name]) is type(value), name
    assert {
        name: source for name, source in result.sources.items() if source != "default"
    } == dict.fromkeys(expected, "REDIS_URL")


@pytest.mark.parametrize(
    ("url", "connection_class", "expected"),
    [
        pytest.param(
            "redis://example.com:6380/2?socket_timeout=2&decode_responses=true",
            Connection,
            {
                "host": "example.com",
                "port": 6380,
                "db": 2,
                "socket_timeout": 2.0,
                "decode_responses": True,
            },
            id="tcp",
        ),
        pytest.param(
            "rediss://app:pw@example.com:6380/1",
            SSLConnection,
            {"host": "example.com", "port": 6380, "db": 1, "username": "app"},
            id="tls",
        ),
        pytest.param(
            "unix:///run/redis.sock?db=3",
            UnixDomainSocketConnection,
            {"path": "/run/redis.sock", "db": 3},
            id="unix",
        ),
    ],
)
def test_url_reaches_the_client(
    build: Callable[[ClientSettings], Any],
    url: str,
    connection_class: type,
    expected: dict[str, Any],
) -> None:
    client = build(settings({"REDIS_URL": url}))
    pool = client.connection_pool
    assert pool.connection_class is connection_class
    for name, value in expected.items():
        assert pool.connection_kwargs[name] == value, name


# -- Discrete keys ---------------------------------------------------------------

KEYS = [
    pytest.param({"REDIS_HOST": "example.com"}, {"host": "example.com"}, id="host"),
    pytest.param({"REDIS_HOST": "::1"}, {"host": "::1"}, id="host-ipv6"),
    pytest.param(
        {"REDIS_HOST": "/run/redis.sock"},
        {"unix_socket_path": "/run/redis.sock"},
        id="host-socket-path",
    ),
    pytest.param(
        {"REDIS_HOST": "unix:///run/redis.sock"},
        {"unix_socket_path": "/run/redis.sock"},
        id="host-unix-url",
    ),
    pytest.param(
        {"REDIS_HOST": "file:///run/redis.sock"},
        {"unix_socket_path": "/run/redis.sock"},
        id="host-file-url",
    ),
    pytest.param({"REDIS_PORT": 6380}, {"port": 6380}, id="port"),
    pytest.param({"REDIS_DB": 3}, {"db": 3}, id="db"),
    pytest.param({"REDIS_USERNAME": "app"}, {"username": "app"}, id="username"),
    pytest.param({"REDIS_PASSWORD": PW}, {"password": PW}, id="password"),
    pytest.param(
        {"REDIS_SOCKET_TIMEOUT": 2.5}, {"socket_timeout": 2.5}, id="socket-timeout"
    ),
    pytest.param(
        {"REDIS_DECODE_RESPONSES": True},
        {"decode_responses": True},
        id="decode-responses",
    ),
    pytest.param(
        {"REDIS_MAX_CONNECTIONS": 20}, {"max_connections": 20}, id="max-connections"
    ),
    pytest.param(
        {"REDIS_CLIENT_NAME": "web"}, {"client_name": "web"}, id="client-name"
    ),
    pytest.param(
        {"REDIS_HEALTH_CHECK_INTERVAL": 30},
        {"health_check_interval": 30.0},
        id="health-check-interval",
    ),
    pytest.param({"REDIS_SSL": True}, {"ssl": True}, id="ssl"),
    pytest.param(
        {"REDIS_OPTIONS": {"socket_timeout": 5, "client_name": "worker"}},
        {"socket_timeout": 5.0, "client_name": "worker"},
        id="options",
    ),
]


@pytest.mark.parametrize(("config", "expected"), KEYS)
def test_discrete_key(config: dict[str, Any], expected: dict[str, Any]) -> None:
    result = settings(config)
    assert configured(result) == expected
    (source,) = config
    assert {
        name: source for name, source in result.sources.items() if source != "default"
    } == dict.fromkeys(expected, source)


def test_discrete_keys_reach_the_client(
    build: Callable[[ClientSettings], Any],
) -> None:
    client = build(
        settings(
            {
                "REDIS_HOST": "example.com",
                "REDIS_PORT": "6380",
                "REDIS_DB": "3",
                "REDIS_USERNAME": "app",
                "REDIS_PASSWORD": PW,
                "REDIS_SOCKET_TIMEOUT": "2.5",
                "REDIS_DECODE_RESPONSES": "true",
                "REDIS_MAX_CONNECTIONS": "20",
                "REDIS_CLIENT_NAME": "web",
            }
        )
    )
    pool = client.connection_pool
    assert pool.connection_class is Connection
    assert pool.max_connections == 20
    kwargs = pool.connection_kwargs
    assert kwargs["host"] == "example.com"
    assert kwargs["port"] == 6380
    assert kwargs["db"] == 3
    assert kwargs["username"] == "app"
    assert kwargs["password"] == PW
    assert kwargs["socket_timeout"] == 2.5
    assert kwargs["decode_responses"] is True
    assert kwargs["client_name"] == "web"


def test_options_pass_objects_through(build: Callable[[ClientSettings], Any]) -> None:
    retry = Retry(NoBackoff(), 0)
    client = build(settings({"REDIS_OPTIONS": {"retry": retry}}))
    assert retry_summary(client.connection_pool.connection_kwargs["retry"]) == (
        NoBackoff,
        0,
        retry._supported_errors,
    )


def test_ssl_keys(
    files: dict[str, str], build: Callable[[ClientSettings], Any]
) -> None:
    result = settings(
        {
            "REDIS_HOST": "example.com",
            "REDIS_SSL": "true",
            "REDIS_SSL_CA_CERTS": files["ca"],
            "REDIS_SSL_CERTFILE": Path(files["cert"]),
            "REDIS_SSL_KEYFILE": files["key"],
            "REDIS_SSL_CA_PATH": files["dir"],
            "REDIS_SSL_CERT_REQS": "optional",
            "REDIS_SSL_CHECK_HOSTNAME": "false",
        }
    )
    assert configured(result) == {
        "host": "example.com",
        "ssl": True,
        "ssl_ca_certs": files["ca"],
        "ssl_certfile": files["cert"],
        "ssl_keyfile": files["key"],
        "ssl_ca_path": files["dir"],
        "ssl_cert_reqs": "optional",
        "ssl_check_hostname": False,
    }
    assert result.sources["ssl_certfile"] == "REDIS_SSL_CERTFILE"
    assert result.url == "rediss://example.com:6379/0"
    client = build(result)
    pool = client.connection_pool
    assert pool.connection_class is SSLConnection
    assert pool.connection_kwargs["ssl_ca_certs"] == files["ca"]
    assert pool.connection_kwargs["ssl_certfile"] == files["cert"]
    assert pool.connection_kwargs["ssl_keyfile"] == files["key"]
    assert pool.connection_kwargs["ssl_cert_reqs"] == "optional"


@pytest.mark.parametrize(
    "config",
    [
        pytest.param({"REDIS_SSL": True}, id="ssl-key"),
        pytest.param({"REDIS_URL": "rediss://example.com"}, id="rediss-url"),
    ],
)
def test_tls_verifies_certificates_by_default(
    config: dict[str, Any], build: Callable[[ClientSettings], Any]
) -> None:
    client = build(settings(config))
    kwargs = client.connection_pool.connection_kwargs
    assert client.connection_pool.connection_class is SSLConnection
    assert kwargs["ssl_cert_reqs"] in ("required", ssl.CERT_REQUIRED)
    assert kwargs["ssl_check_hostname"] is True


def test_rediss_url_with_ssl_keys(
    files: dict[str, str], build: Callable[[ClientSettings], Any]
) -> None:
    result = settings(
        {
            "REDIS_URL": f"rediss://app:{PW}@example.com:6380/0",
            "REDIS_SSL_CA_CERTS": files["ca"],
            "REDIS_SSL_CERT_REQS": "none",
        }
    )
    assert result.kwargs["ssl"] is True
    assert result.sources["ssl"] == "REDIS_URL"
    assert result.kwargs["ssl_ca_certs"] == files["ca"]
    assert result.sources["ssl_ca_certs"] == "REDIS_SSL_CA_CERTS"
    client = build(result)
    assert client.connection_pool.connection_class is SSLConnection
    assert client.connection_pool.connection_kwargs["ssl_cert_reqs"] == "none"


# -- P_CLASS ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(redis.Redis, redis.Redis, id="class"),
        pytest.param("redis.Redis", redis.Redis, id="default-path"),
        pytest.param("redis.client.Redis", redis.Redis, id="dotted-path"),
        pytest.param("redis.client:Redis", redis.Redis, id="module-colon-attr"),
        pytest.param("redis:StrictRedis", redis.StrictRedis, id="alias"),
        pytest.param("fakeredis.FakeRedis", fakeredis.FakeRedis, id="fakeredis"),
        pytest.param(SubRedis, SubRedis, id="subclass"),
        pytest.param(f"{__name__}:SubRedis", SubRedis, id="subclass-path"),
        pytest.param(f"{__name__}.SubRedis", SubRedis, id="subclass-dotted-path"),
        pytest.param(
            "redis.asyncio.Redis", redis.asyncio.Redis, id="asyncio-dotted-path"
        ),
    ],
)
def test_client_class(value: object, expected: type) -> None:
    assert _resolve_client_class(value, "REDIS_CLASS") is expected
    result = settings({"REDIS_CLASS": value})
    assert result.client_class is expected


def test_fakeredis_by_path_builds_a_fake(
    build: Callable[[ClientSettings], Any],
) -> None:
    client = build(settings({"REDIS_CLASS": "fakeredis.FakeRedis", "REDIS_DB": "3"}))
    assert isinstance(client, fakeredis.FakeRedis)
    assert client.connection_pool.connection_kwargs["db"] == 3
    client.set("key", "value")
    assert client.get("key") == b"value"


def test_subclass_keywords_are_config_keys(
    build: Callable[[ClientSettings], Any],
) -> None:
    result = settings(
        {
            "REDIS_CLASS": f"{__name__}.SubRedis",
            "REDIS_EXTRA": "7",
            "REDIS_PORT": "6380",
        }
    )
    assert configured(result) == {"extra": 7, "port": 6380}
    client = build(result)
    assert isinstance(client, SubRedis)
    assert client.extra == 7
    assert client.connection_pool.connection_kwargs["port"] == 6380


def test_class_keywords_coerced_by_their_default_type() -> None:
    result = settings({"REDIS_CLASS": Closed, "REDIS_FLAG": "on", "REDIS_COUNT": "7"})
    assert configured(result) == {"flag": True, "count": 7}
    client = result.create_client()
    assert (client.flag, client.count) == (True, 7)
    with pytest.raises(ConfigurationError) as info:
        settings({"REDIS_CLASS": Closed, "REDIS_COUNT": "many"})
    check_error(info.value, "REDIS_COUNT", "'many'", "an integer")


def test_class_taking_anything_gets_any_option() -> None:
    result = settings({"REDIS_CLASS": TakesAnything, "REDIS_OPTIONS": {"whatever": 1}})
    assert result.create_client().kwargs == {"whatever": 1}


# -- _constructor_keywords --------------------------------------------------------


@pytest.mark.parametrize(
    ("client_class", "present"),
    [
        pytest.param(
            redis.Redis,
            {"host": "localhost", "port": 6379, "db": 0, "password": None},
            id="redis.Redis",
        ),
        pytest.param(
            redis.asyncio.Redis,
            {"host": "localhost", "port": 6379, "db": 0},
            id="redis.asyncio.Redis",
        ),
        pytest.param(
            SubRedis, {"extra": 1, "host": "localhost", "port": 6379}, id="subclass"
        ),
        pytest.param(
            fakeredis.FakeRedis,
            {"server": None, "host": "localhost", "db": 0},
            id="fakeredis",
        ),
    ],
)
def test_constructor_keywords(client_class: type, present: dict[str, Any]) -> None:
    keywords = _constructor_keywords(client_class)
    assert keywords is not None
    for name, default in present.items():
        assert keywords[name] == default, name
    for name in (
        "socket_timeout",
        "socket_connect_timeout",
        "decode_responses",
        "unix_socket_path",
        "ssl",
        "ssl_ca_certs",
        "username",
        "client_name",
        "max_connections",
        "health_check_interval",
        "retry",
    ):
        assert name in keywords, name
    for name in ("self", "args", "kwargs"):
        assert name not in keywords


def test_constructor_keywords_of_redis_follow_the_decorator() -> None:
    # The signature redis-py 6+ hides behind its __init__ decorator.
    expected = inspect.signature(redis.Redis.__init__).parameters
    keywords = _constructor_keywords(redis.Redis)
    assert keywords is not None
    assert set(keywords) == set(expected) - {"self"}
    assert keywords["socket_timeout"] == expected["socket_timeout"].default


@pytest.mark.parametrize(
    ("client_class", "expected"),
    [
        pytest.param(TakesAnything, None, id="kwargs-only-takes-anything"),
        pytest.param(NoInit, {}, id="no-init-takes-nothing"),
        pytest.param(
            Closed, {"host": "localhost", "flag": False, "count": 1}, id="closed"
        ),
    ],
)
def test_constructor_keywords_of_plain_classes(
    client_class: type, expected: dict[str, Any] | None
) -> None:
    assert _constructor_keywords(client_class) == expected


def test_class_without_init_takes_no_config_keys() -> None:
    assert dict(settings({"REDIS_CLASS": NoInit}).kwargs) == {}
    with pytest.raises(ConfigurationError) as info:
        settings({"REDIS_CLASS": NoInit, "REDIS_PORT": 6380})
    check_error(info.value, "REDIS_PORT", "'port'", "NoInit")


# -- Precedence ------------------------------------------------------------------

LAYERS = ("url", "keys", "options", "code")
PRECEDENCE = [
    # name, URL, key value, option value, code value, expected (one per layer)
    pytest.param(
        "host",
        "redis://url-host",
        "key-host",
        "option-host",
        "code-host",
        ("url-host", "key-host", "option-host", "code-host"),
        id="host",
    ),
    pytest.param(
        "port",
        "redis://h:7001",
        "7002",
        7003,
        7004,
        (7001, 7002, 7003, 7004),
        id="port",
    ),
    pytest.param("db", "redis://h/1", "2", 3, 4, (1, 2, 3, 4), id="db"),
    pytest.param(
        "username",
        "redis://url-user@h",
        "key-user",
        "option-user",
        "code-user",
        ("url-user", "key-user", "option-user", "code-user"),
        id="username",
    ),
    pytest.param(
        "password",
        "redis://:url-pw@h",
        "key-pw",
        "option-pw",
        "code-pw",
        ("url-pw", "key-pw", "option-pw", "code-pw"),
        id="password",
    ),
    pytest.param(
        "unix_socket_path",
        "unix:///url.sock",
        "/key.sock",
        "/option.sock",
        "/code.sock",
        ("/url.sock", "/key.sock", "/option.sock", "/code.sock"),
        id="socket-path",
    ),
    pytest.param(
        "socket_timeout",
        "redis://h?socket_timeout=1",
        "2",
        3,
        4,
        (1.0, 2.0, 3.0, 4.0),
        id="socket-timeout",
    ),
    pytest.param(
        "decode_responses",
        "redis://h?decode_responses=true",
        "false",
        True,
        False,
        (True, False, True, False),
        id="decode-responses",
    ),
    pytest.param(
        "client_name",
        "redis://h?client_name=url",
        "key",
        "option",
        "code",
        ("url", "key", "option", "code"),
        id="client-name",
    ),
    pytest.param(
        "max_connections",
        "redis://h?max_connections=1",
        "2",
        3,
        4,
        (1, 2, 3, 4),
        id="max-connections",
    ),
]


@pytest.mark.parametrize("top", range(len(LAYERS)), ids=[f"top-{x}" for x in LAYERS])
@pytest.mark.parametrize(
    ("name", "url", "key_value", "option_value", "code_value", "expected"),
    PRECEDENCE,
)
def test_precedence(
    top: int,
    name: str,
    url: str,
    key_value: object,
    option_value: object,
    code_value: object,
    expected: tuple[object, ...],
) -> None:
    key = "REDIS_HOST" if name == "unix_socket_path" else f"REDIS_{name.upper()}"
    config: dict[str, Any] = {}
    if top <= 0:
        config["REDIS_URL"] = url
    if top <= 1:
        config[key] = key_value
    if top <= 2:
        config["REDIS_OPTIONS"] = {name: option_value}
    result = settings(config, defaults={name: code_value})
    assert result.kwargs[name] == expected[top]
    assert result.sources[name] == ("REDIS_URL", key, "REDIS_OPTIONS", "code")[top]


def test_sources_of_a_mixed_config() -> None:
    result = settings(
        {
            "REDIS_URL": f"redis://app:{PW}@example.com/1?socket_timeout=2",
            "REDIS_PORT": "6380",
            "REDIS_DB": 5,
            "REDIS_OPTIONS": {"socket_timeout": 9, "health_check_interval": 10},
        },
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
        "host": "REDIS_URL",
        "port": "REDIS_PORT",
        "db": "REDIS_URL",
        "username": "REDIS_URL",
        "password": "REDIS_URL",
        "socket_timeout": "REDIS_URL",
        "health_check_interval": "REDIS_OPTIONS",
        "decode_responses": "code",
        "client_name": "code",
    }


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        pytest.param(
            {
                "REDIS_URL": "redis://example.com/2",
                "REDIS_PORT": 6380,
                "REDIS_PASSWORD": PW,
                "REDIS_SOCKET_TIMEOUT": "3",
            },
            {
                "host": "example.com",
                "db": 2,
                "port": 6380,
                "password": PW,
                "socket_timeout": 3.0,
            },
            id="port-password-timeout",
        ),
        pytest.param(
            {"REDIS_URL": "redis://example.com", "REDIS_DB": "4"},
            {"host": "example.com", "db": 4},
            id="db",
        ),
        pytest.param(
            {"REDIS_URL": "redis://app@example.com", "REDIS_PASSWORD": PW},
            {"host": "example.com", "username": "app", "password": PW},
            id="password-for-url-user",
        ),
        pytest.param(
            {"REDIS_URL": "unix:///run/redis.sock", "REDIS_DB": 2},
            {"unix_socket_path": "/run/redis.sock", "db": 2},
            id="db-for-unix-url",
        ),
        pytest.param(
            {"REDIS_URL": "redis:///3", "REDIS_HOST": "example.com"},
            {"host": "example.com", "db": 3},
            id="host-for-hostless-url",
        ),
    ],
)
def test_discrete_keys_fill_what_the_url_leaves_out(
    config: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert configured(settings(config)) == expected


# -- Transport: the highest layer that says how to connect decides ----------------


@pytest.mark.parametrize(
    ("config", "defaults", "expected", "connection_class"),
    [
        pytest.param(
            {
                "REDIS_URL": "unix:///run/redis.sock",
                "REDIS_HOST": "example.com",
                "REDIS_PORT": 6380,
            },
            {},
            {"unix_socket_path": "/run/redis.sock"},
            UnixDomainSocketConnection,
            id="unix-url-drops-host-and-port-keys",
        ),
        pytest.param(
            {
                "REDIS_URL": "unix:///run/redis.sock?db=1",
                "REDIS_OPTIONS": {"host": "option-host", "port": 7000},
            },
            {"host": "code-host", "port": 7001},
            {"unix_socket_path": "/run/redis.sock", "db": 1},
            UnixDomainSocketConnection,
            id="unix-url-drops-lower-host-and-port",
        ),
        pytest.param(
            {"REDIS_URL": "redis://example.com/0", "REDIS_HOST": "/run/redis.sock"},
            {},
            {"host": "example.com", "db": 0},
            Connection,
            id="tcp-url-drops-socket-host",
        ),
        pytest.param(
            {
                "REDIS_URL": "redis://example.com:6380",
                "REDIS_OPTIONS": {"unix_socket_path": "/option.sock"},
            },
            {"unix_socket_path": "/code.sock"},
            {"host": "example.com", "port": 6380},
            Connection,
            id="tcp-url-drops-lower-socket-paths",
        ),
        pytest.param(
            {"REDIS_HOST": "/run/redis.sock", "REDIS_OPTIONS": {"port": 7000}},
            {"host": "code-host"},
            {"unix_socket_path": "/run/redis.sock"},
            UnixDomainSocketConnection,
            id="socket-host-drops-lower-host-and-port",
        ),
        pytest.param(
            {"REDIS_HOST": "/run/redis.sock"},
            {"port": 7000},
            {"unix_socket_path": "/run/redis.sock"},
            UnixDomainSocketConnection,
            id="socket-host-drops-code-port",
        ),
        pytest.param(
            {"REDIS_PORT": 6380, "REDIS_OPTIONS": {"unix_socket_path": "/o.sock"}},
            {},
            {"port": 6380},
            Connection,
            id="port-key-drops-lower-socket-path",
        ),
        pytest.param(
            {"REDIS_OPTIONS": {"host": "option-host"}},
            {"unix_socket_path": "/code.sock"},
            {"host": "option-host"},
            Connection,
            id="options-host-drops-code-socket-path",
        ),
        pytest.param(
            {"REDIS_URL": "redis:///3", "REDIS_HOST": "/run/redis.sock"},
            {},
            {"unix_socket_path": "/run/redis.sock", "db": 3},
            UnixDomainSocketConnection,
            id="hostless-url-keeps-socket-host",
        ),
        pytest.param(
            {},
            {"unix_socket_path": "/code.sock"},
            {"unix_socket_path": "/code.sock"},
            UnixDomainSocketConnection,
            id="code-socket-path",
        ),
    ],
)
def test_highest_layer_transport_wins(
    config: dict[str, Any],
    defaults: dict[str, Any],
    expected: dict[str, Any],
    connection_class: type,
    build: Callable[[ClientSettings], Any],
) -> None:
    result = settings(config, defaults=defaults)
    assert configured(result) == expected
    assert build(result).connection_pool.connection_class is connection_class


# -- A custom prefix -------------------------------------------------------------


def test_custom_prefix_reads_only_its_own_keys() -> None:
    config = {
        "REDIS_URL": f"redis://:{PW}@redis-host:6380/1",
        "REDIS_HOST": "redis-host",
        "REDIS_PORT": "bad",
        "REDIS_CLASS": "no_such_module.Client",
        "REDIS_OPTIONS": "not a mapping",
        "REDIS_SOCKET_TIMEOUT": 1,
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


def test_custom_prefix_errors_name_its_keys(app: Flask) -> None:
    app.config.update({"REDIS_PORT": "bad", "CACHE_PORT": "also-bad"})
    with pytest.raises(ConfigurationError) as info:
        Redis(app, config_prefix="CACHE")
    check_error(info.value, "CACHE_PORT", "'also-bad'", "1 to 65535")


def test_two_prefixes_on_one_app(app: Flask) -> None:
    app.config.update(
        {
            "REDIS_URL": "redis://example.com:6380/1",
            "CACHE_URL": "redis://cache.example.com:6381/2",
            "CACHE_DECODE_RESPONSES": "yes",
        }
    )
    Redis(app)
    Redis(app, config_prefix="CACHE")
    main = app.extensions["redis"]["REDIS"].connection_pool.connection_kwargs
    cache = app.extensions["redis"]["CACHE"].connection_pool.connection_kwargs
    assert (main["host"], main["port"], main["db"]) == ("example.com", 6380, 1)
    assert main["decode_responses"] is False
    assert (cache["host"], cache["port"], cache["db"]) == ("cache.example.com", 6381, 2)
    assert cache["decode_responses"] is True


# -- Coercion of environment-style strings ---------------------------------------

BOOLEANS = [
    *[(text, True) for text in ("true", "yes", "on", "1", "TRUE", " Yes ", "On")],
    *[(text, False) for text in ("false", "no", "off", "0", "FALSE", " No ", "Off")],
    (True, True),
    (False, False),
    (1, True),
    (0, False),
]

COERCION = [
    ("REDIS_PORT", "6380", "port", 6380),
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
    ("REDIS_SOCKET_TIMEOUT", "2.5", "socket_timeout", 2.5),
    ("REDIS_SOCKET_TIMEOUT", "2", "socket_timeout", 2.0),
    ("REDIS_SOCKET_TIMEOUT", 3, "socket_timeout", 3.0),
    ("REDIS_SOCKET_TIMEOUT", 0.25, "socket_timeout", 0.25),
    ("REDIS_SOCKET_TIMEOUT", "none", "socket_timeout", None),
    ("REDIS_SOCKET_TIMEOUT", "None", "socket_timeout", None),
    ("REDIS_SOCKET_TIMEOUT", "null", "socket_timeout", None),
    ("REDIS_SOCKET_TIMEOUT", None, "socket_timeout", None),
    ("REDIS_SOCKET_CONNECT_TIMEOUT", "none", "socket_connect_timeout", None),
    ("REDIS_SOCKET_CONNECT_TIMEOUT", "0.5", "socket_connect_timeout", 0.5),
    ("REDIS_MAX_CONNECTIONS", "20", "max_connections", 20),
    ("REDIS_MAX_CONNECTIONS", "none", "max_connections", None),
    ("REDIS_HEALTH_CHECK_INTERVAL", "30", "health_check_interval", 30.0),
    ("REDIS_HEALTH_CHECK_INTERVAL", "0", "health_check_interval", 0.0),
    ("REDIS_PROTOCOL", "2", "protocol", 2),
    ("REDIS_PROTOCOL", 3, "protocol", 3),
    ("REDIS_CLIENT_NAME", "web", "client_name", "web"),
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


@pytest.mark.parametrize(
    ("key", "raw", "name", "expected"),
    [
        ("REDIS_PORT", "6380", "port", 6380),
        ("REDIS_DB", "2", "db", 2),
        ("REDIS_DECODE_RESPONSES", "yes", "decode_responses", True),
        ("REDIS_SOCKET_TIMEOUT", "none", "socket_timeout", None),
        ("REDIS_SOCKET_CONNECT_TIMEOUT", "1.5", "socket_connect_timeout", 1.5),
        ("REDIS_SOCKET_KEEPALIVE", "off", "socket_keepalive", False),
        ("REDIS_HEALTH_CHECK_INTERVAL", "30", "health_check_interval", 30),
        ("REDIS_PROTOCOL", "2", "protocol", 2),
    ],
)
def test_coerced_values_reach_the_client(
    key: str,
    raw: str,
    name: str,
    expected: object,
    build: Callable[[ClientSettings], Any],
) -> None:
    client = build(settings({key: raw}))
    assert client.connection_pool.connection_kwargs[name] == expected


# -- Settings from anywhere Flask reads config ------------------------------------


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], None]:
    """Set FLASK_* environment variables, with none left over from outside."""
    for name in list(os.environ):
        if name.startswith("FLASK_"):
            monkeypatch.delenv(name)

    def set_environ(variables: dict[str, str]) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)

    return set_environ


@pytest.mark.parametrize(
    ("variables", "expected", "sources"),
    [
        pytest.param(
            {"FLASK_REDIS_URL": f"redis://:{PW}@example.com:6380/2?socket_timeout=2"},
            {
                "host": "example.com",
                "port": 6380,
                "db": 2,
                "password": PW,
                "socket_timeout": 2.0,
            },
            dict.fromkeys(
                ("host", "port", "db", "password", "socket_timeout"), "REDIS_URL"
            ),
            id="url",
        ),
        pytest.param(
            {
                "FLASK_REDIS_HOST": "example.com",
                "FLASK_REDIS_PORT": "6380",
                "FLASK_REDIS_DB": "2",
                "FLASK_REDIS_DECODE_RESPONSES": "true",
                "FLASK_REDIS_SOCKET_TIMEOUT": "2.5",
            },
            {
                "host": "example.com",
                "port": 6380,
                "db": 2,
                "decode_responses": True,
                "socket_timeout": 2.5,
            },
            {
                "host": "REDIS_HOST",
                "port": "REDIS_PORT",
                "db": "REDIS_DB",
                "decode_responses": "REDIS_DECODE_RESPONSES",
                "socket_timeout": "REDIS_SOCKET_TIMEOUT",
            },
            id="json-values",
        ),
        pytest.param(
            {
                "FLASK_REDIS_PORT": '"6380"',
                "FLASK_REDIS_DECODE_RESPONSES": "yes",
                "FLASK_REDIS_SOCKET_TIMEOUT": "none",
                "FLASK_REDIS_SOCKET_CONNECT_TIMEOUT": "null",
            },
            {
                "port": 6380,
                "decode_responses": True,
                "socket_timeout": None,
                "socket_connect_timeout": None,
            },
            {
                "port": "REDIS_PORT",
                "decode_responses": "REDIS_DECODE_RESPONSES",
                "socket_timeout": "REDIS_SOCKET_TIMEOUT",
                "socket_connect_timeout": "REDIS_SOCKET_CONNECT_TIMEOUT",
            },
            id="text-values",
        ),
        pytest.param(
            {
                "FLASK_REDIS_OPTIONS__socket_timeout": "3",
                "FLASK_REDIS_OPTIONS__decode_responses": "on",
            },
            {"socket_timeout": 3.0, "decode_responses": True},
            {"socket_timeout": "REDIS_OPTIONS", "decode_responses": "REDIS_OPTIONS"},
            id="nested-options",
        ),
        pytest.param(
            {"FLASK_REDIS_URL": "redis://example.com/0", "FLASK_REDIS_PORT": "6380"},
            {"host": "example.com", "db": 0, "port": 6380},
            {"host": "REDIS_URL", "db": "REDIS_URL", "port": "REDIS_PORT"},
            id="url-filled-by-key",
        ),
        pytest.param(
            {"FLASK_REDIS_HOST": "/run/redis.sock", "FLASK_REDIS_DB": "1"},
            {"unix_socket_path": "/run/redis.sock", "db": 1},
            {"unix_socket_path": "REDIS_HOST", "db": "REDIS_DB"},
            id="socket-path",
        ),
    ],
)
def test_from_prefixed_env(
    app: Flask,
    environ: Callable[[dict[str, str]], None],
    variables: dict[str, str],
    expected: dict[str, Any],
    sources: dict[str, str],
) -> None:
    environ(variables)
    app.config.from_prefixed_env()
    extension = Redis(app)
    result = extension.settings_for(app)
    assert configured(result) == expected
    assert configured_sources(result) == sources
    kwargs = app.extensions["redis"]["REDIS"].connection_pool.connection_kwargs
    for name, value in expected.items():
        if name == "unix_socket_path":
            assert kwargs["path"] == value
        else:
            assert kwargs[name] == value, name


def test_from_prefixed_env_rejects_bad_values(
    app: Flask, environ: Callable[[dict[str, str]], None]
) -> None:
    environ({"FLASK_REDIS_PORT": "abc", "FLASK_REDIS_PASSWORD": PW})
    app.config.from_prefixed_env()
    with pytest.raises(ConfigurationError) as info:
        Redis(app)
    check_error(info.value, "REDIS_PORT", "'abc'", "1 to 65535")
    assert "redis" not in app.extensions


def test_from_prefixed_env_digit_only_password(
    app: Flask, environ: Callable[[dict[str, str]], None]
) -> None:
    environ({"FLASK_REDIS_PASSWORD": "12345678"})
    app.config.from_prefixed_env()
    Redis(app)
    client = app.extensions["redis"]["REDIS"]
    assert client.connection_pool.connection_kwargs["password"] == "12345678"


class SettingsClass:
    REDIS_URL = f"redis://app:{PW}@example.com:6380/2"
    REDIS_SOCKET_TIMEOUT = "4"
    REDIS_CLASS = "fakeredis.FakeRedis"
    redis_port = 1  # not upper case: Flask does not read it


def settings_module() -> types.ModuleType:
    module = types.ModuleType("redis_settings")
    module.REDIS_URL = SettingsClass.REDIS_URL  # type: ignore[attr-defined]
    module.REDIS_SOCKET_TIMEOUT = "4"  # type: ignore[attr-defined]
    module.REDIS_CLASS = "fakeredis.FakeRedis"  # type: ignore[attr-defined]
    module.redis_port = 1  # type: ignore[attr-defined]
    return module


@pytest.mark.parametrize(
    "load",
    [
        pytest.param(lambda config: config.from_object(SettingsClass), id="class"),
        pytest.param(lambda config: config.from_object(settings_module()), id="module"),
        pytest.param(
            lambda config: config.from_mapping(
                {
                    "REDIS_URL": SettingsClass.REDIS_URL,
                    "REDIS_SOCKET_TIMEOUT": "4",
                    "REDIS_CLASS": "fakeredis.FakeRedis",
                }
            ),
            id="mapping",
        ),
    ],
)
def test_from_object_and_mapping(app: Flask, load: Callable[[Any], None]) -> None:
    load(app.config)
    extension = Redis(app)
    result = extension.settings_for(app)
    assert result.client_class is fakeredis.FakeRedis
    assert configured(result) == {
        "host": "example.com",
        "port": 6380,
        "db": 2,
        "username": "app",
        "password": PW,
        "socket_timeout": 4.0,
    }
    client = app.extensions["redis"]["REDIS"]
    assert isinstance(client, fakeredis.FakeRedis)
    assert client.connection_pool.connection_kwargs["socket_timeout"] == 4.0


def test_from_pyfile(app: Flask, tmp_path: Path) -> None:
    path = tmp_path / "settings.cfg"
    path.write_text(
        "REDIS_HOST = '/run/redis.sock'\nREDIS_DB = 3\nREDIS_DECODE_RESPONSES = 'on'\n"
    )
    app.config.from_pyfile(str(path))
    Redis(app)
    pool = app.extensions["redis"]["REDIS"].connection_pool
    assert pool.connection_class is UnixDomainSocketConnection
    assert pool.connection_kwargs["path"] == "/run/redis.sock"
    assert pool.connection_kwargs["db"] == 3
    assert pool.connection_kwargs["decode_responses"] is True


# -- A URL and the equivalent keys give the same client ----------------------------

EQUIVALENT = [
    pytest.param(
        "redis://app:pw@example.com:6380/3?socket_timeout=2.5&decode_responses=true"
        "&health_check_interval=10",
        {
            "REDIS_HOST": "example.com",
            "REDIS_PORT": "6380",
            "REDIS_DB": "3",
            "REDIS_USERNAME": "app",
            "REDIS_PASSWORD": "pw",
            "REDIS_SOCKET_TIMEOUT": "2.5",
            "REDIS_DECODE_RESPONSES": "true",
            "REDIS_HEALTH_CHECK_INTERVAL": 10,
        },
        id="tcp-with-options",
    ),
    pytest.param(
        "redis://localhost:6379/0",
        {"REDIS_HOST": "localhost", "REDIS_PORT": 6379, "REDIS_DB": 0},
        id="default",
    ),
    pytest.param(
        "rediss://example.com:6380/0",
        {"REDIS_HOST": "example.com", "REDIS_PORT": 6380, "REDIS_SSL": True},
        id="tls",
    ),
    pytest.param(
        "unix:///run/redis.sock?db=2",
        {"REDIS_HOST": "/run/redis.sock", "REDIS_DB": 2},
        id="unix",
    ),
    pytest.param(
        "redis://[::1]:6380/1?max_connections=5",
        {
            "REDIS_HOST": "::1",
            "REDIS_PORT": 6380,
            "REDIS_DB": 1,
            "REDIS_MAX_CONNECTIONS": 5,
        },
        id="ipv6",
    ),
]


@pytest.mark.parametrize(("url", "keys"), EQUIVALENT)
def test_url_and_keys_give_the_same_client(
    url: str, keys: dict[str, Any], build: Callable[[ClientSettings], Any]
) -> None:
    from_url = build(settings({"REDIS_URL": url}))
    from_keys = build(settings(keys))
    assert type(from_url) is type(from_keys) is redis.Redis
    assert comparable(from_url) == comparable(from_keys)


@pytest.mark.parametrize(("url", "keys"), EQUIVALENT)
def test_url_keeps_the_constructor_retry_and_timeouts(
    url: str, keys: dict[str, Any], build: Callable[[ClientSettings], Any]
) -> None:
    ours = build(settings({"REDIS_URL": url})).connection_pool.connection_kwargs
    # The constructor's defaults, for the same transport.
    unix = url.startswith("unix:")
    plain = redis.Redis(unix_socket_path="/x.sock") if unix else redis.Redis()
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


# -- Bad values ------------------------------------------------------------------

BAD = [
    # config, key, shown (the bad value as the message shows it), accepted
    pytest.param(
        {"REDIS_URL": f"http://app:{PW}@example.com/0"},
        "REDIS_URL",
        "'http://app:***@example.com/0'",
        "redis://[[user]:password@]host[:port][/db]",
        id="url-unknown-scheme",
    ),
    pytest.param(
        {"REDIS_URL": "example.com:6379", "REDIS_PASSWORD": PW},
        "REDIS_URL",
        "'example.com:6379'",
        "redis://[[user]:password@]host[:port][/db]",
        id="url-without-scheme",
    ),
    pytest.param(
        {"REDIS_URL": f"redis://app:{PW}@[::1"},
        "REDIS_URL",
        "'redis://app:***@[::1'",
        "redis://[[user]:password@]host[:port][/db]",
        id="url-unparsable",
    ),
    pytest.param(
        {"REDIS_URL": f"redis://app:{PW}@example.com:six/0"},
        "REDIS_URL",
        "'redis://app:***@example.com:six/0'",
        "an integer port from 1 to 65535",
        id="url-port-not-integer",
    ),
    pytest.param(
        {"REDIS_URL": f"redis://app:{PW}@example.com:0/0"},
        "REDIS_URL",
        "'redis://app:***@example.com:0/0'",
        "an integer port from 1 to 65535",
        id="url-port-0",
    ),
    pytest.param(
        {"REDIS_URL": f"redis://app:{PW}@example.com:70000/0"},
        "REDIS_URL",
        "'redis://app:***@example.com:70000/0'",
        "65535",
        id="url-port-70000",
    ),
    pytest.param(
        {"REDIS_URL": f"redis://app:{PW}@example.com/abc"},
        "REDIS_URL",
        "'/abc'",
        "database number such as /0",
        id="url-db-not-numeric",
    ),
    pytest.param(
        {"REDIS_URL": f"redis://app:{PW}@example.com/-1"},
        "REDIS_URL",
        "'/-1'",
        "database number such as /0",
        id="url-db-negative",
    ),
    pytest.param(
        {"REDIS_URL": f"redis://app:{PW}@example.com/0?db=-1"},
        "REDIS_URL",
        "db='-1'",
        "an integer database number of 0 or more",
        id="url-db-option-negative",
    ),
    pytest.param(
        {"REDIS_URL": "unix://relative/path"},
        "REDIS_URL",
        "'unix://relative/path'",
        "'unix:///run/redis.sock'",
        id="unix-url-relative-path",
    ),
    pytest.param(
        {"REDIS_URL": f"unix://app:{PW}@relative/redis.sock"},
        "REDIS_URL",
        "'unix://app:***@relative/redis.sock'",
        "'unix:///run/redis.sock'",
        id="unix-url-relative-path-with-credentials",
    ),
    pytest.param(
        {"REDIS_URL": 6379, "REDIS_PASSWORD": PW},
        "REDIS_URL",
        "6379",
        "redis://[[user]:password@]host[:port][/db]",
        id="url-not-a-string",
    ),
    pytest.param(
        {"REDIS_URL": b"redis://example.com"},
        "REDIS_URL",
        "b'redis://example.com'",
        "redis://[[user]:password@]host[:port][/db]",
        id="url-bytes",
    ),
    pytest.param(
        {"REDIS_URL": "", "REDIS_PASSWORD": PW},
        "REDIS_URL",
        "''",
        "redis://[[user]:password@]host[:port][/db]",
        id="url-empty",
    ),
    pytest.param(
        {"REDIS_URL": f"redis://app:{PW}@example.com/0?socket_timout=5"},
        "REDIS_URL",
        "'socket_timout'",
        "did you mean 'socket_timeout'?",
        id="url-unknown-option",
    ),
    pytest.param(
        {"REDIS_URL": f"redis://app:{PW}@example.com/0?decode_responses=maybe"},
        "REDIS_URL",
        "decode_responses='maybe'",
        "true or false",
        id="url-bad-boolean",
    ),
    pytest.param(
        {"REDIS_URL": f"redis://app:{PW}@example.com/0?socket_timeout=-1"},
        "REDIS_URL",
        "socket_timeout='-1'",
        "greater than 0",
        id="url-negative-timeout",
    ),
    pytest.param(
        {"REDIS_URL": f"redis://app:{PW}@example.com/0?protocol=4"},
        "REDIS_URL",
        "protocol='4'",
        "2 or 3",
        id="url-bad-protocol",
    ),
    pytest.param(
        {"REDIS_PORT": "six", "REDIS_PASSWORD": PW},
        "REDIS_PORT",
        "'six'",
        "an integer port from 1 to 65535",
        id="port-not-integer",
    ),
    pytest.param(
        {"REDIS_PORT": "6380.5", "REDIS_PASSWORD": PW},
        "REDIS_PORT",
        "'6380.5'",
        "an integer port from 1 to 65535",
        id="port-fraction",
    ),
    pytest.param(
        {"REDIS_PORT": 0, "REDIS_PASSWORD": PW},
        "REDIS_PORT",
        "REDIS_PORT: 0 ",
        "an integer port from 1 to 65535",
        id="port-0",
    ),
    pytest.param(
        {"REDIS_PORT": 70000, "REDIS_PASSWORD": PW},
        "REDIS_PORT",
        "70000",
        "an integer port from 1 to 65535",
        id="port-70000",
    ),
    pytest.param(
        {"REDIS_PORT": "70000", "REDIS_PASSWORD": PW},
        "REDIS_PORT",
        "'70000'",
        "an integer port from 1 to 65535",
        id="port-70000-text",
    ),
    pytest.param(
        {"REDIS_PORT": True},
        "REDIS_PORT",
        "True",
        "an integer port from 1 to 65535",
        id="port-boolean",
    ),
    pytest.param(
        {"REDIS_DB": -1, "REDIS_PASSWORD": PW},
        "REDIS_DB",
        "-1",
        "an integer database number of 0 or more",
        id="db-negative",
    ),
    pytest.param(
        {"REDIS_DB": "-1"},
        "REDIS_DB",
        "'-1'",
        "an integer database number of 0 or more",
        id="db-negative-text",
    ),
    pytest.param(
        {"REDIS_DB": "first"},
        "REDIS_DB",
        "'first'",
        "an integer database number of 0 or more",
        id="db-not-integer",
    ),
    pytest.param(
        {"REDIS_HOST": "", "REDIS_PASSWORD": PW},
        "REDIS_HOST",
        "''",
        "a host name or address, or a unix socket path",
        id="host-empty",
    ),
    pytest.param(
        {"REDIS_HOST": "exa mple.com"},
        "REDIS_HOST",
        "'exa mple.com'",
        "a host name or address, or a unix socket path",
        id="host-with-space",
    ),
    pytest.param(
        {"REDIS_PASSWORD": [PW]},
        "REDIS_PASSWORD",
        "***",
        "a string",
        id="password-not-a-string",
    ),
    pytest.param(
        {"REDIS_CLASS": "no_such_module.Client", "REDIS_PASSWORD": PW},
        "REDIS_CLASS",
        "'no_such_module.Client'",
        "a client class or its dotted path",
        id="class-unimportable",
    ),
    pytest.param(
        {"REDIS_CLASS": "redis.NoSuchClient"},
        "REDIS_CLASS",
        "'redis.NoSuchClient'",
        "a client class or its dotted path",
        id="class-missing-attribute",
    ),
    pytest.param(
        {"REDIS_CLASS": "os.path.join"},
        "REDIS_CLASS",
        "join",
        "a client class or its dotted path",
        id="class-not-a-class",
    ),
    pytest.param(
        {"REDIS_CLASS": 42},
        "REDIS_CLASS",
        "42",
        "a client class or its dotted path",
        id="class-number",
    ),
    pytest.param(
        {"REDIS_OPTIONS": "socket_timeout=5", "REDIS_PASSWORD": PW},
        "REDIS_OPTIONS",
        "a str is not a mapping",
        "a dict of keyword arguments",
        id="options-not-a-mapping",
    ),
    pytest.param(
        {"REDIS_URL": f"redis://:{PW}@example.com/0?ssl=true"},
        "REDIS_URL",
        "'redis://:***@example.com/0?ssl=true'",
        "use rediss:// for TLS",
        id="url-ssl-option",
    ),
    pytest.param(
        {"REDIS_HOST": "/run/a.sock", "REDIS_UNIX_SOCKET_PATH": "/run/b.sock"},
        "REDIS_UNIX_SOCKET_PATH",
        "'/run/b.sock' and REDIS_HOST",
        "keep one of them",
        id="two-socket-paths",
    ),
    pytest.param(
        {"REDIS_OPTIONS": {"socket_timout": 5, "password": PW}},
        "REDIS_OPTIONS['socket_timout']",
        "'socket_timout'",
        "did you mean 'socket_timeout'?",
        id="options-unknown-keyword",
    ),
    pytest.param(
        {"REDIS_OPTIONS": {1: 5}},
        "REDIS_OPTIONS[1]",
        "REDIS_OPTIONS[1]",
        "expected the names of keyword arguments",
        id="options-non-string-key",
    ),
    pytest.param(
        {"REDIS_OPTIONS": {"socket_connect_timeout": -2}, "REDIS_PASSWORD": PW},
        "REDIS_OPTIONS['socket_connect_timeout']",
        "-2",
        "greater than 0",
        id="options-negative-timeout",
    ),
    pytest.param(
        {"REDIS_DECODE_RESPONSES": "maybe", "REDIS_PASSWORD": PW},
        "REDIS_DECODE_RESPONSES",
        "'maybe'",
        "true or false (also yes/no, on/off, 1/0)",
        id="bad-boolean",
    ),
    pytest.param(
        {"REDIS_DECODE_RESPONSES": 2},
        "REDIS_DECODE_RESPONSES",
        "2",
        "true or false (also yes/no, on/off, 1/0)",
        id="bad-boolean-number",
    ),
    pytest.param(
        {"REDIS_SOCKET_TIMEOUT": -1, "REDIS_PASSWORD": PW},
        "REDIS_SOCKET_TIMEOUT",
        "-1",
        "a number of seconds greater than 0, or None",
        id="negative-timeout",
    ),
    pytest.param(
        {"REDIS_SOCKET_TIMEOUT": "-1.5"},
        "REDIS_SOCKET_TIMEOUT",
        "'-1.5'",
        "a number of seconds greater than 0, or None",
        id="negative-timeout-text",
    ),
    pytest.param(
        {"REDIS_SOCKET_TIMEOUT": "soon"},
        "REDIS_SOCKET_TIMEOUT",
        "'soon'",
        "a number of seconds greater than 0, or None",
        id="timeout-not-a-number",
    ),
    pytest.param(
        {"REDIS_MAX_CONNECTIONS": 0},
        "REDIS_MAX_CONNECTIONS",
        "0",
        "an integer greater than 0",
        id="max-connections-0",
    ),
    pytest.param(
        {"REDIS_HEALTH_CHECK_INTERVAL": "-1"},
        "REDIS_HEALTH_CHECK_INTERVAL",
        "'-1'",
        "0 or more",
        id="health-check-negative",
    ),
    pytest.param(
        {"REDIS_ENCODING": "utf-99"},
        "REDIS_ENCODING",
        "'utf-99'",
        "a codec name",
        id="unknown-encoding",
    ),
    pytest.param(
        {"REDIS_PROTOCOL": 4, "REDIS_PASSWORD": PW},
        "REDIS_PROTOCOL",
        "4",
        "2 or 3",
        id="bad-protocol",
    ),
    pytest.param(
        {"REDIS_PROTOCOL": "resp3"},
        "REDIS_PROTOCOL",
        "'resp3'",
        "2 or 3",
        id="bad-protocol-text",
    ),
    pytest.param(
        {"REDIS_HOST": "/run/redis.sock", "REDIS_PORT": 6380, "REDIS_PASSWORD": PW},
        "REDIS_PORT",
        "6380",
        "either to a socket path or to a host and port",
        id="socket-path-and-port",
    ),
    pytest.param(
        {"REDIS_HOST": "unix:///run/redis.sock", "REDIS_PORT": "6380"},
        "REDIS_PORT",
        "'/run/redis.sock'",
        "either to a socket path or to a host and port",
        id="socket-url-and-port",
    ),
    pytest.param(
        {"REDIS_OPTIONS": {"unix_socket_path": "/run/redis.sock", "host": "h"}},
        "REDIS_OPTIONS['host']",
        "'h'",
        "either to a socket path or to a host and port",
        id="options-socket-path-and-host",
    ),
    pytest.param(
        {"REDIS_URL": f"redis://app:{PW}@example.com/0", "REDIS_SSL": True},
        "REDIS_SSL",
        "TLS is on",
        "use a rediss:// URL",
        id="ssl-with-redis-url",
    ),
    pytest.param(
        {"REDIS_URL": "redis://example.com/0", "REDIS_OPTIONS": {"ssl": True}},
        "REDIS_OPTIONS['ssl']",
        "TLS is on",
        "use a rediss:// URL",
        id="ssl-option-with-redis-url",
    ),
    pytest.param(
        {"REDIS_HOST": "/run/redis.sock", "REDIS_SSL": "true", "REDIS_PASSWORD": PW},
        "REDIS_SSL",
        "TLS is on",
        "connect to a host and port",
        id="ssl-with-socket-host",
    ),
    pytest.param(
        {"REDIS_URL": f"unix://:{PW}@/run/redis.sock", "REDIS_SSL": True},
        "REDIS_SSL",
        "TLS is on",
        "connect to a host and port",
        id="ssl-with-unix-url",
    ),
    pytest.param(
        {"REDIS_SSL": True, "REDIS_SSL_CA_CERTS": "{missing}", "REDIS_PASSWORD": PW},
        "REDIS_SSL_CA_CERTS",
        "missing.pem'",
        "the path of an existing file",
        id="ssl-ca-certs-missing",
    ),
    pytest.param(
        {"REDIS_SSL": True, "REDIS_SSL_CERTFILE": "{dir}"},
        "REDIS_SSL_CERTFILE",
        "'{dir}'",
        "the path of an existing file",
        id="ssl-certfile-is-a-directory",
    ),
    pytest.param(
        {"REDIS_SSL": True, "REDIS_SSL_CA_PATH": "{missing}"},
        "REDIS_SSL_CA_PATH",
        "missing.pem'",
        "an existing directory",
        id="ssl-ca-path-missing",
    ),
    pytest.param(
        {"REDIS_SSL_CA_CERTS": "{ca}", "REDIS_PASSWORD": PW},
        "REDIS_SSL_CA_CERTS",
        "TLS is off",
        "set REDIS_SSL = True or use a rediss:// URL",
        id="ssl-option-while-tls-off",
    ),
    pytest.param(
        {"REDIS_SSL": "false", "REDIS_SSL_CERT_REQS": "none"},
        "REDIS_SSL_CERT_REQS",
        "TLS is off",
        "set REDIS_SSL = True or use a rediss:// URL",
        id="ssl-option-while-tls-turned-off",
    ),
    pytest.param(
        {"REDIS_URL": f"redis://:{PW}@example.com/0?ssl_cert_reqs=none"},
        "REDIS_URL",
        "TLS is off",
        "set REDIS_SSL = True or use a rediss:// URL",
        id="ssl-url-option-while-tls-off",
    ),
    pytest.param(
        {"REDIS_SSL": True, "REDIS_SSL_CERT_REQS": "sometimes", "REDIS_PASSWORD": PW},
        "REDIS_SSL_CERT_REQS",
        "'sometimes'",
        "'required' (the default), 'optional' or 'none'",
        id="bad-ssl-cert-reqs",
    ),
    pytest.param(
        {"REDIS_SSL": "sure"},
        "REDIS_SSL",
        "'sure'",
        "true or false",
        id="bad-ssl",
    ),
]


@pytest.mark.parametrize(("config", "key", "shown", "accepted"), BAD)
def test_bad_config_fails_at_init_app(
    app: Flask,
    files: dict[str, str],
    config: dict[str, Any],
    key: str,
    shown: str,
    accepted: str,
) -> None:
    app.config.update(fill(config, files))
    extension = Redis()
    with pytest.raises(ConfigurationError) as info:
        extension.init_app(app)
    check_error(info.value, key, fill_text(shown, files), accepted)
    assert "redis" not in app.extensions


@pytest.mark.parametrize(("config", "key", "shown", "accepted"), BAD)
def test_bad_config_fails_in_client_settings_from_config(
    files: dict[str, str],
    config: dict[str, Any],
    key: str,
    shown: str,
    accepted: str,
) -> None:
    with pytest.raises(ConfigurationError) as info:
        settings(fill(config, files))
    check_error(info.value, key, fill_text(shown, files), accepted)


@pytest.mark.parametrize(
    ("defaults", "key", "shown", "accepted"),
    [
        pytest.param(
            {"socket_timout": 5, "password": PW},
            "keyword argument 'socket_timout'",
            "'socket_timout'",
            "did you mean 'socket_timeout'?",
            id="unknown-keyword",
        ),
        pytest.param(
            {"port": "six", "password": PW},
            "keyword argument 'port'",
            "'six'",
            "an integer port from 1 to 65535",
            id="bad-port",
        ),
        pytest.param(
            {"decode_responses": "maybe"},
            "keyword argument 'decode_responses'",
            "'maybe'",
            "true or false",
            id="bad-boolean",
        ),
    ],
)
@pytest.mark.parametrize("where", ["constructor", "init_app"])
def test_bad_code_keyword_arguments(
    app: Flask,
    where: str,
    defaults: dict[str, Any],
    key: str,
    shown: str,
    accepted: str,
) -> None:
    with pytest.raises(ConfigurationError) as info:
        if where == "constructor":
            Redis(app, **defaults)
        else:
            Redis().init_app(app, **defaults)
    check_error(info.value, key, shown, accepted)
    assert "redis" not in app.extensions


def test_non_class_error_shows_the_configured_path() -> None:
    with pytest.raises(ConfigurationError) as info:
        settings({"REDIS_CLASS": "os.path.join"})
    check_error(info.value, "REDIS_CLASS", "'os.path.join'", "a client class")
    assert " at 0x" not in str(info.value)


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(
            {"REDIS_URL": f"redis://app:{PW}\uff20x@example.com/0"},
            id="url-error-text-holds-netloc",
        ),
        pytest.param(
            {"REDIS_URL": f"redis://app:p@{PW}@example.com/abc"},
            id="unescaped-at-in-password",
        ),
        pytest.param(
            {"REDIS_URL": f"redis://app:p@{PW}/x@example.com/0"},
            id="unescaped-at-and-slash-in-password",
        ),
        pytest.param(
            {"REDIS_OPTIONS": [("password", PW)]},
            id="options-pairs-with-password",
        ),
        pytest.param(
            {"REDIS_OPTIONS": f"password={PW}&socket_timeout=5"},
            id="options-text-with-password",
        ),
        pytest.param(
            {"REDIS_URL": f"redis://app:{PW}@example.com/0?socket_timout=1"},
            id="unknown-url-option",
        ),
        pytest.param(
            {"REDIS_URL": f"rediss://app:{PW}@example.com:99999/0"},
            id="url-port-out-of-range",
        ),
        pytest.param(
            {"REDIS_URL": f"app:{PW}@example.com:6379/0"},
            id="url-without-scheme",
        ),
        pytest.param({"REDIS_PASSWORD": [PW], "REDIS_PORT": 1}, id="password-list"),
        pytest.param(
            {"REDIS_OPTIONS": {"password": PW, "ssl_password": 5}},
            id="options-ssl-password",
        ),
    ],
)
def test_error_never_shows_the_password(config: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as info:
        settings(config)
    for text in (str(info.value), repr(info.value)):
        assert PW not in text
        assert "12345" not in text


@pytest.mark.parametrize(
    "config",
    [
        pytest.param({"REDIS_PASSWORD": None}, id="password"),
        pytest.param({"REDIS_USERNAME": None}, id="username"),
        pytest.param(
            {"REDIS_URL": f"redis://:{PW}@example.com/0", "REDIS_PASSWORD": None},
            id="password-under-url",
        ),
    ],
)
def test_none_credentials_mean_none(config: dict[str, Any]) -> None:
    result = settings(config)
    assert result.kwargs.get("username") is None
    expected = PW if "REDIS_URL" in config else None
    assert result.kwargs.get("password") == expected


@pytest.mark.parametrize(
    "prefix", ["redis_", "REDIS_", "", "1X", "RE DIS", "RE-DIS", 3]
)
def test_bad_config_prefix(app: Flask, prefix: Any) -> None:
    for attempt in (
        lambda: Redis(config_prefix=prefix),
        lambda: Redis(app, config_prefix=prefix),
        lambda: Redis().init_app(app, config_prefix=prefix),
    ):
        with pytest.raises(ConfigurationError) as info:
            attempt()
        check_error(info.value, "config_prefix", repr(prefix), "starting with a letter")
    assert "redis" not in app.extensions


@pytest.mark.parametrize("prefix", ["REDIS", "CACHE", "redis", "CACHE_REDIS", "R2"])
def test_good_config_prefix(app: Flask, prefix: str) -> None:
    app.config[f"{prefix}_DB"] = "5"
    Redis(app, config_prefix=prefix)
    client = app.extensions["redis"][prefix]
    assert client.connection_pool.connection_kwargs["db"] == 5


# -- ClientSettings: url, masked_kwargs, repr -------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "url"),
    [
        ({}, "redis://localhost:6379/0"),
        ({"host": "example.com", "port": 6380, "db": 2}, "redis://example.com:6380/2"),
        ({"username": "app", "password": PW}, "redis://app:***@localhost:6379/0"),
        ({"password": PW}, "redis://:***@localhost:6379/0"),
        ({"username": "app"}, "redis://app@localhost:6379/0"),
        (
            {"username": "al@ice", "password": PW},
            "redis://al%40ice:***@localhost:6379/0",
        ),
        ({"ssl": True, "host": "example.com"}, "rediss://example.com:6379/0"),
        ({"host": "::1", "port": 6380}, "redis://[::1]:6380/0"),
        (
            {"unix_socket_path": "/run/redis.sock", "db": 3, "password": PW},
            "unix://:***@/run/redis.sock?db=3",
        ),
        ({"unix_socket_path": "/run/redis.sock"}, "unix:///run/redis.sock?db=0"),
    ],
)
def test_settings_url(kwargs: dict[str, Any], url: str) -> None:
    client_settings = ClientSettings("REDIS", redis.Redis, kwargs)
    assert client_settings.url == url
    assert PW not in repr(client_settings)
    assert f"url={url!r}" in repr(client_settings)


def test_settings_url_from_config() -> None:
    result = settings({"REDIS_URL": f"rediss://app:{PW}@example.com/4"})
    assert result.url == "rediss://app:***@example.com:6379/4"


def test_masked_kwargs() -> None:
    result = settings(
        {
            "REDIS_URL": f"rediss://app:{PW}@example.com/0",
            "REDIS_SSL_PASSWORD": f"key-{PW}",
            "REDIS_CLIENT_NAME": "web",
        }
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
        # The default retry policy (redis-py 6 and later have one).
        **{name: result.kwargs[name] for name in ("retry",) if name in result.kwargs},
    }
    # The client still gets the real secrets.
    assert result.kwargs["password"] == PW
    assert result.kwargs["ssl_password"] == f"key-{PW}"


def test_masked_kwargs_keep_no_password_as_none() -> None:
    client_settings = ClientSettings("REDIS", redis.Redis, {"password": None})
    assert client_settings.masked_kwargs() == {"password": None}


def test_settings_repr() -> None:
    result = settings({"CACHE_URL": f"redis://app:{PW}@example.com:6380/1"}, "CACHE")
    assert repr(result) == (
        "ClientSettings(prefix='CACHE', client_class=redis.Redis,"
        " url='redis://app:***@example.com:6380/1')"
    )
    subclass = settings({"REDIS_CLASS": SubRedis, "REDIS_PASSWORD": PW})
    assert f"client_class={__name__}.SubRedis" in repr(subclass)
    assert PW not in repr(subclass)


def test_extension_repr_masks_the_password(app: Flask) -> None:
    app.config["REDIS_URL"] = f"redis://app:{PW}@example.com:6380/1"
    extension = Redis(app)
    assert repr(extension) == (
        "<flask_and_redis.Redis REDIS redis://app:***@example.com:6380/1>"
    )


# -- init_app: no network I/O, nothing registered on failure ----------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:{port}/0",
        "redis://:" + PW + "@127.0.0.1:{port}/0?socket_connect_timeout=30",
        "rediss://127.0.0.1:{port}/0",
        "unix://{tmp}/nothing-listens.sock",
        "redis://nothing-resolves.invalid:{port}/0",
    ],
)
def test_init_app_makes_no_connection(
    app: Flask, tmp_path: Path, no_network: list[str], url: str
) -> None:
    # A closed port: nothing is started on it. no_network fails the test if
    # init_app connects or resolves a name.
    app.config["REDIS_URL"] = url.format(port=free_port(), tmp=tmp_path)
    extension = Redis()
    extension.init_app(app)
    client = app.extensions["redis"]["REDIS"]
    assert extension.settings_for(app).kwargs
    pool = client.connection_pool
    assert pool._created_connections == 0
    assert not pool._in_use_connections


def test_failed_init_app_leaves_the_app_untouched(app: Flask) -> None:
    app.config["REDIS_DB"] = "0"
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
    assert (
        app.extensions["redis"]["CACHE"].connection_pool.connection_kwargs["port"]
        == 6380
    )


def test_init_app_log_has_no_password(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    app.config["REDIS_URL"] = f"rediss://app:{PW}@example.com/0"
    app.config["REDIS_SSL_PASSWORD"] = PW
    with caplog.at_level(logging.DEBUG, logger="flask_and_redis"):
        Redis(app)
    assert "example.com" in caplog.text
    assert PW not in caplog.text


def test_code_kwargs_are_defaults_under_config(app: Flask) -> None:
    app.config["REDIS_SOCKET_TIMEOUT"] = "7"
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


# -- Near misses, code defaults and plain socket paths --------------------------


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("REDIS_SOCKET_TIMOUT", "REDIS_SOCKET_TIMEOUT"),
        ("REDIS_PASWORD", "REDIS_PASSWORD"),
        ("REDIS_URI", "REDIS_URL"),
        ("REDIS_OPTIONSS", "REDIS_OPTIONS"),
    ],
)
def test_a_misspelt_key_is_reported(typo: str, meant: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        settings({typo: "1"})
    assert info.value.key == typo
    assert f"did you mean {meant}?" in str(info.value)


def test_unrelated_keys_under_the_prefix_are_left_alone() -> None:
    result = settings({"REDIS_QUEUE_NAME": "jobs", "REDIS_CACHE_URL": "x"})
    assert configured(result) == {}


def test_tls_given_in_code_gives_way_to_a_plain_url() -> None:
    result = client_settings_from_config(
        {"REDIS_URL": "redis://example.com/0"}, defaults={"ssl": True}
    )
    assert "ssl" not in result.kwargs


def test_tls_given_in_code_gives_way_to_a_socket() -> None:
    result = client_settings_from_config(
        {"REDIS_HOST": "/run/redis.sock"}, defaults={"ssl": True}
    )
    assert "ssl" not in result.kwargs
    assert result.kwargs["unix_socket_path"] == "/run/redis.sock"


def test_tls_options_set_to_none_do_not_count_as_set() -> None:
    result = settings({"REDIS_SSL_CA_CERTS": None, "REDIS_SSL_CERTFILE": None})
    assert result.kwargs["ssl_ca_certs"] is None
    assert not result.kwargs.get("ssl")


@pytest.mark.parametrize(
    "host", ["unix:///run/redis.sock?db=2", "unix://user:pw@/run/redis.sock"]
)
def test_a_socket_url_in_host_must_be_a_plain_path(host: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        settings({"REDIS_HOST": host})
    assert info.value.key == "REDIS_HOST"
    assert "goes in the _URL key" in str(info.value)
    assert "pw" not in str(info.value)


def test_tls_checks_the_host_name_unless_told_not_to() -> None:
    on = settings({"REDIS_SSL": True})
    assert on.kwargs["ssl_check_hostname"] is True
    assert on.sources["ssl_check_hostname"] == "default"
    off = settings({"REDIS_SSL": True, "REDIS_SSL_CHECK_HOSTNAME": "false"})
    assert off.kwargs["ssl_check_hostname"] is False
    assert off.sources["ssl_check_hostname"] == "REDIS_SSL_CHECK_HOSTNAME"
    assert "ssl_check_hostname" not in settings({}).kwargs


@pytest.mark.parametrize(
    "key",
    [
        "REDIS_2_URL",
        "REDIS_RO_HOST",
        "REDIS_B_DB",
        "REDIS_CACHE_DB",
        "REDIS_SESSION_PASSWORD",
        "REDIS_LOCK_PASSWORD",
    ],
)
def test_keys_of_a_longer_prefix_are_not_misspellings(key: str) -> None:
    # REDIS_2_URL is the URL of the prefix REDIS_2, not a typo of REDIS_URL.
    assert configured(settings({key: "1"})) == {}


def test_an_unimportable_class_path_does_not_show_its_password() -> None:
    for key in ("REDIS_CLASS", "REDIS_CONNECTION_POOL_CLASS"):
        with pytest.raises(ConfigurationError) as info:
            settings({key: f"redis://user:{PW}@example.com:6379/0"})
        assert info.value.key == key
        assert "cannot be imported" in str(info.value)
        assert PW not in str(info.value)


@pytest.mark.parametrize(
    "host",
    [f"user:{PW}@example.com", "example.com/0", "redis://example.com", "host:6379"],
)
def test_a_host_is_a_name_or_an_address(host: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        settings({"REDIS_HOST": host})
    assert info.value.key == "REDIS_HOST"
    assert "go in the _URL key" in str(info.value)
    assert PW not in str(info.value)


@pytest.mark.parametrize("host", ["::1", "fe80::1", "127.0.0.1", "redis.internal"])
def test_names_and_addresses_are_hosts(host: str) -> None:
    assert settings({"REDIS_HOST": host}).kwargs["host"] == host
