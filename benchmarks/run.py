"""``python -m benchmarks``: run the benchmarks, print a reST report.

Starts its own Redis server (TCP on 127.0.0.1 and a unix socket, with the
test suite's helpers), runs the sections in one process -- the app section
also runs gunicorn and a load generator; the frozen section freezes a server
of its own, the sentinel-apps section starts a Sentinel group -- and prints,
on stdout, tables ready to paste into docs/performance.rst, with the machine
they ran on and whether each target was met. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import report
from servers import RedisServer, free_port

SECTIONS = (
    "dispatch",
    "recording",
    "round-trips",
    "app",
    "hiredis",
    "frozen",
    "sentinel-apps",
    "async-views",
)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Measure Flask-And-Redis against raw redis-py and flask-redis, in"
            " interleaved rounds, and print reST tables with the machine and"
            " the targets."
        ),
    )
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default: {','.join(SECTIONS)})",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=40,
        help="rounds of the in-process sections (default: 40)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply the calls per measurement by this (default: 1)",
    )
    parser.add_argument(
        "--app-rounds",
        type=int,
        default=20,
        help="rounds of the app section (default: 20)",
    )
    parser.add_argument(
        "--app-seconds",
        type=float,
        default=2.0,
        help="seconds of load per endpoint and round (default: 2)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=4,
        help="concurrent connections of the load generator, and gunicorn"
        " threads (default: 4)",
    )
    parser.add_argument(
        "--max-requests",
        type=int,
        default=200_000,
        help="most requests per run of the Python load generator",
    )
    parser.add_argument(
        "--load-generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="wrk, a Python client, or wrk when installed (default: auto)",
    )
    parser.add_argument(
        "--frozen-cap",
        type=float,
        default=20.0,
        help="seconds redis-py's requests may wait on the frozen server before"
        " it resumes (default: 20; with 70, redis-py's defaults give up first)",
    )
    parser.add_argument(
        "--apps",
        type=int,
        default=300,
        help="apps made and dropped per loop of the sentinel-apps section"
        " (default: 300)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny counts, to check that everything runs (figures meaningless)",
    )
    parser.add_argument("--output", type=Path, help="also write the report here")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit with status 1 if a target is missed",
    )
    arguments = parser.parse_args(argv)
    arguments.sections = [name.strip() for name in arguments.sections.split(",")]
    unknown = set(arguments.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    if arguments.smoke:
        arguments.rounds = 2
        arguments.scale = 0.005
        arguments.app_rounds = 1
        arguments.app_seconds = 0.3
        arguments.max_requests = 200
        arguments.frozen_cap = 0.0
        arguments.apps = 10
    return arguments


def progress(message: str) -> None:
    print(f"[benchmarks {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr)


def check_requirements(sections: list[str]) -> None:
    needed = ["flask_redis"] + (["gunicorn"] if "app" in sections else [])
    if "hiredis" in sections:
        needed.append("hiredis")
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        packages = " ".join(name.replace("_", "-") for name in missing)
        raise SystemExit(
            f"The benchmarks need {packages}: pip install {packages}"
            " (or pip install -e '.[benchmark]'), or leave out the sections"
            " that need them with --sections."
        )


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    check_requirements(arguments.sections)
    command = shlex.join(["python", "-m", "benchmarks", *(argv or sys.argv[1:])])
    machine_before = report.load_average()

    def scaled(calls: int) -> int:
        return max(1, round(calls * arguments.scale))

    # The sections import flask-redis: only now that it is known to be there.
    from . import (
        app_load,
        async_views,
        dispatch,
        frozen,
        recording,
        round_trips,
        sentinel_apps,
    )

    socket_dir = tempfile.mkdtemp(prefix="flask-and-redis-benchmark-")
    results: dict[str, object] = {}
    try:
        server = RedisServer(
            port=free_port(), unix_socket=os.path.join(socket_dir, "redis.sock")
        )
        with server:
            transports = [
                round_trips.Transport(
                    "TCP",
                    f"redis://{server.host}:{server.port}/0",
                    {"host": server.host, "port": server.port},
                ),
                round_trips.Transport(
                    "unix socket",
                    f"unix://{server.unix_socket}?db=0",
                    {"unix_socket_path": server.unix_socket},
                ),
            ]
            server_version = report.server_version(server)
            if "dispatch" in arguments.sections:
                calls = scaled(100_000)
                progress(f"dispatch: {arguments.rounds} rounds of 3 x {calls} calls")
                results["dispatch"] = dispatch.run(arguments.rounds, calls)
            if "recording" in arguments.sections:
                calls = scaled(1_000)
                progress(
                    f"recording: {arguments.rounds} rounds of {recording.BATCHES}"
                    f" x {calls} calls"
                )
                results["recording"] = recording.run(arguments.rounds, calls)
            if "round-trips" in arguments.sections:
                calls = scaled(300)
                progress(f"round trips: {arguments.rounds} rounds of {calls} calls")
                results["round-trips"] = round_trips.run_round_trips(
                    transports, arguments.rounds, calls
                )
            if "hiredis" in arguments.sections:
                calls = scaled(300)
                progress(f"hiredis: {arguments.rounds} rounds of {calls} calls")
                results["hiredis"] = round_trips.run_hiredis(
                    transports, arguments.rounds, calls
                )
            if "async-views" in arguments.sections:
                requests = scaled(100)
                progress(f"async views: {arguments.rounds} rounds of 4 x {requests}")
                results["async-views"] = async_views.run(
                    transports[0].url, arguments.rounds, requests, arguments.scale
                )
            if "app" in arguments.sections:
                progress(
                    f"app: {arguments.app_rounds} rounds of"
                    f" {arguments.app_seconds:g} s per endpoint"
                )
                results["app"] = app_load.run(
                    server.host,
                    server.port,
                    rounds=arguments.app_rounds,
                    seconds=arguments.app_seconds,
                    connections=arguments.connections,
                    max_requests=arguments.max_requests,
                    generator=arguments.load_generator,
                    warm_up=not arguments.smoke,
                )
            if "frozen" in arguments.sections:
                progress(
                    "frozen: requests on a frozen server, redis-py's for up to"
                    f" {arguments.frozen_cap:g} s"
                )
                results["frozen"] = frozen.run(cap=arguments.frozen_cap)
            if "sentinel-apps" in arguments.sections:
                progress(
                    f"sentinel apps: a Sentinel group, 2 loops of {arguments.apps} apps"
                )
                results["sentinel-apps"] = sentinel_apps.run(arguments.apps)
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)
    text, all_met = report.render(
        results,
        command=command,
        server_version=server_version,
        load_before=machine_before,
        load_after=report.load_average(),
    )
    print(text)
    if arguments.output is not None:
        arguments.output.write_text(text + "\n")
        progress(f"report written to {arguments.output}")
    return 1 if arguments.check and not all_met else 0
