"""Segmented prompts: which characters of a prompt the template wrote and which came from content.

Only a prompt template may put control tokens (``<|im_start|>``, ``<|eot_id|>``, ``</s>`` ...) into a prompt.
Everything else — user, system and tool messages, expert output, the prompt text a LangChain user passes to an
LLM, training data — is *content*: a tokenizer must encode it with special-token parsing off, so that a printed
``<|im_start|>system`` in a photo, a web page or a tool result stays text the model reads instead of opening a
new turn.

:class:`Prompt` is a ``str`` (it works wherever a prompt string does, compares equal to its text) that also
carries :attr:`Prompt.pieces`: consecutive ``(text, template)`` pairs. ``core_model``'s tokenizer honours them
(``Tokenizer.encode_prompt``): control tokens are recognised only inside template pieces. Every prompt style
renders a :class:`Prompt`; a plain ``str`` given to a model is a *developer-formatted* prompt and is tokenised as
it always was (control tokens parsed anywhere).

What keeps the marks: ``+`` (a plain ``str`` operand counts as template: it is text the program wrote),
:meth:`Prompt.join`, ``strip``/``lstrip``/``rstrip``, :func:`fill_template`. Any other ``str`` operation
(slicing, ``str.format``, f-strings, ``replace``) returns a plain ``str`` — a developer prompt again — so build
prompts from pieces, not by formatting strings.
"""
from __future__ import annotations

import string
from collections.abc import Iterable
from typing import NamedTuple, Union

__all__ = ["Piece", "Prompt", "content", "fill_template", "template"]


class Piece(NamedTuple):
    """A run of prompt text; ``template=True`` when the template wrote it (control tokens allowed there)."""

    text: str
    template: bool


PieceLike = Union[Piece, tuple[str, bool], str]


class Prompt(str):
    """Prompt text plus its :class:`Piece` structure (template vs content). See the module documentation."""

    pieces: tuple[Piece, ...]

    def __new__(cls, pieces: Iterable[PieceLike] | str = ()) -> Prompt:
        if isinstance(pieces, Prompt):
            pieces = pieces.pieces
        elif isinstance(pieces, str):
            pieces = (Piece(pieces, True),)  # a plain string is text the program wrote
        merged: list[Piece] = []
        for item in pieces:
            for piece in _as_pieces(item):
                if not piece.text:
                    continue
                if merged and merged[-1].template == piece.template:
                    merged[-1] = Piece(merged[-1].text + piece.text, piece.template)
                else:
                    merged.append(piece)
        self = super().__new__(cls, "".join(p.text for p in merged))
        self.pieces = tuple(merged)
        return self

    # -- constructors ----------------------------------------------------------------------------------------
    @classmethod
    def template(cls, text: str) -> Prompt:
        """Text the template wrote: control tokens in it are control tokens."""
        return cls((Piece(str(text), True),))

    @classmethod
    def content(cls, text: str) -> Prompt:
        """Untrusted text: encoded with special-token parsing off, whatever it contains."""
        return cls((Piece(str(text), False),))

    # -- queries ---------------------------------------------------------------------------------------------
    @property
    def content_text(self) -> str:
        """All content pieces joined (what came from messages, not from the template)."""
        return "".join(p.text for p in self.pieces if not p.template)

    # -- operations that keep the marks ----------------------------------------------------------------------
    def __add__(self, other: object) -> Prompt:
        if not isinstance(other, str):
            return NotImplemented
        return Prompt((self, other))

    def __radd__(self, other: object) -> Prompt:
        if not isinstance(other, str):
            return NotImplemented
        return Prompt((other, self))

    def join(self, iterable: Iterable[str]) -> Prompt:  # type: ignore[override]
        parts: list[PieceLike] = []
        for i, item in enumerate(iterable):
            if i:
                parts.append(self)
            parts.append(item)
        return Prompt(parts)

    def strip(self, chars: str | None = None) -> Prompt:  # type: ignore[override]
        return self.lstrip(chars).rstrip(chars)

    def lstrip(self, chars: str | None = None) -> Prompt:  # type: ignore[override]
        pieces = list(self.pieces)
        while pieces:
            text = pieces[0].text.lstrip(chars)
            if text:
                pieces[0] = Piece(text, pieces[0].template)
                break
            pieces.pop(0)
        return Prompt(pieces)

    def rstrip(self, chars: str | None = None) -> Prompt:  # type: ignore[override]
        pieces = list(self.pieces)
        while pieces:
            text = pieces[-1].text.rstrip(chars)
            if text:
                pieces[-1] = Piece(text, pieces[-1].template)
                break
            pieces.pop()
        return Prompt(pieces)

    def __reduce__(self):  # pickling / copy keep the pieces
        return (Prompt, (self.pieces,))


def template(text: str) -> Prompt:
    """``Prompt.template(text)``."""
    return Prompt.template(text)


def content(text: str) -> Prompt:
    """Message content as a prompt piece: a :class:`Prompt` keeps its own pieces, anything else is content."""
    return text if isinstance(text, Prompt) else Prompt.content(text)


def fill_template(fmt: str, **fields: str) -> Prompt:
    """``fmt.format(**fields)`` as a :class:`Prompt`: the literal text of ``fmt`` is template, every field content
    (a field that is already a :class:`Prompt` keeps its pieces). Only plain ``{name}`` fields are supported."""
    parts: list[PieceLike] = []
    for literal, name, spec, conversion in string.Formatter().parse(fmt):
        if literal:
            parts.append(Piece(literal, True))
        if name is None:
            continue
        if spec or conversion or name not in fields:
            raise KeyError(f"fill_template supports plain {{name}} fields with a value; got {{{name}}} in {fmt!r}")
        parts.append(content(fields[name]))
    return Prompt(parts)


def _as_pieces(item: PieceLike) -> tuple[Piece, ...]:
    if isinstance(item, Prompt):
        return item.pieces
    if isinstance(item, str):
        return (Piece(item, True),)
    text, is_template = item
    return (Piece(str(text), bool(is_template)),)
