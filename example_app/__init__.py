"""The example app: a page that counts its visits in Redis.

Configured like any Flask app; here from the environment, so
``FLASK_REDIS_URL=redis://localhost:6379/0`` points it at a server. Run it with
``python -m example_app`` (see ``example_app/README.rst``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from flask_and_redis import Redis

#: The extension, created once and registered on each app by create_app().
redis = Redis()


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Create the app: config from ``FLASK_*`` environment variables, then
    *config* on top, then the Redis extension.

    :param config: config values that win over the environment, such as
        ``{"REDIS_URL": "unix:///tmp/redis.sock"}`` or ``{"TESTING": True}``.
    """
    app = Flask(__name__)
    app.config.from_prefixed_env()
    if config is not None:
        app.config.update(config)
    redis.init_app(app)

    @app.get("/")
    def index() -> dict[str, int]:
        return {"hits": redis.incr("hits")}

    return app
