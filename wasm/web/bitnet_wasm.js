// The browser build's one JS entry point, shaped like a wasm-bindgen package (dist/ is the `pkg` folder):
//   import init, { BitNetModel } from "./pkg/bitnet_wasm.js";
//   await init();
//   const model = new BitNetModel("model.gguf");
//   const response = await model.generate("Hello, world!");
// init() starts the runtime (Pyodide and the engine's wheel); BitNetModel loads a GGUF and generates through
// engine.mjs, whose loop drives the engine's decoding in Python: this file only finds the model's bytes and keeps
// one generation at a time per model. Types: bitnet_wasm.d.ts.
import { Engine } from "./engine.mjs";

const IS_NODE = typeof process !== "undefined" && process.versions?.node !== undefined;
let started = null;
let engine = null;

// Starts the runtime once per page or process: every call returns the same promise (after a failure, a new try).
export default function init() {
  started ??= Engine.start().then((e) => { engine = e; }, (e) => { started = null; throw e; });
  return started;
}

function sourceName(source) {
  if (source === null || source === undefined) return "the embedded model";
  if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) return "the model's bytes";
  return String(source);
}

async function readSource(source) {
  if (source instanceof ArrayBuffer) return new Uint8Array(source);
  if (ArrayBuffer.isView(source)) return new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
  if (typeof source !== "string" && !(source instanceof URL)) {
    throw new TypeError(`a model is a path, a URL or bytes (ArrayBuffer, Uint8Array), got ${typeof source}`);
  }
  const text = String(source);
  // Node: a path or file: URL is read from the file system; an http(s) URL is fetched, as in a browser.
  if (IS_NODE && !/^(https?|data|blob):/i.test(text)) {
    const { readFile } = await import("node:fs/promises");
    try {
      return new Uint8Array(await readFile(/^file:/i.test(text) ? new URL(text) : text));
    } catch (e) {
      throw new Error(e.code === "ENOENT" ? "no such file" : e.message);
    }
  }
  const response = await fetch(source);
  if (!response.ok) throw new Error(`HTTP ${response.status} ${response.statusText}`.trim());
  return new Uint8Array(await response.arrayBuffer());
}

export class BitNetModel {
  #model = null;
  #turn = Promise.resolve();
  #freed = false;

  // source: a path (Node), a URL, the file's bytes, or nothing for the embedded model; options.name names bytes.
  // A constructor cannot wait: loading starts here, `ready` resolves to the model's info once it is loaded, and
  // generate/stream wait for it. A failed load rejects `ready` and every generation with one line naming the file.
  constructor(source = null, { name } = {}) {
    const label = name ?? sourceName(source);
    this.ready = (async () => {
      await init();
      let file = null;
      try {
        if (source !== null && source !== undefined) {
          const fileName = typeof source === "string" || source instanceof URL ? String(source) : name;
          file = { name: fileName?.split(/[?#]/)[0].split("/").pop() || "model.gguf", bytes: await readSource(source) };
        }
        this.#model = engine.loadModel(file);
      } catch (e) {
        throw new Error(`cannot load ${label}: ${e.message}`);
      }
      return this.#model.info;
    })();
    this.ready.catch(() => {});   // reported to whoever awaits ready or generates; never an unhandled rejection
  }

  // The loaded model's facts (architecture, sizes, kernel variant, tokenizer ids); null until `ready`.
  get info() {
    return this.#model?.info ?? null;
  }

  // The text generated for `prompt` (options: maxTokens, temperature, topK, topP, minP, repeatPenalty, seed,
  // stop, template "auto"|"raw", signal).
  async generate(prompt, options = {}) {
    let text = "";
    for await (const piece of this.stream(prompt, options)) text += piece;
    return text;
  }

  // Yields the text as it becomes final; the generator's return value (the `done` step of next()) is
  // {text, tokens, promptTokens, finishReason, stats}. An aborted options.signal ends it between tokens.
  async *stream(prompt, options = {}) {
    const release = await this.#exclusive();
    try {
      await this.ready;
      if (!this.#model) throw new Error("this model was freed");
      return yield* this.#model.stream(prompt, options);
    } finally {
      release();
    }
  }

  // Releases the model's memory (the wasm heap) once the generations already asked for have run.
  free() {
    if (this.#freed) return;
    this.#freed = true;
    this.#turn = this.#turn.then(() => this.ready).then(() => { this.#model.py.destroy(); this.#model = null; }, () => {});
  }

  // Generations of one model run one after another: they share its KV cache.
  #exclusive() {
    const previous = this.#turn;
    let release;
    this.#turn = new Promise((resolve) => { release = resolve; });
    return previous.then(() => release);
  }
}
