"""What recording commands costs per command, no network.

The client's ``execute_command`` returns at once: ``get`` runs redis-py's
command method and, with ``REDIS_RECORD_COMMANDS = True``, the recording
wrapper around ``execute_command``, and does no I/O, so only the Python
overhead is timed. The extension with recording off and on, and the client
alone as the reference, each in app contexts of its own: a fresh one per
batch of calls, so that the records start empty each time.
"""

from __future__ import annotations

import typing as t
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis
from flask import Flask

from flask_and_redis import Redis, get_recorded_commands

from .timing import Rounds, Spread, call_timer, interleave, per_round

KEY = "key"

#: (name, label), in the order of the report.
VARIANTS = [
    ("client", "``InstantRedis`` client alone: ``client.get(key)``"),
    ("off", "Flask-And-Redis, ``REDIS_RECORD_COMMANDS = False``"),
    ("on", "Flask-And-Redis, ``REDIS_RECORD_COMMANDS = True``"),
]

#: The most nanoseconds that recording may add to a command.
TARGET_NS = 3000
#: Batches per variant and round, each in a fresh app context; the best is kept.
BATCHES = 10


class InstantRedis(redis.Redis):
    """A redis-py client whose commands do no I/O: ``execute_command``, what
    redis-py's command methods call and what recording wraps, returns at
    once."""

    def execute_command(self, *args: t.Any, **options: t.Any) -> None:
        return None


@dataclass(frozen=True)
class RecordingResult:
    rounds: int
    calls: int  # per batch, each batch in a fresh app context
    nanoseconds: dict[str, Spread]  # per call, the timing loop's own cost taken off
    added: Spread  # on - off, round by round
    #: With recording off, the extension's client is of the configured class
    #: itself, not of a recording subclass.
    off_is_configured_class: bool


@contextmanager
def fresh_app_context(app: Flask, records: int) -> Iterator[None]:
    """A new app context for one batch of calls; on leaving it, check that
    the batch left *records* records."""
    with app.app_context():
        yield
        recorded = len(get_recorded_commands())
    if recorded != records:
        raise RuntimeError(
            f"A batch on the app {app.name!r} recorded {recorded} commands,"
            f" not {records}: the benchmark does not time what it says."
        )


def run(rounds: int, calls: int) -> RecordingResult:
    apps = {}
    for recording in (False, True):
        app = Flask(f"recording_{'on' if recording else 'off'}")
        app.config["REDIS_CLASS"] = InstantRedis
        app.config["REDIS_RECORD_COMMANDS"] = recording
        apps[recording] = app
    off, on = Redis(apps[False]), Redis(apps[True])
    with apps[False].app_context():
        client = off.connection
    namespace: dict[str, object] = {"KEY": KEY, "client": client, "on": on, "off": off}

    def timer(statement: str, recording: bool = False) -> t.Callable[[], float]:
        batch = call_timer(
            statement,
            namespace,
            number=calls,
            context=lambda: fresh_app_context(
                apps[recording], calls if recording else 0
            ),
        )
        return lambda: min(batch() for _ in range(BATCHES))

    measures = {
        "loop": timer("pass"),
        "client": timer("client.get(KEY)"),
        "off": timer("off.get(KEY)"),
        "on": timer("on.get(KEY)", recording=True),
    }
    try:
        results = interleave(measures, rounds)
    finally:
        for app in apps.values():
            for registered in app.extensions["redis"].values():
                registered.close()
    return summarize(results, rounds, calls, type(client) is InstantRedis)


def summarize(
    results: Rounds, rounds: int, calls: int, off_is_configured_class: bool
) -> RecordingResult:
    def nanoseconds(name: str) -> list[float]:
        return per_round(
            results, lambda value, loop: (value - loop) * 1e9, name, "loop"
        )

    return RecordingResult(
        rounds=rounds,
        calls=calls,
        nanoseconds={name: Spread.of(nanoseconds(name)) for name, _ in VARIANTS},
        added=Spread.of(
            per_round(results, lambda on, off: (on - off) * 1e9, "on", "off")
        ),
        off_is_configured_class=off_is_configured_class,
    )
