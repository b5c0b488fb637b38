"""TLS: rediss:// URLs and REDIS_SSL with certificates, against servers that
speak TLS only (so every answer proves a TLS connection)."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import pytest
import redis as redis_py
from flask import Flask
from redis.backoff import NoBackoff
from redis.retry import Retry

from flask_and_redis import Redis

from servers import RedisServer, TLSFiles

MakeApp = Callable[..., Flask]


def assert_round_trip(redis: Redis, server: RedisServer, key: str) -> None:
    redis.set(key, "over TLS")
    with server.client() as client:
        assert client.get(key) == b"over TLS"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_rediss_url_verifies_the_server(
    make_app: MakeApp, redis_tls_server: RedisServer, tls_files: TLSFiles, host: str
) -> None:
    app = make_app(
        REDIS_URL=f"rediss://{host}:{redis_tls_server.port}/0",
        REDIS_SSL_CA_CERTS=tls_files.ca,
    )
    redis = Redis(app)

    assert_round_trip(redis, redis_tls_server, f"tls:url:{host}")
    assert redis.settings_for(app).kwargs["ssl"] is True


def test_ssl_keys_verify_the_server(
    make_app: MakeApp, redis_tls_server: RedisServer, tls_files: TLSFiles
) -> None:
    app = make_app(
        REDIS_HOST="localhost",
        REDIS_PORT=redis_tls_server.port,
        REDIS_SSL=True,
        REDIS_SSL_CA_CERTS=tls_files.ca,
        REDIS_SSL_CHECK_HOSTNAME=True,
        REDIS_SSL_CERT_REQS="required",
    )

    assert_round_trip(Redis(app), redis_tls_server, "tls:keys")


def test_ssl_keys_from_the_environment(
    make_app: MakeApp, redis_tls_server: RedisServer, tls_files: TLSFiles
) -> None:
    app = make_app(
        REDIS_PORT=str(redis_tls_server.port),
        REDIS_SSL="true",
        REDIS_SSL_CA_CERTS=tls_files.ca,
        REDIS_SSL_CHECK_HOSTNAME="yes",
    )

    assert_round_trip(Redis(app), redis_tls_server, "tls:environment")


def test_mutual_tls_with_a_client_certificate(
    make_app: MakeApp, redis_mtls_server: RedisServer, tls_files: TLSFiles
) -> None:
    app = make_app(
        REDIS_URL=f"rediss://localhost:{redis_mtls_server.port}/0",
        REDIS_SSL_CA_CERTS=tls_files.ca,
        REDIS_SSL_CERTFILE=tls_files.client_cert,
        REDIS_SSL_KEYFILE=tls_files.client_key,
    )

    assert_round_trip(Redis(app), redis_mtls_server, "tls:mutual")


def test_mutual_tls_refuses_a_client_without_a_certificate(
    make_app: MakeApp, redis_mtls_server: RedisServer, tls_files: TLSFiles
) -> None:
    app = make_app(
        REDIS_URL=f"rediss://localhost:{redis_mtls_server.port}/0",
        REDIS_SSL_CA_CERTS=tls_files.ca,
        REDIS_OPTIONS={"retry": Retry(NoBackoff(), 0)},
    )

    with pytest.raises(redis_py.ConnectionError):
        Redis(app).ping()


@pytest.mark.parametrize("form", ["url", "keys"])
def test_a_server_signed_by_another_ca_is_refused_at_once(
    make_app: MakeApp,
    redis_tls_server: RedisServer,
    tls_files: TLSFiles,
    monkeypatch: pytest.MonkeyPatch,
    form: str,
) -> None:
    config: dict[str, object] = {"REDIS_SSL_CA_CERTS": tls_files.other_ca}
    if form == "url":
        config["REDIS_URL"] = f"rediss://localhost:{redis_tls_server.port}/0"
    else:
        config.update(REDIS_PORT=redis_tls_server.port, REDIS_SSL=True)
    redis = Redis(make_app(**config))
    handshakes = count_tls_handshakes(monkeypatch)

    with pytest.raises(redis_py.ConnectionError) as refused:
        redis.ping()

    assert "certificate verify failed" in str(refused.value)
    assert handshakes == [1]  # not retried: another try would fail the same way


def count_tls_handshakes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A one-item list that counts the client TLS connections opened from now
    on (not those a TLSProxy in this process accepts)."""
    count = [0]
    wrap_socket = ssl.SSLContext.wrap_socket

    def counting(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        if not kwargs.get("server_side", False):
            count[0] += 1
        return wrap_socket(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "wrap_socket", counting)
    return count


def test_verification_stays_on_unless_turned_off(
    make_app: MakeApp, redis_tls_server: RedisServer
) -> None:
    # No CA given: the system's CAs do not know the test CA.
    app = make_app(
        REDIS_URL=f"rediss://localhost:{redis_tls_server.port}/0",
        REDIS_OPTIONS={"retry": Retry(NoBackoff(), 0)},
    )
    with pytest.raises(redis_py.ConnectionError, match="certificate verify"):
        Redis(app).ping()

    unverified = make_app(
        name="unverified",
        REDIS_URL=f"rediss://localhost:{redis_tls_server.port}/0",
        REDIS_SSL_CERT_REQS="none",
        REDIS_SSL_CHECK_HOSTNAME=False,
    )
    assert_round_trip(Redis(unverified), redis_tls_server, "tls:unverified")
