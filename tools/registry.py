"""Custom experts and discovery: plain functions (``@expert``), any LangChain tool (``as_expert``), entry points.

A custom expert in one screen::

    from tools import expert, as_expert

    @expert
    def dominant_colour(image) -> str:
        \"\"\"Tells the dominant colour of the image.\"\"\"
        r, g, b = image.resize((1, 1)).getpixel((0, 0))     # image arrives as an RGB PIL image
        return f"Dominant colour: rgb({r},{g},{b})"

    wiki = as_expert(WikipediaQueryRun(api_wrapper=WikipediaAPIWrapper()))   # any LangChain BaseTool

Both are registered in this process (``lav2 tools --import mymodule`` shows them). Installed packages publish
experts through the ``lav2.experts`` entry-point group; an entry point may load to a ``BaseTool`` instance, a
``BaseTool`` subclass, or a factory returning either (or a list of them).
"""
from __future__ import annotations

import inspect
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field, create_model

from .base import (
    DEFAULT_MAX_CHARS,
    ExpertError,
    ExpertInputError,
    ExpertResult,
    ExpertStatus,
    ExpertTool,
    ExpertUnavailable,
)
from .images import open_image

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "lav2.experts"

__all__ = [
    "ENTRY_POINT_GROUP",
    "DuplicateExpertError",
    "FunctionExpert",
    "ToolExpert",
    "UnloadableExpert",
    "all_experts",
    "as_expert",
    "default_experts",
    "discover_experts",
    "expert",
    "expert_source",
    "get_expert",
    "register_expert",
    "registered_experts",
    "unregister_expert",
]


class DuplicateExpertError(ExpertError, ValueError):
    """Two experts want the same name."""


# --------------------------------------------------------------------------------------------- process registry
_REGISTRY: dict[str, ExpertTool] = {}
_REGISTRY_LOCK = threading.Lock()


def register_expert(tool: BaseTool, *, replace: bool = False) -> ExpertTool:
    """Make ``tool`` (wrapped with :func:`as_expert` if needed) part of :func:`all_experts` in this process."""
    wrapped = tool if isinstance(tool, ExpertTool) else as_expert(tool, register=False)
    with _REGISTRY_LOCK:
        if wrapped.name in _REGISTRY and _REGISTRY[wrapped.name] is not wrapped and not replace:
            raise DuplicateExpertError(
                f"an expert named {wrapped.name!r} is already registered: choose another name or pass replace=True"
            )
        _REGISTRY[wrapped.name] = wrapped
    return wrapped


def unregister_expert(name: str) -> None:
    """Remove a registered expert (no error if absent)."""
    with _REGISTRY_LOCK:
        _REGISTRY.pop(name, None)


def registered_experts() -> list[ExpertTool]:
    """Experts registered in this process, in registration order."""
    with _REGISTRY_LOCK:
        return list(_REGISTRY.values())


# --------------------------------------------------------------------------------------------- @expert
class FunctionExpert(ExpertTool):
    """An expert made from a plain function ``f(image=None, query=None) -> str | (str, data) | dict | list``."""

    func: Callable[..., Any]
    takes_image: bool = False
    takes_query: bool = False

    def _analyze(self, image: Any, query: str | None) -> tuple[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.takes_image:
            kwargs["image"] = None if image is None else open_image(image)
        if self.takes_query:
            kwargs["query"] = query
        return _split_output(self.func(**kwargs))


def expert(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
    register: bool = True,
) -> Any:
    """Turn a plain function into an expert tool (usable as ``@expert`` or ``@expert(name=...)``).

    The function takes ``image`` (an RGB ``PIL.Image``) and/or ``query`` (``str``) — other parameters need
    defaults and are not exposed — and returns the text for the model, or ``(text, data)``, or a dict/list (used
    as data; its JSON is the text), or an :class:`ExpertResult`. The docstring's first line is the description.
    It needs an image iff it has an ``image`` parameter without a default.
    """

    def wrap(f: Callable[..., Any]) -> FunctionExpert:
        params = inspect.signature(f).parameters
        takes_image, takes_query = "image" in params, "query" in params
        if not (takes_image or takes_query):
            raise TypeError(f"@expert function {f.__name__} must take an 'image' and/or a 'query' parameter")
        required = [
            p.name
            for p in params.values()
            if p.default is inspect.Parameter.empty
            and p.name not in ("image", "query")
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        ]
        if required:
            raise TypeError(f"@expert function {f.__name__}: parameters {required} need default values")
        needs_image = takes_image and params["image"].default is inspect.Parameter.empty
        needs_query = takes_query and params["query"].default is inspect.Parameter.empty
        tool_name = name or f.__name__
        doc = description or (inspect.getdoc(f) or "").strip().split("\n\n")[0].replace("\n", " ")
        if not doc:
            raise TypeError(f"@expert function {f.__name__} needs a docstring or description= (the model reads it)")
        fields: dict[str, Any] = {}
        if takes_image:
            fields["image"] = _image_field(needs_image)
        if takes_query:
            fields["query"] = _query_field(needs_query)
        schema = create_model(f"{_camel(tool_name)}Input", **fields)
        cls = _expert_class(FunctionExpert, tool_name, needs_image, needs_query)
        tool = cls(
            name=tool_name,
            description=doc,
            args_schema=schema,
            func=f,
            takes_image=takes_image,
            takes_query=takes_query,
            max_chars=max_chars,
        )
        if register:
            register_expert(tool)
        return tool

    return wrap(func) if func is not None else wrap


# --------------------------------------------------------------------------------------------- as_expert
class ToolExpert(ExpertTool):
    """Any LangChain ``BaseTool`` seen as an expert: the image goes to ``image_arg``, the query to ``query_arg``."""

    tool: BaseTool
    image_arg: str | None = None
    query_arg: str | None = None

    def status(self) -> ExpertStatus:
        inner = getattr(self.tool, "status", None)
        if callable(inner):
            try:
                result = inner()
            except Exception as exc:  # noqa: BLE001 - a third-party status() must not break `lav2 tools`
                return ExpertStatus(False, f"status() of {self.tool.name!r} failed: {type(exc).__name__}: {exc}")
            if isinstance(result, ExpertStatus):
                return result
            return ExpertStatus(bool(result), str(getattr(result, "reason", "")))
        return ExpertStatus(True, f"LangChain tool {type(self.tool).__name__}")

    def _analyze(self, image: Any, query: str | None) -> tuple[str, Any]:
        args: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="lav2-expert-") as tmp:
            if self.image_arg and image is not None:
                args[self.image_arg] = _image_as_path(image, Path(tmp))
            if self.query_arg and query is not None:
                args[self.query_arg] = query
            try:
                output = self.tool.invoke(args)
            except ExpertError:
                raise
            except Exception as exc:  # noqa: BLE001 - report the wrapped tool's failure as this expert's error
                raise ExpertError(f"{self.tool.name} failed: {type(exc).__name__}: {exc}") from exc
        return _split_output(output)

    def _run(self, run_manager: Any = None, **kwargs: Any) -> str:
        from .base import sanitize_expert_text

        config = {"callbacks": run_manager.get_child()} if run_manager is not None else None
        output = self.tool.invoke(kwargs, config=config)  # the wrapped tool's run shows up as a child in traces
        text, _ = _split_output(output)
        return sanitize_expert_text(text, self.max_chars)


def as_expert(
    tool: BaseTool,
    *,
    name: str | None = None,
    description: str | None = None,
    image_arg: str | None = None,
    query_arg: str | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
    register: bool = True,
) -> ExpertTool:
    """Wrap a LangChain tool as an expert (an :class:`ExpertTool` passes through unchanged).

    The input schema stays the tool's own. ``run_expert(image=..., query=...)`` fills the argument called
    ``image_arg`` (default: ``image``, ``image_path``, ``path`` or ``url`` if the schema has one; the image is
    saved to a temporary PNG and its path passed) and ``query_arg`` (default: ``query``, ``question``, ``text``,
    ``input`` or the schema's only string field).
    """
    if isinstance(tool, ExpertTool):
        if register:
            register_expert(tool)
        return tool
    if not isinstance(tool, BaseTool):
        raise TypeError(f"as_expert expects a LangChain BaseTool, got {type(tool).__name__}; use @expert for functions")
    fields = _schema_fields(tool)
    image_arg = image_arg or _pick(fields, ("image", "image_path", "image_url", "path", "url"))
    query_arg = query_arg or _pick(fields, ("query", "question", "text", "input", "q", "__arg1"))
    if query_arg is None and image_arg is None and len(fields) == 1:
        query_arg = next(iter(fields))
    if image_arg is None and query_arg is None:
        raise TypeError(
            f"cannot tell which argument of tool {tool.name!r} takes the image or the query (fields: "
            f"{sorted(fields)}): pass image_arg= and/or query_arg="
        )
    required = {f for f, is_required in fields.items() if is_required}
    cls = _expert_class(ToolExpert, name or tool.name, image_arg in required, query_arg in required)
    wrapped = cls(
        name=name or tool.name,
        description=description or tool.description,
        args_schema=tool.args_schema if tool.args_schema is not None else tool.get_input_schema(),
        tool=tool,
        image_arg=image_arg,
        query_arg=query_arg,
        max_chars=max_chars,
    )
    if register:
        register_expert(wrapped)
    return wrapped


# --------------------------------------------------------------------------------------------- entry points
class UnloadableExpert(ExpertTool):
    """Stands in for an entry point that failed to load, so ``lav2 tools`` can say why."""

    description: str = "An expert plugin that could not be loaded."
    args_schema: type[BaseModel] = create_model("UnloadableExpertInput", query=(str | None, None))
    reason: str

    def status(self) -> ExpertStatus:
        return ExpertStatus(False, self.reason)

    def _analyze(self, image: Any, query: str | None) -> tuple[str, Any]:
        raise ExpertUnavailable(self.reason)


def discover_experts(group: str = ENTRY_POINT_GROUP) -> list[ExpertTool]:
    """Experts published by installed packages in the ``lav2.experts`` entry-point group.

    A broken plugin becomes an :class:`UnloadableExpert` whose status says what failed, instead of an exception.
    """
    found: list[ExpertTool] = []
    for ep in sorted(metadata.entry_points(group=group), key=lambda e: e.name):
        dist = getattr(getattr(ep, "dist", None), "name", None) or "unknown distribution"
        try:
            tools = _materialise(ep.load())
            for tool in tools:
                wrapped = tool if isinstance(tool, ExpertTool) else as_expert(tool, register=False)
                _set_source(wrapped, f"entry point {ep.name} ({dist})")
                found.append(wrapped)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not hide the others
            logger.warning("expert entry point %s = %s (%s) failed to load", ep.name, ep.value, dist, exc_info=True)
            broken = UnloadableExpert(
                name=ep.name,
                reason=f"entry point '{ep.name} = {ep.value}' from {dist} failed to load "
                f"({type(exc).__name__}: {exc}): reinstall or upgrade {dist}",
            )
            _set_source(broken, f"entry point {ep.name} ({dist})")
            found.append(broken)
    return found


def _materialise(obj: Any) -> list[BaseTool]:
    if isinstance(obj, BaseTool):
        return [obj]
    if isinstance(obj, type) and issubclass(obj, BaseTool):
        return [obj()]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _materialise(item)]
    if callable(obj):
        made = obj()
        if isinstance(made, (BaseTool, list, tuple)):
            return _materialise(made)
        raise TypeError(f"factory {getattr(obj, '__name__', obj)!r} returned {type(made).__name__}, not a BaseTool")
    raise TypeError(f"entry point object {obj!r} is not a BaseTool, a BaseTool subclass or a factory")


# --------------------------------------------------------------------------------------------- collections
def default_experts() -> list[ExpertTool]:
    """The built-in experts with settings from the environment.

    ``LAV2_DETECTION_WEIGHTS`` (default ``yolo11n.pt``), ``LAV2_CAPTION_MODEL`` (a transformers image-to-text model;
    unset: the caption expert reports that no backend is configured), ``LAV2_INDEX`` (local search index path).
    """
    from .caption import CaptionTool
    from .detection import DetectionTool
    from .ocr import OCRTool
    from .search import LocalSearchTool, WebSearchTool

    tools: list[ExpertTool] = [
        CaptionTool(hf_model=os.environ.get("LAV2_CAPTION_MODEL") or None),
        OCRTool(),
        DetectionTool(weights=os.environ.get("LAV2_DETECTION_WEIGHTS") or "yolo11n.pt"),
        LocalSearchTool(),
        WebSearchTool(),
    ]
    for tool in tools:
        _set_source(tool, "built-in")
    return tools


def all_experts(extra: Iterable[BaseTool] = (), *, builtin: bool = True, plugins: bool = True) -> list[ExpertTool]:
    """Built-in, entry-point, process-registered and ``extra`` experts; on a name clash the first one wins."""
    candidates: list[ExpertTool] = []
    if builtin:
        candidates += default_experts()
    if plugins:
        candidates += discover_experts()
    candidates += registered_experts()
    candidates += [t if isinstance(t, ExpertTool) else as_expert(t, register=False) for t in extra]
    unique: dict[str, ExpertTool] = {}
    for tool in candidates:
        if tool.name in unique:
            if unique[tool.name] is not tool:
                logger.warning("expert name %r is used twice; keeping the first (%s)", tool.name,
                               type(unique[tool.name]).__name__)
            continue
        unique[tool.name] = tool
    return list(unique.values())


def get_expert(name: str, experts: Iterable[ExpertTool] | None = None) -> ExpertTool:
    """The expert called ``name`` among ``experts`` (default: :func:`all_experts`)."""
    pool = list(experts) if experts is not None else all_experts()
    for tool in pool:
        if tool.name == name:
            return tool
    raise ExpertInputError(f"no expert named {name!r}; known: {', '.join(t.name for t in pool) or 'none'}")


# --------------------------------------------------------------------------------------------- helpers
def expert_source(tool: BaseTool) -> str:
    """Where an expert comes from: ``built-in``, ``entry point NAME (DIST)`` or ``registered``."""
    return str((tool.metadata or {}).get("lav2_source", "registered"))


def _set_source(tool: BaseTool, source: str) -> None:
    tool.metadata = {**(tool.metadata or {}), "lav2_source": source}


def _expert_class(base: type[ExpertTool], name: str, needs_image: bool, needs_query: bool) -> type[ExpertTool]:
    """A subclass carrying the class attributes ``needs_image`` / ``needs_query`` of this particular expert."""
    return type(
        f"{_camel(name)}Expert",
        (base,),
        {"__module__": base.__module__, "needs_image": needs_image, "needs_query": needs_query,
         "__annotations__": {}},
    )


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in "".join(c if c.isalnum() else " " for c in name).split()) or "Custom"


def _image_field(required: bool) -> tuple[Any, Any]:
    description = "Image to look at: a file path, a data: URL or an http(s) URL."
    if required:
        return (str, Field(description=description))
    return (str | None, Field(default=None, description=description))


def _query_field(required: bool) -> tuple[Any, Any]:
    description = "The question or search words."
    if required:
        return (str, Field(description=description))
    return (str | None, Field(default=None, description=description))


def _schema_fields(tool: BaseTool) -> dict[str, bool]:
    """Field name → required, from the tool's input schema (pydantic model or JSON schema)."""
    schema = tool.get_input_schema()
    model_fields = getattr(schema, "model_fields", None)
    if model_fields:
        return {n: f.is_required() for n, f in model_fields.items()}
    json_schema = tool.tool_call_schema if isinstance(tool.tool_call_schema, dict) else {}
    required = set(json_schema.get("required", []))
    return {n: n in required for n in json_schema.get("properties", {})}


def _pick(fields: dict[str, bool], preferred: tuple[str, ...]) -> str | None:
    return next((f for f in preferred if f in fields), None)


def _image_as_path(image: Any, tmp: Path) -> str:
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    pil = open_image(image)
    path = tmp / "image.png"
    pil.save(path)
    return str(path)


def _split_output(output: Any) -> tuple[str, Any]:
    """Whatever an expert function or tool returned → (text, data). ``None`` contributes nothing (not "None")."""
    import json

    if output is None:
        return "", None
    if isinstance(output, ExpertResult):
        if output.error:
            raise ExpertError(output.error)
        return output.text, output.data
    if isinstance(output, str):
        return output, None
    if isinstance(output, tuple) and len(output) == 2 and (output[0] is None or isinstance(output[0], str)):
        return output[0] or "", output[1]
    content = getattr(output, "content", None)  # a ToolMessage from tool.invoke(ToolCall)
    if isinstance(content, str):
        return content, getattr(output, "artifact", None)
    if isinstance(output, (dict, list)):
        return json.dumps(output, ensure_ascii=False, default=str), output
    return str(output), output
