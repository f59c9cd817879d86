// Types of bitnet_wasm.js, the browser build's entry point (the build copies this file beside it).

/** Starts the runtime (Pyodide and the engine's wheel); every call returns the same promise. */
export default function init(): Promise<void>;

/** A path (Node), a URL (fetched), the GGUF file's bytes, or null/undefined for the embedded model. */
export type ModelSource = string | URL | ArrayBuffer | ArrayBufferView | null | undefined;

/** Sampling settings: what is left out gets the engine's defaults (bitnet.generation.DEFAULTS). */
export interface GenerateOptions {
  maxTokens?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repeatPenalty?: number;
  seed?: number;
  /** Text that ends the generation (not included), besides the chat template's own. */
  stop?: string | string[];
  /** "auto" (default): the model's chat template, as `bitnet run`; "raw": the prompt as it is. */
  template?: "auto" | "raw";
  /** Once aborted, the generation ends between tokens with the text so far (finishReason "stopped"). */
  signal?: AbortSignal;
}

export interface ModelInfo {
  path: string;
  arch: string;
  n_vocab: number;
  n_ctx: number;
  n_layer: number;
  n_embd: number;
  /** The kernel variant that runs: "wasm" (SIMD128). */
  kernel: string;
  lm_head_type: string;
  load_s: number;
  chat_template: string | null;
  kind: string;
  bos_id: number | null;
  eos_id: number | null;
  eog_ids: number[];
  add_bos: boolean;
  add_eos: boolean;
  add_space_prefix: boolean;
  vocab_size: number;
}

export interface GenerationStats {
  prompt_tokens: number;
  tokens: number;
  finish_reason: string;
  prefill_s: number;
  decode_s: number;
  decode_tokens_per_s: number;
  /** Tokens per second of the whole loop (JS included), after the first token. */
  wall_tokens_per_s: number;
  wall_s: number;
}

export interface GenerationResult {
  text: string;
  tokens: number[];
  promptTokens: number;
  /** "stop" (end of generation or a stop text), "length" (maxTokens or the context) or "stopped" (signal). */
  finishReason: string;
  stats: GenerationStats;
}

export class BitNetModel {
  /** Starts loading (and init()); a failed load rejects `ready` and every generation with one line. */
  constructor(source?: ModelSource, options?: { name?: string });
  /** Resolves to the model's info once it is loaded. */
  readonly ready: Promise<ModelInfo>;
  /** The loaded model's info; null until `ready`. */
  readonly info: ModelInfo | null;
  /** The text generated for `prompt`. */
  generate(prompt: string, options?: GenerateOptions): Promise<string>;
  /** Yields text as it becomes final; returns the whole result as the iterator's final value. */
  stream(prompt: string, options?: GenerateOptions): AsyncGenerator<string, GenerationResult, undefined>;
  /** Releases the model's memory once the generations already asked for have run. */
  free(): void;
}
