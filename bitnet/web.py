"""The engine as the browser build (Pyodide) uses it: load a GGUF, then evaluate and sample one token per call.

Nothing here imports numpy or the Rust `tokenizers`, which Pyodide's npm runtime does not have: logits and
token histories are stdlib `array`s handed to the compiled forward pass and sampler as buffers. Text is the
page's side: it tokenizes with `@huggingface/tokenizers` from `tokenizer_json()` (the same tokenizer.json the
native engine builds its Rust tokenizer from, see `bitnet.tokenizer_spec`) and renders Jinja chat templates
with `@huggingface/jinja`. The prompt rules (`prompt()`) follow the native `bitnet run`, and `Generation` drives
the engine's own decoding core (`bitnet.generation`: sampling, stop sequences, held-back text, detokenization),
so the same prompt gives the same tokens and text; the page only shows the text. `wasm/README.md` says why.

Single-threaded: the browser build has no OpenMP, and the kernels are the WebAssembly SIMD128 ones.
"""
from __future__ import annotations

import time
from array import array
from pathlib import Path

from bitnet.chat import detect_format, jinja_stop_texts, render_chat
from bitnet.generation import Decoding, SamplingParams
from bitnet.gguf import GGUFReader
from bitnet.limits import check_tokenizer_covers_head, prompt_token_ids
from bitnet.paths import default_model_path
from bitnet.tokenizer_spec import StreamDecoder, spec_from_gguf_metadata

__all__ = ["DEFAULT_CTX", "Generation", "WebModel"]

# A browser tab has a few GB of wasm32 memory at most: 2048 positions keep a 2B model's KV cache at 0.3 GB.
DEFAULT_CTX = 2048
# An F16 LM head up to this size as F32 is widened once at load (SIMD128 has no half-precision conversion: the
# widening is most of the head's time per token). The 2B model's (1.3 GB as F32) stays F16.
WIDEN_HEAD_BELOW = 256 * 2**20


class WebModel:
    """A GGUF model (the embedded one by default) bound for the compiled forward pass, with its tokenizer
    description. `start()` begins a generation."""

    def __init__(self, path: str | None = None, n_ctx: int | None = None) -> None:
        from bitnet.backends import build

        t0 = time.perf_counter()
        self.path = Path(path) if path else default_model_path()
        if not self.path.is_file():
            raise FileNotFoundError(f"model file not found: {self.path}")
        self.reader = GGUFReader(self.path)
        self.metadata = self.reader.metadata
        self.transformer, self.hparams, _ = build(self.reader, widen_head_below=WIDEN_HEAD_BELOW)
        self.tokenizer = spec_from_gguf_metadata(self.metadata)
        self.pieces = self.tokenizer.pieces()
        self.n_vocab = self.hparams.n_vocab
        check_tokenizer_covers_head(len(self.tokenizer.tokens), self.n_vocab)
        self.n_ctx = n_ctx or min(self.hparams.n_ctx_train, DEFAULT_CTX)
        if self.n_ctx < 2:
            raise ValueError(f"n_ctx must be an integer >= 2, got {self.n_ctx!r}")
        self.context = self.transformer.new_context(self.n_ctx)
        self.load_s = time.perf_counter() - t0

    @property
    def chat_template(self) -> str | None:
        return self.metadata.get("tokenizer.chat_template")

    def info(self) -> dict:
        """Facts the page shows and uses (plain JSON-able values)."""
        from bitnet.backends.cpu.kernels import active_variant
        from bitnet.gguf import GGMLType

        return {"path": str(self.path), "arch": self.hparams.arch, "n_vocab": self.n_vocab, "n_ctx": self.n_ctx,
                "n_layer": self.hparams.n_layer, "n_embd": self.hparams.n_embd, "kernel": active_variant(),
                "lm_head_type": GGMLType(self.transformer.head_type).name,
                "load_s": self.load_s, "chat_template": self.chat_template, **self.tokenizer.facts()}

    def tokenizer_json(self) -> str:
        return self.tokenizer.to_json()

    def prompt(self, text: str, template: str = "auto") -> dict:
        """How to turn the user's text into the prompt, as `bitnet run --prompt-template auto|raw` does.

        Returns {"format", "text", "add_bos", "stops"}; for a model whose template is neither a built-in format
        nor absent (format "jinja") "text" is None and the page renders `template` with @huggingface/jinja
        (messages = one user turn, bos_token/eos_token given here), then uses "stops" as well."""
        if not isinstance(text, str) or not text:
            raise ValueError("the prompt is empty")
        fmt = "raw" if template == "raw" else detect_format(self.chat_template)
        tok = self.tokenizer
        bos = tok.tokens[tok.bos_id] if tok.bos_id is not None else ""
        eos = tok.tokens[tok.eos_id] if tok.eos_id is not None else ""
        if fmt == "raw":
            return {"format": "raw", "text": text, "add_bos": None, "stops": []}
        if fmt == "jinja":
            return {"format": "jinja", "text": None, "add_bos": None, "template": self.chat_template,
                    "bos_token": bos, "eos_token": eos, "stops": jinja_stop_texts(self.chat_template, eos)}
        chat = render_chat([{"role": "user", "content": text}], template=self.chat_template, mode=fmt,
                           bos_token=bos, eos_token=eos)
        return {"format": chat.format, "text": chat.text, "add_bos": chat.add_bos, "stops": chat.stop_texts}

    def start(self, prompt_ids, stop=(), **settings) -> Generation:
        """Begin generating after `prompt_ids`; settings by name (max_tokens, temperature, top_k, top_p, min_p,
        repeat_penalty, seed), the rest the engine's defaults (bitnet.generation.DEFAULTS)."""
        params = SamplingParams.make(stop=list(stop), **settings)
        return Generation(self, prompt_token_ids(prompt_ids, self.n_vocab), params)


class Generation:
    """One prompt's generation, a token per `next_text()` call (so the page can draw and be stopped between
    tokens), through the engine's decoding core (bitnet.generation.Decoding): the same sampling, end of
    generation, stop sequences and held-back text as `bitnet run`. The page only shows the text it returns."""

    def __init__(self, model: WebModel, prompt_ids: list[int], params: SamplingParams) -> None:
        self.model = model
        self.prompt_ids = prompt_ids
        self.decoding = Decoding(prompt_ids, params, model.n_ctx, model.tokenizer.eog_ids,
                                 StreamDecoder(model.pieces))
        self._logits = array("f", bytes(4 * model.n_vocab))
        self._logits_2d = memoryview(self._logits).cast("B").cast("f", (1, model.n_vocab))
        self.prefill_s = self.decode_s = 0.0
        self._pos = 0               # tokens evaluated into the context

    @property
    def finished(self) -> bool:
        return self.decoding.finished

    @property
    def finish_reason(self) -> str | None:
        return self.decoding.finish_reason if self.finished else None

    @property
    def tokens(self) -> list[int]:
        return self.decoding.generated

    def next_text(self) -> str:
        """Evaluate one step (the prompt, or the last token) and choose the next token: the text that is now
        final (often empty, or what a stop sequence left). `finished` says when the generation has ended."""
        if self.finished:
            return ""
        t0 = time.perf_counter()
        if self._pos == 0:
            self._forward(self.prompt_ids, 0)
            self.prefill_s = time.perf_counter() - t0
        else:
            self._forward([self.decoding.last_token], self._pos)
            self.decode_s += time.perf_counter() - t0
        self._pos += 1 if self._pos else len(self.prompt_ids)
        return self.decoding.push(self._logits, self._pos - 1)

    def stop(self) -> str:
        """End the generation early (the page's stop button); returns the text still held back."""
        return self.decoding.cancel("stopped")

    def _forward(self, tokens: list[int], pos: int) -> None:
        self.model.transformer.forward(self.model.context, tokens, pos, self._logits_2d, False)

    def stats(self) -> dict:
        n_decode = max(len(self.tokens) - 1, 0)   # the first token comes out of the prompt's evaluation
        return {"prompt_tokens": len(self.prompt_ids), "tokens": len(self.tokens),
                "finish_reason": self.finish_reason, "prefill_s": self.prefill_s, "decode_s": self.decode_s,
                "decode_tokens_per_s": n_decode / self.decode_s if self.decode_s > 0 else 0.0}
