"""Parameter groups, declared by the modules that own the parameters.

The paper trains two disjoint groups (§4.2): caption data updates the *visual* group, instruction data the
*instruction* group; everything else is the frozen base. Instead of matching name fragments (the release's
approach), every module that owns adapter parameters implements ``adapter_params()`` returning
``{direct_parameter_name: kind}``; the kind decides the group. A parameter claimed twice is an error, so the
groups are disjoint by construction (and a test checks it on every preset).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Iterator, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only: the group names are read by config code that must not import torch
    from torch import nn

from .errors import ConfigError

VISUAL = "visual"
INSTRUCTION = "instruction"
FROZEN = "frozen"
GROUPS = (VISUAL, INSTRUCTION, FROZEN)

#: kind -> group. Kinds let recipes pick finer subsets (e.g. the release's "pretrain" stage trains the visual
#: group plus the late prompts and gates).
KIND_GROUP: dict[str, str] = {
    "visual_proj": VISUAL,  # CLIP-token projection / visual queries / ViT blocks
    "visual_gate": VISUAL,  # zero-init gates of the early (visual) layers
    "prompt": INSTRUCTION,  # static adaption prompts of the late layers
    "prompt_gate": INSTRUCTION,  # zero-init gates of the late layers
    "new_gate": INSTRUCTION,  # release's LoRA-era multiplier on the prompt scores
    "bias": INSTRUCTION,
    "scale": INSTRUCTION,
    "norm": INSTRUCTION,
    "lora": INSTRUCTION,
}


@runtime_checkable
class DeclaresAdapterParams(Protocol):
    def adapter_params(self) -> dict[str, str]:
        """Map each *direct* parameter name of this module that is an adapter parameter to its kind."""


def iter_adapter_params(model: nn.Module) -> Iterator[tuple[str, str, nn.Parameter]]:
    """Yield (full name, kind, parameter) for every declared adapter parameter."""
    for mod_name, module in model.named_modules():
        if not isinstance(module, DeclaresAdapterParams):
            continue
        for pname, kind in module.adapter_params().items():
            if kind not in KIND_GROUP:
                raise ConfigError(f"{type(module).__name__}.{pname}: unknown adapter kind {kind!r}")
            param = module._parameters.get(pname)
            if param is None:
                continue  # declared but switched off by the config
            yield (f"{mod_name}.{pname}" if mod_name else pname), kind, param


def adapter_kinds(model: nn.Module) -> dict[str, str]:
    """Full parameter name -> kind, raising if two modules claim the same parameter."""
    kinds: dict[str, str] = {}
    seen: dict[int, str] = {}
    for name, kind, param in iter_adapter_params(model):
        if id(param) in seen and seen[id(param)] != name:
            raise ConfigError(f"parameter {name} is also declared as {seen[id(param)]}: groups must be disjoint")
        seen[id(param)] = name
        kinds[name] = kind
    return kinds


def param_groups(model: nn.Module) -> "OrderedDict[str, list[tuple[str, nn.Parameter]]]":
    """Split every parameter of ``model`` into the visual, instruction and frozen groups."""
    kinds = adapter_kinds(model)
    groups: OrderedDict[str, list[tuple[str, nn.Parameter]]] = OrderedDict((g, []) for g in GROUPS)
    for name, param in model.named_parameters():
        groups[KIND_GROUP[kinds[name]] if name in kinds else FROZEN].append((name, param))
    return groups


def count_params(model: nn.Module) -> dict[str, int]:
    """Number of elements per group (works on the meta device: no weights needed)."""
    return {g: sum(p.numel() for _, p in ps) for g, ps in param_groups(model).items()}


def count_by_kind(model: nn.Module) -> dict[str, int]:
    kinds = adapter_kinds(model)
    out: dict[str, int] = {}
    params = dict(model.named_parameters())
    for name, kind in kinds.items():
        out[kind] = out.get(kind, 0) + params[name].numel()
    return out


def set_trainable(model: nn.Module, kinds: set[str] | None = None, groups: set[str] | None = None) -> list[str]:
    """Freeze everything, then unfreeze the adapter parameters whose kind or group is selected.

    Returns the names made trainable. With neither argument, every adapter parameter is unfrozen.
    """
    declared = adapter_kinds(model)
    chosen = []
    for name, param in model.named_parameters():
        kind = declared.get(name)
        on = kind is not None and (
            (kinds is None and groups is None)
            or (kinds is not None and kind in kinds)
            or (groups is not None and KIND_GROUP[kind] in groups)
        )
        param.requires_grad_(on)
        if on:
            chosen.append(name)
    return chosen
