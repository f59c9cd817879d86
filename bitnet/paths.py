"""Where the package's own files live (a leaf module: the engine, the CLI and the browser build take the default
model's path from here, not from the package's __init__)."""
from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"


def default_model_path() -> Path:
    """Where the embedded default model lives inside the installed package."""
    return DATA_DIR / "bitnet-tiny.gguf"


__all__ = ["DATA_DIR", "default_model_path"]
