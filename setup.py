import os

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

MODULE = "flask_and_redis.py"
STUB = os.path.join("flask_and_redis-stubs", "__init__.pyi")


class BuildPyWithStubs(build_py):
    """Also install the module as the stub-only package flask_and_redis-stubs.

    PEP 561's py.typed marker exists only for packages: mypy skips an
    installed single module ("missing library stubs or py.typed marker"), but
    reads a stub package. The stub is the module itself, so it cannot drift.
    """

    def run(self) -> None:
        super().run()
        if not self.editable_mode:  # an editable install links it instead
            self.mkpath(os.path.dirname(self._stub))
            self.copy_file(MODULE, self._stub)

    @property
    def _stub(self) -> str:
        return os.path.join(self.build_lib, STUB)

    # What an editable install reads to know the files and their sources.
    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), self._stub]

    def get_output_mapping(self) -> dict[str, str]:
        return {**super().get_output_mapping(), self._stub: MODULE}


class StrictEditableWheel(editable_wheel):
    """``pip install -e .`` makes a strict editable install unless told
    otherwise (``--config-settings editable_mode=lenient``).

    The default, lenient mode, finds the module through an import hook, which
    mypy cannot follow, and leaves the stub package out. A strict install
    puts a directory on ``sys.path`` holding links to the module and to it
    as the stub package, so a user's program type-checks as after a normal
    install, and edits to the checkout still take effect at once.
    """

    def finalize_options(self) -> None:
        if not self.mode:
            self.mode = "strict"
        super().finalize_options()


setup(cmdclass={"build_py": BuildPyWithStubs, "editable_wheel": StrictEditableWheel})
