"""The training configuration: typed dataclasses with named presets. YAML files and ``key=value`` overrides only
serialise it (dotted keys, values parsed and checked against the field's type, unknown keys are errors that list
the valid ones).

Sections: ``model`` (base, adapter, vision), ``data`` (caption and instruction sources, prompt style, lengths),
``optim`` (one AdamW per batch type with its own lr / weight decay, schedule, clipping), ``train`` (stage, steps,
batch, precision, logging, checkpoints) and ``distributed`` (none | ddp | fsdp).

The stage says which parameters each batch type updates:

* ``joint`` (the paper, §4.2): caption batches update only the *visual* group, instruction batches only the
  *instruction* group, interleaved in one run (``data.caption_weight : data.instruction_weight``).
* ``pretrain`` (the release, stage 1): caption batches update the visual group plus the adaption prompts and
  their gates.
* ``finetune`` (the release, stage 2): instruction batches (optionally with images) update bias / scale / norm
  (and LoRA when the adapter has it).
* ``custom``: ``train.caption_trains`` / ``train.instruction_trains`` list groups or kinds explicitly.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from core_model.errors import ConfigError
from core_model.groups import GROUPS, KIND_GROUP

STREAMS = ("caption", "instruction")
SOURCE_FORMATS = ("coco", "caption_tsv", "alpaca", "sharegpt", "llava")

#: What each stage trains, per batch type: group names ("visual", "instruction") or adapter kinds.
STAGE_TRAINS: dict[str, dict[str, list[str]]] = {
    "joint": {"caption": ["visual"], "instruction": ["instruction"]},
    # the release's pretrain phase: visual prefix + "gate" + "adapter_query" (late prompts)
    "pretrain": {"caption": ["visual", "prompt", "prompt_gate", "new_gate"], "instruction": []},
    # the release's finetune phase: "bias" and "norm" of the LLM (scale / LoRA where the adapter has them)
    "finetune": {"caption": [], "instruction": ["bias", "scale", "norm", "lora"]},
}


# ============================================================================================ sections
@dataclass
class ModelSection:
    """Which model is trained.

    base:   ``random:<model preset>`` (random weights + the byte tokenizer; tests, demos) or any
            :func:`core_model.load_model` base: ``smollm2-135m``, a Hugging Face / Meta directory, a ``.gguf`` file.
    shape:  optional model preset name the base must have (e.g. ``llama-7b``); ``--dry-run`` counts parameters
            from it without weights, and a real load checks the base against it.
    adapter: an adapter preset (``paper``, ``paper-text``, ``release-bias``, ``chat65b`` ...) or an adapter
            directory (layout and tensors are loaded from it).
    init_from: an adapter directory whose tensors initialise the run (the release's finetune stage starts from
            the pretrain stage's adapter); its layout must equal ``adapter``.
    vision: None (text only), ``random:tiny`` / ``random:<open_clip model>`` (random CLIP, tests and benchmarks),
            an open_clip ``MODEL:PRETRAINED`` spec, ``openai-vit-l14`` (the release's CLIP) or a local checkpoint.
    visual_prefix: overrides of :class:`core_model.vision.VisualPrefixConfig` fields (e.g. a small release prefix
            for tests); empty = the layout's default.
    dtype:  storage dtype of the frozen base (``float32`` | ``bfloat16`` | ``float16``). Trainable parameters are
            always kept in float32 (master weights).
    """

    base: str = "random:tiny"
    shape: str | None = None
    adapter: str = "paper"
    init_from: str | None = None
    vision: str | None = "random:tiny"
    visual_prefix: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float32"
    seed: int = 0
    gradient_checkpointing: bool = False
    max_seq_len: int | None = None


@dataclass
class SourceSpec:
    """One data file. ``format``: coco | caption_tsv | alpaca | sharegpt | llava.

    ``image_root``: directory image paths are relative to (default: the file's directory).
    ``max_examples``: keep only the first N records (quick runs).
    """

    format: str = "alpaca"
    path: str = ""
    image_root: str | None = None
    max_examples: int | None = None


@dataclass
class DataSection:
    """Training data. ``caption`` sources feed caption batches, ``instruction`` sources instruction batches
    (conversations may carry images: LLaVA). ``caption_weight : instruction_weight`` is the interleaving ratio.

    ``synthetic``: > 0 generates that many synthetic images (plus captions, instructions and conversations) into
    ``<out_dir>/synthetic`` and uses them when a stream has no sources (tiny runs and demos).
    ``prompt_style``: a :mod:`prompts` style name; None = the tokenizer's default (``alpaca`` without a template).
    ``val_examples``: held out per stream for validation loss and sample generations.
    """

    caption: list[SourceSpec] = field(default_factory=list)
    instruction: list[SourceSpec] = field(default_factory=list)
    caption_weight: int = 1
    instruction_weight: int = 1
    max_len: int = 512
    prompt_style: str | None = None
    system: str | None = None
    val_examples: int = 0
    synthetic: int = 0
    check_images: bool = True
    num_workers: int = 0


@dataclass
class GroupOptim:
    """AdamW settings of one batch type's optimizer. ``lr`` is per ``optim.base_batch`` samples when
    ``optim.lr_scaling`` is ``linear``."""

    lr: float = 1e-3
    weight_decay: float = 0.02
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8


@dataclass
class OptimSection:
    """``caption``: the optimizer of caption batches (the visual group in the paper's recipe); ``instruction``: the
    optimizer of instruction batches. Each steps only on its own batches, with warmup + cosine over its own
    number of updates. Biases, scales, norms, gates and 1-d tensors get no weight decay (decay would pull a
    scale towards 0, not towards its identity value 1)."""

    caption: GroupOptim = field(default_factory=GroupOptim)
    instruction: GroupOptim = field(default_factory=GroupOptim)
    lr_scaling: Literal["none", "linear"] = "none"
    base_batch: int = 256
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0


@dataclass
class TrainSection:
    """The run. ``steps`` optimizer steps in total (each step is one batch type: ``grad_accum`` micro-batches of
    ``micro_batch`` sequences per process). ``stop_at`` ends this invocation early (a checkpoint is written) with
    the schedule still planned for ``steps``; ``resume`` (``latest`` or a checkpoint directory) continues."""

    stage: Literal["joint", "pretrain", "finetune", "custom"] = "joint"
    caption_trains: list[str] | None = None
    instruction_trains: list[str] | None = None
    steps: int = 100
    stop_at: int | None = None
    micro_batch: int = 4
    grad_accum: int = 1
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: str = "auto"
    seed: int = 0
    out_dir: str = "runs/tiny"
    resume: str | None = None
    log_every: int = 10
    eval_every: int = 0
    eval_batches: int = 4
    save_every: int = 0
    keep_last: int = 2
    sample_every: int = 0
    sample_prompts: list[str] = field(default_factory=list)
    sample_images: int = 2
    sample_max_new_tokens: int = 32
    tensorboard: bool = True
    progress: bool = True
    save_adapter: bool = True


@dataclass
class DistributedSection:
    """``strategy``: ``auto`` (ddp under torchrun, else none), ``none``, ``ddp`` (replicas, one all-reduce of the
    active group's gradients per step), ``fsdp`` (the frozen base sharded with FSDP2, adapters replicated)."""

    strategy: Literal["auto", "none", "ddp", "fsdp"] = "auto"
    backend: Literal["auto", "nccl", "gloo"] = "auto"
    timeout_minutes: int = 30
    reshard_after_forward: bool = True


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    distributed: DistributedSection = field(default_factory=DistributedSection)

    # -- derived -----------------------------------------------------------------------------------------
    def weight(self, stream: str) -> int:
        return int(getattr(self.data, f"{stream}_weight"))

    def trains(self, stream: str) -> list[str]:
        """Groups / kinds updated by ``stream`` batches (stage default unless set explicitly)."""
        explicit = getattr(self.train, f"{stream}_trains")
        if explicit is not None:
            return list(explicit)
        if self.train.stage == "custom":
            raise ConfigError(f"stage 'custom' needs train.{stream}_trains (groups {GROUPS[:2]} or kinds "
                              f"{sorted(KIND_GROUP)})")
        return list(STAGE_TRAINS[self.train.stage][stream])

    def active_streams(self) -> list[str]:
        return [s for s in STREAMS if self.weight(s) > 0]

    def validate(self) -> "TrainConfig":
        """Cross-field checks that need no model or data (those come later, with clear messages too)."""
        t, d, o = self.train, self.data, self.optim
        for name in ("steps", "micro_batch", "grad_accum", "base_batch", "max_len"):
            section = t if hasattr(t, name) else (o if hasattr(o, name) else d)
            if getattr(section, name) < 1:
                raise ConfigError(f"{_section_name(section)}.{name} must be >= 1, got {getattr(section, name)}")
        if t.stop_at is not None and not 0 < t.stop_at <= t.steps:
            raise ConfigError(f"train.stop_at must be in 1..train.steps ({t.steps}), got {t.stop_at}")
        for stream in STREAMS:
            w = self.weight(stream)
            if w < 0:
                raise ConfigError(f"data.{stream}_weight must be >= 0, got {w}")
            for item in self.trains(stream):
                if item not in GROUPS[:2] and item not in KIND_GROUP:
                    raise ConfigError(f"train.{stream}_trains: unknown group or kind {item!r}; groups: "
                                      f"{list(GROUPS[:2])}, kinds: {sorted(KIND_GROUP)}")
            g: GroupOptim = getattr(o, stream)
            if not (math.isfinite(g.lr) and g.lr > 0):
                raise ConfigError(f"optim.{stream}.lr must be a positive finite number, got {g.lr}")
            if g.weight_decay < 0 or len(g.betas) != 2 or not all(0 <= b < 1 for b in g.betas):
                raise ConfigError(f"optim.{stream}: weight_decay >= 0 and two betas in [0, 1) required")
        if not self.active_streams():
            raise ConfigError("both data.caption_weight and data.instruction_weight are 0: nothing to train")
        for stream in self.active_streams():
            if not self.trains(stream):
                raise ConfigError(f"stage {t.stage!r} trains nothing with {stream} batches: set "
                                  f"data.{stream}_weight=0 or list train.{stream}_trains")
        if self.model.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"model.dtype must be float32, bfloat16 or float16, got {self.model.dtype!r}")
        low = {"bfloat16": "bf16", "float16": "fp16"}.get(self.model.dtype)
        if low is not None and t.precision != low:
            raise ConfigError(f"model.dtype={self.model.dtype} keeps the frozen base in low precision, which needs "
                              f"autocast in the same dtype: set train.precision={low}")
        if not 0 <= o.min_lr_ratio <= 1 or o.warmup_steps < 0 or o.grad_clip < 0:
            raise ConfigError("optim: min_lr_ratio in [0, 1], warmup_steps >= 0 and grad_clip >= 0 required")
        if d.val_examples < 0 or d.synthetic < 0 or d.num_workers < 0:
            raise ConfigError("data.val_examples, data.synthetic and data.num_workers must be >= 0")
        for stream in STREAMS:
            for src in getattr(d, stream):
                if src.format not in SOURCE_FORMATS:
                    raise ConfigError(f"data.{stream}: unknown format {src.format!r}; choose one of "
                                      f"{list(SOURCE_FORMATS)}")
                if not src.path:
                    raise ConfigError(f"data.{stream}: a source of format {src.format!r} has no path")
        return self

    # -- serialisation -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return _build(cls, data, "")


def _section_name(section: Any) -> str:
    return {ModelSection: "model", DataSection: "data", OptimSection: "optim", TrainSection: "train",
            DistributedSection: "distributed"}.get(type(section), type(section).__name__)


# ============================================================================================ presets
def _tiny_cpu() -> TrainConfig:
    """Seconds on a laptop CPU: random tiny LLaMA + tiny random CLIP, synthetic shapes and instructions."""
    return TrainConfig(
        model=ModelSection(base="random:tiny", adapter="paper", vision="random:tiny"),
        data=DataSection(synthetic=48, prompt_style="plain", max_len=160, val_examples=8),
        optim=OptimSection(caption=GroupOptim(lr=0.1, weight_decay=0.0),
                           instruction=GroupOptim(lr=0.05, weight_decay=0.0), warmup_steps=4, min_lr_ratio=0.1),
        train=TrainSection(stage="joint", steps=60, micro_batch=4, out_dir="runs/tiny_cpu", log_every=10,
                           eval_every=30, eval_batches=2, save_every=30, sample_every=60,
                           sample_prompts=["Which shape has three sides?"]),
    )


def _paper_7b() -> TrainConfig:
    """The paper's joint training on LLaMA-7B: COCO captions -> visual group, GPT-4-LLM -> instruction group."""
    return TrainConfig(
        model=ModelSection(base="/path/to/llama-7b", shape="llama-7b", adapter="paper", vision="ViT-L-14:openai",
                           dtype="bfloat16", gradient_checkpointing=True),
        data=DataSection(
            caption=[SourceSpec("coco", "data/coco/annotations/captions_train2017.json", "data/coco/train2017")],
            instruction=[SourceSpec("alpaca", "data/gpt4-llm/alpaca_gpt4_data.json")],
            caption_weight=1, instruction_weight=1, max_len=512, prompt_style="alpaca", val_examples=256),
        optim=OptimSection(caption=GroupOptim(lr=9e-3, weight_decay=0.02),
                           instruction=GroupOptim(lr=9e-3, weight_decay=0.02), lr_scaling="linear",
                           base_batch=256, warmup_steps=1000, grad_clip=1.0),
        train=TrainSection(stage="joint", steps=40000, micro_batch=4, grad_accum=1, precision="bf16",
                           out_dir="runs/paper_7b", log_every=20, eval_every=1000, save_every=1000,
                           sample_every=2000, sample_prompts=["Give three tips for staying healthy."]),
        distributed=DistributedSection(strategy="auto"),
    )


def _release_7b_pretrain() -> TrainConfig:
    """The release's stage 1: image-text pairs train the visual prefix, adaption prompts and gates."""
    return TrainConfig(
        model=ModelSection(base="/path/to/llama-7b", shape="llama-7b", adapter="release-bias",
                           vision="openai-vit-l14", dtype="bfloat16", gradient_checkpointing=True),
        data=DataSection(caption=[SourceSpec("caption_tsv", "data/pretrain/cc3m_coco.tsv", "data/pretrain/images")],
                         caption_weight=1, instruction_weight=0, max_len=512, prompt_style="alpaca",
                         val_examples=256),
        optim=OptimSection(caption=GroupOptim(lr=9e-3, weight_decay=0.02), lr_scaling="linear", base_batch=256,
                           warmup_steps=2000, grad_clip=1.0),
        train=TrainSection(stage="pretrain", steps=60000, micro_batch=4, precision="bf16",
                           out_dir="runs/release_7b_pretrain", log_every=20, eval_every=2000, save_every=2000),
    )


def _release_7b_finetune() -> TrainConfig:
    """The release's stage 2: instruction data (LLaVA conversations with images + GPT-4-LLM) trains bias/norm."""
    return TrainConfig(
        model=ModelSection(base="/path/to/llama-7b", shape="llama-7b", adapter="release-bias",
                           init_from="runs/release_7b_pretrain/adapter", vision="openai-vit-l14",
                           dtype="bfloat16", gradient_checkpointing=True),
        data=DataSection(
            instruction=[SourceSpec("llava", "data/llava/llava_instruct_150k.json", "data/coco/train2014"),
                         SourceSpec("alpaca", "data/gpt4-llm/alpaca_gpt4_data.json")],
            caption_weight=0, instruction_weight=1, max_len=512, prompt_style="alpaca", val_examples=256),
        optim=OptimSection(instruction=GroupOptim(lr=9e-3, weight_decay=0.02), lr_scaling="linear",
                           base_batch=256, warmup_steps=1000, grad_clip=1.0),
        train=TrainSection(stage="finetune", steps=20000, micro_batch=4, precision="bf16",
                           out_dir="runs/release_7b_finetune", log_every=20, eval_every=1000, save_every=1000,
                           sample_every=2000, sample_prompts=["Give three tips for staying healthy."]),
    )


def _llama65b_bias_scale_norm() -> TrainConfig:
    """Paper §4.1 / the chat65b release: bias + scale + norm (~14M parameters) on LLaMA-65B, ShareGPT, FSDP."""
    return TrainConfig(
        model=ModelSection(base="/path/to/llama-65b", shape="llama-65b", adapter="chat65b", vision=None,
                           dtype="bfloat16", gradient_checkpointing=True),
        data=DataSection(instruction=[SourceSpec("sharegpt", "data/sharegpt/sharegpt_80k.json")],
                         caption_weight=0, instruction_weight=1, max_len=2048, prompt_style="alpaca",
                         val_examples=128),
        optim=OptimSection(instruction=GroupOptim(lr=9e-3, weight_decay=0.02), lr_scaling="linear",
                           base_batch=256, warmup_steps=500, grad_clip=1.0),
        train=TrainSection(stage="finetune", steps=6000, micro_batch=1, grad_accum=4, precision="bf16",
                           out_dir="runs/llama65b_bias_scale_norm", log_every=10, eval_every=500, save_every=500,
                           sample_every=1000, sample_prompts=["Explain FSDP in two sentences."]),
        distributed=DistributedSection(strategy="fsdp"),
    )


PRESETS = {
    "tiny-cpu": _tiny_cpu,
    "paper-7b": _paper_7b,
    "release-7b-pretrain": _release_7b_pretrain,
    "release-7b-finetune": _release_7b_finetune,
    "llama65b-bias-scale-norm": _llama65b_bias_scale_norm,
}


def train_preset(name: str) -> TrainConfig:
    """A named recipe (``tiny-cpu``, ``paper-7b``, ``release-7b-pretrain``, ``release-7b-finetune``,
    ``llama65b-bias-scale-norm``)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(f"unknown training preset {name!r}; choose one of {sorted(PRESETS)}") from None


# ============================================================================================ YAML / overrides
def load_config(source: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """A preset name or a YAML file (which may start from ``preset: NAME``), then ``key=value`` overrides."""
    if source is None:
        data: dict[str, Any] = {}
    elif str(source) in PRESETS:
        data = train_preset(str(source)).to_dict()
    else:
        data = _read_yaml(Path(source))
    cfg = TrainConfig.from_dict(data)
    for item in overrides:
        cfg = apply_override(cfg, item)
    return cfg.validate()


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (or pass a preset name: {sorted(PRESETS)})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from e
    except RecursionError:  # "[[[[...]]]]": deeper than the parser recurses
        raise ConfigError(f"{path}: not valid YAML (nested too deeply)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (model, data, optim, train, "
                          "distributed)")
    preset = data.pop("preset", None)
    if preset is not None:
        data = _merge(train_preset(str(preset)).to_dict(), data)
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def dump_yaml(cfg: TrainConfig, minimal: bool = False) -> str:
    """YAML of ``cfg``; ``minimal`` leaves out values equal to the defaults (how the shipped recipes are written)."""
    import yaml

    data = cfg.to_dict()
    if minimal:
        data = _diff(data, TrainConfig().to_dict(), "")
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110)


#: shown in minimal dumps even when equal to the default: what a reader of a recipe looks for first
_ALWAYS = {"model.base", "model.adapter", "model.vision", "model.dtype", "data.caption_weight",
           "data.instruction_weight", "data.prompt_style", "optim.caption", "optim.instruction", "train.stage",
           "train.steps", "train.micro_batch", "train.grad_accum", "train.precision", "train.out_dir",
           "distributed.strategy"}
_SOURCE_DEFAULTS = dataclasses.asdict(SourceSpec())


def _diff(data: dict[str, Any], default: dict[str, Any], path: str) -> dict[str, Any]:
    out = {}
    for k, v in data.items():
        key = _join(path, k)
        d = default.get(k)
        if isinstance(v, dict) and isinstance(d, dict) and v and d:
            sub = _diff(v, d, key) if key not in _ALWAYS else _diff(v, {}, key)
            if sub:
                out[k] = sub
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):  # data sources
            out[k] = [{sk: sv for sk, sv in x.items() if sk in ("format", "path") or sv != _SOURCE_DEFAULTS.get(sk)}
                      for x in v]
        elif v != d or key in _ALWAYS:
            out[k] = v
    return out


def apply_override(cfg: TrainConfig, item: str) -> TrainConfig:
    """``train.steps=10``, ``optim.caption.lr=1e-4``, ``model.vision=null``, ``data.caption=[{format: coco, ...}]``."""
    import yaml

    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {item!r}: expected key=value, e.g. train.steps=100")
    parts = key.split(".")
    data = cfg.to_dict()
    node: Any = data
    cls: Any = TrainConfig
    for i, part in enumerate(parts):
        hints = _hints(cls) if dataclasses.is_dataclass(cls) else {}
        if part not in hints:
            where = ".".join(parts[:i]) or "the top level"
            valid = sorted(hints) if hints else []
            raise ConfigError(f"unknown config key {key!r}: {part!r} is not a field of {where}; valid: {valid}")
        if i == len(parts) - 1:
            try:
                value = yaml.safe_load(raw) if raw.strip() else ""
            except yaml.YAMLError as e:
                raise ConfigError(f"override {item!r}: cannot parse the value ({e})") from e
            except RecursionError:
                raise ConfigError(f"override of {key!r}: cannot parse the value (nested too deeply)") from None
            node[part] = value
        else:
            node = node[part]
            cls = hints[part]
    return TrainConfig.from_dict(data)


# ============================================================================================ typed building
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'} must be a mapping, got {type(data).__name__}: {data!r}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key(s) {[_join(path, k) for k in unknown]}; valid keys of "
                          f"{path or 'the top level'}: {sorted(fields)}")
    kwargs = {name: _coerce(value, hints[name], _join(path, name)) for name, value in data.items()}
    return cls(**kwargs)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _coerce(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: {value!r} fits none of {args}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{path} must be one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return _build(tp, value, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path} must be a list, got {type(value).__name__}: {value!r}")
        inner = args[0] if args else Any
        return [_coerce(v, inner, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path} must be a mapping, got {type(value).__name__}: {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{path} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{path} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{path} must be a string, got {value!r}")
    return value
