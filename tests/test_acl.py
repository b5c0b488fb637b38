"""ACL users, and refused passwords: reported at the first attempt, without
the password, whether the config is a URL or keys."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from urllib.parse import quote

import pytest
import redis as redis_py
from flask import Flask
from redis.backoff import NoBackoff
from redis.exceptions import NoPermissionError
from redis.retry import Retry

from flask_and_redis import Redis

from servers import ACL_USERS, RedisServer

MakeApp = Callable[..., Flask]

WRONG_PASSWORD = "not-the-pa55word"


def acl_config(server: RedisServer, form: str, username: str, password: str) -> dict:
    if form == "url":
        userinfo = f"{quote(username, safe='')}:{quote(password, safe='')}"
        return {"REDIS_URL": f"redis://{userinfo}@127.0.0.1:{server.port}/0"}
    return {
        "REDIS_PORT": server.port,
        "REDIS_USERNAME": username,
        "REDIS_PASSWORD": password,
    }


def refused_logins(admin: redis_py.Redis) -> int:
    """How many logins the server refused since its ACL log was reset."""
    return sum(entry["count"] for entry in admin.acl_log() if entry["reason"] == "auth")


@pytest.mark.parametrize("form", ["url", "keys"])
def test_an_acl_user_is_allowed_its_keys_and_refused_others(
    make_app: MakeApp, redis_auth_server: RedisServer, form: str
) -> None:
    app = make_app(**acl_config(redis_auth_server, form, "app", ACL_USERS["app"]))
    redis = Redis(app)

    assert redis.acl_whoami() == "app"
    redis.set("app:greeting", form)
    assert redis.get("app:greeting") == form.encode()
    with pytest.raises(NoPermissionError):
        redis.set("other:greeting", form)
    with pytest.raises(NoPermissionError):
        redis.get("other:greeting")


@pytest.mark.parametrize("form", ["url", "keys"])
@pytest.mark.parametrize("username", ["app", "default"])
def test_a_wrong_password_is_refused_at_the_first_attempt_and_not_shown(
    make_app: MakeApp, redis_auth_server: RedisServer, form: str, username: str
) -> None:
    redis = Redis(
        make_app(**acl_config(redis_auth_server, form, username, WRONG_PASSWORD))
    )

    with redis_auth_server.client() as admin:
        admin.acl_log_reset()
        with pytest.raises(redis_py.AuthenticationError) as refused:
            redis.ping()
        attempts = refused_logins(admin)

    assert attempts == 1  # redis-py's default would try 11 times, for seconds
    error = refused.value
    for text in (str(error), repr(error), str(error.__context__)):
        assert WRONG_PASSWORD not in text
    assert WRONG_PASSWORD not in repr(redis)


def test_a_retry_policy_in_the_config_is_used_as_it_is(
    make_app: MakeApp, redis_auth_server: RedisServer
) -> None:
    retry = Retry(NoBackoff(), 2)
    app = make_app(
        REDIS_PORT=redis_auth_server.port,
        REDIS_PASSWORD=WRONG_PASSWORD,
        REDIS_OPTIONS={"retry": retry},
    )
    redis = Redis(app)
    settings = redis.settings_for(app)
    assert settings.kwargs["retry"] is retry
    assert settings.sources["retry"] == "REDIS_OPTIONS"
    plain = redis_py.Redis(
        port=redis_auth_server.port, password=WRONG_PASSWORD, retry=retry
    )

    # As many attempts as redis-py's own client makes with that policy.
    attempts = []
    with redis_auth_server.client() as admin:
        for client in (redis, plain):
            admin.acl_log_reset()
            with pytest.raises(redis_py.AuthenticationError):
                client.ping()
            attempts.append(refused_logins(admin))
    plain.close()
    assert attempts[0] == attempts[1]


def test_other_connection_errors_are_retried_as_by_redis_py(
    make_app: MakeApp, server_factory: Callable[..., RedisServer]
) -> None:
    server = server_factory()
    app = make_app(REDIS_URL=server.url())
    redis = Redis(app)
    default = inspect.signature(redis_py.Redis).parameters["retry"].default
    if default is not None:  # redis-py 6 and later: a policy to copy
        assert redis.settings_for(app).sources["retry"] == "default"
    plain = redis_py.Redis(host=server.host, port=server.port)  # its defaults
    for client in (redis, plain):
        client.set("before", "restart")

    server.restart()  # drops the pooled connections

    outcomes = []
    for client in (redis, plain):
        try:
            client.set("after", "restart")
            outcomes.append("written")
        except redis_py.ConnectionError:
            outcomes.append("refused")
    plain.close()
    assert outcomes[0] == outcomes[1]
