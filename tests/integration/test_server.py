"""`bitnet serve` end to end: the real server as a subprocess on a free loopback port, driven by the official
`openai` client and by raw HTTP (httpx) for streaming details and every error path."""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, child_env

import bitnet

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from server_process import CTX, ServerProcess  # noqa: E402  (after the importorskips above)

API_KEY = "sk-test-1234"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
LONG_PROMPT = "The long story begins"
LONG_MAX_TOKENS = 3000
SAMPLING = {"temperature": 0.7, "top_p": 0.9, "top_k": 30, "min_p": 0.02, "repeat_penalty": 1.1}
@pytest.fixture(scope="module")
def model_path(small_model_path) -> Path:
    return small_model_path


@pytest.fixture(scope="module")
def ref(model_path):
    """The in-process model the server's answers are compared with (same file, same thread count)."""
    model = bitnet.load(model_path, n_threads=1, n_ctx=CTX)
    yield model
    model.close()


@pytest.fixture(scope="module")
def long_request(ref) -> tuple[dict, bitnet.Completion]:
    """A completion request that runs to max_tokens (no end-of-turn token on the way), filling most of the
    context: it is still generating while a test drops it or queues more requests behind it. The reference
    run proves it does not stop early, so a test that sees it stopped knows the server stopped it."""
    max_tokens = min(LONG_MAX_TOKENS, ref.n_ctx - len(ref.tokenize(LONG_PROMPT)))
    for seed in range(1, 9):
        body = {"prompt": LONG_PROMPT, "max_tokens": max_tokens, "seed": seed, "temperature": 1.0}
        completion = ref.generate(LONG_PROMPT, max_tokens=max_tokens, seed=seed, temperature=1.0)
        if completion.finish_reason == "length":
            return body, completion
    pytest.fail("no seed makes the long request run to max_tokens")


@pytest.fixture(scope="module")
def server(model_path, tmp_path_factory):
    proc = ServerProcess(model_path, tmp_path_factory.mktemp("server") / "server.log", "--api-key", API_KEY,
                         "--parallel", "4", "--queue-size", "16")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)


def _sse_events(lines) -> list[str]:
    return [line[len("data: "):] for line in lines if line.startswith("data: ")]


def _stream_text(events: list[str], kind: str) -> str:
    out = []
    for event in events[:-1]:
        for choice in json.loads(event)["choices"]:
            out.append((choice["delta"].get("content") or "") if kind == "chat" else choice["text"])
    return "".join(out)


def _assert_error(response, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert set(error) >= {"message", "type", "param", "code"}
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return error


# ----------------------------------------------------------------------------------------- the openai client
def test_openai_chat_completion_equals_model_chat(client, ref):
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."}]
    response = client.chat.completions.create(
        model="anything", messages=messages, max_tokens=20, seed=11, temperature=SAMPLING["temperature"],
        top_p=SAMPLING["top_p"], extra_body={k: SAMPLING[k] for k in ("top_k", "min_p", "repeat_penalty")})
    expected = ref.chat(messages, max_tokens=20, seed=11, **SAMPLING)
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == expected.text
    assert choice.finish_reason == expected.finish_reason
    assert response.object == "chat.completion" and response.id.startswith("chatcmpl-")
    assert response.usage.prompt_tokens == expected.prompt_tokens
    assert response.usage.completion_tokens == len(expected.tokens)
    assert response.usage.total_tokens == expected.prompt_tokens + len(expected.tokens)


def test_openai_streamed_chat_equals_model_chat(client, ref):
    messages = [{"role": "user", "content": "Tell me about the sea."}]
    stream = client.chat.completions.create(
        model="anything", messages=messages, max_tokens=24, seed=5, temperature=0.9, top_p=0.95, stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    expected = ref.chat(messages, max_tokens=24, seed=5, temperature=0.9, top_p=0.95)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected.text
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [expected.finish_reason]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == len(expected.tokens)
    assert chunks[-1].usage.prompt_tokens == expected.prompt_tokens


def test_openai_text_completion_equals_model_generate(client, ref):
    response = client.completions.create(model="anything", prompt="Once upon a time", max_tokens=20, seed=3,
                                         temperature=SAMPLING["temperature"], top_p=SAMPLING["top_p"],
                                         extra_body={"top_k": 30, "min_p": 0.02, "repeat_penalty": 1.1})
    expected = ref.generate("Once upon a time", max_tokens=20, seed=3, **SAMPLING)
    assert response.object == "text_completion"
    assert response.choices[0].text == expected.text
    assert response.choices[0].finish_reason == expected.finish_reason
    assert response.usage.prompt_tokens == expected.prompt_tokens
    assert response.usage.completion_tokens == len(expected.tokens)


def test_openai_lists_the_model(client, server):
    models = client.models.list().data
    assert len(models) == 1 and models[0].id == server.health()["model"]
    assert client.models.retrieve(models[0].id).id == models[0].id


# ----------------------------------------------------------------------------------------- raw HTTP
def test_streamed_text_completion_is_sse_ending_with_done(server, ref):
    body = {"prompt": "Hello there", "max_tokens": 12, "seed": 9, "stream": True, **SAMPLING}
    with server.http.stream("POST", "/v1/completions", json=body, headers=AUTH) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _sse_events(response.iter_lines())
    assert events[-1] == "[DONE]"
    expected = ref.generate("Hello there", max_tokens=12, seed=9, **SAMPLING)
    assert _stream_text(events, "text") == expected.text
    assert json.loads(events[-2])["choices"][0]["finish_reason"] == expected.finish_reason


def test_omitted_sampling_fields_take_the_engine_defaults(server, ref):
    body = {"prompt": "Defaults are", "max_tokens": 16, "seed": 21}
    response = server.http.post("/v1/completions", json=body, headers=AUTH)
    assert response.status_code == 200
    assert response.json()["choices"][0]["text"] == ref.generate("Defaults are", max_tokens=16, seed=21).text


def test_stop_sequence_and_token_id_prompt(server, ref):
    full = ref.generate("Stop me", max_tokens=30, seed=4, temperature=0.0)
    assert len(full.text) >= 4, "the greedy continuation is too short to cut"
    stop = full.text[len(full.text) // 2:len(full.text) // 2 + 2]
    expected = ref.generate("Stop me", max_tokens=30, seed=4, temperature=0.0, stop=[stop])
    body = {"prompt": ref.tokenize("Stop me"), "max_tokens": 30, "seed": 4, "temperature": 0.0, "stop": stop}
    response = server.http.post("/v1/completions", json=body, headers=AUTH).json()
    assert response["choices"][0]["text"] == expected.text
    assert response["choices"][0]["finish_reason"] == "stop"
    assert stop not in response["choices"][0]["text"]


def test_follow_up_turn_reuses_its_slot_cache_and_answers_the_same(server, ref):
    first = [{"role": "user", "content": "Pick a number."}]
    a = server.http.post("/v1/chat/completions", json={"messages": first, "max_tokens": 8, "seed": 1},
                         headers=AUTH).json()
    follow_up = first + [{"role": "assistant", "content": a["choices"][0]["message"]["content"]},
                         {"role": "user", "content": "And another one?"}]
    before = server.metric("bitnet_prefill_tokens_total")
    b = server.http.post("/v1/chat/completions", json={"messages": follow_up, "max_tokens": 8, "seed": 2},
                         headers=AUTH).json()
    evaluated = server.metric("bitnet_prefill_tokens_total") - before
    # The slot that answered the first turn holds its prompt: only the new part (give or take a token merged
    # across the boundary) is evaluated again.
    assert evaluated <= b["usage"]["prompt_tokens"] - a["usage"]["prompt_tokens"] + 3
    assert b["choices"][0]["message"]["content"] == ref.chat(follow_up, max_tokens=8, seed=2).text


def test_unknown_fields_are_ignored(server):
    body = {"messages": [{"role": "user", "content": "hi", "name": "bob"}], "max_tokens": 2, "frequency_penalty": 0,
            "logit_bias": {}, "whatever": [1, 2]}
    assert server.http.post("/v1/chat/completions", json=body, headers=AUTH).status_code == 200


def test_api_key_required_on_v1_routes_only(server):
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    _assert_error(server.http.post("/v1/chat/completions", json=chat), 401, "invalid_api_key")
    _assert_error(server.http.post("/v1/completions", json={"prompt": "x"}), 401, "invalid_api_key")
    _assert_error(server.http.get("/v1/models"), 401)
    _assert_error(server.http.get("/v1/models", headers={"Authorization": "Bearer wrong"}), 401)
    _assert_error(server.http.get("/v1/models", headers={"Authorization": API_KEY}), 401)
    _assert_error(server.http.get("/v1/no-such-route"), 401)
    assert server.http.get("/health").status_code == 200
    assert server.http.get("/metrics").status_code == 200
    assert server.http.get("/v1/models", headers=AUTH).status_code == 200


def test_unknown_routes_and_models_are_404(server):
    _assert_error(server.http.get("/v1/no-such-route", headers=AUTH), 404, "unknown_url")
    _assert_error(server.http.get("/nothing-here"), 404, "unknown_url")
    _assert_error(server.http.get("/v1/models/no-such-model", headers=AUTH), 404, "model_not_found")
    _assert_error(server.http.get("/v1/chat/completions", headers=AUTH), 405)


@pytest.mark.parametrize("body, param", [
    ({"messages": "hi"}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": [{"content": "hi"}]}, "messages.0.role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "messages.0.content.0"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
    ({"max_tokens": "8"}, "max_tokens"),
    ({"max_tokens": -1}, "max_tokens"),
    ({"max_tokens": True}, "max_tokens"),
    ({"temperature": "hot"}, "temperature"),
    ({"temperature": -1}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"top_k": 1.5}, "top_k"),
    ({"min_p": 2}, "min_p"),
    ({"repeat_penalty": 0}, "repeat_penalty"),
    ({"seed": "1"}, "seed"),
    ({"seed": 2 ** 64}, "seed"),
    ({"stop": [1]}, "stop"),
    ({"stop": ["x"] * 17}, "stop"),
    ({"stream": "yes"}, "stream"),
    ({"n": 9}, "n"),
    ({"n": 0}, "n"),
])
def test_bad_chat_request_is_400_naming_the_parameter(server, body, param):
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **body}
    response = server.http.post("/v1/chat/completions", json=body, headers=AUTH)
    _assert_error(response, 400, param=param)


def test_missing_messages_is_400(server):
    _assert_error(server.http.post("/v1/chat/completions", json={"max_tokens": 2}, headers=AUTH), 400,
                  param="messages")


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
def test_body_that_is_not_a_json_object_is_400(server, raw):
    response = server.http.post("/v1/completions", content=raw, headers={**AUTH, "Content-Type": "application/json"})
    _assert_error(response, 400)


@pytest.mark.parametrize("prompt", [["a", "b"], [10 ** 6], [], [[1, 2], [3]]])
def test_bad_text_prompt_is_400(server, prompt):
    _assert_error(server.http.post("/v1/completions", json={"prompt": prompt}, headers=AUTH), 400, param="prompt")


def test_prompt_longer_than_the_context_is_400(server, ref):
    prompt = "word " * ref.n_ctx
    _assert_error(server.http.post("/v1/completions", json={"prompt": prompt}, headers=AUTH), 400,
                  "context_length_exceeded", "prompt")
    chat = {"messages": [{"role": "user", "content": prompt}]}
    _assert_error(server.http.post("/v1/chat/completions", json=chat, headers=AUTH), 400, "context_length_exceeded")


def test_max_tokens_is_capped_by_the_context(server, ref):
    prompt_ids = ref.tokenize("Capped")
    room = ref.n_ctx - len(prompt_ids)
    filler = [prompt_ids[-1]] * (room - 3)   # leaves room for 3 tokens
    body = {"prompt": prompt_ids + filler, "max_tokens": 10 ** 6, "seed": 2, "temperature": 0.0}
    response = server.http.post("/v1/completions", json=body, headers=AUTH)
    assert response.status_code == 200
    assert response.json()["usage"]["completion_tokens"] <= 3


def test_max_tokens_0_evaluates_the_prompt_and_generates_nothing_as_the_cli_does(server, small_model_path):
    for route, body in (("/v1/completions", {"prompt": "Zero"}),
                        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Zero"}]})):
        response = server.http.post(route, json={**body, "max_tokens": 0}, headers=AUTH)
        assert response.status_code == 200, response.text
        choice, usage = response.json()["choices"][0], response.json()["usage"]
        assert usage["completion_tokens"] == 0 and usage["prompt_tokens"] > 0
        text = choice["text"] if "text" in choice else choice["message"]["content"]
        assert choice["finish_reason"] == "length" and text == ""
    cli = subprocess.run([sys.executable, "-m", "bitnet", "run", "-m", str(small_model_path), "-p", "Zero", "-n", "0",
                          "--prompt-template", "raw"], capture_output=True, text=True,
                         env=child_env(PYTHONPATH=str(PROJECT_ROOT)), timeout=120)
    assert cli.returncode == 0 and cli.stdout.strip() == "" and "finish: length" in cli.stderr


def test_body_over_the_limit_is_413(server):
    big = {"prompt": "x" * (1 << 20) + "y"}
    _assert_error(server.http.post("/v1/completions", json=big, headers=AUTH), 413, "request_too_large")

    def chunks():   # no Content-Length: the limit holds for a chunked body too
        for _ in range(40):
            yield b" " * 32768
        yield b'{"prompt": "x"}'

    _assert_error(server.http.post("/v1/completions", content=chunks(), headers=AUTH), 413)
    assert server.health()["status"] == "ok"


def test_one_log_line_per_request(server):
    server.http.get("/v1/models/log-probe-model", headers=AUTH)
    server.http.post("/v1/completions", json={"prompt": "log probe", "max_tokens": 3}, headers=AUTH)
    deadline = time.monotonic() + 5
    while '"POST /v1/completions" 200' not in server.log().split("log-probe-model")[-1] and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = server.log().splitlines()
    probe = [line for line in lines if '"GET /v1/models/log-probe-model" 404' in line]
    assert len(probe) == 1
    after = lines[lines.index(probe[0]) + 1:]
    assert any(re.search(r'"POST /v1/completions" 200 .*prompt=\d+ completion=3', line) for line in after)


def test_accepted_connections_have_tcp_nodelay():
    """Without TCP_NODELAY on the server's sockets each answer on a kept-alive connection waits ~40 ms for a
    delayed ACK. asyncio (which uvicorn serves the bound socket with) sets it on accepted connections only when
    the listening socket says it is TCP: checked on the socket itself, not with a clock."""
    import asyncio
    import socket

    from bitnet.server.main import _bind

    async def accepted_nodelay() -> int:
        listener = _bind("127.0.0.1", 0)
        listener.listen()
        seen = asyncio.get_running_loop().create_future()

        async def handle(reader, writer):
            seen.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=listener)
        _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accepted_nodelay()) != 0


def test_metrics_count_requests_and_tokens(server):
    before = server.metric("bitnet_completion_tokens_total")
    usage = server.http.post("/v1/completions", json={"prompt": "count me", "max_tokens": 7, "seed": 1},
                             headers=AUTH).json()["usage"]
    assert server.metric("bitnet_completion_tokens_total") == before + usage["completion_tokens"]
    text = server.http.get("/metrics").text
    assert re.search(r'^bitnet_requests_total\{endpoint="/v1/completions",status="200"\} [1-9]', text, re.MULTILINE)
    for name in ("bitnet_queue_depth", "bitnet_slots_busy", "bitnet_tokens_per_second",
                 "bitnet_prompt_tokens_total"):
        assert re.search(rf"^# TYPE {name} (gauge|counter)$", text, re.MULTILINE)
    assert server.metric("bitnet_slots_total") == 4
    assert server.metric("bitnet_tokens_per_second") > 0


# ----------------------------------------------------------------------------------------- concurrency
def test_eight_concurrent_streams_match_their_single_client_results(server, ref):
    requests = []
    for i in range(8):
        if i % 2:
            requests.append(("/v1/chat/completions", {"messages": [{"role": "user", "content": f"Story {i}"}]}))
        else:
            requests.append(("/v1/completions", {"prompt": f"Client {i} says"}))
    for i, (_, body) in enumerate(requests):
        body.update(max_tokens=24 + 4 * i, seed=100 + i, stream=True, temperature=0.9)

    async def one(http: httpx.AsyncClient, path: str, body: dict) -> list[str]:
        async with http.stream("POST", path, json=body, headers=AUTH) as response:
            assert response.status_code == 200
            return _sse_events([line async for line in response.aiter_lines()])

    async def all_at_once() -> list[list[str]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            return await asyncio.gather(*(one(http, path, body) for path, body in requests))

    results = asyncio.run(all_at_once())
    for (_, body), events in zip(requests, results, strict=True):
        assert events[-1] == "[DONE]"
        kwargs = {"max_tokens": body["max_tokens"], "seed": body["seed"], "temperature": 0.9}
        if "messages" in body:
            expected = ref.chat(body["messages"], **kwargs)
        else:
            expected = ref.generate(body["prompt"], **kwargs)
        assert _stream_text(events, "chat" if "messages" in body else "text") == expected.text
    health = server.wait_health(lambda h: h["slots_idle"] == 4)
    assert health["slots_idle"] == 4 and health["queue_depth"] == 0


def test_dropped_stream_stops_generation_and_frees_its_slot(server, long_request):
    body = long_request[0]
    before = server.metric("bitnet_completion_tokens_total")
    with httpx.Client(base_url=server.url, timeout=60) as http, \
            http.stream("POST", "/v1/completions", json={**body, "stream": True}, headers=AUTH) as response:
        lines = response.iter_lines()
        got = [next(lines) for _ in range(6)]
        assert any(line.startswith("data: ") for line in got)
    # The connection is closed here, long before the generation could end.
    health = server.wait_health(lambda h: h["slots_idle"] == h["slots_total"], timeout=5)
    assert health["status"] == "ok" and health["slots_idle"] == 4
    generated = server.metric("bitnet_completion_tokens_total") - before
    assert 0 < generated < body["max_tokens"] / 2
    assert re.search(r'"POST /v1/completions" 200 .* stream client-gone$', server.log(), re.MULTILINE)


def test_dropped_non_streaming_request_stops_generation(server, long_request):
    body = long_request[0]
    before = server.metric("bitnet_completion_tokens_total")
    with httpx.Client(base_url=server.url, timeout=httpx.Timeout(60, read=0.1)) as http, \
            pytest.raises(httpx.ReadTimeout):
        http.post("/v1/completions", json=body, headers=AUTH)
    health = server.wait_health(lambda h: h["slots_idle"] == h["slots_total"], timeout=5)
    assert health["slots_idle"] == 4
    generated = server.metric("bitnet_completion_tokens_total") - before
    assert 0 < generated < body["max_tokens"] * 0.9


# ----------------------------------------------------------------------------------------- queue, shutdown
@pytest.fixture
def busy_server(model_path, tmp_path):
    proc = ServerProcess(model_path, tmp_path / "busy.log", "--parallel", "1", "--queue-size", "1")
    yield proc
    proc.stop()


def _post_in_background(url: str, body: dict) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def post() -> None:
        with httpx.Client(timeout=60) as http:
            response = http.post(url, json=body)
            out["status"], out["body"] = response.status_code, response.json()

    thread = threading.Thread(target=post)
    thread.start()
    return thread, out


def test_full_queue_is_503_and_queued_requests_run_after(busy_server, long_request):
    body, expected = long_request
    running, running_out = _post_in_background(busy_server.url + "/v1/completions", body)
    assert busy_server.wait_health(lambda h: h["slots_busy"] == 1)["slots_busy"] == 1
    queued, queued_out = _post_in_background(busy_server.url + "/v1/completions",
                                             {"prompt": "queued", "max_tokens": 4})
    assert busy_server.wait_health(lambda h: h["queue_depth"] == 1)["queue_depth"] == 1
    response = busy_server.http.post("/v1/completions", json={"prompt": "one too many", "max_tokens": 4})
    _assert_error(response, 503, "server_busy")
    assert response.headers.get("retry-after")
    assert busy_server.health()["slots_busy"] == 1, "the long request must still be running"
    running.join(30)
    queued.join(30)
    assert running_out["status"] == 200 and running_out["body"]["choices"][0]["text"] == expected.text
    assert queued_out["status"] == 200 and queued_out["body"]["usage"]["completion_tokens"] == 4
    assert busy_server.metric('bitnet_queue_depth') == 0


def test_client_leaving_the_queue_frees_its_place(busy_server, long_request):
    body, _ = long_request
    running, running_out = _post_in_background(busy_server.url + "/v1/completions", body)
    assert busy_server.wait_health(lambda h: h["slots_busy"] == 1)["slots_busy"] == 1
    with httpx.Client(base_url=busy_server.url, timeout=60) as http, \
            http.stream("POST", "/v1/completions", json={"prompt": "waiting", "stream": True}) as response:
        assert response.status_code == 200   # accepted into the queue: the stream is open, no token yet
        assert busy_server.wait_health(lambda h: h["queue_depth"] == 1)["queue_depth"] == 1
    health = busy_server.wait_health(lambda h: h["queue_depth"] == 0)
    assert health["queue_depth"] == 0 and health["slots_busy"] == 1, "the long request must still be running"
    queued, queued_out = _post_in_background(busy_server.url + "/v1/completions", {"prompt": "next", "max_tokens": 2})
    running.join(30)
    queued.join(30)
    assert running_out["status"] == 200 and queued_out["status"] == 200


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_lets_the_running_stream_finish_and_exits_0(busy_server, long_request, sig):
    body, expected = long_request
    with httpx.Client(base_url=busy_server.url, timeout=60) as http, \
            http.stream("POST", "/v1/completions", json={**body, "stream": True}) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        queued, queued_out = _post_in_background(busy_server.url + "/v1/completions", {"prompt": "late"})
        assert busy_server.wait_health(lambda h: h["queue_depth"] == 1)["queue_depth"] == 1
        busy_server.proc.send_signal(sig)
        events = [first[6:]] + _sse_events(lines)
    assert events[-1] == "[DONE]"
    assert _stream_text(events, "text") == expected.text
    queued.join(30)
    assert queued_out["status"] == 503 and queued_out["body"]["error"]["code"] == "shutting_down"
    assert busy_server.proc.wait(30) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(busy_server.url + "/health", timeout=2)


def test_startup_errors_are_one_line_and_exit_1(model_path, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    missing = subprocess.run([sys.executable, "-m", "bitnet.server", "--model", str(tmp_path / "absent.gguf"),
                              "--port", "0"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1
    assert "absent.gguf" in missing.stderr and "Traceback" not in missing.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = subprocess.run([sys.executable, "-m", "bitnet.server", "--model", str(model_path), "--port", str(port)],
                              cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert busy.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in busy.stderr and "Traceback" not in busy.stderr
