// The page's engine thread: Pyodide and the model live here, so the page stays responsive while it decodes.
// Messages in: {type: "load", file?: {name, bytes}}, {type: "generate", id, prompt, options}, {type: "stop", id}.
// Messages out: {type: "status", text}, {type: "ready", info}, {type: "text", piece}, {type: "done", result},
// {type: "error", message}.
import init, { BitNetModel } from "./bitnet_wasm.js";

let model = null;
const stops = new Map();   // generation id -> its AbortController, made when the request arrives

async function handle(msg) {
  if (msg.type === "load") {
    postMessage({ type: "status", text: "starting Python (Pyodide) and installing the engine…" });
    await init();
    postMessage({ type: "status", text: msg.file ? `loading ${msg.file.name}…` : "loading the embedded model…" });
    const next = new BitNetModel(msg.file?.bytes, { name: msg.file?.name });
    const info = await next.ready;   // a bad file throws here and leaves the old model in use
    model?.free();
    model = next;
    postMessage({ type: "ready", info });
  } else if (msg.type === "generate") {
    try {
      if (!model) throw new Error("no model is loaded");
      const pieces = model.stream(msg.prompt, { ...msg.options, signal: stops.get(msg.id).signal });
      let step;
      while (!(step = await pieces.next()).done) postMessage({ type: "text", piece: step.value });
      postMessage({ type: "done", result: step.value });
    } finally {
      stops.delete(msg.id);
    }
  }
}

// One request at a time, in order; "stop" is handled at once (it must reach a running generation).
let queue = Promise.resolve();
onmessage = ({ data }) => {
  if (data.type === "stop") { stops.get(data.id)?.abort(); return; }
  if (data.type === "generate") stops.set(data.id, new AbortController());
  queue = queue.then(() => handle(data)).catch((e) => postMessage({ type: "error", message: String(e?.message ?? e) }));
};
