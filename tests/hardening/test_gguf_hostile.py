"""Hostile GGUF files: every crafted corruption raises GGUFError naming the problem; a random-mutation fuzz run
in a subprocess (so a crash would be seen) never ends any other way.

Run as a script (`python test_gguf_hostile.py SEED N DIR`) it is the fuzz worker.
"""
from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bitnet.errors import GGUFError
from bitnet.gguf import GGMLType, GGUFReader, GGUFValueType, GGUFWriter, quants

VT = GGUFValueType
PROJECT_ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------- byte builder

def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def u64(v: int) -> bytes:
    return struct.pack("<Q", v)


def gstr(text: str | bytes, length: int | None = None) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return u64(len(data) if length is None else length) + data


def kv(key: str | bytes, vtype: int, payload: bytes) -> bytes:
    return gstr(key) + u32(vtype) + payload


def arr(etype: int, count: int, payload: bytes) -> bytes:
    return u32(etype) + u64(count) + payload


def tinfo(name: str | bytes, dims: tuple[int, ...], type_id: int, offset: int, n_dims: int | None = None) -> bytes:
    return (gstr(name) + u32(len(dims) if n_dims is None else n_dims) + b"".join(u64(d) for d in dims)
            + u32(type_id) + u64(offset))


BASE_KVS = [
    kv("general.architecture", VT.STRING, gstr("llama")),
    kv("n", VT.UINT32, u32(7)),
    kv("tokens", VT.ARRAY, arr(VT.STRING, 2, gstr("a") + gstr("bc"))),
]
BASE_TENSORS = [tinfo("a", (8,), GGMLType.F32, 0), tinfo("b", (4, 2), GGMLType.F32, 32)]
BASE_DATA = np.arange(16, dtype="<f4").tobytes()


def build(kvs: list[bytes] = BASE_KVS, tensors: list[bytes] = BASE_TENSORS, data: bytes = BASE_DATA, *,
          magic: bytes = b"GGUF", version: int = 3, n_kv: int | None = None, n_tensors: int | None = None,
          alignment: int = 32) -> bytes:
    head = magic + u32(version) + u64(len(tensors) if n_tensors is None else n_tensors)
    head += u64(len(kvs) if n_kv is None else n_kv) + b"".join(kvs) + b"".join(tensors)
    head += bytes(-len(head) % alignment)
    return head + data


def header_only(*kvs: bytes) -> bytes:
    return build(list(kvs), [], b"")


def unpadded(kvs: list[bytes], tensors: list[bytes] = ()) -> bytes:
    """Header bytes ending exactly after the last field (no padding to hide a truncation)."""
    return build(kvs, list(tensors), b"", alignment=1)


def nested(depth: int) -> bytes:
    inner = arr(VT.UINT8, 1, b"\x01")
    for _ in range(depth - 1):
        inner = arr(VT.ARRAY, 1, inner)
    return inner


def open_bytes(tmp_path: Path, data: bytes) -> GGUFReader:
    path = tmp_path / "crafted.gguf"
    path.write_bytes(data)
    return GGUFReader(path)


def test_base_file_is_valid(tmp_path: Path) -> None:
    with open_bytes(tmp_path, build()) as r:
        assert r.metadata == {"general.architecture": "llama", "n": 7, "tokens": ["a", "bc"]}
        np.testing.assert_array_equal(r.dequantize("b"), np.arange(8, 16, dtype=np.float32).reshape(2, 4))
    with open_bytes(tmp_path, header_only(kv("deep", VT.ARRAY, nested(16)))) as r:
        assert r.metadata["deep"] == [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]


ALIGN = "general.alignment"
CASES = [
    ("empty file", b"", "empty file"),
    ("bad magic", build(magic=b"GGML"), r"bad magic b'GGML'"),
    ("two bytes", b"GG", "bad magic"),
    ("version 1", build(version=1), "unsupported GGUF version 1 "),
    ("version 4", build(version=4), "unsupported GGUF version 4 "),
    ("big-endian", build(version=0x03000000), "big-endian GGUF files are not supported"),
    ("header cut", b"GGUF" + u32(3) + u64(0)[:5], "truncated: tensor count needs 8 bytes"),
    ("huge n_kv", build(n_kv=2**63), r"n_kv = 9223372036854775808 metadata entries cannot fit"),
    ("n_kv too many", build(n_kv=5000), "n_kv = 5000 metadata entries cannot fit"),
    ("huge n_tensors", build(n_tensors=2**64 - 1), "n_tensors = 18446744073709551615 tensor infos cannot fit"),
    ("n_tensors vs rest", build(n_tensors=6), "n_tensors = 6 tensor infos cannot fit .* after the metadata"),
    ("key length past EOF", header_only(gstr("k", length=2**40) + b"k"), r"key #0: key length 1099511627776 runs"),
    ("key length cut", b"GGUF" + u32(3) + u64(0) + u64(2) + kv("k", VT.STRING, gstr("x" * 20)) + b"\x05\0\0",
     r"key #1: truncated: the length of the key needs 8 bytes"),
    ("empty key", header_only(kv("", VT.UINT8, b"\x01")), "key #0: empty key"),
    ("duplicate key", header_only(kv("k", VT.UINT8, b"\x01"), kv("k", VT.UINT8, b"\x02")),
     r"key #1 'k': duplicate key"),
    ("key not UTF-8", header_only(kv(b"k\xff", VT.UINT8, b"\x01")), r"key #0: key at offset 32 is not valid UTF-8"),
    ("string not UTF-8", header_only(kv("s", VT.STRING, gstr(b"\xc3\x28"))), r"'s': string value .* not valid UTF-8"),
    ("string past EOF", unpadded([kv("s", VT.STRING, gstr("abc", length=4))]), r"string value length 4 runs past"),
    ("unknown value type", header_only(kv("k", 13, b"\x00")), r"'k': unknown value type id 13"),
    ("unknown element type", header_only(kv("k", VT.ARRAY, arr(42, 1, b"\x00"))),
     r"'k': unknown array element type id 42"),
    ("array count absurd", header_only(kv("k", VT.ARRAY, arr(VT.UINT8, 2**62, b"\x00"))),
     r"array of 4611686018427387904 UINT8 elements cannot fit"),
    ("string array count", header_only(kv("k", VT.ARRAY, arr(VT.STRING, 10**9, gstr("x")))),
     r"array of 1000000000 STRING elements cannot fit"),
    ("array string past EOF", header_only(kv("t", VT.ARRAY, arr(VT.STRING, 2, gstr("a") + gstr("b", 99)))),
     r"'t', array element 1: array string length 99 runs past"),
    ("scalar cut", unpadded([kv("k", VT.UINT64, b"\x01\x02\x03")]), r"'k': truncated: UINT64 value needs 8 bytes"),
    ("bool 2", header_only(kv("k", VT.BOOL, b"\x02")), r"'k': bool value at offset \d+ is 2"),
    ("bool array 7", header_only(kv("k", VT.ARRAY, arr(VT.BOOL, 3, b"\x01\x07\x00"))),
     r"'k', array element 1: bool value is 7"),
    ("nesting too deep", header_only(kv("k", VT.ARRAY, nested(17))), "arrays nested more than 16 deep"),
    ("alignment 0", build([kv(ALIGN, VT.UINT32, u32(0))]), r"'general.alignment': alignment 0 is not"),
    ("alignment 48", build([kv(ALIGN, VT.UINT32, u32(48))]), r"alignment 48 is not a non-zero power of two"),
    ("alignment type", build([kv(ALIGN, VT.INT32, u32(32))]), "'general.alignment': must be UINT32, got INT32"),
    ("empty tensor name", build(tensors=[tinfo("", (8,), 0, 0)]), "tensor info #0: empty tensor name"),
    ("tensor name not UTF-8", build(tensors=[tinfo(b"\xe2\x82", (8,), 0, 0)]), "tensor name .* not valid UTF-8"),
    ("duplicate tensor", build(tensors=[tinfo("a", (8,), 0, 0), tinfo("a", (8,), 0, 32)]),
     r"tensor 'a': duplicate tensor name \(tensor info #1\)"),
    ("n_dims 0", build(tensors=[tinfo("a", (), 0, 0)]), r"tensor 'a': n_dims = 0 \(must be 1..4\)"),
    ("n_dims 5", build(tensors=[tinfo("a", (1, 1, 1, 1, 8), 0, 0)]), r"tensor 'a': n_dims = 5"),
    ("n_dims huge", build(tensors=[tinfo("a", (8,), 0, 0, n_dims=2**31)]), r"n_dims = 2147483648"),
    ("zero dim", build(tensors=[tinfo("a", (8, 0), 0, 0)]), r"tensor 'a': dimension 1 is zero \(dims \(8, 0\)\)"),
    ("dim > int64", build(tensors=[tinfo("a", (2**63,), 0, 0)]), "dimension 0 = 9223372036854775808 does not fit"),
    ("dims overflow", build(tensors=[tinfo("a", (2**32, 2**32), 0, 0)]), r"element count overflows int64"),
    ("dims cut", unpadded(BASE_KVS, [tinfo("a" * 40, (8, 8), 0, 0)])[:-20],
     r"tensor 'a{40}': truncated: dimension 1 needs 8 bytes"),
    ("unknown type", build(tensors=[tinfo("a", (8,), 99, 0)]), r"tensor 'a': ggml type id 99 \(unknown ggml type\)"),
    ("type 39", build(tensors=[tinfo("a", (8,), 39, 0)]), r"tensor 'a': ggml type id 39 \(TL2 in bitnet.cpp / MXFP4"),
    ("type 38", build(tensors=[tinfo("a", (8,), 38, 0)]), r"ggml type id 38 \(TL1 .*not supported"),
    ("type 2", build(tensors=[tinfo("a", (32,), 2, 0)]), r"ggml type id 2 \(Q4_0, not supported\)"),
    ("data past EOF", build(tensors=[tinfo("a", (8,), 0, 4096)]), r"tensor 'a': data \[\d+, \d+\) .* outside"),
    ("offset wraps", build(tensors=[tinfo("a", (8,), 0, 2**64 - 32)]), r"tensor 'a': data .* lies outside the file"),
    ("huge tensor", build(tensors=[tinfo("a", (2**31, 2**31), 0, 0)]), "lies outside the file"),
    ("data cut", build()[:-8], r"tensor 'b': data \[\d+, \d+\) \(F32, dims \(4, 2\), 32 bytes\) lies outside"),
    ("misaligned", build(tensors=[tinfo("a", (8,), 0, 4)]), "data offset 4 is not a multiple of the alignment 32"),
    ("overlap", build(tensors=[tinfo("a", (16,), 0, 0), tinfo("b", (8,), 0, 32)]),
     r"tensor 'b': data starting at \d+ overlaps tensor 'a'"),
    ("TQ2_0 row", build(tensors=[tinfo("a", (100, 1), GGMLType.TQ2_0, 0)]),
     r"TQ2_0 rows \(ne0\) must be a multiple of 256"),
    ("Q8_0 row", build(tensors=[tinfo("a", (48,), GGMLType.Q8_0, 0)]), r"'a': Q8_0 rows .* got ne0=48"),
    ("I2_S count", build(tensors=[tinfo("a", (96,), GGMLType.I2_S, 0)]), "I2_S needs an element count .* 128"),
]


@pytest.mark.parametrize("data, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_crafted_corruption_is_rejected(tmp_path: Path, data: bytes, match: str) -> None:
    with pytest.raises(GGUFError, match=match):
        open_bytes(tmp_path, data)


def test_error_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(GGUFError, match=r"crafted\.gguf: GGUF header: not a GGUF file"):
        open_bytes(tmp_path, b"PK\x03\x04" + bytes(60))


# ---------------------------------------------------------------------------------------------- fuzzing

def fuzz_base(workdir: Path) -> bytes:
    """A small valid file touching every value type, nested arrays and every tensor type."""
    rng = np.random.default_rng(0)
    path = workdir / "base.gguf"
    w = GGUFWriter(path, alignment=64)
    w.add("general.architecture", "bitnet-b1.58")
    w.add("i64", -(2**40), VT.INT64)
    w.add("f64", 0.25, VT.FLOAT64)
    w.add("flag", True)
    w.add("tokens", ["<s>", "Ġthe", "日本", ""])
    w.add("ids", [1, -2, 3])
    w.add("nested", [[1, 2], ["x"], [[0.5]]])
    w.add("bools", [True, False])
    for ggml_type, shape in [(GGMLType.F32, (8,)), (GGMLType.F16, (2, 4)), (GGMLType.BF16, (4,)),
                             (GGMLType.Q8_0, (1, 32)), (GGMLType.TQ1_0, (1, 256)), (GGMLType.TQ2_0, (1, 256)),
                             (GGMLType.I2_S, (1, 128))]:
        x = rng.standard_normal(shape).astype(np.float32)
        w.add_tensor(ggml_type.name.lower(), shape, ggml_type, quants.quantize(x, ggml_type))
    w.write()
    return path.read_bytes()


INTERESTING = [0, 1, 2, 3, 7, 13, 31, 32, 36, 38, 39, 64, 255, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]


def mutate(base: bytes, header_len: int, rng: random.Random) -> bytes:
    data = bytearray(base)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(6)
        pos = rng.randrange(min(header_len, len(data)) if rng.random() < 0.9 else len(data))
        if kind == 0:                                   # bit flips
            data[pos] ^= 1 << rng.randrange(8)
        elif kind == 1:                                 # random byte
            data[pos] = rng.randrange(256)
        elif kind == 2:                                 # an interesting count/length/offset/type written over
            width = rng.choice((4, 8))
            value = rng.choice(INTERESTING) if rng.random() < 0.8 else rng.getrandbits(8 * width)
            data[pos: pos + width] = (value % 2 ** (8 * width)).to_bytes(width, "little")
        elif kind == 3:                                 # truncation
            del data[rng.randrange(len(data)):]
        elif kind == 4:                                 # insertion
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        else:                                           # deletion
            del data[pos: pos + rng.randint(1, 16)]
        if not data:
            break
    return bytes(data)


def fuzz_worker(seed: int, n: int, workdir: Path) -> dict[str, int]:
    base = fuzz_base(workdir)
    with GGUFReader(workdir / "base.gguf") as r:
        header_len = r.data_offset
    rng = random.Random(seed)
    path = workdir / "mutant.gguf"
    counts = {"ok": 0, "GGUFError": 0}
    for i in range(n):
        path.write_bytes(mutate(base, header_len, rng))
        try:
            with GGUFReader(path) as r:
                for name in r.tensors:
                    r.dequantize(name)   # anything that parses must also decode
            counts["ok"] += 1
        except GGUFError:
            counts["GGUFError"] += 1
        except BaseException:
            os.replace(path, workdir / f"failing-{i}.gguf")
            raise
    return counts


def test_fuzzed_files_only_ever_raise_gguf_error(tmp_path: Path) -> None:
    n = 3000
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, __file__, "1234", str(n), str(tmp_path)], check=False,
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"fuzz worker died (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert counts["ok"] + counts["GGUFError"] == n
    # the mutants must exercise both outcomes, or the fuzzer tests nothing
    assert counts["GGUFError"] > n // 3 and counts["ok"] > n // 50, counts


if __name__ == "__main__":
    print(json.dumps(fuzz_worker(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))))
