"""Round trips to a real server: raw redis-py, the extension, flask-redis;
and redis-py with hiredis and without it.

Over TCP loopback and over a unix socket, to one server: ``GET`` and ``SET``
of a 100-byte value, and a pipeline of 100 ``GET``. The clients are redis-py
as one would use it without an extension (``redis.Redis(host=…, port=…)``),
the extension's own client called directly (``redis.connection``), the
extension, and flask-redis with the client it builds itself.
"""

from __future__ import annotations

import typing as t
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import redis
from flask import Flask
from flask_redis import FlaskRedis

from flask_and_redis import Redis

from .timing import Rounds, Spread, alternating, interleave, ratio

KEY = "benchmark:value"
VALUE = b"v" * 100
HASH_KEY = "benchmark:hash"
HASH_FIELDS = {f"field:{number}": VALUE for number in range(100)}


def _get(client: t.Any) -> t.Callable[[], object]:
    return lambda: client.get(KEY)


def _set(client: t.Any) -> t.Callable[[], object]:
    return lambda: client.set(KEY, VALUE)


def _pipeline(client: t.Any) -> t.Callable[[], object]:
    def run() -> object:
        with client.pipeline() as pipe:
            for _ in range(100):
                pipe.get(KEY)
            return pipe.execute()

    return run


def _hgetall(client: t.Any) -> t.Callable[[], object]:
    return lambda: client.hgetall(HASH_KEY)


#: name -> (label, the operation on a client, calls relative to GET's)
OPERATIONS: dict[
    str, tuple[str, t.Callable[[t.Any], t.Callable[[], object]], float]
] = {
    "get": ("``GET`` of 100 bytes", _get, 1.0),
    "set": ("``SET`` of 100 bytes", _set, 1.0),
    "pipeline": ("pipeline of 100 ``GET``", _pipeline, 0.1),
    "hgetall": ("``HGETALL`` of 100 fields", _hgetall, 0.5),
}
ROUND_TRIP_OPERATIONS = ("get", "set", "pipeline")
HIREDIS_OPERATIONS = ("get", "set", "pipeline", "hgetall")

CLIENTS = [
    ("raw", "redis-py"),
    ("connection", "``redis.connection``"),
    ("extension", "Flask-And-Redis"),
    ("flask_redis", "flask-redis 0.4"),
]

#: The highest extension / raw-client latency ratio the round trips may show.
TARGET = 1.01


@dataclass(frozen=True)
class Transport:
    name: str  # "TCP" or "unix socket"
    url: str
    #: ``redis.Redis`` keywords for the same address: host and port, or path.
    address: dict[str, t.Any]

    def plain_client(self) -> redis.Redis:
        """redis-py as one would use it without an extension."""
        return redis.Redis(**self.address)


@dataclass(frozen=True)
class RoundTripResult:
    rounds: int
    calls: int
    microseconds: dict[tuple[str, str, str], Spread]  # (transport, op, client)
    ratio: dict[tuple[str, str, str], Spread]  # client / raw, round by round


@dataclass(frozen=True)
class HiredisResult:
    rounds: int
    calls: int
    microseconds: dict[tuple[str, str, bool], Spread]  # (transport, op, hiredis)
    slowdown: dict[tuple[str, str], Spread]  # without / with, round by round
    parsers: dict[bool, str]  # hiredis -> "parser class, packer class"


def _key(*parts: object) -> str:
    return "|".join(str(part) for part in parts)


def _measures(
    clients: dict[str, t.Any],
    operations: t.Iterable[str],
    calls: int,
    transport: str,
    context: t.Callable[[], AbstractContextManager[object]] = nullcontext,
) -> dict[str, t.Callable[[], dict[str, float]]]:
    """For each operation, a measure of it on every client, call by call."""
    measures = {}
    for operation in operations:
        _, make, weight = OPERATIONS[operation]
        measure = alternating(
            {name: make(client) for name, client in clients.items()},
            calls=max(1, round(calls * weight)),
        )

        def in_context(
            measure: t.Callable[[], dict[str, float]] = measure,
        ) -> dict[str, float]:
            with context():
                return measure()

        measures[_key(transport, operation)] = in_context
    return measures


def _flatten(results: dict[str, list[dict[str, float]]]) -> Rounds:
    """``{group: [{name: value}, …]}`` to ``{group|name: [value, …]}``."""
    flat: Rounds = {}
    for group, rounds in results.items():
        for measured in rounds:
            for name, value in measured.items():
                flat.setdefault(_key(group, name), []).append(value)
    return flat


def _seed(client: redis.Redis) -> None:
    client.set(KEY, VALUE)
    client.delete(HASH_KEY)
    client.hset(HASH_KEY, mapping=HASH_FIELDS)


def run_round_trips(
    transports: list[Transport], rounds: int, calls: int
) -> RoundTripResult:
    apps = []
    closing: list[t.Any] = []
    measures: dict[str, t.Callable[[], dict[str, float]]] = {}
    for transport in transports:
        app = Flask(f"round_trips_{len(apps)}")
        app.config["REDIS_URL"] = transport.url
        app.config["FLASK_REDIS_URL"] = transport.url
        apps.append(app)
        extension = Redis(app)
        # Its own prefix: flask-redis would replace app.extensions["redis"].
        flask_redis = FlaskRedis(app, config_prefix="FLASK_REDIS")
        clients = {
            "raw": transport.plain_client(),
            "connection": extension.connection,
            "extension": extension,
            "flask_redis": flask_redis,
        }
        closing += [clients["raw"], extension.connection, flask_redis._redis_client]
        _seed(clients["raw"])
        # Every variant runs in the app context, as in a view; only the
        # extension looks at it.
        measures.update(
            _measures(
                clients, ROUND_TRIP_OPERATIONS, calls, transport.name, app.app_context
            )
        )
    try:
        results = _flatten(interleave(measures, rounds))
    finally:
        for client in closing:
            client.close()
    microseconds = {}
    ratios = {}
    for transport in transports:
        for operation in ROUND_TRIP_OPERATIONS:
            for name, _ in CLIENTS:
                key = _key(transport.name, operation, name)
                microseconds[transport.name, operation, name] = Spread.of(
                    [seconds * 1e6 for seconds in results[key]]
                )
                ratios[transport.name, operation, name] = ratio(
                    results, key, _key(transport.name, operation, "raw")
                )
    return RoundTripResult(rounds, calls, microseconds, ratios)


def run_hiredis(transports: list[Transport], rounds: int, calls: int) -> HiredisResult:
    measures: dict[str, t.Callable[[], dict[str, float]]] = {}
    clients = []
    parsers = {}
    for transport in transports:
        pair = {}
        for hiredis_on in (True, False):
            client = redis.Redis(
                connection_pool=redis.ConnectionPool.from_url(
                    transport.url, **({} if hiredis_on else _without_hiredis())
                )
            )
            _seed(client)
            parsers[hiredis_on] = _parser_of(client)
            pair[str(hiredis_on)] = client
            clients.append(client)
        measures.update(_measures(pair, HIREDIS_OPERATIONS, calls, transport.name))
    try:
        results = _flatten(interleave(measures, rounds))
    finally:
        for client in clients:
            client.close()
    microseconds = {}
    slowdown = {}
    for transport in transports:
        for operation in HIREDIS_OPERATIONS:
            for hiredis_on in (True, False):
                key = _key(transport.name, operation, hiredis_on)
                microseconds[transport.name, operation, hiredis_on] = Spread.of(
                    [seconds * 1e6 for seconds in results[key]]
                )
            slowdown[transport.name, operation] = ratio(
                results,
                _key(transport.name, operation, False),
                _key(transport.name, operation, True),
            )
    return HiredisResult(rounds, calls, microseconds, slowdown, parsers)


def _without_hiredis() -> dict[str, t.Any]:
    """Connection arguments that make redis-py do what it does when hiredis
    is not installed: parse replies and pack commands in Python.

    redis-py has no public switch for this; ``parser_class`` and
    ``command_packer`` are arguments of its ``Connection``, and these are the
    classes it falls back to (the RESP2 parser becomes the RESP3 one when the
    connection speaks RESP3).
    """
    from redis._parsers import _RESP2Parser
    from redis._parsers.encoders import Encoder
    from redis.connection import PythonRespSerializer

    encoder = Encoder(
        encoding="utf-8", encoding_errors="strict", decode_responses=False
    )
    return {
        "parser_class": _RESP2Parser,
        "command_packer": PythonRespSerializer(6000, encoder.encode),
    }


def _parser_of(client: redis.Redis) -> str:
    connection = client.connection_pool.get_connection()
    try:
        return (
            f"{type(connection._parser).__name__},"
            f" {type(connection._command_packer).__name__}"
        )
    finally:
        client.connection_pool.release(connection)
