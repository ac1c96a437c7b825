"""torchrun integration: process group, device per rank, gradient all-reduce, FSDP2 sharding of the frozen base.

Why not ``torch.nn.parallel.DistributedDataParallel``: the paper's recipe alternates which parameters train
(caption steps: the visual group; instruction steps: the instruction group). DDP's reducer is built for one fixed
set of gradient-requiring parameters; with ``find_unused_parameters=True`` it would traverse the autograd graph
every backward and still all-reduce buckets of the idle group. Here each optimizer step does ONE all-reduce of one
flat buffer holding only the active group's gradients, after gradient accumulation — the adapters are a few MB, so
this is cheap and simple, and it behaves identically for 1..N processes.

``fsdp``: the frozen base is sharded with FSDP2 (``fully_shard`` per transformer block and at the root), while
all adapter parameters are ``ignored_params`` and stay replicated plain tensors (a few MB even for 65B); their
gradients go through the same all-reduce, so the optimizer, clipping and checkpoints are the same code for all
strategies. The decoder is built on the meta device on every rank, sharded, and filled from rank 0's copy
(``broadcast_from_rank0``), so only rank 0 ever holds the full base in CPU memory.
"""
from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.distributed as dist
from torch import nn

from .config import TrainConfig
from .errors import DistributedError

log = logging.getLogger(__name__)


@dataclass
class DistContext:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    strategy: str = "none"
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 and dist.is_available() and dist.is_initialized()

    # -- collectives (no-ops in a single process) ------------------------------------------------------
    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def all_reduce_max(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast_tensors(self, tensors: Iterable[torch.Tensor]) -> None:
        """Make ``tensors`` equal rank 0's (identical adapter init on every rank)."""
        if not self.enabled:
            return
        with torch.no_grad():
            for t in tensors:
                dist.broadcast(t.data, src=0)

    def all_reduce_grads(self, params: list[nn.Parameter]) -> None:
        """Sum the gradients of ``params`` over ranks with one flat all-reduce (None grads count as zero)."""
        if not self.enabled or not params:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(g).to(g.dtype)
            offset += n

    def gather_objects(self, obj: Any) -> list[Any]:
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def init_distributed(cfg: TrainConfig) -> DistContext:
    """Read the torchrun environment, pick the device and backend, and start the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    strategy = cfg.distributed.strategy
    if strategy == "auto":
        strategy = "ddp" if world > 1 else "none"
    if strategy == "none" and world > 1:
        raise DistributedError(f"distributed.strategy=none but WORLD_SIZE={world}: use ddp or fsdp under torchrun")
    device = _device(cfg.train.device, local_rank)
    backend = cfg.distributed.backend
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise DistributedError("distributed.backend=nccl needs CUDA devices; use gloo on CPU")
    ctx = DistContext(world, rank, local_rank, device, strategy, backend if world > 1 else None)
    if world > 1 and not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:
            raise DistributedError(f"WORLD_SIZE={world} but no MASTER_ADDR: launch with torchrun --nproc_per_node N")
        kwargs: dict[str, Any] = {"backend": backend,
                                  "timeout": datetime.timedelta(minutes=cfg.distributed.timeout_minutes)}
        if device.type == "cuda":
            kwargs["device_id"] = device
        dist.init_process_group(**kwargs)
        log.info("rank %d/%d on %s (%s, strategy %s)", rank, world, device, backend, strategy)
    return ctx


def _device(spec: str, local_rank: int) -> torch.device:
    if spec == "auto":
        if torch.cuda.is_available():
            dev = torch.device("cuda", local_rank % torch.cuda.device_count())
            torch.cuda.set_device(dev)
            return dev
        return torch.device("cpu")
    dev = torch.device(spec)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DistributedError(f"train.device={spec} but CUDA is not available; use auto or cpu")
        if dev.index is None:
            dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    return dev


def shutdown(ctx: DistContext, error: bool = False) -> None:
    """Leave the process group; after an error skip the barrier (the other ranks may never reach it)."""
    if ctx.enabled:
        try:
            if not error:
                dist.barrier()
        finally:
            dist.destroy_process_group()


def shard_fsdp(llm: nn.Module, adapter_params: set[nn.Parameter], reshard_after_forward: bool = True) -> None:
    """FSDP2 over the frozen base: one shard group per transformer block plus the root (embeddings, output).

    Adapter parameters are ``ignored_params``: replicated, plain tensors (the root reads the late prompts before a
    block's own pre-forward hook would unshard them, so they must not be sharded anyway).
    """
    try:
        from torch.distributed.fsdp import fully_shard
    except ImportError as e:  # pragma: no cover - torch >= 2.6 has FSDP2
        raise DistributedError("distributed.strategy=fsdp needs torch >= 2.6 (torch.distributed.fsdp.fully_shard)"
                               ) from e
    for block in llm.layers:
        fully_shard(block, reshard_after_forward=reshard_after_forward, ignored_params=adapter_params)
    fully_shard(llm, reshard_after_forward=reshard_after_forward, ignored_params=adapter_params)


def load_full_state_fsdp(llm: nn.Module, full_state: dict[str, torch.Tensor] | None, device: torch.device) -> None:
    """Materialise the sharded meta decoder on ``device`` and fill it from rank 0's full state dict.

    One tensor at a time: rank 0 broadcasts it (made contiguous first), every rank keeps its own shard (sharded base
    weights) or the whole tensor (replicated adapter parameters). Written out instead of
    ``set_model_state_dict(broadcast_from_rank0=True)``: core_model stores the CPU LM head column-major (a transposed
    view), and that call broadcast the non-contiguous ``output.weight`` in storage order, so the other ranks got it
    scrambled (found by the 2-process equivalence test).
    """
    from torch.distributed.tensor import DTensor, distribute_tensor

    llm.to_empty(device=device)
    params = dict(llm.named_parameters())
    rank0 = not dist.is_initialized() or dist.get_rank() == 0
    meta = {k: (tuple(v.shape), v.dtype) for k, v in full_state.items()} if rank0 and full_state else None
    box = [meta]
    if dist.is_initialized():
        dist.broadcast_object_list(box, src=0)
    meta = box[0] or {}
    missing = sorted(set(params) - set(meta))
    unexpected = sorted(set(meta) - set(params))
    if missing or unexpected:
        raise DistributedError(f"rank 0's decoder state does not match the sharded model: missing {missing[:4]}, "
                               f"unexpected {unexpected[:4]}")
    with torch.no_grad():
        for name, (shape, dtype) in meta.items():
            p = params[name]
            if rank0:
                full = full_state[name].to(device=device, dtype=dtype).contiguous()  # type: ignore[index]
            else:
                full = torch.empty(shape, device=device, dtype=dtype)
            if isinstance(p, DTensor):
                shard = distribute_tensor(full, p.device_mesh, p.placements, src_data_rank=0)
                p.to_local().copy_(shard.to_local())
            else:
                if dist.is_initialized():
                    dist.broadcast(full, src=0)
                p.copy_(full)
            del full
