"""Caption expert: one short sentence that describes the whole image.

Three backends, chosen by what you pass (exactly one):

* ``model=<object with .generate(prompt, images=[image])>`` — a LLaMA-Adapter model in caption mode, as in the
  paper, where the COCO-caption adapter was the caption expert. The instruction (default "Generate caption of this
  image") is put into ``prompt_template`` (Alpaca by default, the format the released caption adapter was trained
  with; pass a callable, e.g. from the ``prompts`` package, for other styles). The result's ``.text`` is used if it
  has one, else ``str()``. tools never imports core_model: the caller passes the model object.
* ``model=<callable(image) -> str>`` — any captioner; it receives an RGB ``PIL.Image``.
* ``hf_model="Salesforce/blip-image-captioning-base"`` or a local directory — a transformers image-to-text model
  (BLIP, ViT-GPT2 / VisionEncoderDecoder, ...), loaded lazily on first use.
"""
from __future__ import annotations

import importlib.util
import inspect
import logging
import pickle
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field, PrivateAttr, model_validator

from .base import ExpertError, ExpertStatus, ExpertTool, ExpertUnavailable, network_available, offline_mode
from .images import open_image

logger = logging.getLogger(__name__)

__all__ = ["ALPACA_TEMPLATE", "CaptionInput", "CaptionTool", "DEFAULT_CAPTION_INSTRUCTION"]

DEFAULT_CAPTION_INSTRUCTION = "Generate caption of this image"
ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)
_HF_HINT = "install it with `pip install transformers` (or `pip install llama-adapter-v2[hf]`)"
_NO_BACKEND = (
    "no caption backend configured: pass CaptionTool(model=<LLaMA-Adapter caption model or callable image->str>) "
    "or CaptionTool(hf_model='<local dir or hub id of an image-to-text model, e.g. a BLIP captioner>'), "
    "or set LAV2_CAPTION_MODEL"
)


class CaptionInput(BaseModel):
    """Input of the caption expert."""

    image: str = Field(description="Image to describe: a file path, a data: URL or an http(s) URL.")


class CaptionTool(ExpertTool):
    """Describes an image in one sentence with a LLaMA-Adapter caption model, any callable, or a transformers model."""

    name: str = "caption"
    description: str = "Describes the whole image in one short sentence (what is shown, where, what is happening)."
    args_schema: type[BaseModel] = CaptionInput
    needs_image: ClassVar[bool] = True
    max_chars: int = 500

    model: Any = None
    """An object with ``.generate(prompt, images=[image])`` or a callable ``image -> str``."""
    hf_model: str | None = None
    """A transformers image-to-text model: local directory or hub id (downloaded when online)."""
    instruction: str = DEFAULT_CAPTION_INSTRUCTION
    prompt_template: str | Callable[[str], str] = ALPACA_TEMPLATE
    """How the instruction becomes the prompt for ``model.generate``: a ``{instruction}`` template or a callable."""
    generate_kwargs: dict[str, Any] = Field(default_factory=lambda: {"max_new_tokens": 48, "temperature": 0.0})
    """Extra arguments for ``model.generate`` (only those its signature accepts are passed)."""
    hf_prompt: str | None = None
    """Optional text prefix for conditional captioning (e.g. BLIP's "a picture of")."""
    max_new_tokens: int = 40
    device: str = "cpu"

    _hf: tuple[Any, Any, Any] | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @model_validator(mode="after")
    def _one_backend(self) -> CaptionTool:
        if self.model is not None and self.hf_model:
            raise ValueError("pass either model=... or hf_model=..., not both")
        if self.model is not None and not (callable(getattr(self.model, "generate", None)) or callable(self.model)):
            raise ValueError(
                f"model must have a .generate(prompt, images=[...]) method or be a callable image -> str; "
                f"got {type(self.model).__name__}"
            )
        return self

    # ------------------------------------------------------------------------------------------- status
    @property
    def backend(self) -> str:
        """``"adapter"`` (model with .generate), ``"callable"``, ``"transformers"`` or ``"none"``."""
        if self.model is not None:
            return "adapter" if callable(getattr(self.model, "generate", None)) else "callable"
        return "transformers" if self.hf_model else "none"

    def status(self) -> ExpertStatus:
        backend = self.backend
        if backend == "adapter":
            return ExpertStatus(True, f"caption model {type(self.model).__name__} (instruction {self.instruction!r})")
        if backend == "callable":
            return ExpertStatus(True, f"caption function {getattr(self.model, '__name__', type(self.model).__name__)}")
        if backend == "none":
            return ExpertStatus(False, _NO_BACKEND)
        if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
            return ExpertStatus(False, f"the transformers package is not installed: {_HF_HINT}")
        path = Path(self.hf_model or "").expanduser()
        if path.is_dir():
            if (path / "config.json").is_file():
                return ExpertStatus(True, f"transformers model {str(path)!r}")
            return ExpertStatus(False, f"{str(path)!r} has no config.json: pass a directory saved by save_pretrained")
        if _looks_like_path(self.hf_model):
            return ExpertStatus(False, f"captioning model directory {self.hf_model!r} does not exist")
        if _hub_cached(self.hf_model):
            return ExpertStatus(True, f"transformers model {self.hf_model!r} (from the local HF cache)")
        if network_available("huggingface.co"):
            return ExpertStatus(True, f"transformers model {self.hf_model!r} will be downloaded on first use")
        return ExpertStatus(
            False,
            f"{self.hf_model!r} is not in the local Hugging Face cache and huggingface.co is unreachable "
            "(offline?): download it where you are online and pass its local directory",
        )

    # ------------------------------------------------------------------------------------------- running
    def _analyze(self, image: Any, query: str | None) -> tuple[str, Any]:
        pil = open_image(image)
        backend = self.backend
        if backend == "none":
            raise ExpertUnavailable(_NO_BACKEND)
        if backend == "adapter":
            raw = self._caption_with_adapter(pil)
        elif backend == "callable":
            raw = self.model(pil)
        else:
            raw = self._caption_with_transformers(pil)
        caption = _first_sentence_block(_completion_text(raw))
        if not caption:
            raise ExpertError(f"the {backend} caption backend returned an empty caption")
        return caption, {"caption": caption, "backend": backend}

    def _prompt(self) -> str:
        template = self.prompt_template
        return template(self.instruction) if callable(template) else template.format(instruction=self.instruction)

    def _caption_with_adapter(self, pil: Any) -> Any:
        generate = self.model.generate
        if type(self.model).__module__.startswith("transformers."):
            raise ExpertError("a transformers model was passed as model=...: pass its directory or id as hf_model=")
        return generate(self._prompt(), images=[pil], **_accepted_kwargs(generate, self.generate_kwargs))

    def _load_hf(self) -> tuple[Any, Any, Any]:
        if self._hf is not None:
            return self._hf
        try:
            import torch  # noqa: F401 - transformers models need it; fail with our message, not deep inside
            import transformers
        except ImportError as exc:
            raise ExpertUnavailable(f"the transformers package is not installed: {_HF_HINT}") from exc
        name = self.hf_model or ""
        local = Path(name).expanduser()
        source = str(local) if local.is_dir() else name
        kwargs: dict[str, Any] = {"local_files_only": True} if local.is_dir() or offline_mode() else {}
        # no code from the model directory or hub repo: no custom modeling code, tensors-only unpickling
        kwargs["trust_remote_code"] = False
        logger.info("loading captioning model %s", source)
        try:
            model = transformers.AutoModelForImageTextToText.from_pretrained(source, weights_only=True, **kwargs)
            image_proc, decoder = _load_processors(transformers, source, kwargs)
        except (OSError, ValueError, KeyError, pickle.UnpicklingError) as exc:
            raise ExpertUnavailable(
                f"cannot load captioning model {self.hf_model!r} ({type(exc).__name__}: {_first_line(exc)}): pass a "
                "local "
                "directory saved with save_pretrained (model + processor), or a hub id when online"
            ) from exc
        model.to(self.device).eval()
        self._hf = (model, image_proc, decoder)
        return self._hf

    def _caption_with_transformers(self, pil: Any) -> str:
        import torch

        with self._lock:
            model, image_proc, decoder = self._load_hf()
            if self.hf_prompt and image_proc is decoder:  # a joint processor handles the text prefix
                inputs = image_proc(images=pil, text=self.hf_prompt, return_tensors="pt")
            else:
                inputs = image_proc(images=pil, return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in inputs.items() if hasattr(v, "to")}
            with torch.inference_mode():
                ids = model.generate(**inputs, max_new_tokens=self.max_new_tokens)
        return decoder.batch_decode(ids, skip_special_tokens=True)[0]


# --------------------------------------------------------------------------------------------- helpers
def _load_processors(transformers: Any, source: str, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """(image processor, decoder): a joint processor when the model has one, else image processor + tokenizer."""
    try:
        processor = transformers.AutoProcessor.from_pretrained(source, **kwargs)
    except (OSError, ValueError, KeyError, TypeError):
        processor = None
    if processor is not None and hasattr(processor, "image_processor") and hasattr(processor, "batch_decode"):
        return processor, processor
    image_proc = transformers.AutoImageProcessor.from_pretrained(source, **kwargs)
    tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
    return image_proc, tokenizer


def _first_line(exc: BaseException) -> str:
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return text[:300]


def _looks_like_path(name: str) -> bool:
    """A filesystem path rather than a hub id ("org/name")."""
    return Path(name).is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or "\\" in name


def _hub_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repo id
        return False


def _accepted_kwargs(func: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return dict(kwargs)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(kwargs)
    return {k: v for k, v in kwargs.items() if k in params}


def _completion_text(raw: Any) -> str:
    if isinstance(raw, (list, tuple)):
        raw = raw[0] if raw else ""
    text = getattr(raw, "text", raw)
    return text if isinstance(text, str) else str(text)


def _first_sentence_block(text: str) -> str:
    """The first non-empty paragraph on one line: captioners sometimes keep talking after the caption."""
    for block in text.strip().split("\n\n"):
        line = " ".join(block.split())
        if line:
            return line
    return ""
