"""The example app: comments in one Redis database, a view counter per page in
another, and an expensive statistics page cached with Flask-Caching in a third.

Built by an app factory, :func:`create_app`; configured from
``example_app.settings``, then ``FLASK_*`` environment variables. Run it with
``python -m example_app`` (see ``example_app/README.rst``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from flask import Flask

from flask_and_redis import Redis

try:
    from flask_caching import Cache
except ModuleNotFoundError as error:
    # Say what to install, rather than show a traceback.
    sys.exit(
        f"The example app needs Flask-Caching ({error}). From the root of the"
        ' checkout, install it with the example extra: pip install -e ".[example]"'
    )

#: The extensions, one per database, registered on each app by create_app().
comments = Redis(config_prefix="COMMENTS")
counters = Redis(config_prefix="COUNTERS")
cache_redis = Redis(config_prefix="CACHE_REDIS")
cache = Cache()

PREFIXES = ("COMMENTS", "COUNTERS", "CACHE_REDIS")


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Create the app: ``example_app.settings``, then ``FLASK_*`` environment
    variables, then *config* on top.

    :param config: config values that win over the rest, such as
        ``{"REDIS_URL": "unix:///tmp/redis.sock", "TESTING": True}``.
    """
    app = Flask(__name__)
    app.config.from_object("example_app.settings")
    app.config.from_prefixed_env()
    if config is not None:
        app.config.update(config)
    if app.config.get("REDIS_URL"):
        for prefix in PREFIXES:
            app.config.setdefault(f"{prefix}_URL", app.config["REDIS_URL"])

    comments.init_app(app)
    counters.init_app(app)
    cache_redis.init_app(app)
    cache.init_app(app)  # after the extension whose client it uses

    from example_app.views import pages

    app.register_blueprint(pages)
    return app
