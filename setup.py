"""Everything declarative is in pyproject.toml. This only ships build.sh -- the one copy of the simulator's
build logic, which lives at the checkout's root -- inside the data package aclnn_py._sim, beside the
sources it compiles (see aclnn_py/simbuild.py)."""
import os

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithSimScript(build_py):
    def run(self) -> None:
        super().run()
        if not getattr(self, "editable_mode", False):   # an editable install uses the checkout's build.sh
            target = os.path.join(self.build_lib, "aclnn_py", "_sim", "build.sh")
            self.copy_file("build.sh", target, preserve_mode=True)


setup(cmdclass={"build_py": BuildPyWithSimScript})
