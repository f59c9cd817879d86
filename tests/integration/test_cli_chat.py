"""`bitnet chat` driven through a pseudo-terminal (pexpect), as a person at a terminal would use it."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from conftest import child_env

pexpect = pytest.importorskip("pexpect")

ROOT = Path(__file__).resolve().parents[2]
STATS = re.compile(r"\[prompt: (\d+) new of (\d+) tokens")


def spawn_chat(model_path: Path, *args: str):
    env = child_env()
    env.update({"PYTHONPATH": str(ROOT), "TERM": "dumb"})   # dumb: readline emits no escape sequences
    return pexpect.spawn(sys.executable, ["-m", "bitnet", "chat", "-m", str(model_path), "-t", "1", "--greedy",
                                          *args], env=env, cwd=str(ROOT), encoding="utf-8", timeout=60,
                         dimensions=(50, 400))


def reply_of(child, question: str) -> tuple[str, int, int]:
    """Ask `question`; return the answer as printed and the prompt stats line's (new, total) token counts."""
    child.expect_exact("> ")
    child.sendline(question)
    child.expect(STATS)
    shown = child.before.replace("\r\n", "\n")
    shown = shown.split(question + "\n", 1)[1]   # drop the terminal's echo of what was typed
    return shown, int(child.match.group(1)), int(child.match.group(2))


@pytest.fixture(scope="module")
def model(small_model_path):
    import bitnet

    m = bitnet.load(small_model_path, n_threads=1)
    yield m
    m.close()


def test_chat_keeps_history_reuses_the_cache_and_resets(model, small_model_path):
    child = spawn_chat(small_model_path, "-n", "12", "--verbose")
    tok = model.tokenizer
    try:
        history = [{"role": "user", "content": "Hello there"}]
        prompt1 = model.render_chat(history)
        ids1 = tok.encode(prompt1.text, add_bos=prompt1.add_bos)
        first = model.generate(ids1, max_tokens=12, temperature=0, stop=prompt1.stop_texts,
                               session=model.new_session())
        shown, new, total = reply_of(child, "Hello there")
        assert shown.startswith(first.text + "\n"), (shown, first.text)
        assert new == total == len(ids1)   # the first turn evaluates the whole prompt

        # The second turn: the model sees its own first answer as the tokens it generated, then the new turn.
        history += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "And then?"}]
        prompt2 = model.render_chat(history)
        assert prompt2.text.startswith(prompt1.text + first.text)
        new_ids = tok.encode(prompt2.text[len(prompt1.text + first.text):], add_bos=False)
        second = model.generate(ids1 + first.tokens + new_ids, max_tokens=12, temperature=0,
                                stop=prompt2.stop_texts, session=model.new_session())
        shown, new, total = reply_of(child, "And then?")
        assert shown.startswith(second.text + "\n"), (shown, second.text)
        # Only the new turn was evaluated (+1: the last cached token is re-run for its logits when the cache
        # ends exactly at the new part): the history stayed in the KV cache.
        assert total == len(ids1) + len(first.tokens) + len(new_ids)
        assert new <= len(new_ids) + 1 < total, (new, len(new_ids), total)

        child.expect_exact("> ")
        child.sendline("/reset")
        child.expect_exact("(conversation cleared)")
        shown, new, total = reply_of(child, "Hello there")
        assert shown.startswith(first.text + "\n") and new == total   # a fresh conversation again

        child.expect_exact("> ")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_ctrl_c_stops_the_answer_not_the_repl():
    from conftest import testdata_path

    # tinyA answers this greedily with thousands of tokens (no end-of-turn): there is time to interrupt it.
    child = spawn_chat(testdata_path("tinyA", "tinyA-i2s.gguf"), "-n", "4000", "-c", "4096")
    try:
        child.expect_exact("> ")
        child.sendline("Tell me a story")
        child.expect_exact("Tell me a story\r\n")
        child.expect(r"\S{8}")          # the answer is streaming
        child.sendintr()
        child.expect_exact("[interrupted]")
        child.expect_exact("> ")        # still in the REPL
        child.sendintr()                # Ctrl-C at the prompt: a fresh line, not an exit
        child.expect_exact("> ")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_end_of_input_leaves_and_unknown_commands_are_explained(small_model_path):
    child = spawn_chat(small_model_path, "-q")
    try:
        child.expect_exact("> ")
        child.sendline("/frobnicate")
        child.expect_exact("unknown command /frobnicate")
        child.expect_exact("> ")
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_a_long_conversation_drops_its_oldest_turns_and_answers_every_one(model, small_model_path):
    """Eight long turns overflow the embedded model's context (256 tokens) several times over: each turn still
    gets an answer, and the oldest turns go with a notice."""
    fortune = ("A journey of a thousand miles begins with a single step, and the wise traveller knows that every "
               "road he walks was walked before by someone who also thought it was new. ")
    assert 8 * len(model.tokenize(fortune * 2)) > 2 * model.n_ctx
    child = spawn_chat(small_model_path, "-n", "24", "--verbose", "--system-prompt", "Answer briefly.")
    notices = 0
    try:
        for turn in range(8):
            shown, new, total = reply_of(child, f"Turn {turn}: {fortune * 2}")
            assert "error" not in shown and total <= model.n_ctx - 24, (turn, shown, total)
            notices += "dropped the oldest" in shown
        child.expect_exact("> ")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0 and notices >= 2


def test_dropping_turns_keeps_the_system_prompt_and_the_new_message(model):
    from bitnet.cli import build_parser
    from bitnet.cli.chat import Conversation

    args = build_parser().parse_args(["chat", "-n", "24", "--system-prompt", "Be terse, please."])
    conv = Conversation(model, args)
    for turn in range(6):
        conv.messages += [{"role": "user", "content": f"question {turn} " + "words " * 40},
                          {"role": "assistant", "content": "answer " * 30}]
    conv.messages.append({"role": "user", "content": "the newest question"})
    ids, prompt = conv.fitting_prompt_ids()
    assert len(ids) + 24 <= model.n_ctx and len(conv.messages) < 13 and len(conv.messages) % 2 == 1
    assert conv.messages[0]["role"] == "user" and "Be terse, please." in prompt.text
    assert "the newest question" in prompt.text and "question 0 " not in prompt.text
