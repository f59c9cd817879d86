"""`bitnet serve --parallel 8`: eight concurrent streaming `openai` clients are decoded in one batch, and each
gets its own stream, equal to what the same prompt gives a client alone and to `Model.generate`."""
from __future__ import annotations

import threading

import pytest
from server_process import CTX, ServerProcess

import bitnet

openai = pytest.importorskip("openai")

PROMPTS = ["Once upon a time", "The little dog ran", "Tom and Lily went to the park. They", "She was happy",
           "One day, a bird", "Mom said", "The sun was hot and", "A big red ball was"]
MAX_TOKENS = 48


@pytest.fixture(scope="module")
def server(small_model_path, tmp_path_factory):
    proc = ServerProcess(small_model_path, tmp_path_factory.mktemp("batch") / "server.log", "--parallel", "8",
                         "--prefill-chunk", "8")
    yield proc
    proc.stop()


def _stream(client, prompt: str, seed: int | None = None, temperature: float = 0.0) -> tuple[str, str]:
    stream = client.completions.create(model="m", prompt=prompt, max_tokens=MAX_TOKENS, temperature=temperature,
                                       seed=seed, stream=True)
    text, finish = [], None
    for chunk in stream:
        text.append(chunk.choices[0].text)
        finish = chunk.choices[0].finish_reason or finish
    return "".join(text), finish


@pytest.mark.parametrize("sampling", [{"temperature": 0.0}, {"temperature": 0.8, "seed": 21}])
def test_eight_concurrent_streams_each_get_their_own_text(server, small_model_path, sampling):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=120)
    alone = [_stream(client, p, **sampling) for p in PROMPTS]
    steps0 = server.metric("bitnet_batch_steps_total")
    rows0 = server.metric("bitnet_batch_sequence_steps_total")
    results: list = [None] * len(PROMPTS)
    start = threading.Barrier(len(PROMPTS))

    def worker(i: int) -> None:
        start.wait()
        results[i] = _stream(client, PROMPTS[i], **sampling)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == alone
    model = bitnet.load(small_model_path, n_threads=1, n_ctx=CTX)
    for prompt, (text, finish) in zip(PROMPTS, results):
        expected = model.generate(prompt, max_tokens=MAX_TOKENS, **sampling)
        assert (text, finish) == (expected.text, expected.finish_reason)
    # the concurrent requests really shared steps: more than four sequences per step on average
    steps = server.metric("bitnet_batch_steps_total") - steps0
    rows = server.metric("bitnet_batch_sequence_steps_total") - rows0
    assert rows / steps > 4, (rows, steps)
    assert server.wait_health(lambda h: h["batch_size"] == 0 and h["slots_busy"] == 0)["slots_idle"] == 8
