"""Bad configuration fails at init_app, naming the key, without network I/O.

One table of bad configurations, each tried through ``Redis(app)``,
``init_app`` and ``client_settings_from_config``; the config prefixes that
``Redis`` refuses; and a property test over generated configurations. The
network is cut (the ``no_network`` fixture): a config error must never wait
for a connection. Good configurations are in test_config.py.
"""

from __future__ import annotations

import inspect
import logging
import re
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_and_redis import (
    ClusterSettings,
    ConfigurationError,
    Redis,
    client_settings_from_config,
    mask_url,
)

MakeApp = Callable[..., Flask]

pytestmark = pytest.mark.usefixtures("no_network")

PW = "Hunter2-pa55word"  # a password that must never show in an error
FILE = __file__
DIR = str(Path(__file__).parent)
MISSING = "/nonexistent/flask-and-redis"
BLOCKING = "redis.BlockingConnectionPool"
ABLOCKING = "redis.asyncio.BlockingConnectionPool"
A_URL = "'redis://[[user]:password@]host[:port][/db]'"  # the first URL form listed
TLS_ON, TLS_OFF = "TLS is on", "TLS is off"
BOTH = "cannot be combined with the unix socket"
A_DICT = "a dict of keyword arguments"
# Configs too long for a row.
ASYNCIO_POOL_FOR_SYNC = {"CONNECTION_POOL_CLASS": ABLOCKING}
SYNC_POOL_FOR_ASYNCIO = {
    "CLASS": "redis.asyncio.Redis",
    "CONNECTION_POOL_CLASS": BLOCKING,
}
TWO_POOLS = {
    "CONNECTION_POOL_CLASS": BLOCKING,
    "OPTIONS": {"connection_pool": object()},
}
PLAIN_POOL_TIMEOUT = {
    "CONNECTION_POOL_CLASS": "redis.ConnectionPool",
    "CONNECTION_POOL_TIMEOUT": 5,
}
ZERO_POOL_TIMEOUT = {"CONNECTION_POOL_CLASS": BLOCKING, "CONNECTION_POOL_TIMEOUT": 0}
HAS_DRIVER_INFO = "driver_info" in inspect.signature(redis.Redis.__init__).parameters
DROPPED_BY_A_CLUSTER = {"CLUSTER_NODES": ["n1:7000"], "HEALTH_CHECK_INTERVAL": 5}
INFINITE_POOL_TIMEOUT = {
    "CONNECTION_POOL_CLASS": BLOCKING,
    "CONNECTION_POOL_TIMEOUT": "inf",
}
NODES = {"cluster_nodes": ["n1:7000"]}  # not a client keyword


def bad(
    key: str,
    accepted: str,
    shown: str | None = None,
    /,
    *,
    init: dict[str, Any] | None = None,
    **config: Any,
) -> Any:
    """A row: the key the error names, a fragment of what it says is accepted,
    and what it shows of the bad value (by default the key's value, masked as
    :func:`mask_url` masks it); the config; the keyword arguments given in
    code, ``config_prefix`` among them. Config keys, and a key the error names
    that starts with a capital, are written without their prefix."""
    init = init or {}
    prefix = init.get("config_prefix", "REDIS")
    config = {f"{prefix}_{name}": value for name, value in config.items()}
    key = f"{prefix}_{key}" if key[0].isupper() else key
    if shown is None:
        value = config[key]
        shown = repr(mask_url(value) if isinstance(value, str) else value)
    label = ",".join(f"{name}={value!r}" for name, value in {**config, **init}.items())
    label = re.sub(" at 0x[0-9a-f]+", "", label)  # the same id on every run
    return pytest.param(config, key, accepted, shown, init, id=label)


BAD_CONFIGS = [
    # bad(key named, what is accepted, [what is shown], config without the prefix)
    # The discrete keys: types and ranges.
    bad("PORT", "1 to 65535", PORT="six", PASSWORD=PW),
    bad("PORT", "1 to 65535", PORT="6380.5"),
    bad("PORT", "1 to 65535", PORT=6379.5),
    bad("PORT", "1 to 65535", PORT=0),
    bad("PORT", "1 to 65535", PORT=70000),
    bad("PORT", "1 to 65535", PORT="70000"),
    bad("PORT", "1 to 65535", PORT=True),
    bad("DB", "0 or more", DB=-1, PASSWORD=PW),
    bad("DB", "0 or more", DB="-1"),
    bad("DB", "0 or more", DB="first"),
    bad("DB", "0 or more", DB=[0]),
    bad("HOST", "a host name or address", HOST="", PASSWORD=PW),
    bad("HOST", "a host name or address", HOST="exa mple.com"),
    bad("HOST", "a host name or address", HOST=12.5),
    bad("HOST", "go in the _URL key", HOST=f"user:{PW}@example.com"),
    bad("HOST", "go in the _URL key", HOST="example.com/0"),
    bad("HOST", "go in the _URL key", HOST="redis://example.com"),
    bad("HOST", "go in the _URL key", HOST="host:6379"),
    bad("HOST", "goes in the _URL key", HOST="unix:///run/redis.sock?db=2"),
    bad("HOST", "goes in the _URL key", HOST=f"unix://app:{PW}@/run/redis.sock"),
    bad("PASSWORD", "a string", "***", PASSWORD=[PW]),
    bad("PASSWORD", "a string", "***", PASSWORD=b"pw"),
    bad("USERNAME", "a string", USERNAME=["app"]),
    bad("CLIENT_NAME", "a string", CLIENT_NAME=["web"]),
    bad("SOCKET_TIMEOUT", "greater than 0", SOCKET_TIMEOUT=0),
    bad("SOCKET_TIMEOUT", "greater than 0", SOCKET_TIMEOUT=-1, PASSWORD=PW),
    bad("SOCKET_TIMEOUT", "greater than 0", SOCKET_TIMEOUT="-1.5"),
    bad("SOCKET_TIMEOUT", "greater than 0", SOCKET_TIMEOUT="soon"),
    bad("SOCKET_CONNECT_TIMEOUT", "greater than 0", SOCKET_CONNECT_TIMEOUT=[5]),
    bad("SOCKET_KEEPALIVE", "true or false", SOCKET_KEEPALIVE="maybe"),
    bad("DECODE_RESPONSES", "yes/no, on/off, 1/0", DECODE_RESPONSES="maybe"),
    bad("DECODE_RESPONSES", "true or false", DECODE_RESPONSES=2),
    bad("SSL", "true or false", SSL="sure"),
    bad("ENCODING", "a codec name", ENCODING="utf-99"),
    bad("MAX_CONNECTIONS", "greater than 0", MAX_CONNECTIONS=0),
    bad("MAX_CONNECTIONS", "greater than 0", MAX_CONNECTIONS="many"),
    bad("HEALTH_CHECK_INTERVAL", "0 or more", HEALTH_CHECK_INTERVAL="-1"),
    bad("PROTOCOL", "2 or 3", PROTOCOL=4, PASSWORD=PW),
    bad("PROTOCOL", "2 or 3", PROTOCOL="resp3"),
    bad("SINGLE_CONNECTION_CLIENT", "MAX_CONNECTIONS = 1", SINGLE_CONNECTION_CLIENT=1),
    # Misspelt keys.
    bad("SOCKET_TIMOUT", "did you mean REDIS_SOCKET_TIMEOUT?", "", SOCKET_TIMOUT=1),
    bad("PASWORD", "did you mean REDIS_PASSWORD?", "", PASWORD=PW),
    bad("URI", "did you mean REDIS_URL?", "", URI="redis://h"),
    bad("OPTIONSS", "did you mean REDIS_OPTIONS?", "", OPTIONSS={}),
    # URLs.
    bad("URL", A_URL, URL=f"http://app:{PW}@example.com/0"),
    bad("URL", A_URL, URL="example.com:6379", PASSWORD=PW),
    bad("URL", A_URL, URL=f"app:{PW}@example.com:6379/0"),
    bad("URL", A_URL, URL=f"redis://app:{PW}@[::1"),
    bad("URL", A_URL, URL=f"redis://app:{PW}\uff20x@example.com/0"),
    bad("URL", A_URL, URL=6379, PASSWORD=PW),
    bad("URL", A_URL, URL=b"redis://example.com"),
    bad("URL", A_URL, URL="", PASSWORD=PW),
    bad("URL", "1 to 65535", URL=f"redis://app:{PW}@example.com:six/0"),
    bad("URL", "1 to 65535", URL=f"redis://app:{PW}@example.com:0/0"),
    bad("URL", "1 to 65535", URL=f"rediss://app:{PW}@example.com:99999/0"),
    bad("URL", "a database number such as /0", URL=f"redis://:{PW}@h/abc"),
    bad("URL", "a database number such as /0", URL="redis://h/-1"),
    bad("URL", "a database number such as /0", URL=f"redis://:p@{PW}@h/abc"),
    bad("URL", "0 or more", "db='-1'", URL=f"redis://:{PW}@h/0?db=-1"),
    bad("URL", "0 or more", "db='x'", URL="redis://h/?db=x"),
    bad("URL", "greater than 0", "='no'", URL="redis://h?socket_timeout=no"),
    bad("URL", "greater than 0", "='-1'", URL="redis://h?socket_timeout=-1"),
    bad("URL", "true or false", "'maybe'", URL="redis://h?decode_responses=maybe"),
    bad("URL", "2 or 3", "protocol='4'", URL=f"redis://:{PW}@h?protocol=4"),
    bad("URL", "'protocol'?", "'protocl'", URL=f"redis://:{PW}@h?protocl=3"),
    bad("URL", "use a rediss:// URL", "TLS is on", URL=f"redis://:{PW}@h/0?ssl=true"),
    bad("URL", "'unix:///run/redis.sock'", URL="unix://run/redis.sock"),
    bad("URL", "'unix:///run/redis.sock'", URL=f"unix://app:{PW}@run/redis.sock"),
    bad("URL", "Percent-encode", URL="redis://:12/34@host/0"),
    bad("URL", "Percent-encode", URL="redis://:ab?db=c@host/0"),
    bad("URL", "Percent-encode", URL=f"redis://app:p@{PW}/x@example.com/0"),
    bad("URL", "%23", URL="redis://h/0?password=a#b"),
    bad("URL", "%26", URL="redis://h/0?password=a&b"),
    bad("URL", "existing file", MISSING, URL=f"rediss://h?ssl_ca_certs={MISSING}"),
    bad("URL", "REDIS_SSL = True", TLS_OFF, URL=f"redis://h?ssl_certfile={FILE}"),
    bad("URL", "REDIS_SSL = True", TLS_OFF, URL=f"redis://:{PW}@h?ssl_cert_reqs=none"),
    # Client classes.
    bad("CLASS", "a client class", CLASS="no.such.module.Redis", PASSWORD=PW),
    bad("CLASS", "a client class", CLASS="redis.NoSuchRedis"),
    bad("CLASS", "a client class", CLASS=42),
    bad("CLASS", "a client class", CLASS="os.path"),
    bad("CLASS", "a client class", CLASS="os.path.join"),
    bad("CLASS", "a client class", CLASS=f"redis://user:{PW}@h:6379/0"),
    bad("PORT", "help(builtins.object)", "'port'", CLASS="builtins.object", PORT=1),
    # Options.
    bad("OPTIONS", A_DICT, "a str", OPTIONS="socket_timeout=5"),
    bad("OPTIONS", A_DICT, "a str", OPTIONS=f"password={PW}"),
    bad("OPTIONS", A_DICT, "a list", OPTIONS=[("password", PW)]),
    bad("OPTIONS['pasword']", "did you mean 'password'?", "", OPTIONS={"pasword": PW}),
    bad("OPTIONS[1]", "a keyword argument name", "1", OPTIONS={1: 2}),
    bad("OPTIONS['port']", "1 to 65535", "'x'", OPTIONS={"port": "x", "password": PW}),
    bad("OPTIONS['ssl_password']", "rediss://", TLS_OFF, OPTIONS={"ssl_password": PW}),
    bad("OPTIONS['sentinels']", "set REDIS_SENTINELS", "", OPTIONS={"sentinels": "s"}),
    # Unix sockets.
    bad("PORT", BOTH, HOST="/run/redis.sock", PORT=6380, PASSWORD=PW),
    bad("PORT", BOTH, "'/r.sock'", HOST="unix:///r.sock", PORT="6380"),
    bad("OPTIONS['port']", BOTH, "1", OPTIONS={"unix_socket_path": "/s", "port": 1}),
    bad("UNIX_SOCKET_PATH", "keep one of them", HOST="/a", UNIX_SOCKET_PATH="/b"),
    bad("UNIX_SOCKET_PATH", "a unix socket", UNIX_SOCKET_PATH=""),
    bad("UNIX_SOCKET_PATH", "a unix socket", UNIX_SOCKET_PATH=" "),
    # TLS.
    bad("SSL", "use a rediss:// URL", TLS_ON, URL=f"redis://:{PW}@h/0", SSL=True),
    bad("OPTIONS['ssl']", "rediss://", TLS_ON, URL="redis://h", OPTIONS={"ssl": 1}),
    bad("SSL", "connect to a host and port", TLS_ON, HOST="/run/r.sock", SSL="true"),
    bad("SSL", "a host and port", TLS_ON, URL=f"unix://:{PW}@/r.sock", SSL=True),
    bad("SSL_CA_CERTS", "existing file", SSL=True, SSL_CA_CERTS=MISSING, PASSWORD=PW),
    bad("SSL_CERTFILE", "an existing file", SSL=True, SSL_CERTFILE=MISSING),
    bad("SSL_CERTFILE", "an existing file", SSL=True, SSL_CERTFILE=DIR),
    bad("SSL_KEYFILE", "an existing file", SSL=True, SSL_KEYFILE=DIR),
    bad("SSL_CA_PATH", "an existing directory", SSL=True, SSL_CA_PATH=MISSING),
    bad("SSL_CERT_REQS", "'optional' or 'none'", SSL=True, SSL_CERT_REQS="sometimes"),
    bad("SSL_CA_CERTS", "REDIS_SSL = True", TLS_OFF, SSL_CA_CERTS=FILE, PASSWORD=PW),
    bad("SSL_CERT_REQS", "REDIS_SSL = True", TLS_OFF, SSL=False, SSL_CERT_REQS="none"),
    # Connection pools.
    bad("CONNECTION_POOL_CLASS", "pool class", CONNECTION_POOL_CLASS="no.such.Pool"),
    bad("CONNECTION_POOL_CLASS", "pool class", CONNECTION_POOL_CLASS="redis.Redis"),
    bad("CONNECTION_POOL_CLASS", "pool class", CONNECTION_POOL_CLASS=f"redis://{PW}@h"),
    bad("CONNECTION_POOL_CLASS", "pool class", ABLOCKING, **ASYNCIO_POOL_FOR_SYNC),
    bad("CONNECTION_POOL_CLASS", "pool class", BLOCKING, **SYNC_POOL_FOR_ASYNCIO),
    bad("CONNECTION_POOL_CLASS", "cannot be combined with", BLOCKING, **TWO_POOLS),
    bad("CONNECTION_POOL_TIMEOUT", BLOCKING, CONNECTION_POOL_TIMEOUT=5),
    bad("CONNECTION_POOL_TIMEOUT", BLOCKING, "ConnectionPool()", **PLAIN_POOL_TIMEOUT),
    bad("CONNECTION_POOL_TIMEOUT", "greater than 0", **ZERO_POOL_TIMEOUT),
    # Values that redis-py takes without a word and fails on at first use.
    bad("HOST", "a host name or address", HOST="127.0.0.1\x00evil.example"),
    bad("HOST", "a host name or address", HOST="redis\tinternal"),
    bad("HOST", "a host name or address", HOST="redis..internal"),
    bad("HOST", "a host name or address", HOST=f"{'a' * 64}.example"),
    bad("HOST", "a host name or address", HOST="-redis.internal"),
    bad("HOST", "a host name or address", HOST="h" * 10_000),
    bad("URL", "a host name or address", "host=", URL="redis://127.0.0.1%00evil/0"),
    bad("URL", "a host name or address", "host=", URL="redis://a..b:6379/0"),
    bad("UNIX_SOCKET_PATH", "a unix socket", UNIX_SOCKET_PATH="/run/r\x00.sock"),
    bad("URL", "a unix socket", "path=", URL="unix:///run/r%00.sock"),
    bad("SENTINELS", "addresses", SENTINELS=["s1\x00evil:26379"], SENTINEL_MASTER="m"),
    bad("SOCKET_TIMEOUT", "up to a day", SOCKET_TIMEOUT=float("inf")),
    bad("SOCKET_TIMEOUT", "up to a day", SOCKET_TIMEOUT=1e12),
    bad("SOCKET_CONNECT_TIMEOUT", "up to a day", SOCKET_CONNECT_TIMEOUT="inf"),
    bad("URL", "up to a day", "='inf'", URL="redis://h?socket_timeout=inf"),
    bad("HEALTH_CHECK_INTERVAL", "0 or more", HEALTH_CHECK_INTERVAL=float("nan")),
    bad("CONNECTION_POOL_TIMEOUT", "up to a day", **INFINITE_POOL_TIMEOUT),
    bad("ENCODING", "a codec name", ENCODING="rot13"),
    bad("ENCODING_ERRORS", "an error handler", ENCODING_ERRORS="bogus"),
    bad("CONNECTION_POOL", "_CONNECTION_POOL_CLASS", CONNECTION_POOL=BLOCKING),
    bad("CACHE_CONFIG", "takes an object", CACHE_CONFIG="redis.cache.CacheConfig"),
    # (A keyword of redis-py 8 and later.)
    *[bad("DRIVER_INFO", "takes an object", DRIVER_INFO="my-app")] * HAS_DRIVER_INFO,
    bad("EVENT_DISPATCHER", "takes an object", EVENT_DISPATCHER="x"),
    bad("RETRY", "takes an object", RETRY="redis.retry.Retry"),
    bad("HEALTH_CHECK_INTERVAL", "up to a day", HEALTH_CHECK_INTERVAL=None),
    # Keywords a cluster client would drop without a word.
    bad("HEALTH_CHECK_INTERVAL", "REDIS_ALLOWED_KEYS", "", **DROPPED_BY_A_CLUSTER),
    bad("SSL_VALIDATE_OCSP", "REDIS_ALLOWED_KEYS", "", CLUSTER=1, SSL_VALIDATE_OCSP=1),
    # Misspelt URLs show no part of their userinfo.
    bad("URL", "'://'", URL=f"redis:/:{PW}@h/0"),
    bad("URL", "'://'", URL=f"redis::{PW}@h/0"),
    bad("URL", "'://'", URL=f"rediss:/app:{PW}@h/0"),
    bad("URL", "'://'", URL=f"unix:/:{PW}@/run/redis.sock"),
    # Keyword arguments given in code, and another prefix.
    bad("keyword argument 'prot'", "did you mean 'port'?", "", init={"prot": 1}),
    bad("keyword argument 'db'", "0 or more", "-1", init={"db": -1, "password": PW}),
    bad("keyword argument 'ssl'", "true or false", "2", init={"ssl": 2}),
    bad("keyword argument 'cluster_nodes'", "set REDIS_CLUSTER_NODES", "", init=NODES),
    bad("PORT", "1 to 65535", init={"config_prefix": "CACHE"}, PORT="bad"),
]


@pytest.mark.parametrize("through", ["Redis(app)", "init_app", "settings"])
@pytest.mark.parametrize(("config", "key", "accepted", "shown", "init"), BAD_CONFIGS)
def test_a_bad_config_fails_naming_its_key(
    make_app: MakeApp,
    through: str,
    config: dict[str, Any],
    key: str,
    accepted: str,
    shown: str,
    init: dict[str, Any],
) -> None:
    app = make_app(**config)
    code = {name: value for name, value in init.items() if name != "config_prefix"}
    prefix = init.get("config_prefix", "REDIS")

    with pytest.raises(ConfigurationError) as caught:
        if through == "Redis(app)":
            Redis(app, **init)
        elif through == "init_app":
            Redis().init_app(app, **init)
        else:
            # What the client refuses as it is built, building it reports.
            settings = client_settings_from_config(app.config, prefix, defaults=code)
            settings.create_client()

    error = caught.value
    assert isinstance(error, ValueError)
    assert error.key == key
    assert key in str(error)
    assert shown in str(error)
    assert accepted in str(error)
    assert all(PW not in text for text in (str(error), repr(error), *error.args))
    assert app.extensions.get("redis", {}) == {}


@pytest.mark.parametrize(
    "prefix", ["redis_", "REDIS_", "", "1X", "RE DIS", "RE-DIS", 3]
)
def test_a_bad_config_prefix_is_refused(make_app: MakeApp, prefix: Any) -> None:
    app = make_app()
    for attempt in (
        lambda: Redis(config_prefix=prefix),
        lambda: Redis(app, config_prefix=prefix),
        lambda: Redis().init_app(app, config_prefix=prefix),
    ):
        with pytest.raises(ConfigurationError) as caught:
            attempt()
        assert caught.value.key == "config_prefix"
        assert repr(prefix) in str(caught.value)
        assert "starting with a letter" in str(caught.value)
    assert "redis" not in app.extensions


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
    schemes = ["redis", "rediss", "unix", "http", "", "REDIS", "redis:", "redis:/"]
    scheme = draw(st.sampled_from([*schemes, "redis+sentinel", "rediss+cluster"]))
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
    if draw(st.booleans()):  # the sentinels' own password, in two places
        config["REDIS_SENTINELS"] = draw(st.sampled_from(["s1:26379", ["s1", "s2"]]))
        config["REDIS_SENTINEL_MASTER"] = "mymaster"
        if draw(st.booleans()):
            config["REDIS_SENTINEL_PASSWORD"] = password
        if draw(st.booleans()):
            config["REDIS_SENTINEL_OPTIONS"] = {"password": password}
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
            shown.append(app.test_cli_runner().invoke(args=["redis", "config"]).output)
            if not isinstance(settings_, ClusterSettings):  # built, and connecting,
                redis.connection.close()  # on first use
        finally:
            root.removeHandler(records)
            root.setLevel(level)
    shown += [record.getMessage() for record in records.records]
    shown += [str(warning.message) for warning in warned]
    assert all(issubclass(warning.category, DeprecationWarning) for warning in warned)

    leaks = [text for text in shown if any(secret in text for secret in secrets)]
    assert leaks == []
