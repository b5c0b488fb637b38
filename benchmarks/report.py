"""The report: reST tables of the results, the machine, and the targets."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sysconfig
import typing as t

from .timing import Spread
from servers import RedisServer

# -- The machine


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def cpu_model() -> str:
    model, virtual = "", False
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                name, _, value = line.partition(":")
                if name.strip() == "model name" and not model:
                    model = value.strip()
                elif name.strip() == "flags":
                    virtual = "hypervisor" in value.split()
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    cores = os.cpu_count()
    return f"{model}, {cores} cores" + (" (virtual machine)" if virtual else "")


def python_build() -> str:
    configure = str(sysconfig.get_config_var("CONFIG_ARGS") or "")
    optimisations = [
        name
        for flag, name in (("--enable-optimizations", "PGO"), ("--with-lto", "LTO"))
        if flag in configure
    ]
    built = (
        f"built with {' and '.join(optimisations)}"
        if optimisations
        else "built without PGO or LTO"
    )
    return (
        f"{platform.python_implementation()} {platform.python_version()},"
        f" {built}, {platform.python_compiler()}"
    )


def package_versions() -> str:
    shown = []
    for distribution, name in (
        ("redis", "redis-py"),
        ("hiredis", "hiredis"),
        ("flask", "Flask"),
        ("werkzeug", "Werkzeug"),
        ("flask-redis", "flask-redis"),
        ("gunicorn", "gunicorn"),
    ):
        try:
            shown.append(f"{name} {importlib.metadata.version(distribution)}")
        except importlib.metadata.PackageNotFoundError:
            shown.append(f"{name} not installed")
    return ", ".join(shown)


def server_version(server: RedisServer) -> str:
    with server.client() as client:
        info = client.info("server")
    name = str(info.get("server_name") or "redis").capitalize()
    return f"{name} {info.get('valkey_version') or info['redis_version']}"


# -- Formatting


def _ratio(spread: Spread) -> str:
    return f"{spread.median:.3f} ({spread.low:.3f}–{spread.high:.3f})"


def _number(spread: Spread, digits: int) -> str:
    half_range = (spread.high - spread.low) / 2
    return f"{spread.median:,.{digits}f} ± {half_range:,.{digits}f}"


def _rounds(count: int) -> str:
    return f"{count} interleaved round{'s' if count != 1 else ''}"


def _table(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [f".. list-table:: {title}", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        for index, cell in enumerate(row):
            lines.append(f"   {'*' if index == 0 else ' '} - {cell}".rstrip())
    return [*lines, ""]


class Target(t.NamedTuple):
    description: str
    measured: str
    met: bool


# -- The sections


def _dispatch(result: t.Any, targets: list[Target]) -> list[str]:
    from .dispatch import TARGETS, VARIANTS

    nanoseconds = result.nanoseconds
    direct = nanoseconds["direct"].median
    rows = []
    for name, label in VARIANTS:
        added = nanoseconds[name].median - direct
        ratio = result.overhead_ratio.get(name)
        rows.append(
            [
                label,
                _number(nanoseconds[name], 0),
                "" if name == "direct" else f"{added:,.0f}",
                "1" if name == "flask_redis" else _ratio(ratio) if ratio else "",
            ]
        )
    for name, limit in TARGETS.items():
        ratio = result.overhead_ratio[name]
        label = dict(VARIANTS)[name].removeprefix("Flask-And-Redis, ")
        targets.append(
            Target(
                f"dispatch overhead, {label}: at most {limit} × flask-redis's",
                _ratio(ratio),
                ratio.median <= limit,
            )
        )
    return [
        "Dispatch, no network",
        "~~~~~~~~~~~~~~~~~~~~",
        "",
        f"A client whose ``get`` does no I/O, so only finding the method is"
        f" timed. Median of {_rounds(result.rounds)}, each the best of"
        f" 3 batches of {result.calls:,} calls, with the timing loop's own cost"
        " taken off; ± is half the interquartile range over the rounds. The"
        " last column is what the call adds over a direct one, as a fraction"
        " of what flask-redis adds, computed round by round (median and"
        " quartiles).",
        "",
        *_table(
            "Nanoseconds per ``get`` call",
            ["Call", "ns per call", "ns added", "added ÷ flask-redis's"],
            rows,
        ),
    ]


def _recording(result: t.Any, targets: list[Target]) -> list[str]:
    from .recording import BATCHES, TARGET_NS, VARIANTS

    nanoseconds = result.nanoseconds
    client = nanoseconds["client"].median
    rows = [
        [
            label,
            _number(nanoseconds[name], 0),
            "" if name == "client" else f"{nanoseconds[name].median - client:,.0f}",
            _number(result.added, 0) if name == "on" else "",
        ]
        for name, label in VARIANTS
    ]
    targets.append(
        Target(
            f"recording adds at most {TARGET_NS:,} ns per command over recording off",
            f"{result.added.median:,.0f} ns"
            f" ({result.added.low:,.0f}–{result.added.high:,.0f})",
            result.added.median <= TARGET_NS,
        )
    )
    targets.append(
        Target(
            "recording off: the client is of the configured class itself, not a"
            " recording subclass, so a call costs what it costs without the"
            " setting (measured in the dispatch section)",
            "the configured class"
            if result.off_is_configured_class
            else "a subclass of it",
            result.off_is_configured_class,
        )
    )
    return [
        "Recording commands, no network",
        "~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~",
        "",
        "The cost of ``REDIS_RECORD_COMMANDS`` per command, with a"
        " ``redis.Redis`` subclass whose ``execute_command`` returns at once:"
        " ``get`` runs redis-py's command method and, with recording on, the"
        " recording wrapper around ``execute_command``, and does no I/O. Each"
        f" call is timed in {_rounds(result.rounds)}; in each, the best of"
        f" {BATCHES} batches of {result.calls:,} calls, each batch in a fresh"
        " app context pushed before and popped after its timed loop, so the"
        " records start empty, hold at most one batch and are freed untimed;"
        " as each context is popped its records are counted, one per call with"
        " recording on and none with it off. The timing loop's own cost is"
        " taken off; ± is half the interquartile range over the rounds. The"
        " last column is recording on minus off, round by round: median ±"
        " half the interquartile range.",
        "",
        *_table(
            "Nanoseconds per ``get`` call",
            [
                "Call",
                "ns per call",
                "ns added to the client's",
                "ns added by recording",
            ],
            rows,
        ),
    ]


def _round_trips(result: t.Any, targets: list[Target]) -> list[str]:
    from .round_trips import CLIENTS, OPERATIONS, ROUND_TRIP_OPERATIONS, TARGET

    transports = list(dict.fromkeys(key[0] for key in result.microseconds))
    rows = []
    for operation in ROUND_TRIP_OPERATIONS:
        for transport in transports:
            row = [OPERATIONS[operation][0], transport]
            for name, _ in CLIENTS:
                spread = result.microseconds[transport, operation, name]
                cell = f"{spread.median:,.1f}"
                if name != "raw":
                    cell += f" (× {_ratio(result.ratio[transport, operation, name])})"
                row.append(cell)
            rows.append(row)
            ratio = result.ratio[transport, operation, "extension"]
            targets.append(
                Target(
                    f"{OPERATIONS[operation][0]} over {transport}: Flask-And-Redis"
                    f" ÷ redis-py at most {TARGET}",
                    _ratio(ratio),
                    ratio.median <= TARGET,
                )
            )
    return [
        "Round trips",
        "~~~~~~~~~~~",
        "",
        "One server, over TCP loopback and over a unix socket; the clients:"
        " redis-py as one would use it without an extension"
        " (``redis.Redis(host=…, port=…)``), the extension's own client called"
        " directly (``redis.connection``), the extension, and flask-redis with"
        " the client it builds. In each of"
        f" {_rounds(result.rounds)} they take turns call by call,"
        f" {result.calls:,} calls each (a tenth as many pipelines), and each"
        " one's median latency is kept. The table shows the median over the"
        " rounds in µs and, in brackets, the ratio to redis-py computed round"
        " by round: median (quartiles).",
        "",
        *_table(
            "Microseconds per call",
            ["Operation", "Transport", *(label for _, label in CLIENTS)],
            rows,
        ),
    ]


def _app(result: t.Any, targets: list[Target]) -> list[str]:
    from .app_load import ENDPOINTS, TARGET

    cpu = result.cpu_us_per_request
    rows = []
    for name, (label, _) in ENDPOINTS.items():
        row = [
            label,
            _number(result.requests_per_second[name], 0),
            "1" if name == "raw" else _ratio(result.throughput_ratio[name]),
            _number(result.p99_ms[name], 2),
            "1" if name == "raw" else _ratio(result.p99_ratio[name]),
        ]
        if cpu:
            row += [
                _number(cpu[name], 0),
                "1" if name == "raw" else _ratio(result.cpu_ratio[name]),
            ]
        rows.append(row)
    ratio = result.throughput_ratio["extension"]
    targets.append(
        Target(
            f"app throughput: Flask-And-Redis ÷ redis-py at least {TARGET}",
            _ratio(ratio),
            ratio.median >= TARGET,
        )
    )
    header = ["Client", "requests/s", "÷ redis-py", "p99 ms", "÷ redis-py"]
    if cpu:
        header += ["worker CPU µs per request", "÷ redis-py"]
    return [
        "A Flask app under load",
        "~~~~~~~~~~~~~~~~~~~~~~",
        "",
        "A view doing two Redis calls (``INCR``, then ``GET`` of 100 bytes),"
        f" served by {result.server} over TCP loopback, driven by"
        f" {result.generator} with {result.connections} connections for"
        f" {result.seconds:g} s per endpoint and round, the endpoints"
        f" interleaved; median of {_rounds(result.rounds)}, ± half the"
        " interquartile range; ratios to redis-py computed round by round."
        + (
            " The worker's CPU time per request (from /proc) is what the"
            " throughput would be limited by on a machine with no other work."
            if cpu
            else ""
        ),
        "",
        *_table("Requests per second and 99th percentile latency", header, rows),
    ]


def _async_views(result: t.Any, targets: list[Target]) -> list[str]:
    from .async_views import (
        RATIO_TARGET,
        SEQUENTIAL_TARGET,
        THREADS,
        THREADS_TARGET,
        VIEWS,
    )

    rows = [[label, _number(result.microseconds[name], 0)] for name, label in VIEWS]
    for kind in ("sync", "async"):
        rows.append(
            [f"Redis part, {kind} (view − no-op)", _number(result.redis_part[kind], 0)]
        )
    targets += [
        Target(
            f"async views: Redis part at most {RATIO_TARGET} × the sync views'",
            _ratio(result.ratio),
            result.ratio.median <= RATIO_TARGET,
        ),
        Target(
            f"async views: connections received over {result.sequential:,}"
            f" sequential requests at most {SEQUENTIAL_TARGET}",
            str(result.sequential_connections),
            result.sequential_connections <= SEQUENTIAL_TARGET,
        ),
        Target(
            f"async views: connections received over {THREADS} threads ×"
            f" {result.threaded} requests at most {THREADS_TARGET}",
            str(result.threaded_connections),
            result.threaded_connections <= THREADS_TARGET,
        ),
    ]
    return [
        "Async views",
        "~~~~~~~~~~~",
        "",
        "One app, Flask's test client, TCP loopback: a sync view making two"
        " calls (``INCR``, then ``GET`` of 100 bytes) through a sync prefix, an"
        " async view awaiting the same calls through a ``redis.asyncio.Redis``"
        " prefix (in the extension's event loop, see the async docs), and a"
        " no-op view of each kind. They take turns request by request,"
        f" {result.requests:,} requests each per round; median of"
        f" {_rounds(result.rounds)} in µs, ± half the interquartile range. The"
        " Redis part of a view is the view minus its no-op view; their ratio,"
        f" computed round by round, is {_ratio(result.ratio)}. The server"
        f" received {result.sequential_connections} connections over"
        f" {result.sequential:,} sequential async requests, and"
        f" {result.threaded_connections} over {THREADS} threads of"
        f" {result.threaded} (``total_connections_received``, on a new app).",
        "",
        *_table("Microseconds per request", ["View", "µs per request"], rows),
    ]


def _hiredis(result: t.Any) -> list[str]:
    from .round_trips import HIREDIS_OPERATIONS, OPERATIONS

    transports = list(dict.fromkeys(key[0] for key in result.microseconds))
    rows = []
    for operation in HIREDIS_OPERATIONS:
        for transport in transports:
            with_it = result.microseconds[transport, operation, True]
            without = result.microseconds[transport, operation, False]
            rows.append(
                [
                    OPERATIONS[operation][0],
                    transport,
                    f"{with_it.median:,.1f}",
                    f"{without.median:,.1f}",
                    f"{without.median - with_it.median:,.1f}",
                    _ratio(result.slowdown[transport, operation]),
                ]
            )
    return [
        "hiredis",
        "~~~~~~~",
        "",
        "redis-py with hiredis (reply parser and command packer:"
        f" {result.parsers[True]}) and without it ({result.parsers[False]}, what"
        " redis-py uses when hiredis is not installed): two raw clients on the"
        " same server, taking turns call by call as in the round trips above;"
        f" median of {_rounds(result.rounds)} of {result.calls:,} calls"
        " (a tenth as many pipelines, half as many ``HGETALL``), in µs.",
        "",
        *_table(
            "Microseconds per call with and without hiredis",
            [
                "Operation",
                "Transport",
                "hiredis",
                "no hiredis",
                "µs saved",
                "no hiredis ÷ hiredis",
            ],
            rows,
        ),
    ]


def _frozen(result: t.Any, targets: list[Target]) -> list[str]:
    from .frozen import CLIENTS, COMMANDS, CONFIGS

    def config_label(client: str, config: str) -> str:
        timeout = CONFIGS[config]
        if client == "extension":
            label = (
                "``REDIS_URL`` only"
                if timeout is None
                else f"``REDIS_SOCKET_TIMEOUT = {timeout:g}``"
            )
        else:
            label = (
                "``redis.Redis(host=…, port=…)``"
                if timeout is None
                else f"``redis.Redis(host=…, port=…, socket_timeout={timeout:g})``"
            )
        socket_timeout, connect_timeout = result.timeouts[client, config]
        return f"{label} (t = {socket_timeout:g} s, connect {connect_timeout:g} s)"

    rows = []
    for client, client_label in CLIENTS.items():
        for config in CONFIGS:
            for command, command_label in COMMANDS.items():
                request = result.requests[client, config, command]
                ended = f"{request.seconds:.2f} s"
                if request.cut_short:
                    ended += (
                        f", cut short: still waiting when the server resumed,"
                        f" at {result.resumed_after:.1f} s"
                    )
                rows.append(
                    [
                        client_label,
                        config_label(client, config),
                        command_label,
                        ended,
                        request.outcome,
                        "" if request.counter is None else str(request.counter),
                    ]
                )
    for config, timeout in CONFIGS.items():
        label = config_label("extension", config).partition(" (")[0]
        bound = result.bound(config)
        rule = (
            f"{bound:g} s"
            if timeout is None
            else f"2t + the connect timeout = {bound:g} s"
        )
        for command, command_label in COMMANDS.items():
            request = result.requests["extension", config, command]
            targets.append(
                Target(
                    f"frozen server, Flask-And-Redis with {label}: {command_label}"
                    f" fails within {rule}",
                    f"{request.seconds:.2f} s (one run)",
                    not request.cut_short and request.seconds <= bound,
                )
            )
        counter = result.requests["extension", config, "incr"].counter
        targets.append(
            Target(
                f"frozen server, Flask-And-Redis with {label}: ``INCR`` ran once"
                " (the counter is 1 after the server resumes)",
                f"{counter} (one run)",
                counter == 1,
            )
        )
    cut_short = any(request.cut_short for request in result.requests.values())
    return [
        "A frozen server",
        "~~~~~~~~~~~~~~~",
        "",
        "How long a request takes to fail on a server that does not answer: a"
        " server of its own, stopped with ``SIGSTOP`` while every client had an"
        " open connection to it, and resumed with ``SIGCONT``"
        f" {result.resumed_after:.1f} s later, once the Flask-And-Redis"
        " requests had ended, and redis-py's had ended or"
        f" {result.cap:g} s had passed. Every request was sent during that"
        " one freeze, at once, each from a thread and a client of its own; one"
        " run. redis-py is used as one would without an extension, with its"
        f" default retry policy ({result.retries} retries); t is the socket"
        " timeout and *connect* the connect timeout, as each client has them."
        " The counter is read once the server has resumed: an ``INCR`` sent"
        " twice leaves 2."
        + (
            " A request *cut short* had not ended when the server resumed, so"
            " its time is not how long it would have taken to fail: with its"
            f" defaults redis-py makes {result.retries + 1} attempts of t each,"
            " with a backoff between them (58.6 s in docs/reliability.rst);"
            " ``--frozen-cap 70`` waits for it."
            if cut_short
            else ""
        ),
        "",
        *_table(
            "A request on a frozen server",
            [
                "Client",
                "Config",
                "Command",
                "Ended after",
                "Ended with",
                "Counter after the server resumed",
            ],
            rows,
        ),
    ]


def _sentinel_apps(result: t.Any, targets: list[Target]) -> list[str]:
    from .sentinel_apps import LOOPS, SETTLE_SECONDS, TARGET_SECONDS_PER_300

    def counts(counted: t.Any) -> str:
        return f"{counted.before}, {counted.most}, {counted.after}"

    rows = []
    for name, label in LOOPS.items():
        churn = result.churns[name]
        rows.append(
            [
                label,
                f"{churn.seconds:.2f}",
                f"{churn.seconds / churn.apps * 1e3:.1f}",
                f"{churn.longest_drop_ms:.1f}",
                f"{churn.longest_collection_ms:.1f}",
                counts(churn.threads),
                counts(churn.fds),
                (
                    f"{churn.settled_after:.2f} s"
                    if churn.settled_after is not None
                    else f"not within {SETTLE_SECONDS:g} s"
                ),
            ]
        )
    churn = result.churns["sentinel"]
    limit = TARGET_SECONDS_PER_300 * churn.apps / 300
    targets.append(
        Target(
            f"{churn.apps} Sentinel apps made, pinged and dropped in at most"
            f" {limit:.3g} s",
            f"{churn.seconds:.2f} s (one run)",
            churn.seconds <= limit,
        )
    )
    for what, counted in (("threads", churn.threads), ("open fds", churn.fds)):
        targets.append(
            Target(
                f"Sentinel apps: {what} back to where they were within"
                f" {SETTLE_SECONDS:g} s of the loop",
                f"{counted.before} before, {counted.after} after (one run)",
                counted.after == counted.before,
            )
        )
    return [
        "Sentinel apps made and dropped",
        "~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~",
        "",
        f"{churn.apps} Flask apps made and dropped one after another, as a test"
        " suite's app factory does: each with ``REDIS_URL``, an extension, one"
        " ``ping()`` through it in an app context, then ``del`` of the app and"
        " the extension. With the Sentinel URL of a group of"
        f" {result.sentinels} sentinels, the ping starts the pool's failover"
        " watcher, a thread per sentinel; the plain URL of the group's master"
        " is the reference. The garbage collector runs as it would, and"
        " ``gc.collect()`` once after the loop. Threads"
        " (``threading.active_count()``) and open file descriptors"
        " (``/proc/self/fd``) are counted before the loop (after one app that"
        " is not counted), at their most after any app, and when both are back"
        f" or {SETTLE_SECONDS:g} s after the loop; one run of each loop.",
        "",
        *_table(
            "Apps made, pinged and dropped",
            [
                "Config",
                "seconds",
                "ms per app",
                "longest ``del``, ms",
                "longest garbage collection, ms",
                "threads: before, most, after",
                "open fds: before, most, after",
                "back after the loop",
            ],
            rows,
        ),
    ]


def render(
    results: dict[str, t.Any],
    command: str,
    server_version: str,
    load_before: float | None,
    load_after: float | None,
) -> tuple[str, bool]:
    """The report, and whether every target was met."""
    load = (
        f"{load_before:.2f} before, {load_after:.2f} after"
        if load_before is not None and load_after is not None
        else "unknown"
    )
    lines = [
        f":Command: ``{command}``",
        f":CPU: {cpu_model()}",
        f":System: {platform.system()} {platform.release()}",
        f":Python: {python_build()}",
        f":Packages: {package_versions()}",
        f":Server: {server_version}, TCP on 127.0.0.1 and a unix socket",
        f":Load average: {load}",
        "",
    ]
    targets: list[Target] = []
    if "dispatch" in results:
        lines += _dispatch(results["dispatch"], targets)
    if "recording" in results:
        lines += _recording(results["recording"], targets)
    if "round-trips" in results:
        lines += _round_trips(results["round-trips"], targets)
    if "app" in results:
        lines += _app(results["app"], targets)
    if "hiredis" in results:
        lines += _hiredis(results["hiredis"])
    if "frozen" in results:
        lines += _frozen(results["frozen"], targets)
    if "sentinel-apps" in results:
        lines += _sentinel_apps(results["sentinel-apps"], targets)
    if "async-views" in results:
        lines += _async_views(results["async-views"], targets)
    if targets:
        lines += [
            "Targets",
            "~~~~~~~",
            "",
            *_table(
                "The targets, on medians",
                ["Target", "Measured: median (quartiles)", "Result"],
                [
                    [
                        target.description,
                        target.measured,
                        "met" if target.met else "MISSED",
                    ]
                    for target in targets
                ],
            ),
        ]
    return "\n".join(lines).rstrip(), all(target.met for target in targets)
