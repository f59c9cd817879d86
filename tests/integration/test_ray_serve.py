"""`bitnet serve --ray --replicas 2`: the OpenAI routes behind Ray Serve on a local Ray cluster (127.0.0.1).
The `openai` client gets answers from both replicas (each names itself), and a replica killed with SIGKILL is
replaced while requests keep succeeding."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import PROJECT_ROOT

import bitnet

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

pytest.importorskip("ray.serve", reason="the ray extra is not installed (pip install '.[ray]')")
openai = pytest.importorskip("openai")

START_TIMEOUT_S = 180
CTX = 256


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _replica_pids() -> set[int]:
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return {int(line.split()[0]) for line in out.splitlines() if "ServeReplica:bitnet:bitnet" in line}


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory, small_model_path):
    if _replica_pids():
        pytest.skip("another bitnet Ray Serve deployment is running on this machine")
    log_path = tmp_path_factory.mktemp("ray") / "serve.log"
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bitnet.server", "--ray", "--replicas", "2", "--threads", "1", "--port",
             str(port), "--host", "127.0.0.1", "--model", str(small_model_path), "--ctx-size", str(CTX),
             "--parallel", "2"], cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not re.search(r"serving .* on http://127\.0\.0\.1:\d+ \(Ray Serve", log_path.read_text()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the Ray Serve deployment did not start:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.2)
    yield f"http://127.0.0.1:{port}", proc
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"], capture_output=True)
    assert proc.returncode == 0, log_path.read_text()[-4000:]


def _ask(client, prompt: str) -> tuple[str, str, str]:
    raw = client.completions.with_raw_response.create(model="m", prompt=prompt, max_tokens=12, temperature=0)
    body = raw.parse()
    return raw.headers["x-bitnet-replica"], body.system_fingerprint, body.choices[0].text


def test_two_replicas_answer_and_a_killed_one_is_replaced(ray_server, small_model_path):
    url, _proc = ray_server
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=5, timeout=60)
    model = bitnet.load(small_model_path, n_threads=1, n_ctx=CTX)
    prompts = ["Once upon a time", "The little dog", "She was happy"]
    expected = {p: model.generate(p, max_tokens=12, temperature=0).text for p in prompts}

    seen: set[str] = set()
    for i in range(40):
        replica, fingerprint, text = _ask(client, prompts[i % 3])
        assert fingerprint.endswith("-" + replica)
        assert text == expected[prompts[i % 3]]
        seen.add(replica)
        if len(seen) == 2 and i >= 5:
            break
    assert len(seen) == 2, seen

    # Kill one replica's process outright while a client keeps sending requests.
    pids = _replica_pids()
    assert len(pids) == 2, pids
    victim = min(pids)
    failures: list[BaseException] = []
    answered: list[str] = []
    stop = threading.Event()

    def keep_asking() -> None:
        i = 0
        while not stop.is_set():
            try:
                replica, _, text = _ask(client, prompts[i % 3])
                assert text == expected[prompts[i % 3]]
                answered.append(replica)
            except BaseException as exc:  # noqa: BLE001 - collected, the test fails on it
                failures.append(exc)
            i += 1

    worker = threading.Thread(target=keep_asking)
    worker.start()
    try:
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        n_before = len(answered)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:   # until a third replica (the replacement) has answered
            if set(answered[n_before:]) - seen and len(_replica_pids() - {victim}) == 2:
                break
            time.sleep(0.2)
    finally:
        stop.set()
        worker.join(60)
    assert not failures, failures[:3]
    new = set(answered) - seen
    assert new, f"no replacement replica answered within the deadline; answers: {len(answered)}"
    assert victim not in _replica_pids()
