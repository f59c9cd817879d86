"""A check of an installed browser-build wheel inside Pyodide (cibuildwheel's Pyodide test command): the embedded
model loads and greedy decoding produces tokens with the SIMD128 kernels, without numpy."""
import bitnet.web

model = bitnet.web.WebModel()
info = model.info()
assert info["kernel"] == "wasm", info["kernel"]
generation = model.start([info["bos_id"]], max_tokens=8, temperature=0)
text = ""
while not generation.finished:
    text += generation.next_text()
tokens = generation.tokens
assert text and tokens and all(0 <= t < model.n_vocab for t in tokens), tokens
print(f"ok: {len(tokens)} tokens with the {info['kernel']} kernels")
