"""The parts of the OpenAI API today's clients build on, through the unmodified `openai` client against `bitnet
serve` in a real process: structured outputs, tool calls, logprobs, n, logit_bias, the penalties,
stream_options.include_usage, and llama-server's /tokenize and /detokenize. The embedded model writes nonsense,
so whatever is valid JSON here is the grammar's doing."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gguf_edit import rewrite_gguf

import bitnet

openai = pytest.importorskip("openai")
pydantic = pytest.importorskip("pydantic")
pytest.importorskip("llguidance")
pytest.importorskip("fastapi")

from server_process import CTX, ServerProcess  # noqa: E402  (after the importorskips above)

API_KEY = "sk-test-openai"
MESSAGES = [{"role": "user", "content": "Tell me about a person."}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24},
                                                    "days": {"type": "integer", "minimum": 1, "maximum": 7}},
                   "required": ["city", "days"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 8}},
                                       "required": ["zone"], "additionalProperties": False}}}


class Person(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=24)
    age: int = pydantic.Field(ge=0, le=120)
    likes_tea: bool


@pytest.fixture(scope="module")
def server(small_model_path, tmp_path_factory):
    proc = ServerProcess(small_model_path, tmp_path_factory.mktemp("openai") / "server.log", "--api-key", API_KEY,
                         "--parallel", "4")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0)


@pytest.fixture(scope="module")
def ref(small_model_path):
    model = bitnet.load(small_model_path, n_threads=1, n_ctx=CTX)
    yield model
    model.close()


def test_parse_with_a_pydantic_model_validates_on_20_seeded_runs(client):
    for seed in range(20):
        result = client.chat.completions.parse(model="m", messages=MESSAGES, response_format=Person,
                                               temperature=1.0, seed=seed, max_tokens=80)
        choice = result.choices[0]
        assert choice.finish_reason == "stop" and isinstance(choice.message.parsed, Person), choice.message.content


def test_json_object_and_a_lark_grammar(client, server):
    # any JSON object: keys and strings are unbounded, so an answer may also run to max_tokens; one that ends is
    # an object
    finished = 0
    for seed in range(8):
        choice = client.chat.completions.create(model="m", messages=MESSAGES, response_format={"type": "json_object"},
                                                temperature=0.8, seed=seed, max_tokens=60).choices[0]
        if choice.finish_reason == "stop":
            assert isinstance(json.loads(choice.message.content), dict)
            finished += 1
        else:
            assert choice.message.content.startswith("{")
    assert finished >= 1
    grammar = 'start: ("yes" | "no") ", because " /[a-z ]{1,20}/ "."'
    for route, body in (("/v1/chat/completions", {"messages": MESSAGES}), ("/v1/completions", {"prompt": "Well"})):
        r = server.http.post(route, json={**body, "grammar": grammar, "seed": 2, "temperature": 1.0,
                                          "max_tokens": 40}, headers={"Authorization": f"Bearer {API_KEY}"})
        choice = r.json()["choices"][0]
        text = choice["text"] if "text" in choice else choice["message"]["content"]
        assert text.split(", because ")[0] in ("yes", "no") and text.endswith(".") and choice["finish_reason"] == "stop"


def test_a_grammar_that_never_finishes_stops_at_max_tokens(client, ref):
    """The grammar would end at "!", which a logit bias keeps the model from writing: the answer runs to
    max_tokens, every token of it inside the grammar."""
    bang = ref.tokenize("!", add_bos=False)
    assert len(bang) == 1
    r = client.completions.create(model="m", prompt="Count", max_tokens=12, temperature=0,
                                  logit_bias={str(bang[0]): -100}, extra_body={"grammar": 'start: /x+/ "!"'})
    assert r.choices[0].finish_reason == "length" and set(r.choices[0].text) == {"x"}
    assert r.usage.completion_tokens == 12


def test_a_grammar_that_fails_while_decoding_fails_that_request_only(client, server):
    """llguidance gives up on some grammars only while decoding (a recursion that grows its parser state): that
    request gets an error, and the server goes on serving."""
    with pytest.raises(openai.APIStatusError) as err:
        client.completions.create(model="m", prompt="Count", max_tokens=40, temperature=0.5, seed=1,
                                  extra_body={"grammar": 'start: "x" start'})
    assert "grammar" in str(err.value)
    assert client.completions.create(model="m", prompt="Count", max_tokens=2).choices[0].text is not None


def test_a_required_tool_call_has_arguments_that_validate_and_streams_to_the_same_call(client):
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Weather in Oslo?"}],
                                           tools=[WEATHER, TIME], tool_choice=choice, seed=3, max_tokens=80)
        message = r.choices[0].message
        assert r.choices[0].finish_reason == "tool_calls" and message.content is None
        (call,) = message.tool_calls
        args = json.loads(call.function.arguments)
        if call.function.name == "get_weather":
            assert set(args) == {"city", "days"} and isinstance(args["city"], str) and 1 <= args["days"] <= 7
        else:
            assert choice == "required" and set(args) == {"zone"}
        stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Weather in Oslo?"}],
                                                tools=[WEATHER, TIME], tool_choice=choice, seed=3, max_tokens=80,
                                                stream=True)
        parts: dict[int, dict] = {}
        finish = None
        for chunk in stream:
            for delta_call in chunk.choices[0].delta.tool_calls or []:
                part = parts.setdefault(delta_call.index, {"name": "", "arguments": ""})
                part["name"] += delta_call.function.name or ""
                part["arguments"] += delta_call.function.arguments or ""
            finish = chunk.choices[0].finish_reason or finish
        assert finish == "tool_calls"
        assert parts == {0: {"name": call.function.name, "arguments": call.function.arguments}}


def test_tool_results_in_the_history_are_accepted(client):
    history = [{"role": "user", "content": "Weather in Oslo?"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo", "days": 1}'}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "rain, 4 C"}]
    r = client.chat.completions.create(model="m", messages=history, tools=[WEATHER], tool_choice="none",
                                       max_tokens=8, seed=1)
    assert r.choices[0].finish_reason in ("stop", "length") and r.choices[0].message.tool_calls is None


def test_chat_logprobs_are_the_log_softmax_of_the_models_logits(client, ref):
    r = client.chat.completions.create(model="m", messages=MESSAGES, logprobs=True, top_logprobs=5,
                                       temperature=0.9, seed=8, max_tokens=10)
    content = r.choices[0].logprobs.content
    same = ref.chat(MESSAGES, temperature=0.9, seed=8, max_tokens=10, logprobs=5, session=ref.new_session())
    assert r.choices[0].message.content == same.text and len(content) == len(same.tokens)
    prompt_ids, _ = ref.chat_ids(MESSAGES)
    logits = ref.logits(prompt_ids + same.tokens[:-1]).astype(np.float64)
    peak = logits.max(1, keepdims=True)
    logsm = logits - peak - np.log(np.exp(logits - peak).sum(1, keepdims=True))
    for i, (entry, token) in enumerate(zip(content, same.tokens)):
        row = logsm[len(prompt_ids) - 1 + i]
        assert abs(entry.logprob - row[token]) <= 1e-4 and bytes(entry.bytes) == ref.tokenizer.token_bytes(token)
        best = np.argsort(-row, kind="stable")[:5]
        assert [round(t.logprob - row[b], 4) for t, b in zip(entry.top_logprobs, best)] == [0.0] * 5


def test_completion_echo_gives_the_prompts_logprobs_and_scores_like_the_python_api(client, ref):
    prompt = "A journey of a thousand miles"
    r = client.completions.create(model="m", prompt=prompt, echo=True, logprobs=1, max_tokens=1, temperature=0)
    lp = r.choices[0].logprobs
    ids = ref.tokenize(prompt)
    assert r.choices[0].text.startswith(prompt) and lp.token_logprobs[0] is None
    assert len(lp.token_logprobs) == len(ids) + 1
    score = ref.score(ids)
    assert abs(sum(lp.token_logprobs[1:len(ids)]) - score.logprob) <= 1e-4
    whole = client.completions.create(model="m", prompt=prompt, echo=True, logprobs=1, max_tokens=3, temperature=0)
    streamed = list(client.completions.create(model="m", prompt=prompt, echo=True, logprobs=1, max_tokens=3,
                                              stream=True, temperature=0))
    text = "".join(chunk.choices[0].text for chunk in streamed)
    assert text == whole.choices[0].text and len(text) > len(prompt)
    # the chunks' logprobs join into the whole answer's: the same tokens, values and text offsets
    parts = [chunk.choices[0].logprobs for chunk in streamed if chunk.choices[0].logprobs is not None]
    want = whole.choices[0].logprobs
    assert [t for p in parts for t in p.tokens] == want.tokens
    assert [v for p in parts for v in p.token_logprobs] == want.token_logprobs
    assert [o for p in parts for o in p.text_offset] == want.text_offset


def test_n_choices_decode_together_each_from_its_own_seed(client, ref):
    r = client.chat.completions.create(model="m", messages=MESSAGES, n=3, seed=10, temperature=1.0, max_tokens=12)
    assert [c.index for c in r.choices] == [0, 1, 2]
    ids, prompt = ref.chat_ids(MESSAGES)
    for i, choice in enumerate(r.choices):
        alone = ref.generate(ids, max_tokens=12, temperature=1.0, seed=10 + i, stop=prompt.stop_texts,
                             session=ref.new_session())
        assert choice.message.content == alone.text
    assert r.usage.completion_tokens >= 3
    stream = client.chat.completions.create(model="m", messages=MESSAGES, n=2, seed=10, temperature=1.0,
                                            max_tokens=12, stream=True, stream_options={"include_usage": True})
    texts, usage = {0: "", 1: ""}, None
    for chunk in stream:
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
        usage = chunk.usage or usage
    assert [texts[0], texts[1]] == [r.choices[0].message.content, r.choices[1].message.content]
    assert usage is not None and usage.prompt_tokens == len(ids)


def test_logit_bias_and_the_penalties_change_the_answer_as_openai_defines(client, ref):
    plain = ref.generate("Love is", max_tokens=30, temperature=0)
    the = plain.tokens[0]                            # a token greedy decoding writes, to ban or to force
    for settings in ({"logit_bias": {str(the): -100}}, {"logit_bias": {str(the): 100}},
                     {"logit_bias": {str(the): 5}, "frequency_penalty": 2.0}, {"presence_penalty": -2.0}):
        served = client.completions.create(model="m", prompt="Love is", max_tokens=30, temperature=0, **settings)
        local = ref.generate("Love is", max_tokens=30, temperature=0, **{
            **settings, **({"logit_bias": {int(k): v for k, v in settings["logit_bias"].items()}}
                           if "logit_bias" in settings else {})})
        assert served.choices[0].text == local.text, settings
        if settings.get("logit_bias", {}).get(str(the)) == -100:
            assert the not in local.tokens
        if settings.get("logit_bias", {}).get(str(the)) == 100:
            assert set(local.tokens) == {the}
    penalized = ref.generate("Love is", max_tokens=30, temperature=0, logit_bias={the: 5}, frequency_penalty=2.0)
    assert penalized.tokens.count(the) < 30


def test_tokenize_and_detokenize_as_llama_server(server, ref):
    auth = {"Authorization": f"Bearer {API_KEY}"}
    ids = server.http.post("/tokenize", json={"content": "Hello world"}, headers=auth).json()["tokens"]
    assert ids == ref.tokenize("Hello world", add_bos=False)
    with_bos = server.http.post("/tokenize", json={"content": "Hello world", "add_special": True}, headers=auth)
    assert with_bos.json()["tokens"] == ref.tokenize("Hello world")
    pieces = server.http.post("/tokenize", json={"content": "Hello", "with_pieces": True}, headers=auth).json()
    assert "".join(p["piece"] for p in pieces["tokens"]) == "Hello"
    assert server.http.post("/detokenize", json={"tokens": ids}, headers=auth).json()["content"] == "Hello world"
    assert server.http.post("/tokenize", json={"content": "x"}).status_code == 401


@pytest.mark.parametrize("body, param", [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}},
     "response_format"),
    ({"response_format": {"type": "yaml"}}, "response_format"),
    ({"grammar": "start: undefined_rule"}, "grammar"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"n": 9}, "n"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "nonsense"}}}],
      "tool_choice": "required"}, "tools"),
    ({"logit_bias": {"abc": 1}}, "logit_bias"),
    ({"logit_bias": {"5": 101}}, "logit_bias"),
])
def test_bad_structured_requests_are_400_naming_the_field(server, body, param):
    r = server.http.post("/v1/chat/completions", json={"messages": MESSAGES, "max_tokens": 4, **body},
                         headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["message"], error


# A LLaMA-3.1-style template that renders tools itself (written for this test): the tools in a system turn, a
# call as {"name", "parameters"}, tool results as their own role.
TOOL_TEMPLATE = (Path(__file__).resolve().parents[1] / "data" / "templates" / "tools-llama3-style.jinja").read_text()


@pytest.fixture(scope="module")
def templated(small_model_path, tmp_path_factory):
    """The embedded model with TOOL_TEMPLATE as its chat template, served."""
    folder = tmp_path_factory.mktemp("templated")
    path = folder / "tools.gguf"
    rewrite_gguf(small_model_path, path, set_keys={"tokenizer.chat_template": TOOL_TEMPLATE})
    proc = ServerProcess(path, folder / "server.log", "--api-key", API_KEY)
    yield path, openai.OpenAI(base_url=f"{proc.url}/v1", api_key=API_KEY, max_retries=0)
    proc.stop()


def test_a_template_that_renders_tools_gets_them_and_its_own_call_shape(templated):
    path, client = templated
    model = bitnet.load(path, n_threads=1, n_ctx=CTX)
    history = [{"role": "user", "content": "Weather in Oslo?"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "c1", "type": "function", "function": {"name": "get_weather",
                                                                 "arguments": '{"city": "Oslo", "days": 1}'}}]},
               {"role": "tool", "tool_call_id": "c1", "content": "rain"}]
    from bitnet.tools import Tools

    tools = Tools([WEATHER], "required", model.chat_template)
    assert tools.native and tools.arguments_key == "parameters"
    prompt = model.render_chat(tools.messages(history), tools=tools.openai_tools())
    assert '"name": "get_weather"' in prompt.text and '"description": "The weather in a city"' in prompt.text
    assert '{"name": "get_weather", "parameters": {"city": "Oslo", "days": 1}}' in prompt.text
    assert "<|start_header_id|>tool<|end_header_id|>\n\nrain" in prompt.text
    assert "You can call the tools below" not in prompt.text          # not the built-in format
    r = client.chat.completions.create(model="m", messages=history, tools=[WEATHER], tool_choice="required",
                                       seed=2, max_tokens=60)
    (call,) = r.choices[0].message.tool_calls
    args = json.loads(call.function.arguments)
    assert call.function.name == "get_weather" and set(args) == {"city", "days"}
    none = client.chat.completions.create(model="m", messages=history, tools=[WEATHER], tool_choice="none",
                                          max_tokens=4, seed=1)
    assert none.choices[0].message.tool_calls is None
