"""Typed exceptions of the prompts package. Every message says what to do next.

``prompts`` must stay importable without torch, so it cannot share ``core_model.errors.LAV2Error``;
:class:`PromptError` is this package's root instead.
"""
from __future__ import annotations

from collections.abc import Iterable


class PromptError(Exception):
    """Base class of every error the prompts package raises on purpose."""


class PromptFormatError(PromptError, ValueError):
    """A conversation or argument cannot be rendered by the chosen style (message says why and how to fix)."""


class UnknownPromptStyleError(PromptError, KeyError):
    """No prompt style is registered under the requested name.

    A ``KeyError`` so ``except KeyError`` around registry lookups keeps working; ``str()`` gives the readable
    message (plain ``KeyError`` would show its repr).
    """

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = tuple(sorted(known))
        self.message = (f"unknown prompt style {name!r}; known styles: {', '.join(self.known) or '(none)'}. "
                        "Pick one of these or add yours with prompts.register_style(...).")
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class DuplicatePromptStyleError(PromptError, ValueError):
    """A style with this name is already registered and ``replace=True`` was not given."""
