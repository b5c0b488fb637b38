"""Flask-And-Redis: the Redis connection manager for Flask.

Configure Redis the way the rest of a Flask app is configured -- ``REDIS_URL``
or ``REDIS_HOST``/``REDIS_PORT``/``REDIS_DB``/``REDIS_PASSWORD``, a client
class, a prefix per database -- and get a ready client on ``redis.connection``
and ``app.extensions["redis"][prefix]``, with every client method callable on
the extension itself::

    from flask import Flask
    from flask_and_redis import Redis

    app = Flask(__name__)
    app.config["REDIS_URL"] = "redis://localhost:6379/0"
    redis = Redis(app)

    with app.app_context():
        redis.set("greeting", "hello")

The module is the whole runtime: it can be installed or copied into a project.
Its sections, top to bottom: configuration (pure functions from app config to
client keyword arguments), client construction (including following Sentinel
failovers), the extension, the ``flask redis`` command, and integrations with
other Flask extensions.
"""

from __future__ import annotations

import asyncio
import codecs
import copy
import dataclasses
import difflib
import functools
import inspect
import ipaddress
import logging
import os
import pkgutil
import re
import ssl
import sys
import threading
import time
import typing as t
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import click
from flask import Flask
from flask.cli import AppGroup

try:  # The context variable behind flask.current_app: one C call, no proxy.
    from flask.globals import _cv_app as _app_context
except ImportError:  # pragma: no cover - only a future Flask would lack it
    from flask.globals import app_ctx as _app_ctx_proxy

    class _AppContextVar:
        def get(self, default: t.Any) -> t.Any:
            try:
                return _app_ctx_proxy._get_current_object()  # type: ignore[attr-defined]
            except RuntimeError:
                return default

    _app_context = _AppContextVar()  # type: ignore[assignment]

# Bound once: CPython compiles a call on an imported name (_app_context.get(…))
# without its method-call fast path, so each call would make a bound method.
_current_app_context = _app_context.get

if t.TYPE_CHECKING:
    # For type checkers the extension is a redis-py client, so that calls
    # through it are checked against redis-py's own signatures; at run time
    # it is a plain class that hands each call to the current app's client.
    from redis import Redis as _ClientInterface
    from typing_extensions import TypeVar

    #: The class of the clients an extension makes (``redis.Redis`` unless
    #: annotated otherwise, or inferred from a custom provider).
    ClientT = TypeVar("ClientT", default=_ClientInterface)
else:

    class _ClientInterface:
        __slots__ = ()

    ClientT = t.TypeVar("ClientT")

__all__ = [
    "ClientSettings",
    "ClusterSettings",
    "CACHE_CONFIG_PREFIX_KEY",
    "ConfigurationError",
    "LoopLocalClient",
    "Redis",
    "SentinelSettings",
    "client_settings_from_config",
    "flask_caching_backend",
    "mask_url",
]
__version__ = "2.0.0.dev0"

logger = logging.getLogger("flask_and_redis")

_DEFAULT_CLIENT_CLASS = "redis.Redis"
_CLUSTER_CLIENT_CLASS = "redis.cluster.RedisCluster"

# Keys of a prefix that are not client keyword arguments.
_OWN_KEYS = (
    "URL",
    "CLASS",
    "OPTIONS",
    "CONNECTION_POOL_CLASS",
    "CONNECTION_POOL_TIMEOUT",
    "CLUSTER",
    "CLUSTER_NODES",
    "SENTINELS",
)
# Keys for the connections to the sentinels, not to the master.
_SENTINEL_KEYS = (
    "SENTINEL_MASTER",
    "SENTINEL_USERNAME",
    "SENTINEL_PASSWORD",
    "SENTINEL_OPTIONS",
)


class ConfigurationError(ValueError):
    """A configuration value that Flask-And-Redis cannot use.

    Raised by :meth:`Redis.init_app` (and :func:`client_settings_from_config`)
    before any connection is made. The message names the config key, shows the
    value with secrets masked, and says what is accepted.

    :param key: the config key (``"REDIS_PORT"``) or the place the value came
        from (``"REDIS_OPTIONS['socket_timeout']"``).
    :param message: what is wrong and what is accepted.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


# -- Configuration: showing values without secrets ---------------------------

_SECRET_NAME = re.compile(r"password|secret|token|credential", re.IGNORECASE)
_QUERY_SECRET = re.compile(
    # The value runs to the next "&name=": an "&" in a password may be unescaped.
    r"[?&][^=&#]*(?:password|secret|token)[^=&#]*=(?P<value>(?:[^&]|&(?![^&=#]*=))*)",
    re.IGNORECASE,
)
_MASK = "***"


def mask_url(url: str) -> str:
    """Return *url* with its password replaced by ``***``.

    ``redis://user:pw@host/0`` becomes ``redis://user:***@host/0``. Userinfo
    without a ``:`` is masked whole, since some clients read it as a password.
    Password query options (``?password=…``) are masked too.
    """
    secrets = [match.span("value") for match in _QUERY_SECRET.finditer(url)]
    # The userinfo ends at the last "@": passwords may contain unescaped "@"
    # and "/", which urlsplit would misread. A "?password=" value with an "@"
    # reads as userinfo too: masking both readings hides it either way.
    head, at, _ = url.rpartition("@")
    scheme, separator, userinfo = head.partition("://")
    if not separator:  # no scheme: "user:password@host"
        scheme, userinfo = "", head
    if at:
        username, colon, _ = userinfo.partition(":")
        start = len(scheme) + len(separator) + (len(username) + 1 if colon else 0)
        secrets.append((start, len(head)))
    shown, end = [], 0
    for start, stop in sorted(secrets):
        if start >= end:  # not within the last secret
            shown.append(url[end:start] + _MASK)
        end = max(end, stop)
    return "".join(shown) + url[end:]


def _show(key: str, value: object) -> str:
    """The value of a config key as an error message shows it."""
    if _SECRET_NAME.search(key):
        return _MASK
    if isinstance(value, str) and ("://" in value or "@" in value):
        return repr(mask_url(value))
    if isinstance(value, Mapping):
        shown = ", ".join(
            f"{name!r}: {_show(str(name), item)}" for name, item in value.items()
        )
        return f"{{{shown}}}"
    return repr(value)


# -- Configuration: accepted values --------------------------------------------


class _Kind(t.NamedTuple):
    """How one client keyword is read from config: what is accepted, and how."""

    expected: str
    coerce: Callable[[object], object]


_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f"})
_NONE = frozenset({"", "none", "null"})


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError(value)


def _to_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value.strip())
    raise ValueError(value)


def _to_float(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return float(value.strip())
    raise ValueError(value)


def _is_none(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _NONE)


def _checked(
    convert: Callable[[object], t.Any], check: Callable[[t.Any], bool]
) -> Callable[[object], object]:
    def coerce(value: object) -> object:
        converted = convert(value)
        if not check(converted):
            raise ValueError(value)
        return converted

    return coerce


def _or_none(coerce: Callable[[object], object]) -> Callable[[object], object]:
    def coerce_or_none(value: object) -> object:
        return None if _is_none(value) else coerce(value)

    return coerce_or_none


def _text(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # from_prefixed_env reads FLASK_REDIS_PASSWORD=1234 as JSON
    if not isinstance(value, str):
        raise ValueError(value)
    return value


def _optional(coerce: Callable[[object], object]) -> Callable[[object], object]:
    """Accept None as well; unlike _or_none, a string is never read as None."""

    def coerce_optional(value: object) -> object:
        return None if value is None else coerce(value)

    return coerce_optional


def _host(value: object) -> str:
    host = _text(value).strip()
    # Credentials or a URL here would end up in ClientSettings.url, shown in
    # reprs, logs and the CLI; ":" only as in an IPv6 address.
    if not host or any(char.isspace() or char in "@/" for char in host):
        raise ValueError(value)
    if ":" in host:
        ipaddress.IPv6Address(host)  # raises ValueError
    return host


def _socket_file(value: object) -> str:
    path = _text(value).strip()
    if not path:
        raise ValueError(value)
    return path


def _existing(is_there: Callable[[str], bool]) -> Callable[[object], object]:
    """A path (a string or os.PathLike) that *is_there* finds."""

    def existing_path(value: object) -> str:
        path = os.fspath(value) if isinstance(value, os.PathLike) else _text(value)
        if not is_there(str(path)):
            raise ValueError(value)
        return str(path)

    return existing_path


def _cert_reqs(value: object) -> object:
    if isinstance(value, ssl.VerifyMode):
        return value
    if isinstance(value, str) and value.strip().lower() in (
        "none",
        "optional",
        "required",
    ):
        return value.strip().lower()
    raise ValueError(value)


def _encoding(value: object) -> str:
    name = _text(value)
    try:
        codecs.lookup(name)
    except LookupError:
        raise ValueError(value) from None
    return name


def _load_balancing_strategy(value: object) -> object:
    from redis.cluster import LoadBalancingStrategy

    if isinstance(value, LoadBalancingStrategy):
        return value
    return LoadBalancingStrategy(_text(value).strip().lower())


_SECONDS = _Kind(
    "a number of seconds greater than 0, or None for no timeout",
    _or_none(_checked(_to_float, lambda number: number > 0)),
)
_BOOL = _Kind("true or false (also yes/no, on/off, 1/0)", _to_bool)
_TEXT = _Kind("a string, or None", _optional(_text))
_FILE = _Kind("the path of an existing file", _or_none(_existing(os.path.isfile)))

# What each well-known client keyword accepts. Keywords not listed here are
# read by the type of their default in the client class's signature.
_KINDS: dict[str, _Kind] = {
    "host": _Kind(
        "a host name or address, or a unix socket path; a URL or credentials"
        " go in the _URL key",
        _host,
    ),
    "port": _Kind(
        "an integer port from 1 to 65535",
        _checked(_to_int, lambda port: 0 < port < 65536),
    ),
    "db": _Kind(
        "an integer database number of 0 or more", _checked(_to_int, lambda db: db >= 0)
    ),
    "username": _TEXT,
    "password": _TEXT,
    "unix_socket_path": _Kind("the path of a unix socket", _socket_file),
    "socket_timeout": _SECONDS,
    "socket_connect_timeout": _SECONDS,
    "socket_keepalive": _BOOL,
    "socket_read_size": _Kind(
        "an integer number of bytes greater than 0",
        _checked(_to_int, lambda size: size > 0),
    ),
    "retry_on_timeout": _BOOL,
    "decode_responses": _BOOL,
    "encoding": _Kind("a codec name such as 'utf-8'", _encoding),
    "encoding_errors": _TEXT,
    "max_connections": _Kind(
        "an integer greater than 0, or None for no limit",
        _or_none(_checked(_to_int, lambda count: count > 0)),
    ),
    "health_check_interval": _Kind(
        "a number of seconds of 0 or more (0 turns health checks off)",
        _checked(_to_float, lambda seconds: seconds >= 0),
    ),
    "single_connection_client": _BOOL,
    "client_name": _TEXT,
    "protocol": _Kind(
        "2 or 3 (the RESP protocol version), or None for the client's default",
        _or_none(_checked(_to_int, lambda version: version in (2, 3))),
    ),
    "ssl": _BOOL,
    "ssl_keyfile": _FILE,
    "ssl_certfile": _FILE,
    "ssl_ca_certs": _FILE,
    "ssl_ca_path": _Kind(
        "the path of an existing directory of CA certificates",
        _or_none(_existing(os.path.isdir)),
    ),
    "ssl_ca_data": _Kind("PEM certificate data as a string", _optional(_text)),
    "ssl_cert_reqs": _Kind(
        "'required' (the default), 'optional' or 'none', or an ssl.VerifyMode",
        _cert_reqs,
    ),
    "ssl_check_hostname": _BOOL,
    "ssl_password": _TEXT,
    "ssl_ciphers": _Kind("an OpenSSL cipher string", _optional(_text)),
    "ssl_validate_ocsp": _BOOL,
    "ssl_validate_ocsp_stapled": _BOOL,
    # redis.cluster.RedisCluster; its other options are read by their defaults.
    "load_balancing_strategy": _Kind(
        "'round_robin', 'round_robin_replicas', 'random' or 'random_replica', or a"
        " redis.cluster.LoadBalancingStrategy",
        _or_none(_load_balancing_strategy),
    ),
}

_KIND_BY_DEFAULT_TYPE: dict[type, _Kind] = {
    bool: _BOOL,
    int: _Kind("an integer", _to_int),
    float: _Kind("a number, or None", _or_none(_to_float)),
}


def _kind_of(name: str, default: object) -> _Kind | None:
    kind = _KINDS.get(name)
    if kind is None:
        kind = _KIND_BY_DEFAULT_TYPE.get(type(default))
    return kind


# -- Configuration: the client class -------------------------------------------


def _default_client_class() -> type[t.Any]:
    try:
        import redis
    except ImportError:
        raise ImportError(
            "Flask-And-Redis needs redis-py for its default client class: install"
            " it with 'pip install redis', or configure a client class of your"
            " own (REDIS_CLASS, or Redis.from_custom_provider)."
        ) from None
    return redis.Redis


def _resolve_client_class(value: object, key: str) -> Callable[..., t.Any]:
    """Return the client class named by *value*: a class or a dotted path.

    :param value: a class, or its import path (``"redis.Redis"``,
        ``"package.module:Class"``).
    :param key: the config key it came from, for the error message.
    :raise ConfigurationError: the path does not import or does not name a class.
    """
    if value == _DEFAULT_CLIENT_CLASS:
        return _default_client_class()
    return _resolve_class(
        value,
        key,
        "a client class or its dotted path, such as 'redis.Redis' or"
        " 'redis.asyncio.Redis'",
    )


def _resolve_class(
    value: object,
    key: str,
    expected: str,
    is_wanted: Callable[[type], bool] = lambda resolved: True,
) -> type:
    """The class *value* names: a class, or its dotted path.

    :param value: the configured value.
    :param key: the config key, for the error message.
    :param expected: what is accepted, for the error message.
    :param is_wanted: whether a class is of the kind the key takes.
    :raise ConfigurationError: not importable, or not a wanted class.
    """
    resolved = value
    if isinstance(value, str):
        try:
            resolved = pkgutil.resolve_name(value)
        except (ImportError, AttributeError, ValueError) as error:
            # The reason may quote the value: show it as the value is shown.
            reason = mask_url(str(error).replace(value, mask_url(value)))
            raise ConfigurationError(
                key,
                f"{_show(key, value)} cannot be imported ({reason}); expected"
                f" {expected}.",
            ) from None
    if not isinstance(resolved, type) or not is_wanted(resolved):
        raise ConfigurationError(
            key,
            f"{_show(key, value)} is not {expected.partition(' or ')[0]};"
            f" expected {expected}.",
        )
    return resolved


def _class_name(client_class: Callable[..., t.Any]) -> str:
    """The shortest import path of *client_class*: redis.Redis, not
    redis.client.Redis."""
    module = getattr(client_class, "__module__", None) or ""
    name = getattr(client_class, "__qualname__", None) or repr(client_class)
    parts = module.split(".")
    for length in range(1, len(parts)):
        package = sys.modules.get(".".join(parts[:length]))
        if getattr(package, name, None) is client_class:
            module = ".".join(parts[:length])
            break
    return f"{module}.{name}" if module else name


def _constructor_keywords(
    client_class: Callable[..., t.Any],
) -> dict[str, t.Any] | None:
    """The keyword arguments *client_class* accepts, each with its default.

    Follows ``functools.wraps`` decorators (redis-py 6 and later wrap
    ``Redis.__init__`` in one, which hides its parameters from a plain
    argument-spec reading) and subclasses whose ``__init__`` hands
    ``**kwargs`` on to a base class. ``None`` means any keyword is accepted.
    """
    if not isinstance(client_class, type):
        keywords, open_ended = _keywords_of(inspect.signature(client_class))
        return None if open_ended else keywords
    keywords = {}
    initialisers = [
        vars(klass)["__init__"]
        for klass in client_class.__mro__[:-1]  # object.__init__ takes nothing
        if "__init__" in vars(klass)
    ]
    for initialiser in initialisers:
        found, open_ended = _keywords_of(inspect.signature(initialiser), skip_self=True)
        keywords = found | keywords
        if not open_ended:
            return keywords
    # No __init__ at all takes nothing; a last one with **kwargs keeps them.
    return keywords if not initialisers else None


def _keywords_of(
    signature: inspect.Signature, skip_self: bool = False
) -> tuple[dict[str, t.Any], bool]:
    parameters = list(signature.parameters.values())[1 if skip_self else 0 :]
    keywords = {
        parameter.name: parameter.default
        for parameter in parameters
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    }
    open_ended = any(
        parameter.kind is parameter.VAR_KEYWORD for parameter in parameters
    )
    return keywords, open_ended


# -- Configuration: URLs ---------------------------------------------------------

_URL_SCHEMES = (
    "redis",
    "rediss",
    "unix",
    "redis+sentinel",
    "rediss+sentinel",
    "redis+cluster",
    "rediss+cluster",
)
_URL_EXPECTED = (
    "expected a URL such as 'redis://[[user]:password@]host[:port][/db]',"
    " 'rediss://…' for TLS, 'unix://[[user]:password@]/path/to/redis.sock[?db=0]',"
    " 'redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/master[/db]'"
    " or 'redis+cluster://[[user]:password@]host[:port][,host[:port]…]'"
)
_SENTINEL_PORT = 26379
_REDIS_PORT = 6379


@dataclass(frozen=True)
class _ParsedURL:
    scheme: str
    kwargs: dict[str, object]  # client keywords; query values still as text
    # The addresses of the sentinels or cluster nodes of a multi-host URL.
    nodes: tuple[tuple[str, int], ...] = ()
    service_name: str | None = None  # the master named by a Sentinel URL

    @property
    def topology(self) -> str | None:
        """``"sentinel"`` or ``"cluster"`` for those URLs, else ``None``."""
        return self.scheme.partition("+")[2] or None


def _parse_address(text: str, default_port: int) -> tuple[str, int]:
    """``"host[:port]"`` (``"[::1]:port"`` for IPv6) as ``(host, port)``.

    :raise ValueError: not an address.
    """
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(text)
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:  # a name, an IPv4 address or a bare IPv6 address
        host, port_text = text, ""
    port = _to_int(port_text) if port_text else default_port
    if not 0 < port < 65536:
        raise ValueError(text)
    return _host(host), port


def _address(item: object, default_port: int) -> tuple[str, int]:
    if isinstance(item, str):
        return _parse_address(item, default_port)
    if isinstance(item, (list, tuple)) and len(item) == 2:
        return _host(item[0]), t.cast(int, _KINDS["port"].coerce(item[1]))
    raise ValueError(item)


def _addresses(
    value: object, key: str, default_port: int
) -> tuple[tuple[str, int], ...]:
    """A list of ``"host:port"`` strings (or ``(host, port)`` pairs), or the
    same as one comma-separated string (as the environment gives it)."""
    items = value.split(",") if isinstance(value, str) else value
    try:
        if not isinstance(items, (list, tuple)) or not items:
            raise ValueError(value)
        return tuple(_address(item, default_port) for item in items)
    except (TypeError, ValueError):
        raise ConfigurationError(
            key,
            f"{_show(key, value)} is not a list of addresses; expected 'host:port'"
            f" strings (the port defaults to {default_port}), such as"
            f" ['10.0.0.1:{default_port}', '10.0.0.2:{default_port}'], or the"
            " same as one comma-separated string.",
        ) from None


def _parse_url(url: object, key: str) -> _ParsedURL:
    """Split a Redis URL into client keyword arguments, without coercion.

    Follows redis-py's ``parse_url`` (credentials, host and path are
    percent-decoded; a ``?db=`` option wins over the path) but reports every
    problem instead of ignoring it, and tolerates a trailing slash (``/12/``).
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(
            key, f"{_show(key, url)} is not a URL; {_URL_EXPECTED}."
        )
    _check_url_is_unambiguous(url, key)
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # its message may quote the password
        raise ConfigurationError(
            key, f"{_show(key, url)} cannot be parsed; {_URL_EXPECTED}."
        ) from None
    scheme = parts.scheme.lower()
    try:
        # A list of hosts has no single port: each is read on its own.
        port = None if "+" in scheme else parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ConfigurationError(
            key,
            f"{_show(key, url)} has an invalid port; expected an integer port"
            " from 1 to 65535.",
        )
    if scheme not in _URL_SCHEMES:
        raise ConfigurationError(
            key,
            f"{_show(key, url)} has the scheme {scheme + '://' if scheme else 'none'};"
            f" {_URL_EXPECTED}.",
        )
    if any("=" not in item for item in parts.query.split("&") if item):
        # Most likely the rest of a password with an unescaped "&": do not
        # name it.
        raise ConfigurationError(
            key,
            f"{_show(key, url)} has a query option without a value; write"
            " options as name=value, and percent-encode an '&' in a password"
            " as %26.",
        )
    kwargs: dict[str, object] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        kwargs.setdefault(name, value)
    if "ssl" in kwargs:
        raise ConfigurationError(
            key,
            f"{_show(key, url)} has the option ssl=; the scheme says whether TLS"
            " is on: use rediss:// for TLS and redis:// without.",
        )
    if parts.username:
        kwargs["username"] = unquote(parts.username)
    if parts.password:
        kwargs["password"] = unquote(parts.password)
    if "+" in scheme:
        return _parse_multi_host_url(url, key, scheme, parts.netloc, parts.path, kwargs)
    path = unquote(parts.path)
    if scheme == "unix":
        if parts.hostname or port is not None or not path.startswith("/"):
            raise ConfigurationError(
                key,
                f"{_show(key, url)} has no absolute socket path; a unix URL has"
                " three slashes before the path: 'unix:///run/redis.sock'.",
            )
        kwargs["unix_socket_path"] = path
        return _ParsedURL(scheme, kwargs)
    if parts.hostname:
        kwargs["host"] = unquote(parts.hostname)
    if port is not None:
        kwargs["port"] = port
    database = path.strip("/")
    if database and "db" not in kwargs:
        if not database.isdigit():
            raise ConfigurationError(
                key,
                f"{_show(key, url)} has the path {path!r}; the path of a Redis URL"
                " is a database number such as /0.",
            )
        kwargs["db"] = database
    return _ParsedURL(scheme, kwargs)


def _check_url_is_unambiguous(url: str, key: str) -> None:
    # mask_url takes all up to the last "@" for the userinfo, and urlsplit
    # ends the host at the first "/", "?" or "#", and the query at a "#".
    # Read both ways, an unescaped "/" or "#" in a password would make part
    # of it the path or a fragment, connecting elsewhere or with half of the
    # password, and showing the rest in messages.
    _, separator, rest = url.strip().partition("://")
    userinfo, at, _ = rest.rpartition("@")
    if separator and at and any(char in userinfo for char in "/?#"):
        raise ConfigurationError(
            key,
            f"{_show(key, url)} has an '@' after a '/', '?' or '#', so where its"
            " password ends is unclear. Percent-encode the user name and the"
            " password (urllib.parse.quote(password, safe='')), and any other"
            " '@' as %40.",
        )
    if "#" in rest:
        raise ConfigurationError(
            key,
            f"{_show(key, url)} has a '#', which Redis URLs do not use; in a"
            " password or another value, percent-encode it as %23.",
        )


def _parse_multi_host_url(
    url: str, key: str, scheme: str, netloc: str, path: str, kwargs: dict[str, object]
) -> _ParsedURL:
    """The rest of a ``redis+sentinel://`` or ``redis+cluster://`` URL: its
    hosts, and the master name and database in its path."""
    sentinel = scheme.endswith("+sentinel")
    hosts = netloc.rpartition("@")[2]
    default_port = _SENTINEL_PORT if sentinel else _REDIS_PORT
    try:
        nodes = tuple(
            _parse_address(unquote(host), default_port) for host in hosts.split(",")
        )
    except ValueError:
        raise ConfigurationError(
            key,
            f"{_show(key, url)} does not list its hosts as host[:port], separated by"
            f" commas; {_URL_EXPECTED}.",
        ) from None
    segments = [unquote(segment) for segment in path.split("/") if segment]
    service_name = segments.pop(0) if sentinel and segments else None
    if len(segments) > 1 or (segments and not segments[0].isdigit()):
        expected = "/master_name[/db]" if sentinel else "/0, or none"
        raise ConfigurationError(
            key,
            f"{_show(key, url)} has the path {path!r}; the path of a {scheme}://"
            f" URL is {expected}.",
        )
    if segments and "db" not in kwargs:
        kwargs["db"] = segments[0]
    return _ParsedURL(scheme, kwargs, nodes, service_name)


# -- Configuration: from app config to client settings ----------------------------


@dataclass(frozen=True, repr=False)
class ClientSettings:
    """The client one prefix of one app gets: its class and keyword arguments.

    Made by :func:`client_settings_from_config`; :meth:`create_client` builds
    the client. The ``repr`` and :attr:`url` mask passwords.

    :param prefix: the config prefix, ``"REDIS"`` by default.
    :param client_class: the class (or factory) the client is made with.
    :param kwargs: the keyword arguments it is called with.
    :param sources: for each keyword, where it came from: the config key
        (``"REDIS_URL"``, ``"REDIS_PORT"``, ``"REDIS_OPTIONS"``), ``"code"``
        for keyword arguments given to :class:`Redis` or :meth:`Redis.init_app`,
        or ``"default"`` for a value Flask-And-Redis sets itself (host name
        verification when TLS is on, the retry policy).
    :param connection_pool_class: the pool class the client's connections
        come from (``<prefix>_CONNECTION_POOL_CLASS``); ``None`` for the
        client's own default.
    :param connection_pool_kwargs: further keyword arguments of that pool
        class, such as ``timeout`` (``<prefix>_CONNECTION_POOL_TIMEOUT``).
    """

    prefix: str
    client_class: Callable[..., t.Any]
    kwargs: Mapping[str, t.Any]
    sources: Mapping[str, str] = field(default_factory=dict)
    connection_pool_class: type | None = None
    connection_pool_kwargs: Mapping[str, t.Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """Where the client connects, as a URL with the password masked."""
        kwargs = self.masked_kwargs()
        userinfo = _masked_userinfo(kwargs)
        database = kwargs.get("db", 0)
        socket = kwargs.get("unix_socket_path")
        if socket:
            return f"unix://{userinfo}{socket}?db={database}"
        scheme = "rediss" if kwargs.get("ssl") else "redis"
        address = _format_address(
            kwargs.get("host", "localhost"), kwargs.get("port", 6379)
        )
        return f"{scheme}://{userinfo}{address}/{database}"

    def masked_kwargs(self) -> dict[str, t.Any]:
        """The keyword arguments with every secret replaced by ``***``.

        A user name from a URL without a password is masked too, as
        :func:`mask_url` does: ``redis://secret@host`` is often a password in
        the place of the user name.
        """
        masked = {
            name: _MASK if _SECRET_NAME.search(name) and value is not None else value
            for name, value in self.kwargs.items()
        }
        if (
            masked.get("username")
            and not masked.get("password")
            and self.sources.get("username") == f"{self.prefix}_URL"
        ):
            masked["username"] = _MASK
        return masked

    def create_client(self) -> t.Any:
        """Build the client. Makes no connection: redis-py connects lazily."""
        if self.connection_pool_class is not None:
            return _client_with_connection_pool(self)
        return self.client_class(**self.kwargs)

    @property
    def is_asyncio(self) -> bool:
        """Whether the client class is an asyncio one (``redis.asyncio.Redis``
        or a subclass): its commands are coroutines, and its connections
        belong to the event loop that opened them."""
        return inspect.iscoroutinefunction(
            getattr(self.client_class, "execute_command", None)
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(prefix={self.prefix!r},"
            f" client_class={_class_name(self.client_class)}, url={self.url!r})"
        )


@dataclass(frozen=True, repr=False, kw_only=True)
class SentinelSettings(ClientSettings):
    """The clients of a master that Redis Sentinel watches, and of its replicas.

    The sentinels are asked where the master and the replicas are; the
    :attr:`kwargs` are for the connections to those, :attr:`sentinel_kwargs`
    for the connections to the sentinels.

    :param service_name: the name the sentinels know the master by.
    :param sentinels: the sentinels' addresses, as ``(host, port)``.
    :param sentinel_kwargs: keyword arguments of the sentinels' clients.

    .. versionadded:: 2.0
    """

    service_name: str
    sentinels: tuple[tuple[str, int], ...]
    sentinel_kwargs: Mapping[str, t.Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The sentinels and the master, as a ``redis+sentinel://`` URL with
        the password masked."""
        scheme = "rediss+sentinel" if self.kwargs.get("ssl") else "redis+sentinel"
        hosts = ",".join(_format_address(*address) for address in self.sentinels)
        return (
            f"{scheme}://{_masked_userinfo(self.masked_kwargs())}{hosts}"
            f"/{quote(self.service_name, safe='')}/{self.kwargs.get('db', 0)}"
        )

    def create_client(self) -> t.Any:
        """Build the master's client. Makes no connection; its first
        connection asks the sentinels where the master is, and starts
        following failovers (see :ref:`sentinel-failover`)."""
        return _sentinel_client(self, master=True)

    def create_replica_client(self) -> t.Any:
        """Build a client of the master's replicas, for reads: each new
        connection goes to a replica that the sentinels report up, in turn,
        or to the master if none is. Makes no connection."""
        return _sentinel_client(self, master=False)


@dataclass(frozen=True, repr=False, kw_only=True)
class ClusterSettings(ClientSettings):
    """The client of a Redis Cluster.

    :param nodes: the addresses of the startup nodes, as ``(host, port)``: the
        client learns the others from the first that answers.

    .. versionadded:: 2.0
    """

    nodes: tuple[tuple[str, int], ...]

    @property
    def url(self) -> str:
        """The startup nodes, as a ``redis+cluster://`` URL with the password
        masked."""
        scheme = "rediss+cluster" if self.kwargs.get("ssl") else "redis+cluster"
        hosts = ",".join(_format_address(*address) for address in self.nodes)
        return f"{scheme}://{_masked_userinfo(self.masked_kwargs())}{hosts}"

    def create_client(self) -> t.Any:
        """Build the client. Unlike other clients, a cluster client connects
        here: it asks the startup nodes which node serves which keys."""
        from redis.cluster import ClusterNode

        nodes = [ClusterNode(host, port) for host, port in self.nodes]  # type: ignore[no-untyped-call]
        return self.client_class(startup_nodes=nodes, **self.kwargs)


def _masked_userinfo(masked: Mapping[str, t.Any]) -> str:
    """``user:***@`` for a URL, from :meth:`ClientSettings.masked_kwargs`."""
    username = masked.get("username")
    userinfo = username if username == _MASK else quote(username or "", safe="")
    if masked.get("password"):
        userinfo += f":{_MASK}"
    return f"{userinfo}@" if userinfo else ""


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Layer:
    """Client keywords from one place in the precedence order, coerced.

    :param source: what :attr:`ClientSettings.sources` says for its values:
        ``"code"``, ``"<prefix>_OPTIONS"`` or ``"<prefix>_URL"``; ``None`` for
        the discrete keys, each of which is its own source.
    :param accepted: the keywords of the client class, ``None`` for any.
    :param class_name: the client class's name, for error messages.
    """

    def __init__(
        self,
        source: str | None,
        accepted: Mapping[str, t.Any] | None,
        class_name: str,
    ) -> None:
        self.source = source
        self.accepted = accepted
        self.class_name = class_name
        self.values: dict[str, object] = {}
        #: Where each value came from, as error messages name it.
        self.places: dict[str, str] = {}

    def add(self, name: str, value: object, place: str, shown: str) -> None:
        """Check and coerce a client keyword; *shown* is the value as an
        error message shows it."""
        self.values[name] = _keyword_value(
            name, value, place, shown, self.accepted, self.class_name
        )
        self.places[name] = place

    def set(self, name: str, value: object, place: str) -> None:
        """Take a value that is checked already (addresses, the scheme's TLS)."""
        self.values[name] = value
        self.places[name] = place

    def source_of(self, name: str) -> str:
        return self.source or self.places[name]

    @property
    def transport(self) -> str | None:
        for transport, names in _TRANSPORTS.items():
            if any(name in self.values for name in names):
                return transport
        return None


# The ways of saying where to connect, and the keywords that say each. The
# sentinels and cluster nodes are not client keywords: they are read from
# <prefix>_SENTINELS, <prefix>_CLUSTER_NODES or a URL listing hosts.
_TRANSPORTS = {
    "sentinel": ("sentinels",),
    "cluster": ("cluster_nodes",),
    "unix": ("unix_socket_path",),
    "tcp": ("host", "port"),
}
_SOCKET_PREFIXES = ("/", "unix://", "file://")


def client_settings_from_config(
    config: Mapping[str, t.Any],
    prefix: str = "REDIS",
    *,
    client_class: Callable[..., t.Any] | None = None,
    defaults: Mapping[str, t.Any] | None = None,
) -> ClientSettings:
    """Read the settings of one prefix from an app's config, and check them.

    Precedence, highest first: ``<prefix>_URL``, the discrete keys
    (``<prefix>_HOST``, ``<prefix>_PORT``, … and ``<prefix>_<KEYWORD>`` for any
    other keyword of the client class), ``<prefix>_OPTIONS``, then *defaults*
    (the keyword arguments given in code). Nothing is connected.

    A ``redis+sentinel://`` URL or ``<prefix>_SENTINELS`` gives
    :class:`SentinelSettings`; a ``redis+cluster://`` URL,
    ``<prefix>_CLUSTER``, ``<prefix>_CLUSTER_NODES`` or a cluster client class
    gives :class:`ClusterSettings`.

    :param config: the app's config, or any mapping of keys to values.
    :param prefix: the config prefix.
    :param client_class: the client class to use instead of
        ``<prefix>_CLASS``; the default is ``redis.Redis``, or
        ``redis.cluster.RedisCluster`` for a cluster.
    :param defaults: keyword arguments given in code, under the config.
    :raise ConfigurationError: a value that cannot be used.

    .. versionchanged:: 2.0
        Sentinel and Cluster.
    """

    url_key = f"{prefix}_URL"
    parsed = None
    if config.get(url_key) is not None:
        parsed = _parse_url(config[url_key], url_key)
    client_class, topology = _client_class_and_topology(
        config, prefix, parsed, client_class
    )
    accepted = (
        _cluster_keywords(client_class)
        if topology == "cluster"
        else _constructor_keywords(client_class)
    )
    layers = [
        _code_layer(defaults or {}, accepted, client_class),
        _options_layer(config, prefix, accepted, client_class),
        _keys_layer(config, prefix, accepted, client_class),
        _url_layer(parsed, url_key, accepted, client_class),
    ]
    for layer in layers:
        _check_transport(layer)
    kwargs, places, sources = _merge(layers)
    _check_tls(kwargs, places, sources, parsed, url_key, f"{prefix}_SSL")
    _check_connects_lazily(client_class, kwargs, places, prefix)
    _add_defaults(kwargs, places, sources, accepted)
    pool_class, pool_kwargs = _connection_pool_from_config(
        config, prefix, client_class, accepted, places
    )
    sentinels = kwargs.pop("sentinels", None)
    nodes = kwargs.pop("cluster_nodes", None)
    for name in ("sentinels", "cluster_nodes"):
        sources.pop(name, None)
    if topology == "sentinel":
        _check_no_pool_with_sentinel(prefix, pool_class, places)
        return SentinelSettings(
            prefix=prefix,
            client_class=client_class,
            service_name=_service_name(config, prefix, parsed),
            sentinels=sentinels,
            sentinel_kwargs=_sentinel_kwargs(config, prefix, kwargs),
            kwargs=kwargs,
            sources=sources,
        )
    if topology == "cluster":
        return ClusterSettings(
            prefix=prefix,
            client_class=client_class,
            nodes=_cluster_nodes(kwargs, places, nodes),
            kwargs=kwargs,
            sources=sources,
        )
    return ClientSettings(
        prefix=prefix,
        client_class=client_class,
        kwargs=kwargs,
        sources=sources,
        connection_pool_class=pool_class,
        connection_pool_kwargs=pool_kwargs,
    )


def _code_layer(
    defaults: Mapping[str, t.Any],
    accepted: Mapping[str, t.Any] | None,
    client_class: Callable[..., t.Any],
) -> _Layer:
    """The keyword arguments given to Redis() or init_app()."""
    layer = _Layer("code", accepted, _class_name(client_class))
    for name, value in defaults.items():
        layer.add(name, value, f"keyword argument {name!r}", _show(name, value))
    return layer


def _options_layer(
    config: Mapping[str, t.Any],
    prefix: str,
    accepted: Mapping[str, t.Any] | None,
    client_class: Callable[..., t.Any],
) -> _Layer:
    """<prefix>_OPTIONS: a dict of client keyword arguments."""
    key = f"{prefix}_OPTIONS"
    layer = _Layer(key, accepted, _class_name(client_class))
    for name, value in _options(config, key, "{'socket_timeout': 5}").items():
        layer.add(name, value, f"{key}[{name!r}]", _show(name, value))
    return layer


def _options(
    config: Mapping[str, t.Any], key: str, example: str
) -> Mapping[str, t.Any]:
    """The mapping of keyword arguments at *key*, checked; empty if unset."""
    mapping = config.get(key)
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise ConfigurationError(
            key,
            f"a {type(mapping).__name__} is not a mapping; expected a dict of"
            f" keyword arguments, such as {example}.",
        )
    for name in mapping:
        if not isinstance(name, str):
            raise ConfigurationError(
                f"{key}[{name!r}]",
                f"the key {name!r} is not a string; expected the names of"
                " keyword arguments, such as 'socket_timeout'.",
            )
    return mapping


def _keys_layer(
    config: Mapping[str, t.Any],
    prefix: str,
    accepted: Mapping[str, t.Any] | None,
    client_class: Callable[..., t.Any],
) -> _Layer:
    """The discrete keys: <prefix>_HOST, _PORT, … and <prefix>_<KEYWORD> for
    every keyword of the client class, and the sentinels or cluster nodes."""
    layer = _Layer(None, accepted, _class_name(client_class))
    names = set(_KINDS) | set(accepted or ())
    names.difference_update(name.lower() for name in _OWN_KEYS)
    _check_spelling(config, prefix, {name.upper() for name in names})
    for name in sorted(names):
        config_key = f"{prefix}_{name.upper()}"
        if config_key not in config:
            continue
        value = config[config_key]
        if (
            name == "host"
            and isinstance(value, str)
            and value.startswith(_SOCKET_PREFIXES)
        ):
            name, value = "unix_socket_path", _socket_path(value, config_key)
        if name in layer.values:
            raise ConfigurationError(
                config_key,
                f"{_show(config_key, value)} and {layer.places[name]} both name"
                " the socket path; keep one of them.",
            )
        layer.add(name, value, config_key, _show(config_key, value))
    for name, suffix, default_port in (
        ("sentinels", "SENTINELS", _SENTINEL_PORT),
        ("cluster_nodes", "CLUSTER_NODES", _REDIS_PORT),
    ):
        config_key = f"{prefix}_{suffix}"
        if config.get(config_key) is not None:
            addresses = _addresses(config[config_key], config_key, default_port)
            layer.set(name, addresses, config_key)
    return layer


def _url_layer(
    parsed: _ParsedURL | None,
    url_key: str,
    accepted: Mapping[str, t.Any] | None,
    client_class: Callable[..., t.Any],
) -> _Layer:
    """What <prefix>_URL says, options included."""
    layer = _Layer(url_key, accepted, _class_name(client_class))
    if parsed is None:
        return layer
    for name, value in parsed.kwargs.items():
        layer.add(name, value, url_key, f"the option {name}={_show(name, value)}")
    if parsed.scheme.startswith("rediss"):
        layer.set("ssl", True, url_key)
    if parsed.nodes:
        name = "sentinels" if parsed.topology == "sentinel" else "cluster_nodes"
        layer.set(name, parsed.nodes, url_key)
    return layer


def _add_defaults(
    kwargs: dict[str, t.Any],
    places: dict[str, str],
    sources: dict[str, str],
    accepted: Mapping[str, t.Any] | None,
) -> None:
    """The values Flask-And-Redis sets itself, where the config sets none."""

    def default(name: str, value: object) -> None:
        kwargs[name] = value
        places[name] = sources[name] = "default"

    if (
        kwargs.get("ssl")
        and "ssl_check_hostname" not in kwargs
        and (accepted is None or "ssl_check_hostname" in accepted)
    ):
        # redis-py before 6 does not check the host name by default: verify
        # certificates fully unless the config says otherwise.
        default("ssl_check_hostname", True)
    if accepted is not None and "retry" not in kwargs:
        retry = _fail_fast_retry(accepted.get("retry"))
        if retry is not None:
            default("retry", retry)


def _check_no_pool_with_sentinel(
    prefix: str, pool_class: type | None, places: Mapping[str, str]
) -> None:
    why = "the client's pool is the one that asks the sentinels where the master is"
    if pool_class is not None:
        raise ConfigurationError(
            f"{prefix}_CONNECTION_POOL_CLASS",
            f"{_class_name(pool_class)} cannot be used with Sentinel: {why}.",
        )
    if "connection_pool" in places:
        raise ConfigurationError(
            places["connection_pool"],
            f"a connection pool cannot be given with Sentinel: {why}.",
        )


def _keyword_value(
    name: str,
    value: object,
    place: str,
    shown: str,
    accepted: Mapping[str, t.Any] | None,
    class_name: str,
) -> object:
    """*value* coerced to what the client keyword *name* accepts."""
    if accepted is not None and name not in accepted:
        hint = difflib.get_close_matches(name, accepted, n=1)
        raise ConfigurationError(
            place,
            f"{class_name}() takes no keyword argument {name!r}"
            + (f"; did you mean {hint[0]!r}?" if hint else ".")
            + f" Its keyword arguments are documented in help({class_name}).",
        )
    default = accepted.get(name) if accepted else None
    kind = _kind_of(name, default)
    if kind is not None:
        try:
            value = kind.coerce(value)
        except (TypeError, ValueError):
            raise ConfigurationError(
                place, f"{shown} is not valid; expected {kind.expected}."
            ) from None
    return value


def _socket_path(value: str, key: str) -> str:
    if "://" not in value:
        return value
    parts = urlsplit(value)
    if parts.netloc or parts.query or parts.fragment:
        raise ConfigurationError(
            key,
            f"{_show(key, value)} is not a plain socket path; a unix URL with"
            " credentials or options goes in the _URL key.",
        )
    return parts.path


def _check_spelling(config: Mapping[str, t.Any], prefix: str, names: set[str]) -> None:
    """Refuse a key of the prefix that is a near miss of one it reads: a
    misspelt REDIS_SOCKET_TIMOUT would otherwise be ignored without a word."""
    suffixes = {*names, *_OWN_KEYS, *_SENTINEL_KEYS}
    known = {f"{prefix}_{suffix}" for suffix in suffixes}
    for config_key in config:
        if (
            not isinstance(config_key, str)
            or not config_key.startswith(f"{prefix}_")
            or config_key in known
        ):
            continue
        rest = config_key[len(prefix) + 1 :]
        if any(rest.endswith(f"_{suffix}") for suffix in suffixes):
            continue  # a key of another prefix: REDIS_CACHE_URL for REDIS_CACHE
        hint = difflib.get_close_matches(config_key, known, n=1, cutoff=0.85)
        if hint:
            raise ConfigurationError(
                config_key,
                f"this key is not read by Flask-And-Redis; did you mean {hint[0]}?",
            )


# For a layer that says where to connect in two ways: the first way, and why
# a client takes only one.
_ONE_TRANSPORT = {
    "sentinel": (
        "the sentinels",
        "with Sentinel, the sentinels tell the client where the master is",
    ),
    "cluster": (
        "the cluster nodes",
        "a cluster client starts from the nodes of one list",
    ),
    "unix": (
        "the unix socket",
        "a client connects either to a socket path or to a host and port",
    ),
}


def _check_transport(layer: _Layer) -> None:
    transport = layer.transport
    if transport is None or transport == "tcp":
        return
    (first,) = _TRANSPORTS[transport]
    what, why = _ONE_TRANSPORT[transport]
    if transport == "unix":
        what = f"{what} {layer.values[first]!r}"
    for other, names in _TRANSPORTS.items():
        for name in names:
            if other != transport and name in layer.values:
                place = layer.places[name]
                raise ConfigurationError(
                    place,
                    f"{_show(place, layer.values[name])} cannot be combined with"
                    f" {what} from {layer.places[first]}: {why}. Remove one of"
                    " them.",
                )


def _merge(
    layers: list[_Layer],
) -> tuple[dict[str, t.Any], dict[str, str], dict[str, str]]:
    """Stack the layers, lowest first; the highest layer that says where to
    connect (sentinels, cluster nodes, socket path, or host/port) decides the
    transport for all."""
    transport = next(
        (layer.transport for layer in reversed(layers) if layer.transport), None
    )
    dropped = [
        name
        for other, names in _TRANSPORTS.items()
        if other != transport
        for name in names
    ]
    kwargs: dict[str, t.Any] = {}
    places: dict[str, str] = {}
    sources: dict[str, str] = {}
    for layer in layers:
        for name, value in layer.values.items():
            if transport is not None and name in dropped:
                continue
            kwargs[name] = value
            places[name] = layer.places[name]
            sources[name] = layer.source_of(name)
    return kwargs, places, sources


def _check_tls(
    kwargs: dict[str, t.Any],
    places: dict[str, str],
    sources: dict[str, str],
    parsed: _ParsedURL | None,
    url_key: str,
    ssl_key: str,
) -> None:
    # redis://, redis+sentinel:// and redis+cluster:// all mean no TLS.
    plain_url = parsed is not None and parsed.scheme.partition("+")[0] == "redis"
    if kwargs.get("ssl") and (plain_url or "unix_socket_path" in kwargs):
        if sources["ssl"] == "code":
            # Keyword arguments in code are defaults: the config's plain URL
            # or socket turns their TLS off.
            del kwargs["ssl"], places["ssl"], sources["ssl"]
        elif parsed is not None and plain_url:
            scheme = parsed.scheme
            raise ConfigurationError(
                places["ssl"],
                f"TLS is on, but {url_key} uses {scheme}://, which means no TLS;"
                f" use a rediss{scheme[5:]}:// URL, or turn TLS off.",
            )
        else:
            raise ConfigurationError(
                places["ssl"],
                "TLS is on, but the client connects through a unix socket, which"
                " does not use TLS; connect to a host and port, or turn TLS off.",
            )
    if not kwargs.get("ssl"):
        for name, place in places.items():
            if (
                name.startswith("ssl_")
                and kwargs[name] is not None
                and sources[name] != "code"
            ):
                raise ConfigurationError(
                    place,
                    f"TLS options are set but TLS is off; set {ssl_key} = True or"
                    " use a rediss:// URL, or remove this option.",
                )


def _check_connects_lazily(
    client_class: Callable[..., t.Any],
    kwargs: Mapping[str, t.Any],
    places: Mapping[str, str],
    prefix: str,
) -> None:
    # redis.Redis connects its single connection in its constructor: init_app
    # would fail (after the retries) whenever Redis is down at start-up.
    if not kwargs.get("single_connection_client"):
        return
    if _is_redis_class(client_class):
        raise ConfigurationError(
            places["single_connection_client"],
            f"True makes {_class_name(client_class)} connect when it is built,"
            " and init_app makes no connection; its one connection would also"
            " be shared by every thread of the app. For one connection, set"
            f" {prefix}_MAX_CONNECTIONS = 1 and"
            f" {prefix}_CONNECTION_POOL_CLASS = 'redis.BlockingConnectionPool'.",
        )


# -- Configuration: the connection pool -------------------------------------------

_POOL_CLASS_EXPECTED = (
    "a connection pool class or its dotted path, such as 'redis.BlockingConnectionPool'"
)


def _connection_pool_from_config(
    config: Mapping[str, t.Any],
    prefix: str,
    client_class: Callable[..., t.Any],
    accepted: Mapping[str, t.Any] | None,
    places: Mapping[str, str],
) -> tuple[type | None, dict[str, t.Any]]:
    """Read ``<prefix>_CONNECTION_POOL_CLASS`` and ``_TIMEOUT``: the pool
    class of the client and the keyword arguments it adds.

    redis-py clients take a pool instance but no pool class, and a pool
    instance in the config could not follow the rest of it (the URL, the
    timeouts) nor be shared by several apps; so the class is configured and
    :func:`_client_with_connection_pool` makes the pool.

    :param client_class: the client class.
    :param accepted: the keywords of the client class, ``None`` for any.
    :param places: where each client keyword came from.
    :raise ConfigurationError: a value that cannot be used.
    """
    class_key = f"{prefix}_CONNECTION_POOL_CLASS"
    timeout_key = f"{prefix}_CONNECTION_POOL_TIMEOUT"
    value = config.get(class_key)
    if value is None:
        if config.get(timeout_key) is not None:
            raise ConfigurationError(
                timeout_key,
                f"{_show(timeout_key, config[timeout_key])} is set, but {class_key}"
                " is not: it is how long a request waits for a free connection of"
                f" a blocking pool. Set {class_key} = 'redis.BlockingConnectionPool'"
                " too, or remove it.",
            )
        return None, {}
    value = _resolve_class(
        value,
        class_key,
        _POOL_CLASS_EXPECTED,
        lambda resolved: callable(getattr(resolved, "get_connection", None)),
    )
    class_name = _class_name(client_class)
    if accepted is not None and "connection_pool" not in accepted:
        raise ConfigurationError(
            class_key,
            f"{class_name}() takes no connection pool, so it cannot use"
            f" {_class_name(value)}; remove {class_key}.",
        )
    base = _connection_pool_base(client_class)
    if base is not None and not issubclass(value, base):
        raise _mismatched_pool(class_key, value, base, client_class)
    if "connection_pool" in places:
        raise ConfigurationError(
            class_key,
            f"{_class_name(value)} cannot be combined with the connection pool"
            f" given in {places['connection_pool']}: configure one of them.",
        )
    pool_kwargs: dict[str, t.Any] = {}
    if timeout_key in config:
        if not _names_keyword(value, "timeout"):
            raise ConfigurationError(
                timeout_key,
                f"{_class_name(value)}() takes no timeout: only a blocking pool"
                " waits for a free connection. Use"
                f" {class_key} = 'redis.BlockingConnectionPool', or remove"
                f" {timeout_key}.",
            )
        try:
            pool_kwargs["timeout"] = _SECONDS.coerce(config[timeout_key])
        except (TypeError, ValueError):
            raise ConfigurationError(
                timeout_key,
                f"{_show(timeout_key, config[timeout_key])} is not valid; expected"
                " a number of seconds greater than 0, or None to wait without end.",
            ) from None
    return value, pool_kwargs


def _connection_pool_base(client_class: Callable[..., t.Any]) -> type | None:
    """The pool class of redis-py's clients that *client_class* is one of."""
    try:
        import redis
        import redis.asyncio
    except ImportError:
        return None
    if not isinstance(client_class, type):
        return None
    if issubclass(client_class, redis.asyncio.Redis):
        return redis.asyncio.ConnectionPool
    if issubclass(client_class, redis.Redis):
        return redis.ConnectionPool
    return None


def _mismatched_pool(
    key: str, pool_class: type, base: type, client_class: Callable[..., t.Any]
) -> ConfigurationError:
    return ConfigurationError(
        key,
        f"{_class_name(pool_class)} is not a kind of {_class_name(base)}, the"
        f" pool of {_class_name(client_class)}; expected {_POOL_CLASS_EXPECTED} (or"
        " 'redis.asyncio.BlockingConnectionPool' for redis.asyncio.Redis).",
    )


def _names_keyword(klass: type, name: str) -> bool:
    """Whether an ``__init__`` of *klass* or of a base names the keyword."""
    return any(
        name in inspect.signature(vars(base)["__init__"]).parameters
        for base in klass.__mro__[:-1]
        if "__init__" in vars(base)
    )


# -- Configuration: Sentinel and Cluster ------------------------------------------


def _client_class_and_topology(
    config: Mapping[str, t.Any],
    prefix: str,
    parsed: _ParsedURL | None,
    provider: Callable[..., t.Any] | None,
) -> tuple[Callable[..., t.Any], str]:
    """The client class, and how the client finds its server: ``"server"``
    (one, named by URL or keys), ``"sentinel"`` or ``"cluster"``."""
    class_key = f"{prefix}_CLASS"
    client_class = provider
    if provider is not None:
        class_key = "the provider of Redis.from_custom_provider()"
    elif config.get(class_key) is not None:
        client_class = _resolve_client_class(config[class_key], class_key)
    topology, place = _topology(config, prefix, parsed, client_class, class_key)

    if client_class is None:
        if topology == "cluster":
            return _cluster_client_class(), topology
        return _default_client_class(), topology
    if topology == "sentinel" and not _is_redis_class(client_class):
        raise ConfigurationError(
            class_key,
            f"{_class_name(client_class)} is not redis.Redis or a subclass of"
            f" it, which Sentinel ({place}) needs; asyncio clients are not"
            " supported with Sentinel.",
        )
    if topology == "cluster" and not _is_cluster_class(client_class):
        raise ConfigurationError(
            class_key,
            f"{_class_name(client_class)} is not {_CLUSTER_CLIENT_CLASS} or a"
            f" subclass of it, which {place} needs (asyncio cluster clients"
            f" are not supported); leave {prefix}_CLASS unset, or name one.",
        )
    return client_class, topology


def _topology(
    config: Mapping[str, t.Any],
    prefix: str,
    parsed: _ParsedURL | None,
    client_class: object,
    class_key: str,
) -> tuple[str, str | None]:
    """``"server"``, ``"sentinel"`` or ``"cluster"``, and the key that says
    so; refuses keys that say different things."""

    def key(name: str) -> str:
        return f"{prefix}_{name}"

    sentinel = None
    if parsed is not None and parsed.topology == "sentinel":
        sentinel = key("URL")
    elif config.get(key("SENTINELS")) is not None:
        sentinel = key("SENTINELS")
    cluster_flag = config.get(key("CLUSTER"))
    if cluster_flag is not None:
        try:
            cluster_flag = _to_bool(cluster_flag)
        except ValueError:
            raise ConfigurationError(
                key("CLUSTER"),
                f"{_show(key('CLUSTER'), cluster_flag)} is not valid; expected"
                f" {_BOOL.expected}.",
            ) from None
    says_cluster = {
        key("URL"): parsed is not None and parsed.topology == "cluster",
        key("CLUSTER_NODES"): config.get(key("CLUSTER_NODES")) is not None,
        key("CLUSTER"): cluster_flag is True,
        class_key: _is_cluster_class(client_class),
    }
    cluster = next((place for place, says in says_cluster.items() if says), None)

    if sentinel is not None and cluster is not None:
        raise ConfigurationError(
            cluster,
            f"it configures a Redis Cluster, and {sentinel} configures Sentinel;"
            " a client uses one or the other. Remove one of them.",
        )
    for name in _SENTINEL_KEYS if sentinel is None else ():
        if config.get(key(name)) is not None:
            raise ConfigurationError(
                key(name),
                f"{_show(key(name), config[key(name)])} is set, but no"
                f" sentinels are configured; set {key('SENTINELS')} or use a"
                f" redis+sentinel:// URL, or remove {key(name)}.",
            )
    if cluster is not None:
        if cluster_flag is False:
            raise ConfigurationError(
                key("CLUSTER"),
                f"False, but {cluster} configures a Redis Cluster; set it to"
                " True, or remove it.",
            )
        if parsed is not None and parsed.scheme == "unix":
            raise ConfigurationError(
                key("URL"),
                f"{_show(key('URL'), config[key('URL')])} is a unix socket, but"
                f" {cluster} configures a Redis Cluster, which is reached over"
                " TCP; use a 'redis+cluster://host:port[,host:port…]' URL.",
            )
        return "cluster", cluster
    if sentinel is not None:
        if parsed is not None and parsed.topology is None:
            raise ConfigurationError(
                key("URL"),
                f"{_show(key('URL'), config[key('URL')])} names one server, but"
                f" {sentinel} configures Sentinel, which names the master; use a"
                " 'redis+sentinel://host:port[,host:port…]/master[/db]' URL, or"
                f" remove {sentinel}.",
            )
        return "sentinel", sentinel
    return "server", None


def _is_subclass(client_class: object, module: str, name: str) -> bool:
    # The module is loaded already if client_class comes from it: no import
    # is needed to check, and none is made without redis-py.
    loaded = sys.modules.get(module)
    return (
        loaded is not None
        and isinstance(client_class, type)
        and issubclass(client_class, getattr(loaded, name))
    )


def _is_redis_class(client_class: object) -> bool:
    return _is_subclass(client_class, "redis.client", "Redis")


def _is_cluster_class(client_class: object) -> bool:
    return _is_subclass(client_class, "redis.cluster", "RedisCluster")


def _cluster_client_class() -> type[t.Any]:
    _default_client_class()  # for its error message without redis-py
    from redis.cluster import RedisCluster

    return RedisCluster


# Keywords of a cluster client that are not for Flask-And-Redis's config: the
# startup nodes come from <prefix>_CLUSTER_NODES or the URL, and the
# connections to the nodes take no pool of their own.
_NOT_FOR_CLUSTER = (
    "startup_nodes",
    "url",
    "connection_pool",
    "single_connection_client",
)


def _cluster_keywords(client_class: Callable[..., t.Any]) -> dict[str, t.Any]:
    """The keywords a cluster client takes: its own, and redis.Redis's, which
    it hands on to its connections to the nodes."""
    keywords = dict(_constructor_keywords(_default_client_class()) or {})
    for klass in reversed(getattr(client_class, "__mro__", ())[:-1]):
        if "__init__" in vars(klass):
            found, _ = _keywords_of(
                inspect.signature(vars(klass)["__init__"]), skip_self=True
            )
            keywords.update(found)
    for name in _NOT_FOR_CLUSTER:
        keywords.pop(name, None)
    return keywords


def _cluster_nodes(
    kwargs: dict[str, t.Any],
    places: dict[str, str],
    nodes: tuple[tuple[str, int], ...] | None,
) -> tuple[tuple[str, int], ...]:
    """The startup nodes of a cluster client: the listed ones, or the host and
    port; *kwargs* lose what the cluster client does not take."""
    if kwargs.get("db", 0) != 0:
        raise ConfigurationError(
            places["db"],
            f"{kwargs['db']!r} is not valid with a Redis Cluster, which has only"
            " the database 0; remove it, or set it to 0.",
        )
    kwargs.pop("db", None)
    if "unix_socket_path" in kwargs:
        raise ConfigurationError(
            places["unix_socket_path"],
            f"{kwargs['unix_socket_path']!r} is a unix socket, but a Redis Cluster"
            " is reached over TCP; name its nodes as host:port.",
        )
    if nodes is None:
        host = kwargs.pop("host", "localhost")
        nodes = ((host, kwargs.pop("port", _REDIS_PORT)),)
    return nodes


def _service_name(
    config: Mapping[str, t.Any], prefix: str, parsed: _ParsedURL | None
) -> str:
    """The name the sentinels know the master by: from the URL, or the key."""
    if parsed is not None and parsed.service_name:
        return parsed.service_name
    key = f"{prefix}_SENTINEL_MASTER"
    name = config.get(key)
    if name is None:
        raise ConfigurationError(
            key,
            "the master's name is missing; set it to the name the sentinels"
            " monitor the master by, such as 'mymaster', or end the URL with it:"
            " 'redis+sentinel://host:26379/mymaster/0'.",
        )
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(
            key,
            f"{_show(key, name)} is not a master name; expected the name the"
            " sentinels monitor the master by, such as 'mymaster'.",
        )
    return name.strip()


def _sentinel_kwargs(
    config: Mapping[str, t.Any], prefix: str, kwargs: Mapping[str, t.Any]
) -> dict[str, t.Any]:
    """The keyword arguments of the clients of the sentinels.

    Highest first: ``<prefix>_SENTINEL_USERNAME`` and ``_PASSWORD``,
    ``<prefix>_SENTINEL_OPTIONS``, then the master's socket and TLS options.
    A sentinel that does not answer is not retried: the next one is asked.
    """
    client_class = _default_client_class()
    accepted = _constructor_keywords(client_class)
    class_name = _class_name(client_class)
    sentinel_kwargs: dict[str, t.Any] = {
        name: value
        for name, value in kwargs.items()
        if name.startswith(("socket_", "ssl"))
    }
    sentinel_kwargs["retry"] = _no_retries()
    options_key = f"{prefix}_SENTINEL_OPTIONS"
    options = _options(config, options_key, "{'socket_timeout': 0.5}")
    for name, value in options.items():
        place = f"{options_key}[{name!r}]"
        sentinel_kwargs[name] = _keyword_value(
            name, value, place, _show(name, value), accepted, class_name
        )
    for name in ("username", "password"):
        config_key = f"{prefix}_SENTINEL_{name.upper()}"
        if config.get(config_key) is not None:
            sentinel_kwargs[name] = _keyword_value(
                name,
                config[config_key],
                config_key,
                _show(config_key, config[config_key]),
                accepted,
                class_name,
            )
    return sentinel_kwargs


# -- Client construction: connection pools ---------------------------------------


def _client_with_connection_pool(settings: ClientSettings) -> t.Any:
    """Build the client of *settings* on a pool of its connection pool class.

    The client is first built as usual, which makes its default pool from the
    configured keywords (connection class, TLS, socket options, retries…)
    without connecting; that pool's connection class and keywords then make
    the configured pool, so both ways of building a client connect alike.

    :raise ConfigurationError: the pool class does not fit the client class,
        such as a blocking pool of redis-py's asyncio client for its
        synchronous one.
    """
    pool_class = settings.connection_pool_class
    assert pool_class is not None
    kwargs = settings.kwargs
    template = settings.client_class(**kwargs)
    default_pool = getattr(template, "connection_pool", None)
    key = f"{settings.prefix}_CONNECTION_POOL_CLASS"
    if default_pool is None:
        raise ConfigurationError(
            key,
            f"{_class_name(settings.client_class)} has no connection pool, so it"
            f" cannot use {_class_name(pool_class)}; remove {key}.",
        )
    if not issubclass(pool_class, type(default_pool)):
        raise _mismatched_pool(
            key, pool_class, type(default_pool), settings.client_class
        )
    pool_kwargs = {**default_pool.connection_kwargs, **settings.connection_pool_kwargs}
    if kwargs.get("max_connections") is not None:
        pool_kwargs["max_connections"] = kwargs["max_connections"]
    if getattr(default_pool, "cache", None) is not None:
        pool_kwargs["cache"] = default_pool.cache  # taken out of the kwargs
    pool = pool_class(connection_class=default_pool.connection_class, **pool_kwargs)
    client = settings.client_class(**kwargs, connection_pool=pool)
    # Like a client that made its own pool, it closes the pool when closed.
    client.auto_close_connection_pool = True
    return client


# -- Client construction: retries ------------------------------------------------


def _fail_fast_retry(default: object) -> t.Any:
    """A copy of a client class's default retry policy (*default*) that gives
    up at once on what no retry mends, or ``None`` if *default* is none.

    Since redis-py 6, clients retry a failed connection, handshake included,
    with backoff: a wrong password, or a server certificate that does not
    verify, would take seconds to be reported. Applied to every
    client built from config, URL or keys alike (redis-py's ``from_url`` would
    get no retries at all); a ``retry`` given in config is used as it is.
    """
    retry_module = sys.modules.get("redis.retry")
    if retry_module is None or not isinstance(default, retry_module.Retry):
        return None
    try:  # Retry has no public accessors for these in every redis-py
        backoff = default._backoff
        retries = default._retries
        supported_errors = default._supported_errors
    except AttributeError:  # a redis-py that renamed them: keep its default
        return None
    return _fail_fast_retry_class()(copy.deepcopy(backoff), retries, supported_errors)


def _no_retries(retry_class: type[t.Any] | None = None) -> t.Any:
    """A retry policy of *retry_class* (redis-py's ``Retry`` by default;
    ``redis.asyncio`` has one of its own) that tries once."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return (retry_class or Retry)(NoBackoff(), 0)


def _is_final(error: Exception) -> bool:
    """Whether a connection failure would only repeat if retried."""
    from redis.exceptions import AuthenticationError

    cause = error.__cause__ or error.__context__
    return isinstance(error, AuthenticationError) or isinstance(
        cause, ssl.SSLCertVerificationError
    )


@functools.cache
def _fail_fast_retry_class() -> type[t.Any]:
    # Made on first use: the module imports without redis-py.
    from redis.backoff import AbstractBackoff
    from redis.retry import Retry

    class FailFastBackoff(AbstractBackoff):
        """A backoff that raises, instead of giving a delay, when the failure
        being handled would only repeat if retried.

        redis-py's ``Retry.call_with_retry`` (5.0 to 8.x) asks its backoff for
        the delay while it handles a failure, after its clean-up
        (``fail(error)``), so the failure leaves as after the last attempt.
        """

        def __init__(self, backoff: AbstractBackoff) -> None:
            self.backoff = backoff
            # Called before every command: the backoff's own, nothing between.
            self.reset = backoff.reset  # type: ignore[method-assign]

        def compute(self, failures: int) -> float:
            error = sys.exc_info()[1]
            if isinstance(error, Exception) and _is_final(error):
                raise error
            return self.backoff.compute(failures)

        # Equal as redis-py's backoffs are, so that equal policies stay equal.
        def __eq__(self, other: object) -> bool:
            return isinstance(other, FailFastBackoff) and self.backoff == other.backoff

        def __hash__(self) -> int:
            return hash((FailFastBackoff, self.backoff))

    class FailFastRetry(Retry):
        """redis-py's :class:`~redis.retry.Retry` that does not retry a refused
        password or an untrusted server certificate.

        It stops in its backoff, which costs nothing per command, where a
        ``call_with_retry`` of its own would wrap every command in more
        Python: a few percent of a round trip on a busy machine (see
        docs/performance.rst).
        """

        def __init__(
            self,
            backoff: AbstractBackoff,
            retries: int,
            supported_errors: tuple[type[Exception], ...],
        ) -> None:
            super().__init__(FailFastBackoff(backoff), retries, supported_errors)

        def __repr__(self) -> str:  # as `flask redis config` shows it
            return f"FailFastRetry(retries={self._retries})"

    return FailFastRetry


# -- Client construction: Sentinel -----------------------------------------------


def _sentinel_client(
    settings: SentinelSettings, master: bool, follow_failovers: bool = True
) -> t.Any:
    """A client of the master (or of the replicas) of *settings*, on a pool
    that asks the sentinels where to connect; with *follow_failovers*, a
    master's pool also listens for failovers (see :class:`_FailoverWatcher`),
    which a short-lived client, such as the ``flask redis`` command's, does
    without."""
    pool_class, sentinel_class = _sentinel_classes()
    sentinel_manager = sentinel_class(
        settings.sentinels, sentinel_kwargs=dict(settings.sentinel_kwargs)
    )
    # redis.Redis's keywords describe connections and go to the pool; those a
    # subclass adds are its own.
    connection_keywords = _constructor_keywords(_default_client_class()) or {}
    own, connection = {}, {}
    for name, value in settings.kwargs.items():
        if name not in connection_keywords:
            own[name] = value
        elif settings.kwargs.get("ssl") or not name.startswith("ssl_"):
            # Without TLS, redis.Redis ignores TLS options; connections fail.
            connection[name] = value
    pool = pool_class(
        settings.service_name,
        sentinel_manager,
        is_master=master,
        follow_failovers=follow_failovers,
        **connection,
    )
    client = settings.client_class(connection_pool=pool, **own)
    client.auto_close_connection_pool = True  # as Sentinel.master_for does
    return client


# After a sentinel announces a new master, the others report the old one until
# they hear of it, within their 2 s hello period: trust the announcement for
# a while longer than that.
_ANNOUNCEMENT_TRUSTED_FOR = 10.0
_SWITCH_MASTER = "+switch-master"
_WATCH_INTERVAL = 0.25  # how often a watcher checks whether to stop
_WATCH_RETRY_DELAY = 0.5  # between attempts to reach a sentinel that is down
_WATCH_TIMEOUT = 5.0  # socket timeouts of a watcher, unless configured


@functools.cache
def _sentinel_classes() -> tuple[type[t.Any], type[t.Any]]:
    """redis-py's Sentinel pool and Sentinel client, made to follow failovers
    (see :class:`_FailoverWatcher`). Made on first use: the module imports
    without redis-py."""
    from redis.sentinel import (
        Sentinel,
        SentinelConnectionPool,
        SentinelManagedConnection,
        SentinelManagedSSLConnection,
    )

    class FollowingSentinel(Sentinel):
        """Asks the sentinels where the master is, unless one has just
        announced a new master: then the ones that have not heard of it yet
        are not asked."""

        def __init__(
            self, sentinels: t.Sequence[tuple[str, int]], **kwargs: t.Any
        ) -> None:
            super().__init__(sentinels, **kwargs)  # type: ignore[no-untyped-call]
            self.addresses = list(sentinels)
            # service name -> (announced master, until when it is trusted)
            self.announcements: dict[str, tuple[tuple[str, int], float]] = {}

        def announce(self, service_name: str, address: tuple[str, int]) -> bool:
            """Trust *address* as the master for a while; ``False`` if it
            is trusted already."""
            now = time.monotonic()
            announced = self.announcements.get(service_name)
            if announced is not None and announced[0] == address and now < announced[1]:
                return False
            self.announcements[service_name] = (
                address,
                now + _ANNOUNCEMENT_TRUSTED_FOR,
            )
            return True

        def discover_master(self, service_name: str) -> t.Any:
            announced = self.announcements.get(service_name)
            if announced is not None and time.monotonic() < announced[1]:
                return announced[0]
            return super().discover_master(service_name)  # type: ignore[no-untyped-call]

    class ReconnectingConnection(SentinelManagedConnection):
        """Asks the sentinels where to connect (the master, or a replica)
        whenever it reconnects.

        redis-py 6 and later reconnect a connection that a failed command
        closed to the address it had, without asking: a command retried
        after its master died would be retried against the dead master until
        its retries ran out, long after the new master was announced.
        """

        def send_packed_command(
            self, command: t.Any, check_health: bool = True
        ) -> None:
            if not getattr(self, "_sock", True):
                # One attempt that asks the sentinels: the command's own retry
                # is around this call. The public connect() would nest a
                # second retry loop inside it.
                connect = getattr(self, "_connect_retry", self.connect)
                connect()
            super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]

    class ReconnectingSSLConnection(
        ReconnectingConnection, SentinelManagedSSLConnection
    ):
        pass

    class FollowingSentinelPool(SentinelConnectionPool):
        """A master's pool follows failovers from its first connection in
        each process until it is closed, unless made with *follow_failovers*
        false; closing it also closes its connections to the sentinels."""

        def __init__(
            self,
            service_name: str,
            sentinel_manager: t.Any,
            follow_failovers: bool = True,
            **kwargs: t.Any,
        ) -> None:
            if "connection_class" not in kwargs:
                kwargs["connection_class"] = (
                    ReconnectingSSLConnection
                    if kwargs.get("ssl")
                    else ReconnectingConnection
                )
            self.watcher = (
                _FailoverWatcher(self, sentinel_manager, service_name)
                if follow_failovers and kwargs.get("is_master", True)
                else None
            )
            super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]

        def get_connection(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
            if self.watcher is not None:
                self.watcher.start()
            return super().get_connection(*args, **kwargs)

        def disconnect(self, inuse_connections: bool = True) -> None:
            if inuse_connections:  # closing, not just dropping idle connections
                if self.watcher is not None:
                    self.watcher.stop()
                for sentinel in self.sentinel_manager.sentinels:
                    sentinel.close()
            super().disconnect(inuse_connections)

    return FollowingSentinelPool, FollowingSentinel


class _FailoverWatcher:
    """Makes a master's pool follow a failover as soon as a sentinel
    announces it.

    redis-py's Sentinel pool asks the sentinels where the master is only when
    it opens a connection, and keeps its open connections: after a failover
    they go on writing to the old master until it is demoted -- ten seconds
    or more -- and those writes are lost. Here a daemon thread per sentinel
    listens for ``+switch-master``; on an announcement for our master, the
    pool learns the new address, closes its idle connections and drops its
    busy ones as they come back, so the next commands reach the new master.

    The pool starts it on its first connection in each process (nothing runs
    at ``init_app``, and a forked worker starts its own), and stops it when it
    is closed. A sentinel that is down is tried again every half second.
    """

    def __init__(self, pool: t.Any, sentinel_manager: t.Any, service_name: str) -> None:
        self._pool = weakref.ref(pool)
        self._sentinel_manager = sentinel_manager
        self._service_name = service_name
        self._lock = threading.RLock()
        self._pid: int | None = None  # the process the threads run in
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Follow the sentinels, unless already following in this process."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._stopping = threading.Event()
            self._threads = [
                threading.Thread(
                    target=self._follow,
                    args=(host, port, self._stopping),
                    name=f"flask_and_redis: {self._service_name} from {host}:{port}",
                    daemon=True,
                )
                for host, port in self._sentinel_manager.addresses
            ]
            for thread in self._threads:
                thread.start()
            self._pid = os.getpid()

    def stop(self) -> None:
        """Stop following, and wait for the threads to end."""
        with self._lock:
            threads = self._threads if self._pid == os.getpid() else []
            self._stopping.set()
            self._threads, self._pid = [], None
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(2 * _WATCH_TIMEOUT)

    def _follow(self, host: str, port: int, stopping: threading.Event) -> None:
        from redis import Redis
        from redis.exceptions import RedisError

        options = dict(self._sentinel_manager.sentinel_kwargs)
        options["retry"] = _no_retries()  # the loop below retries
        for name in ("socket_timeout", "socket_connect_timeout"):
            if options.get(name) is None:  # never hang: stop() waits
                options[name] = _WATCH_TIMEOUT
        sentinel = Redis(host=host, port=port, **options)
        pubsub = sentinel.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        subscribed = failing = False
        try:
            while not stopping.is_set() and self._pool() is not None:
                try:
                    if not subscribed:
                        pubsub.subscribe(_SWITCH_MASTER)
                        subscribed = True
                    # Resubscribes by itself after a reconnection.
                    message = pubsub.get_message(timeout=_WATCH_INTERVAL)
                except RedisError as error:
                    if not failing:
                        logger.warning(
                            "Cannot hear failovers of %r from the sentinel %s:%s,"
                            " trying again: %s",
                            self._service_name,
                            host,
                            port,
                            error,
                        )
                    failing = True
                    stopping.wait(_WATCH_RETRY_DELAY)
                    continue
                failing = False
                if message is not None:
                    self._announced(message["data"])
        finally:
            pubsub.close()
            sentinel.close()

    def _announced(self, data: bytes | str) -> None:
        # "<master name> <old ip> <old port> <new ip> <new port>"
        text = data.decode() if isinstance(data, bytes) else data
        fields = text.split()
        pool = self._pool()
        if len(fields) != 5 or fields[0] != self._service_name or pool is None:
            return
        try:
            address = (fields[3], int(fields[4]))
        except ValueError:
            return
        if not self._sentinel_manager.announce(self._service_name, address):
            return  # heard from another sentinel already
        # The pool asks (and gets the announced address); as it changed, the
        # pool closes its idle connections, and closes busy ones on release.
        pool.get_master_address()
        # Once followed: every command called from now on goes to the new master.
        logger.info(
            "The sentinels announce a new master for %r: %s:%s",
            self._service_name,
            *address,
        )


# -- Client construction: asyncio clients, one per event loop --------------------


class LoopLocalClient:
    """The asyncio client of one app and prefix: one client per event loop.

    An asyncio client's connections belong to the event loop that opened
    them, and Flask runs each ``async def`` view in a new event loop that it
    closes when the view returns. So for an asyncio client class
    (``<prefix>_CLASS = "redis.asyncio.Redis"``) every event loop gets a
    client of its own, built from the same :class:`ClientSettings` on first
    use in that loop, reused for as long as the loop runs, and closed, with
    its connections, when the loop shuts down (``loop.shutdown_asyncgens()``,
    which ``asyncio.run()`` calls). The client of a loop closed without
    shutting down is dropped, unclosed, when the next loop's client is built.

    It stands in ``app.extensions["redis"][prefix]`` where a sync prefix
    has its client, and hands attribute lookups on to the running loop's
    client: ``await app.extensions["redis"]["ASYNC_REDIS"].get("key")``.

    :param settings: what every loop's client is built from.
    """

    __slots__ = ("_clients", "_closers", "settings")

    def __init__(self, settings: ClientSettings) -> None:
        #: The settings each loop's client is built from.
        self.settings = settings
        # Plain dicts: weak keys would not let a loop go, since the values
        # refer to it (a client's connections through their transports and
        # streams, a closer through its frame and its finalizer, the loop's
        # hook). Both entries leave when the loop shuts down, or once it is
        # found closed without shutting down (_forget_closed_loops).
        self._clients: dict[asyncio.AbstractEventLoop, t.Any] = {}
        self._closers: dict[
            asyncio.AbstractEventLoop, t.AsyncGenerator[None, None]
        ] = {}

    @property
    def client(self) -> t.Any:
        """The running event loop's client, built on first use in that loop.

        :raise RuntimeError: no event loop is running in this thread.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(self._no_loop_message()) from None
        client = self._clients.get(loop)
        if client is None:
            client = self._open(loop)
        return client

    def _open(self, loop: asyncio.AbstractEventLoop) -> t.Any:
        self._forget_closed_loops()
        client = self.settings.create_client()
        closer = self._close_at_shutdown(loop, client)
        # Take the closer to its yield now. Its first step registers it with
        # the running loop (through sys.set_asyncgen_hooks), and the loop's
        # shutdown_asyncgens() closes it -- running its finally, which can
        # still await -- before the loop is closed. asyncio.run() and
        # asyncio.Runner call it, and so do asgiref (Flask's async views),
        # Quart and Hypercorn.
        try:
            closer.asend(None).send(None)
        except StopIteration:
            pass
        self._clients[loop] = client
        self._closers[loop] = closer
        _expose_instance_attributes(client)
        logger.debug(
            "%s: new client for event loop %#x", self.settings.prefix, id(loop)
        )
        return client

    async def _close_at_shutdown(
        self, loop: asyncio.AbstractEventLoop, client: t.Any
    ) -> t.AsyncGenerator[None, None]:
        try:
            yield
        finally:
            del self._clients[loop], self._closers[loop]
            await client.aclose()
            logger.debug(
                "%s: closed the client of event loop %#x",
                self.settings.prefix,
                id(loop),
            )

    def _forget_closed_loops(self) -> None:
        # A loop closed without shutdown_asyncgens() never ran its closer,
        # and its connections can no longer be closed: closing an asyncio
        # transport schedules a callback on its loop, which raises "Event loop
        # is closed" once the loop is. So its client is let go, for the
        # garbage collector to close the sockets (asyncio and redis-py warn
        # "unclosed ..." as it does), rather than kept for the life of the
        # process. Looked for when a new loop's client is built, off the path
        # of every call.
        for loop in list(self._clients):
            if loop.is_closed():
                self._clients.pop(loop, None)
                # Dropped unrun: on a closed loop the finalizer the loop gave
                # it does nothing, and its finally could not await.
                self._closers.pop(loop, None)
                logger.warning(
                    "%s: event loop %#x was closed without"
                    " loop.shutdown_asyncgens(), so its client could not be"
                    " closed; the client is dropped and its connections are"
                    " left to the garbage collector. Run event loops with"
                    " asyncio.run() or asyncio.Runner, or call"
                    " shutdown_asyncgens() before close().",
                    self.settings.prefix,
                    id(loop),
                )

    def _no_loop_message(self) -> str:
        return (
            f"{self.settings.prefix} has an asyncio client class"
            f" ({_class_name(self.settings.client_class)}), whose clients belong"
            " to an event loop, and no event loop is running here. Use it in an"
            " async view or a coroutine ('await redis.get(...)'); for sync code,"
            " configure another prefix with a sync client class next to this one."
        )

    def __getattr__(self, name: str) -> t.Any:
        if name.startswith("_"):
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r}"
            )
        return getattr(self.client, name)

    def __repr__(self) -> str:
        settings = self.settings
        return (
            f"<{type(self).__module__}.{type(self).__name__} {settings.prefix}"
            f" {_class_name(settings.client_class)} to {settings.url},"
            f" clients in {len(self._clients)} event loops>"
        )


# -- The extension ---------------------------------------------------------------


class _Binding:
    """One app's registration of one extension: its settings and its client."""

    __slots__ = ("client", "settings")

    def __init__(self, settings: ClientSettings, client: t.Any) -> None:
        self.settings = settings
        self.client = client


class _SentinelBinding(_Binding):
    """A client of the master that the sentinels name, and one of its replicas."""

    __slots__ = ("replica",)

    def __init__(self, settings: SentinelSettings, client: t.Any) -> None:
        super().__init__(settings, client)
        self.replica = settings.create_replica_client()


class _ClusterBinding(_Binding):
    """A cluster client, built on first use: it connects as it is built, and
    ``init_app`` makes no connection."""

    __slots__ = ("_built", "_lock")

    def __init__(self, settings: ClusterSettings) -> None:
        self.settings = settings
        self._built: t.Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> t.Any:
        client = self._built
        if client is None:
            with self._lock:
                if self._built is None:
                    self._built = self.settings.create_client()
                    _expose_instance_attributes(self._built)
                client = self._built
        return client


def _bind(settings: ClientSettings) -> _Binding | LoopLocalClient:
    """What serves one app and prefix: its client, a cluster client built on
    first use, or for an asyncio client class a client per event loop. Makes
    no connection."""
    if settings.is_asyncio:
        if not hasattr(settings.client_class, "aclose"):
            key = f"{settings.prefix}_CLASS"
            raise ConfigurationError(
                key,
                f"{_class_name(settings.client_class)} is an asyncio client class"
                " without aclose(), so its clients cannot be closed with their"
                " event loops; use redis-py 5.0.1 or later.",
            )
        _expose_client_attributes(t.cast(type, settings.client_class))
        return LoopLocalClient(settings)
    if isinstance(settings, ClusterSettings):
        _expose_client_attributes(t.cast(type, settings.client_class))
        return _ClusterBinding(settings)
    client = settings.create_client()
    _expose_client_attributes(client)
    if isinstance(settings, SentinelSettings):
        return _SentinelBinding(settings, client)
    return _Binding(settings, client)


class _Clients(Mapping[str, t.Any]):
    """``app.extensions["redis"]``: for each prefix of one app, its client
    (a cluster client is built on first access), or the
    :class:`LoopLocalClient` of an asyncio client class."""

    __slots__ = ("_bindings",)

    def __init__(self) -> None:
        self._bindings: dict[str, _Binding | LoopLocalClient] = {}

    def __getitem__(self, prefix: str) -> t.Any:
        binding = self._bindings[prefix]
        return binding if isinstance(binding, LoopLocalClient) else binding.client

    def __contains__(self, prefix: object) -> bool:
        return prefix in self._bindings  # without building a cluster client

    def __iter__(self) -> t.Iterator[str]:
        return iter(self._bindings)

    def __len__(self) -> int:
        return len(self._bindings)

    def __repr__(self) -> str:
        return f"<clients of the prefixes {list(self._bindings)}>"

    def add(self, prefix: str, binding: _Binding | LoopLocalClient) -> None:
        self._bindings[prefix] = binding

    def settings(self) -> dict[str, ClientSettings]:
        """The settings of each prefix's client, in the order the prefixes
        were registered; builds no client."""
        return {prefix: binding.settings for prefix, binding in self._bindings.items()}


_NO_APP = object()  # never an app, and not None: matches no context


class _NoContext:
    """Stands in for the app context outside of one: saves a branch per call."""

    app = None


_NO_CONTEXT = _NoContext()
_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _current_quart_app() -> t.Any:
    """The app of Quart's current app context; None without one, or without
    Quart (which is never imported here)."""
    quart = sys.modules.get("quart")
    if quart is None or not quart.has_app_context():
        return None
    return quart.current_app._get_current_object()


def _check_prefix(prefix: object) -> str:
    if (
        not isinstance(prefix, str)
        or not _PREFIX.fullmatch(prefix)
        or prefix.endswith("_")
    ):
        raise ConfigurationError(
            "config_prefix",
            f"{prefix!r} is not a config prefix; expected letters, digits and"
            " underscores, starting with a letter and not ending with '_', such as"
            " 'REDIS' or 'CACHE_REDIS'.",
        )
    return prefix


class Redis(_ClientInterface, t.Generic[ClientT]):
    """The Redis extension: a client per app, configured from ``app.config``.

    Every public attribute of the client -- ``get``, ``set``, ``pipeline``,
    ``pubsub``, … -- is available on the extension and resolves to the client
    of the current app; so is item access (``redis["key"]``). The client itself
    is :attr:`connection` and ``app.extensions["redis"][prefix]``.

    :param app: the app to register on now; or call :meth:`init_app` later.
    :param config_prefix: the prefix of the config keys, ``"REDIS"`` by
        default; use one extension, with its own prefix, per database.
    :param client_kwargs: keyword arguments for the client class, used as
        defaults under the app's config (``Redis(decode_responses=True)``).
        ``strict`` is accepted and ignored, as in flask-redis.
    """

    __slots__ = (
        "__weakref__",
        "_bindings",
        "_last",
        "_lock",
        "client_kwargs",
        "config_prefix",
        "provider",
    )

    def __init__(
        self,
        app: Flask | None = None,
        config_prefix: str = "REDIS",
        **client_kwargs: t.Any,
    ) -> None:
        #: The config prefix used when :meth:`init_app` is given none.
        self.config_prefix = _check_prefix(config_prefix)
        #: Client keyword arguments given in code, under each app's config.
        self.client_kwargs = _without_strict(client_kwargs)
        #: The client class given to :meth:`from_custom_provider`, if any.
        self.provider: Callable[..., t.Any] | None = None
        self._bindings: weakref.WeakKeyDictionary[Flask, _Binding | LoopLocalClient] = (
            weakref.WeakKeyDictionary()
        )
        # The app last resolved and its binding: the hot path is one identity
        # check against the current app. It keeps that one app alive until
        # another is used; registrations themselves are held weakly.
        self._last: tuple[object, _Binding | LoopLocalClient] = (
            _NO_APP,
            t.cast(_Binding, None),
        )
        # Serialises registering and resolving an app off the hot path, so a
        # lookup that began before an init_app cannot cache its stale answer.
        self._lock = threading.Lock()
        if app is not None:
            self.init_app(app)

    @classmethod
    def from_custom_provider(
        cls, provider: Callable[..., ClientT], app: Flask | None = None, **kwargs: t.Any
    ) -> Redis[ClientT]:
        """Make an extension whose clients are built by *provider*.

        The flask-redis way to swap the client class (``FakeRedis`` in
        tests); the provider takes the place of ``<prefix>_CLASS`` and is
        called with the configured keyword arguments (it needs no
        ``from_url``).

        :param provider: a client class, such as ``fakeredis.FakeRedis``.
        :param app: the app to register on now.
        :param kwargs: ``config_prefix`` and client keyword arguments.
        :raise AssertionError: *provider* is ``None`` (as in flask-redis).
        """
        if provider is None:
            raise AssertionError(
                "The custom provider is None; pass the client class to use,"
                " such as fakeredis.FakeRedis."
            )
        extension = cls(**kwargs)
        extension.provider = provider
        if app is not None:
            extension.init_app(app)
        return extension

    def init_app(
        self, app: Flask, config_prefix: str | None = None, **client_kwargs: t.Any
    ) -> None:
        """Register the extension on *app*: read and check its config, build
        its client, and store it in ``app.extensions["redis"][prefix]``.

        Makes no connection. Call it once per app; use another extension for
        another database of the same app.

        :param app: the Flask app.
        :param config_prefix: the prefix for this app; defaults to the
            extension's own.
        :param client_kwargs: client keyword arguments for this app, over the
            extension's and under the app's config.
        :raise ConfigurationError: a config value that cannot be used.
        :raise RuntimeError: the app already has this extension, or another
            one with the same prefix.
        """
        prefix = (
            self.config_prefix
            if config_prefix is None
            else _check_prefix(config_prefix)
        )
        registered = app.extensions.get("redis", {})
        if app in self._bindings:
            raise RuntimeError(
                f"This Redis extension is already registered on the app {app.name!r},"
                f" with the prefix {self._bindings[app].settings.prefix!r}. Use one"
                " extension per database: Redis(app, config_prefix='REDIS2')."
            )
        if prefix in registered:
            raise RuntimeError(
                f"Another Redis extension is already registered on the app"
                f" {app.name!r} with the prefix {prefix!r}. Import and use that one,"
                " or give this one a prefix of its own:"
                " Redis(app, config_prefix='REDIS2')."
            )
        settings = client_settings_from_config(
            app.config,
            prefix,
            client_class=self.provider,
            defaults={**self.client_kwargs, **_without_strict(client_kwargs)},
        )
        binding = _bind(settings)
        self._register(app, binding)
        app.extensions.setdefault("redis", _Clients()).add(prefix, binding)
        _add_cli(app)
        logger.debug(
            "%s on app %r: %s to %s",
            prefix,
            app.name,
            _class_name(settings.client_class),
            settings.url,
        )

    @property
    def connection(self) -> ClientT:  # type: ignore[override]
        """The client of the current app; for an asyncio client class, the
        client of the running event loop (see :class:`LoopLocalClient`).

        Use it directly in hot loops: calls on the client skip the lookup of
        the current app that each call through the extension makes.
        """
        client: ClientT = self._current_binding().client
        return client

    @property
    def replica(self) -> t.Any:
        """The replica client of the current app, for reads that may lag the
        master a little: with Sentinel only (see :doc:`sentinel`).

        :raise RuntimeError: the app's client does not use Sentinel.

        .. versionadded:: 2.0
        """
        binding = self._current_binding()
        if isinstance(binding, _SentinelBinding):
            return binding.replica
        prefix = binding.settings.prefix
        raise RuntimeError(
            f"{prefix} has no replica client: replicas are found through Redis"
            f" Sentinel, and {prefix} is not configured for it. Set"
            f" {prefix}_SENTINELS and {prefix}_SENTINEL_MASTER, or a"
            f" redis+sentinel:// {prefix}_URL; or read from the client itself."
        )

    def settings_for(self, app: Flask) -> ClientSettings:
        """The settings *app*'s client was built with.

        :raise RuntimeError: the extension is not registered on *app*.
        """
        return self._find_binding(app).settings

    def _current_binding(self) -> _Binding | LoopLocalClient:
        app = _current_app_context(_NO_CONTEXT).app
        cached_app, binding = self._last
        if app is cached_app:
            return binding
        return self._find_binding(app)

    def _register(self, app: Flask, binding: _Binding | LoopLocalClient) -> None:
        with self._lock:
            self._bindings[app] = binding
            self._forget_last()
        # With the app gone, a cached answer for "outside of a context" is
        # stale too. The callback holds the extension weakly, and takes no
        # lock: it may run in the middle of anything.
        weakref.finalize(app, _forget_last_app, weakref.ref(self))

    def _forget_last(self) -> None:
        self._last = (_NO_APP, self._last[1])

    def _find_binding(self, app: Flask | None) -> _Binding | LoopLocalClient:
        with self._lock:
            return self._find_binding_locked(app)

    def _find_binding_locked(self, app: Flask | None) -> _Binding | LoopLocalClient:
        if app is not None:
            found = self._bindings.get(app)
            if found is None:
                raise RuntimeError(
                    f"The current application {app.name!r} is not registered with"
                    f" this Redis extension (prefix {self.config_prefix!r}). Call"
                    " init_app(app) on it in your app factory, or use the extension"
                    " that was registered on this app."
                )
            binding = found
        else:
            bindings = list(self._bindings.values())
            if not bindings:
                raise RuntimeError(
                    f"This Redis extension (prefix {self.config_prefix!r}) is not"
                    " registered on any application. Call redis.init_app(app), or"
                    " create it with Redis(app)."
                )
            if len(bindings) > 1:
                # Quart keeps its app context apart from Flask's. Not cached:
                # the next call may come from another Quart app.
                quart_app = _current_quart_app()
                if quart_app in self._bindings:
                    return self._bindings[quart_app]
                raise RuntimeError(
                    "Working outside of application context, and this Redis"
                    f" extension (prefix {self.config_prefix!r}) is registered on"
                    f" {len(bindings)} applications, so it cannot tell which client"
                    " to use. Push an app context ('with app.app_context():'), or"
                    " use app.extensions['redis'][prefix]."
                )
            binding = bindings[0]
        self._last = (app, binding)
        return binding

    if not t.TYPE_CHECKING:  # checkers see the client's attributes instead

        def __contains__(self, name: t.Any) -> bool:
            return name in self._current_binding().client

    def __getitem__(self, name: t.Any) -> t.Any:
        return self._current_binding().client[name]

    def __setitem__(self, name: t.Any, value: t.Any) -> None:
        self._current_binding().client[name] = value

    def __delitem__(self, name: t.Any) -> None:
        del self._current_binding().client[name]

    def __repr__(self) -> str:
        bindings = list(self._bindings.values())
        app = _current_app_context(_NO_CONTEXT).app
        if app is not None:
            found = self._bindings.get(app)
            bindings = [found] if found else []
        if len(bindings) == 1:
            settings = bindings[0].settings
            where = f"{settings.prefix} {settings.url}"
        else:
            where = f"{self.config_prefix} on {len(bindings)} apps"
        return f"<{type(self).__module__}.{type(self).__name__} {where}>"

    def __copy__(self) -> Redis[ClientT]:
        """A new extension with the same settings and registrations; apps
        registered on it later are its own."""
        copied = type(self)(config_prefix=self.config_prefix, **self.client_kwargs)
        copied.provider = self.provider
        for app, binding in list(self._bindings.items()):
            copied._register(app, binding)
        return copied

    def __reduce__(self) -> t.NoReturn:
        raise TypeError(
            "A Redis extension cannot be pickled: it holds live clients. Create it"
            " at import time and call init_app(app) in each process instead."
        )


def _forget_last_app(extension: weakref.ref[Redis[t.Any]]) -> None:
    alive = extension()
    if alive is not None:
        alive._forget_last()


def _without_strict(client_kwargs: dict[str, t.Any]) -> dict[str, t.Any]:
    """flask-redis's ``strict`` chose StrictRedis, which is Redis since redis-py 3."""
    return {name: value for name, value in client_kwargs.items() if name != "strict"}


def _client_attribute(name: str, doc: str | None) -> property:
    def get(self: Redis) -> t.Any:
        # The path of every call through the extension, so _current_binding
        # is written out here: a method call would add a third to its cost.
        app = _current_app_context(_NO_CONTEXT).app
        cached_app, binding = self._last
        if app is not cached_app:
            binding = self._find_binding(app)
        return getattr(binding.client, name)

    def refuse(self: Redis, *value: object) -> t.NoReturn:
        raise AttributeError(
            f"{name!r} of a Redis extension is the current app's client's; it"
            " cannot be set here. To replace it in a test, patch the client:"
            f" mock.patch.object(redis.connection, {name!r})."
        )

    get.__name__ = name
    return property(get, refuse, refuse, doc or f"``{name}`` of the current client.")


def _expose(name: str, doc: str | None = None) -> None:
    if not hasattr(Redis, name):
        setattr(Redis, name, _client_attribute(name, doc))


def _expose_client_attributes(client: object) -> None:
    """Make every public attribute of *client* an attribute of the extension,
    resolved at each lookup to the current app's client: its class's methods
    and its own attributes, such as ``connection_pool``.

    The names are taken when a client is registered (the class's, for the
    asyncio and cluster clients made later, and the client's own when it is
    made): the extension has no ``__getattr__`` for names that appear after
    that, because a class with one takes CPython's slow path for every
    attribute lookup on its instances, a third again on each call through
    the extension (see docs/performance.rst).
    """
    client_class = client if isinstance(client, type) else type(client)
    for name in dir(client):
        if not name.startswith("_"):
            attribute = getattr(client_class, name, None)
            _expose(
                name,
                inspect.getdoc(attribute) if inspect.isroutine(attribute) else None,
            )


def _expose_instance_attributes(client: object) -> None:
    """Expose the attributes *client* has of its own, such as
    ``connection_pool``: for the clients made after init_app (asyncio and
    cluster clients)."""
    for name in getattr(client, "__dict__", ()):
        if not name.startswith("_"):
            _expose(name)


# -- The flask redis command -----------------------------------------------------

_redis_group = AppGroup(
    "redis", help="Check and inspect the Redis connections of the app."
)


def _add_cli(app: Flask) -> None:
    # One group for all of the app's prefixes: it finds them in
    # app.extensions["redis"] when it runs.
    if "redis" not in app.cli.commands:  # a command of the app's own wins
        app.cli.add_command(_redis_group)


def _registered_settings(app: Flask) -> dict[str, ClientSettings]:
    """The settings of each prefix registered on *app*, in the order of
    registration; builds no client."""
    clients = app.extensions.get("redis")
    return clients.settings() if isinstance(clients, _Clients) else {}


_prefix_option = click.option(
    "--prefix",
    metavar="PREFIX",
    help="Only the client of this config prefix (default: every prefix).",
)


def _selected_settings(prefix: str | None) -> list[ClientSettings]:
    app = t.cast(Flask, _current_app_context(_NO_CONTEXT).app)  # commands run in one
    registered = _registered_settings(app)
    if prefix is None:
        return list(registered.values())
    if prefix not in registered:
        raise click.BadParameter(
            f"{prefix!r} is not a prefix of this app; its prefixes are"
            f" {', '.join(map(repr, registered))}.",
            param_hint="'--prefix'",
        )
    return [registered[prefix]]


class _Probe:
    """A client for one CLI command, made from a prefix's settings but giving
    up after *timeout* seconds, without retries: redis-py 8 retries a refused
    connection ten times with backoff, too slow for a health check. With
    Sentinel, its connections to the sentinels do so too, and it follows no
    failovers. Its :meth:`call` builds it (a cluster client connects as it is
    built), and runs asyncio clients' commands to completion too."""

    def __init__(self, settings: ClientSettings, timeout: float) -> None:
        timeouts = ("socket_timeout", "socket_connect_timeout")
        accepted = _constructor_keywords(settings.client_class)
        overrides: dict[str, t.Any] = {}
        for name in timeouts:
            if accepted is None or name in accepted:
                overrides[name] = timeout
        default_retry: t.Any = (accepted or {}).get("retry")
        if hasattr(default_retry, "get_retries"):
            # The class's own kind of Retry: redis.asyncio has one of its own.
            overrides["retry"] = _no_retries(type(default_retry))
        changes: dict[str, t.Any] = {"kwargs": {**settings.kwargs, **overrides}}
        if isinstance(settings, SentinelSettings):
            # The sentinels are asked first, with options of their own: the
            # app's timeouts, which may be none.
            changes["sentinel_kwargs"] = {
                **settings.sentinel_kwargs,
                **dict.fromkeys(timeouts, timeout),
                "retry": _no_retries(),
            }
        self.settings = settings
        self._probe_settings = dataclasses.replace(settings, **changes)
        self.client: t.Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if settings.is_asyncio:
            self._loop = asyncio.new_event_loop()

    def call(self, method: str, *args: t.Any) -> t.Any:
        if self.client is None:
            settings = self._probe_settings
            if isinstance(settings, SentinelSettings):
                # No failover watcher: its threads would outlive the command's
                # one connection, and closing the client would wait for them.
                self.client = _sentinel_client(
                    settings, master=True, follow_failovers=False
                )
            else:
                self.client = settings.create_client()
        result = getattr(self.client, method)(*args)
        if self._loop is not None:
            result = self._loop.run_until_complete(result)
        return result

    def error_text(self, error: Exception) -> str:
        text = f"{type(error).__name__}: {error}"
        password = self.settings.kwargs.get("password")
        if password:  # redis-py does not show it, but a custom client might
            text = text.replace(str(password), _MASK)
        return text

    def __enter__(self) -> _Probe:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self.client is None:
                return
            if self._loop is None:
                self.client.close()
                return
            self.call("aclose" if hasattr(self.client, "aclose") else "close")
        finally:
            if self._loop is not None:
                self._loop.close()


def _server_name(info: Mapping[str, t.Any]) -> str:
    if "valkey_version" in info:
        return f"Valkey {info['valkey_version']}"
    return f"Redis {info.get('redis_version', '(version unknown)')}"


_timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=3.0,
    show_default=True,
    help="Seconds to wait for each server, which is tried once.",
)


@_redis_group.command("ping")
@_prefix_option
@_timeout_option
def _ping_command(prefix: str | None, timeout: float) -> None:
    """Ping each prefix's server; exit status 1 if one is unreachable.

    Shows each server's address (password masked), the round-trip time of a
    PING over an open connection, and the server's name and version.
    """
    unreachable = 0
    selected = _selected_settings(prefix)
    width = max(len(settings.prefix) for settings in selected)
    for settings in selected:
        where = f"{settings.prefix:<{width}}  {settings.url}"
        with _Probe(settings, timeout) as probe:
            try:
                probe.call("ping")  # connects, authenticates, selects the db
                started = time.perf_counter()
                probe.call("ping")
                round_trip = time.perf_counter() - started
                server = _server_name(probe.call("info", "server"))
            except Exception as error:  # every failure is the answer here
                unreachable += 1
                click.echo(f"{where}  unreachable: {probe.error_text(error)}")
                continue
        click.echo(f"{where}  PONG in {round_trip * 1000:.2f} ms, {server}")
    if unreachable:
        raise click.exceptions.Exit(1)


@_redis_group.command("info")
@_prefix_option
@_timeout_option
@click.argument("section", required=False)
def _info_command(prefix: str | None, timeout: float, section: str | None) -> None:
    """Show each prefix's server INFO.

    All of its default sections, or one SECTION: server, clients, memory,
    stats, keyspace, … ('everything' for all).
    """
    failed = False
    for settings in _selected_settings(prefix):
        click.echo(f"# {settings.prefix}  {settings.url}")
        with _Probe(settings, timeout) as probe:
            try:
                info = probe.call("info", *([section] if section else []))
            except Exception as error:  # every failure is the answer here
                failed = True
                click.echo(f"unreachable: {probe.error_text(error)}\n")
                continue
        if not info:
            click.echo("(empty)")
        width = max(map(len, info), default=0)
        for name, value in info.items():
            click.echo(f"{name:<{width}}  {_info_value(value)}")
        click.echo()
    if failed:
        raise click.exceptions.Exit(1)


def _info_value(value: object) -> str:
    # INFO's nested values: keyspace ("db0": {"keys": 1, …}), modules (lists).
    if isinstance(value, Mapping):
        return ", ".join(f"{name}={item}" for name, item in value.items())
    if isinstance(value, list):
        return "; ".join(map(_info_value, value))
    return str(value)


@_redis_group.command("config")
@_prefix_option
def _config_command(prefix: str | None) -> None:
    """Show each prefix's client settings, with where each came from.

    The client class, where it connects, and every keyword argument after
    precedence, with the config key (or "code") it came from. Secrets are
    masked.
    """
    for settings in _selected_settings(prefix):
        click.echo(f"# {settings.prefix}")
        click.echo(f"class  {_class_name(settings.client_class)}")
        click.echo(f"url    {settings.url}")
        shown = {name: repr(value) for name, value in settings.masked_kwargs().items()}
        width = max(map(len, shown), default=0)
        value_width = max(map(len, shown.values()), default=0)
        for name, value in sorted(shown.items()):
            source = settings.sources.get(name, "code")
            click.echo(f"  {name:<{width}} = {value:<{value_width}}  ({source})")
        click.echo(
            f"  (other keyword arguments: the defaults of"
            f" {_class_name(settings.client_class)})\n"
        )


# -- Integrations ----------------------------------------------------------------

#: The config key naming the prefix whose client Flask-Caching uses.
CACHE_CONFIG_PREFIX_KEY = "CACHE_REDIS_CONFIG_PREFIX"


def flask_caching_backend(
    app: Flask, config: dict[str, t.Any], args: list[t.Any], kwargs: dict[str, t.Any]
) -> t.Any:
    """A Flask-Caching backend on the client of one of the app's prefixes.

    Set ``CACHE_TYPE = "flask_and_redis.flask_caching_backend"`` and, unless
    it is ``"REDIS"``, ``CACHE_REDIS_CONFIG_PREFIX`` to the prefix, and
    register the :class:`Redis` extension before the ``Cache``. The cache is
    Flask-Caching's ``RedisCache`` on that client (one pool, one config), but
    its ``clear()`` deletes only the keys under ``CACHE_KEY_PREFIX``, with
    ``SCAN`` and ``UNLINK``: Flask-Caching's own runs ``KEYS``, and
    ``FLUSHDB`` when the key prefix is empty. Like ``init_app``, it makes no
    connection: a cluster client is built when the cache is first used.

    Flask-Caching calls it: ``CACHE_TYPE`` names a backend factory.

    :param app: the Flask app the cache is registered on.
    :param config: the app's config, updated with the ``config`` given to
        ``Cache``; ``CACHE_REDIS_CONFIG_PREFIX`` and ``CACHE_KEY_PREFIX`` are
        read from it.
    :param args: positional arguments of the backend (``CACHE_ARGS``); none
        are accepted, as the client is the prefix's.
    :param kwargs: keyword arguments of the backend, Flask-Caching's
        ``RedisCache``: ``default_timeout`` (``CACHE_DEFAULT_TIMEOUT``) and
        those in ``CACHE_OPTIONS``.
    :raise ConfigurationError: the prefix is not registered on the app, its
        client decodes responses or is asyncio's, the key prefix is empty,
        or ``CACHE_ARGS`` is set.
    """
    prefix = config.get(CACHE_CONFIG_PREFIX_KEY) or "REDIS"
    registered = _registered_settings(app)
    if prefix not in registered:
        known = ", ".join(map(repr, registered)) or "none"
        raise ConfigurationError(
            CACHE_CONFIG_PREFIX_KEY,
            f"{prefix!r} is not the prefix of a Redis extension on the app"
            f" {app.name!r} (its prefixes: {known})."
            " Register the extension before the cache -- Redis(app), then"
            " Cache(app) -- and name its prefix here.",
        )
    settings = registered[prefix]
    if settings.is_asyncio:
        raise ConfigurationError(
            CACHE_CONFIG_PREFIX_KEY,
            f"the client of {prefix!r} is an asyncio client; Flask-Caching calls"
            " its client synchronously. Use a prefix with a synchronous client.",
        )
    if settings.kwargs.get("decode_responses"):
        source = settings.sources.get("decode_responses", "code")
        raise ConfigurationError(
            "keyword argument 'decode_responses'" if source == "code" else source,
            "decode_responses is on, but the cache stores pickled bytes,"
            " which a client that decodes responses cannot read back; give the"
            " cache a prefix of its own, without decode_responses.",
        )
    key_prefix = config.get("CACHE_KEY_PREFIX")
    if not key_prefix:
        raise ConfigurationError(
            "CACHE_KEY_PREFIX",
            f"{key_prefix!r} is empty; the cache's keys share the database with"
            " others, and clear() deletes the keys under this prefix only. Set"
            " a prefix such as 'flask_cache_' (Flask-Caching's default).",
        )
    if args:
        raise ConfigurationError(
            "CACHE_ARGS",
            f"{_show('CACHE_ARGS', args)} is not used by this backend: its"
            " client is the one of the prefix; pass options in CACHE_OPTIONS.",
        )
    clients = app.extensions["redis"]
    client = (
        _ClientOnFirstUse(clients, prefix)
        if isinstance(settings, ClusterSettings)
        else clients[prefix]
    )
    return _shared_database_redis_cache()(host=client, key_prefix=key_prefix, **kwargs)


class _ClientOnFirstUse:
    """Stands in for the client of a prefix whose client connects as it is
    built, a cluster's: it is built (by ``app.extensions["redis"]``) when one
    of its attributes is first used, not when the stand-in is handed out."""

    __slots__ = ("_clients", "_prefix")

    def __init__(self, clients: Mapping[str, t.Any], prefix: str) -> None:
        self._clients = clients
        self._prefix = prefix

    def __getattr__(self, name: str) -> t.Any:
        if name.startswith("_"):  # also before __init__, as copy does
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r}"
            )
        return getattr(self._clients[self._prefix], name)

    def __repr__(self) -> str:
        return f"<the client of {self._prefix}, built on first use>"


@functools.cache
def _shared_database_redis_cache() -> type[t.Any]:
    from flask_caching.backends.rediscache import RedisCache

    class SharedDatabaseRedisCache(RedisCache):
        """Flask-Caching's Redis cache, whose :meth:`clear` deletes only the
        keys under its key prefix."""

        def clear(self) -> bool:
            # SCAN, not KEYS: it does not block the server on a large
            # database; UNLINK frees the memory in the background.
            pattern = _GLOB_SPECIAL.sub(r"\\\g<0>", self._get_prefix()) + "*"
            batch: list[t.Any] = []
            for key in self._read_client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) == 1000:
                    self._write_client.unlink(*batch)
                    batch.clear()
            if batch:
                self._write_client.unlink(*batch)
            return True

    return SharedDatabaseRedisCache


_GLOB_SPECIAL = re.compile(r"[\\*?\[\]]")
