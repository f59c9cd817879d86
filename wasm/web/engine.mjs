// The browser build's engine, under the public module bitnet_wasm.js (which the page's worker and run.mjs use):
// Pyodide runs the compiled core (bitnet.web, the WebAssembly wheel); this module turns text into token ids and
// back with @huggingface/tokenizers, renders Jinja chat templates with @huggingface/jinja, and drives generation
// one token per call so that a caller can show text as it comes and stop between tokens.
import { Tokenizer } from "./tokenizers.mjs";
import { Template } from "./jinja.mjs";

// Where this file lives: the build (dist/) holds the runtime, the wheel and build.json beside it.
const HERE = new URL(".", import.meta.url);
const IS_NODE = typeof process !== "undefined" && process.versions?.node !== undefined;

async function readBytes(url) {
  if (IS_NODE) {
    const { readFile } = await import("node:fs/promises");
    return new Uint8Array(await readFile(url));
  }
  const response = await fetch(url);
  if (!response.ok) throw new Error(`cannot fetch ${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

// Sampling options by their Python names: an option left out gets the engine's own default
// (bitnet.generation.DEFAULTS), so the page and `bitnet run` give the same text.
const SETTING_NAMES = Object.freeze({
  maxTokens: "max_tokens", temperature: "temperature", topK: "top_k", topP: "top_p", minP: "min_p",
  repeatPenalty: "repeat_penalty", seed: "seed",
});
const OPTION_NAMES = new Set([...Object.keys(SETTING_NAMES), "stop", "template", "signal"]);
// The environment variables that change what is generated (bitnet.settings): Pyodide sees none of the
// process's own, so under Node these are handed on, giving `BITNET_SEED=7 node ...` its native meaning.
const PASSED_ENV = ["BITNET_SEED", "BITNET_DETERMINISTIC"];

export class Engine {
  static async start() {
    const { loadPyodide } = await import(new URL("pyodide/pyodide.mjs", HERE).href);
    const indexURL = IS_NODE ? new URL("pyodide/", HERE).pathname : new URL("pyodide/", HERE).href;
    const env = {};
    for (const name of IS_NODE ? PASSED_ENV : []) if (process.env[name] !== undefined) env[name] = process.env[name];
    const pyodide = await loadPyodide({ indexURL, env });
    const build = JSON.parse(new TextDecoder().decode(await readBytes(new URL("build.json", HERE))));
    // The wheel goes into Pyodide's file system and is installed from there: the same path under Node and in
    // a browser, and its extension modules are loaded as side modules on import.
    const wheelPath = `/tmp/${build.wheel}`;
    pyodide.FS.writeFile(wheelPath, await readBytes(new URL(build.wheel, HERE)));
    pyodide.runPython(`
import sys, zipfile, site
zipfile.ZipFile(${JSON.stringify(wheelPath)}).extractall(site.getsitepackages()[0])
`);
    const web = pyodide.pyimport("bitnet.web");
    return new Engine(pyodide, web, build);
  }

  constructor(pyodide, web, build) {
    this.pyodide = pyodide;
    this.web = web;
    this.build = build;
  }

  // source: undefined/null for the embedded model, or {name, bytes}: a GGUF file's contents (a file the user
  // picked, or one run.mjs read), written into Pyodide's file system and loaded from there.
  loadModel(source) {
    let path = null;
    if (source?.bytes) {
      path = `/tmp/models/${source.name.replace(/[^\w.-]/g, "_") || "model.gguf"}`;
      this.pyodide.FS.mkdirTree("/tmp/models");
      this.pyodide.FS.writeFile(path, source.bytes);
    }
    try {
      return new Model(this, this.callPython(() => this.web.WebModel(path)));
    } catch (e) {
      // The caller names its file: the copy's path in Pyodide's file system says nothing more.
      if (path) e.message = e.message.replaceAll(`${path}: `, "");
      throw e;
    } finally {
      // The reader has mapped (that is, copied into the wasm heap) what it needs: the file's own copy can go.
      if (path) this.pyodide.FS.unlink(path);
    }
  }

  // Python exceptions arrive as PythonError with the whole traceback; keep its last line, the message (without
  // the module path of the engine's own error classes, whose messages stand alone).
  callPython(fn) {
    try {
      return fn();
    } catch (e) {
      if (e?.type) {
        const lines = String(e.message).trim().split("\n");
        throw new Error(lines[lines.length - 1].replace(/^bitnet\.errors\.\w+: /, ""));
      }
      throw e;
    }
  }
}

export class Model {
  constructor(engine, py) {
    this.engine = engine;
    this.py = py;
    this.info = py.info().toJs({ dict_converter: Object.fromEntries });
    this.tokenizer = new Tokenizer(JSON.parse(py.tokenizer_json()), { clean_up_tokenization_spaces: false });
  }

  // The prompt's token ids under the template rules of `bitnet run --prompt-template auto|raw`.
  promptIds(text, template = "auto") {
    const plan = this.engine.callPython(() => this.py.prompt(text, template)).toJs({ dict_converter: Object.fromEntries });
    let promptText = plan.text;
    let addBos = plan.add_bos;
    if (plan.format === "jinja") {
      promptText = new Template(plan.template).render({
        messages: [{ role: "user", content: text }], bos_token: plan.bos_token, eos_token: plan.eos_token,
        add_generation_prompt: true,
      });
      addBos = plan.bos_token && promptText.startsWith(plan.bos_token) ? false : null;
    }
    const ids = this.tokenizer.encode(promptText, { add_special_tokens: false }).ids;
    if (addBos ?? this.info.add_bos) ids.unshift(this.info.bos_id);
    if (this.info.add_eos) ids.push(this.info.eos_id);
    return { ids, stops: plan.stops };
  }

  // Generate for `text`: yields text as it becomes final and returns {text, tokens, promptTokens, finishReason,
  // stats}; options.signal, once aborted, ends the generation between tokens (finishReason "stopped").
  // Sampling, stop sequences, held-back text and detokenization are the engine's (bitnet.generation, in
  // Python): this side only shows the text.
  async *stream(text, options = {}) {
    if (typeof text !== "string") throw new TypeError(`the prompt must be a string, got ${typeof text}`);
    const unknown = Object.keys(options).filter((name) => !OPTION_NAMES.has(name));
    if (unknown.length) throw new TypeError(`unknown option ${unknown.join(", ")} (options: ${[...OPTION_NAMES].join(", ")})`);
    const { ids, stops } = this.promptIds(text, options.template ?? "auto");
    const toPy = (v) => this.engine.pyodide.toPy(v);
    const settings = { stop: toPy([...stops, ...[options.stop ?? []].flat()]) };
    for (const [name, pyName] of Object.entries(SETTING_NAMES)) {
      if (options[name] !== undefined && options[name] !== null) settings[pyName] = options[name];
    }
    const gen = this.engine.callPython(() => this.py.start.callKwargs(toPy(ids), settings));
    let out = "";
    const t0 = performance.now();
    let firstTokenAt = null;
    let lastYield = t0;
    let result;
    try {
      while (!gen.finished) {
        const piece = options.signal?.aborted ? gen.stop() : this.engine.callPython(() => gen.next_text());
        if (firstTokenAt === null) firstTokenAt = performance.now();
        if (piece) { out += piece; yield piece; }
        // Give the event loop a turn (the page draws, the stop button is heard) every frame or so, not every
        // token: timers are clamped to >= 1-4 ms, longer than a small model's token.
        if (performance.now() - lastYield > 15) {
          await new Promise((resolve) => setTimeout(resolve, 0));
          lastYield = performance.now();
        }
      }
      const stats = gen.stats().toJs({ dict_converter: Object.fromEntries });
      result = { tokens: gen.tokens.toJs(), finishReason: gen.finish_reason, stats };
    } finally {
      gen.destroy();
    }
    const { stats } = result;
    const decodeMs = firstTokenAt === null ? 0 : performance.now() - firstTokenAt;
    const n = result.tokens.length;
    stats.wall_tokens_per_s = n > 1 && decodeMs > 0 ? (n - 1) / (decodeMs / 1000) : 0;
    stats.wall_s = (performance.now() - t0) / 1000;
    return { text: out, tokens: result.tokens, promptTokens: ids.length, finishReason: result.finishReason, stats };
  }
}
