"""Shared test fixtures: where the reference vectors live, and skipping cleanly without them."""
from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = PROJECT_ROOT.parent / "shared"
TESTDATA = SHARED_DIR / "testdata"


def testdata_path(*parts: str) -> Path:
    """Path inside ../shared/testdata, skipping the calling test when it is absent (a user's checkout)."""
    path = TESTDATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference vectors not available: {path} is absent (needs ../shared/testdata)")
    return path


testdata_path.__test__ = False   # a helper, not a test, despite its name


@pytest.fixture
def tinya_dir() -> Path:
    return testdata_path("tinyA")


@pytest.fixture(scope="session")
def small_model_path() -> Path:
    """A small real model for end-to-end tests: the embedded default model, or tinyA from the reference vectors
    while the embedded model is not built yet."""
    from bitnet import default_model_path

    path = default_model_path()
    return path if path.exists() else testdata_path("tinyA", "tinyA-i2s.gguf")
