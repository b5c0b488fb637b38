"""Dispatch cost, no network: what a call through an extension adds.

The client's ``get`` does no I/O, so all that is timed is finding the method:
on the client directly, through Flask-And-Redis (one app, outside and inside
an app context; one instance on two apps), through flask-redis's
``__getattr__`` proxy, and through
``current_app.extensions[…]``.
"""

from __future__ import annotations

import typing as t
from contextlib import nullcontext
from dataclasses import dataclass

import redis
from flask import Flask, current_app
from flask_redis import FlaskRedis

from flask_and_redis import Redis

from .timing import Rounds, Spread, call_timer, interleave, per_round

KEY = "key"

#: (name, label), in the order of the report.
VARIANTS = [
    ("direct", "redis-py client, direct: ``client.get(key)``"),
    ("extension_outside", "Flask-And-Redis, one app, outside an app context"),
    ("extension", "Flask-And-Redis, one app, in its app context"),
    ("extension_two_apps", "Flask-And-Redis, one instance on two apps, in a context"),
    ("flask_redis", "flask-redis 0.4 ``FlaskRedis``"),
    ("current_app", "``current_app.extensions['redis']['REDIS'].get(key)``"),
]

#: Flask-And-Redis variants and the overhead ratio each must stay under.
TARGETS = {
    "extension_outside": 0.35,
    "extension": 0.35,
    "extension_two_apps": 0.55,
}


class NoNetworkRedis(redis.Redis):
    """A redis-py client whose ``get`` does no I/O."""

    def get(self, name: t.Any) -> None:  # type: ignore[override]
        return None


@dataclass(frozen=True)
class DispatchResult:
    rounds: int
    calls: int
    nanoseconds: dict[str, Spread]  # per call, the timing loop's own cost taken off
    overhead_ratio: dict[str, Spread]  # (variant - direct) / (flask-redis - direct)


def run(rounds: int, calls: int) -> DispatchResult:
    one_app = Flask("dispatch_one_app")
    first, second = Flask("dispatch_first"), Flask("dispatch_second")
    extension = Redis.from_custom_provider(NoNetworkRedis, one_app)
    on_two_apps = Redis.from_custom_provider(NoNetworkRedis)
    on_two_apps.init_app(first)
    on_two_apps.init_app(second)
    client = extension.connection
    # Its own prefix: flask-redis would replace app.extensions["redis"].
    flask_redis = FlaskRedis.from_custom_provider(
        NoNetworkRedis, one_app, config_prefix="FLASK_REDIS"
    )
    namespace: dict[str, object] = {
        "KEY": KEY,
        "client": client,
        "extension": extension,
        "on_two_apps": on_two_apps,
        "flask_redis": flask_redis,
        "current_app": current_app,
    }

    def timer(statement: str, app: Flask | None = None) -> t.Callable[[], float]:
        return call_timer(
            statement,
            namespace,
            number=calls,
            repeat=3,
            context=app.app_context if app is not None else nullcontext,
        )

    measures = {
        "loop": timer("pass"),
        "direct": timer("client.get(KEY)"),
        "extension_outside": timer("extension.get(KEY)"),
        "extension": timer("extension.get(KEY)", one_app),
        "extension_two_apps": timer("on_two_apps.get(KEY)", first),
        "flask_redis": timer("flask_redis.get(KEY)"),
        "current_app": timer(
            "current_app.extensions['redis']['REDIS'].get(KEY)", one_app
        ),
    }
    try:
        results = interleave(measures, rounds)
    finally:
        for app in (one_app, first, second):
            for registered in app.extensions["redis"].values():
                registered.close()
        flask_redis._redis_client.close()
    return summarize(results, rounds, calls)


def summarize(results: Rounds, rounds: int, calls: int) -> DispatchResult:
    def nanoseconds(name: str) -> list[float]:
        return per_round(
            results, lambda value, loop: (value - loop) * 1e9, name, "loop"
        )

    return DispatchResult(
        rounds=rounds,
        calls=calls,
        nanoseconds={name: Spread.of(nanoseconds(name)) for name, _ in VARIANTS},
        overhead_ratio={
            name: Spread.of(
                per_round(
                    results,
                    lambda value, direct, proxy: (value - direct) / (proxy - direct),
                    name,
                    "direct",
                    "flask_redis",
                )
            )
            for name, _ in VARIANTS
            if name not in ("direct", "flask_redis")
        },
    )
