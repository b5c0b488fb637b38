"""The app of test_fork.py, served by gunicorn with ``--preload``.

The extension is initialised -- and used -- in gunicorn's master process,
before it forks its workers: each worker must then open connections of its
own rather than share the master's socket.
"""

from __future__ import annotations

import os

from flask import Flask, request

from flask_and_redis import Redis

app = Flask(__name__)
app.config.from_prefixed_env()  # FLASK_REDIS_URL
redis = Redis(app)

MASTER_PID = os.getpid()
MASTER_CLIENT_ID = redis.client_id()


@app.get("/echo")
def echo() -> dict[str, object]:
    token = request.args["token"]
    # One connection runs the whole transaction, so the id is the id of the
    # connection that wrote and read the token.
    with redis.pipeline() as pipe:
        pipe.set(f"token:{token}", token).get(f"token:{token}").client_id()
        _, read, client_id = pipe.execute()
    return {
        "pid": os.getpid(),
        "client_id": client_id,
        "token": read.decode(),
        "master_pid": MASTER_PID,
        "master_client_id": MASTER_CLIENT_ID,
    }
