"""Chat templates are untrusted input: they render like transformers renders them, inside the sandbox.

Real templates use ``{% break %}`` (loopcontrols) and ``tojson`` options; malicious ones try to reach
Python internals (RELIABILITY.md B7). Both kinds are checked here against the real renderer.
"""

from __future__ import annotations

import pytest
from transformers.utils.chat_template_utils import render_jinja_template

from llmos.errors import InvalidRequest
from llmos.runtime.chat_template import MAX_RENDERED_CHARS, render_chat_template

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": 'Hi "there" <b>'}]


def test_chatml_renders_as_transformers_renders_it() -> None:
    ours = render_chat_template(CHATML, MESSAGES)
    theirs, _ = render_jinja_template([MESSAGES], chat_template=CHATML, add_generation_prompt=True)
    assert ours == theirs[0]
    assert ours.endswith("<|im_start|>assistant\n") and '"there" <b>' in ours  # no HTML escaping


def test_loopcontrols_and_tojson_options_work() -> None:
    source = (
        "{% for m in messages %}{% if m.role == 'user' %}{% break %}{% endif %}{{ m.content }}{% endfor %}"
        "|{{ tools | tojson(indent=2, separators=(',', ': '), sort_keys=True) }}"
    )
    tools = [{"b": 1, "a": "ü"}]
    text = render_chat_template(source, MESSAGES, tools=tools)
    assert text == 'Be brief.|[\n  {\n    "a": "ü",\n    "b": 1\n  }\n]'


def test_raise_exception_in_a_template_is_a_clear_rejection() -> None:
    source = (
        "{% if messages[0].role != 'user' %}"
        "{{ raise_exception('Conversation roles must alternate') }}{% endif %}"
    )
    with pytest.raises(InvalidRequest, match="rejected the messages: Conversation roles must alternate"):
        render_chat_template(source, MESSAGES)


@pytest.mark.parametrize(
    "escape",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ lipsum.__globals__.os.popen('id').read() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{% set ns = namespace() %}{% set ns._x = 1 %}{{ ns._x }}",
        "{{ messages.append({'role': 'x'}) }}",  # immutable: passed objects cannot be changed
    ],
)
def test_sandbox_escapes_are_refused(escape: str) -> None:
    with pytest.raises(InvalidRequest, match="failed to render"):
        render_chat_template(escape, MESSAGES)
    assert len(MESSAGES) == 2


def test_a_template_that_expands_past_the_cap_is_refused() -> None:
    repeats = MAX_RENDERED_CHARS // 1000 + 10
    source = "{% for i in range(" + str(repeats) + ") %}" + "x" * 1000 + "{% endfor %}"
    with pytest.raises(InvalidRequest, match="too large"):
        render_chat_template(source, MESSAGES)
