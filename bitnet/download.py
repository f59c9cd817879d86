"""Fetch a GGUF model (and its tokenizer files) from the Hugging Face Hub or a mirror of it.

Everything goes through `huggingface_hub` (the `download` extra), so its cache, `HF_ENDPOINT`, `HF_TOKEN`,
`HF_HOME`/`HF_HUB_CACHE` and offline mode (`HF_HUB_OFFLINE=1`) behave as in every other tool that uses it.

    from bitnet.download import download
    model_path = download("microsoft/bitnet-b1.58-2B-4T-gguf").model
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from bitnet.errors import BitNetError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
PREFERRED_MARK = "i2_s"   # the official BitNet GGUF layout; preferred when a repository holds several GGUFs


class DownloadError(BitNetError):
    """A model could not be fetched: unknown repository or file, no access, no network and nothing cached."""


@dataclass
class Downloaded:
    model: Path                                            # the GGUF file, ready for bitnet.load()
    extras: list[Path] = field(default_factory=list)       # tokenizer files found next to it
    repo_id: str = ""
    filename: str = ""


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise DownloadError("downloading needs huggingface_hub: pip install 'bitnet-engine[download]'") from None
    return huggingface_hub


def _offline() -> bool:
    from huggingface_hub import constants

    check = getattr(constants, "is_offline_mode", None)
    return bool(check()) if check is not None else bool(constants.HF_HUB_OFFLINE)


def choose_gguf(files: list[str], repo_id: str) -> str:
    """The GGUF to fetch when none was named: the only one, else the only I2_S one, else ask."""
    ggufs = sorted(f for f in files if f.lower().endswith(".gguf"))
    if not ggufs:
        shown = ", ".join(sorted(files)[:10]) or "none"
        raise DownloadError(f"{repo_id} has no .gguf file (files: {shown}); to convert a Hugging Face "
                            "checkpoint, download it and run 'bitnet convert'")
    if len(ggufs) == 1:
        return ggufs[0]
    preferred = [f for f in ggufs if PREFERRED_MARK in PurePosixPath(f).name.lower()]
    if len(preferred) == 1:
        return preferred[0]
    raise DownloadError(f"{repo_id} has several GGUF files ({', '.join(ggufs)}): choose one with --file")


def _explain(exc: Exception, repo_id: str, filename: str | None, revision: str | None) -> DownloadError:
    """One clear sentence for each way the hub can say no."""
    from huggingface_hub import utils as hf

    what = f"{filename} from {repo_id}" if filename else repo_id
    rev = f" at revision {revision!r}" if revision else ""
    if isinstance(exc, _unreachable_errors()):
        from huggingface_hub import constants

        return DownloadError(f"cannot reach the Hugging Face Hub ({constants.ENDPOINT}: {exc}) and {what}{rev} is "
                             "not in the cache; to run a model file you already have: bitnet run --model "
                             "FILE.gguf (or set BITNET_GGUF=FILE.gguf)")
    if isinstance(exc, hf.HFValidationError):
        return DownloadError(f"invalid repository id {repo_id!r}: {str(exc).splitlines()[0]}")
    if isinstance(exc, hf.GatedRepoError):
        return DownloadError(f"{repo_id} is gated: accept its terms on the hub and set HF_TOKEN")
    if isinstance(exc, hf.RepositoryNotFoundError):
        return DownloadError(f"repository {repo_id} not found (if it is private or gated, set HF_TOKEN)")
    if isinstance(exc, hf.RevisionNotFoundError):
        return DownloadError(f"revision {revision!r} not found in {repo_id}")
    if isinstance(exc, hf.LocalEntryNotFoundError):
        if _offline():
            return DownloadError(f"offline mode (HF_HUB_OFFLINE) is on and {what}{rev} is not in the cache")
        return DownloadError(f"cannot reach the hub for {what}{rev}, and it is not in the cache")
    if isinstance(exc, hf.EntryNotFoundError):
        return DownloadError(f"{repo_id}{rev} has no file {filename!r}")
    if isinstance(exc, hf.OfflineModeIsEnabled):
        return DownloadError(f"offline mode (HF_HUB_OFFLINE) is on: cannot list the files of {repo_id}; "
                             "name the file with --file to use the cache")
    if isinstance(exc, hf.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        return DownloadError(f"the hub refused {what}{rev} (HTTP {status}): {first}")
    return DownloadError(f"download of {what}{rev} failed: {type(exc).__name__}: {exc}")


def _unreachable_errors() -> tuple[type[BaseException], ...]:
    """What a client library raises when the hub cannot be reached at all (no network, DNS, refused, timeout)."""
    errors: list[type[BaseException]] = [ConnectionError]
    try:
        import httpx  # huggingface_hub >= 1.0

        errors.append(httpx.TransportError)
    except ImportError:
        pass
    try:
        import requests  # huggingface_hub < 1.0

        errors += [requests.ConnectionError, requests.Timeout]
    except ImportError:
        pass
    return tuple(errors)


def _list_files(repo_id: str, revision: str | None, token: str | None, local_dir: Path | None,
                cache_only: bool) -> list[str]:
    hub = _hub()
    if not cache_only:
        return hub.HfApi().list_repo_files(repo_id, revision=revision, token=token)
    # Offline: what the cache (or --dir) already holds of this repository.
    folder = Path(hub.snapshot_download(repo_id, revision=revision, local_dir=local_dir, local_files_only=True,
                                       allow_patterns=["*.gguf", *TOKENIZER_FILES]))
    return [p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if p.is_file() and ".cache" not in p.relative_to(folder).parts]


def download(repo_id: str, filename: str | None = None, *, local_dir: str | os.PathLike | None = None,
             revision: str | None = None, token: str | None = None, tokenizer: bool = True,
             progress: bool | None = None) -> Downloaded:
    """Fetch one GGUF file (chosen automatically when `filename` is None) and, with `tokenizer`, the
    tokenizer files next to it. Files land in the hub cache, or in `local_dir` when given; nothing is
    re-downloaded when the cached copy is current. `progress=None` shows bars only on a terminal."""
    hub = _hub()
    from huggingface_hub import utils as hf

    local = Path(local_dir) if local_dir is not None else None
    if progress is None:
        progress = sys.stderr.isatty()
    was_disabled = hf.are_progress_bars_disabled()
    if not progress and not was_disabled:
        hf.disable_progress_bars()
    cache_only = _offline()
    unreachable = None
    try:
        listing = None
        if not cache_only:
            # One request without retries says whether the hub answers at all: the file downloads below retry
            # a dead connection for ~25 s, printing warnings as they go.
            try:
                listing = _list_files(repo_id, revision, token, local, cache_only)
            except _unreachable_errors() as e:
                unreachable, cache_only = e, True
        if filename is None:
            listing = listing if listing is not None else _list_files(repo_id, revision, token, local, cache_only)
            filename = choose_gguf(listing, repo_id)
        path = Path(hub.hf_hub_download(repo_id, filename, revision=revision, local_dir=local, token=token,
                                        local_files_only=cache_only))
        extras = []
        if tokenizer:
            folder = PurePosixPath(filename).parent
            for name in TOKENIZER_FILES:
                wanted = (folder / name).as_posix()
                if listing is not None and wanted not in listing:
                    continue
                try:
                    extras.append(Path(hub.hf_hub_download(repo_id, wanted, revision=revision, local_dir=local,
                                                           token=token, local_files_only=cache_only)))
                except hf.EntryNotFoundError:   # also LocalEntryNotFoundError: optional files
                    continue
                except hf.HfHubHTTPError as e:    # a mirror that answers a bare 404
                    if getattr(getattr(e, "response", None), "status_code", None) != 404:
                        raise
    except DownloadError:
        raise
    except (hf.HfHubHTTPError, hf.EntryNotFoundError, hf.HFValidationError, hf.OfflineModeIsEnabled,
            OSError, *_unreachable_errors()) as e:
        raise _explain(unreachable or e, repo_id, filename, revision) from e
    finally:
        if not progress and not was_disabled:
            hf.enable_progress_bars()
    _check_gguf(path, repo_id, filename)
    return Downloaded(model=path, extras=extras, repo_id=repo_id, filename=filename)


def _check_gguf(path: Path, repo_id: str, filename: str) -> None:
    from bitnet.errors import GGUFError
    from bitnet.gguf import GGUFReader

    try:
        GGUFReader(path).close()
    except GGUFError as e:
        raise DownloadError(f"{filename} from {repo_id} is not a usable GGUF file: {e}") from None


__all__ = ["TOKENIZER_FILES", "DownloadError", "Downloaded", "choose_gguf", "download"]
