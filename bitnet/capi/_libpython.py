"""The shared libpython of the running interpreter, which libbitnet embeds (standard library only: the build
hook loads this file by path, before the package is built)."""
from __future__ import annotations

import sys
import sysconfig
from pathlib import Path


class NoSharedLibpython(Exception):
    """This Python has no shared libpython, or runs on a platform where libbitnet is not built."""


class UnsupportedPlatform(NoSharedLibpython):
    """libbitnet is not built on this platform at all."""


def check_platform() -> None:
    if sys.platform in ("win32", "emscripten", "wasi"):
        raise UnsupportedPlatform(f"libbitnet is not built on {sys.platform}")


def shared_libpython() -> tuple[str, str]:
    """(folder, name for -l) of the shared libpython of the running interpreter, e.g. ('/usr/lib', 'python3.11')."""
    check_platform()
    version = sysconfig.get_config_var("LDVERSION") or sysconfig.get_python_version()
    name = f"python{version}"
    suffix = ".dylib" if sys.platform == "darwin" else ".so"
    multiarch = sysconfig.get_config_var("MULTIARCH")
    candidates = [sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LIBPL")]
    if multiarch:
        candidates.append(f"/usr/lib/{multiarch}")
    for folder in filter(None, candidates):
        if Path(folder, f"lib{name}{suffix}").exists():
            return folder, name
    raise NoSharedLibpython(f"this Python ({sys.executable}) has no shared lib{name}{suffix}, which libbitnet "
                            "embeds (Debian/Ubuntu: apt install libpython3-dev; pyenv: "
                            "PYTHON_CONFIGURE_OPTS=--enable-shared)")
