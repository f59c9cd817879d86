"""Structured output: a JSON schema, "any JSON object" or a Lark grammar, compiled by llguidance into a token mask
for every decoding step (the `grammar` extra: `pip install 'bitnet-engine[grammar]'`).

llguidance (the library llama.cpp, vLLM and SGLang constrain output with) runs an Earley parser over the
tokenizer's byte trie; its tokenizer is built from the tokenizer.json this engine already makes from the GGUF
metadata, so the mask speaks the model's own token ids. A grammar is compiled once per request (`compile_grammar`:
a schema or grammar that does not compile is a GrammarError naming the reason); each sequence then gets its own
`Constraint` (its parser state), which the decoding core (bitnet.generation.Decoding) asks for the mask before
sampling and tells the token after.
"""
from __future__ import annotations

import json
from typing import Any

from bitnet.errors import BitNetError

__all__ = ["Constraint", "GrammarError", "compile_grammar", "guidance_tokenizer"]


class GrammarError(BitNetError, ValueError):
    """A JSON schema or grammar that cannot be compiled, or structured output without llguidance installed."""


def _llguidance():
    try:
        import llguidance
    except ImportError:
        raise GrammarError("structured output (json_schema, grammar) needs llguidance: "
                           "pip install 'bitnet-engine[grammar]'") from None
    return llguidance


def compile_grammar(*, json_schema: dict | str | None = None, json_object: bool = False,
                    lark: str | None = None) -> str:
    """One of: a JSON schema (a dict or its JSON text), any JSON object, or a grammar in llguidance's Lark syntax,
    as llguidance's grammar text; checked, so a bad one fails here, naming why. JSON is compact (no free
    whitespace), as OpenAI's structured outputs write it: a small model cannot pad it forever."""
    given = [name for name, value in (("json_schema", json_schema), ("json_object", json_object or None),
                                       ("grammar", lark)) if value is not None]
    if len(given) != 1:
        raise GrammarError(f"give exactly one of json_schema, json_object, grammar (got {', '.join(given) or 'none'})")
    llg = _llguidance()
    if lark is not None:
        if not isinstance(lark, str) or not lark.strip():
            raise GrammarError("the grammar must be a non-empty Lark text")
        grammar, what = llg.LLMatcher.grammar_from_lark(lark), "grammar"
    else:
        schema: Any = {"type": "object"} if json_object else json_schema
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except ValueError as e:
                raise GrammarError(f"the JSON schema is not valid JSON: {e}") from None
        if not isinstance(schema, dict):
            raise GrammarError(f"a JSON schema must be an object, got {type(schema).__name__}")
        try:
            grammar = llg.LLMatcher.grammar_from_json_schema(schema, defaults={"whitespace_flexible": False})
        except ValueError as e:
            raise GrammarError(f"invalid JSON schema: {e}") from None
        what = "JSON schema"
    error = llg.LLMatcher.validate_grammar(grammar)
    if error:
        raise GrammarError(f"invalid {what}: {' '.join(error.split())}")
    return grammar


def guidance_tokenizer(tokenizer, n_vocab: int):
    """llguidance's view of a bitnet Tokenizer (built once per model: it indexes every token's bytes)."""
    llg = _llguidance()
    return llg.LLTokenizer(tokenizer.hf.to_str(), n_vocab=n_vocab, eos_token=sorted(tokenizer.eog_ids))


class Constraint:
    """One sequence's position in a grammar: `mask()` before each token, `accept(token)` after it."""

    def __init__(self, guidance_tok, grammar: str):
        llg = _llguidance()
        self.matcher = llg.LLMatcher(guidance_tok, grammar)
        self._check()

    def mask(self) -> bytes:
        """The tokens the grammar allows next, as a bitmask (bit i of little-endian 32-bit words = token i)."""
        return self.matcher.compute_bitmask()

    def accept(self, token: int) -> None:
        self.matcher.consume_token(token)
        self._check()

    @property
    def finished(self) -> bool:
        """The grammar is complete and allows nothing more (generation stops here, finish_reason "stop")."""
        return self.matcher.is_stopped()

    def _check(self) -> None:
        if self.matcher.is_error():
            raise GrammarError(f"the grammar failed: {' '.join(self.matcher.get_error().split())}")
