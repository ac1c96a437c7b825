"""The public surface of `prompts`, and that importing it stays free of torch and LangChain."""
from __future__ import annotations

import subprocess
import sys

import prompts

EXPECTED_ALL = {
    "PromptStyle", "Message", "get_style", "list_styles", "register_style", "format_expert_context",
    "compose_prompt", "CAPTION_INSTRUCTION", "UnknownPromptStyleError", "ALPACA_PROMPT_INPUT",
    "ALPACA_PROMPT_NO_INPUT",
}


def test_public_names():
    assert EXPECTED_ALL <= set(prompts.__all__)
    for name in prompts.__all__:
        assert hasattr(prompts, name), name


def test_import_is_pure_python():
    code = ("import sys, prompts; heavy = [m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'numpy', 'langchain', 'langchain_core', 'transformers', 'jinja2')]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
