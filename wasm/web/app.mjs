// The page: controls and output here, the engine in a worker (worker.mjs).
const $ = (id) => document.getElementById(id);
const worker = new Worker(new URL("worker.mjs", import.meta.url), { type: "module" });
let generation = 0;   // id of the latest generation, which the stop button stops

function setBusy(value, generating = false) {
  $("generate").disabled = value;
  $("model-file").disabled = value;
  $("stop").disabled = !generating;
}

function showError(message) {
  $("error").textContent = message;
}

function describe(info) {
  const name = info.path.split("/").pop();
  return `${name}: ${info.arch}, ${info.n_layer} layers, n_embd ${info.n_embd}, vocabulary ${info.n_vocab}, ` +
    `kernels: ${info.kernel}, loaded in ${info.load_s.toFixed(2)} s`;
}

// Reads a number control; an empty optional one is undefined; anything invalid throws a readable error.
function numberFrom(id, { integer = false, optional = false } = {}) {
  const text = $(id).value.trim();
  if (text === "" && optional) return undefined;
  const value = Number(text);
  if (text === "" || !Number.isFinite(value) || value < 0 || (integer && !Number.isInteger(value))) {
    throw new Error(`${$(id).parentElement.firstChild.textContent.trim()} must be ${integer ? "a whole number" : "a number"} >= 0`);
  }
  return value;
}

worker.onmessage = ({ data }) => {
  if (data.type === "status") {
    $("status").textContent = data.text;
  } else if (data.type === "ready") {
    $("model-info").textContent = describe(data.info);
    $("status").textContent = "ready";
    document.body.dataset.state = "ready";
    setBusy(false);
  } else if (data.type === "text") {
    $("output").textContent += data.piece;
  } else if (data.type === "done") {
    const r = data.result;
    $("status").textContent = `done: ${r.tokens.length} tokens (${r.finishReason})`;
    $("speed").textContent = `${r.stats.wall_tokens_per_s.toFixed(1)} tokens/s`;
    document.body.dataset.state = "done";
    setBusy(false);
  } else if (data.type === "error") {
    showError(data.message);
    $("status").textContent = "error";
    document.body.dataset.state = "error";
    setBusy(false);
  }
};
worker.onerror = (e) => { showError(`the engine failed to start: ${e.message}`); document.body.dataset.state = "error"; };

$("generate").onclick = () => {
  showError("");
  const prompt = $("prompt").value;
  let options;
  try {
    if (!prompt.trim()) throw new Error("the prompt is empty: write something for the model to continue");
    options = { maxTokens: numberFrom("max-tokens", { integer: true }), temperature: numberFrom("temperature"),
                seed: numberFrom("seed", { integer: true, optional: true }) };
  } catch (e) {
    showError(e.message);
    document.body.dataset.state = "error";
    return;
  }
  $("output").textContent = "";
  $("speed").textContent = "";
  $("status").textContent = "generating…";
  document.body.dataset.state = "generating";
  setBusy(true, true);
  generation += 1;
  worker.postMessage({ type: "generate", id: generation, prompt, options });
};

$("stop").onclick = () => worker.postMessage({ type: "stop", id: generation });

$("model-file").onchange = async () => {
  const file = $("model-file").files[0];
  if (!file) return;
  showError("");
  setBusy(true);
  document.body.dataset.state = "loading";
  const bytes = new Uint8Array(await file.arrayBuffer());
  worker.postMessage({ type: "load", file: { name: file.name, bytes } }, [bytes.buffer]);
};

worker.postMessage({ type: "load" });
