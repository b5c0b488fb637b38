"""The Flask app ``python -m benchmarks`` serves with gunicorn.

One view, two Redis calls (``INCR`` a counter, ``GET`` a 100-byte value),
written three times: on a redis-py client directly, through Flask-And-Redis
and through flask-redis -- the same client each time, so the views differ
only in how a call reaches it. Served by one gunicorn worker, so the three
share the process, the threads and the server.

``BENCHMARK_REDIS_URL`` is the server to use.
"""

from __future__ import annotations

import os

from flask import Flask

from flask_and_redis import Redis

from .round_trips import flask_redis_on

COUNTER = "benchmark:hits"
KEY = "benchmark:value"

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ["BENCHMARK_REDIS_URL"]

extension = Redis(app)
raw = extension.connection
flask_redis = flask_redis_on(app, raw)
raw.set(KEY, b"v" * 100)


@app.get("/raw")
def through_raw_client() -> bytes:
    raw.incr(COUNTER)
    return raw.get(KEY) or b""


@app.get("/extension")
def through_extension() -> bytes:
    extension.incr(COUNTER)
    return extension.get(KEY) or b""


@app.get("/flask-redis")
def through_flask_redis() -> bytes:
    flask_redis.incr(COUNTER)
    return flask_redis.get(KEY) or b""
