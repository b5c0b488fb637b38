"""Apps made and dropped one after another, as a test suite's app factory does.

Each app's config is a Sentinel URL of a group started for the section; its
extension does one ``PING`` (its pool then starts a failover watcher, a thread
per sentinel), then the app and the extension are dropped with ``del``. The
garbage collector runs as it would, and once at the end; then the threads and
the open file descriptors must come back to where they were before the loop.
The same loop with a plain URL to the group's master is the reference.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from dataclasses import dataclass

from flask import Flask

from flask_and_redis import Redis

from servers import SentinelGroup

#: name -> label
LOOPS = {"sentinel": "Sentinel URL", "plain": "plain URL (reference)"}

#: The most seconds that 300 Sentinel apps may take, and as much per app for
#: another count.
TARGET_SECONDS_PER_300 = 10.0
#: How long after the loop the threads and file descriptors must be back.
SETTLE_SECONDS = 1.0


@dataclass(frozen=True)
class Counts:
    before: int
    most: int  # during the loop, sampled after each app
    after: int  # when they settled, or SETTLE_SECONDS after the loop


@dataclass(frozen=True)
class Churn:
    apps: int
    seconds: float
    longest_drop_ms: float  # of the ``del`` statements
    longest_collection_ms: float  # of the garbage collector's passes in the loop
    threads: Counts
    fds: Counts
    #: Seconds from the end of the loop until both counts were back (the
    #: final ``gc.collect()`` included), or None if not within SETTLE_SECONDS.
    settled_after: float | None


@dataclass(frozen=True)
class SentinelAppsResult:
    sentinels: int
    churns: dict[str, Churn]  # LOOPS name -> churn


def run(apps: int) -> SentinelAppsResult:
    with SentinelGroup() as group:
        urls = {"sentinel": group.url(), "plain": group.master().url()}
        churns = {name: churn(urls[name], apps) for name in LOOPS}
        return SentinelAppsResult(len(group.sentinels), churns)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _make_ping_drop(url: str, number: int) -> float:
    """Make an app, ping through its extension, drop both: the seconds the
    drop took."""
    app = Flask(f"sentinel_apps_{number}")
    app.config["REDIS_URL"] = url
    extension = Redis(app)
    with app.app_context():
        extension.ping()
    started = time.perf_counter()
    del app, extension
    return time.perf_counter() - started


def _settle(threads: int, fds: int, since: float) -> float | None:
    """Wait until the thread and fd counts are *threads* and *fds*: the
    seconds from *since* (a ``perf_counter()``) until they were, or None if
    they were not back within ``SETTLE_SECONDS``."""
    while (threading.active_count(), _open_fds()) != (threads, fds):
        if time.perf_counter() - since > SETTLE_SECONDS:
            return None
        time.sleep(0.01)
    return time.perf_counter() - since


def churn(url: str, apps: int) -> Churn:
    # One app first, so that what is made once per process (imports, caches)
    # is not counted.
    threads_before, fds_before = threading.active_count(), _open_fds()
    _make_ping_drop(url, -1)
    gc.collect()
    _settle(threads_before, fds_before, time.perf_counter())
    threads_before, fds_before = threading.active_count(), _open_fds()

    collections: list[float] = []
    collection_started = 0.0

    def time_collection(phase: str, info: dict[str, int]) -> None:
        nonlocal collection_started
        if phase == "start":
            collection_started = time.perf_counter()
        else:
            collections.append(time.perf_counter() - collection_started)

    drops = []
    most_threads, most_fds = threads_before, fds_before
    gc.callbacks.append(time_collection)
    started = time.perf_counter()
    try:
        for number in range(apps):
            drops.append(_make_ping_drop(url, number))
            most_threads = max(most_threads, threading.active_count())
            most_fds = max(most_fds, _open_fds())
        seconds = time.perf_counter() - started
    finally:
        gc.callbacks.remove(time_collection)
    ended = time.perf_counter()
    gc.collect()
    settled_after = _settle(threads_before, fds_before, since=ended)
    return Churn(
        apps=apps,
        seconds=seconds,
        longest_drop_ms=max(drops) * 1e3,
        longest_collection_ms=max(collections, default=0.0) * 1e3,
        threads=Counts(threads_before, most_threads, threading.active_count()),
        fds=Counts(fds_before, most_fds, _open_fds()),
        settled_after=settled_after,
    )
