"""Type checking a user's program: calls through the extension are checked
against redis-py's signatures, vendored, installed from the wheel and installed
in editable mode alike."""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

import flask_and_redis

pytest.importorskip("mypy", reason="the typing tests run mypy (the dev extra)")

ROOT = Path(flask_and_redis.__file__).parent

USER_PROGRAM = textwrap.dedent(
    """
    from fakeredis import FakeRedis
    from flask import Flask
    from redis import Redis as Client
    from redis.asyncio import Redis as AsyncClient
    from typing_extensions import assert_type

    from flask_and_redis import Redis

    app = Flask(__name__)
    redis = Redis(app)
    cache: Redis[AsyncClient] = Redis(app, config_prefix="CACHE")
    fake = Redis.from_custom_provider(FakeRedis)

    assert_type(redis.get("greeting"), bytes | str | None)
    assert_type(redis.connection, Client)
    assert_type(cache.connection, AsyncClient)
    assert_type(fake.connection, FakeRedis)
    with redis.pipeline() as pipe:
        pipe.set("greeting", "hello", ex=60)
    redis.expire("greeting", time="soon")  # line 21: the deliberate error
    redis.gett("greeting")  # line 22: a typo
    """
)
EXPECTED_ERRORS = [
    'user.py:21: error: Argument "time" to "expire" of "BasicKeyCommands" has'
    ' incompatible type "str"; expected "int | timedelta"  [arg-type]',
    'user.py:22: error: "flask_and_redis.Redis[redis.client.Redis]" has no'
    ' attribute "gett"  [attr-defined]',
]


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mypy-cache")


def mypy(
    project: Path, cache: Path, python: str = sys.executable
) -> subprocess.CompletedProcess[str]:
    (project / "user.py").write_text(USER_PROGRAM)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(cache),
            "--python-executable",
            python,
            "user.py",
        ],
        cwd=project,
        env={**os.environ, "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if ": error: " in line]


def test_a_vendored_copy_is_type_checked(tmp_path: Path, mypy_cache: Path) -> None:
    shutil.copy(ROOT / "flask_and_redis.py", tmp_path)

    result = mypy(tmp_path, mypy_cache)

    assert errors(result) == EXPECTED_ERRORS, result.stdout + result.stderr


def copy_of_the_source(directory: Path) -> Path:
    """What ``pip install`` needs of this checkout, copied into *directory*."""
    directory.mkdir(exist_ok=True)
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "flask_and_redis.py"):
        shutil.copy(ROOT / name, directory)
    for name in ("README.rst", "LICENSE"):  # setup.cfg names them
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, directory)
        else:
            (directory / name).write_text("")
    return directory


def new_venv(directory: Path) -> Path:
    """A virtual environment in *directory*, with the test environment's
    packages (flask, redis, pip, setuptools, …) after its own; return its
    Python.

    ``venv --system-site-packages`` would not do: from a test environment
    that is itself a venv, it sees the base interpreter's packages instead.
    """
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(directory)],
        timeout=120,
        check=True,
    )
    python = directory / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    # The directories listed in a .pth file go on sys.path, but the .pth files
    # in them are not read: the test environment's own (editable) install of
    # this project stays out of sight.
    (site_packages(python) / "test-environment.pth").write_text(
        "".join(f"{path}\n" for path in site.getsitepackages())
    )
    return python


def site_packages(python: Path) -> Path:
    return Path(
        subprocess.run(
            [
                str(python),
                "-c",
                "import sysconfig; print(sysconfig.get_path('purelib'))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )


def module_file(python: Path, cwd: Path) -> Path:
    """Where *python* imports flask_and_redis from, run in *cwd*."""
    found = subprocess.run(
        [str(python), "-c", "import flask_and_redis as m; print(m.__file__)"],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=True,
    ).stdout.strip()
    return Path(found)


@pytest.fixture(scope="module")
def installed_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with the wheel built from this checkout."""
    source = copy_of_the_source(tmp_path_factory.mktemp("source"))
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["--quiet", "--wheel-dir", str(wheels), str(source)],
        capture_output=True,
        timeout=300,
        check=True,
    )
    python = new_venv(tmp_path_factory.mktemp("venv"))
    (wheel,) = wheels.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:  # a pure wheel installs by unpacking
        archive.extractall(site_packages(python))
    return python


def test_the_installed_module_is_type_checked(
    tmp_path: Path, mypy_cache: Path, installed_python: Path
) -> None:
    assert module_file(installed_python, tmp_path).parent != ROOT

    result = mypy(tmp_path, mypy_cache, python=str(installed_python))

    assert errors(result) == EXPECTED_ERRORS, result.stdout + result.stderr


def test_an_editable_install_is_type_checked(tmp_path: Path, mypy_cache: Path) -> None:
    # pip install -e ., as the README says, from a checkout elsewhere.
    checkout = copy_of_the_source(tmp_path / "checkout")
    python = new_venv(tmp_path / "venv")
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "--quiet", "--editable", str(checkout)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    program = tmp_path / "program"
    program.mkdir()
    assert module_file(python, program).resolve() == checkout / "flask_and_redis.py"

    result = mypy(program, mypy_cache, python=str(python))

    assert errors(result) == EXPECTED_ERRORS, result.stdout + result.stderr


def test_without_its_stub_package_mypy_skips_the_installed_module(
    tmp_path: Path, mypy_cache: Path, installed_python: Path
) -> None:
    # Why the wheel carries flask_and_redis-stubs: PEP 561 has no py.typed
    # marker for a single module.
    stubs = next(installed_python.parent.parent.rglob("flask_and_redis-stubs"))
    aside = tmp_path / "aside"
    stubs.rename(aside)
    try:
        result = mypy(tmp_path, mypy_cache, python=str(installed_python))
    finally:
        aside.rename(stubs)

    assert re.search(
        r'Skipping analyzing "flask_and_redis": module is installed, but missing'
        r" library stubs or py.typed marker",
        result.stdout,
    ), result.stdout
