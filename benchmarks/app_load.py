"""A Flask app under load: gunicorn serving ``wsgi_app``, driven on loopback.

The load generator is ``wrk`` when it is installed (``apt-get install wrk``),
otherwise a small Python client; either runs for a bounded time and a bounded
number of requests against one endpoint at a time, the three endpoints
interleaved round by round.
"""

from __future__ import annotations

import dataclasses
import http.client
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .timing import Spread, bounded, interleave, per_round
from servers import free_port

ROOT = Path(__file__).resolve().parent.parent

#: name -> (label, path)
ENDPOINTS = {
    "raw": ("redis-py", "/raw"),
    "extension": ("Flask-And-Redis", "/extension"),
    "flask_redis": ("flask-redis 0.4", "/flask-redis"),
}

#: The lowest extension / raw-client throughput ratio the app may show.
TARGET = 0.99

_START_DEADLINE = 30.0
_STOP_DEADLINE = 10.0


@dataclass(frozen=True)
class Load:
    """One run of the load generator against one endpoint."""

    requests: int
    requests_per_second: float
    p99_ms: float
    #: CPU time the gunicorn worker spent per request, if it can be read.
    cpu_us_per_request: float | None = None


@dataclass(frozen=True)
class AppLoadResult:
    rounds: int
    seconds: float
    connections: int
    generator: str
    server: str
    requests_per_second: dict[str, Spread]
    p99_ms: dict[str, Spread]
    cpu_us_per_request: dict[str, Spread] | None
    throughput_ratio: dict[str, Spread]  # endpoint / raw, round by round
    p99_ratio: dict[str, Spread]
    cpu_ratio: dict[str, Spread] | None


def run(
    host: str,
    port: int,
    rounds: int,
    seconds: float,
    connections: int,
    max_requests: int,
    generator: str,
    warm_up: bool = True,
) -> AppLoadResult:
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "python"
    threads = connections
    with Gunicorn(host, port, threads=threads) as server:
        for _, path in ENDPOINTS.values():
            server.check(path)

        def measure(path: str, duration: float) -> Load:
            cpu_before = server.worker_cpu_seconds()
            if generator == "wrk":
                load = wrk(server.url(path), duration, connections)
            else:
                load = python_load(
                    server.url(path), duration, connections, max_requests
                )
            cpu_after = server.worker_cpu_seconds()
            if cpu_before is None or cpu_after is None:
                return load
            return dataclasses.replace(
                load,
                cpu_us_per_request=(cpu_after - cpu_before) / load.requests * 1e6,
            )

        loads = interleave(
            {
                name: lambda path=path: measure(path, seconds)
                for name, (_, path) in ENDPOINTS.items()
            },
            rounds,
            warm_up=warm_up,
        )
    throughput = {
        name: [load.requests_per_second for load in runs]
        for name, runs in loads.items()
    }
    p99 = {name: [load.p99_ms for load in runs] for name, runs in loads.items()}
    cpu: dict[str, list[float]] | None = {
        name: [
            load.cpu_us_per_request
            for load in runs
            if load.cpu_us_per_request is not None
        ]
        for name, runs in loads.items()
    }
    if any(len(cpu[name]) != len(loads[name]) for name in ENDPOINTS):
        cpu = None  # no /proc to read it from
    return AppLoadResult(
        rounds=rounds,
        seconds=seconds,
        connections=connections,
        generator=generator_version(generator),
        server=f"gunicorn {gunicorn_version()}, 1 worker, {threads} threads",
        requests_per_second={name: Spread.of(throughput[name]) for name in ENDPOINTS},
        p99_ms={name: Spread.of(p99[name]) for name in ENDPOINTS},
        throughput_ratio={
            name: Spread.of(per_round(throughput, lambda a, b: a / b, name, "raw"))
            for name in ENDPOINTS
        },
        p99_ratio={
            name: Spread.of(per_round(p99, lambda a, b: a / b, name, "raw"))
            for name in ENDPOINTS
        },
        cpu_us_per_request=(
            {name: Spread.of(cpu[name]) for name in ENDPOINTS} if cpu else None
        ),
        cpu_ratio=(
            {
                name: Spread.of(per_round(cpu, lambda a, b: a / b, name, "raw"))
                for name in ENDPOINTS
            }
            if cpu
            else None
        ),
    )


class Gunicorn:
    """gunicorn serving ``benchmarks.wsgi_app:app`` on a free loopback port."""

    def __init__(self, host: str, port: int, threads: int) -> None:
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="benchmark-gunicorn-")
        environment = dict(os.environ)
        environment["BENCHMARK_REDIS_HOST"] = host
        environment["BENCHMARK_REDIS_PORT"] = str(port)
        # The checkout's flask_and_redis, not an installed one.
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), environment.get("PYTHONPATH")])
        )
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--workers=1",
                "--worker-class=gthread",
                f"--threads={threads}",
                f"--bind=127.0.0.1:{self.port}",
                "--log-level=warning",
                "benchmarks.wsgi_app:app",
            ],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Gunicorn:
        try:
            self.check("/raw", deadline=_START_DEADLINE)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def check(self, path: str, deadline: float = 5.0) -> None:
        """Wait until *path* answers 200 with the 100-byte value."""
        until = time.monotonic() + deadline
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited during start-up:\n{self.output()}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, 2)
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read()
                connection.close()
            except OSError:
                if time.monotonic() > until:
                    raise RuntimeError(
                        f"gunicorn did not answer within {deadline:.0f} s:\n"
                        + self.output()
                    ) from None
                time.sleep(0.05)
                continue
            if response.status != 200 or len(body) != 100:
                raise RuntimeError(
                    f"GET {path} answered {response.status} with {len(body)} bytes"
                    f" instead of 200 with 100 bytes:\n{self.output()}"
                )
            return

    def worker_cpu_seconds(self) -> float | None:
        """CPU time used so far by the worker (all its threads), from /proc;
        ``None`` where there is no /proc."""
        try:
            children = Path(
                f"/proc/{self.process.pid}/task/{self.process.pid}/children"
            ).read_text()
            (worker,) = children.split()
            fields = Path(f"/proc/{worker}/stat").read_text().rpartition(")")[2]
        except (OSError, ValueError):
            return None
        # utime and stime: fields 14 and 15 of stat(5), counted after the ")".
        user, system = fields.split()[11:13]
        return (int(user) + int(system)) / os.sysconf("SC_CLK_TCK")

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(_STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


# -- Load generators


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url: str, seconds: float, connections: int) -> Load:
    duration = max(1, round(seconds))
    result = subprocess.run(
        [
            "wrk",
            "--threads=1",
            f"--connections={connections}",
            f"--duration={duration}s",
            "--timeout=2s",
            "--latency",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 30,
        check=False,
    )
    output = result.stdout
    requests = re.search(r"(\d+) requests in", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    errors = re.search(r"Non-2xx or 3xx responses|Socket errors", output)
    if result.returncode != 0 or not (requests and rate and p99) or errors:
        raise RuntimeError(
            f"wrk against {url} failed (exit {result.returncode}):\n"
            f"{output}{result.stderr}"
        )
    return Load(int(requests[1]), float(rate[1]), float(p99[1]) * _UNITS[p99[2]])


def python_load(url: str, seconds: float, connections: int, max_requests: int) -> Load:
    """A keep-alive HTTP client per thread, for *seconds* or *max_requests*."""
    host, _, rest = url.removeprefix("http://").partition("/")
    address, _, port = host.partition(":")
    path = "/" + rest
    tickets = itertools.count()  # next() on it is atomic
    latencies: list[list[float]] = [[] for _ in range(connections)]
    failures: list[str] = []

    def client(latencies: list[float]) -> None:
        connection = http.client.HTTPConnection(address, int(port), timeout=5)
        try:
            for _ in bounded(max_requests, seconds, time.perf_counter):
                if next(tickets) >= max_requests:
                    return
                started = time.perf_counter()
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                latencies.append(time.perf_counter() - started)
                if response.status != 200:
                    failures.append(f"GET {path} answered {response.status}")
                    return
        except OSError as error:
            failures.append(f"GET {path} failed: {error}")
        finally:
            connection.close()

    workers = [threading.Thread(target=client, args=(own,)) for own in latencies]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + 30)
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(failures[0])
    every = sorted(itertools.chain.from_iterable(latencies))
    if not every:
        raise RuntimeError(f"GET {path}: no request completed in {seconds} s")
    p99 = every[min(len(every) - 1, int(len(every) * 0.99))]
    return Load(len(every), len(every) / elapsed, p99 * 1e3)


def generator_version(generator: str) -> str:
    if generator == "python":
        return "Python http.client, one keep-alive connection per thread"
    output = subprocess.run(
        ["wrk", "--version"], capture_output=True, text=True, check=False
    )
    first = (output.stdout + output.stderr).strip().splitlines()
    return " ".join(first[0].split()[:2]) if first else "wrk"


def gunicorn_version() -> str:
    import gunicorn

    return str(gunicorn.__version__)
