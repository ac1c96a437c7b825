"""Prompt styles (Alpaca, ChatML/SmolLM2, Llama 2, Llama 3, plain) looked up by name, and the expert-context block.

Pure Python on purpose: training code uses it without LangChain and the orchestrator without torch.
"""
from .context import (
    DEFAULT_CONTEXT_HEADER,
    build_visual_question,
    compose_prompt,
    format_expert_context,
    question_with_context,
    sanitize_expert_text,
)
from .errors import DuplicatePromptStyleError, PromptError, PromptFormatError, UnknownPromptStyleError
from .registry import get_style, list_styles, register_style
from .segmented import Piece, Prompt, fill_template
from .styles import (
    ALPACA_PROMPT_INPUT,
    ALPACA_PROMPT_NO_INPUT,
    CAPTION_INSTRUCTION,
    SMOLLM2_DEFAULT_SYSTEM,
    AlpacaStyle,
    Llama2Style,
    Message,
    PlainStyle,
    PromptStyle,
    TurnStyle,
)

__all__ = [
    "ALPACA_PROMPT_INPUT",
    "ALPACA_PROMPT_NO_INPUT",
    "CAPTION_INSTRUCTION",
    "DEFAULT_CONTEXT_HEADER",
    "SMOLLM2_DEFAULT_SYSTEM",
    "AlpacaStyle",
    "DuplicatePromptStyleError",
    "Llama2Style",
    "Message",
    "Piece",
    "PlainStyle",
    "Prompt",
    "PromptError",
    "PromptFormatError",
    "PromptStyle",
    "TurnStyle",
    "UnknownPromptStyleError",
    "build_visual_question",
    "compose_prompt",
    "fill_template",
    "format_expert_context",
    "get_style",
    "list_styles",
    "question_with_context",
    "register_style",
    "sanitize_expert_text",
]
