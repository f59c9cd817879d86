"""Request validation and response bodies in the OpenAI shapes.

Requests are parsed strictly (a string where a number belongs is a 400, not a silent coercion) while fields this
server does not know are ignored, as OpenAI-compatible servers customarily do. Every error leaves as an
OpenAI-style body: `{"error": {"message", "type", "param", "code"}}`.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bitnet.generation import MAX_TOP_LOGPROBS

MAX_STOP_SEQUENCES = 16
MAX_CHOICES = 8           # n: the choices of one request decode together in the batch


class APIError(Exception):
    """An error answered to the client with an HTTP status and an OpenAI-style JSON body."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(message: str, *, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


# ---------------------------------------------------------------------------------------------- requests
class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class StreamOptions(_Strict):
    include_usage: bool | None = None


class ContentPart(_Strict):
    type: str
    text: str | None = None


class ToolFunctionCall(_Strict):
    name: str
    arguments: str | dict = "{}"


class ToolCallIn(_Strict):
    id: str | None = None
    type: Literal["function"] = "function"
    function: ToolFunctionCall


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCallIn] | None = None       # an assistant turn that called tools
    tool_call_id: str | None = None                  # a tool turn: the result of that call
    name: str | None = None

    def text(self, index: int) -> str:
        """The message as plain text: a list of content parts is joined; only text parts are supported."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        pieces = []
        for j, part in enumerate(self.content):
            if part.type != "text" or part.text is None:
                raise APIError(400, f"Content part of type {part.type!r} is not supported: this server reads "
                                    "text only.", param=f"messages.{index}.content.{j}")
            pieces.append(part.text)
        return "".join(pieces)


class SamplingFields(_Strict):
    """The generation fields shared by both endpoints (OpenAI's, then this server's extensions)."""

    model: str | None = None
    max_tokens: int | None = Field(None, ge=0)     # 0: evaluate the prompt, generate nothing (as `bitnet run -n 0`)
    temperature: float | None = Field(None, ge=0, allow_inf_nan=False)
    top_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    # -1 is accepted as "a random seed" (llama.cpp's convention); the sampler takes seeds in [0, 2**64).
    seed: int | None = Field(None, ge=-1, lt=2 ** 64)
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = None
    user: str | None = None
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    repeat_penalty: float | None = Field(None, gt=0, allow_inf_nan=False)
    presence_penalty: float | None = Field(None, ge=-2, le=2, allow_inf_nan=False)
    frequency_penalty: float | None = Field(None, ge=-2, le=2, allow_inf_nan=False)
    logit_bias: dict[str, float] | None = None
    # This server's extension (as llama-server and vLLM have it): the output follows this Lark grammar.
    grammar: str | None = None

    def check(self) -> None:
        """Rules pydantic's field constraints cannot say."""
        if self.n is not None and not 1 <= self.n <= MAX_CHOICES:
            raise APIError(400, f"n must be between 1 and {MAX_CHOICES}, got {self.n}.", param="n")
        if isinstance(self.stop, list) and len(self.stop) > MAX_STOP_SEQUENCES:
            raise APIError(400, f"At most {MAX_STOP_SEQUENCES} stop sequences are supported, got "
                                f"{len(self.stop)}.", param="stop")

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    # The newer OpenAI name for max_tokens; max_tokens wins when both are given.
    max_completion_tokens: int | None = Field(None, ge=0)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None

    def check(self) -> None:
        super().check()
        if self.top_logprobs is not None and not self.logprobs:
            raise APIError(400, "top_logprobs needs logprobs set to true.", param="top_logprobs")
        kind = (self.response_format or {}).get("type", "text")
        if kind not in ("text", "json_object", "json_schema"):
            raise APIError(400, f"response_format.type must be 'text', 'json_object' or 'json_schema', got "
                                f"{kind!r}.", param="response_format")
        if kind == "json_schema" and not isinstance((self.response_format.get("json_schema") or {}).get("schema"),
                                                    dict):
            raise APIError(400, "response_format of type json_schema needs json_schema.schema (an object).",
                           param="response_format")
        if kind != "text" and self.grammar is not None:
            raise APIError(400, "Give either response_format or grammar, not both.", param="grammar")

    def structured(self) -> dict[str, Any]:
        """The structured-output settings (SamplingParams.make's json_schema / json_object / grammar)."""
        fmt = self.response_format or {}
        if fmt.get("type") == "json_schema":
            return {"json_schema": fmt["json_schema"]["schema"]}
        if fmt.get("type") == "json_object":
            return {"json_object": True}
        return {"grammar": self.grammar} if self.grammar is not None else {}

    def message_dicts(self) -> list[dict[str, Any]]:
        # "developer" is OpenAI's newer name for the system role; chat templates know only "system".
        out = []
        for i, m in enumerate(self.messages):
            msg: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role, "content": m.text(i)}
            if m.tool_calls:
                msg["tool_calls"] = [c.model_dump() for c in m.tool_calls]
            if m.tool_call_id is not None:
                msg["tool_call_id"] = m.tool_call_id
            out.append(msg)
        return out


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    echo: bool | None = None

    def prompt_value(self) -> str | list[int]:
        """The one prompt of the request: text, or token ids. Batches of several prompts are refused."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return prompt
        if not prompt:
            raise APIError(400, "The prompt is empty.", param="prompt")
        if all(isinstance(p, int) for p in prompt):
            return list(prompt)
        if len(prompt) != 1:
            raise APIError(400, f"A batch of {len(prompt)} prompts is not supported: send one prompt per request.",
                           param="prompt")
        return prompt[0] if isinstance(prompt[0], str) else list(prompt[0])


_FIELD_NAMES = frozenset(name for model in (ChatRequest, CompletionRequest, ChatMessage, ContentPart, StreamOptions,
                                             ToolCallIn, ToolFunctionCall)
                         for name in model.model_fields)


def parse_json_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise APIError(400, f"We could not parse the JSON body of your request ({exc}). The body must be a JSON "
                            "object.") from None
    if not isinstance(body, dict):
        raise APIError(400, f"The request body must be a JSON object, got a JSON {type(body).__name__}.")
    return body


def validate(model: type[SamplingFields], body: dict[str, Any]) -> SamplingFields:
    """Parse a request body, turning the first validation problem into a 400 that names the parameter."""
    try:
        request = model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        # Union alternatives show up in `loc` as type names ("str", "list[str]"): keep field names and indices.
        path = [str(p) for p in err["loc"] if isinstance(p, int) or p in _FIELD_NAMES]
        param = ".".join(path) or None
        if err["type"] == "missing":
            message = f"Missing required parameter: '{param}'."
        else:
            message = f"Invalid value for '{param}': {err['msg']} (got {_short(err.get('input'))})."
        raise APIError(400, message, param=param, code="invalid_type" if err["type"].endswith("_type")
                       else "invalid_value") from None
    request.check()
    return request


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------------- responses
@dataclass
class Choice:
    """One finished choice, its logprobs already in the endpoint's shape."""
    text: str
    finish_reason: str
    logprobs: dict[str, Any] | None = None
    tool_calls: list[dict[str, Any]] | None = None


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


class ResponseShape:
    """Builds the bodies and stream chunks of one response (chat or text completion)."""

    def __init__(self, kind: Literal["chat", "text"], model_id: str, fingerprint: str):
        self.kind = kind
        self.id = new_id("chatcmpl" if kind == "chat" else "cmpl")
        self.created = int(time.time())
        self.model_id = model_id
        self.fingerprint = fingerprint

    def _envelope(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model_id,
                "system_fingerprint": self.fingerprint}

    def complete(self, choices: list[Choice], prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        body = self._envelope("chat.completion" if self.kind == "chat" else "text_completion")
        body["choices"] = []
        for i, c in enumerate(choices):
            if self.kind == "chat":
                message: dict[str, Any] = {"role": "assistant", "content": None if c.tool_calls else c.text}
                if c.tool_calls:
                    message["tool_calls"] = c.tool_calls
                body["choices"].append({"index": i, "message": message, "logprobs": c.logprobs,
                                        "finish_reason": c.finish_reason})
            else:
                body["choices"].append({"index": i, "text": c.text, "logprobs": c.logprobs,
                                        "finish_reason": c.finish_reason})
        body["usage"] = usage(prompt_tokens, completion_tokens)
        return body

    def chunk(self, text: str | None, finish_reason: str | None = None, *, first: bool = False, index: int = 0,
              logprobs: dict | None = None, tool_calls: list[dict] | None = None) -> dict[str, Any]:
        """One stream chunk of choice `index`: a text delta (chat: the first carries the role) with the logprobs
        of its tokens, the tool calls, or the closing finish_reason."""
        if self.kind == "chat":
            body = self._envelope("chat.completion.chunk")
            delta: dict[str, Any] = {"role": "assistant"} if first else {}
            if text is not None:
                delta["content"] = text
            if tool_calls:
                delta["tool_calls"] = tool_calls
            choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        else:
            body = self._envelope("text_completion")
            choice = {"index": index, "text": text or "", "logprobs": logprobs, "finish_reason": finish_reason}
        body["choices"] = [choice]
        return body

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        """The extra last chunk OpenAI sends when stream_options.include_usage is set: no choices, usage."""
        body = self._envelope("chat.completion.chunk" if self.kind == "chat" else "text_completion")
        body["choices"] = []
        body["usage"] = usage(prompt_tokens, completion_tokens)
        return body


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()
