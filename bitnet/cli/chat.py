"""`bitnet chat`: an interactive REPL over the model's chat template.

The conversation is re-rendered in full every turn and runs in one engine Session whose KV cache keeps the
longest common prefix; the history keeps the token ids the model saw, so each turn only evaluates the new
user message (`--verbose` shows how many tokens that was). Ctrl-C while the model answers stops that answer
and returns to the prompt; Ctrl-C at the prompt clears the line; /exit or Ctrl-D leaves.
"""
from __future__ import annotations

import argparse
import sys

from bitnet.cli import _common

TEMPLATES = ("auto", "instruct", "llama3-chat", "bitnet")
DEFAULT_MAX_TOKENS = 512
PROMPT = "> "
HELP = "/reset clears the conversation, /exit (or Ctrl-D) quits, Ctrl-C stops an answer."
# The part of the context a turn keeps free for the answer (or max_tokens, when smaller): when the history
# leaves less, its oldest turns are dropped.
ANSWER_ROOM = 0.25


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "chat", help="talk to the model in an interactive session",
        description="An interactive chat: type a message and press Enter; the answer streams back. History is "
                    f"kept across turns (the KV cache is reused, not recomputed). {HELP}",
        epilog="Template 'auto' uses the model's chat template (BITNET -> the built-in BitNet format, LLaMA-3 -> "
               "the LLaMA-3 format, other templates -> sandboxed Jinja) and the BitNet format when the model has "
               "no template.")
    p.add_argument("--prompt-template", choices=TEMPLATES, default="auto",
                   help="chat format (default: auto)")
    p.add_argument("--system-prompt", default=None, metavar="TEXT", help="system message for the conversation")
    _common.add_model_options(p)
    _common.add_sampling_options(p, default_max_tokens=DEFAULT_MAX_TOKENS)
    out = p.add_argument_group("output")
    out.add_argument("-q", "--quiet", action="store_true", help="no banner")
    out.add_argument("-v", "--verbose", action="store_true",
                     help="after each answer, print on stderr how many prompt tokens were evaluated and the speed")
    _common.add_debug(p)
    p.set_defaults(func=chat)


class Conversation:
    """The history, the session its KV cache lives in, and the token ids the model has already seen.

    Each turn re-renders the whole conversation with the chat template, but only the text added since the last
    turn is tokenized: the earlier part keeps the exact ids the model saw (its own generated tokens included),
    so the session's KV cache covers all of it and only the new turn is evaluated. Re-tokenizing the history
    instead could split the model's earlier answers differently from how it generated them and force
    recomputing them.
    """

    def __init__(self, model, args: argparse.Namespace):
        self.model = model
        self.session = model.new_session()
        self.messages: list[dict[str, str]] = []
        self.mode = args.prompt_template
        self.system_prompt = args.system_prompt
        self.params = _common.sampling_params(args)
        self._seen_text: str | None = None    # the conversation text the model has processed so far...
        self._seen_ids: list[int] = []        # ...and its token ids

    def reset(self) -> None:
        self.messages.clear()
        self.session.reset()
        self._seen_text, self._seen_ids = None, []

    def prompt_ids(self):
        """(token ids, ChatPrompt) of the conversation so far, ending with the assistant cue."""
        prompt = self.model.render_chat(self.messages, mode=self.mode, system_prompt=self.system_prompt)
        tok = self.model.tokenizer
        seen = self._seen_text
        if seen is not None and prompt.text.startswith(seen):
            return self._seen_ids + tok.encode(prompt.text[len(seen):], add_bos=False), prompt
        # First turn (or a template that rewrites earlier turns); add_bos is False when the text carries BOS.
        return tok.encode(prompt.text, add_bos=prompt.add_bos), prompt

    def fitting_prompt_ids(self):
        """prompt_ids(), after dropping the oldest turns (a user message and its answer; the system prompt stays)
        while the conversation leaves less than ANSWER_ROOM of the context for the answer, with a notice."""
        n_ctx = self.model.n_ctx
        room = min(self.params.max_tokens, int(n_ctx * ANSWER_ROOM))
        ids, prompt = self.prompt_ids()
        dropped = 0
        while len(ids) + room > n_ctx and len(self.messages) > 2:
            del self.messages[:2]
            dropped += 1
            ids, prompt = self.prompt_ids()
        if dropped:
            print(f"[the conversation outgrew the context of {n_ctx} tokens: dropped the oldest "
                  f"{'turn' if dropped == 1 else f'{dropped} turns'}]", file=sys.stderr)
        return ids, prompt

    def answer(self, text: str, out=None, verbose: bool = False) -> str:
        """Stream the reply to `text` to `out`; keep both in the history. Ctrl-C ends the reply early."""
        from bitnet.errors import ContextOverflowError

        out = out or sys.stdout
        self.messages.append({"role": "user", "content": text})
        ids, prompt = self.fitting_prompt_ids()
        stream = self.model.stream(ids, session=self.session,
                                   params=self.params.with_stop(prompt.stops(self.params.stop)))
        try:
            interrupted = _common.write_stream(stream, out)
        except ContextOverflowError as e:
            self.messages.pop()
            print(f"error: {e}", file=sys.stderr)
            return ""
        # What was shown is what the model said: keep even a cut-short answer, so history matches the screen.
        self.messages.append({"role": "assistant", "content": stream.text})
        if self.model.detokenize(stream.tokens) == stream.text:
            self._seen_text, self._seen_ids = prompt.text + stream.text, ids + list(stream.tokens)
        else:   # tokens and shown text differ (a stop text was cut, or a partial character held back)
            self._seen_text, self._seen_ids = None, []
        out.write("\n[interrupted]\n" if interrupted else "\n")
        out.flush()
        if verbose:
            t = stream.timings
            print(f"[prompt: {t.prefill_tokens} new of {stream.prompt_tokens} tokens, "
                  f"{t.prefill_tokens_per_s:.1f} tok/s | answer: {len(stream.tokens)} tokens, "
                  f"{t.decode_tokens_per_s:.1f} tok/s]", file=sys.stderr)
        return stream.text


def _enable_line_editing() -> None:
    # readline gives arrow keys and in-session history to input() on a terminal; absent on some platforms.
    if sys.stdin.isatty():
        try:
            import readline  # noqa: F401
        except ImportError:
            pass


def chat(args: argparse.Namespace) -> int:
    model = _common.load_model(args, quiet=args.quiet)
    conv = Conversation(model, args)
    if not args.quiet:
        from bitnet.chat import detect_format

        fmt = args.prompt_template if args.prompt_template != "auto" else detect_format(model.chat_template)
        fmt = "bitnet" if fmt == "raw" else fmt   # a model without a template chats in the BitNet format
        print(f"bitnet chat: {model.path.name} ({model.arch}, {fmt} format, context {model.n_ctx} tokens). "
              f"{HELP}", file=sys.stderr)
    _enable_line_editing()
    while True:
        try:
            line = input(PROMPT)
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:
            print()
            continue
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            command = text.split()[0].lower()
            if command in ("/exit", "/quit", "/bye"):
                return 0
            if command in ("/reset", "/clear"):
                conv.reset()
                print("(conversation cleared)")
            elif command == "/help":
                print(HELP)
            else:
                print(f"unknown command {command}: {HELP}")
            continue
        conv.answer(line, verbose=args.verbose)
