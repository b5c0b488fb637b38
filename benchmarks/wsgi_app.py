"""The Flask app ``python -m benchmarks`` serves with gunicorn.

One view, two Redis calls (``INCR`` a counter, ``GET`` a 100-byte value),
written three times: on redis-py as one would use it without an extension,
through Flask-And-Redis and through flask-redis. Served by one gunicorn
worker, so the three share the process, the threads and the server.

``BENCHMARK_REDIS_HOST`` and ``BENCHMARK_REDIS_PORT`` are the server to use.
"""

from __future__ import annotations

import os

import redis
from flask import Flask
from flask_redis import FlaskRedis

from flask_and_redis import Redis

COUNTER = "benchmark:hits"
KEY = "benchmark:value"

HOST = os.environ["BENCHMARK_REDIS_HOST"]
PORT = int(os.environ["BENCHMARK_REDIS_PORT"])

app = Flask(__name__)
app.config["REDIS_URL"] = app.config["FLASK_REDIS_URL"] = f"redis://{HOST}:{PORT}/0"

raw = redis.Redis(host=HOST, port=PORT)
extension = Redis(app)
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
