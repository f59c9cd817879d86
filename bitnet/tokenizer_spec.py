"""What a GGUF file's tokenizer metadata means, as plain data: the vocabulary, the special-token facts and the
tokenizer.json description (Hugging Face `tokenizers` format) that reproduces llama.cpp's tokenization.

Pure Python (no numpy, no Rust `tokenizers`), so the same description builds the native tokenizer
(`bitnet.tokenizer`, through `tokenizers.Tokenizer.from_str`) and the browser's (`@huggingface/tokenizers`,
from the JSON that `bitnet.web` exports): one source of truth for both.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bitnet.errors import TokenizerError, fallback

__all__ = ["EOG_TEXTS", "PRE_TOKENIZERS", "Pieces", "StreamDecoder", "TokenizerSpec", "byte_level_tokens",
           "spec_from_gguf_metadata"]

# GGUF token types (llama.cpp's llama_token_type).
UNDEFINED, NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 0, 1, 2, 3, 4, 5, 6

# Token texts that end a turn: llama.cpp puts every token with one of these texts in its end-of-generation
# set (and marks it as a control token).
EOG_TEXTS = frozenset({
    "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "</s>", "<EOT>", "_<EOT>", "<|return|>", "<|call|>", "<end_of_utterance>", "<｜end▁of▁sentence｜>",
})

# --- byte-level split regexes (Oniguruma syntax, as in tokenizer.json files) ---------------------------------
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")


class _Pre:
    """What a `tokenizer.ggml.pre` name means in llama.cpp: split regexes, merge mode, default add_bos."""

    def __init__(self, regexes: tuple[str, ...], ignore_merges: bool = False, add_bos: bool = False) -> None:
        self.regexes = regexes
        self.ignore_merges = ignore_merges   # a piece that is itself a token is taken whole, without merging
        self.add_bos = add_bos               # add_bos when the file has no tokenizer.ggml.add_bos_token key


_PRE_DEFAULT = _Pre((r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"))
_PRE_LLAMA3 = _Pre((_LLAMA3,), ignore_merges=True, add_bos=True)
_PRE_LLAMA3_REGEX = _Pre((_LLAMA3,))
_PRE_GPT2 = _Pre((_GPT2,))
_PRE_FALCON = _Pre((r"[\p{P}\$\+<=>\^~\|`]+", _GPT2, r"[0-9][0-9][0-9]"))
_PRE_STARCODER = _Pre((r"\p{N}", _GPT2))
_PRE_QWEN2 = _Pre((_QWEN2,))

# The names llama.cpp maps to each regex set. "falcon3" is left out on purpose: mainline llama.cpp reads it as
# LLaMA-3, while the reference's fork has a separate FALCON_3 type, so no single behaviour is "the" right one.
PRE_TOKENIZERS: dict[str, _Pre] = {
    "default": _PRE_DEFAULT,
    **dict.fromkeys(("llama3", "llama-v3", "llama-bpe", "falcon-h1", "pixtral"), _PRE_LLAMA3),
    **dict.fromkeys(("dbrx", "smaug-bpe"), _PRE_LLAMA3_REGEX),
    **dict.fromkeys(("gpt-2", "phi-2", "mpt", "olmo", "jais", "jina-es", "jina-de", "jina-v2-es", "jina-v2-de",
                     "gigachat", "trillion"), _PRE_GPT2),
    "falcon": _PRE_FALCON,
    **dict.fromkeys(("starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"),
                    _PRE_STARCODER),
    **dict.fromkeys(("qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "hunyuan"), _PRE_QWEN2),
}


def _byte_level_table() -> dict[int, int]:
    """GPT-2's reversible byte <-> character map, as {character code point: byte}.

    Printable Latin-1 bytes stand for themselves; the other 68 bytes are shifted to U+0100 and up, so that
    every byte has a visible, non-space character (a space is "Ġ", U+0120).
    """
    visible = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: b for b in visible}
    shifted = 0x100
    for b in range(256):
        if b not in table:
            table[b] = shifted
            shifted += 1
    return {cp: b for b, cp in table.items()}


_BYTE_LEVEL = _byte_level_table()


def byte_level_tokens() -> list[str]:
    """The texts of the 256 single-byte tokens of a byte-level BPE vocabulary, in byte order."""
    chars = {b: chr(cp) for cp, b in _BYTE_LEVEL.items()}
    return [chars[b] for b in range(256)]

# str.translate table: byte-level characters -> the Latin-1 character of their byte, so that
# `.encode("latin-1")` yields the bytes. Latin-1 characters that are NOT byte-level characters map to a
# character Latin-1 cannot encode, sending those (malformed) tokens down the slow path.
_BYTE_LEVEL_TRANSLATE = {cp: chr(b) for cp, b in _BYTE_LEVEL.items()}
_BYTE_LEVEL_TRANSLATE.update({c: "\uffff" for c in range(256) if c not in _BYTE_LEVEL})


def _byte_level_bytes(text: str) -> bytes:
    try:
        return text.translate(_BYTE_LEVEL_TRANSLATE).encode("latin-1")
    except UnicodeEncodeError:
        # Characters outside the byte map (a malformed vocabulary) are kept as their own UTF-8.
        return b"".join(bytes([_BYTE_LEVEL[ord(c)]]) if ord(c) in _BYTE_LEVEL else c.encode("utf-8")
                        for c in text)


def _byte_token_value(text: str) -> int | None:
    """The byte of a SentencePiece byte token "<0xNN>", else None."""
    # exactly two hex digits: int(..., 16) alone would also take "-1", "+F" or " F" (found by tools/hardening/fuzz)
    digits = text[3:5]
    if len(text) == 6 and text.startswith("<0x") and text.endswith(">") and all(
            c in "0123456789abcdefABCDEF" for c in digits):
        return int(digits, 16)
    return None




class Pieces:
    """Each token's bytes: what llama.cpp's token_to_piece gives (special tokens rendered as their text), worked
    out the first time a token is decoded (no start-up cost for 128k tokens). Decoding never goes through a
    tokenizer library: text is the UTF-8 decoding of the concatenated pieces, exact and O(1) per token."""

    def __init__(self, kind: str, tokens: list[str], types: list[int], add_space_prefix: bool) -> None:
        self.kind = kind
        self._tokens = tokens
        self._types = types
        self.add_space_prefix = add_space_prefix
        self._bytes: list[bytes | None] = [None] * len(tokens)

    def is_special(self, token_id: int) -> bool:
        """Control (BOS, EOS, <|eot_id|>, ...) and unknown tokens: hidden when decoding with skip_special."""
        return self._types[token_id] in (CONTROL, UNKNOWN)

    def token_bytes(self, token_id: int) -> bytes:
        piece = self._bytes[token_id]
        if piece is None:   # two threads may both compute it: same value, so no lock needed
            piece = self._bytes[token_id] = self._piece(self._tokens[token_id], self._types[token_id])
        return piece

    def _piece(self, text: str, ttype: int) -> bytes:
        if ttype in (CONTROL, UNKNOWN, USER_DEFINED):
            return text.encode("utf-8")
        if ttype == NORMAL:
            if self.kind == "bpe":
                return _byte_level_bytes(text)
            return text.replace("\u2581", " ").encode("utf-8")
        if ttype == BYTE:
            value = _byte_token_value(text)
            return bytes([value]) if value is not None else b""
        return b""   # unused / undefined tokens print nothing


class StreamDecoder:
    """Incremental detokenizer over a `Pieces` table (or a Tokenizer): `push(id)` returns only newly completed
    text, `flush()` the rest.

    A UTF-8 character split across tokens (byte-level BPE splits emoji and CJK this way) is held back until
    its last byte arrives; invalid bytes come out as U+FFFD exactly as in `Tokenizer.decode`. Each push costs
    one table lookup and decodes only that token's bytes.
    `skip_special` (default True) hides control tokens, as a generation stream should; `strip_leading_space`
    removes the SentencePiece prefix space from the first piece written, making the stream equal `decode()` of
    the same ids for a sequence that starts the text (leave it False for a continuation of a prompt).
    """

    def __init__(self, pieces, skip_special: bool = True, strip_leading_space: bool = False) -> None:
        import codecs

        self._pieces = pieces
        self._skip_special = skip_special
        self._strip_first = strip_leading_space and pieces.add_space_prefix
        self._first = True
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        if self._skip_special and self._pieces.is_special(token_id):
            return ""
        piece = self._pieces.token_bytes(token_id)
        if self._first:
            self._first = False
            if self._strip_first and piece.startswith(b" "):
                piece = piece[1:]
        return self._utf8.decode(piece, final=False)

    def flush(self) -> str:
        """Text still held back (an incomplete character becomes U+FFFD); the decoder can be reused after."""
        text = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        return text


def _plain(value: Any) -> Any:
    """A numpy scalar or array (metadata built by hand) as the Python value the GGUF reader would give."""
    return value.tolist() if hasattr(value, "tolist") and not isinstance(value, (list, str)) else value


def _as_int_list(value: Any, key: str, n: int) -> list[int]:
    value = _plain(value)
    if not isinstance(value, (list, tuple)) or len(value) < n or not set(map(type, value[:n])) <= {int}:
        raise TokenizerError(f"GGUF key {key} must be an integer array with at least {n} entries "
                             f"(one per token), got {_describe(value)}")
    return list(value[:n])


def _as_float_list(value: Any, key: str, n: int) -> list[float]:
    value = _plain(value)
    if not isinstance(value, (list, tuple)) or len(value) < n or not set(map(type, value[:n])) <= {int, float}:
        raise TokenizerError(f"GGUF key {key} must be a numeric array with at least {n} entries "
                             f"(one per token), got {_describe(value)}")
    return [float(v) for v in value[:n]]


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        kinds = ", ".join(sorted({type(v).__name__ for v in value})) or "nothing"
        return f"{type(value).__name__} of {len(value)} entries ({kinds})"
    return type(value).__name__


def _string_list(value: Any, key: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not set(map(type, value)) <= {str}:
        raise TokenizerError(f"GGUF key {key} must be an array of strings")
    return list(value)


def _split_merges(merges: list[str]) -> list[tuple[str, str]]:
    """"left right" strings -> pairs, cut as llama.cpp does: at the first space after the first character."""
    pairs = []
    for m in merges:
        cut = m.find(" ", 1)
        if cut < 0:
            raise TokenizerError(f"malformed merge {m!r} in tokenizer.ggml.merges (expected 'left right')")
        pairs.append((m[:cut], m[cut + 1:]))
    return pairs


def _vocab_dict(tokens: list[str]) -> dict[str, int]:
    vocab = dict(zip(tokens, range(len(tokens))))
    if len(vocab) != len(tokens):
        seen: dict[str, int] = {}
        for i, t in enumerate(tokens):
            if t in seen:
                raise TokenizerError(f"duplicate token {t!r} in the vocabulary (ids {seen[t]} and {i})")
            seen[t] = i
    return vocab


def _flag(md: Mapping[str, Any], key: str, default: bool) -> bool:
    value = _plain(md.get(key, default))
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise TokenizerError(f"GGUF key {key} must be a bool, got {value!r}")


def _special_id(md: Mapping[str, Any], kind: str, default: int | None, n: int) -> int | None:
    key = f"tokenizer.ggml.{kind}_token_id"
    if key not in md:
        return default
    value = _plain(md[key])
    if isinstance(value, bool) or not isinstance(value, int):
        raise TokenizerError(f"GGUF key {key} must be an integer token id, got {value!r}")
    if not 0 <= value < n:
        raise TokenizerError(f"GGUF key {key} = {value} is outside the vocabulary (0..{n - 1})")
    return int(value)


def _eog_ids(md: Mapping[str, Any], vocab: dict[str, int], types: list[int]) -> tuple[list[int], set[int]]:
    """End-of-generation ids as llama.cpp collects them: EOS, the eot/eom keys and every token whose text is an
    end-of-turn marker. Those tokens are treated as control tokens even when the file types them otherwise."""
    n = len(types)
    eog = {vocab[t] for t in EOG_TEXTS if t in vocab}
    for kind in ("eos", "eot", "eom"):
        tid = _special_id(md, kind, None, n)
        if tid is not None:
            eog.add(tid)
    if any(types[i] not in (CONTROL, UNKNOWN) for i in eog):
        types = list(types)
        for i in eog:
            if types[i] not in (CONTROL, UNKNOWN):
                types[i] = CONTROL
    return types, eog


def _spm_merges(tokens: list[str], scores: list[float], vocab: dict[str, int]) -> list[tuple[str, str]]:
    """BPE merges that reproduce llama.cpp's SentencePiece tokenizer.

    llama.cpp repeatedly merges the adjacent pair of symbols whose concatenation is a token with the highest
    score (leftmost first on ties). Every way of writing a token as left + right (both tokens) is a merge,
    ranked by the token's score (higher first; then by token id and split position for a stable order).
    """
    ranked = []
    for tid, text in enumerate(tokens):
        if len(text) < 2:
            continue
        for cut in range(1, len(text)):
            left, right = text[:cut], text[cut:]
            if left in vocab and right in vocab:
                ranked.append((-scores[tid], tid, cut, left, right))
    ranked.sort()
    return [(left, right) for _, _, _, left, right in ranked]




# --- the description -------------------------------------------------------------------------------------------
@dataclass
class TokenizerSpec:
    """A GGUF vocabulary, its special-token facts and `hf_json`, the tokenizer.json (as a dict) that encodes
    text the way llama.cpp does (BOS/EOS are added by the caller from `add_bos`/`add_eos`, not by it)."""
    kind: str                      # "bpe" (byte-level) or "spm" (SentencePiece with byte fallback)
    tokens: list[str]
    types: list[int]
    bos_id: int | None
    eos_id: int | None
    eog_ids: set[int]
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool
    hf_json: dict[str, Any] = field(repr=False)

    def to_json(self) -> str:
        """The tokenizer.json text (for `tokenizers.Tokenizer.from_str` or `@huggingface/tokenizers`)."""
        return json.dumps(self.hf_json, ensure_ascii=False)

    def pieces(self) -> Pieces:
        return Pieces(self.kind, self.tokens, self.types, self.add_space_prefix)

    def facts(self) -> dict[str, Any]:
        """What a caller needs besides the tokenizer.json: BOS/EOS handling and the end-of-generation ids."""
        return {"kind": self.kind, "bos_id": self.bos_id, "eos_id": self.eos_id, "eog_ids": sorted(self.eog_ids),
                "add_bos": self.add_bos, "add_eos": self.add_eos, "add_space_prefix": self.add_space_prefix,
                "vocab_size": len(self.tokens)}


def spec_from_gguf_metadata(metadata: Mapping[str, Any], pre: str | None = None) -> TokenizerSpec:
    """Read the `tokenizer.ggml.*` keys (docs/formats.md §8); a missing or malformed key raises TokenizerError.
    pre: a byte-level BPE's pre-tokenizer (a PRE_TOKENIZERS name) instead of the file's `tokenizer.ggml.pre`, or of
    the one chosen when the file has none (see `_pre_name`)."""
    model = metadata.get("tokenizer.ggml.model")
    if model is None:
        raise TokenizerError("GGUF metadata has no tokenizer.ggml.model key: the file carries no tokenizer")
    if "tokenizer.ggml.tokens" not in metadata:
        raise TokenizerError("GGUF metadata has no tokenizer.ggml.tokens key (the vocabulary)")
    tokens = _string_list(metadata["tokenizer.ggml.tokens"], "tokenizer.ggml.tokens")
    n = len(tokens)
    if n == 0:
        raise TokenizerError("GGUF key tokenizer.ggml.tokens is empty")
    types = (_as_int_list(metadata["tokenizer.ggml.token_type"], "tokenizer.ggml.token_type", n)
             if "tokenizer.ggml.token_type" in metadata else [NORMAL] * n)
    if model == "gpt2":
        return _bpe_spec(metadata, tokens, types, pre)
    if model == "llama":
        return _spm_spec(metadata, tokens, types)
    raise TokenizerError(f"tokenizer.ggml.model {model!r} is not supported (supported: 'gpt2' byte-level "
                         "BPE, 'llama' SentencePiece)")


# The LLaMA-3 vocabulary (every LLaMA-3.x release, and BitNet b1.58 2B4T): its 128,000 regular tokens and its
# merges, as sha256 of the tokens joined by "\n", a NUL, and the merges ("a b") joined by "\n".
LLAMA3_BASE_TOKENS = 128000
LLAMA3_VOCAB_SHA256 = "9af1c14eac08dc88850a0d50678ac1b1e8d07b972ea77dea280593b4700919ae"


def is_llama3_vocabulary(tokens: list[str], merges: list[str]) -> bool:
    if len(tokens) < LLAMA3_BASE_TOKENS:
        return False
    digest = hashlib.sha256("\n".join(tokens[:LLAMA3_BASE_TOKENS]).encode() + b"\0" + "\n".join(merges).encode())
    return digest.hexdigest() == LLAMA3_VOCAB_SHA256


def _pre_name(md: Mapping[str, Any], tokens: list[str], merges: list[str], override: str | None) -> str:
    """The pre-tokenizer a byte-level BPE vocabulary is split with: `override`, else the file's
    `tokenizer.ggml.pre`, else (a fallback) llama-bpe for the LLaMA-3 vocabulary and llama.cpp's "default" for any
    other. Files without the key exist: the official BitNet b1.58 2B4T GGUF is one, and llama.cpp's default
    regexes split 7 of its own 46 llama-bpe test strings differently from the tokenizer the model was trained
    with."""
    name = override if override is not None else md.get("tokenizer.ggml.pre")
    if name is not None:
        if name not in PRE_TOKENIZERS:
            source = "tokenizer_pre" if override is not None else "tokenizer.ggml.pre"
            raise TokenizerError(f"unknown pre-tokenizer {source} = {name!r}; known: "
                                 f"{', '.join(sorted(PRE_TOKENIZERS))}")
        return name
    if is_llama3_vocabulary(tokens, merges):
        fallback("the GGUF has no tokenizer.ggml.pre and its vocabulary is LLaMA-3's: using the llama-bpe "
                 "pre-tokenizer it was trained with (--tokenizer-pre default / tokenizer_pre='default' keeps "
                 "llama.cpp's default regexes)")
        return "llama-bpe"
    fallback("the GGUF has no tokenizer.ggml.pre: using llama.cpp's default pre-tokenizer regexes, as llama.cpp "
             "does (--tokenizer-pre NAME / tokenizer_pre= names the right one)")
    return "default"


def _bpe_spec(md: Mapping[str, Any], tokens: list[str], types: list[int], pre_override: str | None
              ) -> TokenizerSpec:
    if "tokenizer.ggml.merges" not in md:
        raise TokenizerError("GGUF metadata has no tokenizer.ggml.merges key (required for 'gpt2' BPE)")
    merge_texts = _string_list(md["tokenizer.ggml.merges"], "tokenizer.ggml.merges")
    pre = PRE_TOKENIZERS[_pre_name(md, tokens, merge_texts, pre_override)]
    merges = _split_merges(merge_texts)
    vocab = _vocab_dict(tokens)
    for i, (left, right) in enumerate(merges):
        for part in (left, right, left + right):
            if part not in vocab:
                raise TokenizerError(f"tokenizer.ggml.merges[{i}] ({left!r} + {right!r}) needs {part!r}, which is "
                                     "not in the vocabulary")
    types, eog = _eog_ids(md, vocab, types)
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    hf_json = _tokenizer_json(
        tokens, types, vocab, merges, ignore_merges=pre.ignore_merges, byte_fallback=False, unk_token=None,
        normalizer=None,
        pre_tokenizer={"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": False}
            for r in pre.regexes] + [byte_level]},
        decoder={"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True})
    return TokenizerSpec("bpe", tokens, types, _special_id(md, "bos", None, len(tokens)),
                         _special_id(md, "eos", None, len(tokens)), eog,
                         add_bos=_flag(md, "tokenizer.ggml.add_bos_token", pre.add_bos),
                         add_eos=_flag(md, "tokenizer.ggml.add_eos_token", False), add_space_prefix=False,
                         hf_json=hf_json)


def _spm_spec(md: Mapping[str, Any], tokens: list[str], types: list[int]) -> TokenizerSpec:
    n = len(tokens)
    scores = (_as_float_list(md["tokenizer.ggml.scores"], "tokenizer.ggml.scores", n)
              if "tokenizer.ggml.scores" in md else [0.0] * n)
    vocab = _vocab_dict(tokens)
    types, eog = _eog_ids(md, vocab, types)
    unk = _special_id(md, "unknown", 0 if n > 0 else None, n)
    add_space_prefix = _flag(md, "tokenizer.ggml.add_space_prefix", True)
    steps = [{"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]
    if add_space_prefix:
        steps.insert(0, {"type": "Prepend", "prepend": "\u2581"})
    hf_json = _tokenizer_json(
        tokens, types, vocab, _spm_merges(tokens, scores, vocab), ignore_merges=False, byte_fallback=True,
        unk_token=tokens[unk] if unk is not None else None,
        normalizer={"type": "Sequence", "normalizers": steps}, pre_tokenizer=None,
        decoder={"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"},
            {"type": "Fuse"}]})
    return TokenizerSpec("spm", tokens, types, _special_id(md, "bos", 1 if n > 1 else None, n),
                         _special_id(md, "eos", 2 if n > 2 else None, n), eog,
                         add_bos=_flag(md, "tokenizer.ggml.add_bos_token", True),
                         add_eos=_flag(md, "tokenizer.ggml.add_eos_token", False),
                         add_space_prefix=add_space_prefix, hf_json=hf_json)


def _tokenizer_json(tokens: list[str], types: list[int], vocab: dict[str, int], merges: list[tuple[str, str]], *,
                    ignore_merges: bool, byte_fallback: bool, unk_token: str | None, normalizer: Any,
                    pre_tokenizer: Any, decoder: Any) -> dict[str, Any]:
    """Control, unknown and user-defined tokens are added tokens, cut out of the text before splitting/BPE.
    Control and unknown ones are `special` (encoding with special-token parsing off leaves their text alone);
    user-defined ones are not, since llama.cpp matches them in every case."""
    added = [{"id": i, "content": tokens[i], "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": t in (CONTROL, UNKNOWN)}
             for i, t in enumerate(types) if t in (CONTROL, UNKNOWN, USER_DEFINED)]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer, "post_processor": None, "decoder": decoder,
        "model": {"type": "BPE", "dropout": None, "unk_token": unk_token, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": byte_fallback,
                  "ignore_merges": ignore_merges, "vocab": vocab, "merges": [list(m) for m in merges]},
    }
