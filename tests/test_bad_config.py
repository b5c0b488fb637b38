"""Bad configuration fails at init_app, naming the key, without network I/O.

End to end through ``Redis(app)`` / ``init_app``: a table of malformed
configurations, and a property test over generated ones. The network is cut
(the ``no_network`` fixture): a config error must never wait for a connection.
"""

from __future__ import annotations

import logging
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_and_redis import ConfigurationError, Redis

MakeApp = Callable[..., Flask]

pytestmark = pytest.mark.usefixtures("no_network")

EXISTING_FILE = __file__
EXISTING_DIR = str(Path(__file__).parent)
MISSING = "/nonexistent/flask-and-redis"
BLOCKING = "redis.BlockingConnectionPool"


def bad(id: str, key: str, init: dict[str, Any] | None = None, **config: Any) -> Any:
    """One row of the table: config, the key the error must name, and the
    keyword arguments of init_app (``config_prefix``, client keywords)."""
    return pytest.param(config, key, init or {}, id=id)


BAD_CONFIGS = [
    # Types and ranges of the discrete keys.
    bad("port-word", "REDIS_PORT", REDIS_PORT="sixty"),
    bad("port-zero", "REDIS_PORT", REDIS_PORT=0),
    bad("port-too-high", "REDIS_PORT", REDIS_PORT=70000),
    bad("port-bool", "REDIS_PORT", REDIS_PORT=True),
    bad("port-float", "REDIS_PORT", REDIS_PORT=6379.5),
    bad("db-negative", "REDIS_DB", REDIS_DB=-1),
    bad("db-word", "REDIS_DB", REDIS_DB="one"),
    bad("db-list", "REDIS_DB", REDIS_DB=[0]),
    bad("host-empty", "REDIS_HOST", REDIS_HOST=""),
    bad("host-space", "REDIS_HOST", REDIS_HOST="redis host"),
    bad("host-float", "REDIS_HOST", REDIS_HOST=12.5),
    bad("password-bytes", "REDIS_PASSWORD", REDIS_PASSWORD=b"pw"),
    bad("username-list", "REDIS_USERNAME", REDIS_USERNAME=["app"]),
    bad("timeout-zero", "REDIS_SOCKET_TIMEOUT", REDIS_SOCKET_TIMEOUT=0),
    bad("timeout-negative", "REDIS_SOCKET_TIMEOUT", REDIS_SOCKET_TIMEOUT=-1),
    bad("timeout-word", "REDIS_SOCKET_TIMEOUT", REDIS_SOCKET_TIMEOUT="soon"),
    bad(
        "connect-timeout-list",
        "REDIS_SOCKET_CONNECT_TIMEOUT",
        REDIS_SOCKET_CONNECT_TIMEOUT=[5],
    ),
    bad("keepalive-maybe", "REDIS_SOCKET_KEEPALIVE", REDIS_SOCKET_KEEPALIVE="maybe"),
    bad("decode-two", "REDIS_DECODE_RESPONSES", REDIS_DECODE_RESPONSES=2),
    bad("encoding-unknown", "REDIS_ENCODING", REDIS_ENCODING="no-such-codec"),
    bad("max-connections-zero", "REDIS_MAX_CONNECTIONS", REDIS_MAX_CONNECTIONS=0),
    bad("max-connections-word", "REDIS_MAX_CONNECTIONS", REDIS_MAX_CONNECTIONS="many"),
    bad(
        "health-check-negative",
        "REDIS_HEALTH_CHECK_INTERVAL",
        REDIS_HEALTH_CHECK_INTERVAL=-5,
    ),
    bad("protocol-four", "REDIS_PROTOCOL", REDIS_PROTOCOL=4),
    bad("read-size-zero", "REDIS_SOCKET_READ_SIZE", REDIS_SOCKET_READ_SIZE=0),
    bad("client-name-list", "REDIS_CLIENT_NAME", REDIS_CLIENT_NAME=["web"]),
    # URLs.
    bad("url-http", "REDIS_URL", REDIS_URL="http://localhost:6379/0"),
    bad("url-no-scheme", "REDIS_URL", REDIS_URL="localhost:6379"),
    bad("url-port-word", "REDIS_URL", REDIS_URL="redis://localhost:port/0"),
    bad("url-port-too-high", "REDIS_URL", REDIS_URL="redis://localhost:99999/0"),
    bad("url-db-word", "REDIS_URL", REDIS_URL="redis://localhost/zero"),
    bad("url-db-query-word", "REDIS_URL", REDIS_URL="redis://localhost/?db=x"),
    bad(
        "url-bad-option", "REDIS_URL", REDIS_URL="redis://localhost/0?socket_timeout=no"
    ),
    bad("url-unknown-option", "REDIS_URL", REDIS_URL="redis://localhost/0?colour=1"),
    bad("url-unix-relative", "REDIS_URL", REDIS_URL="unix://run/redis.sock"),
    bad("url-slash-in-password", "REDIS_URL", REDIS_URL="redis://:12/34@host/0"),
    bad("url-query-in-password", "REDIS_URL", REDIS_URL="redis://:ab?db=c@host/0"),
    bad("url-hash-in-password", "REDIS_URL", REDIS_URL="redis://h/0?password=a#b"),
    bad("url-amp-in-password", "REDIS_URL", REDIS_URL="redis://h/0?password=a&b"),
    bad("url-int", "REDIS_URL", REDIS_URL=6379),
    bad("url-empty", "REDIS_URL", REDIS_URL=""),
    bad(
        "url-tls-missing-ca",
        "REDIS_URL",
        REDIS_URL=f"rediss://localhost/0?ssl_ca_certs={MISSING}/ca.pem",
    ),
    bad(
        "url-tls-option-without-tls",
        "REDIS_URL",
        REDIS_URL=f"redis://localhost/0?ssl_certfile={EXISTING_FILE}",
    ),
    # Client classes.
    bad("class-missing-module", "REDIS_CLASS", REDIS_CLASS="no.such.module.Redis"),
    bad("class-missing-name", "REDIS_CLASS", REDIS_CLASS="redis.NoSuchRedis"),
    bad("class-int", "REDIS_CLASS", REDIS_CLASS=42),
    bad("class-module", "REDIS_CLASS", REDIS_CLASS="os.path"),
    bad(
        "class-takes-no-port",
        "REDIS_PORT",
        REDIS_CLASS="builtins.object",
        REDIS_PORT=6380,
    ),
    # Options.
    bad("options-text", "REDIS_OPTIONS", REDIS_OPTIONS="socket_timeout=5"),
    bad(
        "options-typo",
        "REDIS_OPTIONS['socket_timout']",
        REDIS_OPTIONS={"socket_timout": 5},
    ),
    bad("options-int-key", "REDIS_OPTIONS[1]", REDIS_OPTIONS={1: 2}),
    bad("options-bad-port", "REDIS_OPTIONS['port']", REDIS_OPTIONS={"port": "x"}),
    # Socket paths.
    bad("socket-and-port", "REDIS_PORT", REDIS_HOST="/run/redis.sock", REDIS_PORT=6380),
    bad("socket-path-empty", "REDIS_UNIX_SOCKET_PATH", REDIS_UNIX_SOCKET_PATH=""),
    bad("socket-path-space", "REDIS_UNIX_SOCKET_PATH", REDIS_UNIX_SOCKET_PATH=" "),
    bad(
        "socket-with-tls",
        "REDIS_SSL",
        REDIS_URL="unix:///run/redis.sock",
        REDIS_SSL=True,
    ),
    # TLS.
    bad("tls-maybe", "REDIS_SSL", REDIS_SSL="perhaps"),
    bad(
        "tls-missing-ca",
        "REDIS_SSL_CA_CERTS",
        REDIS_SSL=True,
        REDIS_SSL_CA_CERTS=f"{MISSING}/ca.pem",
    ),
    bad(
        "tls-missing-cert",
        "REDIS_SSL_CERTFILE",
        REDIS_SSL=True,
        REDIS_SSL_CERTFILE=f"{MISSING}/cert.pem",
    ),
    bad(
        "tls-key-is-a-directory",
        "REDIS_SSL_KEYFILE",
        REDIS_SSL=True,
        REDIS_SSL_KEYFILE=EXISTING_DIR,
    ),
    bad(
        "tls-missing-ca-dir",
        "REDIS_SSL_CA_PATH",
        REDIS_SSL=True,
        REDIS_SSL_CA_PATH=MISSING,
    ),
    bad(
        "tls-cert-reqs",
        "REDIS_SSL_CERT_REQS",
        REDIS_SSL=True,
        REDIS_SSL_CERT_REQS="sometimes",
    ),
    bad(
        "tls-option-without-tls", "REDIS_SSL_CA_CERTS", REDIS_SSL_CA_CERTS=EXISTING_FILE
    ),
    bad(
        "tls-with-redis-url",
        "REDIS_SSL",
        REDIS_URL="redis://localhost/0",
        REDIS_SSL=True,
    ),
    # Connection pools.
    bad(
        "pool-missing",
        "REDIS_CONNECTION_POOL_CLASS",
        REDIS_CONNECTION_POOL_CLASS="no.such.Pool",
    ),
    bad(
        "pool-not-a-pool",
        "REDIS_CONNECTION_POOL_CLASS",
        REDIS_CONNECTION_POOL_CLASS="redis.Redis",
    ),
    bad(
        "pool-asyncio-for-sync",
        "REDIS_CONNECTION_POOL_CLASS",
        REDIS_CONNECTION_POOL_CLASS="redis.asyncio.BlockingConnectionPool",
    ),
    bad(
        "pool-sync-for-asyncio",
        "REDIS_CONNECTION_POOL_CLASS",
        REDIS_CLASS="redis.asyncio.Redis",
        REDIS_CONNECTION_POOL_CLASS=BLOCKING,
    ),
    bad(
        "pool-and-pool-instance",
        "REDIS_CONNECTION_POOL_CLASS",
        REDIS_CONNECTION_POOL_CLASS=BLOCKING,
        REDIS_OPTIONS={"connection_pool": object()},
    ),
    bad(
        "pool-timeout-without-class",
        "REDIS_CONNECTION_POOL_TIMEOUT",
        REDIS_CONNECTION_POOL_TIMEOUT=5,
    ),
    bad(
        "pool-timeout-of-a-non-blocking-pool",
        "REDIS_CONNECTION_POOL_TIMEOUT",
        REDIS_CONNECTION_POOL_CLASS="redis.ConnectionPool",
        REDIS_CONNECTION_POOL_TIMEOUT=5,
    ),
    bad(
        "pool-timeout-zero",
        "REDIS_CONNECTION_POOL_TIMEOUT",
        REDIS_CONNECTION_POOL_CLASS=BLOCKING,
        REDIS_CONNECTION_POOL_TIMEOUT=0,
    ),
    bad(
        "single-connection-client",
        "REDIS_SINGLE_CONNECTION_CLIENT",
        REDIS_SINGLE_CONNECTION_CLIENT=True,
    ),
    # Prefixes and keyword arguments given in code.
    bad("prefix-trailing-underscore", "config_prefix", {"config_prefix": "REDIS_"}),
    bad("prefix-digit", "config_prefix", {"config_prefix": "1REDIS"}),
    bad(
        "code-keyword-typo",
        "keyword argument 'socket_timout'",
        {"socket_timout": 5},
    ),
    bad(
        "code-keyword-bad-value",
        "keyword argument 'socket_timeout'",
        {"socket_timeout": "x"},
    ),
    bad("other-prefix", "CACHE_PORT", {"config_prefix": "CACHE"}, CACHE_PORT=-1),
]


def test_the_table_has_forty_cases_or_more() -> None:
    assert len(BAD_CONFIGS) >= 40


@pytest.mark.parametrize(("config", "key", "init"), BAD_CONFIGS)
def test_a_bad_config_fails_at_init_app_naming_its_key(
    make_app: MakeApp, config: dict[str, Any], key: str, init: dict[str, Any]
) -> None:
    app = make_app(**config)
    redis = Redis()

    with pytest.raises(ConfigurationError) as caught:
        redis.init_app(app, **init)

    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")
    assert app.extensions.get("redis", {}) == {}


GOOD_CONFIGS = [
    pytest.param({"REDIS_URL": "redis://:pw@redis.example/3"}, id="url"),
    pytest.param({"REDIS_URL": "rediss://redis.example:6380/0"}, id="tls-url"),
    pytest.param({"REDIS_URL": "unix:///run/redis.sock?db=2"}, id="unix-url"),
    pytest.param({"REDIS_HOST": "redis.example", "REDIS_PORT": "6390"}, id="keys"),
    pytest.param(
        {
            "REDIS_SSL": True,
            "REDIS_SSL_CA_CERTS": EXISTING_FILE,
            "REDIS_HEALTH_CHECK_INTERVAL": 10,
        },
        id="tls-keys",
    ),
    pytest.param(
        {"REDIS_CONNECTION_POOL_CLASS": BLOCKING, "REDIS_MAX_CONNECTIONS": 4},
        id="blocking-pool",
    ),
    pytest.param({"REDIS_CLASS": "redis.asyncio.Redis"}, id="asyncio"),
]


@pytest.mark.parametrize("config", GOOD_CONFIGS)
def test_init_app_makes_no_connection(
    make_app: MakeApp, config: dict[str, Any]
) -> None:
    app = Flask(__name__) if "REDIS_CLASS" in config else make_app()
    app.config.update(config)

    Redis(app)  # the no_network fixture fails the test on any connection


# -- Generated configurations ------------------------------------------------------

# Passwords are two tokens around a character that URLs treat specially, so
# that a message showing a misread part of a URL shows a token.
_TOKEN_LETTERS = "QXZJKVW"
_TOKEN = st.text(alphabet=_TOKEN_LETTERS, min_size=8, max_size=10)
_SEPARATOR = st.sampled_from(["", "/", "@", ":", "?", "#", "%", " ", "&", "=", "%40"])
_PASSWORDS = st.tuples(_TOKEN, _SEPARATOR, _TOKEN)

_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True),
    st.text(st.characters(exclude_characters=_TOKEN_LETTERS), max_size=12),
    st.lists(st.integers(), max_size=2),
    st.sampled_from(["0", "1", "true", "none", "6379", "0.5", "/tmp", MISSING]),
)
_SUFFIXES = [
    "HOST",
    "PORT",
    "DB",
    "USERNAME",
    "SOCKET_TIMEOUT",
    "SOCKET_CONNECT_TIMEOUT",
    "SOCKET_KEEPALIVE",
    "DECODE_RESPONSES",
    "ENCODING",
    "MAX_CONNECTIONS",
    "HEALTH_CHECK_INTERVAL",
    "PROTOCOL",
    "CLIENT_NAME",
    "UNIX_SOCKET_PATH",
    "RETRY_ON_TIMEOUT",
    "SSL",
    "SSL_CA_CERTS",
    "SSL_CERT_REQS",
    "SSL_CHECK_HOSTNAME",
    "CONNECTION_POOL_TIMEOUT",
    "NO_SUCH_KEYWORD",
]
_CLASSES = st.sampled_from(
    [None, "redis.Redis", "redis.StrictRedis", "redis.NoSuch", "no.such", "", "os", 7]
)
_POOLS = st.sampled_from([None, BLOCKING, "redis.ConnectionPool", "redis.Redis", 3])


@st.composite
def _urls(draw: st.DrawFn, password: str) -> tuple[str, bool]:
    """A URL, some of them odd, with the password in it in various ways; and
    whether it is where the user name goes (``redis://password@host``)."""
    scheme = draw(st.sampled_from(["redis", "rediss", "unix", "http", "", "REDIS"]))
    escaped = draw(st.booleans())
    secret = quote(password, safe="") if escaped else password
    user = draw(st.sampled_from(["", "app", "a:b"]))
    # Unescaped, a ":" in the password would make its start a user name.
    as_name = f"{quote(password, safe='')}@"
    userinfo = draw(st.sampled_from(["", f"{user}:{secret}@", as_name]))
    host = draw(st.sampled_from(["", "localhost", "127.0.0.1", "[::1]", "/run/r.sock"]))
    port = draw(st.sampled_from(["", ":6379", ":0", ":x", ":99999"]))
    path = draw(st.sampled_from(["", "/", "/0", "/15/", "/x", "/0/1"]))
    queries = ["", "?db=1", "?socket_timeout=2", "?colour=red", "?ssl_cert_reqs=none"]
    as_username = userinfo == as_name
    if not as_username:
        queries += [f"?password={secret}", "?db=x&db=2"]
    query = draw(st.sampled_from(queries))
    return f"{scheme}://{userinfo}{host}{port}{path}{query}", as_username


@st.composite
def _configs(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    """A config for prefix REDIS, and the tokens of its password.

    A user name is no secret, but one without a password is shown masked:
    it is often a password in the wrong place of a URL. So when the URL has
    the password where the user name goes, no other key gives a password.
    """
    first, separator, second = draw(_PASSWORDS)
    password = f"{first}{separator}{second}"
    config: dict[str, Any] = {}
    as_username = False
    if draw(st.booleans()):
        config["REDIS_URL"], as_username = draw(_urls(password))
    for suffix in draw(st.lists(st.sampled_from(_SUFFIXES), max_size=4, unique=True)):
        config[f"REDIS_{suffix}"] = draw(_JUNK)
    if not as_username and draw(st.booleans()):
        config["REDIS_PASSWORD"] = password
    if draw(st.booleans()):
        config["REDIS_SSL_PASSWORD"] = password
    if draw(st.booleans()):
        options = draw(st.dictionaries(st.sampled_from(["db", "port", "x"]), _JUNK))
        if not as_username and draw(st.booleans()):
            options["password"] = password
        config["REDIS_OPTIONS"] = options
    if (client_class := draw(_CLASSES)) is not None:
        config["REDIS_CLASS"] = client_class
    if (pool_class := draw(_POOLS)) is not None:
        config["REDIS_CONNECTION_POOL_CLASS"] = pool_class
    return config, [first, second]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(generated=_configs())
def test_any_config_either_works_or_fails_with_a_configuration_error(
    generated: tuple[dict[str, Any], list[str]],
) -> None:
    config, secrets = generated
    app = Flask(__name__)
    app.config.update(config)
    records = _Records()
    root = logging.getLogger()
    level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    shown: list[str] = []
    # redis-py warns about its deprecated keywords (REDIS_RETRY_ON_TIMEOUT):
    # the warnings are its to give, and are looked at for secrets too.
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always", DeprecationWarning)
        try:
            redis = Redis(app)
        except ConfigurationError as error:
            shown += [str(error), repr(error), error.key]
            shown.append("".join(traceback.format_exception(error)))
        else:
            settings_ = redis.settings_for(app)
            shown += [repr(redis), repr(settings_), settings_.url]
            shown.append(repr(settings_.masked_kwargs()))
            redis.connection.close()
        finally:
            root.removeHandler(records)
            root.setLevel(level)
    shown += [record.getMessage() for record in records.records]
    shown += [str(warning.message) for warning in warned]
    assert all(issubclass(warning.category, DeprecationWarning) for warning in warned)

    leaks = [text for text in shown if any(secret in text for secret in secrets)]
    assert leaks == []
