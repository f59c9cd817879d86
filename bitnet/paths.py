"""Where the package's own files live, and which model file a call means (a leaf module: the engine, the CLI, the
C ABI and the browser build take it from here, not from the package's __init__)."""
from __future__ import annotations

import os
from pathlib import Path

from bitnet import settings

DATA_DIR = Path(__file__).resolve().parent / "data"


def default_model_path() -> Path:
    """Where the embedded default model lives inside the installed package."""
    return DATA_DIR / "bitnet-tiny.gguf"


def model_path(path: str | os.PathLike | None) -> Path:
    """The model file a call means: `path`, else $BITNET_GGUF, else the embedded model; checked to be a file, with
    an error naming where the path came from (a folder gets the hint to convert it)."""
    from bitnet.errors import ModelError

    if path is not None:
        where = ""
    elif settings.model_file() is not None:
        path, where = settings.model_file(), "BITNET_GGUF="
    else:
        path = default_model_path()
        if not path.is_file():
            raise ModelError(f"no model given and the embedded default model is missing from this installation "
                             f"({path})")
        return path
    path = Path(path)
    if path.is_dir():
        raise ModelError(f"{where}{path} is a directory, not a GGUF file (to convert a Hugging Face checkpoint: "
                         f"bitnet convert {path})")
    if not path.is_file():
        raise FileNotFoundError(f"{where}{path}: model file not found")
    return path


__all__ = ["DATA_DIR", "default_model_path", "model_path"]
