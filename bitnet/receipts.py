"""Receipts: honest, checkable records of what a `bitnet run` / `bitnet bench` computed.

A receipt names the model file (and its SHA-256), the kernel variants that actually executed -- recorded by the
compiled kernels themselves (`bitnet.backends.cpu.kernels.ran_kernels()`), not claimed by the caller -- the
thread count, token counts, timings and throughput, the library version and the CPU's features.
`verify_receipt` checks one: schema, kernel ids that exist and fit the model's weight types and the CPU,
throughput that agrees with the recorded timings and is physically plausible, and (given the model file) that the
hash matches.

    from bitnet.receipts import make_receipt, write_receipt, verify_receipt
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

SCHEMA = "bitnet-receipt"
SCHEMA_VERSION = 1
COMMANDS = ("run", "bench")

# Generous ceiling on arithmetic per thread (multiply-adds count as 2 ops): a fast AVX-512 VNNI core peaks
# near 1e12 int8 ops/s, so a throughput needing more than 4x that is not something a CPU did.
MAX_OPS_PER_THREAD_S = 4e12
# Whatever the model size, each token passes through Python-level orchestration: >1e6 tokens/s is not real.
MAX_TOKENS_PER_S = 1e6
# Recorded tokens/s must agree with recorded tokens / seconds to this relative tolerance (rounding in JSON).
RATE_TOLERANCE = 0.01
# The kernels that compute each ternary type (i2l_: I2_S in the LUT form; on a GPU, I2_S runs as I2G in i2g_).
TERNARY_KERNEL_PREFIX = {"I2_S": ("i2s_", "i2l_"), "TQ2_0": ("tq2_",), "TQ1_0": ("tq1_",)}
CUDA_TERNARY_KERNEL_PREFIX = {"I2_S": ("i2g_",)}


def known_kernel_ids() -> frozenset[str]:
    """Every kernel id a receipt may name: '<kernel>.<variant>', e.g. 'i2s_gemv.avx2'."""
    # The compiled module's tables are the source of truth: the names the C kernels record themselves under.
    from bitnet.backends.cpu.kernels import KERNEL_NAMES, VARIANTS
    from bitnet.backends.cuda.driver import PARAMS

    return frozenset([f"{k}.{v}" for k in KERNEL_NAMES for v in VARIANTS] + [f"{k}.cuda" for k in PARAMS])


def file_sha256(path: str | os.PathLike, chunk: int = 16 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def model_facts(model: Any) -> dict[str, Any]:
    """The model part of a receipt, from a loaded `bitnet.Model` (no hash: see `make_receipt`)."""
    n_params = sum(info.n_elements for info in model.reader.tensors.values())
    return {"file": Path(model.path).name, "size_bytes": Path(model.path).stat().st_size,
            "architecture": model.arch, "n_params": int(n_params), "tensor_types": dict(model.tensor_types)}


def make_receipt(*, command: str, model: Any, sha256: str, kernels: Iterable[str], threads: int,
                 tokens_in: int, tokens_out: int, prefill_tokens: int, prefill_s: float, decode_tokens: int,
                 decode_s: float, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Assemble a receipt. `kernels` must come from `bitnet.backends.cpu.kernels.ran_kernels()` after the work ran."""
    import bitnet

    if command not in COMMANDS:
        raise ValueError(f"unknown receipt command {command!r}")
    cpu = bitnet.cpu_info()
    receipt: dict[str, Any] = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bitnet_version": bitnet.__version__,
        "model": {**model_facts(model), "sha256": sha256},
        "backend": model.device,
        "device": model.device_name,
        "kernel_variant": "cuda" if model.device == "cuda" else cpu.get("variant"),
        "kernels": sorted(set(kernels)),
        "threads": int(threads),
        "tokens_in": int(tokens_in),
        "tokens_out": int(tokens_out),
        "timings": {"prefill_tokens": int(prefill_tokens), "prefill_s": float(prefill_s),
                    "decode_tokens": int(decode_tokens), "decode_s": float(decode_s)},
        "prefill_tokens_per_s": _rate(prefill_tokens, prefill_s),
        "decode_tokens_per_s": _rate(decode_tokens, decode_s),
        "cpu": _cpu_summary(cpu),
    }
    if extra:
        receipt.update(extra)
    return receipt


def _rate(tokens: int, seconds: float) -> float:
    return tokens / seconds if seconds > 0 else 0.0


def _cpu_summary(cpu: Mapping[str, Any]) -> dict[str, Any]:
    import platform

    features = cpu.get("features") or {}
    flags = sorted(k for k, v in features.items() if v) if isinstance(features, Mapping) else list(features)
    return {"machine": platform.machine(), "processor": _cpu_model_name(), "features": flags,
            "logical_cpus": os.cpu_count(), **{k: v for k, v in cpu.items() if k != "features"}}


def _cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def write_receipt(path: str | os.PathLike, receipt: Mapping[str, Any]) -> Path:
    """Write atomically (temporary file + rename): a receipt is either whole or absent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(receipt, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_receipt(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not JSON ({e.msg} at line {e.lineno})") from None


# -- verification ----------------------------------------------------------------------------------------------
def verify_receipt(receipt: Any, model_path: str | os.PathLike | None = None,
                   now: datetime | None = None) -> list[str]:
    """Every reason the receipt cannot be trusted; an empty list means it passed."""
    if not isinstance(receipt, Mapping):
        return ["the receipt is not a JSON object"]
    problems: list[str] = []
    _check_schema(receipt, problems)
    if problems:   # the rest reads these fields; stop before tripping over a malformed one
        return problems
    _check_kernels(receipt, problems)
    _check_throughput(receipt, problems)
    _check_timestamp(receipt, problems, now or datetime.now(timezone.utc))
    if model_path is not None:
        _check_model_file(receipt, Path(model_path), problems)
    return problems


def _is_int(v: Any, low: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def _check_schema(r: Mapping[str, Any], problems: list[str]) -> None:
    if r.get("schema") != SCHEMA:
        problems.append(f"'schema' is {r.get('schema')!r}, expected {SCHEMA!r}")
    if r.get("schema_version") != SCHEMA_VERSION:
        problems.append(f"unsupported 'schema_version' {r.get('schema_version')!r} (this version reads "
                        f"{SCHEMA_VERSION})")
    if r.get("command") not in COMMANDS:
        problems.append(f"'command' is {r.get('command')!r}, expected one of {', '.join(COMMANDS)}")
    for key in ("timestamp", "bitnet_version", "backend"):
        if not isinstance(r.get(key), str) or not r.get(key):
            problems.append(f"'{key}' is missing or not a non-empty string")
    model = r.get("model")
    if not isinstance(model, Mapping):
        problems.append("'model' is missing or not an object")
    else:
        sha = model.get("sha256")
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            problems.append("'model.sha256' is not a 64-digit lowercase hex SHA-256")
        for key in ("file", "architecture"):
            if not isinstance(model.get(key), str) or not model.get(key):
                problems.append(f"'model.{key}' is missing or not a non-empty string")
        for key in ("size_bytes", "n_params"):
            if not _is_int(model.get(key), 1):
                problems.append(f"'model.{key}' is missing or not a positive integer")
        types = model.get("tensor_types")
        if not isinstance(types, Mapping) or not types or not all(_is_int(n, 1) for n in types.values()):
            problems.append("'model.tensor_types' is missing or not a non-empty map of type -> count")
    if not isinstance(r.get("kernels"), list) or not all(isinstance(k, str) for k in r.get("kernels", [])):
        problems.append("'kernels' is missing or not a list of kernel ids")
    if not _is_int(r.get("threads"), 1):
        problems.append(f"'threads' is {r.get('threads')!r}, expected a positive integer")
    for key in ("tokens_in", "tokens_out"):
        if not _is_int(r.get(key)):
            problems.append(f"'{key}' is {r.get(key)!r}, expected a non-negative integer")
    for key in ("prefill_tokens_per_s", "decode_tokens_per_s"):
        if not _is_number(r.get(key)):
            problems.append(f"'{key}' is {r.get(key)!r}, expected a finite non-negative number")
    timings = r.get("timings")
    if not isinstance(timings, Mapping):
        problems.append("'timings' is missing or not an object")
    else:
        for key in ("prefill_tokens", "decode_tokens"):
            if not _is_int(timings.get(key)):
                problems.append(f"'timings.{key}' is {timings.get(key)!r}, expected a non-negative integer")
        for key in ("prefill_s", "decode_s"):
            if not _is_number(timings.get(key)):
                problems.append(f"'timings.{key}' is {timings.get(key)!r}, expected a non-negative number")
    cpu = r.get("cpu")
    if not isinstance(cpu, Mapping) or not isinstance(cpu.get("features"), list):
        problems.append("'cpu.features' is missing or not a list")


def _check_kernels(r: Mapping[str, Any], problems: list[str]) -> None:
    kernels: list[str] = r["kernels"]
    if not kernels:
        problems.append("'kernels' is empty: no kernel recorded that it ran, so nothing was computed")
        return
    known = known_kernel_ids()
    unknown = [k for k in kernels if k not in known]
    if unknown:
        problems.append(f"unknown kernel id(s): {', '.join(unknown)}")
    from bitnet.backends.cpu.kernels import VARIANT_FEATURES

    features = set(r["cpu"]["features"])
    for variant in sorted({k.rsplit(".", 1)[-1] for k in kernels if k in known} - {"cuda"}):
        missing = [f for f in VARIANT_FEATURES.get(variant, ()) if f not in features]
        if missing:
            problems.append(f"kernel variant '{variant}' ran on a CPU without {', '.join(missing)} "
                            f"(cpu.features)")
    names = {k.rsplit(".", 1)[0] for k in kernels}
    prefixes = CUDA_TERNARY_KERNEL_PREFIX if r.get("backend") == "cuda" else TERNARY_KERNEL_PREFIX
    for ggml_type, prefix in prefixes.items():
        if ggml_type in r["model"]["tensor_types"] and not any(n.startswith(prefix) for n in names):
            kinds = " or ".join(f"{p}*" for p in prefix)
            problems.append(f"the model has {ggml_type} weights but no {kinds} kernel ran")


def _check_throughput(r: Mapping[str, Any], problems: list[str]) -> None:
    t = r["timings"]
    if r["tokens_in"] + r["tokens_out"] == 0:
        problems.append("no tokens were processed (tokens_in and tokens_out are 0)")
    if t["prefill_tokens"] > r["tokens_in"]:
        problems.append(f"timings.prefill_tokens ({t['prefill_tokens']}) exceeds tokens_in ({r['tokens_in']})")
    if t["decode_tokens"] > r["tokens_out"]:
        problems.append(f"timings.decode_tokens ({t['decode_tokens']}) exceeds tokens_out ({r['tokens_out']})")
    n_params = r["model"]["n_params"]
    ceiling = min(MAX_TOKENS_PER_S, r["threads"] * MAX_OPS_PER_THREAD_S / (2 * n_params))
    for phase in ("prefill", "decode"):
        rate, tokens, seconds = r[f"{phase}_tokens_per_s"], t[f"{phase}_tokens"], t[f"{phase}_s"]
        if tokens > 0 and (seconds <= 0 or rate <= 0):
            problems.append(f"{tokens} {phase} tokens recorded with no time or zero throughput")
            continue
        if tokens > 0 and abs(rate - tokens / seconds) > RATE_TOLERANCE * rate:
            problems.append(f"{phase}_tokens_per_s {rate:.6g} disagrees with timings "
                            f"({tokens} tokens in {seconds:.6g} s = {tokens / seconds:.6g}/s)")
        if tokens == 0 and rate > 0:
            problems.append(f"{phase}_tokens_per_s is {rate:.6g} but no {phase} tokens were timed")
        if rate > ceiling:
            problems.append(f"{phase}_tokens_per_s {rate:.6g} is implausible for {n_params} parameters on "
                            f"{r['threads']} thread(s) (ceiling {ceiling:.3g})")


def _check_timestamp(r: Mapping[str, Any], problems: list[str], now: datetime) -> None:
    try:
        when = datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00"))
    except ValueError:
        problems.append(f"'timestamp' {r['timestamp']!r} is not an ISO-8601 date and time")
        return
    if when.tzinfo is None:
        problems.append(f"'timestamp' {r['timestamp']!r} has no time zone")
    elif when > now + timedelta(days=1):
        problems.append(f"'timestamp' {r['timestamp']} is in the future")


def _check_model_file(r: Mapping[str, Any], path: Path, problems: list[str]) -> None:
    if not path.is_file():
        problems.append(f"model file not found: {path}")
        return
    size = path.stat().st_size
    if size != r["model"]["size_bytes"]:
        problems.append(f"model size differs: {path} has {size} bytes, the receipt says "
                        f"{r['model']['size_bytes']}")
        return   # no need to hash a file that cannot match
    digest = file_sha256(path)
    if digest != r["model"]["sha256"]:
        problems.append(f"model hash differs: {path} has SHA-256 {digest}, the receipt says "
                        f"{r['model']['sha256']}")


__all__ = ["SCHEMA", "SCHEMA_VERSION", "file_sha256", "known_kernel_ids", "load_receipt", "make_receipt",
           "model_facts", "verify_receipt", "write_receipt"]
