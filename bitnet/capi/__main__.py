"""python -m bitnet.capi --cflags --libs | --default-model | --pkg-config | --write-pc DIR | --library"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bitnet.capi import CAPIUnavailableError, cflags, join, library_path, libs, pkg_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bitnet.capi",
                                     description="Compiler and linker flags for programs using libbitnet.")
    parser.add_argument("--cflags", action="store_true", help="print the compiler flags (-I...)")
    parser.add_argument("--libs", action="store_true", help="print the linker flags (-L, rpath, -lbitnet)")
    parser.add_argument("--default-model", action="store_true", help="print the embedded model's path")
    parser.add_argument("--library", action="store_true", help="print the path of libbitnet")
    parser.add_argument("--pkg-config", action="store_true", help="print a bitnet.pc for this installation")
    parser.add_argument("--write-pc", metavar="DIR", type=Path, help="write DIR/bitnet.pc")
    args = parser.parse_args(argv)
    if not any((args.cflags, args.libs, args.default_model, args.library, args.pkg_config, args.write_pc)):
        parser.print_help()
        return 2
    try:
        flags = (cflags() if args.cflags else []) + (libs() if args.libs else [])
        if flags:
            print(join(flags))
        if args.library:
            print(library_path())
        if args.pkg_config:
            print(pkg_config(), end="")
        if args.write_pc:
            args.write_pc.mkdir(parents=True, exist_ok=True)
            (args.write_pc / "bitnet.pc").write_text(pkg_config())
    except CAPIUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.default_model:
        from bitnet.paths import default_model_path

        print(default_model_path())
    return 0


if __name__ == "__main__":
    sys.exit(main())
