"""`bitnet download` against a local HTTP server that answers the way the Hugging Face Hub does.

The server implements the two endpoints huggingface_hub uses here: the file tree listing
(`GET /api/models/{repo}/tree/{revision}`) and file resolution (`HEAD`/`GET /{repo}/resolve/{revision}/{path}`
with `X-Repo-Commit`, `ETag`, `Content-Length`, and `X-Error-Code` on errors). The CLI runs as a subprocess with
`HF_ENDPOINT` pointing at it and `HF_HOME` in a temporary folder; nothing reaches the internet.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

pytest.importorskip("huggingface_hub")

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def small_gguf(tmp_path: Path, name: str = "m.gguf") -> bytes:
    from bitnet.gguf import GGMLType, GGUFWriter

    path = tmp_path / name
    w = GGUFWriter(path)
    w.add("general.architecture", "bitnet-b1.58")
    w.add("general.name", name)
    w.add_tensor("token_embd.weight", (2, 32), GGMLType.F32, np.arange(64, dtype=np.float32).reshape(2, 32))
    w.write()
    return path.read_bytes()


class FakeHub:
    """repos: repo_id -> {path: bytes}; repos in `private` need `Authorization: Bearer <token>`."""

    def __init__(self, repos: dict[str, dict[str, bytes]], private: dict[str, str] | None = None):
        self.repos = repos
        self.private = private or {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):   # keep test output clean
                pass

            def do_HEAD(self):
                hub.handle(self, body=False)

            def do_GET(self):
                hub.handle(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def gets(self, suffix: str) -> int:
        return sum(1 for method, path, _ in self.requests if method == "GET" and path.endswith(suffix))

    # -- request handling
    def handle(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        url = urlparse(h.path)
        path = unquote(url.path)
        self.requests.append((h.command, path, {k.lower(): v for k, v in h.headers.items()}))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "tree":
            self.tree(h, "/".join(parts[2:4]), parts[5], body)
        elif len(parts) >= 5 and parts[2] == "resolve":
            self.resolve(h, "/".join(parts[:2]), parts[3], "/".join(parts[4:]), body)
        else:
            self.reply(h, 404, b"not found", body)

    def check_repo(self, h, repo: str, revision: str, body: bool) -> dict[str, bytes] | None:
        files = self.repos.get(repo)
        token = self.private.get(repo)
        if files is None or (token and h.headers.get("Authorization") != f"Bearer {token}"):
            self.reply(h, 401, b"Repository not found", body, {"X-Error-Code": "RepoNotFound"})
            return None
        if revision not in ("main", COMMIT):
            self.reply(h, 404, b"Revision not found", body, {"X-Error-Code": "RevisionNotFound"})
            return None
        return files

    def tree(self, h, repo: str, revision: str, body: bool) -> None:
        files = self.check_repo(h, repo, revision, body)
        if files is not None:
            listing = [{"type": "file", "path": p, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                       for p, d in files.items()]
            self.reply(h, 200, json.dumps(listing).encode(), body, {"Content-Type": "application/json"})

    def resolve(self, h, repo: str, revision: str, filename: str, body: bool) -> None:
        files = self.check_repo(h, repo, revision, body)
        if files is None:
            return
        if filename not in files:
            self.reply(h, 404, b"Entry not found", body, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT})
            return
        data = files[filename]
        self.reply(h, 200, data, body, {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                                        "Content-Type": "application/octet-stream"})

    @staticmethod
    def reply(h, status: int, data: bytes, body: bool, headers: dict[str, str] | None = None) -> None:
        h.send_response(status)
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body:
            h.wfile.write(data)


def download(hub: FakeHub | None, home: Path, *args, env: dict | None = None, timeout: float = 120
             ) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    full_env.update({"PYTHONPATH": str(ROOT), "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1",
                     "HF_ENDPOINT": hub.url if hub else "http://127.0.0.1:9", **(env or {})})
    return subprocess.run([sys.executable, "-m", "bitnet", "download", *map(str, args)], capture_output=True,
                          text=True, env=full_env, timeout=timeout, cwd=ROOT, check=False)


def one_line_error(proc, *fragments):
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def model_bytes(tmp_path) -> bytes:
    return small_gguf(tmp_path)


def test_download_picks_the_gguf_fetches_tokenizer_and_reuses_the_cache(tmp_path, model_bytes):
    tokenizer = b'{"model": {"type": "BPE"}}'
    repo = {"ggml-model-i2_s.gguf": model_bytes, "tokenizer.json": tokenizer, "README.md": b"# card"}
    home = tmp_path / "hf"
    with FakeHub({"org/tiny": repo}) as hub:
        proc = download(hub, home, "org/tiny")
        assert proc.returncode == 0, proc.stderr
        path = Path(proc.stdout.strip())
        assert path == home / "hub" / "models--org--tiny" / "snapshots" / COMMIT / "ggml-model-i2_s.gguf"
        assert path.read_bytes() == model_bytes
        assert (path.parent / "tokenizer.json").read_bytes() == tokenizer
        assert not (path.parent / "README.md").exists()
        assert "%|" not in proc.stderr   # no progress bar when stderr is not a terminal
        assert hub.gets("/tree/main") == 1 and hub.gets("/resolve/main/ggml-model-i2_s.gguf") == 1
        # Tokenizer files absent from the listing are not even asked for.
        assert not any(p.endswith("tokenizer_config.json") for _, p, _ in hub.requests)

        again = download(hub, home, "org/tiny", "--file", "ggml-model-i2_s.gguf")
        assert again.returncode == 0, again.stderr
        assert Path(again.stdout.strip()) == path
        assert hub.gets("/resolve/main/ggml-model-i2_s.gguf") == 1   # cached: checked (HEAD), not fetched

    # Offline mode: the server is gone; the cache answers, with and without --file.
    for args in (["--file", "ggml-model-i2_s.gguf"], []):
        offline = download(None, home, "org/tiny", *args, env={"HF_HUB_OFFLINE": "1"})
        assert offline.returncode == 0, offline.stderr
        assert Path(offline.stdout.strip()) == path


def test_offline_without_cache_is_a_clear_error(tmp_path):
    proc = download(None, tmp_path / "hf", "org/tiny", "--file", "m.gguf", env={"HF_HUB_OFFLINE": "1"})
    one_line_error(proc, "offline", "not in the cache")


def test_an_unreachable_hub_is_one_line_at_once_and_the_cache_still_answers(tmp_path, model_bytes):
    """No network (here: a port nobody listens on): one request finds that out, so no retries and no warnings;
    the error says how to use a local file. What the cache already holds is still served."""
    for args in (["--file", "m.gguf"], []):
        proc = download(None, tmp_path / "empty", "org/tiny", *args, timeout=20)
        one_line_error(proc, "cannot reach the Hugging Face Hub", "not in the cache", "bitnet run --model FILE.gguf")
    home = tmp_path / "hf"
    with FakeHub({"org/tiny": {"m.gguf": model_bytes}}) as hub:
        fetched = Path(download(hub, home, "org/tiny").stdout.strip())
    for args in (["--file", "m.gguf"], []):     # the hub is gone now
        again = download(None, home, "org/tiny", *args, timeout=20)
        assert again.returncode == 0 and Path(again.stdout.strip()) == fetched, again.stderr


def test_download_into_a_directory(tmp_path, model_bytes):
    out = tmp_path / "models"
    with FakeHub({"org/tiny": {"sub/model.gguf": model_bytes, "sub/tokenizer_config.json": b"{}"}}) as hub:
        proc = download(hub, tmp_path / "hf", "org/tiny", "--dir", out, "--file", "sub/model.gguf")
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip())
    assert path.resolve() == (out / "sub" / "model.gguf").resolve()
    assert path.read_bytes() == model_bytes
    assert (out / "sub" / "tokenizer_config.json").read_text() == "{}"
    assert not (tmp_path / "hf" / "hub" / "models--org--tiny").exists()   # --dir bypasses the cache folder


def test_several_ggufs_need_a_choice(tmp_path, model_bytes):
    repo = {"a-q8.gguf": model_bytes, "b-tq2.gguf": model_bytes}
    with FakeHub({"org/multi": repo}) as hub:
        one_line_error(download(hub, tmp_path / "hf", "org/multi"), "several GGUF files", "a-q8.gguf",
                       "b-tq2.gguf", "--file")
        proc = download(hub, tmp_path / "hf", "org/multi", "--file", "b-tq2.gguf", "-q")
    assert proc.returncode == 0 and proc.stderr == ""
    assert Path(proc.stdout.strip()).name == "b-tq2.gguf"


def test_missing_repo_file_and_revision(tmp_path, model_bytes):
    with FakeHub({"org/tiny": {"m.gguf": model_bytes}}) as hub:
        one_line_error(download(hub, tmp_path / "hf", "org/nothing"), "repository org/nothing not found")
        one_line_error(download(hub, tmp_path / "hf", "org/tiny", "--file", "other.gguf"), "no file 'other.gguf'")
        one_line_error(download(hub, tmp_path / "hf", "org/tiny", "--revision", "v9"), "revision 'v9' not found")
        one_line_error(download(hub, tmp_path / "hf", "org/readme-only"), "not found")


def test_private_repo_uses_hf_token(tmp_path, model_bytes):
    with FakeHub({"org/private": {"m.gguf": model_bytes}}, private={"org/private": "secret"}) as hub:
        one_line_error(download(hub, tmp_path / "hf", "org/private"), "not found", "HF_TOKEN")
        proc = download(hub, tmp_path / "hf", "org/private", env={"HF_TOKEN": "secret"})
        assert proc.returncode == 0, proc.stderr
        served = [h for method, p, h in hub.requests if method == "GET" and p.endswith("/m.gguf")]
        assert served and all(h.get("authorization") == "Bearer secret" for h in served)


def test_a_file_that_is_not_gguf_is_rejected(tmp_path):
    with FakeHub({"org/bad": {"model.gguf": b"<html>not a model</html>"}}) as hub:
        one_line_error(download(hub, tmp_path / "hf", "org/bad"), "not a usable GGUF")


def test_repo_without_gguf(tmp_path):
    with FakeHub({"org/hf": {"config.json": b"{}", "model.safetensors": b"x"}}) as hub:
        one_line_error(download(hub, tmp_path / "hf", "org/hf"), "no .gguf file", "bitnet convert")


def test_progress_bar_on_a_terminal(tmp_path, model_bytes):
    pexpect = pytest.importorskip("pexpect")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    with FakeHub({"org/tiny": {"model.gguf": model_bytes + bytes(1 << 20)}}) as hub:
        env.update({"PYTHONPATH": str(ROOT), "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": hub.url,
                    "HF_HUB_DISABLE_TELEMETRY": "1", "TERM": "dumb"})
        child = pexpect.spawn(sys.executable, ["-m", "bitnet", "download", "org/tiny"], env=env, cwd=str(ROOT),
                              encoding="utf-8", timeout=60)
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus == 0, child.before
    assert "100%|" in child.before   # the bar, shown because the output is a terminal
