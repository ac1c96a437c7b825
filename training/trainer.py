"""The training loop: interleaved caption / instruction steps, each updating only its own parameter group.

One optimizer step = one batch type (the interleaving pattern comes from ``data.caption_weight`` :
``data.instruction_weight``) = ``train.grad_accum`` micro-batches per process. The loss is the mean over every
response token of the step across micro-batches AND processes (token counts are all-reduced first), so N processes
with micro-batch b compute the same update as one process with micro-batch N·b.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from core_model.groups import adapter_kinds
from prompts import CAPTION_INSTRUCTION, get_style

from .checkpoint import (list_checkpoints, load_checkpoint, prune_checkpoints, resolve_resume, rng_state,
                         save_checkpoint, set_rng_state)
from .config import STREAMS, SourceSpec, TrainConfig, dump_yaml
from .data import (IGNORE_INDEX, Batch, ExampleDataset, StreamSampler, collate, expand_turns, interleave_pattern,
                   read_source, split_validation, steps_per_stream)
from .distributed import DistContext, init_distributed, load_full_state_fsdp, shard_fsdp, shutdown
from .errors import CheckpointError, ConfigError, DataError, NonFiniteError
from .model import BuiltModel, build, param_table
from .optim import WarmupCosine, make_optimizer, scaled_lr

log = logging.getLogger(__name__)

_AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TrainResult:
    steps: int
    history: list[dict[str, Any]]
    last_checkpoint: Path | None
    adapter: Path | None
    val: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Stream:
    name: str
    train: ExampleDataset
    val: ExampleDataset | None
    sampler: StreamSampler
    params: list[tuple[str, torch.nn.Parameter]]
    optimizer: torch.optim.Optimizer
    schedule: WarmupCosine
    iterator: Any = None


class _FromPosition:
    """A batch sampler for DataLoader that starts at the sampler's current position (resume)."""

    def __init__(self, sampler: StreamSampler):
        self.sampler = sampler
        self.start = sampler.consumed

    def __iter__(self):
        b = self.start
        while True:
            yield self.sampler.batch_indices(b)
            b += 1


class Trainer:
    """Build everything a run needs from a :class:`TrainConfig`; :meth:`train` runs it. Use as a context manager
    (or call :meth:`close`) so the process group and the TensorBoard writer are closed."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg.validate()
        self.ctx: DistContext = init_distributed(cfg)
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.last_checkpoint: Path | None = None
        self.last_val: dict[str, float] = {}
        self._tb = None
        self._bar = None
        try:
            self._setup()
        except BaseException:
            self.close(error=True)
            raise

    # ================================================================================================ setup
    def _setup(self) -> None:
        cfg, ctx = self.cfg, self.ctx
        self.out_dir = Path(cfg.train.out_dir)
        if ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_synthetic()
        self.built = self._build_model()
        self.model, self.module = self.built.model, self.built.module
        self.device = ctx.device
        named = dict(self.module.named_parameters())
        self.trainable = {n: named[n] for sel in self.built.trains.values() for n, _ in sel}
        ctx.broadcast_tensors(self.trainable.values())  # identical adapter init on every rank
        self.table = param_table(self.module, self.built.trains)
        if ctx.is_main:
            log.info("trainable per batch type: %s; frozen %s", {s: v["params"] for s, v in
                                                                self.table["streams"].items()},
                     f"{self.table['groups']['frozen']:,}")
        self.style = get_style(self.model.prompt_style)
        self.pattern = interleave_pattern({s: cfg.weight(s) for s in STREAMS})
        self.updates = steps_per_stream(self.pattern, cfg.train.steps)
        self.effective_batch = cfg.train.micro_batch * cfg.train.grad_accum * ctx.world_size
        self.streams = {s: self._make_stream(s, named) for s in cfg.active_streams()}
        self.amp_dtype = _AMP.get(cfg.train.precision)
        self.scaler = torch.amp.GradScaler(self.device.type) if cfg.train.precision == "fp16" else None
        if cfg.train.resume:
            self._resume(cfg.train.resume)
        elif list_checkpoints(self.out_dir):
            raise CheckpointError(f"{self.out_dir} holds checkpoints of an earlier run: continue it with --resume "
                                  "(train.resume=latest), or choose another train.out_dir, or delete "
                                  f"{self.out_dir / 'checkpoints'}")
        self._metrics_path = self.out_dir / "metrics.jsonl"
        if ctx.is_main:
            (self.out_dir / "config.yaml").write_text(dump_yaml(cfg))  # after the checks: never clobber a run's
            self._trim_metrics()
            if cfg.train.tensorboard:
                self._tb = _summary_writer(self.out_dir / "tb")

    def _prepare_synthetic(self) -> None:
        d = self.cfg.data
        if d.synthetic <= 0 or (d.caption and d.instruction):
            return
        from .synthetic import make_dataset

        root = self.out_dir / "synthetic"
        if self.ctx.is_main and not (root / "alpaca.json").is_file():
            make_dataset(root, d.synthetic, seed=self.cfg.train.seed)
        self.ctx.barrier()
        if not d.caption:
            d.caption = [SourceSpec("coco", str(root / "captions_coco.json"), str(root / "images"))]
        if not d.instruction:
            d.instruction = [SourceSpec("alpaca", str(root / "alpaca.json")),
                             SourceSpec("sharegpt", str(root / "sharegpt.json"))]

    def _build_model(self) -> BuiltModel:
        cfg, ctx = self.cfg, self.ctx
        if ctx.strategy != "fsdp":
            return build(cfg, ctx.device)
        full_state = prefix_state = None
        if ctx.is_main:  # only rank 0 ever holds the whole base (in CPU memory)
            full = build(cfg, torch.device("cpu"))
            full_state = full.module.llm.state_dict()
            if full.model.visual_prefix is not None:
                prefix_state = full.model.visual_prefix.state_dict()  # incl. tensors from init_from / adapter dir
            del full
        built = build(cfg, ctx.device, llm_on_meta=True)
        llm = built.module.llm
        kinds = adapter_kinds(llm)
        adapters = {p for n, p in llm.named_parameters() if n in kinds}
        shard_fsdp(llm, adapters, cfg.distributed.reshard_after_forward)
        load_full_state_fsdp(llm, full_state, ctx.device)
        prefix = built.model.visual_prefix
        if prefix is not None:  # replicated: rank 0's copy, frozen or not, on every rank
            if ctx.is_main:
                prefix.load_state_dict(prefix_state)
            ctx.broadcast_tensors([*prefix.parameters(), *prefix.buffers()])
        return built

    def _make_stream(self, name: str, named: dict[str, torch.nn.Parameter]) -> _Stream:
        cfg, ctx = self.cfg, self.ctx
        sources = getattr(cfg.data, name)
        if not sources:
            raise ConfigError(f"data.{name}_weight={cfg.weight(name)} but data.{name} lists no sources (or set "
                              f"data.synthetic > 0 for generated data)")
        examples = []
        for spec in sources:
            examples += read_source(spec, check_images=cfg.data.check_images)
        # split records before expanding conversations, so no conversation is in both sets
        train_ex, val_ex = split_validation(examples, cfg.data.val_examples, cfg.train.seed, name)
        train_ex, val_ex = expand_turns(train_ex, self.style), expand_turns(val_ex, self.style)
        tok = self.model.tokenizer
        pre = self.model.vision.encoder.preprocess if self.model.vision is not None else None
        train_ds = ExampleDataset(train_ex, tok, self.style, cfg.data.max_len, cfg.data.system, name, pre)
        val_ds = (ExampleDataset(val_ex, tok, self.style, cfg.data.max_len, cfg.data.system, name, pre)
                  if val_ex else None)
        if val_ds is not None and len(val_ds) < cfg.train.micro_batch * ctx.world_size:
            raise ConfigError(f"data.val_examples={len(val_ds)} is less than one global batch "
                              f"({cfg.train.micro_batch} x {ctx.world_size} processes): raise it or set it to 0")
        if any(ex.image for ex in train_ex) and self.model.vision is None:
            raise ConfigError(f"data.{name} has images but model.vision is not set")
        sampler = StreamSampler(len(train_ds), cfg.train.micro_batch, ctx.world_size, ctx.rank, cfg.train.seed,
                                name=name)
        sel = self.built.trains[name]
        g = getattr(cfg.optim, name)
        lr = scaled_lr(g, cfg.optim, self.effective_batch)
        opt = make_optimizer([(n, k, named[n]) for n, k in sel], g, lr)
        total = self.updates.get(name, 0)
        sched = WarmupCosine(total, cfg.optim.warmup_steps, cfg.optim.min_lr_ratio, cfg.optim.schedule)
        if ctx.is_main:
            log.info("%s: %d train / %d val examples, %d updates (%.2f epochs), lr %.3g, %s parameters", name,
                     len(train_ds), len(val_ex), total, total * cfg.train.grad_accum / sampler.per_epoch, lr,
                     f"{sum(named[n].numel() for n, _ in sel):,}")
        return _Stream(name, train_ds, val_ds, sampler, [(n, named[n]) for n, _ in sel], opt, sched)

    # ================================================================================================ steps
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _next_batch(self, st: _Stream) -> Batch:
        if st.iterator is None:
            loader = torch.utils.data.DataLoader(
                st.train, batch_sampler=_FromPosition(st.sampler),
                collate_fn=partial(collate, pad_id=self.model.tokenizer.pad_id),
                num_workers=self.cfg.data.num_workers, pin_memory=self.device.type == "cuda")
            st.iterator = iter(loader)
        batch = next(st.iterator)
        st.sampler.consumed += 1
        return batch

    def _clip_tokens(self, pixels: torch.Tensor | None) -> torch.Tensor | None:
        """Frozen CLIP (no grad) on the batch's preprocessed pixels: all tokens, (B, N, clip_dim)."""
        if pixels is None:
            return None
        if self.model.vision is None:
            raise ConfigError("a batch has images but model.vision is not set")
        with torch.no_grad(), self._autocast():
            return self.model.vision.encoder(pixels)

    def _plan(self, batches: list[Batch]) -> list[tuple[bool, bool]]:
        """Per micro-batch: (run an image forward, run a text forward).

        Image rows and text-only rows of a mixed batch (LLaVA + Alpaca) run as two forwards, so a text row never
        sees visual tokens whatever its batch-mates carry. Under FSDP every forward is a collective (all-gathers),
        so the plan is agreed across ranks: a rank without rows of a kind runs a zero-weighted one-row forward.
        """
        flags = torch.tensor([[float(bool(b.image_rows)), float(len(b.image_rows) < b.tokens.shape[0])]
                              for b in batches], device=self.device)
        if self.ctx.strategy == "fsdp":
            self.ctx.all_reduce_max(flags)
        return [(bool(a), bool(b)) for a, b in flags.tolist()]

    def _loss_sum(self, batch: Batch, plan: tuple[bool, bool]) -> torch.Tensor:
        """Summed token loss of a micro-batch (see :meth:`_plan`)."""
        batch = batch.to(self.device)
        n = batch.tokens.shape[0]
        img_rows = batch.image_rows
        txt_rows = [i for i in range(n) if i not in set(img_rows)]
        total = torch.zeros((), device=self.device)
        if plan[0]:
            if img_rows:
                idx = torch.tensor(img_rows, device=self.device)
                total = total + self._token_loss(batch.tokens[idx], batch.targets[idx],
                                                 self._clip_tokens(batch.pixels))
            else:
                size = self.model.vision.encoder.image_size
                blank = self._clip_tokens(torch.zeros(1, 3, *size, device=self.device))
                total = total + 0.0 * self._token_loss(batch.tokens[:1], batch.targets[:1], blank)
        if plan[1]:
            if txt_rows:
                idx = torch.tensor(txt_rows, device=self.device)
                total = total + self._token_loss(batch.tokens[idx], batch.targets[idx], None)
            else:
                total = total + 0.0 * self._token_loss(batch.tokens[:1], batch.targets[:1], None)
        return total

    def _token_loss(self, tokens: torch.Tensor, targets: torch.Tensor, clip: torch.Tensor | None) -> torch.Tensor:
        select = targets != IGNORE_INDEX  # logits of the positions with a target only (same loss, less work)
        with self._autocast():
            logits = self.module(tokens, clip, select)
        return F.cross_entropy(logits.float(), targets[select], reduction="sum")

    def _set_active(self, st: _Stream) -> None:
        active = {id(p) for _, p in st.params}
        for p in self.trainable.values():
            p.requires_grad_(id(p) in active)
            p.grad = None

    def train_step(self) -> dict[str, Any]:
        """One optimizer step of the batch type the pattern schedules next. Returns its metrics."""
        cfg, ctx = self.cfg, self.ctx
        kind = self.pattern[self.step % len(self.pattern)]
        st = self.streams[kind]
        t0 = time.perf_counter()
        self._set_active(st)
        micro = [self._next_batch(st) for _ in range(cfg.train.grad_accum)]
        n_tokens = ctx.all_reduce_sum(torch.tensor([float(sum(b.n_targets for b in micro))],
                                                   dtype=torch.float64, device=self.device)).item()
        step_no = self.step + 1
        if n_tokens == 0:
            log.warning("step %d (%s): no response tokens in the batch (all truncated by data.max_len?); skipped",
                        step_no, kind)
            self.step += 1
            return {"step": step_no, "stream": kind, "loss": float("nan"), "skipped": True}
        loss_acc = torch.zeros((), dtype=torch.float64, device=self.device)
        for batch, plan in zip(micro, self._plan(micro)):
            loss = self._loss_sum(batch, plan) / n_tokens
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            loss_acc += loss.detach().double()
        params = [p for _, p in st.params]
        ctx.all_reduce_grads(params)
        loss_value = ctx.all_reduce_sum(loss_acc).item()
        if not math.isfinite(loss_value):
            self._non_finite(step_no, kind, f"the loss is {loss_value}")
        if self.scaler is not None:
            self.scaler.unscale_(st.optimizer)
        max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=False))
        if not math.isfinite(grad_norm) and self.scaler is None:
            self._non_finite(step_no, kind, f"the gradient norm is {grad_norm}")
        factor = st.schedule.apply(st.optimizer)
        if self.scaler is not None:
            self.scaler.step(st.optimizer)
            self.scaler.update()
        else:
            st.optimizer.step()
        st.optimizer.zero_grad(set_to_none=True)
        st.schedule.step()
        if not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
            bad = next(n for n, p in st.params if not torch.isfinite(p).all())
            self._non_finite(step_no, kind, f"the update made parameters NaN/inf (first: {bad}) although the loss "
                                            f"({loss_value:.4g}) and gradient norm ({grad_norm:.4g}) were finite")
        self.step += 1
        return {"step": step_no, "stream": kind, "loss": loss_value, "grad_norm": grad_norm,
                "lr": st.optimizer.param_groups[0]["lr"], "lr_factor": factor, "tokens": int(n_tokens),
                "seconds": time.perf_counter() - t0}

    def _non_finite(self, step: int, kind: str, what: str) -> None:
        where = (f"the last good checkpoint {self.last_checkpoint} is kept (resume from it with --resume "
                 f"{self.last_checkpoint})" if self.last_checkpoint is not None else
                 "no checkpoint was written yet (set train.save_every to keep one)")
        raise NonFiniteError(f"step {step} ({kind} batch): {what}. Training stopped; {where}. Lower "
                             f"optim.{kind}.lr, raise optim.warmup_steps, or use train.precision=bf16 instead of fp16.")

    # ================================================================================================ eval
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Token-mean validation loss per stream, over ``train.eval_batches`` fixed batches (all ranks)."""
        out: dict[str, float] = {}
        cfg, ctx = self.cfg, self.ctx
        for name, st in self.streams.items():
            if st.val is None:
                continue
            sampler = StreamSampler(len(st.val), cfg.train.micro_batch, ctx.world_size, ctx.rank, shuffle=False,
                                    name=f"{name} validation")
            sums = torch.zeros(2, dtype=torch.float64, device=self.device)
            batches = [collate([st.val[i] for i in sampler.batch_indices(b)], self.model.tokenizer.pad_id)
                       for b in range(min(cfg.train.eval_batches, sampler.per_epoch))]
            for batch, plan in zip(batches, self._plan(batches)):
                sums[0] += self._loss_sum(batch, plan).double()
                sums[1] += batch.n_targets
            ctx.all_reduce_sum(sums)
            out[f"val/{name}_loss"] = (sums[0] / sums[1].clamp_min(1)).item()
        return out

    def samples(self) -> list[dict[str, str]]:
        """Greedy generations for ``train.sample_prompts`` and a few validation images (rank 0)."""
        cfg = self.cfg
        if self.ctx.strategy == "fsdp":
            log.info("sample generations are skipped under FSDP (the decoder is sharded across ranks)")
            return []
        jobs: list[tuple[str, str, Any, str]] = [(p, self.style.format(p), None, "") for p in cfg.train.sample_prompts]
        cap = self.streams.get("caption")
        if cap is not None and self.model.has_vision:
            pool = cap.val.examples if cap.val is not None else cap.train.examples
            for ex in pool[:cfg.train.sample_images]:
                jobs.append((f"[image {Path(ex.image).name}] {CAPTION_INSTRUCTION}",
                             self.style.format(CAPTION_INSTRUCTION), ex.image, ex.messages[-1][1]))
        out = []
        with self._autocast():
            for label, prompt, image, reference in jobs:
                c = self.model.generate(prompt, images=image, max_new_tokens=cfg.train.sample_max_new_tokens,
                                        stop=self.style.stop)
                out.append({"prompt": label, "output": c.text, "reference": reference})
        return out

    # ================================================================================================ loop
    def train(self) -> TrainResult:
        cfg, ctx = self.cfg, self.ctx
        end = cfg.train.stop_at or cfg.train.steps
        from tqdm.auto import tqdm

        self._bar = tqdm(total=cfg.train.steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True,
                         disable=not (ctx.is_main and cfg.train.progress))
        saved_at = self.step if self.last_checkpoint is not None else -1
        if cfg.train.eval_every and self.step == 0:
            self.last_val = self.evaluate()  # the baseline the curve is read against
            self._record({"step": 0, **self.last_val}, kind="eval")
        while self.step < end:
            rec = self.train_step()
            self._record(rec)
            s = self.step
            if cfg.train.eval_every and s % cfg.train.eval_every == 0:
                self.last_val = self.evaluate()
                self._record({"step": s, **self.last_val}, kind="eval")
            if cfg.train.sample_every and s % cfg.train.sample_every == 0 and ctx.is_main:
                self._log_samples(self.samples())
            if cfg.train.save_every and s % cfg.train.save_every == 0:
                self.save()
                saved_at = s
        if saved_at != self.step:
            self.save()
        adapter = None
        if self.step >= cfg.train.steps and cfg.train.save_adapter:
            adapter = self.out_dir / "adapter"
            if ctx.is_main:
                self.model.save_adapter(adapter)
                log.info("adapter written to %s (%.2f MB)", adapter,
                         (adapter / "adapter.safetensors").stat().st_size / 2 ** 20)
            ctx.barrier()
        self._bar.close()
        return TrainResult(self.step, self.history, self.last_checkpoint, adapter, self.last_val, self.table)

    def _record(self, rec: dict[str, Any], kind: str = "train") -> None:
        if not self.ctx.is_main:
            return
        rec = {"kind": kind, **rec}
        self.history.append(rec)
        with self._metrics_path.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        s = rec["step"]
        if kind == "train":
            if self._bar is not None:
                self._bar.update(1)
                self._bar.set_postfix(loss=f"{rec['loss']:.4f}", stream=rec["stream"][:4], refresh=False)
            if self._tb is not None and not rec.get("skipped"):
                self._tb.add_scalar(f"train/{rec['stream']}_loss", rec["loss"], s)
                self._tb.add_scalar(f"train/{rec['stream']}_lr", rec["lr"], s)
                self._tb.add_scalar(f"train/{rec['stream']}_grad_norm", rec["grad_norm"], s)
            if self.cfg.train.log_every and s % self.cfg.train.log_every == 0 and not rec.get("skipped"):
                log.info("step %d/%d %s loss %.4f lr %.3g grad %.3g", s, self.cfg.train.steps, rec["stream"],
                         rec["loss"], rec["lr"], rec["grad_norm"])
        else:
            log.info("step %d validation: %s", s, {k: round(v, 4) for k, v in rec.items() if k.startswith("val/")})
            if self._tb is not None:
                for k, v in rec.items():
                    if k.startswith("val/"):
                        self._tb.add_scalar(k, v, s)

    def _log_samples(self, samples: list[dict[str, str]]) -> None:
        for smp in samples:
            log.info("sample at step %d: %s -> %r%s", self.step, smp["prompt"], smp["output"],
                     f" (reference {smp['reference']!r})" if smp["reference"] else "")
        if self._tb is not None and samples:
            text = "\n\n".join(f"**{s['prompt']}** → `{s['output']}`" + (f" (ref: {s['reference']})" if s["reference"]
                                                                        else "") for s in samples)
            self._tb.add_text("samples", text, self.step)
        if samples:
            with self._metrics_path.open("a") as f:
                f.write(json.dumps({"kind": "samples", "step": self.step, "samples": samples}) + "\n")

    # ================================================================================================ checkpoints
    def _state(self) -> dict[str, Any]:
        return {
            "params": {n: p.detach().to("cpu", copy=True) for n, p in self.trainable.items()},
            "optimizers": {s: st.optimizer.state_dict() for s, st in self.streams.items()},
            "param_names": {s: [n for n, _ in st.params] for s, st in self.streams.items()},
            "schedules": {s: st.schedule.state_dict() for s, st in self.streams.items()},
            "samplers": {s: st.sampler.state_dict() for s, st in self.streams.items()},
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "world_size": self.ctx.world_size,
            "config": self.cfg.to_dict(),
        }

    def save(self) -> Path:
        """Write a checkpoint of the current step (collective: every rank calls it)."""
        bad = [n for n, p in self.trainable.items() if not torch.isfinite(p.detach()).all()]
        if bad:
            self._non_finite(self.step, "checkpoint", f"{len(bad)} trainable tensor(s) hold NaN/inf (first: {bad[0]}), "
                                                      "so no checkpoint was written")
        rngs = self.ctx.gather_objects(rng_state())
        path = None
        if self.ctx.is_main:
            state = self._state()
            state["rng"] = rngs
            path = save_checkpoint(self.out_dir, self.step, state,
                                   write_extra=lambda d: self.model.save_adapter(d / "adapter"))
            prune_checkpoints(self.out_dir, self.cfg.train.keep_last, protect=path)
            log.info("checkpoint %s", path)
        self.last_checkpoint = Path(self.ctx.broadcast_object(str(path) if path else None))
        return self.last_checkpoint

    def _resume(self, spec: str) -> None:
        path = resolve_resume(spec, self.out_dir)
        state = load_checkpoint(path)
        saved, own = set(state["params"]), set(self.trainable)
        if saved != own:
            raise CheckpointError(f"{path}: trainable parameters differ from this run (only in checkpoint: "
                                  f"{sorted(saved - own)[:4]}, only in this run: {sorted(own - saved)[:4]}); resume "
                                  "with the same model.adapter and train.stage")
        with torch.no_grad():
            for n, t in state["params"].items():
                p = self.trainable[n]
                if p.shape != t.shape:
                    raise CheckpointError(f"{path}: {n} has shape {tuple(t.shape)}, this run {tuple(p.shape)}")
                p.copy_(t.to(p.device, p.dtype))
        for s, st in self.streams.items():
            if s not in state["optimizers"]:
                raise CheckpointError(f"{path}: no optimizer state for {s} batches; the checkpoint was made with "
                                      f"data weights {sorted(state['optimizers'])}")
            if state["param_names"][s] != [n for n, _ in st.params]:
                raise CheckpointError(f"{path}: the {s} optimizer covered other parameters; resume with the same "
                                      "adapter and stage")
            base = [g["base_lr"] for g in st.optimizer.param_groups]
            wd = [g["weight_decay"] for g in st.optimizer.param_groups]
            st.optimizer.load_state_dict(state["optimizers"][s])
            for g, b, w in zip(st.optimizer.param_groups, base, wd):  # the config, not the checkpoint, sets lr/wd
                g["base_lr"], g["weight_decay"] = b, w
            st.schedule.load_state_dict(state["schedules"][s])
            st.sampler.load_state_dict(state["samplers"][s])
            st.iterator = None
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        rngs = state.get("rng") or []
        if len(rngs) == self.ctx.world_size:
            set_rng_state(rngs[self.ctx.rank])
        elif rngs:
            log.warning("checkpoint has RNG states of %d processes, this run has %d: using rank 0's", len(rngs),
                        self.ctx.world_size)
            set_rng_state(rngs[0])
        self.step = int(state["step"])
        self.last_checkpoint = path
        if self.ctx.is_main:
            log.info("resumed from %s at step %d", path, self.step)

    def _trim_metrics(self) -> None:
        """After a resume, drop metric lines of steps past the checkpoint (they will be recomputed)."""
        p = self._metrics_path
        if not p.is_file():
            return
        if self.step == 0:
            p.unlink()
            return
        keep, dropped = [], 0
        for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                step = json.loads(line).get("step")
            except (json.JSONDecodeError, AttributeError):
                step = None
            if not isinstance(step, int):
                dropped += 1  # a line torn by a crash (kill -9 mid-write) or otherwise damaged
                continue
            if step <= self.step:
                keep.append(line)
        if dropped:
            log.warning("%s: dropped %d damaged line(s) (a run killed mid-write leaves a torn last line)", p, dropped)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
        os.replace(tmp, p)  # atomic: a crash now cannot lose the lines that were kept

    # ================================================================================================ cleanup
    def close(self, error: bool = False) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._bar is not None:
            self._bar.close()
        shutdown(self.ctx, error=error)

    def __enter__(self) -> "Trainer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(error=exc_type is not None)


def _summary_writer(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed (pip install 'llama-adapter-v2[train]'); logging to metrics.jsonl "
                    "only")
        return None
    return SummaryWriter(str(path))


def run(cfg: TrainConfig) -> TrainResult:
    """Train as configured (single process, or one rank under torchrun)."""
    with Trainer(cfg) as trainer:
        return trainer.train()


__all__ = ["DataError", "TrainResult", "Trainer", "run"]
