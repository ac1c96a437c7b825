"""Prompt styles looked up by name, so configs and the CLI can say ``style: smollm2``."""
from __future__ import annotations

from .errors import DuplicatePromptStyleError, PromptFormatError, UnknownPromptStyleError
from .styles import BUILTIN_STYLES, PromptStyle

_REGISTRY: dict[str, PromptStyle] = {}


def _key(name: str) -> str:
    return name.strip().lower()


def register_style(style: PromptStyle, *, replace: bool = False) -> PromptStyle:
    """Make ``style`` available to :func:`get_style` under ``style.name`` (case-insensitive).

    Refuses to shadow an existing name unless ``replace=True``, so a typo cannot silently change a preset.
    Returns the style, so it can be used inline.
    """
    if not isinstance(style, PromptStyle):
        raise PromptFormatError(f"register_style expects a PromptStyle instance, got {type(style).__name__}")
    key = _key(style.name)
    if not key:
        raise PromptFormatError("a prompt style needs a non-empty name")
    if key in _REGISTRY and not replace:
        raise DuplicatePromptStyleError(f"a prompt style named {key!r} is already registered; "
                                        "choose another name or pass replace=True")
    _REGISTRY[key] = style
    return style


def get_style(name: str | PromptStyle) -> PromptStyle:
    """The registered style called ``name``; a ``PromptStyle`` passes through, so APIs can take either."""
    if isinstance(name, PromptStyle):
        return name
    try:
        return _REGISTRY[_key(name)]
    except (KeyError, AttributeError):
        raise UnknownPromptStyleError(str(name), _REGISTRY) from None


def list_styles() -> list[str]:
    """Registered style names, sorted."""
    return sorted(_REGISTRY)


for _style in BUILTIN_STYLES:
    register_style(_style)
