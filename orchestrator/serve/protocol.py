"""The OpenAI wire format: request bodies (validated, with clear 400s for what this server does not do), messages
converted to LangChain messages for ``ChatLlamaAdapterV2``, and response / stream-chunk bodies."""
from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import BadRequest

MAX_STOP_STRINGS = 16


class _Body(BaseModel):
    # clients send fields this server has no use for (user, metadata, store, service_tier, ...): accepted, unused
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampling(_Body):
    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**64 - 1)  # what a torch generator takes
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = None
    logprobs: Any = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None

    def check_supported(self) -> None:
        """400 for options that would change the answer and that this server cannot honour (never ignored)."""
        if self.n not in (None, 1):
            raise BadRequest(f"n={self.n} is not supported: ask for one choice (n=1) and send several requests "
                             "instead; concurrent requests are batched together", param="n")
        if self.logprobs not in (None, False, 0) or self.top_logprobs:
            raise BadRequest("logprobs are not supported by this server", param="logprobs")
        if self.logit_bias:
            raise BadRequest("logit_bias is not supported by this server", param="logit_bias")
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name):
                raise BadRequest(f"{name} is not supported by this server (only 0)", param=name)
        if isinstance(self.stop, list) and len(self.stop) > MAX_STOP_STRINGS:
            raise BadRequest(f"at most {MAX_STOP_STRINGS} stop strings", param="stop")

    @property
    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_Sampling):
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None

    def check_supported(self) -> None:
        super().check_supported()
        kind = (self.response_format or {}).get("type", "text")
        if kind != "text":
            raise BadRequest(f"response_format {kind!r} is not supported by this server (only 'text'): ask for JSON "
                             "in the prompt, or pass tools with tool_choice to get structured arguments",
                             param="response_format")
        for i, tool in enumerate(self.tools or []):
            if tool.get("type", "function") != "function" or not isinstance(tool.get("function"), dict) \
                    or not tool["function"].get("name"):
                raise BadRequest('each tool must be {"type": "function", "function": {"name": ..., "parameters": '
                                 '{...}}}', param=f"tools[{i}]")
        if self.tool_choice is not None and not self.tools and self.tool_choice not in ("none", "auto"):
            raise BadRequest("tool_choice needs tools", param="tool_choice")

    @property
    def max_new_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    prompt: Any = None
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None
    max_tokens: int | None = Field(default=16, ge=1)  # the OpenAI default for this endpoint

    def check_supported(self) -> None:
        super().check_supported()
        if self.best_of not in (None, 1):
            raise BadRequest("best_of > 1 is not supported by this server", param="best_of")
        if self.suffix:
            raise BadRequest("suffix (insertion) is not supported by this server", param="suffix")
        prompts = self.prompts
        if not prompts or not all(isinstance(p, str) and p for p in prompts):
            raise BadRequest("prompt must be a non-empty string or a list of them (token-id prompts are not "
                             "supported)", param="prompt")

    @property
    def prompts(self) -> list[str]:
        if isinstance(self.prompt, str):
            return [self.prompt]
        return list(self.prompt) if isinstance(self.prompt, list) else []


class VQARequest(_Body):
    image: str | None = None
    question: str = Field(min_length=1)
    experts: str | list[str] | None = None
    history: list[dict[str, str]] | None = None
    answer_mode: Literal["auto", "extract", "generate"] | None = None
    stream: bool = False


def parse_body(model: type[BaseModel], data: Any) -> Any:
    """Validate a JSON body; a 400 that names the field at fault."""
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or None
        raise BadRequest(f"{where + ': ' if where else ''}{first.get('msg', 'invalid value')} "
                         f"({len(e.errors())} problem(s) in the request body)", param=where) from None


# ------------------------------------------------------------------------------------------------ messages
def _text_of(content: Any, where: str, allow_images: bool = False) -> tuple[str, list[str]]:
    """``(text, image sources)`` of a message's content: a string, or a list of ``text`` / ``image_url`` parts."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise BadRequest(f"{where}.content must be a string or a list of content parts", param=f"{where}.content")
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise BadRequest(f"{at} must be an object such as {{\"type\": \"text\", \"text\": ...}}", param=at)
        kind = part.get("type")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise BadRequest(f"{at}.text must be a string", param=at)
            texts.append(part["text"])
        elif kind == "image_url" and allow_images:
            ref = part.get("image_url")
            url = ref.get("url") if isinstance(ref, dict) else ref
            if not isinstance(url, str) or not url:
                raise BadRequest(f'{at} needs "image_url": {{"url": "data:image/...;base64,..." or an http(s) URL}}',
                                 param=at)
            images.append(url)
        elif kind == "image_url":
            raise BadRequest(f"{at}: images are only accepted in user messages", param=at)
        else:
            raise BadRequest(f"{at}: content part type {kind!r} is not supported (use text and image_url)", param=at)
    return "\n".join(t for t in texts if t), images


def to_langchain_messages(messages: list[dict[str, Any]]) -> tuple[list[Any], str | None]:
    """OpenAI chat messages → LangChain messages (text only) and the conversation's last image source.

    The model takes one image per prompt (its visual prefix), so the last image of the conversation is the one
    used — as ``ChatLlamaAdapterV2`` does with images in content blocks.
    """
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    out: list[Any] = []
    image: str | None = None
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role")
        if role in ("system", "developer"):
            out.append(SystemMessage(_text_of(message.get("content"), where)[0]))
        elif role == "user":
            text, images = _text_of(message.get("content"), where, allow_images=True)
            image = images[-1] if images else image
            out.append(HumanMessage(text))
        elif role == "assistant":
            text, _ = _text_of(message.get("content"), where)
            calls = [_tool_call_from_openai(c, f"{where}.tool_calls[{j}]")
                     for j, c in enumerate(message.get("tool_calls") or [])]
            out.append(AIMessage(content=text, tool_calls=calls))
        elif role == "tool":
            if not message.get("tool_call_id"):
                raise BadRequest(f"{where}: a tool message needs tool_call_id", param=f"{where}.tool_call_id")
            out.append(ToolMessage(_text_of(message.get("content"), where)[0],
                                   tool_call_id=str(message["tool_call_id"]), name=message.get("name")))
        else:
            raise BadRequest(f"{where}.role {role!r} is not supported (system, developer, user, assistant, tool)",
                             param=f"{where}.role")
    return out, image


def _tool_call_from_openai(call: Any, where: str) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not function.get("name"):
        raise BadRequest(f'{where} must be {{"id": ..., "type": "function", "function": {{"name": ..., '
                         '"arguments": "<JSON>"}}}}', param=where)
    raw = function.get("arguments") or "{}"
    try:
        args = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as e:
        raise BadRequest(f"{where}.function.arguments is not valid JSON ({e.msg})", param=where) from None
    except RecursionError:
        raise BadRequest(f"{where}.function.arguments is JSON nested too deeply", param=where) from None
    if not isinstance(args, dict):
        raise BadRequest(f"{where}.function.arguments must be a JSON object", param=where)
    return {"name": function["name"], "args": args, "id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
            "type": "tool_call"}


# ------------------------------------------------------------------------------------------------ responses
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": int(prompt_tokens), "completion_tokens": int(completion_tokens),
            "total_tokens": int(prompt_tokens) + int(completion_tokens)}


def openai_tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": c["id"], "type": "function",
             "function": {"name": c["name"], "arguments": json.dumps(c["args"], ensure_ascii=False)}}
            for c in calls]


def chat_completion(rid: str, model: str, content: str | None, finish_reason: str,
                    usage_: dict[str, int], tool_calls: list[dict[str, Any]] | None = None,
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    body = {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
            "usage": usage_}
    if extra:
        body.update(extra)
    return body


def chat_chunk(rid: str, model: str, created: int, delta: dict[str, Any] | None, finish_reason: str | None = None,
               usage_: dict[str, int] | None = None, include_usage: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                            "system_fingerprint": None,
                            "choices": [] if delta is None else
                            [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
    if include_usage:
        body["usage"] = usage_
    return body


def completion_choice(index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}


def text_completion(rid: str, model: str, created: int, choices: list[dict[str, Any]],
                    usage_: dict[str, int] | None, include_usage: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"id": rid, "object": "text_completion", "created": created, "model": model,
                            "system_fingerprint": None, "choices": choices}
    if include_usage:
        body["usage"] = usage_
    return body


def sse(data: dict[str, Any] | Literal["[DONE]"]) -> str:
    """One server-sent event."""
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, default=str)}\n\n"
