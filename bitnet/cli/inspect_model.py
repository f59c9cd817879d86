"""`bitnet inspect`: what a GGUF file holds, read from its header only (no weights are touched, so it is fast
and works for architectures the engine cannot run)."""
from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bitnet.cli import _common

GENERAL_KEYS = ("general.name", "general.architecture", "general.file_type", "general.quantization_version",
                "general.license", "general.size_label")
TEMPLATE_PREVIEW = 160


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect", help="show what a GGUF model file holds",
        description="Show a GGUF file's architecture, hyperparameters, tensor counts and sizes by type, tokenizer "
                    "and chat template, reading only the header.")
    p.add_argument("model", nargs="?", type=Path, default=None, metavar="M.gguf",
                   help="GGUF file (default: the embedded model)")
    p.add_argument("--tensors", action="store_true", help="also list every tensor (name, type, shape, size)")
    p.add_argument("--metadata", action="store_true", help="also list every metadata key (arrays summarized)")
    p.add_argument("--json", action="store_true", help="print everything as JSON")
    _common.add_debug(p)
    p.set_defaults(func=inspect_cmd)


def _summarize(value: Any) -> Any:
    """Metadata for display: long arrays become a short description."""
    if isinstance(value, (list, tuple)):
        if len(value) > 8:
            kinds = sorted({type(v).__name__ for v in value})
            return f"[{len(value)} × {'/'.join(kinds)}]"
        return [_summarize(v) for v in value]
    if isinstance(value, str) and len(value) > TEMPLATE_PREVIEW:
        return value[:TEMPLATE_PREVIEW] + f"… ({len(value)} chars)"
    return value


def _token_text(tokens: list, tid: Any) -> str | None:
    return tokens[tid] if isinstance(tid, int) and 0 <= tid < len(tokens) else None


def tokenizer_summary(md: Mapping[str, Any]) -> dict[str, Any]:
    tokens = md.get("tokenizer.ggml.tokens") or []
    types = md.get("tokenizer.ggml.token_type") or []
    out: dict[str, Any] = {
        "model": md.get("tokenizer.ggml.model"),
        "pre": md.get("tokenizer.ggml.pre"),
        "n_tokens": len(tokens),
        "n_merges": len(md.get("tokenizer.ggml.merges") or []),
        "n_special": sum(1 for t in types if t in (3, 4)),   # CONTROL, USER_DEFINED
        "add_bos": md.get("tokenizer.ggml.add_bos_token"),
        "add_eos": md.get("tokenizer.ggml.add_eos_token"),
    }
    for kind in ("bos", "eos", "eot", "eom", "unknown", "padding"):
        tid = md.get(f"tokenizer.ggml.{kind}_token_id")
        if tid is not None:
            out[kind] = {"id": tid, "text": _token_text(tokens, tid)}
    return out


def support_status(reader) -> tuple[bool, str | None, dict[str, Any] | None]:
    """Whether this engine can run the file, why not, and the hyperparameters it would use."""
    from dataclasses import asdict

    from bitnet.errors import BitNetError
    from bitnet.models import arch_spec, read_hparams

    try:
        arch, _spec = arch_spec(reader)
        return True, None, asdict(read_hparams(reader, arch))
    except BitNetError as e:
        return False, str(e), None


def describe(path: Path, *, tensors: bool = False, metadata: bool = False) -> dict[str, Any]:
    from bitnet.chat import detect_format
    from bitnet.gguf import GGUFReader

    with GGUFReader(path) as reader:
        md = reader.metadata
        arch = md.get("general.architecture")
        by_type: dict[str, dict[str, int]] = {}
        for info in reader.tensors.values():
            entry = by_type.setdefault(info.ggml_type.name, {"count": 0, "bytes": 0, "params": 0})
            entry["count"] += 1
            entry["bytes"] += info.nbytes
            entry["params"] += info.n_elements
        supported, why, hparams = support_status(reader)
        template = md.get("tokenizer.chat_template")
        result: dict[str, Any] = {
            "file": str(path),
            "size_bytes": reader.file_size,
            "gguf_version": reader.version,
            "alignment": reader.alignment,
            "name": md.get("general.name"),
            "architecture": arch,
            "supported": supported,
            "unsupported_reason": why,
            "general": {k: md[k] for k in GENERAL_KEYS if k in md},
            "hyperparameters": {k[len(arch) + 1:]: _summarize(v) for k, v in md.items()
                                if isinstance(arch, str) and k.startswith(arch + ".")},
            "engine_hparams": hparams,
            "n_tensors": len(reader.tensors),
            "n_params": sum(e["params"] for e in by_type.values()),
            "tensor_bytes": sum(e["bytes"] for e in by_type.values()),
            "tensor_types": dict(sorted(by_type.items(), key=lambda kv: -kv[1]["bytes"])),
            "tokenizer": tokenizer_summary(md),
            "chat_template": {"present": bool(template), "auto_format": detect_format(template),
                              "length": len(template) if template else 0, "text": template},
        }
        if tensors:
            result["tensors"] = [{"name": t.name, "type": t.ggml_type.name, "shape": list(t.shape),
                                  "dims": list(t.dims), "bytes": t.nbytes, "offset": t.offset}
                                 for t in reader.tensors.values()]
        if metadata:
            result["metadata"] = {k: _summarize(v) for k, v in md.items()}
    return result


def format_text(d: dict[str, Any]) -> str:
    hb = _common.human_bytes
    lines = [f"file:          {d['file']} ({hb(d['size_bytes'])}, GGUF v{d['gguf_version']})",
             f"name:          {d['name'] or '-'}",
             f"architecture:  {d['architecture']}"
             + ("" if d["supported"] else f"  (NOT SUPPORTED: {d['unsupported_reason']})"),
             f"parameters:    {_common.human_count(d['n_params'])} ({d['n_params']})"]
    if d["hyperparameters"]:
        lines.append("hyperparameters:")
        width = max(len(k) for k in d["hyperparameters"])
        lines += [f"  {k.ljust(width)}  {v}" for k, v in d["hyperparameters"].items()]
    lines.append(f"tensors:       {d['n_tensors']} ({hb(d['tensor_bytes'])})")
    for name, e in d["tensor_types"].items():
        lines.append(f"  {name:<6} {e['count']:>5} tensors  {hb(e['bytes']):>11}  "
                     f"{_common.human_count(e['params']):>9} params")
    tok = d["tokenizer"]
    specials = ", ".join(f"{k.upper()} {tok[k]['id']} {tok[k]['text']!r}"
                         for k in ("bos", "eos", "eot", "eom") if k in tok)
    lines.append(f"tokenizer:     {tok['model'] or '-'} (pre: {tok['pre'] or 'default'}), {tok['n_tokens']} tokens, "
                 f"{tok['n_merges']} merges, {tok['n_special']} special; add_bos={tok['add_bos']}")
    if specials:
        lines.append(f"  {specials}")
    ct = d["chat_template"]
    if ct["present"]:
        preview = " ".join(ct["text"].split())
        preview = preview if len(preview) <= 100 else preview[:100] + "…"
        lines.append(f"chat template: {ct['length']} chars, auto → {ct['auto_format']} format")
        lines.append(f"  {preview}")
    else:
        lines.append("chat template: none (bitnet run uses the raw prompt)")
    if "tensors" in d:
        lines.append("")
        width = max((len(t["name"]) for t in d["tensors"]), default=4)
        lines.append(f"{'name'.ljust(width)}  {'type':<6}  {'shape':<20}  bytes")
        lines += [f"{t['name'].ljust(width)}  {t['type']:<6}  {'x'.join(map(str, t['shape'])):<20}  {t['bytes']}"
                  for t in d["tensors"]]
    if "metadata" in d:
        lines.append("")
        lines += [f"{k} = {v!r}" for k, v in d["metadata"].items()]
    return "\n".join(lines)


def inspect_cmd(args: argparse.Namespace) -> int:
    path = _common.model_path(args.model)
    d = describe(path, tensors=args.tensors, metadata=args.metadata)
    if args.json:
        _common.write_json(d)
    else:
        print(format_text(d))
    return 0
