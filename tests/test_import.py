"""The module without redis-py, and the module copied alone into a project."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import flask_and_redis

from servers import RedisServer

# Makes "import redis" fail in the child process, as if redis-py were not
# installed, while leaving every other package importable.
HIDE_REDIS = textwrap.dedent(
    """
    import sys

    class HideRedis:
        def find_spec(self, name, path=None, target=None):
            if name == "redis" or name.startswith("redis."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, HideRedis())
    """
)


def run_python(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_import_without_redis_py_and_a_custom_provider() -> None:
    code = HIDE_REDIS + textwrap.dedent(
        """
        from flask import Flask
        import flask_and_redis

        class Memory:
            def __init__(self, **kwargs):
                self.data = {}
            def set(self, name, value):
                self.data[name] = value
            def get(self, name):
                return self.data.get(name)

        assert "redis" not in sys.modules
        app = Flask("app")
        redis = flask_and_redis.Redis.from_custom_provider(Memory, app)
        redis.set("key", "value")
        print(redis.get("key"))
        """
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "value\n"


def test_default_class_without_redis_py_says_to_install_it() -> None:
    code = HIDE_REDIS + textwrap.dedent(
        """
        from flask import Flask
        from flask_and_redis import Redis

        try:
            Redis(Flask("app"))
        except ImportError as error:
            print(error)
        """
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert "pip install redis" in result.stdout


def test_vendored_copy_works_on_its_own(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(flask_and_redis.__file__, project / "flask_and_redis.py")
    code = textwrap.dedent(
        f"""
        from flask import Flask
        import flask_and_redis

        app = Flask("vendored")
        app.config["REDIS_URL"] = {redis_server.url(db=11)!r}
        redis = flask_and_redis.Redis(app)
        redis.set("vendored", "yes")
        print(flask_and_redis.__file__)
        print(redis.get("vendored").decode())
        redis.connection.delete("vendored")
        redis.connection.close()
        """
    )
    result = run_python(code, cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(project / "flask_and_redis.py"), "yes"]
