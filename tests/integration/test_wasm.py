"""The browser build (wasm/, issue 11): built with `bash wasm/build.sh`, run under Node and in headless Chromium,
and compared token for token with the native engine. The numpy-free inference path it relies on is checked
natively too, so that part runs everywhere."""
from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, child_env, testdata_path

import bitnet

WASM = PROJECT_ROOT / "wasm"
DIST = WASM / "dist"
PROMPTS = ("The meaning of life is", "Love is", "Once upon a time, in a land far away,")
ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("BITNET_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


# ---------------------------------------------------------------- natively: the path Pyodide runs, without numpy
NO_NUMPY = """
import json, sys
sys.modules["numpy"] = None          # importing either now raises ImportError, as in Pyodide
sys.modules["tokenizers"] = None
import bitnet.web as web
model = web.WebModel(sys.argv[1] or None)
out, texts = {}, {}
for ids in json.loads(sys.argv[2]):
    gen = model.start(ids, max_tokens=32, temperature=0, repeat_penalty=1.1, stop=json.loads(sys.argv[3]))
    text = ""
    while not gen.finished:
        text += gen.next_text()
    out[str(ids)], texts[str(ids)] = gen.tokens, text
print(json.dumps({"tokens": out, "texts": texts, "info": model.info()}))
"""


@pytest.mark.parametrize("kernel", [None, "mac", "lut"], ids=["chosen", "mac", "lut"])
@pytest.mark.parametrize("which", ["embedded", "tinyA"])
def test_inference_path_runs_without_numpy_and_matches_the_engine(which: str, kernel: str | None,
                                                                   monkeypatch) -> None:
    """Each ternary path (forced, or left to the choice) loads and decodes without numpy."""
    if kernel:
        monkeypatch.setenv("BITNET_KERNEL", kernel)
    path = "" if which == "embedded" else str(testdata_path("tinyA", "tinyA-i2s.gguf"))
    model = bitnet.load(path or None, n_threads=1)
    prompts = [model.tokenize(p) for p in PROMPTS]
    stops = ["e t", "\n\n"]     # the engine's held-back text and stop rule, in the browser's path too
    proc = subprocess.run([sys.executable, "-c", NO_NUMPY, path, json.dumps(prompts), json.dumps(stops)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    for ids in prompts:
        native = model.generate(ids, max_tokens=32, temperature=0, repeat_penalty=1.1, stop=stops)
        assert (result["tokens"][str(ids)], result["texts"][str(ids)]) == (native.tokens, native.text)
    # both files' F16 heads are small enough to be widened to F32 once at load, and decode the same tokens
    assert result["info"]["lm_head_type"] == "F32"
    assert result["info"]["eog_ids"] == sorted(model.tokenizer.eog_ids)
    assert result["info"]["bos_id"] == model.tokenizer.bos_id and result["info"]["add_bos"] == model.tokenizer.add_bos


def test_web_model_errors_are_clear(tmp_path: Path) -> None:
    from bitnet.web import WebModel

    bad = tmp_path / "notes.gguf"
    bad.write_text("this is not a model")
    with pytest.raises(bitnet.GGUFError, match="GGUF"):
        WebModel(str(bad))
    model = WebModel()
    with pytest.raises(ValueError, match="prompt is empty"):
        model.prompt("")
    with pytest.raises(ValueError, match="empty"):
        model.start([])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.start([model.n_vocab])
    with pytest.raises(bitnet.ContextOverflowError):
        model.start([1] * model.n_ctx)


def test_web_prompt_follows_the_run_template_rules(tinya_dir: Path) -> None:
    from bitnet.web import WebModel

    model = bitnet.load(tinya_dir / "tinyA-i2s.gguf", n_threads=1)
    web = WebModel(str(tinya_dir / "tinyA-i2s.gguf"))
    plan = web.prompt("Hello there")
    chat = model.render_chat([{"role": "user", "content": "Hello there"}])
    assert (plan["format"], plan["text"], plan["add_bos"], plan["stops"]) == (chat.format, chat.text, chat.add_bos,
                                                                              chat.stop_texts)
    assert web.prompt("Hello there", template="raw")["text"] == "Hello there"


# ---------------------------------------------------------------- the WebAssembly build
@pytest.fixture(scope="session")
def wasm_dist() -> Path:
    # a missing or half-installed toolchain (emscripten, Node.js, CPython 3.13 headers) skips, naming what to install
    check = subprocess.run([sys.executable, str(WASM / "build.py"), "--check"], capture_output=True, text=True,
                           timeout=60)
    if check.returncode != 0:
        pytest.skip(check.stderr.strip().splitlines()[-1] if check.stderr.strip() else "wasm toolchain incomplete")
    proc = subprocess.run(["bash", str(WASM / "build.sh")], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, f"wasm/build.sh failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return DIST


def _node_run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["node", str(WASM / "run.mjs"), *args], capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _native_run(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "bitnet", "run", "-q", "--temperature", "0", *args],
                          capture_output=True, text=True, timeout=300, check=True)
    return proc.stdout


def test_the_build_is_a_pyodide_wheel_with_simd128_side_modules(wasm_dist: Path) -> None:
    import zipfile

    build = json.loads((wasm_dist / "build.json").read_text())
    with zipfile.ZipFile(wasm_dist / build["wheel"]) as wheel:
        names = wheel.namelist()
        modules = [n for n in names if n.endswith(".cpython-313-wasm32-emscripten.so")]
        assert {m.split(".")[0] for m in modules} == {"bitnet/gguf/_reader", "bitnet/backends/cpu/kernels/_kernels",
                                                      "bitnet/backends/cpu/_forward", "bitnet/sampling/_sampler"}
        for m in modules:
            assert wheel.read(m)[:4] == b"\0asm"        # WebAssembly, not a host binary
        assert "bitnet/data/bitnet-tiny.gguf" in names
        assert "Tag: cp313-cp313-pyodide_2025_0_wasm32" in wheel.read(
            next(n for n in names if n.endswith(".dist-info/WHEEL"))).decode()
    for name in ("index.html", "app.mjs", "worker.mjs", "engine.mjs", "tokenizers.mjs", "jinja.mjs",
                 "pyodide/pyodide.mjs", "pyodide/pyodide.asm.wasm", "pyodide/python_stdlib.zip"):
        assert (wasm_dist / name).is_file(), name


@pytest.mark.parametrize("prompt", PROMPTS)
def test_node_greedy_equals_native_run(wasm_dist: Path, prompt: str) -> None:
    proc = _node_run("--prompt", prompt, "--max-tokens", "32", "--temperature", "0", "--stats")
    stats = json.loads(proc.stderr.strip().splitlines()[-1])
    assert stats["kernel"] == "wasm"                     # the SIMD128 kernels ran, not the scalar fallback
    model = bitnet.load(n_threads=1)
    assert stats["token_ids"] == model.generate(prompt, max_tokens=32, temperature=0).tokens
    assert proc.stdout == _native_run("--prompt", prompt, "-n", "32")


def test_node_greedy_equals_native_on_a_gguf_file(wasm_dist: Path) -> None:
    path = str(testdata_path("tinyA", "tinyA-i2s.gguf"))
    for prompt in PROMPTS[:2]:
        proc = _node_run("--model", path, "--prompt", prompt, "--max-tokens", "32", "--temperature", "0", "--stats")
        native = _native_run("--model", path, "--prompt", prompt, "-n", "32")
        assert proc.stdout == native
        stats = json.loads(proc.stderr.strip().splitlines()[-1])
        assert stats["tokens"] > 0


def test_node_tokenizer_matches_the_native_one(wasm_dist: Path, tmp_path: Path) -> None:
    """The JS tokenizer, built from the tokenizer.json the engine exports, encodes like the Rust one."""
    texts = ["Hello world", " It's 2024, isn't it? ", "naïve café — ünïcode ✓ 🙂", "\n\n  spaces\t\ttabs  ",
             "DON'T WE'LL 123456789", "<|begin_of_text|>special<|end_of_text|>"]
    files = [bitnet.default_model_path(), testdata_path("llama3-vocab.gguf")]
    script = tmp_path / "encode.mjs"
    script.write_text(f"""
import {{ Tokenizer }} from {json.dumps((wasm_dist / 'tokenizers.mjs').as_uri())};
import fs from "node:fs";
const [spec, texts] = process.argv.slice(2).map((f) => JSON.parse(fs.readFileSync(f, "utf8")));
const tok = new Tokenizer(spec, {{ clean_up_tokenization_spaces: false }});
console.log(JSON.stringify(texts.map((t) => tok.encode(t, {{ add_special_tokens: false }}).ids)));
""")
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    from bitnet.gguf import GGUFReader
    from bitnet.tokenizer_spec import spec_from_gguf_metadata

    for path in files:
        with GGUFReader(path) as reader:
            spec = spec_from_gguf_metadata(reader.metadata)
        (tmp_path / "spec.json").write_text(spec.to_json())
        proc = subprocess.run(["node", str(script), str(tmp_path / "spec.json"), str(tmp_path / "texts.json")],
                              capture_output=True, text=True, timeout=60, check=True)
        tok = bitnet.load_tokenizer(path)
        assert json.loads(proc.stdout) == [tok.encode(t, add_bos=False) for t in texts], path.name


def test_the_pyodide_smoke_test_passes_under_node(wasm_dist: Path, tmp_path: Path) -> None:
    """wasm/smoke_test.py is what a networked `cibuildwheel --platform pyodide` runs on its wheel: run it here."""
    script = tmp_path / "smoke.mjs"
    script.write_text(f"""
import {{ Engine }} from {json.dumps((wasm_dist / 'engine.mjs').as_uri())};
import fs from "node:fs";
const engine = await Engine.start();
engine.pyodide.runPython(fs.readFileSync({json.dumps(str(WASM / 'smoke_test.py'))}, "utf8"));
""")
    proc = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ok:" in proc.stdout and "wasm kernels" in proc.stdout


def test_node_bad_input_is_a_clear_error(wasm_dist: Path, tmp_path: Path) -> None:
    bad = tmp_path / "notes.gguf"
    bad.write_text("this is not a model")
    proc = _node_run("--model", str(bad), "--prompt", "hi", check=False)
    assert proc.returncode != 0 and "GGUF" in proc.stderr and proc.stdout == ""
    proc = _node_run("--prompt", "", check=False)
    assert proc.returncode != 0 and "prompt is empty" in proc.stderr
    proc = _node_run("--prompt", "hi", "--max-tokens", "lots", check=False)
    assert proc.returncode != 0 and "--max-tokens" in proc.stderr


# ---------------------------------------------------------------- the JS module bitnet_wasm.js
# The product description's example, as written.
DESCRIBED_EXAMPLE = """import init, { BitNetModel } from './pkg/bitnet_wasm.js';
await init();
const model = new BitNetModel('model.gguf');
const response = await model.generate('Hello, world!');
"""


@pytest.fixture
def app_dir(wasm_dist: Path, tmp_path: Path) -> Path:
    """A folder laid out as the example expects: ./pkg is the build, model.gguf the embedded model."""
    (tmp_path / "pkg").symlink_to(wasm_dist, target_is_directory=True)
    shutil.copy(bitnet.default_model_path(), tmp_path / "model.gguf")
    return tmp_path


def _node_script(app_dir: Path, name: str, source: str, **env: str) -> subprocess.CompletedProcess:
    (app_dir / name).write_text(source)
    return subprocess.run(["node", name], cwd=app_dir, capture_output=True, text=True, timeout=300,
                          env=child_env(**env))


def test_the_described_js_example_runs_as_written(app_dir: Path, monkeypatch) -> None:
    """Default settings sample with a fresh seed unless BITNET_SEED gives one, which the Node build hands to the
    engine as the native one reads it: the same seed gives the native API's text."""
    proc = _node_script(app_dir, "app.mjs", DESCRIBED_EXAMPLE + "console.log(response);\n", BITNET_SEED="7")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    monkeypatch.setenv("BITNET_SEED", "7")
    native = bitnet.load(str(app_dir / "model.gguf"), n_threads=1).generate("Hello, world!")
    assert native.tokens and proc.stdout == native.text + "\n"


def test_js_module_streams_stops_and_queues_like_the_engine(app_dir: Path) -> None:
    script = """import init, { BitNetModel } from './pkg/bitnet_wasm.js';
import { readFile } from 'node:fs/promises';
const first = init();
const same = init() === first;
await first;
const model = new BitNetModel(new Uint8Array(await readFile('model.gguf')), { name: 'tiny.gguf' });
const greedy = { maxTokens: 24, temperature: 0 };
const pieces = [];
const run = model.stream('Love is', greedy);
let step;
while (!(step = await run.next()).done) pieces.push(step.value);
const stopped = new AbortController();
stopped.abort();
const early = model.stream('Love is', { ...greedy, signal: stopped.signal });
while (!(step = await early.next()).done);
// two generations asked at once run one after the other (they share the model's KV cache)
const both = await Promise.all([model.generate('Love is', greedy), model.generate('Love is', greedy)]);
let unknown;
await model.generate('Love is', { maxToken: 3 }).catch((e) => { unknown = e.message; });
const url = await new BitNetModel(new URL('model.gguf', import.meta.url)).generate('Love is', greedy);
console.log(JSON.stringify({ same, pieces, info: model.info, both, early: step.value.finishReason, unknown, url }));
"""
    proc = _node_script(app_dir, "stream.mjs", script)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    native = bitnet.load(n_threads=1).generate("Love is", max_tokens=24, temperature=0).text
    assert out["same"] and len(out["pieces"]) > 1 and "".join(out["pieces"]) == native
    assert out["both"] == [native, native] and out["url"] == native
    assert out["info"]["kernel"] == "wasm" and out["info"]["path"].endswith("/tiny.gguf")
    assert out["early"] == "stopped"
    assert "unknown option maxToken" in out["unknown"]


def test_js_module_load_errors_reject_with_one_line_naming_the_file(app_dir: Path) -> None:
    (app_dir / "notes.gguf").write_text("this is not a model")
    script = """import { BitNetModel } from './pkg/bitnet_wasm.js';
new BitNetModel('never-awaited.gguf');   // a failed load nobody asks about is no unhandled rejection
for (const source of ['missing.gguf', 'notes.gguf']) {
  const model = new BitNetModel(source);
  for (const promise of [model.generate('Hello'), model.ready]) {
    await promise.then(() => console.log('loaded?'), (e) => console.log(e.message));
  }
}
"""
    proc = _node_script(app_dir, "errors.mjs", script)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["cannot load missing.gguf: no such file"] * 2
    assert lines[2] == lines[3] and lines[2].startswith("cannot load notes.gguf: GGUF header: not a GGUF file")
    assert len(lines) == 4


TS_USAGE = """import init, { BitNetModel, type GenerationResult, type ModelInfo } from "./pkg/bitnet_wasm.js";
await init();
const model = new BitNetModel("model.gguf");
const info: ModelInfo = await model.ready;
const text: string = await model.generate("Love is", { maxTokens: 8, temperature: 0, stop: ["\\n\\n"] });
const run = model.stream("Love is", { maxTokens: 8, temperature: 0, signal: new AbortController().signal });
let step: IteratorResult<string, GenerationResult>;
while (!(step = await run.next()).done);
const result: GenerationResult = step.value;
model.free();
console.log(JSON.stringify({ kernel: info.kernel, text, result: result.text, finish: result.finishReason }));
"""
TS_MISUSE = """import { BitNetModel } from "./pkg/bitnet_wasm.js";
const model = new BitNetModel("model.gguf");
await model.generate("Love is", { maxToken: 8 });
"""
# The declared exports and BitNetModel members (TypeScript's reading of the .d.ts) against the module's own.
TS_EXPORTS = """import { createRequire } from "node:module";
const ts = createRequire(PACKAGE_JSON)("typescript");
const dts = "pkg/bitnet_wasm.d.ts";
const program = ts.createProgram([dts], { strict: true, lib: ["lib.es2022.d.ts", "lib.dom.d.ts"] });
const checker = program.getTypeChecker();
const values = checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(dts)))
  .filter((s) => s.flags & ts.SymbolFlags.Value);
const cls = values.find((s) => s.name === "BitNetModel");
const module = await import("./pkg/bitnet_wasm.js");
const instance = new module.BitNetModel();
await instance.ready;
const own = [...Object.getOwnPropertyNames(module.BitNetModel.prototype), ...Object.keys(instance)];
console.log(JSON.stringify({
  declared: [values.map((s) => s.name).sort(),
             checker.getDeclaredTypeOfSymbol(cls).getProperties().map((p) => p.name).sort()],
  actual: [Object.keys(module).sort(), own.filter((n) => n !== "constructor").sort()],
  diagnostics: ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\\n")),
}));
"""


def test_typescript_declarations_type_the_module(app_dir: Path) -> None:
    """bitnet_wasm.d.ts (TypeScript, a devDependency of wasm/package.json) compiles a strict usage that then runs
    on the module, rejects a misspelt option, and declares exactly the module's exports and members."""
    tsc = WASM / "node_modules" / "typescript" / "bin" / "tsc"
    assert tsc.is_file(), "typescript is missing: wasm/build.sh installs wasm/package.json's devDependencies"
    flags = ["--strict", "--target", "es2022", "--module", "nodenext", "--lib", "es2022,dom"]
    (app_dir / "usage.mts").write_text(TS_USAGE)
    (app_dir / "misuse.mts").write_text(TS_MISUSE)
    proc = subprocess.run(["node", str(tsc), *flags, "usage.mts"], cwd=app_dir, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout
    proc = subprocess.run(["node", "usage.mjs"], cwd=app_dir, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["kernel"] == "wasm" and out["text"] == out["result"] and out["finish"] == "length"
    proc = subprocess.run(["node", str(tsc), *flags, "--noEmit", "misuse.mts"], cwd=app_dir, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and "'maxToken' does not exist in type 'GenerateOptions'" in proc.stdout
    script = TS_EXPORTS.replace("PACKAGE_JSON", json.dumps(str(WASM / "package.json")))
    proc = _node_script(app_dir, "exports.mjs", script)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["diagnostics"] == [] and out["declared"] == out["actual"]


# ---------------------------------------------------------------- a real browser
class _StaticFiles(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                      ".wasm": "application/wasm"}

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def page(wasm_dist: Path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra has it)")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_StaticFiles, directory=wasm_dist))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        tab = browser.new_page()
        tab.on("pageerror", lambda e: errors.append(str(e)))
        # Nothing but the local server: any other address would be a dependency on the network.
        tab.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
            f"http://127.0.0.1:{server.server_port}/") or route.request.url.startswith("data:") else route.abort())
        tab.goto(f"http://127.0.0.1:{server.server_port}/index.html")
        _wait(tab, "ready")
        tab.errors = errors
        yield tab
        browser.close()
    server.shutdown()


def _wait(tab, *states: str) -> str:
    tab.wait_for_function(f"{json.dumps(list(states) + ['error'])}.includes(document.body.dataset.state)",
                          timeout=120_000)
    return tab.evaluate("document.body.dataset.state")


def _generate(tab, prompt: str, max_tokens: int) -> str:
    tab.fill("#prompt", prompt)
    tab.fill("#max-tokens", str(max_tokens))
    tab.fill("#temperature", "0")
    tab.click("#generate")
    return _wait(tab, "done")


def test_browser_page_generates_the_native_text(page) -> None:
    assert "kernels: wasm" in page.inner_text("#model-info")
    prompt = PROMPTS[0]
    assert _generate(page, prompt, 32) == "done", page.inner_text("#error")
    native = _native_run("--prompt", prompt, "-n", "32")
    assert page.eval_on_selector("#output", "e => e.textContent") + "\n" == native
    assert "tokens/s" in page.inner_text("#speed") and "32 tokens" in page.inner_text("#status")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "wasm-page.png"), full_page=True)
    assert page.errors == []


def test_browser_stop_button_ends_the_generation(page) -> None:
    page.fill("#max-tokens", "200")
    page.evaluate("document.getElementById('generate').click(); document.getElementById('stop').click()")
    assert _wait(page, "done") == "done"
    assert "(stopped)" in page.inner_text("#status")
    assert not page.is_disabled("#generate")


def test_browser_bad_input_shows_an_error(page, tmp_path: Path) -> None:
    page.fill("#prompt", "")
    page.click("#generate")
    assert "prompt is empty" in page.inner_text("#error")
    bad = tmp_path / "holiday.gguf"
    bad.write_bytes(b"PK\x03\x04 not a model at all")
    page.set_input_files("#model-file", str(bad))
    assert _wait(page, "ready") == "error"
    assert "GGUF" in page.inner_text("#error")
    # the embedded model is still loaded and still works
    assert _generate(page, "Love is", 8) == "done"
    assert page.inner_text("#error") == ""


def test_browser_loads_a_gguf_the_user_picks(page) -> None:
    path = testdata_path("tinyA", "tinyA-i2s.gguf")
    page.set_input_files("#model-file", str(path))
    assert _wait(page, "ready") == "ready", page.inner_text("#error")
    assert "tinyA-i2s.gguf" in page.inner_text("#model-info")
    assert _generate(page, PROMPTS[1], 32) == "done"
    native = _native_run("--model", str(path), "--prompt", PROMPTS[1], "-n", "32")
    assert page.eval_on_selector("#output", "e => e.textContent").rstrip("\n") == native.rstrip("\n")


def test_browser_js_module_fetches_a_model_url(page) -> None:
    """The example's constructor in a page, with a URL: the model is fetched; a missing one rejects generate."""
    page.route("**/models/hello.gguf", lambda route: route.fulfill(path=str(bitnet.default_model_path())))
    out = page.evaluate("""async () => {
      const { default: init, BitNetModel } = await import(new URL("bitnet_wasm.js", location.href).href);
      await init();
      const model = new BitNetModel("models/hello.gguf");
      const text = await model.generate("Hello, world!", { maxTokens: 32, temperature: 0 });
      const error = await new BitNetModel("models/missing.gguf").generate("Hi").then(() => "", (e) => e.message);
      return { text, error, path: model.info.path };
    }""")
    native = bitnet.load(n_threads=1).generate("Hello, world!", max_tokens=32, temperature=0).text
    assert out["text"] == native and out["path"].endswith("/hello.gguf")
    assert out["error"].startswith("cannot load models/missing.gguf: HTTP 404")
    assert page.errors == []


def test_the_head_is_widened_only_below_the_budget_and_scores_the_same() -> None:
    from array import array

    from bitnet.backends.cpu._forward import Context

    from bitnet.backends import build
    from bitnet.gguf import GGMLType, GGUFReader

    reader = GGUFReader(bitnet.default_model_path())
    n_bytes = 4 * reader.tensors["token_embd.weight"].n_elements
    logits = {}
    for budget, head_type in ((n_bytes, GGMLType.F16), (n_bytes + 1, GGMLType.F32)):
        transformer, hp, _ = build(reader, widen_head_below=budget)
        assert transformer.head_type == head_type
        out = array("f", bytes(4 * hp.n_vocab))
        transformer.forward(Context(transformer, 16), [hp.n_vocab - 2, 5, 17, 300], 0,
                            memoryview(out).cast("B").cast("f", (1, hp.n_vocab)), False)
        logits[head_type] = list(out)
    # the same values through another kernel: equal up to the order of float additions
    assert logits[GGMLType.F32] == pytest.approx(logits[GGMLType.F16], rel=1e-5, abs=1e-5)
