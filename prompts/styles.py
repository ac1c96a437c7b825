"""Prompt styles: how a conversation becomes the exact text a model was trained on.

Every style renders through one method, :meth:`PromptStyle.render_segments`, which returns the text as consecutive
``(text, is_response)`` pieces. :meth:`~PromptStyle.format_chat` joins them and
:meth:`~PromptStyle.split_for_training` merges them, so the training split and the inference prompt can never
drift apart: a *response* segment is exactly what the model must generate after the generation prompt, up to and
including the style's end marker.

No style renders the tokenizer's BOS: tokenizers add it themselves and a textual ``<s>`` would be doubled.

Rendered text is a :class:`~prompts.segmented.Prompt`: a ``str`` that also knows which pieces the template wrote
and which came from messages, so a tokenizer can refuse control tokens inside content (``core_model``'s
``Tokenizer.encode_prompt``). Message content is handed to :meth:`PromptStyle.render_segments` already marked as
content; a custom style that builds its text with ``+`` keeps the marks.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Union

from .errors import PromptFormatError
from .segmented import Piece, Prompt, content, fill_template

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")
Segment = tuple[str, bool]

# The official LLaMA-Adapter release templates, verbatim (LLaMA-Adapter V2 multimodal7b `format_prompt`).
ALPACA_PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)
CAPTION_INSTRUCTION = "Generate caption of this image"
"""The instruction the official release pairs with images for captioning."""

SMOLLM2_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
"""What SmolLM2-Instruct's chat template inserts when the first message is not a system message."""


@dataclass(frozen=True, slots=True)
class Message:
    """One chat turn. ``role`` is "system", "user" or "assistant"."""

    role: Role
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise PromptFormatError(f"message role must be one of {ROLES}, got {self.role!r}")
        if not isinstance(self.content, str):
            raise PromptFormatError(f"message content must be a str, got {type(self.content).__name__}; "
                                    "convert images/tool calls to text before formatting")


MessageLike = Union[Message, Mapping[str, str]]


def as_messages(messages: Sequence[MessageLike]) -> list[Message]:
    """Accept ``Message`` objects or ``{"role": ..., "content": ...}`` dicts (the OpenAI/HF shape)."""
    out = []
    for m in messages:
        if isinstance(m, Message):
            out.append(m)
        elif isinstance(m, Mapping) and "role" in m and "content" in m:
            out.append(Message(m["role"], m["content"]))
        else:
            raise PromptFormatError(f"expected a Message or a mapping with 'role' and 'content', got {m!r}")
    return out


@dataclass(frozen=True, kw_only=True)
class PromptStyle:
    """A named prompt format. Subclasses implement :meth:`render_segments`; everything else derives from it.

    ``stop``: strings a generator should cut the output at. ``default_system``: system prompt used when the
    conversation has none (None = no system block). ``append_eos``: the template has no textual end marker, so
    training must append the tokenizer's EOS id after each response segment. ``context_slot``: where
    :func:`prompts.compose_prompt` puts expert context — ``"input"`` (a separate input field, Alpaca) or
    ``"user"`` (inside the user turn, before the question).
    """

    name: str
    stop: tuple[str, ...] = ()
    default_system: str | None = None
    append_eos: bool = False
    context_slot: Literal["user", "input"] = "user"

    def render_segments(self, messages: list[Message], add_generation_prompt: bool) -> list[Segment]:
        """The rendered conversation as ``(text, is_response)`` pieces; joined they are the prompt."""
        raise NotImplementedError(f"{type(self).__name__} must implement render_segments(messages, "
                                  "add_generation_prompt) to be usable as a prompt style")

    def render(self, messages: Sequence[MessageLike], add_generation_prompt: bool) -> list[tuple[Prompt, bool]]:
        """:meth:`render_segments` with every message's content marked as content and every segment a
        :class:`Prompt` (what :meth:`format_chat` and :meth:`split_for_training` are built on)."""
        given = as_messages(messages)
        marked = [Message(m.role, content(m.content)) for m in given]
        segments = self.render_segments(marked, add_generation_prompt)
        if any(not isinstance(text, Prompt) for text, _ in segments):
            # a custom style built plain strings: find the messages' content in them again
            segments = _recover_content(segments, [m.content for m in given])
        return [(text if isinstance(text, Prompt) else Prompt.template(text), flag) for text, flag in segments]

    def format_chat(self, messages: Sequence[MessageLike], add_generation_prompt: bool = True) -> Prompt:
        """Render a multi-turn conversation; with ``add_generation_prompt`` it ends where the reply starts."""
        return Prompt(text for text, _ in self.render(messages, add_generation_prompt))

    def split_for_training(self, messages: Sequence[MessageLike]) -> list[tuple[Prompt, bool]]:
        """``format_chat(messages, add_generation_prompt=False)`` cut into prompt and response segments.

        Flag True marks response text (assistant content + end marker) the loss is computed on. Non-response
        neighbours are merged and empty ones dropped; each response segment is exactly one assistant turn (kept
        even when empty), so with ``append_eos`` training appends one EOS per response segment. For exact token
        boundaries tokenise the joined text once and map the segments by character offsets: tokenising
        segments separately can merge differently at the seams with BPE/sentencepiece.
        """
        merged: list[tuple[Prompt, bool]] = []
        for text, is_response in self.render(messages, add_generation_prompt=False):
            if is_response:
                merged.append((text, True))
            elif text and merged and not merged[-1][1]:
                merged[-1] = (merged[-1][0] + text, False)
            elif text:
                merged.append((text, False))
        return merged

    def format(self, instruction: str, input: str | None = None, *, system: str | None = None,
               history: Sequence[MessageLike] | None = None) -> Prompt:
        """Single-turn prompt (optionally after earlier ``history`` turns), ready for generation.

        Chat styles put ``input`` after the instruction in the user turn, separated by a blank line (the usual
        way Alpaca-shaped data is rendered in chat templates); ``system=None`` means the style's default.
        """
        text = instruction if _is_blank(input) else content(instruction) + "\n\n" + content(input)
        return self.format_chat(_conversation(system, history, text), add_generation_prompt=True)


@dataclass(frozen=True, kw_only=True)
class TurnStyle(PromptStyle):
    """Styles where every turn is ``header(role) + content + end + separator`` (ChatML, Llama 3, Zephyr ...).

    ``header`` contains ``{role}``; the generation prompt is the assistant header. The default system message is
    added when the first message is not a system message, like SmolLM2's jinja template.
    """

    header: str = ""
    end: str = ""
    separator: str = ""
    strip_content: bool = False

    def render_segments(self, messages: list[Message], add_generation_prompt: bool) -> list[Segment]:
        if messages and messages[0].role != "system" and self.default_system is not None:
            messages = [Message("system", self.default_system), *messages]
        segments: list[Segment] = []
        for m in messages:
            body = content(m.content)
            if self.strip_content:
                body = body.strip()
            if m.role == "assistant":
                segments += [(self._header("assistant"), False), (body + self.end, True),
                             (Prompt.template(self.separator), False)]
            else:
                segments.append((self._header(m.role) + body + self.end + self.separator, False))
        if add_generation_prompt:
            segments.append((self._header("assistant"), False))
        return segments

    def _header(self, role: str) -> Prompt:
        return Prompt.template(self.header.replace("{role}", role))  # not str.format: headers may hold braces


@dataclass(frozen=True, kw_only=True)
class Llama2Style(PromptStyle):
    """Llama-2-chat, as Meta's reference ``chat_completion`` and the HF template render it (minus the first BOS).

    ``[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user} [/INST] {assistant} </s><s>[INST] {user} [/INST]``.
    Meta inserts EOS/BOS *token ids* between turns; here they are the literal text ``" </s><s>"``, which HF
    tokenizers map to the special tokens but a raw sentencepiece ``encode`` treats as ordinary characters —
    tokenise with special-token parsing, or split on ``</s><s>`` and insert the ids yourself.
    Roles must alternate user/assistant after an optional leading system message.
    """

    def render_segments(self, messages: list[Message], add_generation_prompt: bool) -> list[Segment]:
        system, turns = _leading_system(messages, self)
        system = self.default_system if system is None else system
        if not turns:
            raise PromptFormatError("style 'llama2' needs at least one user message")
        segments: list[Segment] = []
        for i, m in enumerate(turns):
            expected = "user" if i % 2 == 0 else "assistant"
            if m.role != expected:
                raise PromptFormatError(f"style 'llama2' needs turns alternating user/assistant; message {i} "
                                        f"after the system prompt is {m.role!r}, expected {expected!r}")
            if m.role == "user":
                body = content(m.content)
                if i == 0 and system is not None:
                    body = Prompt.template("<<SYS>>\n") + content(system) + "\n<</SYS>>\n\n" + body
                segments.append((Prompt.template(f"{'' if i == 0 else '<s>'}[INST] ") + body.strip() + " [/INST]",
                                 False))
            else:
                segments.append((Prompt.template(" ") + content(m.content).strip() + " </s>", True))
        if add_generation_prompt and turns[-1].role == "assistant":
            raise PromptFormatError("style 'llama2' can only prompt for a reply after a user message; "
                                    "end the conversation with a user turn or pass add_generation_prompt=False")
        return segments


@dataclass(frozen=True, kw_only=True)
class AlpacaStyle(PromptStyle):
    """The LLaMA-Adapter / Alpaca template; the official release's weights expect it verbatim.

    Blank or missing input uses the no-input template (the release wrongly chose the with-input one for "").
    Multi-turn: the last user message is the instruction, earlier turns are folded into ``### Input:`` as a
    transcript ("Conversation so far:" then "User: ..." / "Assistant: ..." lines, after any explicit input), and
    only the final assistant reply is a response segment. A system prompt is put before the preamble, separated by
    a blank line, so the trained template itself stays byte-identical.
    """

    context_slot: Literal["user", "input"] = "input"

    def format(self, instruction: str, input: str | None = None, *, system: str | None = None,
               history: Sequence[MessageLike] | None = None) -> Prompt:
        messages = _conversation(system, history, instruction)
        history_system, turns = _leading_system(messages, self)
        return self._prompt(turns[-1].content, input, history_system, turns[:-1])

    def render_segments(self, messages: list[Message], add_generation_prompt: bool) -> list[Segment]:
        system, turns = _leading_system(messages, self)
        last_user = max((i for i, m in enumerate(turns) if m.role == "user"), default=None)
        if last_user is None:
            raise PromptFormatError("style 'alpaca' needs at least one user message (it becomes the instruction)")
        reply = turns[last_user + 1:]
        if len(reply) > 1 or (reply and add_generation_prompt):
            raise PromptFormatError("style 'alpaca' renders one exchange: after the last user message allow at "
                                    "most one assistant message, and none when add_generation_prompt=True")
        prompt = self._prompt(turns[last_user].content, None, system, turns[:last_user])
        return [(prompt, False)] + [(content(m.content), True) for m in reply]

    def _prompt(self, instruction: str, input: str | None, system: str | None, history: list[Message]) -> Prompt:
        system = self.default_system if system is None else system
        parts = [content(p) for p in (input, _transcript(history)) if not _is_blank(p)]
        if parts:
            text = fill_template(ALPACA_PROMPT_INPUT, instruction=instruction,
                                 input=Prompt.template("\n\n").join(parts))
        else:
            text = fill_template(ALPACA_PROMPT_NO_INPUT, instruction=instruction)
        return text if _is_blank(system) else content(system) + "\n\n" + text


@dataclass(frozen=True, kw_only=True)
class PlainStyle(PromptStyle):
    """No template: messages joined by blank lines (``instruction\\n\\ninput`` for single turns).

    There is no generation prompt, so the blank line before a reply belongs to the response segment (the model
    must produce it); for base models, captioning probes and debugging.
    """

    def render_segments(self, messages: list[Message], add_generation_prompt: bool) -> list[Segment]:
        system, turns = _leading_system(messages, self)
        system = self.default_system if system is None else system
        if system is not None:
            turns = [Message("system", system), *turns]
        return [(Prompt.template("\n\n" if i else "") + content(m.content), m.role == "assistant")
                for i, m in enumerate(turns)]


def _is_blank(text: str | None) -> bool:
    return text is None or not text.strip()


def _conversation(system: str | None, history: Sequence[MessageLike] | None, user_content: str) -> list[Message]:
    """``[system?] + history + [user]``, refusing a system prompt given twice."""
    turns = as_messages(history or ())
    if system is not None:
        if turns and turns[0].role == "system":
            raise PromptFormatError("a system prompt was given both as system= and as the first history message; "
                                    "pass only one")
        turns = [Message("system", system), *turns]
    return [*turns, Message("user", user_content)]


def _leading_system(messages: list[Message], style: PromptStyle) -> tuple[str | None, list[Message]]:
    """Split off a leading system message; styles without a system slot mid-conversation reject later ones."""
    system, turns = None, messages
    if messages and messages[0].role == "system":
        system, turns = messages[0].content, messages[1:]
    if any(m.role == "system" for m in turns):
        raise PromptFormatError(f"style {style.name!r} accepts a system message only as the first message")
    return system, turns


def _transcript(history: list[Message]) -> Prompt:
    if not history:
        return Prompt()
    lines = [Prompt.template(f"{'User' if m.role == 'user' else 'Assistant'}: ") + content(m.content)
             for m in history]
    return Prompt.template("Conversation so far:\n") + Prompt.template("\n").join(lines)


def _recover_content(segments: Sequence[tuple[str, bool]], contents: Sequence[str]) -> list[tuple[Prompt, bool]]:
    """Mark message content inside plain-string segments of a custom style (which lost the marks by formatting
    strings): each message's text — or its stripped form — is looked up in order after the previous one."""
    full = "".join(text for text, _ in segments)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for text in contents:
        for variant in (text, text.strip()):
            found = full.find(variant, cursor) if variant else -1
            if found >= 0:
                spans.append((found, found + len(variant)))
                cursor = found + len(variant)
                break
    out: list[tuple[Prompt, bool]] = []
    start = 0
    for text, flag in segments:
        end = start + len(text)
        if isinstance(text, Prompt):
            out.append((text, flag))
        else:
            pieces, pos = [], start
            for a, b in spans:
                a, b = max(a, start), min(b, end)
                if a >= b:
                    continue
                pieces += [Piece(full[pos:a], True), Piece(full[a:b], False)]
                pos = b
            pieces.append(Piece(full[pos:end], True))
            out.append((Prompt(pieces), flag))
        start = end
    return out


ALPACA = AlpacaStyle(name="alpaca", stop=("### Instruction:", "### Input:", "### Response:"), append_eos=True)
CHATML = TurnStyle(name="chatml", header="<|im_start|>{role}\n", end="<|im_end|>", separator="\n",
                   stop=("<|im_end|>", "<|im_start|>"))
SMOLLM2 = TurnStyle(name="smollm2", header="<|im_start|>{role}\n", end="<|im_end|>", separator="\n",
                    stop=("<|im_end|>", "<|im_start|>"), default_system=SMOLLM2_DEFAULT_SYSTEM)
# "</s>" besides the brief's "[INST]": a model tuned on the textual separators may emit it as text.
LLAMA2 = Llama2Style(name="llama2", stop=("</s>", "[INST]"))
LLAMA3 = TurnStyle(name="llama3", header="<|start_header_id|>{role}<|end_header_id|>\n\n", end="<|eot_id|>",
                   strip_content=True, stop=("<|eot_id|>", "<|end_of_text|>"))
PLAIN = PlainStyle(name="plain", append_eos=True)

BUILTIN_STYLES: tuple[PromptStyle, ...] = (ALPACA, CHATML, SMOLLM2, LLAMA2, LLAMA3, PLAIN)
