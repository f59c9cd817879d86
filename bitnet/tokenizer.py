"""The tokenizer, rebuilt from GGUF metadata (or a tokenizer.json), and a streaming detokenizer.

Encoding is done by the Hugging Face `tokenizers` library; this module only assembles the right pipeline so
that the ids equal those of the reference engine (llama.cpp's vocabulary code, docs/formats.md §8):

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

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer as HFTokenizer

from bitnet.errors import TokenizerError
from bitnet.tokenizer_spec import (  # noqa: F401 - the token types and byte-level table are part of this API
    BYTE,
    CONTROL,
    EOG_TEXTS,
    NORMAL,
    PRE_TOKENIZERS,
    UNDEFINED,
    UNKNOWN,
    UNUSED,
    USER_DEFINED,
    Pieces,
    StreamDecoder,
    TokenizerSpec,
    _byte_level_bytes,
    _byte_token_value,
    byte_level_tokens,
    spec_from_gguf_metadata,
)

__all__ = ["StreamDecoder", "Tokenizer", "find_tokenizer", "load_tokenizer"]

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
        self._pieces = Pieces(kind, self._tokens, self._types, add_space_prefix)
        self._hf_literal: HFTokenizer | None = None   # built on first encode(parse_special=False)
        self._encode_lock = threading.Lock()

    # --- construction ----------------------------------------------------------------------------------------
    @classmethod
    def from_gguf_metadata(cls, metadata: Mapping[str, Any], pre: str | None = None) -> Tokenizer:
        """Rebuild the tokenizer from a GGUF metadata dict (`tokenizer.ggml.*` keys, docs/formats.md §8); `pre`
        names a byte-level BPE's pre-tokenizer instead of the file's (bitnet.tokenizer_spec)."""
        return cls.from_spec(spec_from_gguf_metadata(metadata, pre))

    @classmethod
    def from_spec(cls, spec: TokenizerSpec) -> Tokenizer:
        """The tokenizer a `bitnet.tokenizer_spec.TokenizerSpec` describes (its tokenizer.json, built in Rust)."""
        try:
            hf = HFTokenizer.from_str(spec.to_json())
        except Exception as e:  # noqa: BLE001 - tokenizers reports bad vocabularies/merges as a bare Exception
            raise TokenizerError(f"cannot build the {spec.kind.upper()} tokenizer from the GGUF vocabulary: {e}"
                                 ) from None
        return cls(hf, spec.tokens, spec.types, kind=spec.kind, bos_id=spec.bos_id, eos_id=spec.eos_id,
                   eog_ids=spec.eog_ids, add_bos=spec.add_bos, add_eos=spec.add_eos,
                   add_space_prefix=spec.add_space_prefix)

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
        return self._pieces.is_special(self._check_id(token_id))

    def token_bytes(self, token_id: int) -> bytes:
        """The exact bytes a token stands for (a byte-level token may be a fraction of a UTF-8 character)."""
        return self._pieces.token_bytes(self._check_id(token_id))

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
            if skip_special and self._pieces.is_special(token_id):
                continue
            piece = self._pieces.token_bytes(token_id)
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

    def __repr__(self) -> str:
        return (f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, bos_id={self.bos_id}, "
                f"eos_id={self.eos_id}, add_bos={self.add_bos})")


def find_tokenizer(model_path: Path, metadata: Mapping[str, Any], explicit: str | Path | None = None,
                   pre: str | None = None) -> Tokenizer:
    """The tokenizer of the model file at model_path: `explicit` (--tokenizer) when given, else the GGUF's own,
    else a tokenizer.json beside the file, else one in the folder above it (both a fallback: the file did not
    say); the error names every place tried."""
    if explicit is not None:
        return load_tokenizer(explicit, pre)
    if "tokenizer.ggml.model" in metadata:
        return Tokenizer.from_gguf_metadata(metadata, pre)
    tried = [f"{model_path.name}'s own metadata (no tokenizer.ggml.* keys)"]
    for folder in (model_path.parent, model_path.parent.parent):
        candidate = folder / "tokenizer.json"
        if candidate.is_file():
            from bitnet.errors import fallback

            fallback(f"{model_path.name} carries no tokenizer: using {candidate} (--tokenizer / tokenizer_path= "
                     "names one)")
            return Tokenizer.from_file(candidate)
        tried.append(str(candidate))
    raise TokenizerError(f"no tokenizer for {model_path}: tried {', '.join(tried)}; give one with --tokenizer "
                         "(tokenizer_path= in Python): a tokenizer.json or a GGUF that carries one")


def load_tokenizer(path: str | Path, pre: str | None = None) -> Tokenizer:
    """The tokenizer of a model file: a .gguf (only its metadata is read; `pre` as in from_gguf_metadata) or a
    tokenizer.json (or a folder holding one)."""
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
        return Tokenizer.from_gguf_metadata(metadata, pre)
    raise TokenizerError(f"cannot load a tokenizer from {path}: expected a .gguf file, a tokenizer.json or a "
                         "folder holding one")


# --- helpers ---------------------------------------------------------------------------------------------------
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
