"""Typed configs with named presets: the base LLaMA shape and the Adapter-V2 parts switched on top of it."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ConfigError

LINEAR_NAMES = ("wq", "wk", "wv", "wo", "w1", "w2", "w3")

def dataclass_from_dict(cls: Any, d: dict[str, Any]) -> Any:
    """Build a config dataclass from a dict, refusing unknown keys with the list of valid ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} fields {sorted(unknown)}; known: {sorted(known)}")
    return cls(**d)


LinearMode = Literal["none", "bias", "bias_scale", "input_scale"]
FusionMode = Literal["none", "early", "late-additive"]


@dataclass
class ModelConfig:
    """Shape of a LLaMA-family decoder (LLaMA-1/2/3, SmolLM2)."""

    name: str = "custom"
    vocab_size: int = 32000
    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int | None = None  # None: multi-head attention (n_kv_heads == n_heads)
    ffn_dim: int = 11008
    norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None  # LLaMA-3.1 style {"rope_type": "llama3", ...}
    max_seq_len: int = 2048
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.dim % self.n_heads:
            raise ConfigError(f"dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        if self.head_dim % 2:
            raise ConfigError(f"head_dim {self.head_dim} must be even for rotary embeddings")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.head_dim * int(self.n_kv_heads)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        return dataclass_from_dict(cls, d)


def _meta_ffn(dim: int, multiple_of: int, multiplier: float | None = None) -> int:
    """Meta's FFN width rule (params.json has multiple_of / ffn_dim_multiplier, not the width)."""
    hidden = int(2 * 4 * dim / 3)
    if multiplier is not None:
        hidden = int(multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


MODEL_PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig("tiny", vocab_size=320, dim=64, n_layers=4, n_heads=4, n_kv_heads=2, ffn_dim=128,
                        norm_eps=1e-5, max_seq_len=256),
    "smollm2-135m": ModelConfig("smollm2-135m", vocab_size=49152, dim=576, n_layers=30, n_heads=9, n_kv_heads=3,
                                ffn_dim=1536, norm_eps=1e-5, rope_theta=100000.0, max_seq_len=8192,
                                tie_embeddings=True),
    "llama-7b": ModelConfig("llama-7b", 32000, 4096, 32, 32, None, _meta_ffn(4096, 256), 1e-6, max_seq_len=2048),
    "llama-13b": ModelConfig("llama-13b", 32000, 5120, 40, 40, None, _meta_ffn(5120, 256), 1e-6, max_seq_len=2048),
    "llama-65b": ModelConfig("llama-65b", 32000, 8192, 80, 64, None, _meta_ffn(8192, 256), 1e-5, max_seq_len=2048),
    "llama2-7b": ModelConfig("llama2-7b", 32000, 4096, 32, 32, None, _meta_ffn(4096, 256), 1e-5, max_seq_len=4096),
    "llama3-8b": ModelConfig("llama3-8b", 128256, 4096, 32, 32, 8, _meta_ffn(4096, 1024, 1.3), 1e-5,
                             rope_theta=500000.0, max_seq_len=8192),
}


def model_preset(name: str) -> ModelConfig:
    try:
        return dataclasses.replace(MODEL_PRESETS[name])
    except KeyError:
        raise ConfigError(f"unknown model preset {name!r}; choose one of {sorted(MODEL_PRESETS)}") from None


@dataclass
class AdapterConfig:
    """Which Adapter-V2 parts are switched on. The default is the plain base model (everything off).

    linear:
      * ``bias_scale``  — the paper (§4.1): ``y = s ⊙ (W x + b)``, b=0, s=1 at init.
      * ``bias``        — the multimodal-7B release: ``y = W x + b`` on ``linear_targets``.
      * ``input_scale`` — the chat65b release: ``y = W (s ⊙ x) + b``.
    prompt_layers / prompt_len: L late layers with K zero-init gated adaption prompts each.
    fusion:
      * ``early``         — the paper (§4.3): visual prompt tokens attend in the first ``early_layers`` layers
                            through their own zero-init gates.
      * ``late-additive`` — the release: visual tokens are added to the adaption prompts of the last L layers.
    """

    linear: LinearMode = "none"
    linear_targets: tuple[str, ...] = LINEAR_NAMES
    train_norms: bool = False
    prompt_layers: int = 0
    prompt_len: int = 0
    lora_rank: int = 0
    lora_targets: tuple[str, ...] = LINEAR_NAMES
    new_gate: bool = False
    fusion: FusionMode = "none"
    early_layers: int = 1
    visual_tokens: int = 0

    def __post_init__(self) -> None:
        self.linear_targets = tuple(self.linear_targets)
        self.lora_targets = tuple(self.lora_targets)
        if self.linear not in ("none", "bias", "bias_scale", "input_scale"):
            raise ConfigError(f"linear must be none|bias|bias_scale|input_scale, got {self.linear!r}")
        if self.fusion not in ("none", "early", "late-additive"):
            raise ConfigError(f"fusion must be none|early|late-additive, got {self.fusion!r}")
        for t in (*self.linear_targets, *self.lora_targets):
            if t not in LINEAR_NAMES:
                raise ConfigError(f"unknown linear {t!r}; the transformer's linears are {LINEAR_NAMES}")
        if (self.prompt_layers > 0) != (self.prompt_len > 0):
            raise ConfigError("prompt_layers and prompt_len must both be > 0 (or both 0)")
        if self.fusion == "late-additive":
            if self.prompt_layers == 0:
                raise ConfigError("fusion 'late-additive' adds visual tokens to adaption prompts: set prompt_layers")
            if self.visual_tokens not in (0, self.prompt_len):
                raise ConfigError("late-additive fusion needs visual_tokens == prompt_len")
            self.visual_tokens = self.prompt_len
        if self.fusion == "early" and (self.visual_tokens <= 0 or self.early_layers <= 0):
            raise ConfigError("early fusion needs visual_tokens > 0 and early_layers > 0")
        if self.new_gate and self.prompt_layers == 0:
            raise ConfigError("new_gate multiplies adaption-prompt scores: it needs prompt_layers > 0")

    def validate_for(self, cfg: ModelConfig) -> None:
        if self.prompt_layers > cfg.n_layers:
            raise ConfigError(f"prompt_layers {self.prompt_layers} > n_layers {cfg.n_layers}")
        if self.fusion == "early" and self.early_layers > cfg.n_layers:
            raise ConfigError(f"early_layers {self.early_layers} > n_layers {cfg.n_layers}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["linear_targets"] = list(self.linear_targets)
        d["lora_targets"] = list(self.lora_targets)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AdapterConfig":
        return dataclass_from_dict(cls, d)

    @property
    def enabled(self) -> bool:
        return (self.linear != "none" or self.train_norms or self.prompt_layers > 0 or self.lora_rank > 0
                or self.fusion != "none")


RELEASE_BIAS_TARGETS = ("wq", "wo", "w1", "w2", "w3")


def adapter_preset(name: str, cfg: ModelConfig | None = None) -> AdapterConfig:
    """Named Adapter-V2 layouts. ``cfg`` is needed where the layout depends on the depth."""
    n_layers = cfg.n_layers if cfg is not None else 32
    presets: dict[str, AdapterConfig] = {
        "none": AdapterConfig(),
        # The paper: bias+scale on every linear, norms, late prompts, early visual fusion (20 visual tokens).
        "paper": AdapterConfig(linear="bias_scale", train_norms=True, prompt_layers=max(1, n_layers - 1),
                               prompt_len=10, fusion="early", early_layers=1, visual_tokens=20),
        # Language-only Adapter-V2 (bias/scale/norm + late prompts, no vision).
        "paper-text": AdapterConfig(linear="bias_scale", train_norms=True, prompt_layers=max(1, n_layers - 1),
                                    prompt_len=10),
        # llama_adapter_v2_multimodal7b BIAS-7B / CAPTION-7B.
        "release-bias": AdapterConfig(linear="bias", linear_targets=RELEASE_BIAS_TARGETS, train_norms=True,
                                      prompt_layers=max(1, n_layers - 1), prompt_len=10, fusion="late-additive"),
        # LORA-BIAS-7B / LORA-BIAS-7B-v21.
        "release-lora-bias": AdapterConfig(linear="bias", linear_targets=RELEASE_BIAS_TARGETS, train_norms=True,
                                           prompt_layers=max(1, n_layers - 1), prompt_len=10,
                                           fusion="late-additive", lora_rank=16, new_gate=True),
        # llama_adapter_v2_chat65b: bias + input scale on all linears, norms, no prompts.
        "chat65b": AdapterConfig(linear="input_scale", train_norms=True),
    }
    try:
        return presets[name]
    except KeyError:
        raise ConfigError(f"unknown adapter preset {name!r}; choose one of {sorted(presets)}") from None


ADAPTER_PRESETS = ("none", "paper", "paper-text", "release-bias", "release-lora-bias", "chat65b")


@dataclass
class FullConfig:
    """What a saved adapter records: the base shape it was made for and the adapter layout."""

    model: ModelConfig = field(default_factory=ModelConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
