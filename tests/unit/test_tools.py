"""Tool calls read out of an answer (bitnet.tools): what counts as a call, and parallel_tool_calls."""
from __future__ import annotations

import json

import pytest

from bitnet.tools import Tools, ToolsError

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
TIME = {"type": "function", "function": {"name": "get_time"}}


def test_an_answer_is_a_call_only_when_it_is_exactly_calls_to_known_tools():
    tools = Tools([WEATHER, TIME], "auto")
    (call,) = tools.parse('  {"name": "get_weather", "arguments": {"city": "Oslo"}} ')
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Oslo"}
    assert [c.name for c in tools.parse('[{"name": "get_time"}, {"name": "get_weather", "arguments": {}}]')] == [
        "get_time", "get_weather"]
    for not_a_call in ('{"name": "unknown", "arguments": {}}', 'The weather is {"name": "get_time"}',
                       '{"name": "get_time", "arguments": "x"}', '[{"name": "get_time"}, 3]', "plain text"):
        assert tools.parse(not_a_call) == []
    assert Tools([WEATHER], "none").parse('{"name": "get_weather", "arguments": {}}') == []


def test_parallel_tool_calls_false_keeps_one_call_per_answer():
    answer = '[{"name": "get_time"}, {"name": "get_weather", "arguments": {}}]'
    assert [c.name for c in Tools([WEATHER, TIME], "auto", parallel=False).parse(answer)] == ["get_time"]


def test_a_template_with_a_parameters_key_gets_calls_in_its_shape():
    template = '{% for t in tools %}{{ t | tojson }}{% endfor %} answer {"name": ..., "parameters": ...}'
    tools = Tools([WEATHER], "required", template)
    assert tools.native and tools.grammar()["required"] == ["name", "parameters"]
    (call,) = tools.parse('{"name": "get_weather", "parameters": {"city": "Rome"}}')
    assert json.loads(call.arguments) == {"city": "Rome"}


@pytest.mark.parametrize("tools, choice, param", [
    ([{"type": "function"}], "auto", "tools.0"),
    ([WEATHER], "sometimes", "tool_choice"),
    ([WEATHER], {"type": "function", "function": {"name": "nope"}}, "tool_choice"),
    (None, "required", "tool_choice"),
])
def test_bad_tools_name_the_field(tools, choice, param):
    with pytest.raises(ToolsError) as err:
        Tools(tools, choice)
    assert err.value.param == param
