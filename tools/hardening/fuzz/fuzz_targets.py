"""Coverage-guided fuzz targets (atheris, libFuzzer) for what the engine reads from files.

    python tools/hardening/fuzz/fuzz_targets.py TARGET [libFuzzer flags] CORPUS_DIR [SEED_DIR ...]

TARGET is one of:
- `model`: the bytes are a GGUF file; it is loaded the way `bitnet.load` does (reader, model binder, tokenizer
  from the metadata, KV cache) and, when that succeeds, generates two greedy tokens, so fuzzed tensor values
  reach the kernels too.
- `tokenizer`: the bytes are a GGUF file; its tokenizer metadata is rebuilt and used to encode and decode.
- `template`: the bytes are a chat template (as read from a file); it is rendered in the sandbox.
- `selftest`: crashes on purpose, to check that crashes are caught and reported.

The engine's own errors (GGUFError, ModelError, TokenizerError, ContextOverflowError) are the expected
answers to bad input; any other exception escapes to libFuzzer, which reports it as a crash and writes the
input to the artifact prefix, as it does for a signal (a crash in compiled code) or an input that runs past
-timeout. Python modules of `bitnet` are instrumented for coverage; the compiled core is not (it is built
without sanitizer coverage), so its branches guide the search only through the Python that calls it.

The counts of answers by kind are written as JSON to $BITNET_FUZZ_STATS every 1,000 inputs and at exit.
"""
from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import tempfile
from collections import Counter

import atheris

# Modules the engine imports lazily are imported here so that they are instrumented too; jinja2 is, so that
# the template target can learn the template language's syntax from coverage.
with atheris.instrument_imports(include=["bitnet", "jinja2"]):
    import jinja2.sandbox  # noqa: F401

    import bitnet
    import bitnet.chat_sandbox  # noqa: F401
    import bitnet.models  # noqa: F401
    from bitnet.chat import render_chat
    from bitnet.errors import ContextOverflowError, GGUFError, ModelError, TokenizerError
    from bitnet.gguf import GGUFReader
    from bitnet.tokenizer import Tokenizer

EXPECTED = (GGUFError, ModelError, TokenizerError, ContextOverflowError)
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi, café?"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "the cat sat"}]
SAMPLE_TEXT = "the cat sat on the mat, é \u2581 <s></s>"

_counts: Counter[str] = Counter()
_scratch = tempfile.mkdtemp(prefix="bitnet-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
_input_path = os.path.join(_scratch, "input.gguf")


def _write_stats() -> None:
    path = os.environ.get("BITNET_FUZZ_STATS")
    if path:
        with open(path + ".tmp", "w") as f:
            json.dump({"inputs": sum(_counts.values()), "answers": dict(_counts)}, f)
        os.replace(path + ".tmp", path)


def _as_file(data: bytes) -> str:
    with open(_input_path, "wb") as f:
        f.write(data)
    return _input_path


def model(data: bytes) -> str:
    loaded = bitnet.load(_as_file(data), n_threads=1)
    try:
        completion = loaded.generate("the cat", max_tokens=2, temperature=0)
        assert len(completion.tokens) <= 2
    finally:
        loaded.close()
    return "generated"


def tokenizer(data: bytes) -> str:
    with GGUFReader(_as_file(data)) as reader:
        tok = Tokenizer.from_gguf_metadata(reader.metadata)
    ids = tok.encode(SAMPLE_TEXT)
    assert all(0 <= i < tok.vocab_size for i in ids)
    tok.decode(ids)
    tok.decode(range(tok.vocab_size), skip_special=True)
    return "tokenized"


def template(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    prompt = render_chat(MESSAGES, template=text, mode="jinja", bos_token="<s>", eos_token="</s>")
    assert isinstance(prompt.text, str)
    return "rendered"


def selftest(data: bytes) -> str:
    """Checks the harness itself: an input holding b"crash" raises what no engine code raises, which must come
    back from run_fuzz.py as a crash with the input saved."""
    if b"crash" in data:
        raise RuntimeError("selftest: planted crash")
    return "passed"


TARGETS = {"model": model, "tokenizer": tokenizer, "template": template, "selftest": selftest}


def _stop_the_hang_timer() -> None:
    """libFuzzer's -timeout runs a periodic SIGALRM timer; once the runs are done, a tick that lands while Python
    shuts down (its handler gone) killed a worker that had finished cleanly (exit -14, seen in CI): the timer is
    stopped before anything else at exit."""
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, signal.SIG_IGN)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer flags] CORPUS [SEEDS ...]")
    target = TARGETS[sys.argv.pop(1)]

    def one_input(data: bytes) -> None:
        try:
            answer = target(data)
        except EXPECTED as e:
            answer = type(e).__name__
        _counts[answer] += 1
        if sum(_counts.values()) % 1000 == 0:
            _write_stats()

    atexit.register(_write_stats)
    atexit.register(_stop_the_hang_timer)      # registered last: runs first at exit
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
