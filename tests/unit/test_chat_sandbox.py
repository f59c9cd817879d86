"""Chat templates from model files are data: ones that loop, recurse or build gigabytes are cut off quickly
with a TokenizerError, while ordinary templates render as before."""
from __future__ import annotations

import pytest

from bitnet.chat import render_chat
from bitnet.errors import TokenizerError

MESSAGES = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"},
            {"role": "user", "content": "Bye"}]

HOSTILE = {
    "nested ranges": "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
    "nested ranges with output": "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}",
    "nested messages": "{% for a in messages %}" * 14 + "{% endfor %}" * 14,
    "nested message slices": "{% for a in messages[0:] %}" * 14 + "{% endfor %}" * 14,
    "repeat a string": "{{ 'x' * 10000000000 }}",
    "repeat a list": "{{ messages * 10000000000 }}",
    "huge power": "{{ 9 ** 9999999999 }}",
    "format width": "{{ '%2000000000d' % 1 }}",
    "star width": "{{ '%*d' % (2000000000, 1) }}",
    "method argument": "{{ 'x'.ljust(2000000000) }}",
    "filter argument": "{{ 'x'|center(2000000000) }}",
    "filter on a list": "{{ range(3)|batch(2000000000)|list }}",
    "recursive macro": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "doubly recursive macro": "{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}"
                              "{{ f(40) }}",
    "deeply nested expression": "{% for m in messages" + "+" * 250 + "x %}{% endfor %}",   # a fuzz find
    "many calls": "{% for i in range(999) %}{% for j in range(999) %}{{ 'x'.upper() }}{% endfor %}{% endfor %}",
    "doubling namespace": "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
                          "{% endfor %}{{ ns.s|length }}",
    "doubling concatenation": "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
                              "{% endfor %}{{ ns.s|length }}",
}


# Text Jinja's parser accepts but turns into Python that does not compile (found by tools/hardening/fuzz).
UNCOMPILABLE = [
    "{{ range(1e\u0805) }}",
    "] }}<|end_header_id|>\n\n{{ m[name:not'cont%et %l{ (message] }} s}{{ range(10) |list| join(',') }} set sjo| "
    "upper }}{{ range(10) | join(',') }} s}{{ range(10) |list| join(',') }} set ns = nfor m inenp'] | trim }}"
    "<|eot_i+|_header_i|end_headersagef %}",
]


@pytest.mark.parametrize("template", UNCOMPILABLE)
def test_a_template_jinja_cannot_compile_is_a_tokenizer_error(template):
    with pytest.raises(TokenizerError, match="chat template cannot be"):
        render_chat(MESSAGES, template, mode="jinja")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_template_is_cut_off_with_a_clear_error(name):
    # the sandbox's own budget stops it (its steps, sizes and MAX_SECONDS deadline); no wall clock asserted here
    with pytest.raises(TokenizerError, match=r"chat template (cut off|refused)"):
        render_chat(MESSAGES, HOSTILE[name], mode="jinja")


def test_ordinary_templates_still_render():
    template = ("{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
                "{{ m['role'] }}:{{ m['content']|trim|center(9) }};{% endfor %}{{ ns.n }}"
                "{% for i in range(3) %}{{ i * 2 }}{% endfor %}{{ '%05d' % 42 }}{{ messages[1:]|length }}"
                "{{ 'ab' * 2 }}{{ 2 ** 10 }}")
    text = render_chat(MESSAGES, template, mode="jinja").text
    assert text == "user:  Hello  ;assistant:    Hi   ;user:   Bye   ;3024000422abab1024"


def test_a_long_but_legitimate_conversation_renders():
    messages = [{"role": ("user", "assistant")[i % 2], "content": f"turn {i} " * 50} for i in range(2000)]
    template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endfor %}"
    assert render_chat(messages, template, mode="jinja").text.count("<user>") == 1000
