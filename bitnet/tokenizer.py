"""The tokenizer, rebuilt from GGUF metadata (or a tokenizer.json), and a streaming detokenizer.

Encoding is done by the Hugging Face `tokenizers` library; this module only assembles the right pipeline so
that the ids equal those of the reference engine (llama.cpp's vocabulary code, FORMATS.md §8):

- `tokenizer.ggml.model = "gpt2"`: byte-level BPE. The vocabulary and merges come from the file, the split
  regexes from `tokenizer.ggml.pre` (absent -> llama.cpp's "default" sequence of four regexes), and tokens of
  type control / user-defined / unknown are matched in the input text before anything else, as llama.cpp does.
- `tokenizer.ggml.model = "llama"`: SentencePiece. llama.cpp merges the adjacent pair whose merged text is a
  token with the highest score; a `tokenizers` BPE whose merges are every (left, right) split of every token,
  ranked by the merged token's score, performs the same merges. Characters outside the vocabulary fall back to
  `<0xNN>` byte tokens, spaces become "▁" and one "▁" is put in front of each run of text (add_space_prefix).

Decoding does not go through `tokenizers`: every token has a fixed byte string (its "piece", what llama.cpp's
token_to_piece returns), and text is the UTF-8 decoding of the concatenated pieces. That makes streaming
exact and O(1) per token (`StreamDecoder`).
"""
from __future__ import annotations

import codecs
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from bitnet.errors import TokenizerError

__all__ = ["StreamDecoder", "Tokenizer", "load_tokenizer"]

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
    # exactly two hex digits: int(..., 16) alone would also take "-1", "+F" or " F" (found by tools/fuzz)
    digits = text[3:5]
    if len(text) == 6 and text.startswith("<0x") and text.endswith(">") and all(
            c in "0123456789abcdefABCDEF" for c in digits):
        return int(digits, 16)
    return None


def _as_int_list(value: Any, key: str, n: int) -> list[int]:
    arr = np.asarray(value)
    if arr.ndim != 1 or arr.shape[0] < n or not np.issubdtype(arr.dtype, np.integer):
        raise TokenizerError(f"GGUF key {key} must be an integer array with at least {n} entries "
                             f"(one per token), got {type(value).__name__} of shape {arr.shape}")
    return arr[:n].tolist()


def _as_float_list(value: Any, key: str, n: int) -> list[float]:
    arr = np.asarray(value)
    if arr.ndim != 1 or arr.shape[0] < n or not (np.issubdtype(arr.dtype, np.floating)
                                                  or np.issubdtype(arr.dtype, np.integer)):
        raise TokenizerError(f"GGUF key {key} must be a numeric array with at least {n} entries "
                             f"(one per token), got {type(value).__name__} of shape {arr.shape}")
    return arr[:n].astype(np.float64).tolist()


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


class Tokenizer:
    """Text <-> token ids for one model, with the special-token facts the engine needs.

    Build it with `Tokenizer.from_gguf_metadata`, `Tokenizer.from_file` or `load_tokenizer`.
    """

    def __init__(self, hf: HFTokenizer, tokens: Sequence[str], token_types: Sequence[int], *, kind: str,
                 bos_id: int | None, eos_id: int | None, eog_ids: Iterable[int] = (), add_bos: bool,
                 add_eos: bool = False, add_space_prefix: bool = False) -> None:
        if kind not in ("bpe", "spm"):
            raise TokenizerError(f"unknown tokenizer kind {kind!r} (expected 'bpe' or 'spm')")
        self._hf = hf
        self._tokens = list(tokens)
        self._types = list(token_types)
        self.kind = kind
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.eog_ids = frozenset(eog_ids) | ({eos_id} if eos_id is not None else frozenset())
        self.add_bos = add_bos
        self.add_eos = add_eos
        self.add_space_prefix = add_space_prefix
        for name, tid in (("BOS", bos_id), ("EOS", eos_id), *(("end-of-generation", t) for t in self.eog_ids)):
            if tid is not None and not 0 <= tid < len(self._tokens):
                raise TokenizerError(f"{name} token id {tid} is outside the vocabulary (0..{len(self._tokens) - 1})")
        if add_bos and bos_id is None:
            raise TokenizerError("the tokenizer adds a BOS token, but no BOS token id is set")
        if add_eos and eos_id is None:
            raise TokenizerError("the tokenizer adds an EOS token, but no EOS token id is set")
        self._special = np.isin(np.asarray(self._types, dtype=np.int64), (CONTROL, UNKNOWN))
        # Each token's bytes are worked out the first time it is decoded (no start-up cost for 128k tokens).
        self._pieces: list[bytes | None] = [None] * len(self._tokens)
        self._hf_literal: HFTokenizer | None = None   # built on first encode(parse_special=False)
        self._encode_lock = threading.Lock()

    # --- construction ----------------------------------------------------------------------------------------
    @classmethod
    def from_gguf_metadata(cls, metadata: Mapping[str, Any]) -> Tokenizer:
        """Rebuild the tokenizer from a GGUF metadata dict (`tokenizer.ggml.*` keys, FORMATS.md §8)."""
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
            return cls._from_gguf_bpe(metadata, tokens, types)
        if model == "llama":
            return cls._from_gguf_spm(metadata, tokens, types)
        raise TokenizerError(f"tokenizer.ggml.model {model!r} is not supported (supported: 'gpt2' byte-level "
                             "BPE, 'llama' SentencePiece)")

    @classmethod
    def _from_gguf_bpe(cls, md: Mapping[str, Any], tokens: list[str], types: list[int]) -> Tokenizer:
        pre_name = md.get("tokenizer.ggml.pre")
        if pre_name is None:
            pre = _PRE_DEFAULT
        elif pre_name in PRE_TOKENIZERS:
            pre = PRE_TOKENIZERS[pre_name]
        else:
            raise TokenizerError(f"unknown pre-tokenizer tokenizer.ggml.pre = {pre_name!r}; known: "
                                 f"{', '.join(sorted(PRE_TOKENIZERS))} (or no key for llama.cpp's default)")
        if "tokenizer.ggml.merges" not in md:
            raise TokenizerError("GGUF metadata has no tokenizer.ggml.merges key (required for 'gpt2' BPE)")
        merges = _split_merges(_string_list(md["tokenizer.ggml.merges"], "tokenizer.ggml.merges"))
        vocab = _vocab_dict(tokens)
        types, eog = _eog_ids(md, vocab, types)
        try:
            hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=pre.ignore_merges))
        except Exception as e:  # noqa: BLE001 - tokenizers reports bad merges as a bare Exception
            raise TokenizerError(f"cannot build the BPE model from the GGUF vocabulary/merges: {e}") from None
        hf.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in pre.regexes]
            + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        hf.decoder = decoders.ByteLevel()
        _add_special_tokens(hf, tokens, types)
        bos, eos = _special_id(md, "bos", None, len(tokens)), _special_id(md, "eos", None, len(tokens))
        return cls(hf, tokens, types, kind="bpe", bos_id=bos, eos_id=eos, eog_ids=eog,
                   add_bos=_flag(md, "tokenizer.ggml.add_bos_token", pre.add_bos),
                   add_eos=_flag(md, "tokenizer.ggml.add_eos_token", False))

    @classmethod
    def _from_gguf_spm(cls, md: Mapping[str, Any], tokens: list[str], types: list[int]) -> Tokenizer:
        n = len(tokens)
        scores = (_as_float_list(md["tokenizer.ggml.scores"], "tokenizer.ggml.scores", n)
                  if "tokenizer.ggml.scores" in md else [0.0] * n)
        vocab = _vocab_dict(tokens)
        types, eog = _eog_ids(md, vocab, types)
        unk = _special_id(md, "unknown", 0 if n > 0 else None, n)
        add_space_prefix = _flag(md, "tokenizer.ggml.add_space_prefix", True)
        try:
            hf = HFTokenizer(models.BPE(vocab=vocab, merges=_spm_merges(tokens, scores, vocab),
                                        byte_fallback=True, unk_token=tokens[unk] if unk is not None else None))
        except Exception as e:  # noqa: BLE001 - tokenizers reports bad vocabularies as a bare Exception
            raise TokenizerError(f"cannot build the SentencePiece model from the GGUF vocabulary: {e}") from None
        steps = [normalizers.Replace(" ", "\u2581")]
        if add_space_prefix:
            steps.insert(0, normalizers.Prepend("\u2581"))
        hf.normalizer = normalizers.Sequence(steps)
        hf.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                        decoders.Fuse()])
        _add_special_tokens(hf, tokens, types)
        bos = _special_id(md, "bos", 1 if n > 1 else None, n)
        eos = _special_id(md, "eos", 2 if n > 2 else None, n)
        return cls(hf, tokens, types, kind="spm", bos_id=bos, eos_id=eos, eog_ids=eog,
                   add_bos=_flag(md, "tokenizer.ggml.add_bos_token", True),
                   add_eos=_flag(md, "tokenizer.ggml.add_eos_token", False), add_space_prefix=add_space_prefix)

    @classmethod
    def from_file(cls, path: str | Path, *, bos_id: int | None = None, eos_id: int | None = None,
                  add_bos: bool | None = None) -> Tokenizer:
        """Load a Hugging Face tokenizer.json (byte-level BPE, or SentencePiece-style BPE with byte fallback).

        BOS/EOS come from the arguments, else from a sibling tokenizer_config.json (`bos_token`, `eos_token`,
        `add_bos_token`), else from a sibling config.json (`bos_token_id`, `eos_token_id`). When nothing says
        whether to add BOS, it is added if a BOS token is known (LLaMA-family models are trained with it).
        """
        path = Path(path)
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise TokenizerError(f"cannot read tokenizer file {path}: {e}") from None
        except ValueError as e:
            raise TokenizerError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(spec, dict):
            raise TokenizerError(f"{path} is not a tokenizer.json (top level is not an object)")
        try:
            hf = HFTokenizer.from_file(str(path))
        except Exception as e:  # noqa: BLE001 - tokenizers reports parse errors as a bare Exception
            raise TokenizerError(f"{path} is not a valid tokenizer.json: {e}") from None
        kind = _json_kind(spec, path)
        vocab_size = hf.get_vocab_size(with_added_tokens=True)
        tokens = [hf.id_to_token(i) or "" for i in range(vocab_size)]
        special = {int(t["id"]): bool(t.get("special", False)) for t in spec.get("added_tokens") or []}
        unk_text = (spec.get("model") or {}).get("unk_token")
        types = []
        for i, text in enumerate(tokens):
            if i in special:
                types.append(CONTROL if special[i] else USER_DEFINED)
            elif unk_text is not None and text == unk_text:
                types.append(UNKNOWN)
            elif kind == "spm" and _byte_token_value(text) is not None:
                types.append(BYTE)
            else:
                types.append(NORMAL)
        text_to_id = {t: i for i, t in enumerate(tokens)}
        config = _sibling_json(path, "tokenizer_config.json")
        model_config = _sibling_json(path, "config.json")
        if bos_id is None:
            bos_id = _config_token_id(config, model_config, "bos", text_to_id, path)
        if eos_id is None:
            eos_id = _config_token_id(config, model_config, "eos", text_to_id, path)
        if add_bos is None:
            add_bos = bool(config.get("add_bos_token", bos_id is not None))
        eog = {i for i, t in enumerate(tokens) if t in EOG_TEXTS}
        for i in eog:
            if types[i] not in (CONTROL, UNKNOWN):
                types[i] = CONTROL
        hf.post_processor = None    # BOS/EOS are added by encode(), not by the tokenizer.json template
        add_space_prefix = kind == "spm" and _json_prepends_space(spec)
        return cls(hf, tokens, types, kind=kind, bos_id=bos_id, eos_id=eos_id, eog_ids=eog,
                   add_bos=add_bos, add_eos=bool(config.get("add_eos_token", False)),
                   add_space_prefix=add_space_prefix)

    # --- facts -----------------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    @property
    def tokens(self) -> list[str]:
        """The vocabulary entries as stored (byte-level characters such as "Ġ", or "▁" for spaces)."""
        return self._tokens

    @property
    def hf(self) -> HFTokenizer:
        """The underlying `tokenizers.Tokenizer` (encodes without BOS/EOS)."""
        return self._hf

    def token_type(self, token_id: int) -> int:
        return self._types[self._check_id(token_id)]

    def is_special(self, token_id: int) -> bool:
        """Control (BOS, EOS, <|eot_id|>, ...) and unknown tokens: hidden when decoding with skip_special."""
        return bool(self._special[self._check_id(token_id)])

    def token_bytes(self, token_id: int) -> bytes:
        """The exact bytes a token stands for (a byte-level token may be a fraction of a UTF-8 character)."""
        return self._piece_of(self._check_id(token_id))

    def token_text(self, token_id: int) -> str:
        """The text of one token as it appears in decoded output; special tokens give their literal text."""
        return self.token_bytes(token_id).decode("utf-8", errors="replace")

    # --- encode / decode -------------------------------------------------------------------------------------
    def encode(self, text: str, add_bos: bool | None = None, add_eos: bool | None = None,
               parse_special: bool = True) -> list[int]:
        """Token ids of `text`. BOS/EOS are added as the file says unless `add_bos`/`add_eos` are given.

        With `parse_special` (the default, as in the reference engine's prompt handling), the text of a
        control token such as "<|eot_id|>" becomes that token; with False it is tokenized as plain text.
        User-defined tokens are always matched, as llama.cpp does.
        """
        if not isinstance(text, str):
            raise TokenizerError(f"encode() needs a str, got {type(text).__name__}")
        hf = self._hf if parse_special else self._literal_specials()
        ids = hf.encode(text, add_special_tokens=False).ids
        if self.add_bos if add_bos is None else add_bos:
            if self.bos_id is None:
                raise TokenizerError("add_bos was requested, but this tokenizer has no BOS token")
            ids.insert(0, self.bos_id)
        if self.add_eos if add_eos is None else add_eos:
            if self.eos_id is None:
                raise TokenizerError("add_eos was requested, but this tokenizer has no EOS token")
            ids.append(self.eos_id)
        return ids

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Text of a token sequence: its pieces concatenated, then decoded as UTF-8 (bad bytes -> U+FFFD).

        For SentencePiece vocabularies the space that encoding puts in front of the text is removed again from
        the first piece written, so decode(encode(text), skip_special=True) == text.
        """
        out = []
        for token_id in ids:
            token_id = self._check_id(token_id)
            if skip_special and self._special[token_id]:
                continue
            piece = self._piece_of(token_id)
            if not out and self.add_space_prefix and piece.startswith(b" "):
                piece = piece[1:]
            out.append(piece)
        return b"".join(out).decode("utf-8", errors="replace")

    # --- internals -------------------------------------------------------------------------------------------
    def _literal_specials(self) -> HFTokenizer:
        """A copy of the tokenizer that reads control-token text as plain text. `encode_special_tokens` is a
        setting of the whole tokenizers object, so toggling it per call would race with other threads."""
        if self._hf_literal is None:
            with self._encode_lock:
                if self._hf_literal is None:
                    literal = HFTokenizer.from_str(self._hf.to_str())
                    literal.encode_special_tokens = True
                    self._hf_literal = literal
        return self._hf_literal

    def _check_id(self, token_id: int) -> int:
        if not isinstance(token_id, (int, np.integer)) or isinstance(token_id, bool):
            raise TokenizerError(f"token id must be an int, got {type(token_id).__name__}")
        if not 0 <= token_id < len(self._tokens):
            raise TokenizerError(f"token id {token_id} is outside the vocabulary (0..{len(self._tokens) - 1})")
        return int(token_id)

    def _piece_of(self, token_id: int) -> bytes:
        piece = self._pieces[token_id]
        if piece is None:   # two threads may both compute it: same value, so no lock needed
            piece = self._pieces[token_id] = self._piece(self._tokens[token_id], self._types[token_id])
        return piece

    def _piece(self, text: str, ttype: int) -> bytes:
        """What llama.cpp's token_to_piece gives for one token (with special tokens rendered)."""
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

    def __repr__(self) -> str:
        return (f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, bos_id={self.bos_id}, "
                f"eos_id={self.eos_id}, add_bos={self.add_bos})")


class StreamDecoder:
    """Incremental detokenizer: `push(id)` returns only newly completed text, `flush()` the rest.

    A UTF-8 character split across tokens (byte-level BPE splits emoji and CJK this way) is held back until
    its last byte arrives; invalid bytes come out as U+FFFD exactly as in `Tokenizer.decode`. Each push costs
    one table lookup and decodes only that token's bytes.
    `skip_special` (default True) hides control tokens, as a generation stream should; `strip_leading_space`
    removes the SentencePiece prefix space from the first piece written, making the stream equal `decode()` of
    the same ids for a sequence that starts the text (leave it False for a continuation of a prompt).
    """

    def __init__(self, tokenizer: Tokenizer, skip_special: bool = True, strip_leading_space: bool = False) -> None:
        self._tok = tokenizer
        self._skip_special = skip_special
        self._strip_first = strip_leading_space and tokenizer.add_space_prefix
        self._first = True
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        if self._skip_special and self._tok.is_special(token_id):
            return ""
        piece = self._tok.token_bytes(token_id)
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


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer of a model file: a .gguf (only its metadata is read) or a tokenizer.json (or a folder
    holding one)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "tokenizer.json").is_file():
            raise TokenizerError(f"{path} is a folder without a tokenizer.json")
        return Tokenizer.from_file(path / "tokenizer.json")
    if path.suffix.lower() == ".json":
        return Tokenizer.from_file(path)
    if path.suffix.lower() == ".gguf":
        from bitnet.gguf import GGUFReader  # imported here: the compiled reader is only needed for GGUF

        with GGUFReader(path) as reader:
            metadata = reader.metadata
        return Tokenizer.from_gguf_metadata(metadata)
    raise TokenizerError(f"cannot load a tokenizer from {path}: expected a .gguf file, a tokenizer.json or a "
                         "folder holding one")


# --- helpers ---------------------------------------------------------------------------------------------------
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
    value = md.get(key, default)
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer)) and value in (0, 1)):
        return bool(value)
    raise TokenizerError(f"GGUF key {key} must be a bool, got {value!r}")


def _special_id(md: Mapping[str, Any], kind: str, default: int | None, n: int) -> int | None:
    key = f"tokenizer.ggml.{kind}_token_id"
    if key not in md:
        return default
    value = md[key]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
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


def _add_special_tokens(hf: HFTokenizer, tokens: list[str], types: list[int]) -> None:
    """Control, unknown and user-defined tokens are cut out of the input text before splitting/BPE.

    Control and unknown tokens are `special` (encode(parse_special=False) leaves their text alone);
    user-defined ones are not, since llama.cpp matches them in every case.
    """
    arr = np.asarray(types, dtype=np.int64)
    special = [AddedToken(tokens[i], special=True, normalized=False)
               for i in np.flatnonzero(np.isin(arr, (CONTROL, UNKNOWN))).tolist()]
    user = [AddedToken(tokens[i], special=False, normalized=False)
            for i in np.flatnonzero(arr == USER_DEFINED).tolist()]
    if special:
        hf.add_special_tokens(special)
    if user:
        hf.add_tokens(user)


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


def _json_kind(spec: dict[str, Any], path: Path) -> str:
    model = spec.get("model") or {}
    if model.get("type", "BPE") != "BPE":
        raise TokenizerError(f"{path}: model type {model.get('type')!r} is not supported (only BPE)")

    def mentions(node: Any, what: str) -> bool:
        if isinstance(node, dict):
            return node.get("type") == what or any(mentions(v, what) for v in node.values())
        if isinstance(node, list):
            return any(mentions(v, what) for v in node)
        return False

    if mentions(spec.get("pre_tokenizer"), "ByteLevel") or mentions(spec.get("decoder"), "ByteLevel"):
        return "bpe"
    if model.get("byte_fallback") or mentions(spec.get("decoder"), "ByteFallback"):
        return "spm"
    raise TokenizerError(f"{path}: only byte-level BPE and SentencePiece-style (byte fallback) tokenizers are "
                         "supported")


def _json_prepends_space(spec: dict[str, Any]) -> bool:
    text = json.dumps([spec.get("normalizer"), spec.get("pre_tokenizer")])
    return '"Prepend"' in text or '"prepend_scheme": "always"' in text or '"prepend_scheme": "first"' in text


def _sibling_json(path: Path, name: str) -> dict[str, Any]:
    sibling = path.with_name(name)
    if not sibling.is_file():
        return {}
    try:
        data = json.loads(sibling.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TokenizerError(f"cannot read {sibling}: {e}") from None
    return data if isinstance(data, dict) else {}


def _config_token_id(config: dict[str, Any], model_config: dict[str, Any], kind: str,
                     text_to_id: dict[str, int], path: Path) -> int | None:
    value = config.get(f"{kind}_token")
    if isinstance(value, dict):
        value = value.get("content")
    if isinstance(value, str):
        if value not in text_to_id:
            raise TokenizerError(f"{path.with_name('tokenizer_config.json')}: {kind}_token {value!r} is not in "
                                 "the vocabulary")
        return text_to_id[value]
    value = model_config.get(f"{kind}_token_id")
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(text_to_id):
        return value
    return None
