"""Corpus and tokenizer for the tiny BitNet b1.58 model shipped in ``bitnet/data``.

The corpus is the English fortune-cookie collection of Debian's ``fortunes`` / ``fortunes-min`` packages
(text files in ``/usr/share/games/fortunes``; each file holds documents separated by lines containing only
``%``). Extraction is deterministic: files in sorted order, a fixed cleaning function, and a fixed
held-out rule (every ``HOLDOUT_EVERY``-th document, counted over the whole collection).

The text the model sees is the fortune file format itself: every document followed by ``"\\n%\\n"``. Training
text and ``bitnet/data/heldout.txt`` use the same format, so the held-out perplexity measures exactly the
distribution the model was trained on.

Run ``python tools/training/corpus.py`` to print corpus statistics and (re)write ``bitnet/data/heldout.txt``.
"""
from __future__ import annotations

import argparse
import json
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

FORTUNE_DIR = Path("/usr/share/games/fortunes")
# Files that are pictures rather than prose: they would only teach the model runs of punctuation.
EXCLUDED_FILES = frozenset({"ascii-art"})
HOLDOUT_EVERY = 50
DOC_SEPARATOR = "\n%\n"

BOS_TOKEN = "<|begin_of_text|>"
EOS_TOKEN = "<|end_of_text|>"
# LLaMA-3's split regex, as in the tokenizer.json of Meta-Llama-3 and BitNet b1.58 2B4T; a converter maps it
# to llama.cpp's "llama-bpe" pre-tokenizer.
LLAMA3_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class Document:
    source: str  # file name inside FORTUNE_DIR
    text: str


def list_fortune_files(root: Path = FORTUNE_DIR) -> list[Path]:
    """The fortune text files under ``root`` in sorted order (no ``.dat`` indexes, no ``.u8`` symlinks)."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is missing: install the corpus with `apt-get install -y fortunes`")
    files = [
        p for p in sorted(root.iterdir())
        if p.is_file() and not p.is_symlink() and p.suffix not in {".dat", ".u8"} and p.name not in EXCLUDED_FILES
    ]
    if not files:
        raise FileNotFoundError(f"no fortune files in {root}")
    return files


def _apply_backspaces(line: str) -> str:
    """Resolve terminal overstriking (``___\\b\\b\\bnot``) the way a terminal shows it: the later text wins."""
    out: list[str] = []
    for ch in line:
        if ch == "\b":
            if out:
                out.pop()
        else:
            out.append(ch)
    return "".join(out)


def clean_document(raw: str) -> str:
    """Fixed cleaning of one fortune: NFC, overstrikes resolved, control characters other than tab dropped,
    trailing whitespace stripped from every line, blank lines at both ends removed."""
    text = unicodedata.normalize("NFC", raw.replace("\r\n", "\n").replace("\r", "\n"))
    lines = []
    for line in text.split("\n"):
        line = _apply_backspaces(line)
        line = "".join(ch for ch in line if ch == "\t" or unicodedata.category(ch) != "Cc")
        lines.append(line.rstrip())
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def split_fortunes(text: str) -> list[str]:
    """Split a fortune file at its ``%`` separator lines; returns the raw documents."""
    docs: list[str] = []
    current: list[str] = []
    for line in text.split("\n"):
        if line.rstrip() == "%":
            docs.append("\n".join(current))
            current = []
        else:
            current.append(line)
    docs.append("\n".join(current))
    return docs


def read_documents(root: Path = FORTUNE_DIR) -> list[Document]:
    """All non-empty cleaned documents, in file order then position order."""
    documents: list[Document] = []
    for path in list_fortune_files(root):
        # The files are UTF-8 (a few contain double-encoded mojibake, kept as is); replace undecodable bytes.
        raw = path.read_bytes().decode("utf-8", errors="replace")
        for doc in split_fortunes(raw):
            cleaned = clean_document(doc)
            if cleaned:
                documents.append(Document(path.name, cleaned))
    return documents


def split_train_heldout(
    documents: Sequence[Document], every: int = HOLDOUT_EVERY
) -> tuple[list[Document], list[Document]]:
    """Every ``every``-th document (indices every-1, 2·every-1, ...) is held out; the rest is training data."""
    train = [d for i, d in enumerate(documents) if i % every != every - 1]
    heldout = [d for i, d in enumerate(documents) if i % every == every - 1]
    return train, heldout


def join_documents(documents: Iterable[Document]) -> str:
    """The fortune file format: each document followed by a ``%`` line."""
    return "".join(d.text + DOC_SEPARATOR for d in documents)


def train_tokenizer(documents: Sequence[Document], vocab_size: int = 4096):
    """Byte-level BPE with LLaMA-3 pre-tokenization; ``vocab_size`` includes BOS and EOS (the last two ids)."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )

    tok = Tokenizer(models.BPE(fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 2,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator((d.text + DOC_SEPARATOR for d in documents), trainer=trainer)
    tok.add_special_tokens([
        AddedToken(BOS_TOKEN, special=True, normalized=False),
        AddedToken(EOS_TOKEN, special=True, normalized=False),
    ])
    bos, eos = tok.token_to_id(BOS_TOKEN), tok.token_to_id(EOS_TOKEN)
    if (bos, eos, tok.get_vocab_size()) != (vocab_size - 2, vocab_size - 1, vocab_size):
        raise RuntimeError(f"unexpected vocabulary layout: bos={bos} eos={eos} size={tok.get_vocab_size()}")
    # As LLaMA-3: encoding text adds BOS (the GGUF says add_bos_token = true).
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A:0",
        pair=f"{BOS_TOKEN} $A:0 {BOS_TOKEN}:1 $B:1",
        special_tokens=[(BOS_TOKEN, bos)],
    )
    return tok


def save_tokenizer(tok, out_dir: Path, model_max_length: int) -> None:
    """Write ``tokenizer.json`` and a ``tokenizer_config.json`` (no chat template) that transformers loads."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    bos, eos = tok.token_to_id(BOS_TOKEN), tok.token_to_id(EOS_TOKEN)
    config = {
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model_max_length,
        "added_tokens_decoder": {
            str(i): {
                "content": text, "special": True, "normalized": False,
                "lstrip": False, "rstrip": False, "single_word": False,
            }
            for i, text in ((bos, BOS_TOKEN), (eos, EOS_TOKEN))
        },
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def corpus_stats(root: Path = FORTUNE_DIR) -> dict:
    documents = read_documents(root)
    train, heldout = split_train_heldout(documents)
    return {
        "files": [p.name for p in list_fortune_files(root)],
        "documents": len(documents),
        "train_documents": len(train),
        "heldout_documents": len(heldout),
        "train_chars": len(join_documents(train)),
        "heldout_chars": len(join_documents(heldout)),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=FORTUNE_DIR)
    parser.add_argument("--heldout-out", type=Path, default=Path(__file__).resolve().parents[2]
                        / "bitnet" / "data" / "heldout.txt")
    args = parser.parse_args(argv)
    _, heldout = split_train_heldout(read_documents(args.root))
    args.heldout_out.write_text(join_documents(heldout), encoding="utf-8")
    print(json.dumps(corpus_stats(args.root), indent=1))


if __name__ == "__main__":
    main()
