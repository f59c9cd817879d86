// The page's engine thread: Pyodide and the model live here, so the page stays responsive while it decodes.
// Messages in: {type: "load", file?: {name, bytes}}, {type: "generate", id, prompt, options}, {type: "stop", id}.
// Messages out: {type: "status", text}, {type: "ready", info}, {type: "text", piece}, {type: "done", result},
// {type: "error", message}.
import { Engine } from "./engine.mjs";

let engine = null;
let model = null;
const stopped = new Set();   // ids of generations asked to stop (a stop may arrive before its generation starts)

async function handle(msg) {
  if (!engine) {
    postMessage({ type: "status", text: "starting Python (Pyodide) and installing the engine…" });
    engine = await Engine.start();
  }
  if (msg.type === "load") {
    postMessage({ type: "status", text: msg.file ? `loading ${msg.file.name}…` : "loading the embedded model…" });
    const next = engine.loadModel(msg.file ?? null);   // a bad file throws here and leaves the old model in use
    if (model) model.py.destroy();
    model = next;
    postMessage({ type: "ready", info: model.info });
  } else if (msg.type === "generate") {
    if (!model) throw new Error("no model is loaded");
    try {
      const result = await model.generate(msg.prompt, msg.options,
        (piece) => postMessage({ type: "text", piece }), () => stopped.has(msg.id));
      postMessage({ type: "done", result });
    } finally {
      stopped.delete(msg.id);
    }
  }
}

// One request at a time, in order; "stop" is handled at once (it must reach a running generation).
let queue = Promise.resolve();
onmessage = ({ data }) => {
  if (data.type === "stop") { stopped.add(data.id); return; }
  queue = queue.then(() => handle(data)).catch((e) => postMessage({ type: "error", message: String(e?.message ?? e) }));
};
