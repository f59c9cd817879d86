"""Chat prompts: built-in formats render exactly, templates are detected, Jinja runs sandboxed."""
from __future__ import annotations

import pytest
from conftest import testdata_path as data_path

from bitnet.chat import ChatPrompt, detect_format, render_chat, validate_messages
from bitnet.errors import TokenizerError

BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
CONVERSATION = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": " Hi "},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Bye"},
]
# The template the reference converter writes into 2B4T-lineage GGUFs (docs/formats.md §9): detected, never rendered.
CONVERTER_TEMPLATE = ("{% for message in messages %}{% if loop.first %}{{ bos_token }}{% endif %}"
                      "{% if message['role'] == 'user' %}{{ 'Human: ' + message['content'] + '\\n\\nBITNETAssistant: '"
                      " + eos_token }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
                      "{% endif %}{% endfor %}")
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
LLAMA3_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
                   "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}")
# Roles capitalised, content stripped, <|eot_id|> after each: the layout of the 2B4T tokenizer_config template.
HF_BITNET_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{{ message['role'] | capitalize }}: "
                      "{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
                      "{% if add_generation_prompt %}Assistant: {% endif %}")


def render(messages: object, template: str | None = None, **kw: object) -> ChatPrompt:
    return render_chat(messages, template, bos_token=BOS, eos_token=EOS, **kw)


def test_bitnet_format_is_the_reference_builtin() -> None:
    prompt = render(CONVERSATION, mode="bitnet")
    assert prompt.text == (f"{BOS}System: You are helpful.User:  Hi <|eot_id|>Assistant: Hello!"
                           "User: Bye<|eot_id|>Assistant: ")
    assert prompt.stop_texts == ["<|eot_id|>"]
    assert prompt.format == "bitnet"
    assert prompt.add_bos is False      # BOS is already the first thing in the text


def test_bitnet_template_is_detected_not_rendered() -> None:
    assert detect_format(CONVERTER_TEMPLATE) == "bitnet"
    prompt = render([{"role": "user", "content": "Hello"}], CONVERTER_TEMPLATE)
    assert prompt.text == f"{BOS}User: Hello<|eot_id|>Assistant: "
    assert "Human:" not in prompt.text and "BITNET" not in prompt.text


def test_template_in_the_reference_gguf_selects_the_bitnet_format() -> None:
    from bitnet.gguf import GGUFReader

    with GGUFReader(data_path("tinyA", "tinyA-i2s.gguf")) as reader:
        template = reader.metadata["tokenizer.chat_template"]
    assert detect_format(template) == "bitnet"


def test_bitnet_without_generation_prompt_ends_after_the_user_turn() -> None:
    prompt = render([{"role": "user", "content": "Q"}], mode="bitnet", add_generation_prompt=False)
    assert prompt.text == f"{BOS}User: Q<|eot_id|>"


def test_llama3_format_and_detection() -> None:
    expected = (f"{BOS}<|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert detect_format(LLAMA3_TEMPLATE) == "llama3-chat"
    auto = render(CONVERSATION, LLAMA3_TEMPLATE)
    assert (auto.text, auto.format, auto.stop_texts) == (expected, "llama3-chat", ["<|eot_id|>"])
    assert render(CONVERSATION, mode="llama3-chat").text == expected
    no_prompt = render(CONVERSATION, mode="llama3-chat", add_generation_prompt=False)
    assert no_prompt.text == expected.removesuffix("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_other_templates_render_with_jinja() -> None:
    prompt = render(CONVERSATION[1:], CHATML)
    assert prompt.format == "jinja"
    assert prompt.text == ("<|im_start|>user\n Hi <|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
                           "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n")
    assert prompt.stop_texts == ["<|im_end|>", EOS]
    assert prompt.add_bos is None       # the template adds no BOS: the tokenizer decides
    hf = render([{"role": "user", "content": "  Hey  "}], HF_BITNET_TEMPLATE)
    assert hf.text == f"{BOS}User: Hey<|eot_id|>Assistant: "
    assert hf.add_bos is False


def test_jinja_uses_transformers_whitespace_rules_and_helpers() -> None:
    template = ("{% for m in messages %}\n    {%- if m.role == 'user' %}\n[{{ m.content }}]\n    {% endif %}\n"
                "{% endfor %}{{ {'a': 'é'} | tojson }}")
    assert render([{"role": "user", "content": "x"}], template, mode="jinja").text == '[x]\n{"a": "é"}'
    with pytest.raises(TokenizerError, match="only users"):
        render(CONVERSATION, "{{ raise_exception('only users') }}")


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ messages.__class__.__init__.__globals__ }}",
    "{% set _ = messages.append({'role': 'user', 'content': 'x'}) %}done",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
])
def test_jinja_sandbox_refuses_attribute_abuse(template: str) -> None:
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(TokenizerError, match="refused by the sandbox"):
        render(messages, template, mode="jinja")
    assert messages == [{"role": "user", "content": "hi"}]


def test_broken_templates_raise_tokenizer_error() -> None:
    with pytest.raises(TokenizerError, match="cannot be rendered"):
        render(CONVERSATION, "{% for m in messages %}", mode="jinja")
    with pytest.raises(TokenizerError, match="failed while rendering"):
        render(CONVERSATION, "{{ 1 // 0 }}", mode="jinja")
    with pytest.raises(TokenizerError, match="needs a chat template"):
        render(CONVERSATION, None, mode="jinja")


def test_raw_and_instruct_modes() -> None:
    raw = render(CONVERSATION, mode="raw")
    assert (raw.text, raw.stop_texts, raw.add_bos) == ("Bye", [], None)
    instruct = render(CONVERSATION, mode="instruct")
    assert instruct.text == "You are helpful.\n\nQuestion:  Hi \nAnswer: Hello!\n\nQuestion: Bye\nAnswer:"
    assert instruct.stop_texts == ["\nQuestion:"]
    assert render("What is 2+2?", mode="instruct").text == "Question: What is 2+2?\nAnswer:"


def test_auto_without_template() -> None:
    assert render("Once upon a time").text == "Once upon a time"
    assert render([{"role": "user", "content": "Tell me"}]).format == "raw"
    assert render(CONVERSATION).format == "instruct"      # history is kept when there is more than one turn


def test_system_prompt_is_a_default_not_an_override() -> None:
    user = [{"role": "user", "content": "Hi"}]
    assert render(user, mode="bitnet", system_prompt="Be brief.").text == \
        f"{BOS}System: Be brief.User: Hi<|eot_id|>Assistant: "
    assert render(CONVERSATION, mode="bitnet", system_prompt="ignored").text.startswith(
        f"{BOS}System: You are helpful.User:")


def test_content_may_be_a_list_of_text_parts() -> None:
    msgs = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert validate_messages(msgs) == [{"role": "user", "content": "ab"}]


@pytest.mark.parametrize(("messages", "message"), [
    ("not a list", None),
    ([], "empty"),
    ([{"role": "robot", "content": "x"}], "role 'robot'"),
    ([{"role": "user"}], "no 'content'"),
    ([{"role": "user", "content": 3}], r"content must be a string"),
    ([{"role": "user", "content": [{"type": "image_url"}]}], "not {'type': 'text'"),
    (["hello"], r"messages\[0\] must be a dict"),
])
def test_invalid_messages_are_rejected_clearly(messages: object, message: str | None) -> None:
    if message is None:   # a bare string is a prompt for render_chat, but not a message list
        with pytest.raises(TokenizerError, match="list of"):
            validate_messages(messages)
        return
    with pytest.raises(TokenizerError, match=message):
        render(messages, mode="bitnet")


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(TokenizerError, match="unknown chat mode 'chatml'"):
        render(CONVERSATION, mode="chatml")


def test_rendered_prompt_encodes_with_a_single_bos() -> None:
    from bitnet.tokenizer import load_tokenizer

    tok = load_tokenizer(data_path("tinyA", "tinyA-i2s.gguf"))
    from bitnet.gguf import GGUFReader

    with GGUFReader(data_path("tinyA", "tinyA-i2s.gguf")) as reader:
        template = reader.metadata["tokenizer.chat_template"]
    prompt = render_chat([{"role": "user", "content": "Hi"}], template, bos_token=tok.token_text(tok.bos_id),
                         eos_token=tok.token_text(tok.eos_id))
    ids = tok.encode(prompt.text, add_bos=prompt.add_bos)
    assert ids[0] == tok.bos_id and ids.count(tok.bos_id) == 1
    assert 1026 in ids                                     # <|eot_id|> parsed as the special token
    assert tok.decode(ids) == prompt.text
