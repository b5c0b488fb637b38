"""The ``flask redis`` command: ping, info and config, against real servers."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from flask import Flask

from flask_and_redis import Redis

from servers import (
    AUTH_PASSWORD,
    RedisServer,
    SentinelGroup,
    ServerCluster,
    free_port,
)

MakeApp = Callable[..., Flask]


def run(app: Flask, *args: str) -> click.testing.Result:
    return app.test_cli_runner().invoke(args=["redis", *args])


@pytest.fixture
def silent_port() -> Iterator[socket.socket]:
    """A port that accepts connections (the kernel completes the handshake)
    but never answers: a hung server. Counts the connections made to it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(32)
        yield listener


def accepted_connections(listener: socket.socket) -> int:
    listener.setblocking(False)
    count = 0
    for _ in range(100):
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            break
        connection.close()
        count += 1
    return count


def test_ping_shows_each_prefix_masked_with_its_server(
    make_app: MakeApp, redis_server: RedisServer, redis_auth_server: RedisServer
) -> None:
    app = make_app(
        REDIS_URL=redis_auth_server.url(db=1),
        CACHE_URL=redis_server.url(db=2),
    )
    Redis(app)
    Redis(app, config_prefix="CACHE")

    result = run(app, "ping")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(
        f"REDIS  redis://:***@127.0.0.1:{redis_auth_server.port}/1  PONG in "
    )
    assert lines[1].startswith(f"CACHE  redis://127.0.0.1:{redis_server.port}/2  PONG")
    with redis_server.client() as client:
        info = client.info("server")
    # Valkey reports its own name and version beside a Redis-compatible one.
    name = "Valkey" if "valkey_version" in info else "Redis"
    version = info.get("valkey_version", info["redis_version"])
    assert all(line.endswith(f" ms, {name} {version}") for line in lines)
    assert AUTH_PASSWORD not in result.output


def test_ping_exits_non_zero_if_any_server_is_unreachable(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_app(
        REDIS_URL=redis_server.url(), DOWN_URL=f"redis://127.0.0.1:{free_port()}/0"
    )
    Redis(app)
    Redis(app, config_prefix="DOWN")

    result = run(app, "ping")

    assert result.exit_code == 1
    up, down = result.output.splitlines()
    assert up.startswith("REDIS ") and "PONG in" in up
    assert down.startswith("DOWN ") and "unreachable: ConnectionError" in down


def test_ping_tries_a_hung_server_once_for_the_timeout(
    make_app: MakeApp, silent_port: socket.socket
) -> None:
    port = silent_port.getsockname()[1]
    # The app's own client would retry (redis-py 8: ten times, with backoff).
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{port}/0", REDIS_SOCKET_TIMEOUT=30)
    Redis(app)

    result = run(app, "ping", "--timeout", "0.2")

    assert result.exit_code == 1
    assert "unreachable: TimeoutError" in result.output
    assert accepted_connections(silent_port) == 1


def test_ping_with_a_wrong_password_is_unreachable_and_masked(
    make_app: MakeApp, redis_auth_server: RedisServer
) -> None:
    app = make_app(
        REDIS_URL=redis_auth_server.url(username="app", password="wrong-pa55word")
    )
    Redis(app)

    result = run(app, "ping")

    assert result.exit_code == 1
    assert "unreachable: AuthenticationError" in result.output
    assert "redis://app:***@" in result.output
    assert "wrong-pa55word" not in result.output


def test_prefix_option_selects_one_and_names_the_others(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_app(
        REDIS_URL=redis_server.url(), DOWN_URL=f"redis://127.0.0.1:{free_port()}/0"
    )
    Redis(app)
    Redis(app, config_prefix="DOWN")

    selected = run(app, "ping", "--prefix", "REDIS")
    unknown = run(app, "ping", "--prefix", "CACHE")

    assert selected.exit_code == 0
    assert selected.output.startswith("REDIS ")
    assert len(selected.output.splitlines()) == 1
    assert unknown.exit_code == 2
    assert "'CACHE' is not a prefix of this app; its prefixes are 'REDIS', 'DOWN'" in (
        unknown.output
    )


def test_ping_works_for_an_asyncio_client(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    app = make_app(REDIS_URL=redis_server.url(), REDIS_CLASS="redis.asyncio.Redis")
    Redis(app)

    result = run(app, "ping")

    assert result.exit_code == 0, result.output
    assert "PONG in" in result.output


def test_the_group_is_registered_once_per_app(make_app: MakeApp) -> None:
    first, second = make_app("first"), make_app("second")
    shared = Redis()
    shared.init_app(first)
    shared.init_app(second)
    Redis(first, config_prefix="CACHE")

    assert first.cli.commands["redis"] is second.cli.commands["redis"]
    assert run(second, "config").output.count("# ") == 1
    assert run(first, "config").output.count("# ") == 2


def test_a_redis_command_of_the_apps_own_is_kept(make_app: MakeApp) -> None:
    app = make_app()

    @app.cli.command("redis")
    def own() -> None:
        click.echo("the app's own")

    Redis(app)

    assert app.test_cli_runner().invoke(args=["redis"]).output == "the app's own\n"


def test_info_shows_the_servers_info(
    make_app: MakeApp, redis_server: RedisServer, flush_servers: None
) -> None:
    app = make_app(REDIS_URL=redis_server.url(db=3))
    redis = Redis(app)
    with app.app_context():
        redis.set("key", "value")

    server = run(app, "info", "server")
    keyspace = run(app, "info", "--prefix", "REDIS", "keyspace")
    everything = run(app, "info")

    assert server.exit_code == 0, server.output
    assert server.output.startswith(f"# REDIS  {redis_server.url(db=3)}\n")
    assert re.search(rf"^tcp_port +{redis_server.port}$", server.output, re.M)
    assert "db3  keys=1, expires=0" in keyspace.output
    assert "connected_clients" in everything.output  # a default section


def test_info_groups_its_fields_under_section_headers(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    Redis(app := make_app(REDIS_URL=redis_server.url()))

    lines = run(app, "info").output.splitlines()

    assert (
        lines.index("## Server") < lines.index("## Clients") < lines.index("## Memory")
    )
    server_fields = lines[lines.index("## Server") + 1 : lines.index("## Clients")]
    assert any(line.startswith("tcp_port ") for line in server_fields)
    assert not any(line.startswith("connected_clients ") for line in server_fields)


def test_info_of_a_section_the_server_lacks_fails(
    make_app: MakeApp, redis_server: RedisServer
) -> None:
    Redis(app := make_app(REDIS_URL=redis_server.url()))

    result = run(app, "info", "no-such-section")

    assert result.exit_code == 1
    assert "has no INFO section 'no-such-section'" in result.output


def test_info_of_an_unreachable_server_fails(make_app: MakeApp) -> None:
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    Redis(app)

    result = run(app, "info")

    assert result.exit_code == 1
    assert "unreachable: ConnectionError" in result.output


def test_config_shows_each_setting_with_its_source_and_masks_secrets(
    make_app: MakeApp,
) -> None:
    app = make_app(
        REDIS_URL="redis://app:url-pa55@cache.internal:6380/4",
        REDIS_SOCKET_TIMEOUT="2.5",
        REDIS_OPTIONS={"health_check_interval": 30, "db": 9},
        CACHE_UNIX_SOCKET_PATH="/run/redis.sock",
        CACHE_PASSWORD="keys-pa55",
    )
    Redis(app, client_name="web")
    Redis(app, config_prefix="CACHE")

    result = run(app, "config")

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "# REDIS",
        "class  redis.Redis",
        "url    redis://app:***@cache.internal:6380/4",
        "  client_name           = 'web'                        (code)",
        "  db                    = 4                            (REDIS_URL)",
        "  health_check_interval = 30.0                         (REDIS_OPTIONS)",
        "  host                  = 'cache.internal'             (REDIS_URL)",
        "  password              = '***'                        (REDIS_URL)",
        "  port                  = 6380                         (REDIS_URL)",
        "  redis_connect_func    = _handshake('REDIS')          (default)",
        "  retry                 = AtMostOnceRetry(retries=10)  (default)",
        "  socket_timeout        = 2.5                          (REDIS_SOCKET_TIMEOUT)",
        "  username              = 'app'                        (REDIS_URL)",
        "  (other keyword arguments: the defaults of redis.Redis)",
        "",
        "# CACHE",
        "class  redis.Redis",
        "url    unix://:***@/run/redis.sock?db=0",
        "  password           = '***'                        (CACHE_PASSWORD)",
        "  redis_connect_func = _handshake('CACHE')          (default)",
        "  retry              = AtMostOnceRetry(retries=10)  (default)",
        "  unix_socket_path   = '/run/redis.sock'            (CACHE_UNIX_SOCKET_PATH)",
        "  (other keyword arguments: the defaults of redis.Redis)",
        "",
    ]


def test_flask_redis_ping_as_a_command(
    tmp_path: Path, redis_unix_server: RedisServer
) -> None:
    (tmp_path / "healthapp.py").write_text(
        textwrap.dedent(
            """
            from flask import Flask
            from flask_and_redis import Redis

            app = Flask(__name__)
            app.config.from_prefixed_env()
            redis = Redis(app)
            """
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path.cwd())]),
        "FLASK_REDIS_URL": redis_unix_server.url(db=5),
    }
    command = [sys.executable, "-m", "flask", "--app", "healthapp", "redis", "ping"]

    up = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    env["FLASK_REDIS_URL"] = f"unix://{tmp_path / 'nothing-here.sock'}"
    down = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert up.returncode == 0, up.stderr
    assert up.stdout.startswith(f"REDIS  {redis_unix_server.url(db=5)}  PONG in ")
    assert down.returncode == 1
    assert "unreachable: ConnectionError" in down.stdout


def test_a_configuration_error_is_one_line_with_exit_status_1(tmp_path: Path) -> None:
    (tmp_path / "badapp.py").write_text(
        "from flask import Flask\nfrom flask_and_redis import Redis\n"
        "app = Flask(__name__)\napp.config['REDIS_PORT'] = 'sixty'\nRedis(app)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path.cwd())]),
    }

    for command in ("ping", "info", "config"):
        result = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "badapp", "redis", command],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1, command
        assert result.stderr.strip().splitlines() == [
            "Error: REDIS_PORT: 'sixty' is not valid; expected an integer port from"
            " 1 to 65535."
        ], command


def test_ping_a_sentinel_master_and_a_cluster(
    make_app: MakeApp, sentinel_group: SentinelGroup, redis_cluster: ServerCluster
) -> None:
    app = make_app(
        REDIS_URL=sentinel_group.url(db=1),
        CLUSTER_URL=redis_cluster.url(),
    )
    Redis(app)
    Redis(app, config_prefix="CLUSTER")

    result = run(app, "ping")

    assert result.exit_code == 0, result.output
    sentinel_line, cluster_line = result.output.splitlines()
    assert sentinel_line.startswith(f"REDIS    {sentinel_group.url(db=1)}  PONG in ")
    assert cluster_line.startswith(f"CLUSTER  {redis_cluster.url()}  PONG in ")


def test_ping_reports_an_unreachable_cluster() -> None:
    port = free_port()  # nothing listens there
    app = Flask(__name__)  # not make_app, whose clean-up would build the client
    app.config["REDIS_CLUSTER_NODES"] = [f"127.0.0.1:{port}"]
    Redis(app)

    result = run(app, "ping", "--timeout", "1")

    assert result.exit_code == 1
    assert result.output.startswith(
        f"REDIS  redis+cluster://127.0.0.1:{port}  unreachable: RedisClusterException"
    )


def test_ping_tries_a_hung_sentinel_once_for_the_timeout(
    make_app: MakeApp, silent_port: socket.socket
) -> None:
    port = silent_port.getsockname()[1]
    # The app's timeouts are the sentinels' too, unless the command's apply.
    app = make_app(
        REDIS_SENTINELS=[f"127.0.0.1:{port}"],
        REDIS_SENTINEL_MASTER="mymaster",
        REDIS_SOCKET_TIMEOUT=30,
    )
    Redis(app)

    began = time.monotonic()
    result = run(app, "ping", "--timeout", "0.2")
    elapsed = time.monotonic() - began

    assert result.exit_code == 1
    assert "unreachable: MasterNotFoundError" in result.output
    assert "TimeoutError" in result.output
    assert elapsed < 10  # a deadline, far above the 0.2 s asked for
    # Once, by the command; a failover watcher would have connected too.
    assert accepted_connections(silent_port) == 1


def test_ping_of_a_sentinel_master_starts_no_failover_watcher(
    make_app: MakeApp, sentinel_group: SentinelGroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(REDIS_URL=sentinel_group.url())
    Redis(app)
    started: list[str] = []
    start = threading.Thread.start

    def recording_start(thread: threading.Thread, *args: Any) -> None:
        started.append(thread.name)
        start(thread, *args)

    monkeypatch.setattr(threading.Thread, "start", recording_start)

    result = run(app, "ping")

    assert result.exit_code == 0, result.output
    watchers = [name for name in started if name.startswith("flask_and_redis:")]
    assert watchers == []
    assert not any(
        thread.name.startswith("flask_and_redis:") for thread in threading.enumerate()
    )
