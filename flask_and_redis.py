"""Flask-And-Redis: the Redis connection manager for Flask.

Configure Redis as the rest of a Flask app is configured (``REDIS_URL``, or
``REDIS_HOST``, ``REDIS_PORT``, …; a prefix per database) and get a client on
``redis.connection``, with every client method callable on the extension::

    app.config["REDIS_URL"] = "redis://localhost:6379/0"
    redis = Redis(app)
    with app.app_context():
        redis.set("greeting", "hello")

The module is the whole runtime: install it, or copy this one file. Its
sections: 1. the extension; 2. settings; 3. reading the config; 4. checking
values; 5. URLs; 6. topologies: the client class, Sentinel and Cluster;
7. building clients; 8. following Sentinel failovers; 9. asyncio; 10. the
``flask redis`` command; 11. integrations.
"""

from __future__ import annotations

import asyncio
import atexit
import codecs
import concurrent.futures
import contextvars
import copy
import dataclasses
import difflib
import functools
import importlib
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
from itertools import islice
from traceback import walk_tb
from types import SimpleNamespace
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import click
from flask import Flask
from flask.cli import ScriptInfo
from flask.globals import _cv_app  # flask.current_app's context variable

if t.TYPE_CHECKING:
    # Type checkers see a redis-py client: calls through the extension are checked.
    from redis import Redis as _ClientInterface
    from typing_extensions import TypeVar

    #: The extension's client class (redis.Redis, unless annotated or a provider's).
    ClientT = TypeVar("ClientT", default=_ClientInterface)
else:

    class _ClientInterface:
        __slots__ = ()

    ClientT = t.TypeVar("ClientT")

__all__ = [
    "CACHE_CONFIG_PREFIX_KEY",
    "ClientSettings",
    "ClusterSettings",
    "ConfigurationError",
    "LoopLocalClient",
    "Redis",
    "SentinelSettings",
    "cli",
    "client_settings_from_config",
    "flask_caching_backend",
    "CommandRecord",
    "get_recorded_commands",
    "mask_url",
]
__version__ = "2.0.0.dev0"

logger = logging.getLogger("flask_and_redis")


class ConfigurationError(ValueError):
    """A config value that :meth:`Redis.init_app` cannot use (:ref:`config-errors`).

    :param key: the config key, or where the value came from: ``"REDIS_OPTIONS['db']"``.
    :param message: what is wrong and what is accepted.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


# == 1. The extension ===========================================================


class Redis(_ClientInterface, t.Generic[ClientT]):
    """The Redis extension: a client per app from ``app.config`` (:attr:`connection`).

    :param app: the app to register on now; or call :meth:`init_app` later.
    :param config_prefix: the prefix of the config keys; one per database.
    :param kwargs: client keyword arguments, under the config; ``strict`` is ignored.
    """

    __slots__: tuple[str, ...] = ("__weakref__", "_bindings", "_last", "_lock")
    __slots__ += ("client_kwargs", "config_prefix", "provider")

    def __init__(
        self, app: Flask | None = None, config_prefix: str = "REDIS", **kwargs: t.Any
    ) -> None:
        #: The config prefix used when :meth:`init_app` is given none.
        self.config_prefix = _checked_prefix(config_prefix)
        kwargs.pop("strict", None)  # flask-redis's StrictRedis: now Redis
        #: Client keyword arguments given in code, under each app's config.
        self.client_kwargs = kwargs
        #: The client class given to :meth:`from_custom_provider`, if any.
        self.provider: Callable[..., t.Any] | None = None
        self._bindings = weakref.WeakKeyDictionary[Flask, _Binding]()
        # The app last resolved and its binding: the hot path is one identity check.
        self._last: tuple[object, _Binding] = (_NO_APP, t.cast("_Binding", None))
        # So that a lookup begun before an init_app cannot cache a stale answer.
        self._lock = threading.Lock()
        if app is not None:
            self.init_app(app)

    @classmethod
    def from_custom_provider(
        cls, provider: Callable[..., ClientT], app: Flask | None = None, **kwargs: t.Any
    ) -> Redis[ClientT]:
        """Make an extension whose clients are built by *provider* in the place
        of ``<prefix>_CLASS``, as in flask-redis (``fakeredis.FakeRedis``).

        :param kwargs: ``config_prefix`` and client keyword arguments.
        :raise AssertionError: *provider* is ``None`` (as in flask-redis).
        """
        if provider is None:
            raise AssertionError("The custom provider is None; pass a client class.")
        extension = cls(**kwargs)
        extension.provider = provider
        if app is not None:
            extension.init_app(app)
        return extension

    def init_app(
        self, app: Flask, config_prefix: str | None = None, **client_kwargs: t.Any
    ) -> None:
        """Register the extension on *app*: check its config and build its
        client (``app.extensions["redis"][prefix]``), making no connection.

        :param config_prefix: this app's prefix, if not the extension's.
        :param client_kwargs: client keyword arguments, over the extension's.
        :raise ConfigurationError: a config value that cannot be used.
        :raise RuntimeError: the app has this extension, or another with the prefix.
        """
        prefix = self.config_prefix if config_prefix is None else config_prefix
        prefix = _checked_prefix(prefix)
        client_kwargs.pop("strict", None)
        registered = app.extensions.get("redis", {})
        suggestion = f"Redis(app, config_prefix={_free_prefix(registered, prefix)!r})"
        if app in self._bindings:
            raise RuntimeError(
                f"This Redis extension is already registered on the app {app.name!r}"
                f" (prefix {self._bindings[app].settings.prefix!r}); call init_app once"
                f" per app, or create another extension: {suggestion}."
            )
        if prefix in registered:
            raise RuntimeError(
                f"The prefix {prefix!r} is already registered on the app {app.name!r}"
                f"; use its extension, or give this one its own: {suggestion}."
            )
        defaults = {**self.client_kwargs, **client_kwargs}
        settings = client_settings_from_config(
            app.config, prefix, client_class=self.provider, defaults=defaults
        )
        record, timing = (
            _checked(key, app.config.get(key, False), key, {key: False}, bool)
            for key in (f"{prefix}_RECORD_COMMANDS", f"{prefix}_SERVER_TIMING")
        )
        if record or timing:
            recording = _recording_class(settings.client_class, prefix)
            settings = dataclasses.replace(settings, client_class=recording)
        if timing:
            app.after_request(functools.partial(_add_server_timing, prefix))
        binding = _bind(settings)
        with self._lock:
            self._bindings[app] = binding
            self._last = (_NO_APP, self._last[1])
        # With the app gone, a cached answer for "outside of a context" is stale
        # too. Held weakly and taking no lock: the callback may run mid-anything.
        weakref.finalize(app, _forget_last_app, weakref.ref(self))
        app.extensions.setdefault("redis", _Clients()).bindings[prefix] = binding
        if "redis" not in app.cli.commands:  # a command of the app's own wins
            app.cli.add_command(cli)
        hook = getattr(getattr(app, "async_to_sync", None), "__func__", None)
        if settings.is_asyncio and hook is Flask.async_to_sync:
            # One event loop for async views, unless the app has its own hook.
            app.async_to_sync = functools.partial(_run_in_views_loop, app)  # type: ignore[method-assign]
        logger.debug("Registered on the app %r: %r", app.name, settings)

    @property
    def connection(self) -> ClientT:  # type: ignore[override]
        """The current app's client (with asyncio, the running event loop's)."""
        client: ClientT = self._current_binding().client
        return client

    @property
    def replica(self) -> t.Any:
        """The current app's replica client, with Sentinel only (see :doc:`sentinel`).

        .. versionadded:: 2.0
        """
        binding = self._current_binding()
        if binding.replica is not None:
            return binding.replica
        prefix = binding.settings.prefix
        raise RuntimeError(
            f"{prefix} has no replica client (Sentinel only): set {prefix}_SENTINELS"
            f" and {prefix}_SENTINEL_MASTER, or a redis+sentinel:// {prefix}_URL."
        )

    def settings_for(self, app: Flask) -> ClientSettings:
        """The settings *app*'s client was built with."""
        return self._find_binding(app).settings

    def _current_binding(self) -> _Binding:
        app = _cv_app.get(_NO_CONTEXT).app
        cached_app, binding = self._last
        return binding if app is cached_app else self._find_binding(app)

    def _find_binding(self, app: Flask | None) -> _Binding:
        prefix = self.config_prefix
        with self._lock:
            if app is not None:
                binding = self._bindings.get(app)
                if binding is None:
                    raise RuntimeError(
                        f"The current application {app.name!r} is not registered"
                        f" with this Redis extension (prefix {prefix!r}); call"
                        " init_app(app) on it, or use the extension registered on it."
                    )
            elif not self._bindings:
                raise RuntimeError(
                    f"This Redis extension (prefix {prefix!r}) is not registered on"
                    " any application; call redis.init_app(app)."
                )
            elif len(self._bindings) == 1:
                binding = next(iter(self._bindings.values()))
            else:
                # Quart keeps its app context apart from Flask's. Not cached:
                # the next call may come from another Quart app.
                quart = sys.modules.get("quart")
                if quart is not None and quart.has_app_context():
                    quart_app = quart.current_app._get_current_object()
                    if quart_app in self._bindings:
                        return self._bindings[quart_app]
                raise RuntimeError(
                    "Working outside of application context, and this Redis extension"
                    f" (prefix {prefix!r}) is registered on {len(self._bindings)}"
                    " applications: push an app context ('with app.app_context():'),"
                    " or use app.extensions['redis'][prefix]."
                )
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
        current = _cv_app.get(_NO_CONTEXT).app
        apps = [current] if current is not None else list(self._bindings)
        bindings = [self._bindings[app] for app in apps if app in self._bindings]
        where = f"{self.config_prefix} on {len(bindings)} apps"
        if len(bindings) == 1:
            where = f"{bindings[0].settings.prefix} {bindings[0].settings.url}"
        return f"<{type(self).__module__}.{type(self).__name__} {where}>"

    def __copy__(self) -> Redis[ClientT]:
        """The same settings and registrations; apps registered later are its own."""
        copied = type(self)(config_prefix=self.config_prefix, **self.client_kwargs)
        copied.provider = self.provider
        for app, binding in list(self._bindings.items()):
            copied._bindings[app] = binding
            weakref.finalize(app, _forget_last_app, weakref.ref(copied))
        return copied

    def __reduce__(self) -> t.NoReturn:
        raise TypeError(
            "A Redis extension cannot be pickled: it holds live clients. Create it"
            " at import time and call init_app(app) in each process instead."
        )


_NO_APP = object()  # never an app, and not None: matches no context
_NO_CONTEXT = SimpleNamespace(app=None)  # the app context outside of one


def _client_attribute(name: str, doc: str | None) -> property:
    def get(self: Redis) -> t.Any:
        # _current_binding written out: a method call would add a third to it.
        app = _cv_app.get(_NO_CONTEXT).app
        cached_app, binding = self._last
        if app is not cached_app:
            binding = self._find_binding(app)
        return getattr(binding.client, name)

    def refuse(self: Redis, *value: object) -> t.NoReturn:
        raise AttributeError(
            f"{name!r} of a Redis extension is the current app's client's and cannot be"
            f" set; patch the client: mock.patch.object(redis.connection, {name!r})."
        )

    get.__name__ = name
    return property(get, refuse, refuse, doc or f"``{name}`` of the current client.")


def _expose_attributes(client: object, own_only: bool = False) -> None:
    """*client*'s public attributes as properties of Redis: faster than __getattr__."""
    client_class = client if isinstance(client, type) else type(client)
    for name in getattr(client, "__dict__", ()) if own_only else dir(client):
        if not name.startswith("_") and not hasattr(Redis, name):
            attribute = getattr(client_class, name, None)
            doc = inspect.getdoc(attribute) if inspect.isroutine(attribute) else None
            setattr(Redis, name, _client_attribute(name, doc))


def _forget_last_app(extension: weakref.ref[Redis[t.Any]]) -> None:
    alive = extension()
    if alive is not None:
        alive._last = (_NO_APP, alive._last[1])


def _checked_prefix(prefix: object) -> str:
    if not isinstance(prefix, str) or not re.fullmatch(r"[A-Za-z]\w*(?<!_)", prefix):
        raise ConfigurationError(
            "config_prefix",
            f"{prefix!r} is not a config prefix like 'REDIS': expected letters, digits"
            " and underscores, starting with a letter and not ending with '_'.",
        )
    return prefix


def _free_prefix(registered: Mapping[str, t.Any], prefix: str) -> str:
    """A prefix like *prefix* that no extension of the app has: REDIS2, …"""
    stem = prefix.rstrip("0123456789")
    numbered = (f"{stem}{number}" for number in range(2, len(registered) + 3))
    return next(name for name in numbered if name not in registered)


class _Binding:
    """One app's registration of one extension."""

    __slots__ = ("client", "replica", "settings")

    def __init__(self, settings: ClientSettings, client: t.Any, replica: t.Any) -> None:
        self.settings, self.client, self.replica = settings, client, replica


class _BuiltOnFirstUse(_Binding):
    """A cluster's binding: its client connects when built, so waits for first use."""

    __slots__ = ("_built", "_lock")

    def __init__(self, settings: ClientSettings) -> None:
        self.settings, self.replica = settings, None
        self._built: t.Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> t.Any:
        if self._built is None:
            with self._lock:
                if self._built is None:
                    building = _NOT_RECORDING.set(True)
                    try:
                        built = self.settings.create_client()
                    finally:
                        _NOT_RECORDING.reset(building)
                    _expose_attributes(built, own_only=True)
                    self._built = built
        return self._built

    def __getattr__(self, name: str) -> t.Any:
        if name.startswith("_"):  # also before __init__, as copy does
            raise AttributeError(name)
        return getattr(self.client, name)


def _bind(settings: ClientSettings) -> _Binding:
    """One app and prefix's binding; what redis-py refuses, a ConfigurationError."""
    if isinstance(settings, ClusterSettings) and not settings.is_asyncio:
        _expose_attributes(settings.client_class)  # (it connects as it is built)
        return _BuiltOnFirstUse(settings)
    try:
        # Built for asyncio too, so that what redis-py refuses is refused here.
        client = settings.create_client()
        replica = _replica_of(settings, client)
    except (TypeError, ValueError, AttributeError) as error:
        if isinstance(error, ConfigurationError):
            raise
        # redis-py names no config key: name the keyword its message names.
        text, key = str(error), f"{settings.prefix}_CLASS"
        named = [name for name in settings.kwargs if name in text]
        if named:
            name = max(named, key=len)  # "ssl_ca_certs", not "ssl"
            key = _place(settings.sources[name], name)
        raise ConfigurationError(
            key,
            f"{_class_name(settings.client_class)}() refuses the settings:"
            f" {_masked_text(text, settings)}",
        ) from None
    _expose_attributes(client)
    if not settings.is_asyncio:
        return _Binding(settings, client, replica)
    if not hasattr(client, "aclose"):
        raise ConfigurationError(
            f"{settings.prefix}_CLASS",
            f"{_class_name(settings.client_class)} is an asyncio client class without"
            " aclose() (to close it with its event loop); use redis-py 5.0.1 or later.",
        )
    return LoopLocalClient(settings)


def _replica_of(settings: ClientSettings, client: t.Any) -> t.Any:
    """With Sentinel, the replica client, asking through *client*'s sentinels."""
    if not isinstance(settings, SentinelSettings):
        return None
    manager = client.connection_pool.sentinel_manager
    return _sentinel_client(settings, False, sentinel_manager=manager)


class _Clients(Mapping[str, t.Any]):
    """``app.extensions["redis"]``: each prefix's client (a cluster's built on use)."""

    __slots__ = ("bindings",)

    def __init__(self) -> None:
        self.bindings: dict[str, _Binding] = {}

    def __getitem__(self, prefix: str) -> t.Any:
        binding = self.bindings[prefix]
        return binding if isinstance(binding, LoopLocalClient) else binding.client

    def __contains__(self, prefix: object) -> bool:
        return prefix in self.bindings  # without building a cluster client

    def __iter__(self) -> t.Iterator[str]:
        return iter(self.bindings)

    def __len__(self) -> int:
        return len(self.bindings)

    def __repr__(self) -> str:
        return f"<clients of the prefixes {list(self.bindings)}>"


def _registered_settings(app: Flask) -> dict[str, ClientSettings]:
    """The settings of each prefix registered on *app*; builds no client."""
    clients = app.extensions.get("redis")
    bindings = clients.bindings if isinstance(clients, _Clients) else {}
    return {prefix: binding.settings for prefix, binding in bindings.items()}


# == 2. Settings ================================================================


@dataclass(frozen=True, repr=False)
class ClientSettings:
    """The client one prefix of one app gets, from :func:`client_settings_from_config`.
    The ``repr`` and :attr:`url` mask passwords.

    :param prefix: the config prefix, ``"REDIS"`` by default.
    :param client_class: the class (or factory) the client is made with.
    :param kwargs: the keyword arguments it is called with.
    :param sources: where each keyword came from: a config key (``"REDIS_URL"``),
        ``"code"`` or ``"default"`` (see :ref:`precedence`).
    :param connection_pool_class: the pool's class, or ``None`` for the client's own.
    :param connection_pool_kwargs: further keyword arguments of that class.
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
        kwargs = self.kwargs
        userinfo, database = self._userinfo(), kwargs.get("db", 0)
        if kwargs.get("unix_socket_path"):
            return f"unix://{userinfo}{kwargs['unix_socket_path']}?db={database}"
        address = _host_and_port(kwargs.get("host", "localhost"), kwargs.get("port"))
        return f"{self._scheme()}://{userinfo}{address}/{database}"

    def masked_kwargs(self) -> dict[str, t.Any]:
        """The keyword arguments with every secret replaced by ``***``, and the
        user name of a URL without a password, as :func:`mask_url` does."""
        masked = {
            name: _MASK if _SECRET_NAME.search(name) and value is not None else value
            for name, value in self.kwargs.items()
        }
        if masked.get("username") and not masked.get("password"):
            if self.sources.get("username") == f"{self.prefix}_URL":
                masked["username"] = _MASK
        return masked

    def create_client(self) -> t.Any:
        """Build the client. Makes no connection: redis-py connects lazily."""
        if self.connection_pool_class is not None:
            return _client_with_connection_pool(self)
        return self.client_class(**self.kwargs)

    @property
    def is_asyncio(self) -> bool:
        """Whether the client class is an asyncio one, as ``redis.asyncio.Redis``."""
        return _is_asyncio(self.client_class)

    def _scheme(self, topology: str = "") -> str:
        return ("rediss" if self.kwargs.get("ssl") else "redis") + topology

    def _userinfo(self) -> str:
        """``user:***@`` for :attr:`url`, masked as :meth:`masked_kwargs` is."""
        masked = self.masked_kwargs()
        username = masked.get("username")
        userinfo = username if username == _MASK else quote(username or "", safe="")
        userinfo += f":{_MASK}" if masked.get("password") else ""
        return f"{userinfo}@" if userinfo else ""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(prefix={self.prefix!r},"
            f" client_class={_class_name(self.client_class)}, url={self.url!r})"
        )


@dataclass(frozen=True, repr=False, kw_only=True)
class SentinelSettings(ClientSettings):
    """The clients of a master that Redis Sentinel watches and of its replicas.

    :param service_name: the name the sentinels know the master by.
    :param sentinels: the sentinels' addresses, as ``(host, port)``.
    :param sentinel_kwargs: the sentinels' clients' keyword arguments, not the master's.

    .. versionadded:: 2.0
    """

    service_name: str
    sentinels: tuple[tuple[str, int], ...]
    sentinel_kwargs: Mapping[str, t.Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The sentinels and master as a ``redis+sentinel://`` URL, password masked."""
        hosts = ",".join(_host_and_port(*address) for address in self.sentinels)
        master = f"{quote(self.service_name, safe='')}/{self.kwargs.get('db', 0)}"
        return f"{self._scheme('+sentinel')}://{self._userinfo()}{hosts}/{master}"

    def create_client(self) -> t.Any:
        """Build the master's client (:ref:`sentinel-failover`); makes no connection."""
        return _sentinel_client(self, master=True)

    def create_replica_client(self) -> t.Any:
        """Build the replicas' client (:doc:`sentinel`); makes no connection."""
        return _sentinel_client(self, master=False)


@dataclass(frozen=True, repr=False, kw_only=True)
class ClusterSettings(ClientSettings):
    """The client of a Redis Cluster.

    :param nodes: the startup nodes' addresses, as ``(host, port)``.

    .. versionadded:: 2.0
    """

    nodes: tuple[tuple[str, int], ...]

    @property
    def url(self) -> str:
        """The startup nodes as a ``redis+cluster://`` URL, password masked."""
        hosts = ",".join(_host_and_port(*address) for address in self.nodes)
        return f"{self._scheme('+cluster')}://{self._userinfo()}{hosts}"

    def create_client(self) -> t.Any:
        """Build the client; unlike others, a sync cluster client connects here."""
        module = "redis.asyncio.cluster" if self.is_asyncio else "redis.cluster"
        node_class = importlib.import_module(module).ClusterNode
        nodes = [node_class(host, port) for host, port in self.nodes]
        client = self.client_class(startup_nodes=nodes, **self.kwargs)
        retry = _at_most_once(getattr(client, "retry", None))
        if retry is not None and "retry" not in self.kwargs:  # the client's own
            client.set_retry(retry)
        return client


_SECRET_NAME = re.compile(r"password|secret|token|credential", re.IGNORECASE)
_QUERY_SECRET = re.compile(
    # The value runs to the next "&name=": an "&" in a password may be unescaped.
    r"[?&][^=&#]*(?:password|secret|token)[^=&#]*=(?P<value>(?:[^&]|&(?![^&=#]*=))*)",
    re.IGNORECASE,
)
# The userinfo ends at the last "@": a password may hold an unescaped "@" or "/"
# (urlsplit misreads them), and so may a "?password=" value: both are masked.
_USERINFO_SECRET = re.compile(r"(?:.*?://)?(?:[^:]*:)?(?P<value>.*)@", re.DOTALL)
_MASK = "***"


def mask_url(url: str) -> str:
    """Return *url* with its password replaced by ``***``: ``redis://user:***@host/0``.

    Userinfo without a ``:`` is masked whole, since some clients read it as a password.
    Password query options (``?password=…``) are masked too.
    """
    found = [*_QUERY_SECRET.finditer(url), _USERINFO_SECRET.match(url)]
    shown, end = [], 0
    for start, stop in sorted(match.span("value") for match in found if match):
        if start >= end:  # not within the last secret
            shown.append(url[end:start] + _MASK)
        end = max(end, stop)
    return "".join(shown) + url[end:]


def _show(name: str, value: object) -> str:
    """A config value as an error message shows it: secrets masked."""
    if _SECRET_NAME.search(name):
        return _MASK
    if isinstance(value, str) and ("://" in value or "@" in value):
        return repr(mask_url(value))
    if isinstance(value, Mapping):
        items = (f"{key!r}: {_show(str(key), item)}" for key, item in value.items())
        return f"{{{', '.join(items)}}}"
    return repr(value)


def _masked_text(text: str, *secrets: object) -> str:
    """*text*, which quotes redis-py or a server, with the *secrets* masked."""
    for secret in secrets:
        if isinstance(secret, ClientSettings):
            sentinel_kwargs = getattr(secret, "sentinel_kwargs", {})
            text = _masked_text(text, secret.kwargs, sentinel_kwargs)
        elif isinstance(secret, Mapping):
            for name, value in secret.items():
                text = _masked_text(text, value) if _SECRET_NAME.search(name) else text
        elif isinstance(secret, str) and secret:
            text = text.replace(secret, _MASK)
    return text


def _is_asyncio(client_class: object) -> bool:
    return inspect.iscoroutinefunction(getattr(client_class, "execute_command", None))


def _host_and_port(host: str, port: int | None = None) -> str:
    return f"[{host}]:{port or 6379}" if ":" in host else f"{host}:{port or 6379}"


# == 3. Reading the config ======================================================

# Keys of a prefix that are not client keywords; the last four are Sentinel's.
_OWN_KEYS = (
    *("URL", "CLASS", "OPTIONS", "CONNECTION_POOL_CLASS", "CONNECTION_POOL_TIMEOUT"),
    *("RECORD_COMMANDS", "SERVER_TIMING", "CLUSTER", "CLUSTER_NODES", "SENTINELS"),
    *("SENTINEL_MASTER", "SENTINEL_USERNAME", "SENTINEL_PASSWORD", "SENTINEL_OPTIONS"),
)
# The keywords that say where to connect, and the way each says it.
_TRANSPORTS = {
    "sentinels": "sentinel",
    "cluster_nodes": "cluster",
    "unix_socket_path": "unix",
    "host": "tcp",
    "port": "tcp",
}


def client_settings_from_config(
    config: Mapping[str, t.Any],
    prefix: str = "REDIS",
    *,
    client_class: Callable[..., t.Any] | None = None,
    defaults: Mapping[str, t.Any] | None = None,
) -> ClientSettings:
    """Read the settings of one prefix from an app's config, and check them,
    connecting nothing; the sources' order is in :ref:`precedence`.

    :param config: the app's config, or any mapping of keys to values.
    :param client_class: the client class to use instead of ``<prefix>_CLASS``.
    :param defaults: keyword arguments given in code, under the config.
    :return: :class:`SentinelSettings` with Sentinel, :class:`ClusterSettings`
        with a Redis Cluster, else :class:`ClientSettings`.
    :raise ConfigurationError: a value that cannot be used.

    .. versionchanged:: 2.0
        Sentinel and Cluster.
    """
    url_key = f"{prefix}_URL"
    url = None if config.get(url_key) is None else _parse_url(config[url_key], url_key)
    client_class, topology = _client_class_and_topology(
        config, prefix, url, client_class
    )
    named, takes_any = _keywords(client_class, topology)
    keywords = None if takes_any else named
    kwargs, sources = _client_kwargs(
        config, prefix, url, defaults or {}, named, keywords, client_class
    )
    single = kwargs.get("single_connection_client")
    if single and _is_subclass(client_class, "redis.client", "Redis"):
        raise ConfigurationError(
            _place(sources["single_connection_client"], "single_connection_client"),
            "True would connect as the client is built, and share one connection"
            f" among all threads; set {prefix}_MAX_CONNECTIONS = 1 and"
            f" {prefix}_CONNECTION_POOL_CLASS = 'redis.BlockingConnectionPool'.",
        )
    # What Flask-And-Redis sets where the config does not: host name verification
    # with TLS (redis-py before 6 skips it), retries, driver info and a handshake.
    ours: dict[str, t.Any] = {}
    if kwargs.get("ssl") and (keywords is None or "ssl_check_hostname" in keywords):
        ours["ssl_check_hostname"] = True
    if keywords is not None:
        ours["retry"] = _at_most_once(keywords.get("retry"))
        # Untold, redis-py 8 looks its version up for each client it builds (~1 ms).
        told = {"driver_info", "lib_name", "lib_version"} & set(kwargs)
        if "driver_info" in keywords and not told:
            from redis.driver_info import DriverInfo

            ours["driver_info"] = DriverInfo()
        # (A cluster client has a handshake of its own.)
        if "redis_connect_func" in keywords and topology != "cluster":
            handshake = _async_handshake if _is_asyncio(client_class) else _handshake
            ours["redis_connect_func"] = _Handshake(handshake, prefix)
    for name, value in ours.items():
        if name not in kwargs and value is not None:
            kwargs[name], sources[name] = value, "default"
    pool = _connection_pool(config, prefix, client_class, keywords, sources, topology)
    sentinels, nodes = kwargs.pop("sentinels", None), kwargs.pop("cluster_nodes", None)
    common: dict[str, t.Any] = {"prefix": prefix, "client_class": client_class}
    common.update(kwargs=kwargs, sources={name: sources[name] for name in kwargs})
    if topology == "sentinel":
        return SentinelSettings(
            **common,
            service_name=_service_name(config, prefix, url),
            sentinels=sentinels,
            sentinel_kwargs=_sentinel_kwargs(config, prefix, kwargs),
        )
    if topology == "cluster":
        return ClusterSettings(**common, nodes=_cluster_nodes(kwargs, sources, nodes))
    return ClientSettings(
        **common, connection_pool_class=pool[0], connection_pool_kwargs=pool[1]
    )


def _client_kwargs(
    config: Mapping[str, t.Any],
    prefix: str,
    url: _ParsedURL | None,
    defaults: Mapping[str, t.Any],
    named: Mapping[str, t.Any],
    keywords: Mapping[str, t.Any] | None,
    client_class: Callable[..., t.Any],
) -> tuple[dict[str, t.Any], dict[str, str]]:
    """The client's keyword arguments, checked, and where each came from: sources read
    lowest first (code, ``_OPTIONS``, keys, URL), each dropping lower ones' other way
    to connect; TLS only where a connection can use it, TLS options only with TLS."""
    options_key, url_key = f"{prefix}_OPTIONS", f"{prefix}_URL"
    options = _mapping(config, options_key, "{'socket_timeout': 5}")
    for source, given in (("code", defaults), (options_key, options)):
        for name in sorted({"sentinels", "cluster_nodes"} & set(given)):
            key, scheme = f"{prefix}_{name.upper()}", f"redis+{_TRANSPORTS[name]}://"
            problem = f"not a client keyword; set {key} or use a {scheme} URL."
            raise ConfigurationError(_place(source, name), problem)
    try:  # redis.Redis's keywords are keys of every prefix, refused where not taken
        redis_keywords = _keywords(_default_client_class())[0]
    except ImportError:  # a custom provider, without redis-py
        redis_keywords = {}
    url_values = []
    if url is not None:
        url_values = [(name, value, url_key) for name, value in url.kwargs.items()]
        if url.scheme.startswith("rediss"):
            url_values.append(("ssl", True, url_key))
    kwargs: dict[str, t.Any] = {}
    sources: dict[str, str] = {}
    for values in (
        [(name, value, "code") for name, value in defaults.items()],
        [(name, value, options_key) for name, value in options.items()],
        _key_values(config, prefix, {*named, *_RULES, *redis_keywords}),
        url_values,
    ):
        transport = _transport(values)
        for name in [name for name in kwargs if name in _TRANSPORTS]:
            if transport not in (None, _TRANSPORTS[name]):
                del kwargs[name], sources[name]
        for name, value, source in values:
            if name not in ("sentinels", "cluster_nodes"):  # checked as read
                value = _checked(name, value, source, keywords, client_class)
            kwargs[name], sources[name] = value, source
    # redis+sentinel:// and redis+cluster:// mean no TLS too; TLS in code yields.
    plain_url = url is not None and url.scheme.partition("+")[0] == "redis"
    if kwargs.get("ssl") and (plain_url or "unix_socket_path" in kwargs):
        if sources["ssl"] == "code":
            del kwargs["ssl"], sources["ssl"]
        else:
            problem = "a unix socket has no TLS; connect to a host and port"
            if plain_url and url is not None:
                problem = f"{url_key} uses {url.scheme}://, which means no TLS;"
                problem += f" use a rediss{url.scheme[5:]}:// URL"
            key = _place(sources["ssl"], "ssl")
            raise ConfigurationError(key, f"TLS is on, but {problem}, or turn it off.")
    for name, value in kwargs.items() if not kwargs.get("ssl") else ():
        if name.startswith("ssl_") and value is not None and sources[name] != "code":
            problem = f"TLS is off; set {prefix}_SSL = True, use a rediss:// URL, or"
            problem += " remove this option."
            raise ConfigurationError(_place(sources[name], name), problem)
    return kwargs, sources


def _place(source: str, name: str) -> str:
    """Where errors say *name* was set: a key, ``REDIS_OPTIONS['name']`` or code."""
    if source == "code":
        return f"keyword argument {name!r}"
    if source.endswith("_OPTIONS") and not source.endswith(f"_{name.upper()}"):
        return f"{source}[{name!r}]"
    return source


def _invalid(key: str, value: object, problem: str) -> ConfigurationError:
    """The error for the *value* of *key*, shown (masked) before its *problem*."""
    return ConfigurationError(key, f"{_show(key, value)} {problem}")


def _mapping(config: Mapping[str, t.Any], key: str, example: str) -> dict[str, t.Any]:
    """The keyword arguments at *key* (``<prefix>_OPTIONS``), if set."""
    mapping = config.get(key) or {}
    if not isinstance(mapping, Mapping):
        problem = f"a {type(mapping).__name__} is not a mapping"
        expected = f"a dict of keyword arguments such as {example}"
        raise ConfigurationError(key, f"{problem}; expected {expected}.")
    for name in mapping:
        if not isinstance(name, str):
            problem = "is not a keyword argument name, such as 'socket_timeout'."
            raise _invalid(f"{key}[{name!r}]", name, problem)
    return dict(mapping)


def _key_values(
    config: Mapping[str, t.Any], prefix: str, names: set[str]
) -> list[tuple[str, object, str]]:
    """The discrete keys of the keyword *names*, sentinels and cluster nodes."""
    names -= {name.lower() for name in _OWN_KEYS}
    suffixes = {*(name.upper() for name in names), *_OWN_KEYS}
    known = {f"{prefix}_{suffix}" for suffix in suffixes}
    for key in config:  # a misspelt key would be ignored without a word
        if isinstance(key, str) and key.startswith(f"{prefix}_") and key not in known:
            if not any(key.endswith(f"_{suffix}") for suffix in suffixes):
                hint = difflib.get_close_matches(key, known, n=1, cutoff=0.85)
                if hint:  # (and REDIS_CACHE_URL is another prefix's key)
                    raise ConfigurationError(
                        key, f"not a key of Flask-And-Redis; did you mean {hint[0]}?"
                    )
    values: list[tuple[str, object, str]] = []
    for name in sorted(names):
        key = f"{prefix}_{name.upper()}"
        if key not in config:
            continue
        value = config[key]
        path = _socket_path(value, key) if name == "host" else None
        if path is not None:
            name, value = "unix_socket_path", path
            socket_key = f"{prefix}_UNIX_SOCKET_PATH"
            if socket_key in config:
                problem = f"and {key} both name the socket path; keep one of them."
                raise _invalid(socket_key, config[socket_key], problem)
        values.append((name, value, key))
    for name in ("sentinels", "cluster_nodes"):
        key = f"{prefix}_{name.upper()}"
        if config.get(key) is not None:
            values.append((name, _addresses(config[key], key, name), key))
    return values


def _socket_path(value: object, key: str) -> str | None:
    """The unix socket path that ``<prefix>_HOST`` may give, as a path or URL."""
    if not isinstance(value, str) or not value.startswith(("/", "unix:", "file:")):
        return None
    if "://" not in value:
        return value
    parts = urlsplit(value)
    if parts.netloc or parts.query or parts.fragment:
        raise _invalid(key, value, "has more than a path; it goes in the _URL key.")
    return unquote(parts.path)


def _transport(values: list[tuple[str, object, str]]) -> str | None:
    """How one source says to connect (sentinel, cluster, unix or tcp), if it does."""
    named = sorted(
        (item for item in values if item[0] in _TRANSPORTS and item[1] is not None),
        key=lambda item: list(_TRANSPORTS).index(item[0]),
    )
    for other, other_value, other_source in named:
        name, value, source = named[0]
        if _TRANSPORTS[other] != _TRANSPORTS[name]:
            what = f"the {name.replace('_', ' ')}"  # the sentinels, the cluster nodes
            if name == "unix_socket_path":
                what = f"the unix socket {value!r}"
            problem = f"cannot be combined with {what} from {_place(source, name)};"
            problem += " remove one of them."
            raise _invalid(_place(other_source, other), other_value, problem)
    return _TRANSPORTS[named[0][0]] if named else None


# == 4. Checking values =========================================================


def _checked(
    name: str,
    value: object,
    source: str,
    keywords: Mapping[str, t.Any] | None,
    client_class: Callable[..., t.Any],
) -> object:
    """*value*, from *source*, as the client keyword *name* takes it."""
    place = _place(source, name)
    if keywords is not None and name not in keywords:
        class_name = _class_name(client_class)
        hint = difflib.get_close_matches(name, keywords, n=1)
        problem = f"{class_name}() takes no keyword argument {name!r}"
        problem += f"; did you mean {hint[0]!r}?" if hint else "."
        if _is_subclass(client_class, "redis.cluster", "RedisCluster"):
            problem += " It passes its nodes only redis.cluster.REDIS_ALLOWED_KEYS."
        raise ConfigurationError(place, f"{problem} See help({class_name}).")
    option = f"the option {name}=" if source.endswith("_URL") else ""
    shown = option + _show(name, value)
    if isinstance(value, str) and name in _OBJECT_KEYWORDS:
        problem = f"{shown} is a string, but {name} takes an object, not its name"
        problem += " (a pool class goes in the _CONNECTION_POOL_CLASS key)."
        raise ConfigurationError(place, problem)
    default = keywords.get(name) if keywords else None
    kind, accepted, check = _RULES.get(name, (type(default), "", _any))
    if kind not in _ACCEPTED and name not in _RULES:
        return value  # an object, taken as it is
    if isinstance(value, str) and value.strip().lower() in _NONE:
        if kind in (bool, int, float, _to_path):
            value = None  # as the environment says None
    try:
        if value is None:
            valid = default is None or (name in _RULES and check(None))
        else:
            value = _convert(kind, value)
            valid = check(value)
    except (TypeError, ValueError, AttributeError, LookupError):  # LookupError: codecs
        valid = False
    if not valid:
        accepted = accepted or _ACCEPTED[kind]
        raise ConfigurationError(place, f"{shown} is not valid; expected {accepted}.")
    return value


_TRUE = ("1", "true", "yes", "on", "y", "t")
_FALSE = ("0", "false", "no", "off", "n", "f")
_NONE = ("", "none", "null")


def _convert(kind: t.Any, value: object) -> t.Any:
    """*value* as *kind* (bool, int, float or str), from a string or an int too."""
    if kind not in (bool, int, float, str):
        return kind(value)
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        if kind is bool and text not in (*_TRUE, *_FALSE):
            raise ValueError(value)
        return text in _TRUE if kind is bool else kind(text)
    if type(value) is int and (kind in (float, str) or value in (0, 1)):
        return kind(value)  # 5 as a float, 1234 as a string, 1 as a bool
    if type(value) is not kind:
        raise ValueError(value)
    return value


def _to_path(value: object) -> str:
    path = os.fspath(value) if isinstance(value, os.PathLike) else _convert(str, value)
    return t.cast(str, path)


def _to_enum(value: object) -> object:
    from redis.cluster import LoadBalancingStrategy

    return LoadBalancingStrategy(value.lower() if isinstance(value, str) else value)


def _is_host(host: str) -> bool:
    """An IP address or a DNS name: no credentials, which ClientSettings.url shows."""
    try:
        if ":" in host:  # no host name has one
            return bool(ipaddress.IPv6Address(host))
        name = host.encode("idna").decode()  # refuses empty or long labels
    except ValueError:  # UnicodeError too
        return False
    label = r"(?!-)[\w-]{1,63}(?<!-)"
    host_name = re.fullmatch(rf"{label}(\.{label})*\.?", name, re.A)
    return len(name) <= 253 and host_name is not None


def _is_path(path: str) -> bool:
    return path.strip() != "" and path.isprintable()


def _any(value: object) -> bool:
    return True


def _seconds(seconds: float | None) -> bool:
    return seconds is None or 0 < seconds <= 86400  # a day: any more is a mistake


_ACCEPTED = {
    bool: "true or false (also yes/no, on/off, 1/0)",
    int: "an integer",
    float: "a number",
    str: "a string",
}
_TEXT = str, "a string, or None", _any
_FILE = _to_path, "the path of an existing file", os.path.isfile
_SECONDS = float, "a number of seconds greater than 0, or None (up to a day)", _seconds

# How to read keywords whose default does not say (None, or an int for seconds), what
# each accepts, and checks redis-py skips; others are read as their default's type.
_RULES: dict[str, tuple[t.Any, str, Callable[[t.Any], bool]]] = {
    "host": (
        str,
        "a host name or address, or a unix socket path; a URL or credentials"
        " go in the _URL key",
        _is_host,
    ),
    "port": (int, "an integer port from 1 to 65535", lambda port: 0 < port < 65536),
    "db": (int, "an integer database number of 0 or more", lambda db: db >= 0),
    "unix_socket_path": (str, "the path of a unix socket", _is_path),
    **dict.fromkeys(("username", "password", "client_name", "ssl_password"), _TEXT),
    **dict.fromkeys(("lib_name", "lib_version", "ssl_ca_data", "ssl_ciphers"), _TEXT),
    **dict.fromkeys(("socket_timeout", "socket_connect_timeout"), _SECONDS),
    "socket_keepalive": (bool, _ACCEPTED[bool], _any),
    "socket_read_size": (int, "a number of bytes above 0", lambda size: size > 0),
    "max_connections": (
        int,
        "an integer greater than 0, or None for no limit",
        lambda count: count is None or count > 0,
    ),
    "health_check_interval": (
        float,
        "a number of seconds of 0 or more, up to a day (0 turns health checks off)",
        lambda seconds: seconds is not None and (seconds == 0 or _seconds(seconds)),
    ),
    "protocol": (
        int,
        "2 or 3 (the RESP protocol version), or None for the client's default",
        lambda version: version in (None, 2, 3),
    ),
    "encoding": (
        str,
        "a codec name such as 'utf-8'",
        lambda name: isinstance("".encode(name), bytes),  # a text encoding
    ),
    "encoding_errors": (
        str,
        "an error handler such as 'strict' or 'replace'",
        lambda name: callable(codecs.lookup_error(name)),
    ),
    **dict.fromkeys(("ssl_keyfile", "ssl_certfile", "ssl_ca_certs"), _FILE),
    "ssl_ca_path": (_to_path, "an existing directory of CA certs", os.path.isdir),
    "ssl_cert_reqs": (
        lambda reqs: reqs if isinstance(reqs, ssl.VerifyMode) else _convert(str, reqs),
        "'required' (the default), 'optional' or 'none', or an ssl.VerifyMode",
        lambda reqs: reqs in (*ssl.VerifyMode, "required", "optional", "none"),
    ),
    "load_balancing_strategy": (  # redis.cluster.RedisCluster's
        _to_enum,
        "'round_robin', 'round_robin_replicas', 'random' or 'random_replica', or a"
        " redis.cluster.LoadBalancingStrategy",
        _any,
    ),
}
# Keywords that take an object: redis-py fails on a string late, or naming no key.
_OBJECT_KEYWORDS = frozenset(
    "address_remap cache cache_config connection_pool credential_provider"
    " driver_info event_dispatcher maint_notifications_config redis_connect_func"
    " retry retry_on_error socket_keepalive_options ssl_min_version".split()
)


# == 5. URLs ====================================================================

_URL_SCHEMES = (
    "redis rediss unix redis+sentinel rediss+sentinel redis+cluster rediss+cluster"
).split()
_URL_EXPECTED = (
    "expected a URL such as 'redis://[[user]:password@]host[:port][/db]' (rediss://"
    " for TLS), 'unix:///path/to/redis.sock[?db=0]', 'redis+sentinel://host[:port]"
    "[,host[:port]…]/master[/db]' or 'redis+cluster://host[:port][,host[:port]…]'"
)


@dataclass(frozen=True)
class _ParsedURL:
    scheme: str
    kwargs: dict[str, object]  # client keywords (query values as text), and hosts
    topology: str | None = None  # "sentinel" or "cluster" for those URLs
    service_name: str | None = None  # the master named by a Sentinel URL


def _parse_url(url: object, key: str) -> _ParsedURL:
    """A Redis URL's client keywords, read as redis-py's ``parse_url`` reads them
    (``?db=`` wins over the path), but reporting every problem; ``/12/`` is fine."""
    invalid = functools.partial(_invalid, key, url)
    if not isinstance(url, str) or not url.strip():
        raise invalid(f"is not a URL; {_URL_EXPECTED}.")
    # Without "//", urlsplit reads credentials as part of the path ("redis:/:pw@h").
    _, colon, rest = url.strip().partition(":")
    if not colon or not rest.startswith("//"):
        raise invalid(f"does not begin with a scheme and '://'; {_URL_EXPECTED}.")
    # mask_url ends the userinfo at the last "@", urlsplit at the first "/", "?" or
    # "#": one unescaped in a password would connect elsewhere, showing the rest.
    userinfo, at, _ = rest[2:].rpartition("@")
    if at and any(char in userinfo for char in "/?#"):
        raise invalid(
            "has an '@' after a '/', '?' or '#', which hides where the password ends."
            " Percent-encode it: urllib.parse.quote(password, safe='')."
        )
    if "#" in rest:
        raise invalid("has a '#'; in a password or another value, write it as %23.")
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # its message may quote the password
        raise invalid(f"cannot be parsed; {_URL_EXPECTED}.") from None
    scheme = parts.scheme.lower()
    if scheme not in _URL_SCHEMES:
        named = f"{scheme}://" if scheme else "none"
        raise invalid(f"has the scheme {named}; {_URL_EXPECTED}.")
    try:  # a list of hosts has no single port: each is read on its own
        port = None if "+" in scheme else parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise invalid(f"has an invalid port; expected {_RULES['port'][1]}.")
    if any("=" not in item for item in parts.query.split("&") if item):
        # Most likely the rest of a password with an unescaped "&": unnamed.
        raise invalid("has an option without '='; in a password, write '&' as %26.")
    kwargs: dict[str, object] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        kwargs.setdefault(name, value)
    for name, text in (("username", parts.username), ("password", parts.password)):
        if text:
            kwargs[name] = unquote(text)
    path = unquote(parts.path)
    if scheme == "unix":
        if parts.hostname or port is not None or not path.startswith("/"):
            raise invalid("has no absolute path, as in 'unix:///run/redis.sock'.")
        kwargs["unix_socket_path"] = path
        return _ParsedURL(scheme, kwargs)
    topology = scheme.partition("+")[2]
    segments = [segment for segment in path.split("/") if segment]
    service_name = segments.pop(0) if topology == "sentinel" and segments else None
    if len(segments) > 1 or (segments and not segments[0].isdigit()):
        expected = {"sentinel": "/master_name[/db]", "cluster": "/0, or none"}
        raise invalid(
            f"has the path {mask_url(path)!r}; the path of a {scheme}:// URL is"
            f" {expected.get(topology, 'a database number such as /0')}."
        )
    if segments:
        kwargs.setdefault("db", segments[0])
    if not topology:
        if parts.hostname:
            kwargs["host"] = unquote(parts.hostname)
        if port is not None:
            kwargs["port"] = port
        return _ParsedURL(scheme, kwargs)
    name = "sentinels" if topology == "sentinel" else "cluster_nodes"
    hosts = [unquote(host) for host in parts.netloc.rpartition("@")[2].split(",")]
    try:
        kwargs[name] = _addresses(hosts, key, name)
    except ConfigurationError:  # shown in the URL, masked
        raise invalid(
            f"does not list its hosts as host[:port]; {_URL_EXPECTED}."
        ) from None
    return _ParsedURL(scheme, kwargs, topology, service_name)


def _address(item: object, default_port: int) -> tuple[str, int]:
    """``"host[:port]"`` (``"[::1]:port"`` for IPv6) or ``(host, port)``, checked."""
    if isinstance(item, (list, tuple)) and len(item) == 2:
        host, port = str(_convert(str, item[0])).strip(), _convert(int, item[1])
    elif isinstance(item, str):
        text = item.strip()
        host, port_text = text, ""  # a name, an IPv4 address or a bare IPv6 address
        bracketed = re.fullmatch(r"\[(.*)\](?::(.*))?", text)  # "[::1]:port"
        if bracketed:
            host, port_text = bracketed[1], bracketed[2] or ""
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
        port = int(port_text) if port_text else default_port
    else:
        raise ValueError(item)
    if not (_is_host(host) and 0 < port < 65536):
        raise ValueError(item)
    return host, port


def _addresses(value: object, key: str, name: str) -> tuple[tuple[str, int], ...]:
    """``"host:port"`` strings or ``(host, port)`` pairs, or one string with commas."""
    default_port = 26379 if name == "sentinels" else 6379
    items = value.split(",") if isinstance(value, str) else value
    try:
        if not isinstance(items, (list, tuple)) or not items:
            raise ValueError(value)
        return tuple(_address(item, default_port) for item in items)
    except (TypeError, ValueError):
        problem = "is not a list of addresses ('host[:port]'), nor a string of them."
        raise _invalid(key, value, problem) from None


# == 6. Topologies: the client class, Sentinel and Cluster ======================


def _client_class_and_topology(
    config: Mapping[str, t.Any],
    prefix: str,
    url: _ParsedURL | None,
    provider: Callable[..., t.Any] | None,
) -> tuple[Callable[..., t.Any], str]:
    """The client class, and the topology: "server", "sentinel" or "cluster"."""
    key = f"{prefix}_{{}}".format
    class_key, client_class = key("CLASS"), provider
    if provider is not None:
        class_key = "the provider of Redis.from_custom_provider()"
    elif config.get(class_key) is not None:
        expected = "a client class or its dotted path, such as 'redis.Redis'"
        client_class = _resolve_class(config[class_key], class_key, expected)
    flag = config.get(key("CLUSTER"))
    if flag is not None:
        flag = _checked("cluster", flag, key("CLUSTER"), {"cluster": False}, bool)
    in_url = url.topology if url is not None else None
    sentinel_claims = [
        (key("URL"), in_url == "sentinel"),
        (key("SENTINELS"), config.get(key("SENTINELS")) is not None),
    ]
    cluster_claims = [
        (key("URL"), in_url == "cluster"),
        (key("CLUSTER_NODES"), config.get(key("CLUSTER_NODES")) is not None),
        (key("CLUSTER"), flag is True),
        (class_key, _is_redis_class(client_class, "RedisCluster")),
    ]
    sentinel = next((place for place, says in sentinel_claims if says), None)
    cluster = next((place for place, says in cluster_claims if says), None)
    if sentinel is not None and cluster is not None:
        raise ConfigurationError(
            cluster,
            f"it configures a Cluster, but {sentinel} configures Sentinel; a client"
            " uses one or the other, so remove one of them.",
        )
    for name in _OWN_KEYS[-4:] if sentinel is None else ():  # SENTINEL_*
        if config.get(key(name)) is not None:
            sentinels = f"{key('SENTINELS')} or a redis+sentinel:// URL"
            problem = f"is set, but no sentinels are configured ({sentinels})."
            raise _invalid(key(name), config[key(name)], problem)
    if cluster is not None and flag is False:
        raise ConfigurationError(
            key("CLUSTER"),
            f"False, but {cluster} configures a Redis Cluster; set it to True, or"
            " remove it.",
        )
    client_class = client_class or _default_client_class()
    if cluster is not None and not _is_redis_class(client_class, "RedisCluster"):
        # redis.Redis or redis.asyncio.Redis says which cluster client it is.
        modules = {"redis.Redis": "redis", "redis.asyncio.Redis": "redis.asyncio"}
        name = _class_name(client_class)
        if name not in modules:
            raise ConfigurationError(
                class_key,
                f"{name} is not a cluster client class, which {cluster} needs; leave"
                f" {key('CLASS')} unset, or name redis.RedisCluster,"
                " redis.asyncio.RedisCluster (or a subclass), redis.Redis or"
                " redis.asyncio.Redis.",
            )
        client_class = importlib.import_module(modules[name]).RedisCluster
    if sentinel is not None and url is not None and in_url is None:
        problem = f"names one server, but {sentinel} configures Sentinel"
        advice = "expected 'redis+sentinel://host:port[,host:port…]/master[/db]'"
        raise _invalid(key("URL"), config[key("URL")], f"{problem}; {advice}.")
    if sentinel is not None and not _is_redis_class(client_class, "Redis"):
        raise ConfigurationError(
            class_key,
            f"{_class_name(client_class)} is not redis.Redis, redis.asyncio.Redis"
            f" or a subclass of one, which Sentinel ({sentinel}) needs.",
        )
    topology = "cluster" if cluster else "sentinel" if sentinel else "server"
    return client_class, topology


def _default_client_class() -> type[t.Any]:
    try:
        import redis
    except ImportError:
        raise ImportError(
            "Flask-And-Redis needs redis-py ('pip install redis'), or a client"
            " class of your own: <prefix>_CLASS or Redis.from_custom_provider()."
        ) from None
    return redis.Redis


def _resolve_class(
    value: object, key: str, expected: str, is_wanted: Callable[[type], bool] = bool
) -> type:
    """The class *value* names, itself or by its dotted path."""
    resolved = value
    if isinstance(value, str):
        try:
            resolved = pkgutil.resolve_name(value)
        except (ImportError, AttributeError, ValueError) as error:
            # The reason may quote the value: show it as the value is shown.
            reason = mask_url(str(error).replace(value, mask_url(value)))
            problem = f"cannot be imported ({reason}); expected {expected}."
            raise _invalid(key, value, problem) from None
    if not isinstance(resolved, type) or not is_wanted(resolved):
        what = expected.partition(" or ")[0]
        raise _invalid(key, value, f"is not {what}; expected {expected}.")
    return resolved


def _class_name(client_class: Callable[..., t.Any]) -> str:
    """The shortest import path of a class: redis.Redis, not redis.client.Redis."""
    module = getattr(client_class, "__module__", None) or ""
    name = getattr(client_class, "__qualname__", None) or repr(client_class)
    parts = module.split(".")
    for length in range(1, len(parts)):
        package = ".".join(parts[:length])
        if getattr(sys.modules.get(package), name, None) is client_class:
            return f"{package}.{name}"
    return f"{module}.{name}" if module else name


def _is_subclass(client_class: object, module: str, name: str) -> bool:
    # No import: a class of the module has loaded it (and redis-py may be absent).
    loaded = sys.modules.get(module)
    if loaded is None or not isinstance(client_class, type):
        return False
    return issubclass(client_class, getattr(loaded, name))


def _is_redis_class(client_class: object, name: str) -> bool:
    """A subclass of redis-py's class *name*, or of redis.asyncio's."""
    modules = ("redis", "redis.asyncio")
    return any(_is_subclass(client_class, module, name) for module in modules)


def _keywords(
    client_class: Callable[..., t.Any], topology: str = "server"
) -> tuple[dict[str, t.Any], bool]:
    """The keyword arguments *client_class* names, with defaults, and whether it takes
    others; read through ``functools.wraps`` and ``**kwargs`` handed to a base class."""
    by_name = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    initialisers = [client_class]
    if isinstance(client_class, type):  # object.__init__ takes nothing
        bases = [vars(base) for base in client_class.__mro__[:-1]]
        initialisers = [base["__init__"] for base in bases if "__init__" in base]
    keywords: dict[str, t.Any] = {}
    takes_any = False
    for initialiser in initialisers:
        parameters = list(inspect.signature(initialiser).parameters.values())
        for parameter in parameters[initialiser is not client_class :]:  # self
            if parameter.kind in by_name:
                keywords.setdefault(parameter.name, parameter.default)
        kinds = {parameter.kind for parameter in parameters}
        takes_any = inspect.Parameter.VAR_KEYWORD in kinds
        if not takes_any:
            break
    if topology == "cluster":
        if takes_any and _is_subclass(client_class, "redis.cluster", "RedisCluster"):
            allowed = sys.modules["redis.cluster"].REDIS_ALLOWED_KEYS
            for name, default in _keywords(_default_client_class())[0].items():
                if name in allowed:
                    keywords.setdefault(name, default)
            takes_any = False
        # Its startup nodes, URL and pool are not for the config.
        for name in ("startup_nodes", "url", "connection_pool"):
            keywords.pop(name, None)
        keywords.pop("single_connection_client", None)
    return keywords, takes_any


def _connection_pool(
    config: Mapping[str, t.Any],
    prefix: str,
    client_class: Callable[..., t.Any],
    keywords: Mapping[str, t.Any] | None,
    sources: Mapping[str, str],
    topology: str,
) -> tuple[type | None, dict[str, t.Any]]:
    """The pool class and its keyword arguments: a class, not a pool, which could
    follow neither the rest of the config nor several apps."""
    class_key = f"{prefix}_CONNECTION_POOL_CLASS"
    timeout_key = f"{prefix}_CONNECTION_POOL_TIMEOUT"
    pool, timeout = "connection_pool", config.get(timeout_key)
    sentinel = "with Sentinel: the client's pool asks the sentinels where the master is"
    blocking = "'redis.BlockingConnectionPool'"
    if config.get(class_key) is None:
        if timeout is not None:
            problem = f"is a blocking pool's wait, but {class_key} is not set"
            raise _invalid(timeout_key, timeout, f"{problem}; set it to {blocking}.")
        if topology == "sentinel" and pool in sources:
            problem = f"a connection pool cannot be given {sentinel}."
            raise ConfigurationError(_place(sources[pool], pool), problem)
        return None, {}
    pool_class = _resolve_class(
        config[class_key],
        class_key,
        f"a connection pool class or its dotted path, such as {blocking}",
        lambda resolved: callable(getattr(resolved, "get_connection", None)),
    )
    why = ""
    if topology == "sentinel":
        why = f"cannot be used {sentinel}"
    elif keywords is not None and pool not in keywords:
        why = f"cannot be used: {_class_name(client_class)}() takes no connection pool"
    elif pool in sources:
        why = f"cannot be combined with {_place(sources[pool], pool)}; configure one"
    if why:
        raise ConfigurationError(class_key, f"{_class_name(pool_class)} {why}.")
    if timeout_key not in config:
        return pool_class, {}
    if "timeout" not in _keywords(pool_class)[0]:
        problem = f"takes no timeout; only a blocking pool waits, such as {blocking}."
        raise ConfigurationError(timeout_key, f"{_class_name(pool_class)}() {problem}")
    timeout = _checked("socket_timeout", timeout, timeout_key, None, bool)
    return pool_class, {"timeout": timeout}


def _cluster_nodes(
    kwargs: dict[str, t.Any],
    sources: Mapping[str, str],
    nodes: tuple[tuple[str, int], ...] | None,
) -> tuple[tuple[str, int], ...]:
    """The startup nodes listed, or the host and port; *kwargs* lose those and db."""
    if kwargs.get("db", 0) != 0:
        problem = "is not valid: a Redis Cluster has only the database 0."
        raise _invalid(_place(sources["db"], "db"), kwargs["db"], problem)
    kwargs.pop("db", None)
    if "unix_socket_path" in kwargs:
        raise ConfigurationError(
            _place(sources["unix_socket_path"], "unix_socket_path"),
            f"{kwargs['unix_socket_path']!r} is a unix socket, but a Redis Cluster"
            " is reached over TCP; name its nodes as host:port.",
        )
    return nodes or ((kwargs.pop("host", "localhost"), kwargs.pop("port", 6379)),)


def _service_name(
    config: Mapping[str, t.Any], prefix: str, url: _ParsedURL | None
) -> str:
    """The name the sentinels know the master by: from the URL, or the key."""
    if url is not None and url.service_name:
        return url.service_name
    key = f"{prefix}_SENTINEL_MASTER"
    name = config.get(key)
    if not isinstance(name, str) or not name.strip():
        problem = f"{_show(key, name)} is not a master name"
        if name is None:
            problem = "the master's name is missing"
        raise ConfigurationError(
            key,
            f"{problem}; set it to the name the sentinels monitor, or end the URL"
            " with it: 'redis+sentinel://host:26379/mymaster/0'.",
        )
    return name.strip()


def _sentinel_kwargs(
    config: Mapping[str, t.Any], prefix: str, kwargs: Mapping[str, t.Any]
) -> dict[str, t.Any]:
    """The sentinels' clients' keyword arguments: ``_SENTINEL_USERNAME``, ``_PASSWORD``
    over ``_SENTINEL_OPTIONS`` over the master's socket and TLS options; no retries."""
    kinds = ("socket_", "ssl", "driver_info")  # the master's options they use too
    shared = {name: value for name, value in kwargs.items() if name.startswith(kinds)}
    sentinel_kwargs = {"retry": _no_retries(), **shared}
    options_key = f"{prefix}_SENTINEL_OPTIONS"
    options = _mapping(config, options_key, "{'socket_timeout': 0.5}")
    values = [(name, value, options_key) for name, value in options.items()]
    for name in ("username", "password"):
        key = f"{prefix}_SENTINEL_{name.upper()}"
        if config.get(key) is not None:
            values.append((name, config[key], key))
    redis_class = _default_client_class()
    keywords = _keywords(redis_class)[0]
    for name, value, source in values:
        sentinel_kwargs[name] = _checked(name, value, source, keywords, redis_class)
    return sentinel_kwargs


# == 7. Building clients ========================================================


def _client_with_connection_pool(settings: ClientSettings) -> t.Any:
    """The client on a pool of the configured class, made with the connection
    class and keywords of the pool the client would make: both connect alike."""
    pool_class, kwargs = settings.connection_pool_class, settings.kwargs
    assert pool_class is not None
    default_pool = getattr(settings.client_class(**kwargs), "connection_pool", None)
    key = f"{settings.prefix}_CONNECTION_POOL_CLASS"
    client_name = _class_name(settings.client_class)
    if default_pool is None:
        raise ConfigurationError(key, f"{client_name} has no connection pool.")
    if not issubclass(pool_class, type(default_pool)):
        default_name = _class_name(type(default_pool))
        problem = f"is not a {default_name}, the pool class of {client_name}."
        raise ConfigurationError(key, f"{_class_name(pool_class)} {problem}")
    pool_kwargs = {**default_pool.connection_kwargs, **settings.connection_pool_kwargs}
    if kwargs.get("max_connections") is not None:
        pool_kwargs["max_connections"] = kwargs["max_connections"]
    if getattr(default_pool, "cache", None) is not None:
        pool_kwargs["cache"] = default_pool.cache  # taken out of the kwargs
    pool = pool_class(connection_class=default_pool.connection_class, **pool_kwargs)
    client = settings.client_class(**kwargs, connection_pool=pool)
    client.auto_close_connection_pool = True  # as if it had made the pool
    return client


def _at_most_once(default: t.Any) -> t.Any:
    """A copy of the client class's retry policy *default*: no command sent twice."""
    try:  # Retry has no public accessors for these in every redis-py
        backoff, retries = default._backoff, default._retries
        errors = default._supported_errors
    except AttributeError:  # no Retry, or a redis-py that renamed them
        return None
    policy = _at_most_once_class(default.__class__)
    return policy(_AtMostOnceBackoff(copy.deepcopy(backoff)), retries, errors)


@functools.cache
def _at_most_once_class(retry_class: type) -> type:
    """A subclass of *retry_class* (redis.asyncio has its own), named as it acts."""

    def __repr__(retry: t.Any) -> str:
        return f"AtMostOnceRetry(retries={retry._retries})"

    return type("AtMostOnceRetry", (retry_class,), {"__repr__": __repr__})


class _AtMostOnceBackoff:
    """A backoff that ends the retries of a command the server may have run, or
    of a failure that would only repeat (docs/performance.rst explains how)."""

    def __init__(self, backoff: t.Any) -> None:
        self.backoff = backoff
        # Called before every command: the backoff's own, nothing between.
        self.reset = backoff.reset

    def compute(self, failures: int) -> float:
        error = sys.exc_info()[1]
        if error is not None:
            names = {frame.f_code.co_name for frame, _ in walk_tb(error.__traceback__)}
            # A handshake (on_connect) is safe to send again, but not to wait
            # for again: a frozen server would hold the request per retry.
            handshake = any(name.startswith("on_connect") for name in names)
            timeout = "Timeout" in type(error).__name__
            cause = error.__cause__ or error.__context__
            if (
                ("read_response" in names and (timeout or not handshake))
                or isinstance(cause, ssl.SSLCertVerificationError)
                or type(error).__name__ == "AuthenticationError"
            ):
                raise error
        return float(self.backoff.compute(failures))

    # Equal as redis-py's backoffs are, so that equal policies stay equal.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, _AtMostOnceBackoff) and self.backoff == other.backoff

    def __hash__(self) -> int:
        return hash((_AtMostOnceBackoff, self.backoff))


def _no_retries(retry_class: type[t.Any] | None = None) -> t.Any:
    """A policy of *retry_class* (by default ``redis.retry.Retry``): one try."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return (retry_class or Retry)(NoBackoff(), 0)


class _Handshake(functools.partial[t.Any]):
    def __repr__(self) -> str:  # as `flask redis config` shows it
        return f"{self.func.__name__}({self.args[0]!r})"


def _handshake(prefix: str, connection: t.Any) -> None:
    """The clients' redis_connect_func: on_connect(), its failures told by _refusal."""
    try:
        connection.on_connect()
        return
    except Exception as error:
        failure = _refusal(prefix, connection, error)
    raise failure  # out of the except: it keeps no __context__ to show


async def _async_handshake(prefix: str, connection: t.Any) -> None:
    try:
        await connection.on_connect()
        return
    except Exception as error:
        failure = _refusal(prefix, connection, error)
    raise failure


def _refusal(prefix: str, connection: t.Any, error: Exception) -> Exception:
    """*error*, of the handshake, with advice, and without the password that a
    server quotes when it does not know HELLO (``HELLO 3 AUTH user <pass>``)."""
    text = str(error)
    if "unknown command" in text and "HELLO" in text:
        text = f"{prefix}: the server lacks HELLO (RESP3); set {prefix}_PROTOCOL = 2."
    elif "HELLO must be called with the client already authenticated" in text:
        text = f"{prefix}: the server needs a password; set {prefix}_PASSWORD."
    return type(error)(_masked_text(text, getattr(connection, "password", None)))


def _sentinel_client(
    settings: SentinelSettings,
    master: bool,
    follow_failovers: bool = True,
    sentinel_manager: t.Any = None,
) -> t.Any:
    """A client of the master (or replicas) on a pool that asks the sentinels
    (*sentinel_manager*, or its own) where to connect; a master's follows failovers."""
    pool_class, sentinel_class = _sentinel_classes(settings.is_asyncio)
    if sentinel_manager is None:
        options = dict(settings.sentinel_kwargs)
        if settings.is_asyncio and options.get("retry") == _no_retries():
            retry_class = importlib.import_module("redis.asyncio.retry").Retry
            options["retry"] = _no_retries(retry_class)  # its asyncio twin
        sentinel_manager = sentinel_class(settings.sentinels, sentinel_kwargs=options)
    # redis.Redis's keywords go to the pool; those a subclass adds, to the client.
    own, pool_kwargs = {}, {"is_master": master, "follow_failovers": follow_failovers}
    redis_keywords = _keywords(_default_client_class())[0]
    for name, value in settings.kwargs.items():
        if name not in redis_keywords:
            own[name] = value
        elif settings.kwargs.get("ssl") or not name.startswith("ssl_"):
            # Without TLS, redis.Redis ignores TLS options; connections fail.
            pool_kwargs[name] = value
    pool = pool_class(settings.service_name, sentinel_manager, **pool_kwargs)
    client = settings.client_class(connection_pool=pool, **own)
    client.auto_close_connection_pool = True  # as Sentinel.master_for does
    return client


# == 8. Following Sentinel failovers ============================================

# Sentinels hear of a new master within their 2 s hello period, and report the
# old one until then: an announcement is trusted over them for longer.
_ANNOUNCEMENT_TRUSTED_FOR = 10.0
_WATCH_INTERVAL = 0.25  # how often a watcher checks whether to stop
_WATCH_RETRY_DELAY = 0.5  # between attempts to reach a sentinel that is down
_WATCH_TIMEOUT = 5.0  # socket timeouts of a watcher, unless configured


@functools.cache
def _sentinel_classes(asynchronous: bool = False) -> tuple[type[t.Any], type[t.Any]]:
    """redis-py's (or redis.asyncio's) Sentinel pool and client, made to follow
    failovers; on first use, as the module imports without redis-py."""
    package = "redis.asyncio" if asynchronous else "redis"
    module: t.Any = importlib.import_module(f"{package}.sentinel")

    class FollowingSentinel(module.Sentinel):  # type: ignore[misc]
        """Asks the sentinels where the master is, unless one has just announced
        a new master that the others may not have heard of yet."""

        def __init__(
            self, sentinels: t.Sequence[tuple[str, int]], **kwargs: t.Any
        ) -> None:
            super().__init__(sentinels, **kwargs)
            self.addresses = list(sentinels)
            # service name -> (announced master, until when it is trusted)
            self.announcements: dict[str, tuple[tuple[str, int], float]] = {}

        def announce(self, service_name: str, address: tuple[str, int]) -> bool:
            """Trust *address* as the master for a while; False if it is already."""
            trusted, until = self.announcements.get(service_name, (None, 0.0))
            if trusted == address and time.monotonic() < until:
                return False
            until = time.monotonic() + _ANNOUNCEMENT_TRUSTED_FOR
            self.announcements[service_name] = (address, until)
            return True

        def discover_master(self, service_name: str) -> t.Any:
            address, until = self.announcements.get(service_name, (None, 0.0))
            if time.monotonic() >= until:
                return super().discover_master(service_name)
            return _awaitable(address) if asynchronous else address

    class ReconnectingConnection(module.SentinelManagedConnection):  # type: ignore[misc]
        """Asks the sentinels where to connect whenever it reconnects (redis-py 6+
        goes back to the old master), once: the command's retry is around the call."""

        if asynchronous:

            async def send_packed_command(
                self, command: t.Any, check_health: bool = True
            ) -> None:
                if not self.is_connected:
                    await self._connect_retry()
                await super().send_packed_command(command, check_health)

        else:

            def send_packed_command(  # type: ignore[misc]
                self, command: t.Any, check_health: bool = True
            ) -> None:
                if not getattr(self, "_sock", True):
                    (getattr(self, "_connect_retry", None) or self.connect)()
                super().send_packed_command(command, check_health)

    SSLConnection: t.Any = module.SentinelManagedSSLConnection

    class ReconnectingSSLConnection(ReconnectingConnection, SSLConnection):  # type: ignore[misc]
        pass

    class FollowingSentinelPool(module.SentinelConnectionPool):  # type: ignore[misc]
        """A master's pool follows failovers, unless *follow_failovers* is
        false; closing it closes its connections to the sentinels too."""

        def __init__(
            self, *args: t.Any, follow_failovers: bool = True, **kwargs: t.Any
        ) -> None:
            tls = kwargs.get("ssl")
            reconnecting = ReconnectingSSLConnection if tls else ReconnectingConnection
            kwargs.setdefault("connection_class", reconnecting)
            self.watcher: _FailoverWatcher | None = None  # (if __init__ disconnects)
            super().__init__(*args, **kwargs)  # the service name, the sentinels
            following = follow_failovers and self.is_master
            self.watcher = _FailoverWatcher(self) if following else None

        def get_connection(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
            if self.watcher is not None:
                self.watcher.start()
            return super().get_connection(*args, **kwargs)  # awaitable with asyncio

        if asynchronous:

            async def release(self, connection: t.Any) -> None:
                # Busy as the master changed: redis.asyncio's pool would keep it,
                # on the old master (redis-py's closes it, as owns_connection() says).
                address = (connection.host, connection.port)
                if self.is_master and address != self.master_address:
                    await connection.disconnect()
                await super().release(connection)

        def disconnect(self, inuse_connections: bool = True) -> t.Any:
            disconnected = super().disconnect(inuse_connections)
            if not inuse_connections:  # just the idle connections
                return disconnected
            if self.watcher is not None:
                self.watcher.stop()
            sentinels = self.sentinel_manager.sentinels
            if not asynchronous:
                for sentinel in sentinels:
                    sentinel.close()
                return disconnected

            async def closing() -> None:
                await disconnected
                for sentinel in sentinels:
                    await sentinel.aclose()

            return closing()

    return FollowingSentinelPool, FollowingSentinel


async def _awaitable(value: t.Any) -> t.Any:
    return value


class _FailoverWatcher:
    """Makes a master's pool follow a failover as soon as a sentinel announces it: a
    daemon thread per sentinel listens for ``+switch-master`` (docs/sentinel.rst)."""

    def __init__(self, pool: t.Any) -> None:
        self._pool = weakref.ref(pool)
        self._sentinel_manager = pool.sentinel_manager
        self._service_name = pool.service_name
        self._lock = threading.Lock()
        self._pid: int | None = None  # the process the threads run in
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None  # an asyncio pool's

    def start(self) -> None:
        """Follow the sentinels, unless already following in this process."""
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid, self._stopping = os.getpid(), threading.Event()
            self._loop = _running_loop()  # an asyncio pool's runs what it is told
            for host, port in self._sentinel_manager.addresses:
                threading.Thread(
                    target=self._follow,
                    args=(host, port, self._stopping),
                    name=f"flask_and_redis: {self._service_name} from {host}:{port}",
                    daemon=True,
                ).start()

    def stop(self) -> None:
        """Stop following, not waiting for the threads (each ends within
        ``_WATCH_INTERVAL``): a finaliser must not block the request it ran in."""
        with self._lock:
            self._stopping.set()
            self._pid = None

    def _follow(self, host: str, port: int, stopping: threading.Event) -> None:
        from redis import Redis, RedisError

        options = {**self._sentinel_manager.sentinel_kwargs, "retry": _no_retries()}
        for name in ("socket_timeout", "socket_connect_timeout"):
            if options.get(name) is None:  # never hang
                options[name] = _WATCH_TIMEOUT
        sentinel = Redis(host=host, port=port, **options)
        pubsub = sentinel.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        failing = False
        with sentinel, pubsub:
            while not stopping.is_set() and self._pool() is not None:
                try:
                    if not pubsub.subscribed:  # resubscribes after reconnecting
                        pubsub.subscribe("+switch-master")
                    message = pubsub.get_message(timeout=_WATCH_INTERVAL)
                except RedisError as error:
                    if not failing:
                        logger.warning(
                            "Cannot hear failovers of %r from %s:%s, retrying: %s",
                            self._service_name,
                            host,
                            port,
                            _masked_text(str(error), options),
                        )
                    failing = True
                    stopping.wait(_WATCH_RETRY_DELAY)
                    continue
                failing = False
                # "<master name> <old ip> <old port> <new ip> <new port>"
                data = message["data"] if message else b""
                fields = (data.decode() if isinstance(data, bytes) else data).split()
                pool = self._pool()
                ours = len(fields) == 5 and fields[0] == self._service_name
                if pool is None or not ours or not fields[4].isdigit():
                    continue
                address = (fields[3], int(fields[4]))
                if self._sentinel_manager.announce(self._service_name, address):
                    # The pool asks, and gets the announced address; as it
                    # changed, it closes its idle connections, busy ones on release.
                    if self._loop is None:
                        pool.get_master_address()
                    elif not self._loop.is_closed():  # asyncio: in the pool's loop
                        asked = pool.get_master_address()
                        asyncio.run_coroutine_threadsafe(asked, self._loop)
                    logger.info(
                        "The sentinels announce a new master for %r: %s:%s",
                        self._service_name,
                        *address,
                    )


# == 9. asyncio: a client per event loop ========================================

# An event loop's client, its replica client (or None), and its closer.
_LoopClients = tuple[t.Any, t.Any, t.AsyncGenerator[None, None]]


class LoopLocalClient(_Binding):
    """The asyncio client of one app and prefix: a client per event loop, built
    on first use in it, to which attribute lookups go (see :doc:`async`).

    :param settings: what every loop's client is built from.
    """

    __slots__ = ("_clients",)

    def __init__(self, settings: ClientSettings) -> None:
        #: The settings each loop's client is built from.
        self.settings = settings
        # Not weak keys: the values refer to their loop, and would keep it.
        self._clients: dict[asyncio.AbstractEventLoop, _LoopClients] = {}

    @property
    def client(self) -> t.Any:
        """The running event loop's client, built on first use in that loop.

        :raise RuntimeError: no event loop is running in this thread.
        """
        return self._loop_clients()[0]

    @property
    def replica(self) -> t.Any:
        """With Sentinel, the running event loop's replica client."""
        return self._loop_clients()[1]

    def close(self, timeout: float = 5.0) -> None:
        """Close the clients of the running event loops, each in its loop, and
        wait up to *timeout* seconds (not for the caller's own loop's, which
        closes once given back). See :ref:`async-testing`.

        .. versionadded:: 2.0
        """
        running, closing = _running_loop(), []
        for loop, (*_, closer) in list(self._clients.items()):
            if loop.is_running():
                closed = asyncio.run_coroutine_threadsafe(closer.aclose(), loop)
                if loop is not running:  # which cannot close it while we wait
                    closing.append(closed)
        concurrent.futures.wait(closing, timeout)

    def _loop_clients(self) -> _LoopClients:
        loop = _running_loop()
        if loop is None:
            raise RuntimeError(
                f"{self.settings.prefix} has an asyncio client class"
                f" ({_class_name(self.settings.client_class)}) and no event loop is"
                " running here: use it in an async view or a coroutine, or give"
                " sync code a prefix with a sync client class."
            )
        return self._clients.get(loop) or self._open(loop)

    def _open(self, loop: asyncio.AbstractEventLoop) -> _LoopClients:
        settings = self.settings
        for closed in [closed for closed in list(self._clients) if closed.is_closed()]:
            # Its client cannot be closed (that needs the loop): let it go.
            self._clients.pop(closed, None)
            logger.warning(
                "%s: event loop %#x was closed without loop.shutdown_asyncgens(): its"
                " client is dropped unclosed; call it before loop.close().",
                settings.prefix,
                id(closed),
            )
        client = settings.create_client()
        replica = _replica_of(settings, client)
        if sys.version_info[:2] == (3, 11):  # see _timed_writes
            for built in (client, replica):
                pool = getattr(built, "connection_pool", None)  # (not a cluster's)
                if pool is not None:
                    pool.connection_class = _timed_writes(pool.connection_class)
        # Run to its yield, the closer is the loop's: shutdown_asyncgens() closes it.
        closer = self._close_at_shutdown()
        try:
            closer.asend(None).send(None)
        except StopIteration:  # (it yielded)
            pass
        self._clients[loop] = clients = (client, replica, closer)
        _expose_attributes(client, own_only=True)
        logger.debug("%s: new client for event loop %#x", settings.prefix, id(loop))
        return clients

    async def _close_at_shutdown(self) -> t.AsyncGenerator[None, None]:
        loop = asyncio.get_running_loop()  # the one _open started it in
        try:
            yield
        finally:
            client, replica, _ = self._clients.pop(loop)
            for opened in (replica, client) if replica is not None else (client,):
                await opened.aclose()
            prefix = self.settings.prefix
            logger.debug("%s: closed the client of event loop %#x", prefix, id(loop))

    def __getattr__(self, name: str) -> t.Any:
        if name.startswith("_"):  # its own, asked for before __init__ by copy
            raise AttributeError(name)
        return getattr(self.client, name)

    def __repr__(self) -> str:
        settings = self.settings
        return (
            f"<{type(self).__module__}.{type(self).__name__} {settings.prefix}"
            f" {_class_name(settings.client_class)} to {settings.url},"
            f" clients in {len(self._clients)} event loops>"
        )


@functools.cache
def _timed_writes(connection_class: type[t.Any]) -> type[t.Any]:
    """*connection_class* timing its writes with ``asyncio.timeout()``: on 3.11,
    redis-py's ``wait_for()`` makes a task per command (see :doc:`performance`)."""

    class TimedWrites(connection_class):  # type: ignore[misc]
        socket_timeout: float | None

        async def send_packed_command(
            self, command: t.Any, check_health: bool = True
        ) -> None:
            timeout, send = self.socket_timeout, super().send_packed_command
            if not timeout or not self.is_connected:  # connecting has its own
                return await send(command, check_health)  # type: ignore[no-any-return]
            self.socket_timeout = None  # for the write: no wait_for()
            try:
                async with asyncio.timeout(timeout):  # type: ignore[attr-defined,unused-ignore]
                    await send(command, check_health)
            except TimeoutError:  # asyncio's; redis-py's is no OSError
                raise importlib.import_module("redis.exceptions").TimeoutError(
                    "Timeout writing to socket"
                ) from None
            finally:
                self.socket_timeout = timeout

    return TimedWrites


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _run_in_views_loop(app: Flask, view: Callable[..., t.Any]) -> Callable[..., t.Any]:
    """``Flask.async_to_sync`` for apps with an asyncio prefix: views run as
    tasks of one lasting event loop, as asgiref runs them: see :ref:`async-views`."""

    @functools.wraps(view)
    def run(*args: t.Any, **kwargs: t.Any) -> t.Any:
        loop = _views_loop()
        if _running_loop() is loop:  # waiting would deadlock it: asgiref refuses
            return Flask.async_to_sync(app, view)(*args, **kwargs)
        left: list[contextvars.Context] = []  # the context that the view leaves

        async def run_view() -> t.Any:
            started: set[asyncio.Task[t.Any]] = set()  # see _view_task_factory
            token = _VIEW_TASKS.set(started)
            try:
                return await view(*args, **kwargs)
            finally:
                running = [task for task in started if not task.done()]
                for task in running:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)
                _VIEW_TASKS.reset(token)
                left.append(contextvars.copy_context())

        # Its task runs in a copy of this thread's context.
        done = asyncio.run_coroutine_threadsafe(run_view(), loop)
        try:
            return done.result()
        finally:
            for variable, value in left[0].items() if left else ():
                variable.set(value)

    return run


# The tasks that the running view started, and those they started.
_VIEW_TASKS: contextvars.ContextVar[set[asyncio.Task[t.Any]]]
_VIEW_TASKS = contextvars.ContextVar("flask_and_redis view tasks")


def _view_task_factory(
    loop: asyncio.AbstractEventLoop, coroutine: t.Any, **kwargs: t.Any
) -> asyncio.Task[t.Any]:
    task = asyncio.Task(coroutine, loop=loop, **kwargs)
    started = _VIEW_TASKS.get(None)
    if started is not None:
        started.add(task)
        task.add_done_callback(started.discard)
    return task


_VIEWS_LOOP: dict[int, asyncio.AbstractEventLoop] = {}  # process id -> loop
_VIEWS_LOOP_LOCK = threading.Lock()


def _views_loop() -> asyncio.AbstractEventLoop:
    """The event loop of this process's async views, started on first use
    (a forked worker starts its own), and closed with its clients at exit."""
    with _VIEWS_LOOP_LOCK:
        if os.getpid() in _VIEWS_LOOP:
            return _VIEWS_LOOP[os.getpid()]
        # In an empty context: its callbacks would keep the request's app alive.
        loop = contextvars.Context().run(asyncio.new_event_loop)
        loop.set_task_factory(_view_task_factory)
        _VIEWS_LOOP[os.getpid()] = loop

        def serve() -> None:
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())  # the clients
            loop.close()

        # (Not "flask_and_redis: …", the name of the failover watchers.)
        thread = threading.Thread(target=serve, name="flask_and_redis async views")
        thread.daemon = True
        thread.start()

        @atexit.register
        def stop() -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(loop.stop)
                thread.join(5)

        return loop


# == 10. The flask redis command ================================================


@click.group("redis")
def cli() -> None:
    """Check and inspect the Redis connections of the app."""


def _command(name: str, *, timeout: bool = True) -> Callable[[t.Any], t.Any]:
    """A ``flask redis`` command with ``--prefix`` (and ``--timeout``), run in
    the app's context, that reports a configuration error in one line."""

    def decorate(command: Callable[..., None]) -> t.Any:
        @functools.wraps(command)
        def run(prefix: str | None, **options: t.Any) -> None:
            app = _cv_app.get(_NO_CONTEXT).app
            if app is None:
                context = click.get_current_context()
                try:
                    app = context.ensure_object(ScriptInfo).load_app()
                except ConfigurationError as error:
                    raise click.ClickException(str(error)) from None
                context.with_resource(app.app_context())
            registered = _registered_settings(app)
            if prefix is not None and prefix not in registered:
                raise click.BadParameter(
                    f"{prefix!r} is not a prefix of this app; its prefixes are"
                    f" {', '.join(map(repr, registered))}.",
                    param_hint="'--prefix'",
                )
            selected = [registered[prefix]] if prefix else list(registered.values())
            if not selected:
                raise click.ClickException(f"The app {app.name!r} has no Redis prefix.")
            command(selected, **options)

        run = click.option(
            "--prefix", metavar="PREFIX", help="Only this config prefix (default: all)."
        )(run)
        if timeout:
            run = click.option(
                "--timeout",
                type=click.FloatRange(min=0, min_open=True),
                default=3.0,
                show_default=True,
                help="Seconds to wait for each server, which is tried once.",
            )(run)
        return cli.command(name)(run)

    return decorate


def _probe(
    settings: ClientSettings, timeout: float, *commands: tuple[t.Any, ...]
) -> list[tuple[t.Any, float]] | None:
    """Each result of *commands* (as ``("info", "server")``) and its seconds, from
    a client of *settings* trying each server once for *timeout* seconds (redis-py 8
    retries a refused connection ten times); None once it said why it failed."""
    named, takes_any = _keywords(settings.client_class)
    timeouts = dict.fromkeys(("socket_timeout", "socket_connect_timeout"), timeout)
    kwargs = {**settings.kwargs}
    kwargs.update((name, timeout) for name in timeouts if takes_any or name in named)
    if hasattr(named.get("retry"), "get_retries"):  # the class's own kind of Retry
        kwargs["retry"] = _no_retries(type(named["retry"]))
    probe = dataclasses.replace(settings, kwargs=kwargs)
    create = probe.create_client
    if isinstance(probe, SentinelSettings):
        sentinel_kwargs = {**probe.sentinel_kwargs, **timeouts, "retry": _no_retries()}
        probe = dataclasses.replace(probe, sentinel_kwargs=sentinel_kwargs)
        create = functools.partial(_sentinel_client, probe, True, False)

    async def run() -> list[tuple[t.Any, float]]:
        client, results = create(), []  # sync clients too: one way for both
        try:
            for name, *args in commands:
                started = time.perf_counter()
                result = getattr(client, name)(*args)
                result = await result if inspect.isawaitable(result) else result
                results.append((result, time.perf_counter() - started))
            return results
        finally:
            closed = client.aclose() if hasattr(client, "aclose") else client.close()
            if inspect.isawaitable(closed):
                await closed

    try:
        return asyncio.run(run())
    except Exception as error:  # every failure is the answer here
        reason = _masked_text(str(error), settings)
        click.echo(f"unreachable: {type(error).__name__}: {reason}")
        return None


@_command("ping")
def _ping_command(selected: list[ClientSettings], timeout: float) -> None:
    """Ping each prefix's server; exit status 1 if one is unreachable."""
    failed = False
    width = max(len(settings.prefix) for settings in selected)
    for settings in selected:
        click.echo(f"{settings.prefix:<{width}}  {settings.url}  ", nl=False)
        # The first PING connects, authenticates and selects the db.
        probed = _probe(settings, timeout, ("ping",), ("ping",), ("info", "server"))
        if probed is None:
            failed = True
            continue
        _, (_, took), (info, _) = probed
        server = f"Redis {info.get('redis_version', '(version unknown)')}"
        if "valkey_version" in info:
            server = f"Valkey {info['valkey_version']}"
        click.echo(f"PONG in {took * 1000:.2f} ms, {server}")
    if failed:
        raise click.exceptions.Exit(1)


_INFO_SECTIONS = (  # what INFO shows by default, in its order
    "server clients memory persistence stats replication cpu modules errorstats"
    " cluster keyspace"
).split()


@_command("info")
@click.argument("section", required=False)
def _info_command(
    selected: list[ClientSettings], timeout: float, section: str | None
) -> None:
    """Show each prefix's server INFO, section by section: the default
    sections, or one SECTION (server, clients, memory, stats, keyspace, …;
    'everything' for all at once)."""
    failed = False
    sections = _INFO_SECTIONS if section is None else [section.lower()]
    for settings in selected:
        click.echo(f"# {settings.prefix}  {settings.url}")
        infos = _probe(settings, timeout, *(("info", name) for name in sections))
        if infos is None:
            failed = True
            click.echo()
            continue
        if section is not None and not infos[0][0]:
            raise click.ClickException(
                f"The server of {settings.prefix} has no INFO section {section!r};"
                f" its default sections are {', '.join(_INFO_SECTIONS)}."
            )
        for name, (info, _) in zip(sections, infos, strict=True):
            if info:
                click.echo(f"## {name.capitalize()}")
            for field_name, value in info.items():
                click.echo(f"{field_name:<{max(map(len, info))}}  {_info_value(value)}")
        click.echo()
    if failed:
        raise click.exceptions.Exit(1)


def _info_value(value: object) -> str:
    """An INFO value; keyspace's are dicts ("db0": {"keys": 1, …}), modules' lists."""
    if isinstance(value, Mapping):
        return ", ".join(f"{name}={item}" for name, item in value.items())
    if isinstance(value, list):
        return "; ".join(map(_info_value, value))
    return str(value)


@_command("config", timeout=False)
def _config_command(selected: list[ClientSettings]) -> None:
    """Show each prefix's client settings, with where each came from."""
    for settings in selected:
        name = _class_name(settings.client_class)
        click.echo(f"# {settings.prefix}\nclass  {name}\nurl    {settings.url}")
        shown = {
            name: repr(value)
            for name, value in settings.masked_kwargs().items()
            # redis-py's own default, only looked up once: not a setting.
            if (name, settings.sources.get(name)) != ("driver_info", "default")
        }
        width = max(map(len, shown), default=0)
        value_width = max(map(len, shown.values()), default=0)
        for keyword, value in sorted(shown.items()):
            source = settings.sources.get(keyword, "code")
            click.echo(f"  {keyword:<{width}} = {value:<{value_width}}  ({source})")
        click.echo(f"  (other keyword arguments: the defaults of {name})\n")


# == 11. Integrations ===========================================================


class CommandRecord(t.NamedTuple):
    """A command that a prefix with ``<P>_RECORD_COMMANDS`` sent in an app
    context, as :func:`get_recorded_commands` lists it: see :doc:`observability`.

    .. versionadded:: 2.0
    """

    prefix: str
    command: str  # the name, upper-case: "GET", "ACL SETUSER", "PIPELINE"
    args: tuple[t.Any, ...]
    start_time: float  # time.perf_counter()'s
    end_time: float
    error: BaseException | None

    @property
    def duration(self) -> float:
        """How long the command took, in seconds."""
        return self.end_time - self.start_time


def get_recorded_commands() -> list[CommandRecord]:
    """The commands recorded in the current app context (none outside one),
    in order, of every prefix that records them: see :doc:`observability`.

    .. versionadded:: 2.0
    """
    context = _cv_app.get(None)
    recorded = getattr(context.g, "_redis_commands", ()) if context else ()
    return [CommandRecord._make(record) for record in recorded]


@functools.cache
def _recording_class(client_class: type[t.Any], prefix: str) -> type[t.Any]:
    """*client_class*, recording the commands and pipelines sent in an app
    context: only the prefixes that record pay for it."""
    asynchronous = _is_asyncio(client_class)

    def pipeline(self: t.Any, *args: t.Any, **kwargs: t.Any) -> t.Any:
        pipe = client_class.pipeline(self, *args, **kwargs)

        def describe(_: object) -> tuple[str, tuple[t.Any, ...]]:
            # Read as it is called: the pipeline empties its stack as it runs.
            masked = map(_masked, _queued(pipe))
            return "PIPELINE", tuple((name, *args) for name, args in masked)

        pipe.execute = _recorded(pipe.execute, prefix, describe, asynchronous)
        return pipe

    execute_command = _recorded(
        # Looked up at each call, as instrumentations (OpenTelemetry's) patch it.
        lambda *args, **kwargs: client_class.execute_command(*args, **kwargs),
        prefix,
        lambda args: _masked(args[1:]),
        asynchronous,
    )
    namespace = {
        "execute_command": execute_command,
        "pipeline": pipeline,
        "__module__": client_class.__module__,
        "__qualname__": client_class.__qualname__,
    }
    return type(client_class.__name__, (client_class,), namespace)


def _queued(pipe: t.Any) -> list[t.Any]:
    """The arguments of each command a pipeline queued, wherever redis-py keeps them."""
    for holder in (pipe, getattr(pipe, "_execution_strategy", None)):
        for name in ("command_stack", "command_queue", "_command_queue"):
            queued = getattr(holder, name, None)
            if queued:
                return [getattr(entry, "args", None) or entry[0] for entry in queued]
    return []


# Set while a cluster client is built: the commands it sends on its own, as
# it learns the cluster, are no more the app's than a connection's handshake.
_NOT_RECORDING = contextvars.ContextVar("flask_and_redis.not_recording", default=False)
_perf_counter = time.perf_counter  # bound once, on the path of every command


def _recorded(
    method: Callable[..., t.Any],
    prefix: str,
    describe: Callable[[tuple[t.Any, ...]], tuple[str, tuple[t.Any, ...]]],
    asynchronous: bool,
) -> Callable[..., t.Any]:
    """*method*, recording each call in an app context as a tuple (cheaper
    than a :class:`CommandRecord`), named by *describe*."""

    def records() -> list[tuple[t.Any, ...]] | None:
        context = _cv_app.get(None)
        if context is None or _NOT_RECORDING.get():
            return None
        try:
            return t.cast(list[tuple[t.Any, ...]], context.g._redis_commands)
        except AttributeError:  # the first of the context: no list made per command
            listed: list[tuple[t.Any, ...]] = []
            context.g._redis_commands = listed
            return listed

    async def record_awaited(*args: t.Any, **kwargs: t.Any) -> t.Any:
        listed = records()
        if listed is None:
            return await method(*args, **kwargs)
        command, shown = describe(args)
        started, error = _perf_counter(), None
        try:
            return await method(*args, **kwargs)
        except BaseException as caught:
            error = caught
            raise
        finally:
            listed.append((prefix, command, shown, started, _perf_counter(), error))

    def record(*args: t.Any, **kwargs: t.Any) -> t.Any:
        listed = records()
        if listed is None:
            return method(*args, **kwargs)
        command, shown = describe(args)
        started, error = _perf_counter(), None
        try:
            return method(*args, **kwargs)
        except BaseException as caught:
            error = caught
            raise
        finally:
            listed.append((prefix, command, shown, started, _perf_counter(), error))

    return record_awaited if asynchronous else record


# The commands that can carry a password, and how far after which word.
_SECRETS = {"AUTH": {}, "HELLO": {"AUTH": 2}, "MIGRATE": {"AUTH": 1, "AUTH2": 2}}


def _masked(args: t.Sequence[t.Any]) -> tuple[str, tuple[t.Any, ...]]:
    """The name of a command, and its arguments with the passwords of
    _SECRETS and ACL SETUSER's ``>password`` (and hash) rules masked."""
    name = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
    command, shown = name.upper(), tuple(args[1:])
    if command not in _SECRETS and command != "ACL SETUSER":
        return command, shown  # the path of nearly every command
    words = [arg.decode() if isinstance(arg, bytes) else str(arg) for arg in shown]
    masked = list(shown)
    for index, word in enumerate(words):
        after = _SECRETS.get(command, {}).get(word.upper())
        if after and index + after < len(masked):
            masked[index + after] = _MASK
        if command == "ACL SETUSER" and word[:1] in ("<", ">", "#", "!"):
            masked[index] = _MASK
    if command == "AUTH" and masked:
        masked[-1] = _MASK
    return command, tuple(masked)


def _add_server_timing(prefix: str, response: t.Any) -> t.Any:
    """A ``Server-Timing`` entry for the commands of *prefix* in a request."""
    records = [record for record in get_recorded_commands() if record.prefix == prefix]
    if records:
        took = sum(record.duration for record in records) * 1000
        count = f"{len(records)} command{'s' * (len(records) != 1)}"
        response.headers.add(
            "Server-Timing", f'{prefix.lower()};dur={took:.2f};desc="{count}"'
        )
    return response


@functools.cache
def __getattr__(name: str) -> t.Any:
    # DebugToolbarPanel needs Flask-DebugToolbar, an extra: built when asked for.
    if name != "DebugToolbarPanel":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from flask_debugtoolbar.panels import DebugPanel
    from markupsafe import escape

    class DebugToolbarPanel(DebugPanel):
        """A Flask-DebugToolbar panel of the Redis commands of the request:
        add ``"flask_and_redis.DebugToolbarPanel"`` to ``DEBUG_TB_PANELS``,
        and set ``<P>_RECORD_COMMANDS`` (see :doc:`observability`)."""

        name = "Redis"
        has_content = True

        def nav_title(self) -> str:
            return "Redis"

        def nav_subtitle(self) -> str:
            records = get_recorded_commands()
            took = sum(record.duration for record in records) * 1000
            return f"{len(records)} commands in {took:.2f} ms"

        def title(self) -> str:
            return "Redis commands"

        def url(self) -> str:
            return ""

        def content(self) -> str:
            records, rows = get_recorded_commands(), []
            for record in records:
                args = " ".join(map(repr, record.args))
                args = args if len(args) <= 100 else f"{args[:99]}…"  # readable
                took, error = f"{record.duration * 1000:.3f}", record.error or ""
                rows.append((record.prefix, record.command, args, took, error))
            for prefix in dict.fromkeys(record.prefix for record in records):
                mine = [record for record in records if record.prefix == prefix]
                took = f"{sum(record.duration for record in mine) * 1000:.3f}"
                rows.append((prefix, "total", f"{len(mine)} commands", took, ""))
            head = ("prefix", "command", "arguments", "ms", "error")
            cells = "".join(
                "<tr>"
                + "".join(f"<{tag}>{escape(value)}</{tag}>" for value in row)
                + "</tr>"
                for tag, row in [("th", head), *(("td", row) for row in rows)]
            )
            return f'<table class="fDebugTable">{cells}</table>'

    return DebugToolbarPanel


#: The config key naming the prefix whose client Flask-Caching uses.
CACHE_CONFIG_PREFIX_KEY = "CACHE_REDIS_CONFIG_PREFIX"


def flask_caching_backend(
    app: Flask, config: dict[str, t.Any], args: list[t.Any], kwargs: dict[str, t.Any]
) -> t.Any:
    """A Flask-Caching backend (``CACHE_TYPE``) on the client of the prefix named by
    ``CACHE_REDIS_CONFIG_PREFIX`` (``"REDIS"`` by default), whose ``clear()`` deletes
    only the keys under ``CACHE_KEY_PREFIX``: see :doc:`integrations`.

    :raise ConfigurationError: the prefix is not registered on the app, its client
        decodes responses or is asyncio's, the key prefix is empty, or ``CACHE_ARGS``
        is set.
    """
    prefix = config.get(CACHE_CONFIG_PREFIX_KEY) or "REDIS"
    registered = _registered_settings(app)
    if prefix not in registered:
        raise ConfigurationError(
            CACHE_CONFIG_PREFIX_KEY,
            f"{prefix!r} is not a Redis prefix of the app {app.name!r} (its prefixes:"
            f" {', '.join(map(repr, registered))}); register the extension first.",
        )
    settings, key_prefix = registered[prefix], config.get("CACHE_KEY_PREFIX")
    if settings.is_asyncio:
        raise ConfigurationError(
            CACHE_CONFIG_PREFIX_KEY,
            f"{prefix!r} has an asyncio client; Flask-Caching needs a sync client.",
        )
    if settings.kwargs.get("decode_responses"):
        source = settings.sources.get("decode_responses", "code")
        raise ConfigurationError(
            "keyword argument 'decode_responses'" if source == "code" else source,
            "decode_responses is on, but the cache's pickled values cannot be"
            " decoded; give the cache a prefix of its own, without it.",
        )
    if not key_prefix:
        raise ConfigurationError(
            "CACHE_KEY_PREFIX",
            f"{key_prefix!r} is empty; the cache's keys share the database, and"
            " clear() deletes those under this prefix. Set one: 'flask_cache_'.",
        )
    if args:
        raise ConfigurationError(
            "CACHE_ARGS",
            f"{_show('CACHE_ARGS', args)} is not used by this backend: its client"
            " is the one of the prefix; pass options in CACHE_OPTIONS.",
        )
    binding = app.extensions["redis"].bindings[prefix]
    # A cluster's binding stands in for its client until first used.
    client = binding if isinstance(binding, _BuiltOnFirstUse) else binding.client
    return _shared_database_redis_cache()(host=client, key_prefix=key_prefix, **kwargs)


@functools.cache
def _shared_database_redis_cache() -> type[t.Any]:
    from flask_caching.backends.rediscache import RedisCache

    class SharedDatabaseRedisCache(RedisCache):
        """Flask-Caching's Redis cache, whose :meth:`clear` deletes only the
        keys under its key prefix."""

        def clear(self) -> bool:
            # SCAN, unlike KEYS, does not block the server; UNLINK frees memory later.
            pattern = re.sub(r"[\\*?\[\]]", r"\\\g<0>", self._get_prefix()) + "*"
            keys = self._read_client.scan_iter(match=pattern, count=1000)
            while batch := list(islice(keys, 1000)):
                self._write_client.unlink(*batch)
            return True

    return SharedDatabaseRedisCache
