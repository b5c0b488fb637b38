"""A frozen server: how long a request takes to fail, and whether it ran once.

A server of its own, stopped with ``SIGSTOP`` while every client has an open
connection to it, then resumed with ``SIGCONT``. During that one freeze, an
``INCR`` and a ``GET`` are sent at once, each from a thread and a client of its
own: through Flask-And-Redis with only ``REDIS_URL`` set and with
``REDIS_SOCKET_TIMEOUT = 1``, and through redis-py as one would use it without
an extension (``redis.Redis(host=…, port=…)``, with ``socket_timeout=1`` for
the second case), whose default retry policy tries again on new connections.

The server resumes once the extension's requests have ended and redis-py's
have ended or waited *cap* seconds: with its defaults redis-py waits about a
minute (eleven attempts of 5 s), so it is cut short unless *cap* is longer.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import typing as t
from contextlib import nullcontext
from dataclasses import dataclass

import redis
from flask import Flask

from flask_and_redis import Redis

from servers import RedisServer

#: name -> label, for the extension and for redis-py.
CLIENTS = {"extension": "Flask-And-Redis", "raw": "redis-py"}
#: name -> the socket timeout set, or None for the client's default.
CONFIGS: dict[str, float | None] = {"defaults": None, "timeout": 1.0}
#: name -> label
COMMANDS = {"incr": "``INCR``", "get": "``GET``"}

#: The most seconds a request through the extension may take to fail with
#: only ``REDIS_URL`` set; with a socket timeout t set: 2t + the connect timeout.
TARGET_WITH_DEFAULTS = 12.0

# The extension's requests end within their timeouts; one still running after
# this long never will, and the server resumes anyway.
_EXTENSION_DEADLINE = 30.0
_AFTER_RESUME_DEADLINE = 30.0

KEY = "frozen:value"

Case = tuple[str, str, str]  # (client, config, command)


def key_of(case: Case) -> str:
    """The key a case's request is about: a counter of its own for ``INCR``."""
    client, config, command = case
    return KEY if command == "get" else f"frozen:counter:{client}:{config}"


@dataclass(frozen=True)
class Request:
    seconds: float
    outcome: str  # the exception's class name, or "returned <value>"
    #: Whether it was still waiting when the server resumed.
    cut_short: bool
    #: After ``INCR``: the counter once the server had resumed.
    counter: int | None


@dataclass(frozen=True)
class FrozenResult:
    resumed_after: float  # seconds from the freeze to SIGCONT
    cap: float
    retries: int  # of redis-py's default retry policy
    #: (client, config) -> the socket timeout and the connect timeout in use.
    timeouts: dict[tuple[str, str], tuple[float, float]]
    requests: dict[Case, Request]

    def bound(self, config: str) -> float:
        """The most seconds the extension's request may take to fail."""
        if CONFIGS[config] is None:
            return TARGET_WITH_DEFAULTS
        timeout, connect_timeout = self.timeouts["extension", config]
        return 2 * timeout + connect_timeout


Clients = dict[Case, tuple[t.Any, t.Callable[[], t.Any]]]


def _sender(
    case: Case, target: t.Any, app: Flask | None = None
) -> t.Callable[[], t.Any]:
    """The request of *case*, through *target*, in *app*'s context if given."""
    command, key = case[2], key_of(case)

    def send() -> t.Any:
        with app.app_context() if app is not None else nullcontext():
            return getattr(target, command)(key)

    return send


def _clients(server: RedisServer) -> Clients:
    """For each case, its client and its request; each client is new, so
    each request has a connection of its own."""
    made: Clients = {}
    for config, timeout in CONFIGS.items():
        for command in COMMANDS:
            app = Flask(f"frozen_{config}_{command}")
            app.config["REDIS_URL"] = server.url()
            options: dict[str, float] = {}
            if timeout is not None:
                app.config["REDIS_SOCKET_TIMEOUT"] = options["socket_timeout"] = timeout
            extension = Redis(app)
            case: Case = ("extension", config, command)
            made[case] = (extension.connection, _sender(case, extension, app))
            raw = redis.Redis(host=server.host, port=server.port, **options)
            case = ("raw", config, command)
            made[case] = (raw, _sender(case, raw))
    return made


def run(cap: float) -> FrozenResult:
    with RedisServer() as server:
        clients = _clients(server)
        writes = [case for case in clients if case[2] == "incr"]
        try:
            with server.client() as seeding:
                seeding.set(KEY, b"value")
                seeding.delete(*map(key_of, writes))
            for client, _ in clients.values():
                client.ping()  # an open connection, as in a running app
            ended, resumed_after = _freeze(server, clients, cap)
            with server.client() as reading:
                counters = {
                    case: int(reading.get(key_of(case)) or 0) for case in writes
                }
        finally:
            for client, _ in clients.values():
                client.close()
    requests = {
        case: Request(
            seconds,
            outcome,
            cut_short=ended_after > resumed_after,
            counter=counters.get(case),
        )
        for case, (seconds, outcome, ended_after) in ended.items()
    }
    timeouts = {}
    for (name, config, _), (client, _) in clients.items():
        kwargs = client.connection_pool.connection_kwargs
        timeouts[name, config] = (
            kwargs["socket_timeout"],
            kwargs["socket_connect_timeout"],
        )
    retries = clients["raw", "defaults", "get"][0].get_retry().get_retries()
    return FrozenResult(resumed_after, cap, retries, timeouts, requests)


def _freeze(
    server: RedisServer, clients: Clients, cap: float
) -> tuple[dict[Case, tuple[float, str, float]], float]:
    """Send every request to the frozen server, each from a thread of its own.

    :return: for each case, the seconds its request took, its outcome, and
        when it ended, in seconds from the freeze; and when the server
        resumed.
    """
    ended: dict[Case, tuple[float, str, float]] = {}

    def send(case: Case, request: t.Callable[[], t.Any]) -> None:
        started = time.monotonic()
        try:
            outcome = f"returned {request()!r}"
        except Exception as error:
            outcome = type(error).__name__
        finished = time.monotonic()
        ended[case] = (finished - started, outcome, finished - frozen_at)

    threads = {
        case: threading.Thread(target=send, args=(case, request), daemon=True)
        for case, (_, request) in clients.items()
    }
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        for thread in threads.values():
            thread.start()
        for (client, _, _), thread in threads.items():
            deadline = _EXTENSION_DEADLINE if client == "extension" else cap
            thread.join(max(0.0, frozen_at + deadline - time.monotonic()))
    finally:
        os.kill(pid, signal.SIGCONT)
        resumed_after = time.monotonic() - frozen_at
    for case, thread in threads.items():
        thread.join(_AFTER_RESUME_DEADLINE)
        if thread.is_alive():
            raise RuntimeError(
                f"The {case} request did not end within"
                f" {_AFTER_RESUME_DEADLINE:g} s of the server resuming."
            )
    return ended, resumed_after
