"""Chat prompts: a list of {role, content} messages -> the prompt text a model expects (docs/formats.md §9).

Formats:
- `bitnet`: the reference engine's built-in BitNet b1.58 format, used for every template containing "BITNET"
  (the template the reference converter writes is never rendered, only detected):
  BOS, then `System: {system}` (no separator), per user turn `User: {content}<|eot_id|>Assistant: `, assistant
  turns as their bare content.
- `llama3-chat`: `<|start_header_id|>{role}<|end_header_id|>\\n\\n{content, trimmed}<|eot_id|>` per message after
  BOS, then the assistant header; used for templates containing `<|start_header_id|>`.
- `jinja`: any other template, rendered in a sandboxed Jinja environment as transformers does.
- `instruct`: a plain question/answer layout for base models (`Question: ...\\nAnswer:`).
- `raw`: the last user message, unchanged.

`render_chat` returns the text together with the texts that end the model's turn (`stop_texts`) and whether a
BOS token still has to be added when encoding (`add_bos`: False when the text already starts with it).
"""
from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bitnet.errors import TokenizerError

__all__ = ["MODES", "ChatPrompt", "detect_format", "jinja_stop_texts", "render_chat", "validate_messages"]

MODES = ("auto", "raw", "instruct", "llama3-chat", "bitnet", "jinja")
ROLES = ("system", "user", "assistant")
TOOL_ROLES = ("tool", "ipython")     # results of tool calls, for templates that render tools themselves

# End-of-turn markers a Jinja template may use; those that appear in the template become stop texts.
_TURN_END_MARKERS = ("<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                     "<|end_of_text|>", "</s>", "<|END_OF_TURN_TOKEN|>", "<|EOT|>")


@dataclass(frozen=True)
class ChatPrompt:
    """A rendered conversation.

    `text` is what to tokenize (with special-token parsing); `add_bos` is the value to pass to
    `Tokenizer.encode(text, add_bos=...)`: False when the text already begins with the BOS token, None to let
    the tokenizer decide (it adds BOS when the model file says so). `stop_texts` end the model's turn.
    """
    text: str
    stop_texts: list[str] = field(default_factory=list)
    format: str = "raw"
    add_bos: bool | None = None

    def stops(self, extra: str | Sequence[str] | None = None) -> list[str]:
        """The caller's stop sequences (one string, several, or None) followed by this format's end-of-turn texts:
        what every chat surface (API, CLI, server) generates with."""
        extra = [extra] if isinstance(extra, str) else list(extra or [])
        return extra + list(self.stop_texts)


def validate_messages(messages: Any, tools: bool = False) -> list[dict[str, Any]]:
    """Check a conversation and return it as plain {role, content} dicts.

    A message is a mapping with `role` (system, user or assistant) and `content`: a string, or an OpenAI-style
    list of {"type": "text", "text": ...} parts (joined). Anything else raises TokenizerError naming the message.
    With `tools` (a template that renders tools itself), tool results (roles tool / ipython) are accepted too,
    and an assistant message keeps its `tool_calls` (content may then be None) and a tool result its
    `tool_call_id`.
    """
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TokenizerError(f"messages must be a list of {{'role', 'content'}} dicts, got {type(messages).__name__}")
    if not messages:
        raise TokenizerError("messages is empty: a chat needs at least one message")
    clean = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping):
            raise TokenizerError(f"messages[{i}] must be a dict with 'role' and 'content', got "
                                 f"{type(msg).__name__}")
        role = msg.get("role")
        roles = ROLES + TOOL_ROLES if tools else ROLES
        if role not in roles:
            raise TokenizerError(f"messages[{i}] has role {role!r}; expected one of {', '.join(roles)}")
        if "content" not in msg:
            raise TokenizerError(f"messages[{i}] ({role}) has no 'content'")
        calls = msg.get("tool_calls") if tools else None
        content = "" if calls and msg["content"] is None else _content_text(msg["content"], i)
        clean.append({"role": role, "content": content})
        if calls:
            clean[-1]["tool_calls"] = calls
        if tools and msg.get("tool_call_id") is not None:
            clean[-1]["tool_call_id"] = msg["tool_call_id"]
    return clean


def _content_text(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, (str, bytes)):
        parts = []
        for part in content:
            if not (isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise TokenizerError(f"messages[{index}].content has a part that is not "
                                     f"{{'type': 'text', 'text': str}}: {part!r}"[:300])
            parts.append(part["text"])
        return "".join(parts)
    raise TokenizerError(f"messages[{index}].content must be a string (or a list of text parts), got "
                         f"{type(content).__name__}")


def renders_tools(template: str | None) -> bool:
    """Whether a chat template renders OpenAI tools itself (a Jinja template that reads `tools`, as LLaMA-3.1's
    and later do); other templates get the tools in bitnet.tools' built-in format."""
    return bool(template) and "BITNET" not in template and re.search(r"\btools\b", template) is not None


def detect_format(template: str | None) -> str:
    """The format `auto` mode uses for a chat template (None: no template)."""
    if template is None or not template.strip():
        return "raw"
    if "BITNET" in template:
        return "bitnet"
    if "<|start_header_id|>" in template:
        return "llama3-chat"
    return "jinja"


def render_chat(messages: Any, template: str | None = None, mode: str = "auto", bos_token: str = "",
                eos_token: str = "", add_generation_prompt: bool = True, system_prompt: str | None = None,
                tools: list[dict] | None = None) -> ChatPrompt:
    """Render `messages` (or a single prompt string) as one prompt.

    `mode="auto"` picks the format from `template` (see `detect_format`); with no template a single user
    message is used raw and a longer conversation in the `instruct` layout. `system_prompt` is added as the
    first message when the conversation has no system message of its own. `tools` (OpenAI's tool list) are
    handed to a Jinja template that renders them (see `renders_tools`), which is then used whatever `mode` says.
    """
    if mode not in MODES:
        raise TokenizerError(f"unknown chat mode {mode!r}; expected one of {', '.join(MODES)}")
    if tools is not None:
        if not renders_tools(template):
            raise TokenizerError("tools can only be handed to a chat template that renders them")
        mode = "jinja"
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    msgs = validate_messages(messages, tools=tools is not None)
    if system_prompt is not None and not any(m["role"] == "system" for m in msgs):
        msgs.insert(0, {"role": "system", "content": system_prompt})
    bos_token = bos_token or ""
    fmt = mode
    if mode == "auto":
        fmt = detect_format(template)
        if fmt == "raw" and [m["role"] for m in msgs] != ["user"]:
            fmt = "instruct"   # no template but a real conversation: keep the history in a plain layout
    if fmt == "raw":
        text, stops = _render_raw(msgs), []
    elif fmt == "instruct":
        text, stops = _render_instruct(msgs, add_generation_prompt), ["\nQuestion:"]
    elif fmt == "bitnet":
        text, stops = bos_token + _render_bitnet(msgs, add_generation_prompt), ["<|eot_id|>"]
    elif fmt == "llama3-chat":
        text, stops = bos_token + _render_llama3(msgs, add_generation_prompt), ["<|eot_id|>"]
    else:
        if not template:
            raise TokenizerError("chat mode 'jinja' needs a chat template, and none was given")
        text = _render_jinja(template, msgs, bos_token, eos_token, add_generation_prompt, tools)
        stops = jinja_stop_texts(template, eos_token)
    add_bos = False if bos_token and text.startswith(bos_token) else None
    return ChatPrompt(text=text, stop_texts=stops, format=fmt, add_bos=add_bos)


def jinja_stop_texts(template: str, eos_token: str = "") -> list[str]:
    """The texts that end the model's turn under a Jinja template: the end-of-turn markers it uses, and EOS."""
    stops = [m for m in _TURN_END_MARKERS if m in template]
    if eos_token and eos_token not in stops:
        stops.append(eos_token)
    return stops


def _render_raw(msgs: list[dict[str, str]]) -> str:
    users = [m["content"] for m in msgs if m["role"] == "user"]
    if not users:
        raise TokenizerError("raw chat mode needs a user message, and the conversation has none")
    return users[-1]


def _render_instruct(msgs: list[dict[str, str]], add_generation_prompt: bool) -> str:
    parts = []
    for m in msgs:
        if m["role"] == "system":
            parts.append(f"{m['content']}\n\n")
        elif m["role"] == "user":
            parts.append(f"Question: {m['content']}\nAnswer:")
        else:
            parts.append(f" {m['content']}\n\n")
    if not add_generation_prompt and msgs[-1]["role"] == "user":
        parts[-1] = parts[-1].removesuffix("Answer:")
    return "".join(parts)


def _render_bitnet(msgs: list[dict[str, str]], add_generation_prompt: bool) -> str:
    """bitnet.cpp's LLM_CHAT_TEMPLATE_BITNET: every user turn is followed by the assistant cue."""
    parts = []
    for m in msgs:
        if m["role"] == "system":
            parts.append("System: " + m["content"])
        elif m["role"] == "user":
            parts.append("User: " + m["content"] + "<|eot_id|>Assistant: ")
        else:
            parts.append(m["content"])
    if not add_generation_prompt and msgs[-1]["role"] == "user":
        parts[-1] = parts[-1].removesuffix("Assistant: ")
    return "".join(parts)


def _render_llama3(msgs: list[dict[str, str]], add_generation_prompt: bool) -> str:
    parts = [f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content'].strip()}<|eot_id|>" for m in msgs]
    if add_generation_prompt:
        parts.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return "".join(parts)


def _raise_exception(message: str) -> None:
    raise TokenizerError(f"chat template raised an error: {message}")


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    # transformers replaces Jinja's tojson (which HTML-escapes) with plain json.dumps
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().astimezone().strftime(fmt)


@functools.lru_cache(maxsize=16)
def _compile(template: str) -> Any:
    """Compile once per template text (a server renders the same template for every request). The environment
    has the settings transformers uses, in an immutable sandbox: a template from a model file must not reach
    Python internals or mutate its inputs."""
    from jinja2.ext import loopcontrols

    from bitnet.chat_sandbox import BoundedEnvironment, check_nesting

    env = BoundedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.finalize_filters()
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    tree = env.parse(template)
    check_nesting(tree)
    return env.from_string(tree)


def _render_jinja(template: str, msgs: list[dict[str, Any]], bos_token: str, eos_token: str,
                  add_generation_prompt: bool, tools: list[dict] | None = None) -> str:
    import jinja2

    from bitnet.chat_sandbox import CountedList, render_bounded

    extra = {"tools": CountedList(tools)} if tools is not None else {}    # "tools is defined" stays meaningful
    try:
        return render_bounded(_compile(template), messages=CountedList(msgs), bos_token=bos_token,
                              eos_token=eos_token, add_generation_prompt=add_generation_prompt, **extra)
    except TokenizerError:
        raise                      # raise_exception() from the template itself
    except jinja2.exceptions.SecurityError as e:
        raise TokenizerError(f"chat template refused by the sandbox: {e}") from None
    except jinja2.exceptions.TemplateError as e:
        raise TokenizerError(f"chat template cannot be rendered: {e}") from None
    except RecursionError:
        raise TokenizerError("chat template cut off: recursion too deep") from None
    except SyntaxError as e:
        # Jinja accepted the text but produced Python that does not compile (found by tools/hardening/fuzz: a Unicode
        # digit in a number literal, a slice bound like `name:not 'x'`)
        raise TokenizerError(f"chat template cannot be compiled: {e.msg}") from None
    except (TypeError, ValueError, LookupError, ArithmeticError, AttributeError) as e:
        # a template is data from a model file: its runtime errors are bad input, not engine bugs
        raise TokenizerError(f"chat template failed while rendering: {type(e).__name__}: {e}") from None
