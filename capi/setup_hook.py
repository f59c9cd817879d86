"""The build_ext that setup.py uses: it builds the extension modules, then libbitnet (capi/build_library.py).

  - regular builds (`pip install .`, wheels) put libbitnet.so and bitnet.h into the build tree as
    bitnet/capi/libbitnet.so and bitnet/capi/include/bitnet.h, so they are installed with the package;
  - in-place and editable builds (`build_ext --inplace`, `pip install -e .`) put libbitnet.so next to the
    sources (bitnet/capi/), where `python -m bitnet.capi` finds it and include/ of the checkout.
"""
from __future__ import annotations

import logging
import runpy
import shutil
import sys
from pathlib import Path

from setuptools.command.build_ext import build_ext

log = logging.getLogger("bitnet.capi.build")

_builder = runpy.run_path(str(Path(__file__).resolve().parent / "build_library.py"))
ROOT: Path = _builder["ROOT"]
HEADER: Path = _builder["HEADER"]
build_library = _builder["build_library"]
library_filename = _builder["library_filename"]
CAPIUnsupported = _builder["CAPIUnsupported"]


class CAPIBuildExt(build_ext):
    """build_ext that also builds libbitnet into the package (see the module docstring)."""

    def run(self) -> None:
        super().run()
        if sys.platform == "emscripten":   # a Pyodide build: a browser has no C programs to link libbitnet into
            return
        package_dir = (ROOT if self.inplace else Path(self.build_lib)) / "bitnet" / "capi"
        try:
            lib = build_library(package_dir, Path(self.build_temp), force=bool(self.force) or not self.inplace,
                                verbose=bool(self.verbose))
        except CAPIUnsupported as exc:
            log.warning("warning: %s", exc)
            return
        log.info("built %s", lib)
        if not self.inplace:
            include = package_dir / "include"
            include.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(HEADER, include / HEADER.name)

    def get_outputs(self) -> list[str]:
        outputs = super().get_outputs()
        if not self.inplace:
            package_dir = Path(self.build_lib) / "bitnet" / "capi"
            built = [package_dir / library_filename(), package_dir / "include" / HEADER.name]
            outputs += [str(path) for path in built if path.exists()]
        return outputs
