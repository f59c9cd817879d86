"""Tokenizer metadata for GGUF from a Hugging Face tokenizer.json + tokenizer_config.json (docs/formats.md §8).

Two tokenizer families are written:
- byte-level BPE (GPT-2 / LLaMA-3 style) -> `tokenizer.ggml.model = "gpt2"`, with merges and a
  `tokenizer.ggml.pre` name for the pre-tokenizer regex that tokenizer.json actually applies;
- SentencePiece-style BPE with byte fallback (LLaMA-2 / 1bitLLM style) -> `tokenizer.ggml.model = "llama"`,
  with per-token scores that reproduce the merge order (the llama tokenizer merges the adjacent pair whose
  result has the highest score, so score = -(rank of the first merge that yields the token)).
Anything else (Unigram, WordPiece, normalizers on a byte-level vocabulary, unknown split regexes) raises
ConversionError: writing it anyway would give a GGUF that silently tokenizes differently from the source.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bitnet.convert.checkpoint import load_json
from bitnet.errors import ConversionError

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"   # where newer transformers versions save the template

# GGUF token types (llama.cpp's llama_token_type).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
ADDED_TOKEN_SCORE = -1000.0   # what the reference writes as the score of added (special) tokens

GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
# Split regexes of byte-level tokenizers (applied before a regex-less ByteLevel step) -> llama.cpp pre names.
SPLIT_REGEX_PRE = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+": "llama-bpe",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+": "qwen2",
    GPT2_REGEX: "gpt-2",
}
KNOWN_PRE = ("gpt-2 (ByteLevel with its built-in regex)",
             *(f"{name} (Split regex {regex!r} + ByteLevel)" for regex, name in SPLIT_REGEX_PRE.items()))


@dataclass
class VocabMetadata:
    """The `tokenizer.*` keys to write, in writing order, with GGUF array element types where needed."""
    model: str
    tokens: list[str]
    scores: list[float]
    token_types: list[int]
    merges: list[str] | None = None
    pre: str | None = None
    scalars: dict[str, Any] = field(default_factory=dict)   # ids, flags, chat template


def _content(value: Any) -> str | None:
    """A special-token entry of tokenizer_config.json is a string or an AddedToken-like dict."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _chat_template(hf_dir: Path, tok_config: dict[str, Any]) -> str | None:
    template = tok_config.get("chat_template")
    if isinstance(template, list):   # several named templates: llama.cpp also takes the "default" one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if isinstance(template, str) and template:
        return template
    path = hf_dir / CHAT_TEMPLATE_FILE
    if path.is_file():
        return path.read_text(encoding="utf-8") or None
    return None


def _merge_strings(raw: Any) -> list[str]:
    """Merges as "a b" strings; tokenizer.json stores either that or [a, b] pairs."""
    if not isinstance(raw, list):
        raise ConversionError("tokenizer.json: model.merges is not a list")
    merges = []
    for m in raw:
        if isinstance(m, str):
            parts = m.split(" ")
        elif isinstance(m, list) and all(isinstance(p, str) for p in m):
            parts = m
        else:
            raise ConversionError(f"tokenizer.json: malformed merge {m!r}")
        if len(parts) != 2 or not all(parts):
            raise ConversionError(f"tokenizer.json: merge {m!r} is not two space-free symbols, which the "
                                  "GGUF \"a b\" merge format cannot represent")
        merges.append(f"{parts[0]} {parts[1]}")
    return merges


def _byte_level_pre(pre_tok: dict[str, Any] | None) -> str:
    """The llama.cpp pre-tokenizer name equivalent to a byte-level tokenizer.json's pre_tokenizer."""
    def check_bytelevel(step: dict[str, Any], regex_expected: bool) -> None:
        if step.get("add_prefix_space", False):
            raise ConversionError("tokenizer.json: ByteLevel add_prefix_space=true is not supported (GGUF "
                                  "byte-level tokenizers never insert a leading space)")
        if step.get("use_regex", True) != regex_expected:
            raise ConversionError(f"tokenizer.json: unsupported pre-tokenizer arrangement {pre_tok!r}; "
                                  f"known: {'; '.join(KNOWN_PRE)}")

    if isinstance(pre_tok, dict) and pre_tok.get("type") == "ByteLevel":
        check_bytelevel(pre_tok, regex_expected=True)
        return "gpt-2"
    if isinstance(pre_tok, dict) and pre_tok.get("type") == "Sequence":
        steps = pre_tok.get("pretokenizers") or []
        if (len(steps) == 2 and steps[0].get("type") == "Split" and steps[1].get("type") == "ByteLevel"):
            split = steps[0]
            regex = (split.get("pattern") or {}).get("Regex")
            if split.get("behavior") != "Isolated" or split.get("invert", False):
                raise ConversionError(f"tokenizer.json: Split pre-tokenizer with behavior "
                                      f"{split.get('behavior')!r}, invert={split.get('invert')} is not "
                                      "supported")
            check_bytelevel(steps[1], regex_expected=False)
            if regex in SPLIT_REGEX_PRE:
                return SPLIT_REGEX_PRE[regex]
            raise ConversionError(f"tokenizer.json: unknown pre-tokenizer split regex {regex!r}; known: "
                                  f"{'; '.join(KNOWN_PRE)}")
    raise ConversionError(f"tokenizer.json: unsupported byte-level pre-tokenizer {pre_tok!r}; known: "
                          f"{'; '.join(KNOWN_PRE)}")


def _is_byte_level(tok: dict[str, Any]) -> bool:
    def mentions(node: Any) -> bool:
        if isinstance(node, dict):
            return node.get("type") == "ByteLevel" or any(mentions(v) for v in node.values())
        if isinstance(node, list):
            return any(mentions(v) for v in node)
        return False
    return mentions(tok.get("pre_tokenizer")) or mentions(tok.get("decoder"))


def _sentencepiece_space_prefix(tok: dict[str, Any]) -> bool:
    """Whether a SentencePiece-style tokenizer.json marks spaces with "▁" and adds one in front.

    LLaMA-2 style: normalizer Sequence[Prepend("▁"), Replace(" ", "▁")] and no pre-tokenizer; newer exports
    use a Metaspace pre-tokenizer instead. Returns the add-space-prefix flag, or raises when neither is found.
    """
    norm = tok.get("normalizer")
    if isinstance(norm, dict) and norm.get("type") == "Sequence":
        steps = norm.get("normalizers") or []
    else:
        steps = [norm] if norm else []
    replaces_space = any(s.get("type") == "Replace" and (s.get("pattern") or {}).get("String") == " "
                         and s.get("content") == "\u2581" for s in steps)
    if replaces_space and tok.get("pre_tokenizer") is None:
        return any(s.get("type") == "Prepend" and s.get("prepend") == "\u2581" for s in steps)
    pre = tok.get("pre_tokenizer")
    if not steps and isinstance(pre, dict) and pre.get("type") == "Metaspace" and pre.get("split") is False:
        return pre.get("prepend_scheme", "always") in ("always", "first")
    raise ConversionError("tokenizer.json: a byte-fallback BPE tokenizer without the SentencePiece space "
                          f"handling (normalizer {norm!r}, pre_tokenizer {pre!r}) is not supported")


def _token_table(tok: dict[str, Any], vocab_size: int) -> tuple[dict[int, str], dict[int, bool]]:
    model = tok["model"]
    vocab = model.get("vocab")
    if not isinstance(vocab, dict):
        raise ConversionError("tokenizer.json: model.vocab is not a token -> id table")
    by_id: dict[int, str] = {}
    for text, idx in vocab.items():
        by_id[int(idx)] = text
    added: dict[int, bool] = {}        # id -> special
    for entry in tok.get("added_tokens") or []:
        idx = int(entry["id"])
        by_id[idx] = entry["content"]
        added[idx] = bool(entry.get("special", False))
    if by_id and max(by_id) >= vocab_size:
        raise ConversionError(f"tokenizer.json has token id {max(by_id)}, but the model's vocab_size is "
                              f"{vocab_size} (the embedding has no row for it)")
    if len(set(by_id.values())) != len(by_id):
        raise ConversionError("tokenizer.json maps the same token text to two ids")
    return by_id, added


def _special_ids(tok_config: dict[str, Any], config: dict[str, Any], text_to_id: dict[str, int]
                 ) -> dict[str, int]:
    """bos/eos/unk/pad ids: tokenizer_config.json's tokens first (what the HF tokenizer uses), then
    config.json's *_token_id as a fallback."""
    ids: dict[str, int] = {}
    for kind in ("bos", "eos", "unk", "pad"):
        text = _content(tok_config.get(f"{kind}_token"))
        if text is not None:
            if text not in text_to_id:
                raise ConversionError(f"tokenizer_config.json: {kind}_token {text!r} is not in the "
                                      "vocabulary")
            ids[kind] = text_to_id[text]
            continue
        value = config.get(f"{kind}_token_id")
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, int) and value >= 0:
            ids[kind] = value
    return ids


def read_vocab(hf_dir: Path, config: dict[str, Any], vocab_size: int) -> VocabMetadata:
    """Build the tokenizer metadata for a model whose embedding has `vocab_size` rows."""
    tok = load_json(hf_dir / TOKENIZER_FILE, "tokenizer")
    tok_config_path = hf_dir / TOKENIZER_CONFIG_FILE
    tok_config = load_json(tok_config_path, "tokenizer config") if tok_config_path.is_file() else {}
    model = tok.get("model")
    if not isinstance(model, dict) or model.get("type", "BPE") != "BPE":
        kind = model.get("type") if isinstance(model, dict) else None
        raise ConversionError(f"tokenizer.json: model type {kind!r} is not supported (only BPE: byte-level "
                              "or SentencePiece-style with byte fallback)")
    by_id, added = _token_table(tok, vocab_size)
    merges = _merge_strings(model.get("merges", []))

    tokens: list[str] = []
    types: list[int] = []
    scores: list[float] = []
    byte_level = _is_byte_level(tok)
    if byte_level:
        if tok.get("normalizer"):
            raise ConversionError(f"tokenizer.json: normalizer {tok['normalizer']!r} on a byte-level BPE "
                                  "vocabulary is not supported")
        pre = _byte_level_pre(tok.get("pre_tokenizer"))
        for i in range(vocab_size):
            text = by_id.get(i)
            if text is None:         # embedding rows with no token: padding, as llama.cpp's converter writes
                tokens.append(f"[PAD{i}]")
                types.append(UNUSED)
                scores.append(0.0)
            elif i in added:
                tokens.append(text)
                types.append(CONTROL if added[i] else USER_DEFINED)
                scores.append(ADDED_TOKEN_SCORE)
            else:
                tokens.append(text)
                types.append(NORMAL)
                scores.append(0.0)
        meta = VocabMetadata("gpt2", tokens, scores, types, merges=merges, pre=pre)
    else:
        if not model.get("byte_fallback", False):
            raise ConversionError("tokenizer.json: BPE without byte-level pre-tokenizer or byte fallback is "
                                  "not supported")
        add_space_prefix = _sentencepiece_space_prefix(tok)
        unk_text = model.get("unk_token")
        rank: dict[str, int] = {}
        for r, m in enumerate(merges):
            rank.setdefault(m.replace(" ", "", 1), r)
        byte_token = re.compile(r"<0x[0-9A-F]{2}>")
        for i in range(vocab_size):
            text = by_id.get(i)
            if text is None:
                tokens.append(f"[PAD{i}]")
                types.append(UNUSED)
                scores.append(0.0)
                continue
            tokens.append(text)
            if i in added and text != unk_text:
                types.append(CONTROL if added[i] else USER_DEFINED)
                scores.append(0.0)
            elif text == unk_text:
                types.append(UNKNOWN)
                scores.append(0.0)
            elif byte_token.fullmatch(text):
                types.append(BYTE)
                scores.append(0.0)
            else:
                types.append(NORMAL)
                # Highest score merges first, like the lowest merge rank; tokens no merge yields (single
                # characters) are never merge candidates, so they just rank below every merge.
                scores.append(-float(rank.get(text, len(merges))))
        meta = VocabMetadata("llama", tokens, scores, types)
        meta.scalars["tokenizer.ggml.add_space_prefix"] = add_space_prefix

    text_to_id = {t: i for i, t in enumerate(tokens)}
    ids = _special_ids(tok_config, config, text_to_id)
    for kind, key in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("unk", "unknown_token_id"),
                      ("pad", "padding_token_id")):
        if kind in ids:
            if not 0 <= ids[kind] < vocab_size:
                raise ConversionError(f"{kind} token id {ids[kind]} is outside the vocabulary "
                                      f"(0..{vocab_size - 1})")
            meta.scalars[f"tokenizer.ggml.{key}"] = ids[kind]
    # The reference engine adds BOS unless the tokenizer config says otherwise.
    meta.scalars["tokenizer.ggml.add_bos_token"] = bool(tok_config.get("add_bos_token", True))
    if "add_eos_token" in tok_config:
        meta.scalars["tokenizer.ggml.add_eos_token"] = bool(tok_config["add_eos_token"])
    template = _chat_template(hf_dir, tok_config)
    if template is not None:
        meta.scalars["tokenizer.chat_template"] = template
    return meta
