"""`bitnet serve`: an OpenAI-compatible HTTP server (FastAPI on uvicorn; `pip install "bitnet-engine[server]"`).

    bitnet serve --model M.gguf [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--ctx-size N]
                 [--parallel N] [--prefill-chunk N] [--queue-size Q] [--threads T]
    python -m bitnet.server ...          (the same, without the `bitnet` command)
    bitnet serve --ray --replicas K ...  (K replicas behind Ray Serve: bitnet.server.ray_serve)

An unmodified `openai` client works against it (`OpenAI(base_url="http://127.0.0.1:8080/v1", api_key=...)`).

Endpoints
- `POST /v1/chat/completions`: `messages` (roles system/user/assistant, "developer" read as system; content a
  string or a list of text parts), rendered with the model's chat template under the rules of `Model.chat`
  (a model without a template gets the built-in BitNet format).
- `POST /v1/completions`: `prompt` (a string, or token ids; one prompt per request).
- Both take `max_tokens` (chat also `max_completion_tokens`), `temperature`, `top_p`, `stop` (a string or up to
  16), `seed` (-1: random), `stream`, `stream_options.include_usage`, `n` (1 only), `user`, and the extensions
  `top_k`, `min_p`, `repeat_penalty`. `model` is accepted whatever it names (one model per server). Fields not
  listed are ignored; a wrong type or value is a 400.
  Streams are server-sent events of OpenAI chunks ending with `data: [DONE]`; answers carry `usage`.
- `GET /v1/models`, `GET /v1/models/{id}`; `GET /health` (JSON: status, slots total/idle, queue depth, batch
  size; 503 while shutting down); `GET /metrics` (Prometheus text: requests, tokens, queue depth, batch size and
  steps, tokens/s).

Defaults: a sampling field a request leaves out takes the engine's default (`Model.generate`: temperature 0.8,
top_k 40, top_p 0.95, min_p 0.05, repeat_penalty 1.0), not OpenAI's documented temperature 1.0 / top_p 1.0, so
that the server, the Python API and the CLI agree for the same request; pass them explicitly for OpenAI's
values. `max_tokens` left out: chat runs to the end of the turn (or of the context), text completions stop after
16 tokens (OpenAI's default). Either way it is capped by the context left after the prompt; a prompt that does
not fit is a 400 (`context_length_exceeded`).

Serving: `--parallel N` slots, each a session with its own KV cache, decoded together by a continuous-batching
scheduler (bitnet.batching) on one thread: each forward step evaluates one new token of every running request,
reading the weights once for all of them, and a new request's prompt joins the running batch `--prefill-chunk`
tokens per step, so a long prompt does not freeze the others. Every request keeps its own sampling parameters,
seed and stop sequences, and its text is the one it would get alone (each row's logits are bit-identical to
an unbatched evaluation). A free slot whose cache shares the longest prefix with the prompt is chosen, so a
follow-up chat turn skips re-reading the conversation. Up to `--queue-size` more requests wait (FIFO); beyond
that the answer is 503. A client that disconnects stops its generation after the token being decoded and its
slot is free again at once. Errors are OpenAI-style JSON bodies (400, 401, 404, 405, 408, 413, 503).
A body must arrive within `--body-timeout` seconds (else 408), and a stream whose client takes no data for
`--send-timeout` seconds is closed, so slow or stalled clients hold a connection for a bounded time.
`--api-key` (or $BITNET_API_KEY) guards every /v1 route with `Authorization: Bearer KEY`; /health and /metrics
stay open. One log line per request on stderr. SIGINT/SIGTERM: stop accepting, turn the queue away, let running
requests finish within `--shutdown-timeout` seconds (then cancel them), exit 0.
"""
from bitnet.server.main import add_arguments, main, run

__all__ = ["ServerSettings", "add_arguments", "create_app", "main", "run"]


def __getattr__(name: str):
    # create_app needs the server extra; importing bitnet.server for the CLI's options must not.
    if name in ("create_app", "ServerSettings"):
        from bitnet.server import app

        return getattr(app, name)
    raise AttributeError(f"module 'bitnet.server' has no attribute {name!r}")
