"""SentencePiece vocabularies (tokenizer.ggml.model = "llama") tokenize like llama.cpp's score-based merging."""
from __future__ import annotations

import io
import random
from typing import Any

import pytest

from bitnet.errors import TokenizerError
from bitnet.tokenizer import BYTE, CONTROL, NORMAL, UNKNOWN, UNUSED, USER_DEFINED, StreamDecoder, Tokenizer

# A vocabulary small enough to work the merges out by hand. "bc" outscores "ab", so "abc" must become
# "▁a" + "bc" even though "▁ab" is a token too; "é" has no token and falls back to its two UTF-8 bytes.
HAND_TOKENS = ["<unk>", "<s>", "</s>", "\u2581", "a", "b", "c", "ab", "bc", "\u2581a", "\u2581ab", "<0xC3>", "<0xA9>",
               "<tool>"]
HAND_SCORES = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, -0.5, -2.0, -3.0, 0.0, 0.0, 0.0]
HAND_TYPES = [UNKNOWN, CONTROL, CONTROL, NORMAL, NORMAL, NORMAL, NORMAL, NORMAL, NORMAL, NORMAL, NORMAL, BYTE, BYTE,
              USER_DEFINED]


def _hand_metadata(**extra: object) -> dict:
    md = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": list(HAND_TOKENS),
          "tokenizer.ggml.scores": list(HAND_SCORES), "tokenizer.ggml.token_type": list(HAND_TYPES),
          "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.unknown_token_id": 0}
    md.update(extra)
    return md


@pytest.fixture(scope="module")
def hand() -> Tokenizer:
    return Tokenizer.from_gguf_metadata(_hand_metadata())


@pytest.mark.parametrize(("text", "ids", "decoded"), [
    ("abc", [1, 9, 8], "abc"),          # ▁ a b c: "bc" (-0.5) first, then "▁a" (-2); "▁abc" is no token
    ("ab ab", [1, 10, 10], "ab ab"),    # both "ab" merge (leftmost first), then "▁"+"ab" twice
    ("é", [1, 3, 11, 12], "é"),         # byte fallback for a character outside the vocabulary
    (" a", [1, 3, 9], " a"),            # the dummy prefix adds a second "▁"
    ("", [1], ""),
    ("<s>ab", [1, 1, 10], "ab"),        # control token text is the control token ...
    ("ab<tool>ab", [1, 10, 13, 10], "ab<tool> ab"),   # ... and text after any added token gets a "▁" too
])
def test_hand_checked_sentencepiece_merges(hand: Tokenizer, text: str, ids: list[int], decoded: str) -> None:
    assert hand.encode(text) == ids
    assert hand.decode(ids, skip_special=True) == decoded


def test_sentencepiece_defaults_and_pieces(hand: Tokenizer) -> None:
    assert hand.kind == "spm" and hand.add_bos is True and hand.add_space_prefix is True
    assert hand.eog_ids == {2}                         # EOS, and "</s>" is an end-of-turn text anyway
    assert hand.token_bytes(11) == b"\xc3" and hand.token_text(9) == " a"
    assert hand.decode([1, 9, 8]) == "<s> abc"         # special tokens shown; the space follows the BOS text
    assert hand.decode([9, 8]) == "abc"                # the prefix space is dropped from the first piece


def test_add_space_prefix_false_keeps_text_as_is() -> None:
    tok = Tokenizer.from_gguf_metadata(_hand_metadata(**{"tokenizer.ggml.add_space_prefix": False}))
    assert tok.encode("ab", add_bos=False) == [7]
    assert tok.decode([3, 7]) == " ab"


def test_stream_decoder_rebuilds_split_characters_for_sentencepiece(hand: Tokenizer) -> None:
    ids = hand.encode("é abc é", add_bos=False)
    stream = StreamDecoder(hand, strip_leading_space=True)
    pushed = [stream.push(i) for i in ids]
    assert "".join(pushed) + stream.flush() == hand.decode(ids) == "é abc é"
    assert "\ufffd" not in "".join(pushed)
    # without stripping, a continuation keeps its leading space
    cont = StreamDecoder(hand)
    assert "".join(cont.push(i) for i in hand.encode("abc", add_bos=False)) + cont.flush() == " abc"


@pytest.fixture(scope="module")
def trained() -> tuple[Any, Tokenizer, list[str]]:
    """A SentencePiece BPE model trained here on a synthetic corpus, and the same vocabulary rebuilt from
    GGUF-style metadata (the scores and types llama.cpp's converter writes)."""
    spm = pytest.importorskip("sentencepiece", reason="pip install sentencepiece for the SentencePiece cross-check")
    rng = random.Random(0)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "hello", "world", "tokenizer",
             "merges", "score", "piece", "naïve", "café", "über", "日本", "語", "123", "4567", "don't", "it's"]
    corpus = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(3000)]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=model, vocab_size=400, hard_vocab_limit=False,
        model_type="bpe", byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, character_coverage=0.995, unk_id=0, bos_id=1, eos_id=2, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())

    def token_type(i: int) -> int:
        for check, ttype in ((sp.is_unknown, UNKNOWN), (sp.is_control, CONTROL), (sp.is_byte, BYTE),
                             (sp.is_unused, UNUSED)):
            if check(i):
                return ttype
        return NORMAL

    n = sp.get_piece_size()
    md = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": [sp.id_to_piece(i) for i in range(n)],
          "tokenizer.ggml.scores": [sp.get_score(i) for i in range(n)],
          "tokenizer.ggml.token_type": [token_type(i) for i in range(n)], "tokenizer.ggml.bos_token_id": 1,
          "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.unknown_token_id": 0}
    return sp, Tokenizer.from_gguf_metadata(md), corpus


def test_sentencepiece_model_and_rebuilt_tokenizer_agree(trained: tuple) -> None:
    sp, tok, corpus = trained
    texts = corpus[:150] + ["  double  spaces ", "the quick\nbrown", "ÿ unseen ß chars 😀 ☃", "xyz", "12345 67",
                            "café über naïve", "日本語のテキスト"]
    for text in texts:
        ids = tok.encode(text, add_bos=False)
        assert ids == sp.encode(text), text
        assert tok.decode(ids) == sp.decode(ids) == text
        assert tok.encode(text) == [1, *ids]


def test_sentencepiece_bad_metadata_is_named() -> None:
    with pytest.raises(TokenizerError, match="tokenizer.ggml.scores"):
        Tokenizer.from_gguf_metadata(_hand_metadata(**{"tokenizer.ggml.scores": [0.0, 1.0]}))
    with pytest.raises(TokenizerError, match="unknown_token_id = 77"):
        Tokenizer.from_gguf_metadata(_hand_metadata(**{"tokenizer.ggml.unknown_token_id": 77}))


@pytest.mark.parametrize("text", ["<0x-1>", "<0x+F>", "<0x F>", "<0x_1>", "<0xG0>"])
def test_a_malformed_byte_token_decodes_to_nothing(text: str) -> None:
    """Byte tokens are "<0x" + exactly two hex digits + ">"; anything else typed BYTE prints nothing, rather than
    a negative "byte" raising ValueError (found by tools/hardening/fuzz)."""
    tokens = list(HAND_TOKENS)
    tokens[11] = text
    tok = Tokenizer.from_gguf_metadata(_hand_metadata(**{"tokenizer.ggml.tokens": tokens}))
    assert tok.token_bytes(11) == b""
    everything = list(range(tok.vocab_size))
    assert tok.decode(everything, skip_special=True) == tok.decode(everything[:11] + everything[12:],
                                                                   skip_special=True)
