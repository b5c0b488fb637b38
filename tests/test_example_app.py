"""The example app: its views through the test client, and ``python -m
example_app`` run for real and fetched over HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from example_app import create_app

from servers import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("flush_servers")


@pytest.fixture
def app(redis_unix_server: RedisServer) -> Iterator[Flask]:
    app = create_app(
        {
            # The server, without a database: each prefix has its own.
            "REDIS_URL": f"unix://{redis_unix_server.unix_socket}",
            "STATS_SECONDS": 0,
            "TESTING": True,
        }
    )
    yield app
    for client in app.extensions["redis"].values():
        client.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def post(client: FlaskClient, name: str, text: str) -> int:
    return client.post("/comments", data={"name": name, "text": text}).status_code


def computed_at(page: str) -> str:
    found = re.search(r'<time id="computed">([^<]+)</time>', page)
    assert found is not None, page
    return found[1]


def test_each_part_has_a_database_of_its_own(app: Flask) -> None:
    databases = {
        prefix: client.get_connection_kwargs()["db"]
        for prefix, client in app.extensions["redis"].items()
    }
    assert databases == {"COMMENTS": 0, "COUNTERS": 1, "CACHE_REDIS": 2}


def test_a_posted_comment_is_stored_and_shown_escaped(
    client: FlaskClient, redis_unix_server: RedisServer
) -> None:
    assert post(client, "Ann", "Hello <b>there</b>") == 303

    page = client.get("/").text

    assert "<strong>Ann</strong>" in page
    assert "Hello &lt;b&gt;there&lt;/b&gt;" in page
    assert "1 comment." in page
    with redis_unix_server.client(db=0) as redis:
        (stored,) = redis.lrange("comments", 0, -1)
    assert json.loads(stored)["text"] == "Hello <b>there</b>"


def test_newest_comments_come_first(client: FlaskClient) -> None:
    for number in range(3):
        post(client, "Bob", f"comment {number}")

    page = client.get("/").text

    assert page.index("comment 2") < page.index("comment 1") < page.index("comment 0")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [("", "text", "Write 1 to 40 characters."), ("Ann", "x" * 501, "Write 1 to 500")],
)
def test_a_bad_comment_is_refused_and_not_stored(
    client: FlaskClient,
    redis_unix_server: RedisServer,
    name: str,
    text: str,
    message: str,
) -> None:
    response = client.post("/comments", data={"name": name, "text": text})

    assert response.status_code == 400
    assert message in response.text
    with redis_unix_server.client(db=0) as redis:
        assert redis.llen("comments") == 0


def test_views_are_counted_per_page_in_their_database(
    client: FlaskClient, redis_unix_server: RedisServer
) -> None:
    client.get("/")
    page = client.get("/").text
    client.get("/stats")

    assert "viewed 2 times" in page
    with redis_unix_server.client(db=1) as redis:
        assert redis.get("views:/") == b"2"
        assert redis.get("views:/stats") == b"1"


def test_the_400_page_shows_the_view_count_of_the_comments_page(
    client: FlaskClient, redis_unix_server: RedisServer
) -> None:
    client.get("/")
    client.get("/")

    response = client.post("/comments", data={"name": "", "text": "hi"})

    assert response.status_code == 400
    assert "viewed 2 times" in response.text
    with redis_unix_server.client(db=1) as redis:
        assert redis.get("views:/") == b"2"  # a POST is no view


@pytest.mark.parametrize(
    ("path", "status"),
    [("/no-such-page", 404), ("/favicon.ico", 404), ("/comments", 405)],
)
def test_only_pages_that_exist_are_counted(
    client: FlaskClient, redis_unix_server: RedisServer, path: str, status: int
) -> None:
    assert client.get(path).status_code == status

    with redis_unix_server.client(db=1) as redis:
        assert redis.keys() == []


def test_stats_are_cached_in_their_database_until_the_next_comment(
    client: FlaskClient, redis_unix_server: RedisServer
) -> None:
    post(client, "Ann", "first")
    first = client.get("/stats").text
    again = client.get("/stats").text

    assert computed_at(first) == computed_at(again)
    assert "1 comment<" in first and "Ann: 1" in first
    with redis_unix_server.client(db=2) as redis:
        assert redis.keys() == [b"example:stats"]

    post(client, "Bob", "second")
    after = client.get("/stats").text

    assert computed_at(after) != computed_at(first)
    assert "2 comments" in after and "Bob: 1" in after


def fetch(url: str, data: dict[str, str] | None = None) -> tuple[int, str]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    with urllib.request.urlopen(url, data=body, timeout=10) as response:
        return response.status, response.read().decode()


def test_python_m_example_app_serves_with_a_private_server() -> None:
    port = free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if name != "REDIS_URL" and not name.startswith("FLASK_")
    }
    env.update(
        EXAMPLE_APP_PORT=str(port),
        FLASK_STATS_SECONDS="0",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "example_app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, page = fetch(f"{base}/")
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, "python -m example_app exited"
                assert time.monotonic() < deadline, "not serving after 30 s"
                time.sleep(0.1)
        assert status == 200
        assert "<h1>Comments</h1>" in page
        status, page = fetch(f"{base}/comments", {"name": "Ann", "text": "hi"})
        assert status == 200 and "<strong>Ann</strong>" in page  # redirected
        assert "Ann: 1" in fetch(f"{base}/stats")[1]
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)

    assert process.returncode == 128 + signal.SIGTERM
    sockets = re.findall(r" \* Redis (\w+): unix://(\S+)/redis\.sock\?db=(\d)", output)
    assert [(prefix, db) for prefix, _, db in sockets] == [
        ("COMMENTS", "0"),
        ("COUNTERS", "1"),
        ("CACHE_REDIS", "2"),
    ], output
    assert not Path(sockets[0][1]).exists()  # the private server's directory


def test_without_the_example_extra_python_m_example_app_says_what_to_install() -> None:
    without_flask_caching = (
        "import runpy, sys; sys.modules['flask_caching'] = None; "
        "runpy.run_module('example_app', run_name='__main__', alter_sys=True)"
    )

    result = subprocess.run(
        [sys.executable, "-c", without_flask_caching],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.startswith("The example app needs Flask-Caching"), result
    assert result.stderr.rstrip().endswith('pip install -e ".[example]"')
