"""Writes under load through a Sentinel failover and a cluster master failure.

Threads write through a Flask app and the extension (a test client each),
every write a key and value of its own, and each write is recorded: when it
started and ended, and whether it was acknowledged or which error the app's
error handler saw. While they write, the test fails the master over and
notes when the new master is announced -- as the test itself hears it from
the sentinels, or sees the promoted replica report itself a master -- and at
the end it reads every acknowledged key back from the new master.

The guarantees checked: errors come only from a window around the failover,
then every write succeeds; no write sent after the extension followed the
announcement is lost. Writes the old master acknowledged before then may be
lost (Redis replicates asynchronously; see the Reliability docs): they are
counted, not forbidden. The figures are shown at the end of the run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import pytest
import redis as redis_py
from flask import Flask, request
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

from flask_and_redis import Redis

from servers import (
    RedisServer,
    SentinelGroup,
    ServerCluster,
    SwitchMasterAnnouncements,
    Workers,
    replica_linked,
)

MakeApp = Callable[..., Flask]
ReportFigure = Callable[[str], None]

WRITERS = 4
WRITES_PER_WRITER = 50_000  # a bound: a test ends long before
WARM_UP = 50  # writes before the failover is caused
# Generous deadlines: these tests check correctness, not speed.
FAILOVER_DEADLINE = 30.0  # for the new master to be announced
ERROR_DEADLINE = 5.0  # after the announcement, no write fails
CALM = 1.0  # the run ends once writes succeed this long after the last error
CALM_WRITES = 100  # and this many of them


@dataclass(frozen=True)
class Write:
    key: str
    value: str
    started: float
    finished: float
    #: The class name of the error the app's error handler saw; None for an
    #: acknowledged write.
    error: str | None


def create_app(make_app: MakeApp, **config: Any) -> Flask:
    """The app under load: ``PUT /keys/<key>`` sets the key to the body (in an
    async view for an asyncio client class); a Redis error answers 503 with
    the error's class name."""
    app = make_app("failover_load", **config)
    redis = Redis(app)

    if redis.settings_for(app).is_asyncio:

        @app.put("/keys/<key>")
        async def write_async(key: str) -> str:
            await redis.set(key, request.get_data())
            return "OK"

    else:

        @app.put("/keys/<key>")
        def write(key: str) -> str:
            redis.set(key, request.get_data())
            return "OK"

    @app.errorhandler(redis_py.RedisError)
    @app.errorhandler(RedisClusterException)  # not a RedisError
    def redis_unavailable(error: Exception) -> tuple[str, int]:
        return type(error).__name__, 503

    return app


class Load(Workers):
    """Threads writing ``load:<writer>:<n>`` through the app, one write after
    the other, until stopped; every write is recorded."""

    def __init__(self, app: Flask) -> None:
        super().__init__(WRITERS, FAILOVER_DEADLINE)
        self.app = app
        self._writes: list[Write] = []
        self._lock = threading.Lock()

    def work(self, writer: int) -> None:
        client = self.app.test_client()
        for number in range(WRITES_PER_WRITER):
            if self.stopping.is_set():
                break
            key, value = f"load:{writer}:{number}", f"{writer}#{number}"
            started = time.monotonic()
            response = client.put(f"/keys/{key}", data=value)
            finished = time.monotonic()
            error = None if response.status_code == 200 else response.text
            with self._lock:
                self._writes.append(Write(key, value, started, finished, error))

    @property
    def writes(self) -> list[Write]:
        with self._lock:
            return list(self._writes)

    def run_through(
        self, cause: Callable[[], None], announced: Callable[[], float | None]
    ) -> tuple[float, float]:
        """Write a while, call *cause*, wait until *announced* returns when
        the new master was announced, then write on until the writes have
        succeeded for a while. Return when the failover was caused, and when
        it was announced."""
        self._wait_for(
            "writes before the failover",
            lambda: len(self.writes) >= WARM_UP,
            FAILOVER_DEADLINE,
        )
        caused = time.monotonic()
        cause()
        self._wait_for(
            "the announcement of a new master",
            lambda: announced() is not None,
            FAILOVER_DEADLINE,
        )
        announcement = announced()
        assert announcement is not None
        self._wait_for(
            f"{CALM_WRITES} writes succeeding for {CALM} s after the last error",
            lambda: calm(self.writes, announcement),
            ERROR_DEADLINE + FAILOVER_DEADLINE,
        )
        return caused, announcement

    @staticmethod
    def _wait_for(what: str, condition: Callable[[], bool], deadline: float) -> None:
        end = time.monotonic() + deadline
        while not condition():
            if time.monotonic() > end:
                raise AssertionError(f"Not within {deadline:.0f} s: {what}")
            time.sleep(0.01)


def calm(writes: list[Write], announced: float) -> bool:
    """Whether the writes since the announcement and the last error have all
    succeeded, ``CALM_WRITES`` of them over ``CALM`` seconds."""
    since = max([announced, *(write.finished for write in writes if write.error)])
    after = [write for write in writes if write.started > since]
    return len(after) >= CALM_WRITES and after[-1].finished > since + CALM


@dataclass
class Outcome:
    """What became of the writes of one run, through one failover."""

    writes: list[Write]
    caused: float
    #: When the test heard the announcement of the new master.
    announced: float
    #: When the extension followed it: from then on, every write goes to
    #: the new master.
    followed: float
    #: The acknowledged keys found with their value at the end.
    found: set[str]

    @property
    def errors(self) -> list[Write]:
        return [write for write in self.writes if write.error is not None]

    @property
    def acknowledged(self) -> list[Write]:
        return [write for write in self.writes if write.error is None]

    @property
    def sent_after(self) -> list[Write]:
        """Acknowledged writes started after the extension followed the
        announcement."""
        return [w for w in self.acknowledged if w.started >= self.followed]

    @property
    def acknowledged_before(self) -> list[Write]:
        """Acknowledged writes that ended before the announcement (and had
        started before the extension followed it)."""
        return [
            w
            for w in self.acknowledged
            if w.finished < self.announced and w.started < self.followed
        ]

    @property
    def in_flight(self) -> list[Write]:
        """Acknowledged writes that ended after the announcement, but had
        started before the extension followed it."""
        return [
            w
            for w in self.acknowledged
            if w.finished >= self.announced and w.started < self.followed
        ]

    def lost(self, writes: Sequence[Write]) -> list[Write]:
        return [write for write in writes if write.key not in self.found]

    def check(self) -> None:
        """Errors only in a window around the failover, then none; no write
        sent after the extension followed the announcement lost."""
        errors = self.errors
        assert [w for w in self.acknowledged if w.finished < self.caused]
        assert [w for w in errors if w.finished < self.caused] == []
        assert [w for w in errors if w.finished > self.announced + ERROR_DEADLINE] == []
        last_error = max((w.finished for w in errors), default=self.caused)
        after_errors = [w for w in self.writes if w.started > last_error]
        assert len(after_errors) >= CALM_WRITES
        assert [w for w in after_errors if w.error is not None] == []
        assert self.sent_after
        assert self.lost(self.sent_after) == []

    def summary(self, name: str) -> str:
        """The figures of the run, in one line."""

        def at(moment: float) -> str:
            return f"{moment - self.caused:+.2f} s"

        errors = self.errors
        if errors:
            first = min(write.started for write in errors)
            last = max(write.finished for write in errors)
            recovered = min(w.finished for w in self.acknowledged if w.finished > last)
            kinds = Counter(write.error for write in errors).most_common()
            window = (
                f"{len(errors)} errors"
                f" ({', '.join(f'{count} {kind}' for kind, count in kinds)})"
                f" from {at(first)} to {at(last)}, {last - first:.2f} s;"
                f" first success after them at {at(recovered)}"
            )
        else:
            window = "no errors"
        acknowledged = sorted(write.finished for write in self.acknowledged)
        stall = max(b - a for a, b in pairwise(acknowledged))
        before, in_flight, after = (
            self.acknowledged_before,
            self.in_flight,
            self.sent_after,
        )
        lost = ""
        if self.lost(self.acknowledged):
            moments = [write.finished for write in self.lost(self.acknowledged)]
            lost = (
                f"; the lost ones were acknowledged from {at(min(moments))}"
                f" to {at(max(moments))}"
            )
        followed = ""
        if self.followed != self.announced:
            lag = (self.followed - self.announced) * 1000
            followed = f" (the extension followed {abs(lag):.1f} ms" + (
                " after the test heard it)" if lag >= 0 else " before)"
            )
        return (
            f"{name}: {len(self.writes)} writes from {WRITERS} threads; times"
            f" from the start of the failover: new master announced at"
            f" {at(self.announced)}{followed}; {window}; longest wait between"
            f" acknowledgements {stall:.2f} s."
            f" Acknowledged writes lost: {len(self.lost(before))} of"
            f" {len(before)} before the announcement,"
            f" {len(self.lost(in_flight))} of {len(in_flight)} in flight at it,"
            f" {len(self.lost(after))} of {len(after)} sent after it{lost}"
        )


def values_on(client: redis_py.Redis, writes: Sequence[Write]) -> set[str]:
    """The keys of *writes* that *client*'s server holds with their value."""
    with client.pipeline(transaction=False) as pipe:
        for write in writes:
            pipe.get(write.key)
        values = pipe.execute()
    return {
        write.key
        for write, value in zip(writes, values, strict=True)
        if value == write.value.encode()
    }


# -- Sentinel


class Followed(logging.Handler):
    """When the extension followed the announcement: it logs it then."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.times: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("The sentinels announce a new master"):
            self.times.append(time.monotonic())


@contextmanager
def following() -> Iterator[Followed]:
    logger = logging.getLogger("flask_and_redis")
    handler, level = Followed(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.setLevel(level)
        logger.removeHandler(handler)


def fail_over_under_load(
    make_app: MakeApp, group: SentinelGroup, cause: Callable[[], None], views: str
) -> Outcome:
    # The extension's defaults: redis-py's retries, which ride out the
    # seconds before a killed master is replaced.
    app = create_app(make_app, REDIS_URL=group.url(), REDIS_CLASS=CLASSES[views])
    announcements = SwitchMasterAnnouncements(group)
    try:
        with following() as followed, Load(app) as load:
            caused, announced = load.run_through(cause, announcements.time)
    finally:
        announcements.close()
        app.extensions["redis"]["REDIS"].close()
    assert announcements.first is not None and followed.times
    writes = load.writes
    with group.server_at(announcements.first[1]).client() as new_master:
        found = values_on(new_master, [w for w in writes if w.error is None])
    return Outcome(writes, caused, announced, followed.times[0], found)


# The view that writes: sync, or async with an asyncio client class.
CLASSES = {"sync views": "redis.Redis", "async views": "redis.asyncio.Redis"}


@pytest.mark.slow
@pytest.mark.parametrize("views", CLASSES)
def test_writes_go_on_through_a_forced_sentinel_failover(
    make_app: MakeApp,
    fresh_sentinel_group: SentinelGroup,
    report_figure: ReportFigure,
    views: str,
) -> None:
    group = fresh_sentinel_group

    def force() -> None:
        with group.sentinels[0].client() as sentinel:
            sentinel.sentinel_failover(group.master_name)

    outcome = fail_over_under_load(make_app, group, force, views)

    report_figure(outcome.summary(f"Sentinel, SENTINEL FAILOVER, {views}"))
    outcome.check()


@pytest.mark.slow
@pytest.mark.parametrize("views", CLASSES)
def test_writes_go_on_through_a_sentinel_failover_of_a_killed_master(
    make_app: MakeApp,
    fresh_sentinel_group: SentinelGroup,
    report_figure: ReportFigure,
    views: str,
) -> None:
    group = fresh_sentinel_group

    outcome = fail_over_under_load(make_app, group, group.master().kill, views)

    report_figure(outcome.summary(f"Sentinel, master killed, {views}"))
    outcome.check()


# -- Cluster


def promotion(replica: RedisServer) -> Callable[[], float | None]:
    """When *replica* was first seen reporting itself a master, if yet."""
    seen: list[float] = []

    def time_seen() -> float | None:
        if not seen:
            with replica.client() as client:
                if client.execute_command("ROLE")[0] in (b"master", "master"):
                    seen.append(time.monotonic())
        return seen[0] if seen else None

    return time_seen


@contextmanager
def restored(node: RedisServer) -> Iterator[None]:
    """Bring the killed *node* back after the block, as the replica of its
    replica, for the tests that share the cluster."""
    try:
        yield
    finally:
        node.restart()
        end = time.monotonic() + FAILOVER_DEADLINE
        while not replica_linked(node) and time.monotonic() < end:
            time.sleep(0.05)


def found_in(cluster: ServerCluster, writes: Sequence[Write]) -> set[str]:
    """The keys of *writes* that the masters serving them hold with their value."""
    masters = cluster.masters()
    master_of = {slot: node for node in masters for slot in cluster.slots_of(node)}
    writes_to: dict[int, list[Write]] = {node.port: [] for node in masters}
    for write in writes:
        writes_to[master_of[key_slot(write.key.encode())].port].append(write)
    found: set[str] = set()
    for node in masters:
        with node.client() as client:
            found |= values_on(client, writes_to[node.port])
    return found


@pytest.mark.slow
def test_writes_go_on_through_a_cluster_master_failure(
    make_app: MakeApp, redis_cluster: ServerCluster, report_figure: ReportFigure
) -> None:
    app = create_app(make_app, REDIS_URL=redis_cluster.url())
    # Each writer writes to every master: its keys spread over the slots.
    master = redis_cluster.master_for_key("load:0:0")
    replica = redis_cluster.replica_of(master)
    slots_of_master = set(redis_cluster.slots_of(master))

    with restored(master):
        with Load(app) as load:
            caused, promoted = load.run_through(master.kill, promotion(replica))
        writes = load.writes
        found = found_in(redis_cluster, [w for w in writes if w.error is None])

    # The old master is dead: nothing written after the promotion reaches it.
    outcome = Outcome(writes, caused, promoted, promoted, found)
    elsewhere = [
        w for w in outcome.errors if key_slot(w.key.encode()) not in slots_of_master
    ]
    report_figure(
        outcome.summary("Cluster, master killed")
        + f"; errors on the other masters' keys: {len(elsewhere)}"
    )
    outcome.check()
