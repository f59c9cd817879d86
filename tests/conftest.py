"""Shared test fixtures: where the reference vectors live, a cache of the suite's own, the rule on skips.

The tests are in folders by tier: unit/ (the library in-process), integration/ (the CLI, HTTP, the C ABI, the
browser, a Ray cluster, the wheels), hardening/ (fuzzing, sanitizers, the server soak); helpers/ holds what
several of them share (on sys.path from here). Markers (pyproject.toml): slow, browser, cluster, gpu; the
README's test command runs everything, `pytest -m "not slow"` is the quick loop.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent / "helpers"))
# The reference vectors (from bitnet.cpp) carried by the repository: see tests/data/reference/README.md.
TESTDATA = PROJECT_ROOT / "tests" / "data" / "reference"

# The suite never reads or writes the user's cache (the measured kernel choice lives there): every test, and
# every process a test starts, sees a cache directory of the suite's own.
_CACHE = tempfile.TemporaryDirectory(prefix="bitnet-test-cache-")
os.environ["BITNET_CACHE_DIR"] = _CACHE.name
# Settings that change which model loads, whether a fallback is an error, and how many threads run: the tests
# that need them set them; a developer's own must not change what the rest see.
for _name in ("BITNET_GGUF", "BITNET_STRICT_MODE", "OMP_NUM_THREADS"):
    os.environ.pop(_name, None)


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a process a test starts as a user would: no BITNET_* setting of the developer's, but
    the suite's own cache directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITNET_") or k == "BITNET_CACHE_DIR"}
    env.update(extra)
    return env


# The one reason a CI run may skip a test (BITNET_STRICT_SKIPS=1, set by .ci/run): hardware this machine does not
# have, a GPU or a CPU feature. Every other skip (a missing tool, package or file) fails the run there.
HARDWARE = "hardware: "


def skip_for_hardware(reason: str) -> None:
    pytest.skip(HARDWARE + reason)


def _enforce_allowed_skip(report) -> None:
    if not (report.skipped and os.environ.get("BITNET_STRICT_SKIPS") == "1") or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if not reason.removeprefix("Skipped: ").startswith(HARDWARE):
        report.outcome = "failed"
        report.longrepr = f"skipped for a reason CI does not allow (BITNET_STRICT_SKIPS=1): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    _enforce_allowed_skip((yield).get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A whole module skipped at import (a module-level importorskip) is held to the same rule."""
    _enforce_allowed_skip((yield).get_result())


def pytest_collection_modifyitems(items):
    """The browser build's tests (everything on the built wasm/dist) are slow: the build takes a while."""
    for item in items:
        if "wasm_dist" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)


def testdata_path(*parts: str) -> Path:
    """Path inside the reference vectors; a missing file is an error, never a skip."""
    path = TESTDATA.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"reference vector {path} is missing from the repository (tests/data/reference)")
    return path


testdata_path.__test__ = False   # a helper, not a test, despite its name


@pytest.fixture
def tinya_dir() -> Path:
    return testdata_path("tinyA")


@pytest.fixture(scope="session")
def small_model_path() -> Path:
    """A small real model for end-to-end tests: the embedded default model."""
    from bitnet import default_model_path

    return default_model_path()
