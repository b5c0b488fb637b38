from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithStubs(build_py):
    """Also install the module as the stub-only package flask_and_redis-stubs.

    PEP 561's py.typed marker exists only for packages: mypy skips an
    installed single module ("missing library stubs or py.typed marker"), but
    reads a stub package. The stub is the module itself, so it cannot drift.
    """

    def run(self) -> None:
        super().run()
        stubs = Path(self.build_lib, "flask_and_redis-stubs")
        self.mkpath(str(stubs))
        self.copy_file("flask_and_redis.py", str(stubs / "__init__.pyi"))


setup(cmdclass={"build_py": BuildPyWithStubs})
