"""Passwords never show: not in a repr, a str, an exception, a log record, or
the output of the CLI.

Each test places a password in each way the config accepts (PLACEMENTS), runs
a path that ends in a client working, failing to log in, failing to connect,
or a config error, and looks for the password in everything shown on the way.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import click
import pytest
import redis as redis_py
from flask import Flask
from redis.backoff import NoBackoff
from redis.retry import Retry

from flask_and_redis import ConfigurationError, Redis, mask_url

from servers import ACL_USERS, RedisServer, free_port

MakeApp = Callable[..., Flask]
Config = tuple[dict[str, Any], dict[str, Any]]  # app config, keywords in code

USERNAME = "app"
PASSWORD = ACL_USERS[USERNAME]
WRONG_PASSWORD = "wr0ng/QXZJ@pa55"  # with characters that URLs escape


def _url(port: int, user: str, password: str) -> str:
    return f"redis://{user}:{quote(password, safe='')}@127.0.0.1:{port}/0"


# Where a password can be: each entry makes (config, keywords in code) for a
# server port, a user name and a password. The Sentinel settings (a password
# in a redis+sentinel:// URL, P_SENTINEL_KWARGS) add their entries here.
PLACEMENTS: dict[str, Callable[[int, str, str], Config]] = {
    "url": lambda port, user, password: (
        {"REDIS_URL": _url(port, user, password)},
        {},
    ),
    "url-query": lambda port, user, password: (
        {
            "REDIS_URL": f"redis://127.0.0.1:{port}/0?username={user}"
            f"&password={quote(password, safe='')}"
        },
        {},
    ),
    "keys": lambda port, user, password: (
        {"REDIS_PORT": port, "REDIS_USERNAME": user, "REDIS_PASSWORD": password},
        {},
    ),
    "options": lambda port, user, password: (
        {
            "REDIS_PORT": port,
            "REDIS_OPTIONS": {"username": user, "password": password},
        },
        {},
    ),
    "code": lambda port, user, password: (
        {"REDIS_PORT": port},
        {"username": user, "password": password},
    ),
    "url-over-keys": lambda port, user, password: (
        {
            "REDIS_URL": _url(port, user, password),
            "REDIS_PASSWORD": f"other-{password}",
        },
        {},
    ),
}
placements = pytest.mark.parametrize("placement", PLACEMENTS)

NO_RETRY = {"retry": Retry(NoBackoff(), 0)}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self) -> list[str]:
        formatter = logging.Formatter()
        return [formatter.format(record) for record in self.records]


@pytest.fixture
def all_logs() -> Iterator[_Records]:
    """Every log record of every logger, at DEBUG (redis-py's included)."""
    records = _Records()
    root = logging.getLogger()
    loggers = [root] + [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    levels = [(logger, logger.level, logger.disabled) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
    root.addHandler(records)
    try:
        yield records
    finally:
        root.removeHandler(records)
        for logger, level, disabled in levels:
            logger.setLevel(level)
            logger.disabled = disabled


def cli_outputs(app: Flask) -> list[str]:
    """The output of every ``flask redis`` command of the app, each run
    without arguments: a new command is looked at without a change here."""
    group = app.cli.commands.get("redis")
    if not isinstance(group, click.Group):
        return []
    runner = app.test_cli_runner()
    outputs = []
    for name in group.commands:
        result = runner.invoke(args=["redis", name])
        outputs.append(result.output)
        if not isinstance(result.exception, (SystemExit, type(None))):
            outputs.append("".join(traceback.format_exception(result.exception)))
    return outputs


def shown_by(app: Flask, redis: Redis) -> list[str]:
    """Everything the extension and its client show about themselves."""
    client = app.extensions["redis"]["REDIS"]
    settings = redis.settings_for(app)
    shown = [repr(redis), str(redis), repr(client), str(client)]
    shown += [repr(settings), str(settings), settings.url]
    shown += [repr(settings.masked_kwargs())]
    with app.app_context():
        shown += [repr(redis), str(redis)]
    cli = cli_outputs(app)
    assert cli, "the flask redis commands showed nothing"
    return shown + cli


def exception_texts(error: BaseException) -> list[str]:
    return [str(error), repr(error), "".join(traceback.format_exception(error))]


def assert_not_shown(password: str, texts: list[str]) -> None:
    leaks = [text for text in texts if password in text or quote(password) in text]
    assert leaks == []
    assert texts  # something was looked at


@placements
def test_not_shown_by_a_working_client(
    make_app: MakeApp,
    redis_auth_server: RedisServer,
    all_logs: _Records,
    placement: str,
) -> None:
    config, code = PLACEMENTS[placement](redis_auth_server.port, USERNAME, PASSWORD)
    app = make_app(**config)
    redis = Redis(app, **code)

    redis.set("app:secret-test", "value")
    assert redis.acl_whoami() == USERNAME

    assert_not_shown(PASSWORD, shown_by(app, redis) + all_logs.texts())
    # The records looked at include the extension's own, which shows the URL.
    assert any(record.name == "flask_and_redis" for record in all_logs.records)


@placements
def test_not_shown_when_the_password_is_wrong(
    make_app: MakeApp,
    redis_auth_server: RedisServer,
    all_logs: _Records,
    placement: str,
) -> None:
    config, code = PLACEMENTS[placement](
        redis_auth_server.port, USERNAME, WRONG_PASSWORD
    )
    app = make_app(**config)
    redis = Redis(app, **code, **NO_RETRY)

    with pytest.raises(redis_py.AuthenticationError) as caught:
        redis.ping()

    texts = exception_texts(caught.value) + shown_by(app, redis) + all_logs.texts()
    assert_not_shown(WRONG_PASSWORD, texts)


@placements
def test_not_shown_when_the_server_is_down(
    make_app: MakeApp, all_logs: _Records, placement: str
) -> None:
    config, code = PLACEMENTS[placement](free_port(), USERNAME, PASSWORD)
    app = make_app(**config)
    redis = Redis(app, **code, **NO_RETRY)

    with pytest.raises(redis_py.ConnectionError) as caught:
        redis.ping()

    texts = exception_texts(caught.value) + shown_by(app, redis) + all_logs.texts()
    assert_not_shown(PASSWORD, texts)


@placements
@pytest.mark.parametrize(
    "bad",
    [{"REDIS_DB": -1}, {"REDIS_SOCKET_TIMEOUT": "soon"}, {"REDIS_CLASS": "no.such"}],
)
def test_not_shown_by_a_config_error(
    make_app: MakeApp,
    all_logs: _Records,
    placement: str,
    bad: dict[str, Any],
) -> None:
    config, code = PLACEMENTS[placement](6390, USERNAME, PASSWORD)
    app = make_app(**config, **bad)

    with pytest.raises(ConfigurationError) as caught:
        Redis(app, **code)

    assert_not_shown(PASSWORD, exception_texts(caught.value) + all_logs.texts())


def test_a_password_as_the_user_name_of_a_url_is_not_shown(
    make_app: MakeApp, redis_auth_server: RedisServer, all_logs: _Records
) -> None:
    # redis-py reads redis://secret@host as the user name "secret", but it is
    # often meant as the password; with no password, it is shown masked.
    url = f"redis://{PASSWORD}@127.0.0.1:{redis_auth_server.port}/0"
    app = make_app(REDIS_URL=url)
    redis = Redis(app, **NO_RETRY)

    with pytest.raises(redis_py.AuthenticationError) as caught:
        redis.ping()

    texts = exception_texts(caught.value) + shown_by(app, redis) + all_logs.texts()
    assert_not_shown(PASSWORD, texts)
    assert redis.settings_for(app).url.startswith("redis://***@127.0.0.1:")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:pw@host/0", "redis://user:***@host/0"),
        ("redis://pw@host/0", "redis://***@host/0"),
        ("REDIS://user:pw@host/0", "REDIS://user:***@host/0"),
        ("://:pw@host", "://:***@host"),
        ("redis://:p@ss/w:rd@host/0", "redis://:***@host/0"),
        ("redis://:a@b@:x", "redis://:***@:x"),
        ("unix://:pw@/run/redis.sock?db=1", "unix://:***@/run/redis.sock?db=1"),
        ("redis://host/0?password=pw&db=1", "redis://host/0?password=***&db=1"),
        ("redis://host/0?Password=pw#frag", "redis://host/0?Password=***"),
        ("redis://host/0?ssl_password=pw", "redis://host/0?ssl_password=***"),
        # A query password with an "@" reads as userinfo too: both are masked.
        ("redis://?password=pw@host", "redis://***"),
        ("redis://:pw?password=pw@host", "redis://:***"),
        # So does one with an unescaped "&", up to the next option.
        ("redis://host/0?password=p&w&db=1", "redis://host/0?password=***&db=1"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("redis://app:@host/0", "redis://app:***@host/0"),
        ("redis://app:p:w@host/0", "redis://app:***@host/0"),
        ("redis://app:p?w@host/0", "redis://app:***@host/0"),
        ("rediss://app:p%40ss%2Fw@host/0", "rediss://app:***@host/0"),
        ("redis://host/0?db=1&password=pw", "redis://host/0?db=1&password=***"),
        # Everything before the last "@" is masked, so an "@" in a query value
        # hides the host too: a password's unescaped "?" must not end the mask.
        ("redis://app:pw@host/0?x=a@b", "redis://app:***@b"),
        ("redis://[::1]:6379/0", "redis://[::1]:6379/0"),
        ("unix:///run/redis.sock?db=1", "unix:///run/redis.sock?db=1"),
        ("redis+sentinel://:pw@h1,h2:26380/m", "redis+sentinel://:***@h1,h2:26380/m"),
        ("redis+cluster://app:pw@h1:7000,h2", "redis+cluster://app:***@h1:7000,h2"),
        ("host:6379", "host:6379"),
        ("", ""),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown
