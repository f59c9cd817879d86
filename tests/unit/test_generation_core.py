"""The decoding core every surface drives (bitnet.generation) and the environment read in one place
(bitnet.settings): one meaning for BITNET_SEED / BITNET_DETERMINISTIC / BITNET_DEVICE in every surface."""
from __future__ import annotations

import subprocess
import sys
from array import array

import pytest

import bitnet
from bitnet.errors import ModelError
from bitnet.generation import Decoding, SamplingParams


class _Letters:
    """A detokenizer whose token i is the i-th letter."""

    def push(self, token: int) -> str:
        return "abcdefghij"[token]

    def flush(self) -> str:
        return ""


def _one_hot(token: int, n: int = 10) -> array:
    logits = array("f", [0.0] * n)
    logits[token] = 5.0
    return logits


def test_decoding_holds_back_text_that_may_become_a_stop_sequence_and_cuts_at_it():
    dec = Decoding([0], SamplingParams.make(max_tokens=8, temperature=0, stop=["cde"]), 32, {9}, _Letters())
    pieces = [dec.push(_one_hot(t), pos) for pos, t in enumerate([1, 2, 3], start=1)]
    assert pieces == ["", "", "b"]         # the last 2 characters could still begin "cde": held back
    assert dec.push(_one_hot(4), 4) == "" and dec.finished and dec.finish_reason == "stop"   # "cde" cut off


def test_decoding_ends_at_an_end_of_generation_token_and_at_the_budget():
    dec = Decoding([0], SamplingParams.make(max_tokens=8, temperature=0), 32, {9}, _Letters())
    assert dec.push(_one_hot(1), 1) == "b"
    assert dec.push(_one_hot(9), 2) == "" and dec.finish_reason == "stop" and dec.generated == [1]
    short = Decoding([0], SamplingParams.make(max_tokens=2, temperature=0), 32, {9}, _Letters())
    assert short.push(_one_hot(1), 1) + short.push(_one_hot(2), 2) == "bc" and short.finish_reason == "length"
    near_end = Decoding([0] * 30, SamplingParams.make(max_tokens=8, temperature=0), 32, {9}, _Letters())
    assert near_end.budget == 2                            # the context ends first


def test_a_non_finite_logit_is_a_model_error_naming_the_position_on_every_surface():
    dec = Decoding([0], SamplingParams.make(temperature=0.8, seed=1), 32, {9}, _Letters())
    logits = _one_hot(2)
    logits[7] = float("nan")
    with pytest.raises(ModelError, match="non-finite logit at position 5"):
        dec.push(logits, 5)


def test_cancel_gives_the_held_back_text():
    dec = Decoding([0], SamplingParams.make(max_tokens=8, temperature=0, stop=["xyz"]), 32, {9}, _Letters())
    assert dec.push(_one_hot(1), 1) == ""
    assert dec.cancel() == "b" and dec.finish_reason == "stopped" and dec.cancel() == ""


def test_deterministic_mode_means_one_thread_and_seed_0_in_the_python_api(monkeypatch):
    monkeypatch.setenv("BITNET_DETERMINISTIC", "1")
    monkeypatch.delenv("BITNET_SEED", raising=False)
    model = bitnet.load(n_threads=2, n_ctx=64)
    assert model.n_threads == 1
    assert SamplingParams.make().seed == 0 and SamplingParams.make(seed=5).seed == 5
    assert model.generate("The", max_tokens=8).tokens == model.generate("The", max_tokens=8, seed=0).tokens


def test_bitnet_seed_is_checked_and_named_in_the_python_api(monkeypatch):
    model = bitnet.load(n_ctx=64)
    monkeypatch.setenv("BITNET_SEED", "7")
    assert model.generate("The", max_tokens=8).tokens == model.generate("The", max_tokens=8, seed=7).tokens
    monkeypatch.setenv("BITNET_SEED", "abc")
    with pytest.raises(ValueError, match="BITNET_SEED must be an integer, got 'abc'"):
        model.generate("The", max_tokens=8)
    monkeypatch.setenv("BITNET_SEED", str(2**64))
    with pytest.raises(ValueError, match="BITNET_SEED must be between 0 and 2\\*\\*64-1"):
        model.generate("The", max_tokens=8)


def test_bitnet_device_is_checked_and_named(monkeypatch):
    monkeypatch.setenv("BITNET_DEVICE", "tpu")
    with pytest.raises(ValueError, match="BITNET_DEVICE must be one of cpu, cuda, got 'tpu'"):
        bitnet.load()


def test_the_model_answers_for_its_backend():
    model = bitnet.load(n_ctx=64)
    model.reset_ran()
    model.generate("The", max_tokens=4, temperature=0)
    assert model.device_name == "cpu"
    assert any(k.startswith("quantize_act.") for k in model.ran_kernels())


def test_the_house_has_no_import_circle_between_engine_and_batching():
    """bitnet.batching imports the decoding core, not the engine (whose Model imports it for generate_batch)."""
    code = ("import sys, bitnet.batching; "
            "print('bitnet.engine' in sys.modules, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split()[0] == "False"
    code = "import sys; sys.modules['numpy'] = None; import bitnet.generation, bitnet.settings; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "ok"                      # the core is numpy-free (the browser build drives it)


def test_sampling_settings_come_built_once_as_params_or_as_keywords_not_both():
    model = bitnet.load(n_ctx=64)
    params = SamplingParams.make(max_tokens=6, temperature=0)
    assert model.generate("The", params=params).tokens == model.generate("The", max_tokens=6, temperature=0).tokens
    chat = [{"role": "user", "content": "Hi"}]
    assert model.chat(chat, params=params).text == model.chat(chat, max_tokens=6, temperature=0).text
    with pytest.raises(ValueError, match="not both"):
        model.generate("The", max_tokens=5, params=params)
    with pytest.raises(TypeError, match="unknown sampling setting"):
        SamplingParams.make(temprature=0.5)
