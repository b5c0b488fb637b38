"""asyncio prefixes behind real HTTP servers: a Flask app under Gunicorn (its
async views run in one event loop per worker) and a Quart app under Hypercorn
(one loop).

The servers run in child processes with warnings as errors, serve on a free
port of 127.0.0.1, and get a bounded number of requests from a plain HTTP
client. The tests read the Redis server's connection count while the app runs
and after it stopped, and the app server's output for warnings and errors.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from servers import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
START_DEADLINE = 30.0
STOP_DEADLINE = 30.0

VIEW = """
# The extension logs each event loop's client as it opens and closes it.
logging.basicConfig(format="%(name)s: %(message)s")
logging.getLogger("flask_and_redis").setLevel(logging.DEBUG)


@app.get("/")
async def count():
    async with redis.pipeline() as pipe:
        pipe.incr("requests").client_list()
        requests, clients = await pipe.execute()
    return {"requests": requests, "connections": len(clients)}
"""

FLASK_APP = (
    """
import logging

from flask import Flask
from flask_and_redis import Redis

app = Flask(__name__)
app.config.from_prefixed_env("APP")
redis = Redis(app)
"""
    + VIEW
)

QUART_APP = (
    """
import logging

from quart import Quart
from flask_and_redis import Redis

app = Quart(__name__)
app.config.from_prefixed_env("APP")
redis = Redis(app)
"""
    + VIEW
)


class AppServer:
    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.port = port
        self.output = ""

    def get(self) -> dict[str, int]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        assert response.status == 200, body
        reply: dict[str, int] = json.loads(body)
        return reply


@contextmanager
def app_server(
    command: list[str], app_source: str, tmp_path: Path, redis_server: RedisServer
) -> Iterator[AppServer]:
    """Run an HTTP server for the app in *app_source* (module ``served_app``) and
    stop it with SIGTERM on leaving; ``.output`` then holds what it printed."""
    (tmp_path / "served_app.py").write_text(textwrap.dedent(app_source))
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "PYTHONWARNINGS": "error",
        "APP_REDIS_URL": redis_server.url(),
        "APP_REDIS_CLASS": "redis.asyncio.Redis",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", *(part.format(port=port) for part in command)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = AppServer(process, port)
    try:
        wait_until_serving(served)
        yield served
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            served.output, _ = process.communicate(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            served.output, _ = process.communicate()


def wait_until_serving(served: AppServer) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            output = served.process.stdout.read() if served.process.stdout else ""
            raise RuntimeError(f"The app server exited during start-up:\n{output}")
        try:
            socket.create_connection(("127.0.0.1", served.port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("The app server did not listen within 30 s.")


def assert_clean(output: str) -> None:
    for trouble in ("Warning", "Traceback", "Exception ignored", "Error"):
        assert trouble not in output, output


def clients_opened_and_closed(output: str) -> tuple[int, int]:
    """How many event loop clients the app server's log says it opened and
    closed."""
    return (
        output.count("REDIS: new client for event loop"),
        output.count("REDIS: closed the client of event loop"),
    )


def many_requests(served: AppServer, threads: int, each: int) -> list[dict[str, int]]:
    with ThreadPoolExecutor(threads) as pool:
        batches = pool.map(
            lambda _: [served.get() for _ in range(each)], range(threads)
        )
        return [reply for batch in batches for reply in batch]


def test_flask_under_gunicorn(tmp_path: Path, server: RedisServer) -> None:
    threads = 8
    command = [
        "gunicorn",
        "--bind=127.0.0.1:{port}",
        "--workers=1",
        "--worker-class=gthread",
        f"--threads={threads}",
        "--graceful-timeout=10",
        "served_app:app",
    ]
    with server.client() as admin:
        before = admin.info("stats")["total_connections_received"]
    with app_server(command, FLASK_APP, tmp_path, server) as served:
        sequential = [served.get() for _ in range(200)]
        after_sequential = server.connected_clients()
        concurrent = many_requests(served, threads, each=25)
        while_serving = server.connected_clients()
    assert_clean(served.output)

    assert [reply["requests"] for reply in sequential] == list(range(1, 201))
    assert {reply["connections"] for reply in sequential} == {1}
    assert sorted(reply["requests"] for reply in concurrent) == list(range(201, 401))
    assert max(reply["connections"] for reply in concurrent) <= threads
    # One loop, one pool: its connections stay open for the next requests...
    assert after_sequential == 1
    assert 1 <= while_serving <= threads
    with server.client() as admin:
        received = admin.info("stats")["total_connections_received"] - before
    assert received <= threads + 3  # and the connections counting them
    # ... and close when the worker exits.
    assert served.process.returncode == 0
    assert clients_opened_and_closed(served.output) == (1, 1)
    assert server.wait_for_connected_clients(0) == 0


def test_quart_under_hypercorn(tmp_path: Path, server: RedisServer) -> None:
    command = ["hypercorn", "--bind=127.0.0.1:{port}", "served_app:app"]
    with app_server(command, QUART_APP, tmp_path, server) as served:
        sequential = [served.get() for _ in range(200)]
        concurrent = many_requests(served, threads=8, each=25)
        while_serving = server.connected_clients()
    assert_clean(served.output)

    assert [reply["requests"] for reply in sequential] == list(range(1, 201))
    assert {reply["connections"] for reply in sequential} == {1}
    assert sorted(reply["requests"] for reply in concurrent) == list(range(201, 401))
    # One loop, one pool: its connections stay open for the next requests...
    assert 1 <= while_serving <= 8
    assert max(reply["connections"] for reply in concurrent) <= 8
    # ... and close when the server shuts the loop down.
    assert served.process.returncode == 0
    assert clients_opened_and_closed(served.output) == (1, 1)
    assert server.wait_for_connected_clients(0) == 0
