"""Where libbitnet (the C ABI of include/bitnet.h) and its header live, and the compiler flags to use them.

    cc app.c $(python -m bitnet.capi --cflags --libs)      # or: python -m bitnet.capi --write-pc DIR; pkg-config

The library is built into this package (`bitnet/capi/libbitnet.so`) by `pip install .` (capi/setup_hook.py,
capi/build_library.py).
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from bitnet._version import __version__
from bitnet.capi._libpython import NoSharedLibpython, shared_libpython

PACKAGE_DIR = Path(__file__).resolve().parent
HEADER_NAME = "bitnet.h"


def library_name() -> str:
    if sys.platform == "darwin":
        return "libbitnet.dylib"
    return "libbitnet.so"


def library_path() -> Path:
    """The path of libbitnet inside this installation (it may not be built: see `require_library`)."""
    return PACKAGE_DIR / library_name()


def include_dir() -> Path:
    """The folder holding bitnet.h: inside the installed package, or include/ of a source checkout."""
    installed = PACKAGE_DIR / "include"
    if (installed / HEADER_NAME).is_file():
        return installed
    return PACKAGE_DIR.parents[1] / "include"


class CAPIUnavailableError(RuntimeError):
    """libbitnet or its header is not part of this installation."""


def require_library() -> Path:
    lib = library_path()
    if not lib.is_file():
        raise CAPIUnavailableError(
            f"{lib} is not built: reinstall the package with a C compiler and a shared libpython "
            "(`pip install .`), or build it in a checkout with `python capi/build_library.py`")
    if not (include_dir() / HEADER_NAME).is_file():
        raise CAPIUnavailableError(f"{HEADER_NAME} is missing from {include_dir()}")
    return lib


def cflags() -> list[str]:
    require_library()
    return [f"-I{include_dir()}"]


def libs() -> list[str]:
    """Linker flags, with rpaths so that programs run without LD_LIBRARY_PATH: libbitnet, and the shared
    libpython it embeds (a manylinux wheel's libbitnet does not link it itself: auditwheel removes that link)."""
    libdir = require_library().parent
    return [f"-L{libdir}", f"-Wl,-rpath,{libdir}", "-lbitnet", *libpython_flags()]


def libpython_flags() -> list[str]:
    try:
        folder, name = shared_libpython()
    except NoSharedLibpython as exc:
        raise CAPIUnavailableError(str(exc)) from None
    return [f"-L{folder}", f"-Wl,-rpath,{folder}", f"-l{name}"]


def pkg_config() -> str:
    """The text of a bitnet.pc file describing this installation, for pkg-config."""
    libdir = require_library().parent
    python = " ".join(libpython_flags())
    return (f"libdir={libdir}\n"
            f"includedir={include_dir()}\n"
            "\n"
            "Name: bitnet\n"
            "Description: C API of the bitnet inference engine for BitNet b1.58 ternary LLMs\n"
            f"Version: {__version__}\n"
            "Cflags: -I${includedir}\n"
            f"Libs: -L${{libdir}} -Wl,-rpath,${{libdir}} -lbitnet {python}\n")


def join(flags: list[str]) -> str:
    return " ".join(shlex.quote(f) for f in flags)


__all__ = [
    "CAPIUnavailableError",
    "cflags",
    "include_dir",
    "join",
    "library_path",
    "libs",
    "pkg_config",
    "require_library",
]
