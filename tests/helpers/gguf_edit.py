"""Test helper: copies of a GGUF file with some metadata or tensors changed."""
from __future__ import annotations

from bitnet.gguf import GGUFReader, GGUFWriter


def rewrite_gguf(src, dst, *, drop_keys=(), set_keys=None, set_types=None, drop_tensors=(), retype=None):
    """Copy a GGUF with some metadata or tensors changed.

    set_keys: new values by key; set_types: a GGUFValueType for some of them (else the old key's type).
    retype: name -> (shape, ggml type, raw bytes) replacing a tensor."""
    set_keys = dict(set_keys or {})
    set_types = set_types or {}
    with GGUFReader(src) as r:
        w = GGUFWriter(dst, alignment=r.alignment)
        for key, value in r.metadata.items():
            if key in drop_keys or key == "general.alignment":
                continue
            vtype = set_types.get(key, r.metadata_types[key])
            w.add(key, set_keys.pop(key, value), vtype=vtype, elem_type=r.array_types.get(key))
        for key, value in set_keys.items():
            w.add(key, value, vtype=set_types.get(key))
        for name, info in r.tensors.items():
            if name in drop_tensors:
                continue
            shape, gtype, data = info.shape, info.ggml_type, bytes(r.tensor_bytes(name))
            if retype and name in retype:
                shape, gtype, data = retype[name]
            w.add_tensor(name, shape, gtype, data)
        w.write()
    return dst
