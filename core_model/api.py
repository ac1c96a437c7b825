"""``load_model``: one call from a base (+ adapter, + vision) to a model object that generates text."""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generator, Sequence

import torch
from torch import nn

from .checkpoints import AdapterCheckpoint, adapter_state, check_base_compatible, load_adapter_file, save_adapter
from .config import AdapterConfig, ModelConfig, adapter_preset
from .errors import (CheckpointMismatchError, ConfigError, KernelUnavailableError, VisionUnavailableError,
                     WeightsFormatError)
from .engine import Engine, EngineConfig
from .generation import Completion
from .groups import adapter_kinds, iter_adapter_params
from .loading import DEFAULT_BASE, BaseSource, resolve_base
from .model import Transformer
from .quant import PackedWeight, attach_packed, check_activations, kernels, packed_summary, set_activations
from .tokenizer import Tokenizer

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- devices
def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX512-BF16 or AMX); emulated bf16 is slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype != "auto":
        try:
            return _DTYPES[dtype]
        except KeyError:
            raise ConfigError(f"dtype must be auto or one of {sorted(_DTYPES)}, got {dtype!r}") from None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16 if cpu_supports_bf16() else torch.float32


# ----------------------------------------------------------------------------------------------- building
_INIT_BY_KIND = {
    "bias": nn.init.zeros_, "scale": nn.init.ones_, "norm": nn.init.ones_, "prompt_gate": nn.init.zeros_,
    "visual_gate": nn.init.zeros_, "new_gate": nn.init.ones_,
    "prompt": lambda t: nn.init.normal_(t, std=0.02),
}


def _materialise_adapter_params(model: nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Adapter parameters are not in the base checkpoint: give them their identity-preserving init."""
    modules = dict(model.named_modules())
    for name, kind, param in list(iter_adapter_params(model)):
        if not param.is_meta:
            continue
        mod_name, _, pname = name.rpartition(".")
        t = torch.empty(param.shape, device=device, dtype=dtype)
        if kind == "lora":
            if pname == "lora_b":
                nn.init.zeros_(t)
            else:
                nn.init.kaiming_uniform_(t, a=5 ** 0.5)
        else:
            _INIT_BY_KIND[kind](t)
        setattr(modules[mod_name], pname, nn.Parameter(t, requires_grad=False))


def build_model(src_config: ModelConfig, acfg: AdapterConfig, tensors: dict[str, torch.Tensor | PackedWeight],
                device: torch.device, dtype: torch.dtype) -> Transformer:
    """Build on the meta device and assign the base tensors: weights are materialised exactly once.

    A :class:`~core_model.quant.PackedWeight` value (GGUF blocks) is attached to its module as is.
    """
    with torch.device("meta"):
        model = Transformer(src_config, acfg)
    declared = set(adapter_kinds(model))
    expected = {k for k in model.state_dict() if k not in declared}
    got = set(tensors)
    missing, unexpected = sorted(expected - got), sorted(got - set(model.state_dict()))
    if missing or unexpected:
        raise CheckpointMismatchError(f"base checkpoint does not match the config: missing {missing[:6]}, "
                                      f"unexpected {unexpected[:6]}")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    wrong = [f"{k}: {tuple(v.shape)} vs {shapes[k]}" for k, v in tensors.items() if tuple(v.shape) != shapes[k]]
    if wrong:
        raise CheckpointMismatchError(f"base checkpoint shapes do not match the config (checkpoint vs model): "
                                      f"{wrong[:4]}")
    state, packed = {}, {}
    for k in list(tensors):
        t = tensors.pop(k)  # pop: drop the source copy as we go
        if isinstance(t, PackedWeight):
            if device.type != "cpu":
                raise WeightsFormatError(f"packed GGUF weights run on the CPU, not {device}: load with "
                                         "weights='dense'")
            packed[k] = t
        else:
            state[k] = t.to(device=device, dtype=dtype)
    model.load_state_dict(state, strict=False, assign=True)
    for k, w in packed.items():
        attach_packed(model.get_submodule(k.rpartition(".")[0]), w)
    _materialise_adapter_params(model, device, dtype)
    model.use_column_major_head()
    model.requires_grad_(False)
    return model.eval()


class AdapterV2Model:
    """A loaded LLaMA-Adapter V2 model: the decoder, its tokenizer, and the optional visual side.

    Use :func:`load_model` to get one. Generation goes through the model's :class:`~core_model.engine.Engine`
    (``model.engine``): calls from several threads, LangChain wrappers or event loops are batched together
    (continuous batching), each keeping its own sampling parameters; any number of wrappers can share one
    instance.
    """

    def __init__(self, llm: Transformer, tokenizer: Tokenizer, *, prompt_style: str | None = None,
                 vision: Any = None, visual_prefix: nn.Module | None = None, info: dict[str, Any] | None = None,
                 engine_config: EngineConfig | None = None):
        self.llm = llm
        self.tokenizer = tokenizer
        self.prompt_style = prompt_style or tokenizer.default_prompt_style
        self.vision = vision  # a core_model.vision.VisionTower (CLIP + feature cache) or None
        self.visual_prefix = visual_prefix
        self.info = info or {}
        self._engine_config = engine_config
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        """The continuous-batching engine that runs every generation of this model (created on first use)."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = Engine(self, self._engine_config)
            return self._engine

    def configure_engine(self, config: EngineConfig | None = None, **changes: Any) -> Engine:
        """Set the engine's limits (``max_batch_size``, ``max_tokens_in_flight``, ``max_queue``,
        ``prefill_chunk``): ``model.configure_engine(max_batch_size=16)``. The current engine, if any, is
        closed once idle; requests already submitted to it finish first."""
        import dataclasses

        base = config or self._engine_config or EngineConfig()
        new = dataclasses.replace(base, **changes) if changes else base
        with self._engine_lock:
            old, self._engine_config, self._engine = self._engine, new, None
        if old is not None:
            _close_when_idle(old)
        return self.engine

    # -- properties ---------------------------------------------------------------------------------------
    @property
    def config(self) -> ModelConfig:
        return self.llm.config

    @property
    def adapter_config(self) -> AdapterConfig:
        return self.llm.adapter_config

    @property
    def device(self) -> torch.device:
        return self.llm.device

    @property
    def dtype(self) -> torch.dtype:
        return self.llm.dtype

    @property
    def has_vision(self) -> bool:
        return self.vision is not None and self.visual_prefix is not None

    def describe(self) -> dict[str, Any]:
        """What was loaded (for logs, ``--json`` output, LangChain identifying params)."""
        return {**self.info, "device": str(self.device), "dtype": str(self.dtype).removeprefix("torch."),
                "prompt_style": self.prompt_style, "vision": self.has_vision}

    # -- vision -------------------------------------------------------------------------------------------
    def encode_images(self, images: Sequence[Any]) -> torch.Tensor:
        """Images (paths, bytes, PIL, numpy, URLs) -> visual prompt tokens (B, N_v, dim)."""
        if not self.has_vision:
            raise VisionUnavailableError(
                "images were given but this model has no vision weights configured: pass vision=<open_clip "
                "model[:pretrained] | local CLIP checkpoint> and an adapter with a visual prefix to load_model, "
                "or call without images")
        from .images import open_image

        pil = [open_image(im) for im in images]
        feats = self.vision.encode(pil)
        prefix_param = next(self.visual_prefix.parameters())
        with torch.inference_mode():
            return self.visual_prefix(feats.to(prefix_param.device, prefix_param.dtype)).to(self.dtype)

    # -- generation ---------------------------------------------------------------------------------------
    def _prompt_ids(self, prompts: Sequence[str]) -> list[list[int]]:
        """Token ids of each prompt — every prompt this model encodes goes through here.

        A segmented prompt (a ``str`` with ``pieces``, e.g. ``prompts.Prompt``: what every prompt style renders)
        gets control tokens only from its template pieces; its content is encoded with special-token parsing off.
        A plain ``str`` is a developer-formatted prompt: control tokens written in it are control tokens.
        """
        encode = getattr(self.tokenizer, "encode_prompt", None) or self.tokenizer.encode
        return [encode(p) for p in prompts]

    def _visual(self, images: Sequence[Any] | None, n: int) -> torch.Tensor | None:
        if images is None:
            return None
        images = list(images)
        if len(images) != n:
            raise ConfigError(f"got {len(images)} images for {n} prompts: pass one image per prompt")
        return self.encode_images(images)

    def generate(self, prompts: str | Sequence[str], images: Sequence[Any] | Any | None = None, *,
                 max_new_tokens: int = 256, temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0,
                 stop: Sequence[str] = (), seed: int | None = None) -> Completion | list[Completion]:
        """Complete already-formatted prompts (see the ``prompts`` package for templates).

        A single string returns one :class:`Completion`; a list returns a list (the prompts are decoded together,
        and together with whatever else the model is generating). ``images``: one per prompt (or a single image
        for a single prompt).
        """
        single = isinstance(prompts, str)
        plist = [prompts] if single else list(prompts)
        if single and images is not None and not isinstance(images, (list, tuple)):
            images = [images]
        ids = self._prompt_ids(plist)
        visual = self._visual(images, len(plist))
        engine = self.engine
        handles = []
        try:
            for i, p in enumerate(ids):
                handles.append(engine.submit(p, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                             top_k=top_k, stop=stop, seed=seed,
                                             visual=None if visual is None else visual[i:i + 1]))
            out = [h.result() for h in handles]
        except BaseException:
            for h in handles:
                h.cancel()
            raise
        return out[0] if single else out

    def stream(self, prompt: str, image: Any | None = None, *, max_new_tokens: int = 256,
               temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0, stop: Sequence[str] = (),
               seed: int | None = None) -> Generator[str, None, Completion]:
        """Yield the completion of one prompt as text pieces, as they are generated.

        The generator's return value (``StopIteration.value``, or ``yield from``) is the final
        :class:`Completion` with exact token counts and ``finish_reason``. Closing the generator early cancels
        the generation.
        """
        handle = self.engine.submit(self._prompt_ids([prompt])[0], image, max_new_tokens=max_new_tokens,
                                    temperature=temperature, top_p=top_p, top_k=top_k, stop=stop, seed=seed)
        try:
            yield from handle
        finally:
            if not handle.done:
                handle.cancel()
        return handle.result()

    @torch.inference_mode()
    def next_token_logprobs(self, prompts: Sequence[str], images: Sequence[Any] | None = None) -> torch.Tensor:
        """Log-probabilities of the next token after each prompt, (B, vocab) float32 on CPU (one batched forward,
        run on the engine thread between decode steps)."""
        from .generation import left_pad, prefill_mask

        ids = self._prompt_ids(list(prompts))
        visual = self._visual(images, len(ids))

        def forward() -> torch.Tensor:
            batch = left_pad(ids, self.tokenizer.pad_id, self.device)
            mask, positions = (prefill_mask(batch.valid), batch.positions) if batch.padded else (None, None)
            logits = self.llm(batch.tokens, visual, attn_mask=mask, positions=positions, last_only=True)[:, -1]
            return torch.log_softmax(logits.float(), dim=-1).cpu()

        return self.engine.call(forward)

    @torch.inference_mode()
    def continuation_logprobs(self, prompt: str, continuations: Sequence[str], image: Any | None = None,
                              *, max_tokens: int = 512) -> list[list[float]]:
        """Per-token log-probabilities of each continuation after one prompt: ``[[logp(tok) ...] ...]``.

        The prompt is prefilled once. The continuations then run packed into one sequence after it — no padding:
        each attends to the prompt and to its own earlier tokens only (a block-diagonal mask) and sits at the
        positions it would have alone — ``max_tokens`` continuation tokens per forward; the output head runs
        only on the positions that predict a continuation token. Equal, up to float rounding, to scoring
        ``prompt + continuation`` one by one. Continuations are tokenised as plain text (special-token parsing
        off) after the prompt's tokens, so what is scored is exactly the text given. Runs on the engine thread
        between decode steps. An empty continuation scores ``[]``.
        """
        from .generation import c_prefill, c_step_over
        from .model import KVCache

        prompt_ids = self._prompt_ids([prompt])[0]
        if not prompt_ids:
            raise ConfigError("continuation_logprobs needs a non-empty prompt")
        conts = [list(self.tokenizer.encode(c, bos=False, parse_special=False)) if c else [] for c in continuations]
        width = max((len(c) for c in conts), default=0)
        limit = self.config.max_seq_len
        P = len(prompt_ids)
        if P + width > limit:
            from .errors import ContextLengthError

            raise ContextLengthError(f"prompt ({P} tokens) + longest continuation ({width}) exceed the model's "
                                     f"context of {limit} tokens")
        visual = self._visual([image], 1) if image is not None else None
        chunks: list[list[int]] = []  # indices of continuations packed into one forward
        size = 0
        for i, c in enumerate(conts):
            if not c:
                continue
            if chunks and size + len(c) <= max(max_tokens, width):
                chunks[-1].append(i)
                size += len(c)
            else:
                chunks.append([i])
                size = len(c)

        def forward() -> list[list[float]]:
            dev = self.device
            longest_chunk = max((sum(len(conts[i]) for i in ch) for ch in chunks), default=1)
            cache = KVCache(self.config, 1, P + longest_chunk, dev, self.dtype)
            tokens = torch.tensor([prompt_ids], dtype=torch.long, device=dev)
            # a prefix another prompt left in the engine's prefix cache (the same document asked again, the
            # template) is copied in; the rest of the prompt goes through the C step when it covers the model (as
            # generate_tokens and the engine), which leaves its keys/values in ``cache`` for the continuations'
            # torch forward below; then the prompt's whole blocks are kept for later prompts and generations
            engine = self.engine
            ks, vs = [c.k for c in cache.layers], [c.v for c in cache.layers]
            done = engine.reuse_prefix(prompt_ids, visual, ks, vs, 0)
            engine.counters["score_prefix_hit_tokens"] += done
            step = c_step_over(self.llm, cache, visual, 1)
            last = (c_prefill(step, tokens.cpu(), [P], P, done=[done])[0] if step is not None
                    else self.llm(tokens[:, done:], visual, start=done, cache=cache, last_only=True)[0, -1])
            engine.store_prefix(prompt_ids, visual, ks, vs, 0)
            first = torch.log_softmax(last.float(), dim=-1)
            out: list[list[float]] = [[] for _ in conts]
            for chunk in chunks:
                ids, pos, need, spans = [], [], [], []
                for i in chunk:
                    start = len(ids)
                    ids += conts[i]
                    pos += range(P, P + len(conts[i]))
                    need += range(start, start + len(conts[i]) - 1)  # position j predicts token j + 1
                    spans.append((i, start, len(ids)))
                T = len(ids)
                mask = torch.zeros(T, P + T, dtype=torch.bool)
                mask[:, :P] = True
                for _, s, e in spans:
                    mask[s:e, P + s:P + e] = torch.ones(e - s, e - s, dtype=torch.bool).tril()
                hidden = self.llm(torch.tensor([ids], device=dev), visual, start=P,
                                  positions=torch.tensor([pos], device=dev), cache=cache,
                                  attn_mask=mask.to(dev)[None, None], return_hidden=True)[0]
                rows = {j: r for r, j in enumerate(need)}
                logp = (torch.log_softmax(self.llm.output_logits(hidden[need]).float(), dim=-1)
                        if need else None)
                for i, s, e in spans:
                    c = conts[i]
                    scores = [float(first[c[0]])]
                    scores += [float(logp[rows[s + j - 1], c[j]]) for j in range(1, len(c))]  # type: ignore[index]
                    out[i] = scores
            return out

        return self.engine.call(forward)

    # -- adapters -----------------------------------------------------------------------------------------
    def adapter_checkpoint(self) -> AdapterCheckpoint:
        state = adapter_state(self.llm)
        vision_cfg = None
        if self.visual_prefix is not None:
            state.update({f"visual_prefix.{k}": v for k, v in adapter_state(self.visual_prefix).items()})
            cfg = getattr(self.visual_prefix, "config", None)
            vision_cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else None
        return AdapterCheckpoint(self.adapter_config, state, self.config.to_dict(), vision_cfg, self.prompt_style)

    def save_adapter(self, path: str | os.PathLike) -> Path:
        """Write only the adapter parameters (safetensors + JSON)."""
        return save_adapter(path, self.adapter_checkpoint())


def _close_when_idle(engine: Engine) -> None:
    def wait_and_close() -> None:
        while not engine.idle:
            time.sleep(0.05)
        engine.close()

    threading.Thread(target=wait_and_close, name="lav2-engine-close", daemon=True).start()


def _weights_info(llm: Transformer) -> str:
    kinds = packed_summary(llm)
    if not kinds:
        return "dense"
    return "packed " + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items()))


def apply_adapter_state(llm: Transformer, visual_prefix: nn.Module | None, ckpt: AdapterCheckpoint) -> None:
    """Copy adapter tensors into the model, refusing missing or unexpected keys."""
    own = {n: p for n, p in llm.named_parameters() if n in adapter_kinds(llm)}
    if visual_prefix is not None:
        own.update({f"visual_prefix.{n}": p for n, p in visual_prefix.named_parameters()})
    missing = sorted(set(own) - set(ckpt.state))
    unexpected = sorted(set(ckpt.state) - set(own))
    # norms are overridden only when the adapter trained them; a missing norm keeps the base's value
    missing = [m for m in missing if not m.endswith("norm.weight")]
    if missing or unexpected:
        raise CheckpointMismatchError(f"adapter {ckpt.source}: missing {missing[:6]}, unexpected {unexpected[:6]}")
    with torch.no_grad():
        for name, t in ckpt.state.items():
            p = own[name]
            if p.shape != t.shape:
                raise CheckpointMismatchError(f"adapter {ckpt.source}: {name} has shape {tuple(t.shape)}, the "
                                              f"model expects {tuple(p.shape)}")
            p.copy_(t.to(p.dtype))


def random_model(preset: str | ModelConfig = "tiny", adapter: str | AdapterConfig | None = None, *,
                 seed: int = 0, tokenizer: Tokenizer | None = None, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, visual_prefix: nn.Module | None = None, vision: Any = None,
                 prompt_style: str | None = None) -> AdapterV2Model:
    """A randomly initialised model (tests, benchmarks, dry runs). Never for answers: the weights are noise.

    The default ``tiny`` preset pairs with the lossless :class:`ByteTokenizer`.
    """
    from .config import model_preset
    from .tokenizer import ByteTokenizer

    cfg = model_preset(preset) if isinstance(preset, str) else preset
    acfg = adapter_preset(adapter, cfg) if isinstance(adapter, str) else (adapter or AdapterConfig())
    tok = tokenizer or ByteTokenizer()
    if tok.vocab_size > cfg.vocab_size:
        raise ConfigError(f"tokenizer has {tok.vocab_size} tokens but the model only {cfg.vocab_size}")
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # adapter inits (prompts, LoRA) draw from the global RNG: seed it too
        torch.manual_seed(seed)
        llm = Transformer(cfg, acfg)
    with torch.no_grad():
        for name, p in llm.named_parameters():
            if name.endswith("norm.weight") or name in adapter_kinds(llm):
                continue  # norms stay 1 and adapter parts keep their identity init
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    llm = llm.to(device=resolve_device(device), dtype=dtype).requires_grad_(False).eval()
    llm.use_column_major_head()
    if visual_prefix is not None:
        visual_prefix = visual_prefix.to(device=llm.device, dtype=dtype).eval()
    return AdapterV2Model(llm, tok, prompt_style=prompt_style or "plain", vision=vision,
                          visual_prefix=visual_prefix, info={"base": f"random:{cfg.name}", "seed": seed})


WEIGHT_FORMATS = ("auto", "dense", "packed")


def _use_packed(weights: str, src: BaseSource, dev: torch.device, dtype: str | torch.dtype) -> bool:
    """Whether to keep the GGUF's quantised blocks (see :mod:`core_model.quant`) instead of dense weights."""
    if weights not in WEIGHT_FORMATS:
        raise ConfigError(f"weights must be one of {WEIGHT_FORMATS}, got {weights!r}")
    if weights == "dense":
        return False
    fp32 = str(dtype) in ("auto", "float32", "fp32", "torch.float32")
    if weights == "packed":
        if src.load_packed_tensors is None:
            raise WeightsFormatError(f"weights='packed' needs a .gguf base; {src.path} is a {src.kind} source "
                                     "(use weights='dense' or 'auto')")
        if dev.type != "cpu":
            raise WeightsFormatError(f"packed GGUF weights run on the CPU, not {dev}: use weights='dense'")
        if not fp32:
            raise WeightsFormatError(f"packed GGUF weights compute in float32; got dtype={dtype!r} (pass "
                                     "dtype='float32' or 'auto', or weights='dense')")
        kernels()  # raises KernelUnavailableError with what to install
        return True
    if src.load_packed_tensors is None or dev.type != "cpu" or not fp32:
        return False
    try:
        kernels()
    except KernelUnavailableError as e:
        log.warning("%s; using dense float32 weights instead", e)
        return False
    return True


def load_model(base: str | os.PathLike = DEFAULT_BASE, adapter: str | os.PathLike | AdapterConfig | None = None,
               vision: Any = None, device: str | torch.device = "auto", dtype: str | torch.dtype = "auto", *,
               tokenizer: str | os.PathLike | Tokenizer | None = None, prompt_style: str | None = None,
               max_seq_len: int | None = None, use_cache: bool = True, weights: str = "auto",
               activations: str | None = None) -> AdapterV2Model:
    """Load a base model, optionally with an adapter and a vision encoder.

    base:    ``"smollm2-135m"`` (offline default), a Hugging Face directory, a Meta directory
             (``consolidated.*.pth`` + ``params.json``), or a ``.gguf`` file.
    adapter: None, an adapter preset name (fresh, identity-initialised parts: ``paper``, ``release-bias``, ...),
             an :class:`AdapterConfig`, this project's adapter directory, or an official LLaMA-Adapter ``.pth``.
    vision:  None, an open_clip ``"MODEL:PRETRAINED"`` spec, a local CLIP checkpoint, or a ``VisionTower``.
    weights: ``"auto"`` (default): a GGUF base on the CPU in float32 keeps its quantised blocks (Q4_0, Q4_1, Q8_0,
             Q4_K, Q6_K) and runs the block kernels (same weight values, about 5x less memory traffic per token;
             needs a C compiler once); anything else loads dense. ``"dense"``: always dequantise (training, accelerators, other dtypes).
             ``"packed"``: insist on the blocks and raise if that is impossible.
    activations: ``"fp32"`` (default; ``None`` reads ``LAV2_ACTIVATIONS``, else fp32): the packed products use
             float32 activations and the GGUF's exact weight values. ``"int8"`` (opt-in, packed weights only):
             Q4_0/Q4_1/Q8_0 products quantise activations per 32-block to int8 and use integer dot products (VNNI)
             — faster at batch > 1, within the accuracy stated in docs/batching.md; other block types keep fp32
             (logged). :class:`ConfigError` for an unknown value or int8 without packed weights.
    """
    t0 = time.perf_counter()
    dev = resolve_device(device)
    src: BaseSource = resolve_base(base, tokenizer, use_cache)
    packed = _use_packed(weights, src, dev, dtype)
    activations = check_activations(activations)
    if activations == "int8" and not packed:
        raise ConfigError(f"activations='int8' needs packed GGUF weights on the CPU in float32; {base} loads dense "
                          f"here (weights={weights!r}, device {dev}, dtype {dtype}): use a .gguf base with "
                          "weights='packed' or 'auto', or activations='fp32'")
    dt = torch.float32 if packed else resolve_dtype(dtype, dev)
    cfg = src.config
    if max_seq_len is not None:
        cfg.max_seq_len = max_seq_len
    ckpt: AdapterCheckpoint | None = None
    if isinstance(adapter, AdapterConfig):
        acfg = adapter
    elif adapter is None:
        acfg = AdapterConfig()
    elif isinstance(adapter, str) and not Path(adapter).expanduser().exists() and "/" not in adapter:
        acfg = adapter_preset(adapter, cfg)
    else:
        ckpt = load_adapter_file(adapter, cfg)
        check_base_compatible(ckpt, cfg)
        acfg = ckpt.adapter
    llm = build_model(cfg, acfg, src.load_packed() if packed else src.load_tensors(), dev, dt)
    if packed:
        set_activations(llm, activations)
    visual_prefix = None
    tower = None
    vision_prefix_cfg = ckpt.vision_prefix if ckpt else None
    if vision is not None or vision_prefix_cfg is not None or acfg.fusion != "none":
        from .vision_setup import setup_vision  # keeps open_clip/timm imports out of text-only loads

        tower, visual_prefix = setup_vision(vision, vision_prefix_cfg, acfg, cfg, dev, dt)
    if ckpt is not None:
        apply_adapter_state(llm, visual_prefix, ckpt)
    info = {"base": str(base), "base_kind": src.kind, "base_path": str(src.path), "config": cfg.name,
            "adapter": None if adapter is None else (str(adapter) if not isinstance(adapter, AdapterConfig)
                                                     else "custom"),
            "weights": _weights_info(llm), "activations": activations, "load_seconds": round(time.perf_counter() - t0, 3)}
    style = prompt_style or (ckpt.prompt_style if ckpt else None) or src.prompt_style
    model = AdapterV2Model(llm, src.tokenizer, prompt_style=style, vision=tower, visual_prefix=visual_prefix,
                           info=info)
    log.info("loaded %s (%s) on %s/%s in %.2fs", base, src.kind, dev, dt, info["load_seconds"])
    return model
