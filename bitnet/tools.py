"""Tool calls (OpenAI's `tools` / `tool_choice`): the tools written into the prompt, the calls read back out of the
model's answer, and the grammar that makes a required call valid.

A chat template that renders tools itself (a Jinja template reading `tools`, as LLaMA-3.1's and later do:
bitnet.chat.renders_tools) gets the tools and the messages as OpenAI sends them (earlier calls' arguments as
objects), and its own call shape: `{"name": ..., "parameters": {...}}` when the template names "parameters",
else `{"name": ..., "arguments": {...}}`. Every other template gets the built-in format (the model sees plain
messages, so any template renders it):
- the tools go into the system message: an instruction to answer a call with only a JSON object
  `{"name": ..., "arguments": {...}}` (several calls: a JSON list of them), then the tools' names, descriptions
  and parameter schemas as JSON;
- an earlier assistant turn that called tools is shown as that JSON; a `tool` message (a call's result) as a user
  turn `Result of <name> (<call id>): <content>`;
- an answer is a call when it is exactly such JSON naming known tools. With tool_choice "required" or a named
  function the answer is constrained to one call whose arguments follow the tool's schema (bitnet.constraints),
  so it always parses; with "auto" the model chooses, and text that is not a call is the answer's content.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

__all__ = ["ToolCall", "Tools", "ToolsError"]

INSTRUCTION = ("You can call the tools below. To call one, answer with only a JSON object "
               '{"name": <tool name>, "arguments": <its arguments as a JSON object>}; to call several, with a JSON '
               "list of such objects. Otherwise answer normally.\nTools:\n")


class ToolsError(ValueError):
    """A `tools` or `tool_choice` value that cannot be used (the server answers it with a 400 naming it)."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str      # JSON text, as OpenAI sends it

    def openai(self, index: int | None = None) -> dict[str, Any]:
        call = {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}
        return call if index is None else {"index": index, **call}


class Tools:
    """A request's tools and tool_choice: `messages()` renders them into the conversation, `grammar()` is the
    JSON schema a forced call follows (or None), `parse(text)` reads the calls out of an answer."""

    def __init__(self, tools: list[dict] | None, tool_choice: str | dict | None = None, template: str | None = None,
                 parallel: bool = True):
        from bitnet.chat import renders_tools

        self.parallel = parallel       # OpenAI's parallel_tool_calls: False allows one call per answer
        # the template renders the tools itself, and which key its calls carry their arguments under
        self.native = bool(tools) and renders_tools(template)
        self.arguments_key = "parameters" if self.native and '"parameters"' in template else "arguments"
        self.functions: dict[str, dict] = {}
        for i, tool in enumerate(tools or []):
            fn = tool.get("function") if isinstance(tool, dict) and tool.get("type", "function") == "function" \
                else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
                raise ToolsError(f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ...}}}}",
                                 f"tools.{i}")
            params = fn.get("parameters", {"type": "object", "properties": {}})
            if not isinstance(params, dict):
                raise ToolsError(f"tools[{i}].function.parameters must be a JSON schema object",
                                 f"tools.{i}.function.parameters")
            self.functions[fn["name"]] = {"name": fn["name"], "description": fn.get("description", ""),
                                          "parameters": params}
        choice = "auto" if tool_choice is None and self.functions else (tool_choice or "none")
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name") if choice.get("type") == "function" else None
            if name not in self.functions:
                raise ToolsError(f"tool_choice names the function {name!r}, which is not among the tools "
                                 f"({', '.join(self.functions) or 'none given'})", "tool_choice")
            self.forced: str | None = name
            choice = "required"
        else:
            if choice not in ("none", "auto", "required"):
                raise ToolsError(f"tool_choice must be 'none', 'auto', 'required' or {{'type': 'function', "
                                 f"'function': {{'name': ...}}}}, got {choice!r}", "tool_choice")
            if choice != "none" and not self.functions:
                raise ToolsError(f"tool_choice {choice!r} needs tools", "tool_choice")
            self.forced = None
        self.choice = choice

    @property
    def active(self) -> bool:
        """Whether the model is offered the tools (tool_choice is not 'none')."""
        return self.choice != "none"

    def openai_tools(self) -> list[dict] | None:
        """The tools for a template that renders them (None for the built-in format; none offered with
        tool_choice "none", though the template still renders the history's calls and results)."""
        if not self.native:
            return None
        if not self.active:
            return []
        offered = [self.functions[self.forced]] if self.forced else list(self.functions.values())
        return [{"type": "function", "function": fn} for fn in offered]

    def messages(self, messages: list[dict]) -> list[dict]:
        """The conversation for the template: as OpenAI sends it (calls' arguments as objects) for a template that
        renders tools, else plain {role, content} messages carrying the tools in the built-in format."""
        if self.native:
            return [{**m, "tool_calls": [{**c, "function": {**c["function"],
                                                            "arguments": _arguments(c["function"].get("arguments"))}}
                                         for c in m["tool_calls"]]} if m.get("tool_calls") else m
                    for m in messages]
        plain: list[dict[str, str]] = []
        names = {}
        for m in messages:
            role, content = m.get("role"), m.get("content")
            if role == "assistant" and m.get("tool_calls"):
                calls = [{"name": c["function"]["name"], "arguments": _arguments(c["function"].get("arguments"))}
                         for c in m["tool_calls"]]
                names.update({c.get("id"): c["function"]["name"] for c in m["tool_calls"]})
                plain.append({"role": "assistant", "content": json.dumps(calls[0] if len(calls) == 1 else calls)})
            elif role == "tool":
                call_id = m.get("tool_call_id") or ""
                plain.append({"role": "user", "content": f"Result of {names.get(call_id, 'the tool')} ({call_id}): "
                                                         f"{_text(content)}"})
            else:
                plain.append({"role": role, "content": content if content is not None else ""})
        if self.active:
            offered = [self.functions[self.forced]] if self.forced else list(self.functions.values())
            text = INSTRUCTION + json.dumps(offered, ensure_ascii=False)
            if plain and plain[0]["role"] in ("system", "developer"):
                plain[0] = {"role": plain[0]["role"], "content": f"{_text(plain[0]['content'])}\n\n{text}"}
            else:
                plain.insert(0, {"role": "system", "content": text})
        return plain

    def grammar(self) -> dict | None:
        """The JSON schema of the answer when a call is required (one call to the named function or to any tool,
        its arguments following that tool's parameters), else None."""
        if self.choice != "required":
            return None
        names = [self.forced] if self.forced else list(self.functions)
        key = self.arguments_key
        calls = [{"type": "object", "properties": {"name": {"const": n}, key: self.functions[n]["parameters"]},
                  "required": ["name", key], "additionalProperties": False} for n in names]
        return calls[0] if len(calls) == 1 else {"anyOf": calls}

    def parse(self, text: str) -> list[ToolCall]:
        """The calls an answer makes (none when it is not exactly a call, or a list of calls, to known tools)."""
        if not self.active:
            return []
        try:
            value = json.loads(text.strip())
        except ValueError:
            return []
        items = value if isinstance(value, list) else [value]
        calls = []
        for item in items:
            arguments = item.get("arguments", item.get("parameters", {})) if isinstance(item, dict) else None
            if not (isinstance(item, dict) and item.get("name") in self.functions and isinstance(arguments, dict)):
                return []
            calls.append(ToolCall(f"call_{uuid.uuid4().hex[:24]}", item["name"],
                                  json.dumps(arguments, ensure_ascii=False)))
        return calls if self.parallel else calls[:1]


def _arguments(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value if value is not None else {}


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))
