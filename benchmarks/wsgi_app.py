"""The Flask app ``python -m benchmarks`` serves with gunicorn.

One view, two Redis calls (``INCR`` a counter, ``GET`` a 100-byte value),
written three times: on a raw redis-py client, through Flask-And-Redis and
through flask-redis. Served by one gunicorn worker, so the three share the
process, the threads and the server.

``BENCHMARK_REDIS_URL`` is the server to use.
"""

from __future__ import annotations

import os

import redis
from flask import Flask
from flask_redis import FlaskRedis

from flask_and_redis import Redis

COUNTER = "benchmark:hits"
KEY = "benchmark:value"

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ["BENCHMARK_REDIS_URL"]
app.config["FLASK_REDIS_URL"] = os.environ["BENCHMARK_REDIS_URL"]

extension = Redis(app)
# Built with the very arguments the extension used.
raw = redis.Redis(**extension.settings_for(app).kwargs)
# Its own prefix: flask-redis would replace app.extensions["redis"].
flask_redis = FlaskRedis(app, config_prefix="FLASK_REDIS")
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
