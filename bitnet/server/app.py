"""The ASGI application: routes, the API key check, the request log, and the bridge from HTTP to slot jobs."""
from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bitnet._version import __version__
from bitnet.batching import DEFAULT_PREFILL_CHUNK
from bitnet.constraints import GrammarError
from bitnet.engine import Model
from bitnet.errors import BitNetError
from bitnet.generation import DEFAULTS, SamplingParams, TokenLogprob
from bitnet.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from bitnet.server.metrics import Metrics
from bitnet.server.schemas import (
    APIError,
    ChatRequest,
    Choice,
    CompletionRequest,
    ResponseShape,
    SamplingFields,
    error_body,
    parse_json_body,
    sse,
    validate,
)
from bitnet.server.slots import Job, QueueFullError, ShuttingDownError, SlotPool
from bitnet.settings import SEED_LIMIT
from bitnet.tools import Tools, ToolsError

log = logging.getLogger("bitnet.server")

DEFAULT_MAX_BODY_BYTES = 1 << 20
# A body over the limit is still read (and thrown away) up to this much, so that the client, which is
# usually still sending, gets to read the 413 instead of a connection reset.
DRAIN_LIMIT_BYTES = 64 << 20
# OpenAI's documented default for /v1/completions; chat completions default to "until the end of the turn".
TEXT_DEFAULT_MAX_TOKENS = 16
STATUS_CLIENT_GONE = 499   # nginx's convention, for the log and metrics only: nobody reads it


@dataclass
class ServerSettings:
    model_id: str
    api_key: str | None = None
    parallel: int = 1
    queue_size: int = 16
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    shutdown_timeout: float = 10.0
    # A client gets this long to send its whole body (else 408), and a streamed write that the client does not
    # take in this long ends the stream: slow or stalled clients cost a connection for a bounded time only.
    body_timeout: float = 30.0
    send_timeout: float = 30.0
    prefill_chunk: int = DEFAULT_PREFILL_CHUNK
    # Which copy of the server answers, when several serve one address (Ray Serve replicas): reported in the
    # `X-Bitnet-Replica` header and in system_fingerprint.
    replica: str | None = None


@dataclass
class Prepared:
    """A request turned into engine terms, before it gets a slot: the prompt, the settings every choice decodes
    with (choice i with seed + i), and what the response adds (the prompt's logprobs, tool calls)."""
    prompt_ids: list[int]
    params: SamplingParams
    n: int = 1
    echo: str | None = None                        # completions with echo: the prompt text, before the answer
    prompt_logprobs: list | None = None            # ... and its tokens' logprobs, when asked for
    tools: Tools | None = None


class ServerState:
    def __init__(self, model: Model, settings: ServerSettings):
        self.model = model
        self.settings = settings
        self.metrics = Metrics()
        self.pool = SlotPool([model.new_session() for _ in range(settings.parallel)], settings.queue_size,
                             on_finished=self._finished, prefill_chunk=settings.prefill_chunk)
        self.fingerprint = f"bitnet-{__version__}" + (f"-{settings.replica}" if settings.replica else "")
        try:
            self.created = int(model.path.stat().st_mtime)
        except (AttributeError, OSError):
            self.created = int(time.time())

    def _finished(self, job: Job) -> None:
        r = job.result
        self.metrics.record_generation(r.prompt_tokens, r.completion_tokens, r.timings)


# ------------------------------------------------------------------------------------------- engine mapping
def _engine_defaults() -> dict[str, Any]:
    """The engine's sampling defaults (bitnet.generation.DEFAULTS): a field a request leaves out gets these, so
    the server answers exactly what the Python API and the CLI give for the same settings."""
    names = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty")
    return {name: getattr(DEFAULTS, name) for name in names}


ENGINE_DEFAULTS = _engine_defaults()


def make_params(req: SamplingFields, max_tokens: int, stop: list[str], logprobs: int | None,
                structured: dict[str, Any], structured_from: str = "grammar") -> SamplingParams:
    """The request's settings as the engine takes them; a field left out gets the engine's default, and what the
    engine refuses (a schema or grammar that does not compile, a bad logit_bias) is a 400 naming the field;
    `structured_from` is the field the structured-output settings came from."""
    values = {name: value if (value := getattr(req, name)) is not None else default
              for name, default in ENGINE_DEFAULTS.items()}
    try:
        return SamplingParams.make(
            **values, max_tokens=max_tokens, seed=None if req.seed in (None, -1) else req.seed, stop=stop,
            logprobs=logprobs, logit_bias=req.logit_bias, presence_penalty=req.presence_penalty or 0.0,
            frequency_penalty=req.frequency_penalty or 0.0, **structured)
    except GrammarError as exc:
        raise APIError(400, f"{exc}.", param=structured_from, code="invalid_grammar") from None
    except ValueError as exc:
        raise APIError(400, f"{exc}.", param="logit_bias" if "logit_bias" in str(exc) else None) from None


def _check_fits(model: Model, n_prompt: int, what: str) -> None:
    # The engine needs room for at least one token after the prompt; longer max_tokens are capped by it.
    if n_prompt >= model.n_ctx:
        raise APIError(400, f"This model's maximum context length is {model.n_ctx} tokens. However, your {what} "
                            f"resulted in {n_prompt} tokens. Please reduce the length of the {what}.",
                       param="messages" if what == "messages" else "prompt", code="context_length_exceeded")


def prepare_chat(model: Model, req: ChatRequest) -> Prepared:
    """Mirror of `Model.chat_stream` (template, ids, the template's stop texts) split so that a prompt that
    cannot be served is refused before a slot is taken or a stream is opened. Tools go into the messages in the
    built-in format (bitnet.tools); a required call constrains the answer to the tools' schemas."""
    try:
        tools = Tools(req.tools, req.tool_choice, model.chat_template, parallel=req.parallel_tool_calls is not False)
    except ToolsError as exc:
        raise APIError(400, f"{exc}.", param=exc.param) from None
    structured = req.structured()
    structured_from = "grammar" if "grammar" in structured else "response_format"
    forced = tools.grammar()
    if forced is not None:
        if structured:
            raise APIError(400, "A required tool call cannot be combined with response_format or grammar.",
                           param="tool_choice")
        structured, structured_from = {"json_schema": forced}, "tools"
    try:
        ids, prompt = model.chat_ids(tools.messages(req.message_dicts()), tools=tools.openai_tools())
    except BitNetError as exc:
        raise APIError(400, f"The messages cannot be turned into a prompt: {exc}", param="messages") from None
    _check_fits(model, len(ids), "messages")
    max_tokens = req.max_tokens if req.max_tokens is not None else req.max_completion_tokens
    logprobs = (req.top_logprobs or 0) if req.logprobs else None
    params = make_params(req, max_tokens if max_tokens is not None else model.n_ctx, prompt.stops(req.stop_list),
                         logprobs, structured, structured_from)
    return Prepared(ids, params, req.n or 1, tools=tools if tools.active else None)


def prepare_text(model: Model, req: CompletionRequest) -> Prepared:
    prompt = req.prompt_value()
    if isinstance(prompt, str):
        try:
            ids = model.tokenize(prompt)
        except BitNetError as exc:
            raise APIError(400, f"The prompt cannot be tokenized: {exc}", param="prompt") from None
    else:
        bad = [t for t in prompt if not 0 <= t < model.n_vocab]
        if bad:
            raise APIError(400, f"Token id {bad[0]} is outside the vocabulary (0..{model.n_vocab - 1}).",
                           param="prompt")
        ids = prompt
    if not ids:
        raise APIError(400, "The prompt is empty: it gives no tokens.", param="prompt")
    _check_fits(model, len(ids), "prompt")
    max_tokens = req.max_tokens if req.max_tokens is not None else TEXT_DEFAULT_MAX_TOKENS
    params = make_params(req, max_tokens, req.stop_list, req.logprobs,
                         {"grammar": req.grammar} if req.grammar is not None else {})
    prepared = Prepared(ids, params, req.n or 1)
    if req.echo:
        prepared.echo = prompt if isinstance(prompt, str) else model.detokenize(ids)
        if req.logprobs is not None:
            prepared.prompt_logprobs = model.prompt_logprobs(ids, top=req.logprobs)
    return prepared


# ------------------------------------------------------------------------------------------- logprobs
def _token_text(model: Model, token: int) -> str:
    return model.tokenizer.token_bytes(token).decode("utf-8", errors="replace")


def _next_offset(text_lp: dict[str, Any], default: int = 0) -> int:
    """The text_offset after the last token of a completions logprobs body (a stream's next chunk starts there)."""
    if not text_lp["tokens"]:
        return default
    return text_lp["text_offset"][-1] + len(text_lp["tokens"][-1])


def chat_logprobs(model: Model, entries: list[TokenLogprob]) -> dict[str, Any]:
    """OpenAI's chat shape: content[] of {token, logprob, bytes, top_logprobs[] of {token, logprob, bytes}}."""
    def one(token: int, logprob: float) -> dict[str, Any]:
        return {"token": _token_text(model, token), "logprob": logprob,
                "bytes": list(model.tokenizer.token_bytes(token))}
    return {"content": [{**one(e.token, e.logprob), "top_logprobs": [one(t, lp) for t, lp in e.top]}
                        for e in entries]}


def text_logprobs(model: Model, entries: list[TokenLogprob | None], first_token: int | None = None,
                  offset: int = 0) -> dict[str, Any]:
    """The completions shape: tokens, token_logprobs, top_logprobs (token text -> logprob) and text_offset; an
    entry None is a prompt's first token, which nothing predicts (its token id is `first_token`)."""
    tokens, values, tops, offsets = [], [], [], []
    for e in entries:
        text = _token_text(model, e.token if e is not None else first_token)
        tokens.append(text)
        values.append(None if e is None else e.logprob)
        tops.append(None if e is None else {_token_text(model, t): lp for t, lp in e.top})
        offsets.append(offset)
        offset += len(text)
    return {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops, "text_offset": offsets}


# ------------------------------------------------------------------------------------------- HTTP helpers
async def read_body_in_time(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, read within `timeout` seconds (a body sent a byte a second gets 408)."""
    try:
        with anyio.fail_after(timeout):
            return await read_body(request, limit)
    except TimeoutError:
        raise APIError(408, f"The request body did not arrive within {timeout:g} seconds.",
                       code="request_timeout") from None


async def read_body(request: Request, limit: int) -> bytes:
    too_large = APIError(413, f"The request body is larger than this server's limit of {limit} bytes.",
                         code="request_too_large")
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise APIError(400, "The Content-Length header is not a number.")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit or (declared is not None and int(declared) > limit):
                if size > DRAIN_LIMIT_BYTES:
                    break
                chunks.clear()   # keep reading, keep nothing
                continue
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone() from None
    if size > limit or (declared is not None and int(declared) > limit):
        raise too_large
    return b"".join(chunks)


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(work: AsyncIterator | Any, receive: Receive) -> Any:
    """Await `work`, or raise ClientGone as soon as the client hangs up (its task is then cancelled)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (task, watcher):
            if not t.done():
                t.cancel()
    if task.done() and not task.cancelled():
        return task.result()
    raise ClientGone()


class EventStreamResponse(StreamingResponse):
    """Server-sent events for one job, which stop (cancelling the body iterator) the moment the client
    disconnects.

    Starlette only watches for disconnects on older ASGI spec versions and otherwise notices on the next failed
    write; a generation has to stop as soon as nobody listens, so this always watches. The job is closed here
    whatever happens: a body iterator cancelled before its first step never runs its own cleanup."""

    media_type = "text/event-stream"

    def __init__(self, job: Job, content: AsyncIterator[bytes], send_timeout: float = 30.0):
        super().__init__(content, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.job = job
        self.send_timeout = send_timeout

    def _timed(self, send: Send) -> Send:
        """`send` that gives up when the client has not taken a write in send_timeout seconds (a stream nobody
        reads fills the socket buffers, and then each write waits for the client)."""
        async def timed_send(message: Message) -> None:
            with anyio.fail_after(self.send_timeout):
                await send(message)
        return timed_send

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        completed = False
        try:
            async with anyio.create_task_group() as tg:
                async def body() -> None:
                    nonlocal completed
                    try:
                        await self.stream_response(self._timed(send))
                        completed = True
                    except OSError:   # the peer went away mid-write
                        pass
                    except TimeoutError:
                        log.warning("closing a stream whose client took no data for %g s", self.send_timeout)
                    tg.cancel_scope.cancel()

                tg.start_soon(body)
                await self.listen_for_disconnect(receive)
                tg.cancel_scope.cancel()
        finally:
            self.job.close()
            if not completed:
                scope.setdefault("state", {})["disconnected"] = True


def _json_error(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


# ------------------------------------------------------------------------------------------- middleware
def _is_api_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/") or path in ("/tokenize", "/detokenize")


class APIKeyMiddleware:
    """`Authorization: Bearer KEY` on every /v1 route and /tokenize, /detokenize; /health and /metrics stay open
    for probes."""

    def __init__(self, app: ASGIApp, api_key: str):
        self.app = app
        self.expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _is_api_path(scope["path"]):
            given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            scheme, _, token = given.partition(b" ")
            ok = scheme.lower() == b"bearer" and hmac.compare_digest(b"Bearer " + token.strip(), self.expected)
            if not ok:
                message = ("Incorrect API key provided." if given else
                           "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'.")
                response = _json_error(401, error_body(message, code="invalid_api_key"),
                                       {"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class ReplicaHeaderMiddleware:
    """`X-Bitnet-Replica: ID` on every response, so a client behind a load balancer can tell who answered."""

    def __init__(self, app: ASGIApp, replica: str):
        self.app = app
        self.header = (b"x-bitnet-replica", replica.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, send_with_header)


KNOWN_ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics", "/tokenize",
                   "/detokenize")


class AccessLogMiddleware:
    """One log line per request (when its response has ended) and the request counters."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = STATUS_CLIENT_GONE
        state = scope.setdefault("state", {})

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException:
            status = 500 if status == STATUS_CLIENT_GONE else status
            raise
        finally:
            seconds = time.perf_counter() - t0
            path = scope["path"]
            endpoint = next((e for e in KNOWN_ENDPOINTS if path == e or path.startswith(e + "/")), "other")
            if state.get("client_gone"):
                status = STATUS_CLIENT_GONE
            self.metrics.record_request(endpoint, status, seconds)
            client = scope.get("client")
            where = f"{client[0]}:{client[1]}" if client else "-"
            extra = " client-gone" if state.get("disconnected") else ""   # a stream left before its end
            job: Job | None = state.get("job")
            if job is not None:
                r = job.result
                extra = (f" prompt={r.prompt_tokens} completion={r.completion_tokens} finish={r.finish_reason}"
                         + (" stream" if state.get("stream") else "") + extra)
            log.info('%s "%s %s" %d %.3fs%s', where, scope["method"], path, status, seconds, extra)


# ------------------------------------------------------------------------------------------- application
def create_app(model: Model, settings: ServerSettings) -> FastAPI:
    """The OpenAI-compatible application serving `model` (see bitnet.server for the endpoints)."""
    server = ServerState(model, settings)

    async def lifespan(_app: FastAPI):
        yield
        await server.pool.close(settings.shutdown_timeout)

    app = FastAPI(title="bitnet", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.server = server
    if settings.api_key:
        app.add_middleware(APIKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(AccessLogMiddleware, metrics=server.metrics)
    if settings.replica:
        app.add_middleware(ReplicaHeaderMiddleware, replica=settings.replica)

    @app.exception_handler(APIError)
    async def _api_error(_request: Request, exc: APIError) -> JSONResponse:
        headers = {"Retry-After": "1"} if exc.status == 503 else None
        return _json_error(exc.status, exc.body(), headers)

    @app.exception_handler(ClientGone)
    async def _client_gone(request: Request, _exc: ClientGone) -> Response:
        request.state.client_gone = True
        return Response(status_code=STATUS_CLIENT_GONE)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"Unknown request URL: {request.method} {request.url.path}."
            code = "unknown_url"
        elif exc.status_code == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}."
            code = "method_not_allowed"
        else:
            message, code = str(exc.detail), None
        return _json_error(exc.status_code, error_body(message, code=code), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error while serving a request", exc_info=exc)
        return _json_error(500, error_body(f"Internal server error: {type(exc).__name__}: {exc}",
                                           type="server_error"))

    # -- probes
    @app.get("/health")
    async def health() -> JSONResponse:
        pool = server.pool
        body = {"status": "shutting_down" if pool.closing else "ok", "model": settings.model_id,
                "slots_total": pool.total, "slots_idle": pool.idle, "slots_busy": pool.busy,
                "queue_depth": pool.waiting, "queue_size": pool.queue_size, "batch_size": pool.batch_size}
        return JSONResponse(body, status_code=503 if pool.closing else 200)

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        pool = server.pool
        scheduler = pool.scheduler
        text = server.metrics.render(slots_total=pool.total, slots_busy=pool.busy, queue_depth=pool.waiting,
                                     queue_size=pool.queue_size, batch_size=len(scheduler.active),
                                     batch_steps=scheduler.steps, batch_sequence_steps=scheduler.sequence_steps)
        return PlainTextResponse(text, media_type=METRICS_CONTENT_TYPE)

    # -- models
    def model_card() -> dict[str, Any]:
        return {"id": settings.model_id, "object": "model", "created": server.created, "owned_by": "bitnet",
                "meta": {"arch": model.arch, "n_ctx": model.n_ctx, "n_vocab": model.n_vocab,
                         "slots": settings.parallel}}

    @app.get("/v1/models")
    async def list_models() -> JSONResponse:
        return JSONResponse({"object": "list", "data": [model_card()]})

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> JSONResponse:
        if model_id != settings.model_id:
            raise APIError(404, f"The model '{model_id}' does not exist; this server serves "
                                f"'{settings.model_id}'.", param="model", code="model_not_found")
        return JSONResponse(model_card())

    # -- generation
    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        req = validate(ChatRequest, parse_json_body(await read_body_in_time(request, settings.max_body_bytes,
                                                                          settings.body_timeout)))
        prepared = await run_in_threadpool(prepare_chat, model, req)
        return await generate(request, req, prepared, ResponseShape("chat", settings.model_id, server.fingerprint))

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        req = validate(CompletionRequest, parse_json_body(await read_body_in_time(request, settings.max_body_bytes,
                                                                          settings.body_timeout)))
        prepared = await run_in_threadpool(prepare_text, model, req)
        return await generate(request, req, prepared, ResponseShape("text", settings.model_id, server.fingerprint))

    async def generate(request: Request, req: SamplingFields, prepared: Prepared, shape: ResponseShape) -> Response:
        jobs = JobGroup()
        try:
            for i in range(prepared.n):
                jobs.append(server.pool.admit(prepared.prompt_ids, choice_params(prepared.params, i)))
        except QueueFullError as exc:
            jobs.close()
            raise APIError(503, f"The server is busy ({exc}); retry later.", type="server_error",
                           code="server_busy") from None
        except ShuttingDownError:
            jobs.close()
            raise APIError(503, "The server is shutting down.", type="server_error", code="shutting_down") from None
        request.state.job = jobs[0]
        if req.stream:
            request.state.stream = True
            return EventStreamResponse(jobs, stream_events(model, prepared, jobs, shape, req.include_usage),
                                       settings.send_timeout)
        try:
            texts = await until_disconnect(asyncio.gather(*(job.text() for job in jobs)), request.receive)
        except ShuttingDownError:
            raise APIError(503, "The server is shutting down.", type="server_error", code="shutting_down") from None
        except GrammarError as exc:      # llguidance gave up on the grammar while decoding
            raise APIError(400, f"{exc}.", param="grammar", code="invalid_grammar") from None
        finally:
            jobs.close()
        choices = [finished_choice(model, prepared, job, text, shape.kind) for job, text in zip(jobs, texts)]
        return JSONResponse(shape.complete(choices, len(prepared.prompt_ids),
                                           sum(job.result.completion_tokens for job in jobs)))

    @app.post("/tokenize")
    async def tokenize(request: Request) -> JSONResponse:
        """llama-server's /tokenize: {"content", "add_special", "with_pieces"} -> {"tokens"}."""
        body = parse_json_body(await read_body_in_time(request, settings.max_body_bytes, settings.body_timeout))
        content = body.get("content")
        if not isinstance(content, str):
            raise APIError(400, "content must be a string.", param="content")
        ids = model.tokenize(content, add_bos=bool(body.get("add_special", False))) if content else []
        if body.get("with_pieces"):
            return JSONResponse({"tokens": [{"id": t, "piece": _token_text(model, t)} for t in ids]})
        return JSONResponse({"tokens": ids})

    @app.post("/detokenize")
    async def detokenize(request: Request) -> JSONResponse:
        """llama-server's /detokenize: {"tokens"} -> {"content"}."""
        body = parse_json_body(await read_body_in_time(request, settings.max_body_bytes, settings.body_timeout))
        tokens = body.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
            raise APIError(400, "tokens must be a list of token ids.", param="tokens")
        bad = [t for t in tokens if not 0 <= t < model.n_vocab]
        if bad:
            raise APIError(400, f"Token id {bad[0]} is outside the vocabulary (0..{model.n_vocab - 1}).",
                           param="tokens")
        return JSONResponse({"content": model.detokenize(tokens)})

    return app


class JobGroup(list):
    """The jobs of one request (one per choice), closed together."""

    def close(self) -> None:
        for job in self:
            job.close()


def choice_params(params: SamplingParams, index: int) -> SamplingParams:
    """Choice `index` of a request: its own sampler stream, from seed + index when the request has a seed."""
    if index == 0 or params.seed is None:
        return params
    return replace(params, seed=(params.seed + index) % SEED_LIMIT)


def finished_choice(model: Model, prepared: Prepared, job: Job, text: str, kind: str) -> Choice:
    """A finished job as the response's choice: tool calls read out of its text, logprobs in the endpoint's shape,
    the echoed prompt in front."""
    r = job.result
    logprobs = None
    if kind == "chat":
        if r.logprobs is not None:
            logprobs = chat_logprobs(model, r.logprobs)
        calls = prepared.tools.parse(text) if prepared.tools is not None else []
        if calls:
            return Choice("", "tool_calls", logprobs, [c.openai() for c in calls])
        return Choice(text, r.finish_reason, logprobs)
    if prepared.echo is not None:
        entries = (prepared.prompt_logprobs or []) + (r.logprobs or [])
        if r.logprobs is not None:
            logprobs = text_logprobs(model, entries, first_token=prepared.prompt_ids[0])
        return Choice(prepared.echo + text, r.finish_reason, logprobs)
    if r.logprobs is not None:
        logprobs = text_logprobs(model, r.logprobs)
    return Choice(text, r.finish_reason, logprobs)


async def merged(jobs: list[Job]) -> AsyncIterator[tuple[int, list[str]]]:
    """(choice index, text pieces) from every job as they decode."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(index: int, job: Job) -> None:
        try:
            async for batch in job.batches():
                await queue.put((index, batch, None))
            await queue.put((index, None, None))
        except Exception as exc:   # noqa: BLE001 - handed to the consumer below
            await queue.put((index, None, exc))

    tasks = [asyncio.ensure_future(pump(i, job)) for i, job in enumerate(jobs)]
    try:
        remaining = len(jobs)
        while remaining:
            index, batch, exc = await queue.get()
            if exc is not None:
                raise exc
            if batch is None:
                remaining -= 1
            else:
                yield index, batch
    finally:
        for task in tasks:
            task.cancel()


async def stream_events(model: Model, prepared: Prepared, jobs: JobGroup, shape: ResponseShape,
                        include_usage: bool) -> AsyncIterator[bytes]:
    """The SSE body of a streamed completion, ending with `data: [DONE]`. Closing it (the client left) closes
    the jobs, which stops the generations and frees the slots. With tools, a choice's text is held until it
    ends: only then is it known to be a call (sent as delta.tool_calls) or an answer."""
    sent = [0] * len(jobs)             # logprob entries already sent, per choice
    offsets = [0] * len(jobs)          # completions' text_offset of the next token, per choice
    held = [[] for _ in jobs]
    try:
        for i in range(len(jobs)):
            if shape.kind == "chat":
                yield sse(shape.chunk("", first=True, index=i))
            elif prepared.echo is not None:
                lp = None
                if prepared.prompt_logprobs is not None:
                    lp = text_logprobs(model, prepared.prompt_logprobs, first_token=prepared.prompt_ids[0])
                    offsets[i] = _next_offset(lp)
                yield sse(shape.chunk(prepared.echo, index=i, logprobs=lp))
        async for i, batch in merged(jobs):
            if prepared.tools is not None:
                held[i] += batch
                continue
            entries = jobs[i].logprobs
            lp = None
            if entries is not None:
                new, sent[i] = entries[sent[i]:], len(entries)
                if shape.kind == "chat":
                    lp = chat_logprobs(model, new)
                else:
                    lp = text_logprobs(model, new, offset=offsets[i])
                    offsets[i] = _next_offset(lp, offsets[i])
            yield b"".join(sse(shape.chunk(piece, index=i, logprobs=lp if k == 0 else None))
                           for k, piece in enumerate(batch))
            # Let the loop run between writes: a client that left is noticed (and the jobs closed) before the
            # next write, instead of after a burst of writes into a dead socket.
            await asyncio.sleep(0)
        for i, job in enumerate(jobs):
            reason = job.result.finish_reason
            if prepared.tools is not None:
                choice = finished_choice(model, prepared, job, "".join(held[i]), shape.kind)
                if choice.tool_calls:
                    calls = [{**call, "index": k} for k, call in enumerate(choice.tool_calls)]
                    yield sse(shape.chunk(None, index=i, tool_calls=calls))
                else:
                    yield sse(shape.chunk(choice.text, index=i, logprobs=choice.logprobs))
                reason = choice.finish_reason
            yield sse(shape.chunk(None, reason, index=i))
        if include_usage:
            yield sse(shape.usage_chunk(len(prepared.prompt_ids), sum(job.result.completion_tokens for job in jobs)))
    except ShuttingDownError:
        yield sse(error_body("The server is shutting down.", type="server_error", code="shutting_down"))
    except Exception as exc:   # headers are sent: the error can only travel as an event
        log.exception("generation failed mid-stream", exc_info=exc)
        yield sse(error_body(f"Generation failed: {type(exc).__name__}: {exc}", type="server_error"))
    finally:
        jobs.close()
    yield sse("[DONE]")
