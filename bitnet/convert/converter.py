"""convert(): a Hugging Face BitNet / ternary checkpoint directory -> one GGUF file.

Everything that can be checked without reading weights (config, tensor names, dtypes, shapes, type rules,
tokenizer) is checked first, so bad input fails before any output exists. Weights are then streamed: each
GGUF tensor is produced by a callable the writer runs in turn, so memory stays near the largest tensor.
The file is written under `<out>.tmp-XXXX` and renamed over `<out>` only when complete.
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bitnet.convert import architectures as archs
from bitnet.convert.checkpoint import Checkpoint
from bitnet.convert.ternary import check_finite, packed_scale, ternarize, unpack_codes
from bitnet.convert.vocab import VocabMetadata, read_vocab
from bitnet.errors import ConversionError
from bitnet.gguf import GGMLType, GGUFValueType, GGUFWriter, quants

log = logging.getLogger(__name__)

WEIGHT_TYPES = {"i2_s": GGMLType.I2_S, "tq2_0": GGMLType.TQ2_0, "tq1_0": GGMLType.TQ1_0}
EMBEDDING_TYPES = {"f16": GGMLType.F16, "bf16": GGMLType.BF16, "q8_0": GGMLType.Q8_0, "f32": GGMLType.F32}
# general.file_type: llama.cpp's LLAMA_FTYPE_MOSTLY_TQ1_0 / TQ2_0, and bitnet.cpp's MOSTLY_I2_S (40).
FILE_TYPES = {"i2_s": 40, "tq1_0": 36, "tq2_0": 37}
QUANTIZATION_VERSION = 2
F16_MAX = float(np.finfo(np.float16).max)


@dataclass(frozen=True)
class _Source:
    """A planned GGUF tensor bound to the checkpoint tensor(s) it is made from."""
    plan: archs.PlannedTensor
    hf_name: str
    scale_name: str | None     # packed ternary weights: the companion weight_scale tensor
    ggml_type: GGMLType

    @property
    def gguf_shape(self) -> tuple[int, ...]:
        return self.plan.hf_shape    # numpy order: Hugging Face's [out, in] is GGUF's dims [in, out]


def default_output_path(hf_dir: str | os.PathLike[str], weight_type: str = "i2_s") -> Path:
    """bitnet.cpp's naming convention: HF_DIR/ggml-model-<type>.gguf."""
    return Path(hf_dir) / f"ggml-model-{weight_type}.gguf"


def convert(hf_dir: str | os.PathLike[str], out_path: str | os.PathLike[str], weight_type: str = "i2_s",
            embedding_type: str = "f16", force: bool = False, progress: bool | None = None,
            arch_name: str | None = None, model_name: str | None = None) -> Path:
    """Convert the checkpoint in `hf_dir` to a GGUF file at `out_path` and return that path.

    weight_type: "i2_s" (bitnet.cpp layout), "tq2_0" or "tq1_0" for the ternary linear weights.
    embedding_type: "f16", "bf16", "q8_0" or "f32" for the token embedding and an untied LM head.
    force: overwrite an existing `out_path`. progress: None shows a tqdm bar when stderr is a terminal,
    True always, False never. arch_name: another spelling of the architecture (e.g. "bitnet-25", the
    reference engine's name for bitnet-b1.58). model_name: general.name (default: the directory name).
    Raises ConversionError naming the problem for any bad input.
    """
    wtype = _choice(weight_type, WEIGHT_TYPES, "weight type")
    etype = _choice(embedding_type, EMBEDDING_TYPES, "embedding type")
    out = Path(out_path)
    _check_output(out, force)

    ckpt = Checkpoint(hf_dir)
    spec = archs.spec_for(ckpt.config)
    arch = _arch_name(spec, arch_name)
    hp = archs.read_hparams(spec, ckpt.config)
    plan = archs.tensor_plan(spec, hp, "lm_head.weight" in ckpt)
    sources = _bind(ckpt, plan, wtype, etype)
    vocab = read_vocab(ckpt.dir, ckpt.config, hp.vocab_size)
    name = model_name or _default_name(ckpt)
    log.info("converting %s (%s -> %s, %d tensors) to %s", ckpt.dir, spec.hf_name, arch, len(sources), out)

    fd, tmp_name = tempfile.mkstemp(prefix=f"{out.name}.tmp-", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = GGUFWriter(tmp)
        _add_metadata(writer, arch, name, hp, weight_type, vocab)
        bar = _progress_bar(progress, len(sources))
        for src in sources:
            writer.add_tensor(src.plan.gguf_name, src.gguf_shape, src.ggml_type,
                              _producer(ckpt, src, bar))
        try:
            writer.write()
        finally:
            if bar is not None:
                bar.close()
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def _default_name(ckpt: Checkpoint) -> str:
    source = str(ckpt.config.get("_name_or_path") or "").rstrip("/").split("/")[-1]
    return source or ckpt.dir.resolve().name


def _choice(value: str, table: dict[str, GGMLType], what: str) -> GGMLType:
    try:
        return table[value.lower()]
    except (KeyError, AttributeError):
        raise ConversionError(f"unknown {what} {value!r}; choose one of {', '.join(table)}") from None


def _arch_name(spec: archs.ArchSpec, requested: str | None) -> str:
    if requested is None:
        return spec.gguf_arch
    allowed = archs.ARCH_ALIASES.get(spec.gguf_arch, (spec.gguf_arch,))
    if requested not in allowed:
        raise ConversionError(f"architecture name {requested!r} does not fit {spec.hf_name}; "
                              f"allowed: {', '.join(allowed)}")
    return requested


def _check_output(out: Path, force: bool) -> None:
    if out.is_dir():
        raise ConversionError(f"output path {out} is a directory")
    if out.exists() and not force:
        raise ConversionError(f"output file {out} already exists (pass force=True / --force to overwrite)")
    if not out.parent.is_dir():
        raise ConversionError(f"output directory {out.parent} does not exist")


def _bind(ckpt: Checkpoint, plan: list[archs.PlannedTensor], wtype: GGMLType, etype: GGMLType
          ) -> list[_Source]:
    """Match the plan to the checkpoint, checking names, dtypes, shapes and the output types' rules."""
    sources = []
    used: set[str] = set()
    for p in plan:
        hf_name = next((c for c in p.hf_candidates if c in ckpt), None)
        if hf_name is None:
            raise ConversionError(f"tensor {' or '.join(map(repr, p.hf_candidates))} (for {p.gguf_name}) "
                                  f"missing from the checkpoint in {ckpt.dir}")
        entry = ckpt.entry(hf_name)
        used.add(hf_name)
        scale_name = None
        if p.role == archs.TERNARY:
            ggml_type = wtype
            if entry.dtype == "U8":
                scale_name = hf_name[: -len("weight")] + "weight_scale"
                if scale_name not in ckpt:
                    raise ConversionError(f"packed uint8 tensor {hf_name!r} has no {scale_name!r} next to it")
                used.add(scale_name)
                expected = (p.hf_shape[0] // 4, p.hf_shape[1])
                if p.hf_shape[0] % 4 or entry.shape != expected:
                    raise ConversionError(f"packed tensor {hf_name!r} has shape {list(entry.shape)}; the "
                                          f"config implies {list(p.hf_shape)} unpacked, i.e. "
                                          f"{list(expected)} packed")
            else:
                _check_float(entry, p)
            _check_ternary_type(hf_name, p.hf_shape, wtype)
        else:
            _check_float(entry, p)
            ggml_type = etype if p.role in (archs.EMBEDDING, archs.HEAD) else GGMLType.F32
            if ggml_type == GGMLType.Q8_0 and p.hf_shape[-1] % 32:
                raise ConversionError(f"{hf_name!r}: Q8_0 needs rows that are a multiple of 32 long, "
                                      f"got {p.hf_shape[-1]}")
        sources.append(_Source(p, hf_name, scale_name, ggml_type))
    leftover = sorted(n for n in ckpt.tensors if n not in used and not n.endswith(archs.IGNORED_SUFFIXES)
                      and not (n == "lm_head.weight" and not any(s.plan.role == archs.HEAD for s in sources)))
    if leftover:
        shown = ", ".join(leftover[:8]) + (f" and {len(leftover) - 8} more" if len(leftover) > 8 else "")
        raise ConversionError(f"the checkpoint holds tensors this architecture does not use: {shown}")
    return sources


def _check_float(entry, p: archs.PlannedTensor) -> None:
    if entry.dtype not in ("BF16", "F16", "F32", "F64"):
        raise ConversionError(f"tensor {entry.name!r} has dtype {entry.dtype}; expected floating point "
                              "weights")
    if entry.shape != p.hf_shape:
        raise ConversionError(f"tensor {entry.name!r} has shape {list(entry.shape)}, but config.json implies "
                              f"{list(p.hf_shape)}")


def _check_ternary_type(hf_name: str, shape: tuple[int, ...], wtype: GGMLType) -> None:
    n = int(np.prod(shape))
    if wtype == GGMLType.I2_S and n % 128:
        raise ConversionError(f"tensor {hf_name!r} {list(shape)} has {n} elements, not a multiple of 128 as "
                              "I2_S requires")
    if wtype in (GGMLType.TQ2_0, GGMLType.TQ1_0) and shape[-1] % 256:
        raise ConversionError(f"tensor {hf_name!r} {list(shape)} has rows of {shape[-1]} weights; "
                              f"{wtype.name} needs rows that are a multiple of 256 long (use i2_s)")


def _producer(ckpt: Checkpoint, src: _Source, bar) -> Callable[[], np.ndarray]:
    def produce() -> np.ndarray:
        data = _encode(ckpt, src)
        if bar is not None:
            bar.update(1)
        return data
    return produce


def _encode(ckpt: Checkpoint, src: _Source) -> np.ndarray:
    role = src.plan.role
    if role == archs.TERNARY:
        codes, scale = _ternary(ckpt, src)
        if src.ggml_type == GGMLType.I2_S:
            return quants.pack_i2s(codes, float(scale))
        weights = codes.astype(np.float32) * scale
        return (quants.quantize_tq2_0 if src.ggml_type == GGMLType.TQ2_0 else quants.quantize_tq1_0)(weights)
    w = ckpt.read(src.hf_name).astype(np.float32, copy=False)
    check_finite(src.hf_name, w)
    if src.ggml_type == GGMLType.F32:
        return np.ascontiguousarray(w)
    if src.ggml_type == GGMLType.F16:
        big = float(np.abs(w).max())
        if big > F16_MAX:
            raise ConversionError(f"tensor {src.hf_name!r} holds {big:g}, beyond the float16 range; use "
                                  "--embedding-type bf16 or f32")
        return w.astype(np.float16)
    if src.ggml_type == GGMLType.BF16:
        return quants.to_bf16(w)
    return quants.quantize_q8_0(w)


def _ternary(ckpt: Checkpoint, src: _Source) -> tuple[np.ndarray, np.float32]:
    """int8 ternary codes [out, in] and the float32 per-tensor scale of one linear weight."""
    if src.scale_name is not None:
        linear_class = (ckpt.config.get("quantization_config") or {}).get("linear_class", "bitlinear")
        codes = unpack_codes(src.hf_name, ckpt.read(src.hf_name), src.plan.hf_shape[0])
        scale = packed_scale(src.scale_name, ckpt.read(src.scale_name), linear_class)
    else:
        codes, scale = ternarize(src.hf_name, ckpt.read(src.hf_name))
    heads = src.plan.permute_heads
    if heads:
        # llama.cpp's NORM rope rotates adjacent pairs; HF rotates halves: interleave each head's two halves.
        out, inp = codes.shape
        codes = codes.reshape(heads, 2, out // heads // 2, inp).swapaxes(1, 2).reshape(out, inp)
    return codes, scale


def _add_metadata(writer: GGUFWriter, arch: str, name: str, hp: archs.HParams, weight_type: str,
                  vocab: VocabMetadata) -> None:
    u32, f32 = GGUFValueType.UINT32, GGUFValueType.FLOAT32
    writer.add("general.architecture", arch)
    writer.add("general.name", name)
    for key, value, kind in archs.metadata(arch, hp):
        writer.add(key, value, u32 if kind == "u32" else f32)
    writer.add("general.file_type", FILE_TYPES[weight_type.lower()], u32)
    writer.add("general.quantization_version", QUANTIZATION_VERSION, u32)
    writer.add("tokenizer.ggml.model", vocab.model)
    if vocab.pre is not None:
        writer.add("tokenizer.ggml.pre", vocab.pre)
    writer.add("tokenizer.ggml.tokens", vocab.tokens, GGUFValueType.ARRAY, GGUFValueType.STRING)
    writer.add("tokenizer.ggml.scores", np.asarray(vocab.scores, dtype=np.float32), GGUFValueType.ARRAY, f32)
    writer.add("tokenizer.ggml.token_type", np.asarray(vocab.token_types, dtype=np.int32),
               GGUFValueType.ARRAY, GGUFValueType.INT32)
    if vocab.merges is not None:
        writer.add("tokenizer.ggml.merges", vocab.merges, GGUFValueType.ARRAY, GGUFValueType.STRING)
    for key, value in vocab.scalars.items():
        if isinstance(value, bool):
            writer.add(key, value, GGUFValueType.BOOL)
        elif isinstance(value, int):
            writer.add(key, value, u32)
        else:
            writer.add(key, value, GGUFValueType.STRING)


def _progress_bar(progress: bool | None, total: int):
    if progress is False or (progress is None and not sys.stderr.isatty()):
        return None
    try:
        from tqdm import tqdm
    except ImportError:   # tqdm is an optional extra; converting works without a bar
        return None
    return tqdm(total=total, unit="tensor", desc="converting", file=sys.stderr)
