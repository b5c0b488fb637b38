"""The benchmark command (python -m benchmarks) runs end to end.

With tiny counts (--smoke): the figures mean nothing and none is checked; the
tests check that every section runs against real servers and that the report
is valid reST holding every table and target.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import docutils.core
import docutils.utils

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = [
    "Dispatch, no network",
    "Recording commands, no network",
    "Round trips",
    "A Flask app under load",
    "hiredis",
    "A frozen server",
    "Sentinel apps made and dropped",
    "Async views",
]


def run_benchmarks(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def parse_rest(text: str) -> None:
    """Raise on any reST warning or error."""
    docutils.core.publish_doctree(
        text, settings_overrides={"halt_level": 2, "report_level": 2}
    )


def test_every_section_runs_and_reports_every_target() -> None:
    result = run_benchmarks("--check")
    report = result.stdout

    assert result.stderr.count("[benchmarks") == len(SECTIONS), result.stderr
    for heading in [*SECTIONS, "Targets"]:
        assert f"\n{heading}\n" in report
    for field in ("CPU", "Python", "Packages", "Server", "Command"):
        assert f":{field}: " in report
    assert ":Command: ``python -m benchmarks --smoke --check``" in report
    targets = report.split("\nTargets\n")[1]
    # 3 dispatch targets, 2 recording, 2 transports x 3 round trips, 1 app
    # throughput, 2 configs x (2 commands + 1 counter) on a frozen server, 3
    # Sentinel apps, 3 of async views.
    assert targets.count("\n     - met") + targets.count("\n     - MISSED") == 24
    assert result.returncode == (1 if "MISSED" in targets else 0), result.stderr
    parse_rest(report)


def test_hiredis_is_turned_off_for_the_comparison() -> None:
    report = run_benchmarks("--sections=hiredis").stdout

    assert "with hiredis (reply parser and command packer: _HiredisParser," in report
    assert "without it (_RESP3Parser, PythonRespSerializer" in report


def test_the_python_load_generator_drives_the_app(tmp_path: Path) -> None:
    output = tmp_path / "report.rst"
    result = run_benchmarks(
        "--sections=app", "--load-generator=python", f"--output={output}"
    )

    assert result.returncode == 0, result.stderr
    assert "driven by Python http.client" in result.stdout
    assert output.read_text() == result.stdout
    parse_rest(result.stdout)


def test_unknown_sections_are_refused() -> None:
    result = run_benchmarks("--sections=dispatch,nonsense")

    assert result.returncode == 2
    assert "unknown sections ['nonsense']" in result.stderr
