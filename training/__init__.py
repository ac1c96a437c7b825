"""training: the paper's joint training of disjoint parameter groups and the release's two-stage recipe, on
torchrun (DDP-style replicas or FSDP2 for bases that do not fit one GPU). Depends on core_model and prompts only.

    from training import load_config, run
    result = run(load_config("tiny-cpu", ["train.steps=20"]))
"""
from .config import (PRESETS, STAGE_TRAINS, DataSection, DistributedSection, GroupOptim, ModelSection, OptimSection,
                     SourceSpec, TrainConfig, TrainSection, apply_override, dump_yaml, load_config, train_preset)
from .errors import CheckpointError, DataError, DistributedError, NonFiniteError, TrainingError

__all__ = [
    "PRESETS", "STAGE_TRAINS", "CheckpointError", "DataError", "DataSection", "DistributedError",
    "DistributedSection", "GroupOptim", "ModelSection", "NonFiniteError", "OptimSection", "SourceSpec",
    "TrainConfig", "TrainResult", "TrainSection", "Trainer", "TrainingError", "apply_override", "dump_yaml",
    "load_config", "run", "train_preset",
]


def __getattr__(name: str):
    # the loop pulls in torch and the model; config-only users (the CLI's --print-config) do not pay for it
    if name in ("Trainer", "TrainResult", "run"):
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'training' has no attribute {name!r}")
