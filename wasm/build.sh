#!/usr/bin/env bash
# Build the browser (Pyodide) version into wasm/dist/: the WebAssembly wheel, the page and the Pyodide runtime.
# Offline once wasm/node_modules exists (npm ci fetches the npm packages pinned in package-lock.json).
# Needs: emscripten (Debian: apt-get install emscripten), node/npm, CPython 3.13 headers, and the project's
# Python build requirements (cython, numpy, setuptools) in the current Python.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d node_modules/pyodide ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
# Debian's emscripten finds its node modules (acorn, ...) through NODE_PATH.
export NODE_PATH="${NODE_PATH:-/usr/share/nodejs}"
exec "${PYTHON:-python}" build.py "$@"
