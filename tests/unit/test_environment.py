"""What the environment and the model's folder decide when a call does not: BITNET_GGUF, BITNET_STRICT_MODE,
OMP_NUM_THREADS, and where the tokenizer comes from (the GGUF's own, else a tokenizer.json beside it or above it).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import warnings

import pytest
from conftest import PROJECT_ROOT, child_env
from gguf_edit import rewrite_gguf

import bitnet
from bitnet.errors import FallbackWarning, ModelError, StrictModeError, TokenizerError
from bitnet.gguf import GGUFReader
from bitnet.tokenizer_spec import spec_from_gguf_metadata

EMBEDDED = bitnet.default_model_path()


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bitnet", *args], capture_output=True, text=True, timeout=120,
                          env=child_env(PYTHONPATH=str(PROJECT_ROOT), **env), cwd=PROJECT_ROOT)


def test_bitnet_gguf_names_the_model_when_none_is_given(tmp_path, monkeypatch):
    copy = tmp_path / "mine.gguf"
    shutil.copy(EMBEDDED, copy)
    monkeypatch.setenv("BITNET_GGUF", str(copy))
    assert bitnet.load(n_ctx=32).path == copy
    assert bitnet.load(EMBEDDED, n_ctx=32).path == EMBEDDED           # a path given wins
    monkeypatch.setenv("BITNET_GGUF", "/nonexistent.gguf")
    with pytest.raises(FileNotFoundError, match=r"BITNET_GGUF=/nonexistent\.gguf: model file not found"):
        bitnet.load()
    proc = _cli("run", "-p", "Hello", "-n", "2", BITNET_GGUF="/nonexistent.gguf")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == "bitnet run: error: BITNET_GGUF=/nonexistent.gguf: model file not found"


def test_a_folder_given_as_the_model_gets_the_convert_hint(tmp_path):
    with pytest.raises(ModelError, match=r"is a directory, not a GGUF file \(to convert a Hugging Face checkpoint: "
                                         r"bitnet convert"):
        bitnet.load(tmp_path)


def test_omp_num_threads_is_the_thread_count_when_none_is_given(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3,1")
    assert bitnet.load(n_ctx=32).n_threads == 3
    assert bitnet.load(n_ctx=32, n_threads=2).n_threads == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="OMP_NUM_THREADS must be a positive integer, got 'many'"):
        bitnet.load(n_ctx=32)


def test_the_python_api_refuses_an_empty_prompt_as_the_cli_does():
    model = bitnet.load(n_ctx=32)
    with pytest.raises(ValueError, match="the prompt is empty"):
        model.generate("")
    assert "the prompt is empty" in _cli("run", "-p", "").stderr


def test_a_context_beyond_the_trained_one_warns_and_strict_mode_refuses_it(monkeypatch):
    trained = bitnet.load(n_ctx=32).hparams.n_ctx_train
    with pytest.warns(FallbackWarning, match=f"exceeds the {trained} the model was trained on"):
        assert bitnet.load(n_ctx=trained + 1).n_ctx == trained + 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bitnet.load(n_ctx=trained)                                        # at the limit: no warning
    monkeypatch.setenv("BITNET_STRICT_MODE", "1")
    with pytest.raises(StrictModeError, match="BITNET_STRICT_MODE=1 refuses a fallback: a context of"):
        bitnet.load(n_ctx=trained + 1)
    proc = _cli("run", "-p", "Hi", "-n", "1", "-c", str(trained + 1))
    assert proc.returncode == 0 and proc.stderr.count("bitnet: warning: a context of") == 1


@pytest.fixture
def without_tokenizer(tmp_path):
    """The embedded model with its tokenizer.* keys removed, in tmp/models/, and its tokenizer as a JSON text."""
    with GGUFReader(EMBEDDED) as reader:
        keys = [k for k in reader.metadata if k.startswith("tokenizer.")]
        spec_json = spec_from_gguf_metadata(reader.metadata).to_json()
    (tmp_path / "models").mkdir()
    bare = tmp_path / "models" / "bare.gguf"
    rewrite_gguf(EMBEDDED, bare, drop_keys=keys)
    return bare, spec_json


def test_a_gguf_without_a_tokenizer_takes_the_one_beside_it_then_above_it(without_tokenizer, monkeypatch):
    bare, spec_json = without_tokenizer
    want = bitnet.load(n_ctx=32).tokenize("Love is all", add_bos=False)
    for place in (bare.parent, bare.parent.parent):
        (place / "tokenizer.json").write_text(spec_json)
        with pytest.warns(FallbackWarning, match=f"bare.gguf carries no tokenizer: using {place / 'tokenizer.json'}"):
            model = bitnet.load(bare, n_ctx=32)
        assert model.tokenize("Love is all", add_bos=False) == want
        monkeypatch.setenv("BITNET_STRICT_MODE", "1")
        with pytest.raises(StrictModeError, match="carries no tokenizer"):
            bitnet.load(bare, n_ctx=32)
        monkeypatch.delenv("BITNET_STRICT_MODE")
        (place / "tokenizer.json").unlink()


def test_a_gguf_without_any_tokenizer_names_every_place_tried_and_the_option(without_tokenizer):
    bare, spec_json = without_tokenizer
    with pytest.raises(TokenizerError) as err:
        bitnet.load(bare, n_ctx=32)
    message = str(err.value)
    assert "bare.gguf's own metadata" in message and "--tokenizer" in message
    assert str(bare.parent / "tokenizer.json") in message and str(bare.parent.parent / "tokenizer.json") in message
    proc = _cli("run", "-m", str(bare), "-p", "Hi", "-n", "1")
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1 and "--tokenizer" in proc.stderr
    explicit = bare.parent / "elsewhere.json"
    explicit.write_text(spec_json)
    assert bitnet.load(bare, n_ctx=32, tokenizer_path=explicit).tokenize("Hi", add_bos=False)
