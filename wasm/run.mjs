#!/usr/bin/env node
// The browser build under Node: node wasm/run.mjs --prompt TEXT [--max-tokens N] [--temperature T] [--seed S]
//   [--model FILE.gguf] [--prompt-template auto|raw] [--stats] [--warmup N]
// Runs the WebAssembly engine from wasm/dist/ (build it with `bash wasm/build.sh`) and prints only the generated
// text on stdout; --stats adds one JSON line of counts and speeds on stderr; --warmup N first generates N tokens
// that are not printed (for benchmarks: V8 compiles WebAssembly with a baseline compiler first and optimizes the
// hot functions while they run, so a first short generation measures partly unoptimized code).
import { parseArgs } from "node:util";

const USAGE = "usage: node wasm/run.mjs --prompt TEXT [--max-tokens N] [--temperature T] [--seed S] " +
  "[--model FILE.gguf] [--prompt-template auto|raw] [--stats] [--warmup N]";

function fail(message) {
  process.stderr.write(`run.mjs: ${message}\n`);
  process.exit(2);
}

function number(name, text, { integer = false, min = -Infinity } = {}) {
  const value = Number(text);
  if (text === undefined || text === "" || !Number.isFinite(value) || (integer && !Number.isInteger(value)) || value < min) {
    fail(`--${name} must be ${integer ? "an integer" : "a number"} >= ${min}, got ${JSON.stringify(text)}`);
  }
  return value;
}

let args;
try {
  args = parseArgs({
    options: {
      prompt: { type: "string", short: "p" }, "max-tokens": { type: "string", short: "n" },
      temperature: { type: "string" }, seed: { type: "string" }, model: { type: "string", short: "m" },
      "prompt-template": { type: "string" }, stats: { type: "boolean" }, warmup: { type: "string" }, help: { type: "boolean", short: "h" },
    },
  }).values;
} catch (e) {
  fail(`${e.message}\n${USAGE}`);
}
if (args.help) { console.log(USAGE); process.exit(0); }
if (!args.prompt) fail(`the prompt is empty\n${USAGE}`);
const options = {};
if (args["max-tokens"] !== undefined) options.maxTokens = number("max-tokens", args["max-tokens"], { integer: true, min: 0 });
if (args.temperature !== undefined) options.temperature = number("temperature", args.temperature, { min: 0 });
if (args.seed !== undefined) options.seed = number("seed", args.seed, { integer: true, min: 0 });
if (args["prompt-template"] !== undefined) {
  if (!["auto", "raw"].includes(args["prompt-template"])) fail("--prompt-template must be auto or raw");
  options.template = args["prompt-template"];
}

const warmup = args.warmup === undefined ? 0 : number("warmup", args.warmup, { integer: true, min: 0 });

const dist = new URL("dist/", import.meta.url);
let bitnet;
try {
  bitnet = await import(new URL("bitnet_wasm.js", dist).href);
} catch (e) {
  fail(`no WebAssembly build in ${dist.pathname} (run: bash wasm/build.sh): ${e.message}`);
}
try {
  const model = new bitnet.BitNetModel(args.model);
  await model.ready;
  if (warmup) await model.generate(args.prompt, { ...options, maxTokens: warmup });
  const pieces = model.stream(args.prompt, options);
  let step;
  while (!(step = await pieces.next()).done) process.stdout.write(step.value);
  const result = step.value;
  if (result.text && !result.text.endsWith("\n")) process.stdout.write("\n");
  if (args.stats) {
    process.stderr.write(JSON.stringify({ token_ids: result.tokens, prompt_tokens: result.promptTokens,
      finish_reason: result.finishReason, kernel: model.info.kernel, ...result.stats }) + "\n");
  }
} catch (e) {
  fail(process.env.BITNET_DEBUG ? e.stack : e.message);
}
