"""Fork safety: gunicorn with ``--preload`` and several workers.

The app and its extension are created in the master, which also talks to Redis
before forking. Every worker must use connections of its own -- a socket
shared by two processes interleaves their replies -- and every reply must be
the one its request asked for.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from servers import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 3
CLIENT_THREADS = 6
REQUESTS_PER_THREAD = 50
DEADLINE = 60.0  # bounds every wait of this test


def get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture
def gunicorn(
    server_factory: Callable[..., RedisServer], tmp_path: Path
) -> Iterator[tuple[int, RedisServer]]:
    """gunicorn serving tests/preforked_app.py on a private Redis server."""
    server = server_factory()
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = {**os.environ, "FLASK_REDIS_URL": server.url()}
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--preload",
                f"--workers={WORKERS}",
                f"--bind=127.0.0.1:{port}",
                f"--pythonpath={ROOT},{ROOT / 'tests'}",
                "preforked_app:app",
            ],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                if get(port, "/echo?token=ready")[0] == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield port, server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_each_worker_uses_connections_of_its_own(
    gunicorn: tuple[int, RedisServer],
) -> None:
    port, server = gunicorn
    replies: list[dict[str, Any]] = []
    failures: list[str] = []

    def load(thread: int) -> None:
        for number in range(REQUESTS_PER_THREAD):
            token = f"{thread}-{number}"
            try:
                status, body = get(port, f"/echo?token={token}")
            except OSError as error:
                failures.append(f"{token}: {error!r}")
                continue
            if status != 200:
                failures.append(f"{token}: status {status}: {body[:200]!r}")
                continue
            reply = json.loads(body)
            if reply["token"] != token:
                failures.append(f"{token}: read back {reply['token']!r}")
            replies.append(reply)

    threads = [threading.Thread(target=load, args=(n,)) for n in range(CLIENT_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)

    assert failures == []
    assert len(replies) == CLIENT_THREADS * REQUESTS_PER_THREAD
    (master_pid,) = {reply["master_pid"] for reply in replies}
    (master_client_id,) = {reply["master_client_id"] for reply in replies}
    pids_of_client: dict[int, set[int]] = {}
    for reply in replies:
        pids_of_client.setdefault(reply["client_id"], set()).add(reply["pid"])
    worker_pids = {reply["pid"] for reply in replies}
    assert len(worker_pids) > 1 and master_pid not in worker_pids
    # No connection is used by two processes, nor was opened before the fork.
    assert all(len(pids) == 1 for pids in pids_of_client.values()), pids_of_client
    assert master_client_id not in pids_of_client
    # The server sees the master's connection and the workers' own ones.
    with server.client() as client:
        connected = {entry["id"] for entry in client.client_list()}
    assert set(pids_of_client) | {master_client_id} <= {int(i) for i in connected}
