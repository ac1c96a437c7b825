"""The training loop on the tiny random model: the loss falls, the groups are disjoint, resume is exact, NaN stops
with the last good checkpoint kept, the adapter is small and loads, and the release's two stages train what
they should."""
from __future__ import annotations

import json

import pytest
import torch

from core_model import random_model
from core_model.api import apply_adapter_state
from core_model.checkpoints import load_adapter_file
from core_model.groups import KIND_GROUP, adapter_kinds
from training.checkpoint import latest_checkpoint, load_checkpoint
from training.errors import CheckpointError, NonFiniteError
from training.trainer import Trainer, run


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    return {n for n, p in module.named_parameters() if not torch.equal(before[n], p.detach())}


def _groups(module: torch.nn.Module) -> dict[str, str]:
    kinds = adapter_kinds(module)
    return {n: (KIND_GROUP[kinds[n]] if n in kinds else "frozen") for n, _ in module.named_parameters()}


# ------------------------------------------------------------------------------------------------ acceptance 1, 5
def test_tiny_run_loss_falls_and_the_adapter_loads(tiny_cfg, synth, tmp_path):
    cfg = tiny_cfg("train.steps=40", "train.eval_every=40", "data.val_examples=8", "train.eval_batches=2",
                   "train.sample_every=40", "train.tensorboard=true", "train.log_every=10")
    result = run(cfg)
    evals = [h for h in result.history if h["kind"] == "eval"]
    assert [e["step"] for e in evals] == [0, 40]
    for stream in ("caption", "instruction"):
        start, end = evals[0][f"val/{stream}_loss"], evals[-1][f"val/{stream}_loss"]
        assert end < start - 0.1, f"{stream} validation loss {start:.3f} -> {end:.3f}"
        train = [h["loss"] for h in result.history if h.get("stream") == stream]
        assert sum(train[-4:]) / 4 < sum(train[:4]) / 4
    out = cfg.train.out_dir
    lines = [json.loads(x) for x in open(f"{out}/metrics.jsonl")]
    assert sum(x["kind"] == "train" for x in lines) == 40
    samples = [x for x in lines if x["kind"] == "samples"][0]["samples"]
    assert any(s["prompt"].startswith("[image") and s["reference"] for s in samples)  # a caption sample
    assert list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))

    # the adapter: megabytes at most (here kilobytes), loads into a fresh model, and changes its output
    adapter = result.adapter
    size = (adapter / "adapter.safetensors").stat().st_size
    assert size < 1_000_000
    ckpt = load_adapter_file(adapter)
    assert ckpt.prompt_style == "plain" and ckpt.vision_prefix is not None
    fresh = _fresh_model(cfg)
    trained = _fresh_model(cfg)
    apply_adapter_state(trained.llm, trained.visual_prefix, ckpt)
    tokens = torch.tensor([trained.tokenizer.encode("What is 3 plus 4?")])
    with torch.no_grad():
        assert not torch.allclose(fresh.llm(tokens), trained.llm(tokens), atol=1e-4)
        vis = trained.encode_images([str(synth.images[0])])
        assert not torch.allclose(trained.llm(tokens, vis), trained.llm(tokens), atol=1e-5)  # gates opened
    # every trained tensor is in the file, and only adapter tensors are
    assert set(ckpt.state) == {n for n in adapter_kinds(trained.llm)} | {
        f"visual_prefix.{n}" for n, _ in trained.visual_prefix.named_parameters()}


def _fresh_model(cfg):
    from training.model import build_tower, prefix_config
    from core_model.config import adapter_preset, model_preset
    from core_model.vision import build_visual_prefix

    mcfg = model_preset("tiny")
    acfg = adapter_preset("paper", mcfg)
    torch.manual_seed(cfg.model.seed)
    tower = build_tower("random:tiny", cfg.model.seed)
    prefix = build_visual_prefix(prefix_config(acfg, mcfg, tower.clip_dim, {}))
    return random_model(mcfg, acfg, seed=cfg.model.seed, visual_prefix=prefix, vision=tower)


# ------------------------------------------------------------------------------------------------ acceptance 2
def test_caption_step_changes_only_visual_and_instruction_step_only_instruction(tiny_cfg):
    with Trainer(tiny_cfg("train.steps=4", "optim.caption.weight_decay=0.1",
                          "optim.instruction.weight_decay=0.1")) as t:
        groups = _groups(t.module)
        assert set(groups.values()) == {"visual", "instruction", "frozen"}
        for expected in ("caption", "instruction", "caption", "instruction"):
            before = _snapshot(t.module)
            rec = t.train_step()
            assert rec["stream"] == expected
            changed = _changed(before, t.module)
            group = "visual" if expected == "caption" else "instruction"
            assert changed, f"a {expected} step changed nothing"
            outside = {n for n in changed if groups[n] != group}
            assert not outside, f"a {expected} step changed {sorted(outside)}"
            for n, g in groups.items():
                if g == "frozen":
                    assert torch.equal(before[n], dict(t.module.named_parameters())[n]), n  # bit for bit
            if expected == "instruction":  # almost every instruction parameter moved
                assert len(changed) >= 0.9 * sum(g == "instruction" for g in groups.values())
        # optimizer state exists only for the trainable parameters, each in exactly one optimizer
        seen = []
        for st in t.streams.values():
            own = {id(p) for _, p in st.params}
            for p in st.optimizer.state:
                assert id(p) in own and p.requires_grad is (st.name == "instruction")
                seen.append(id(p))
        assert len(seen) == len(set(seen)) == len(t.trainable)
        frozen_ids = {id(p) for n, p in t.module.named_parameters() if groups[n] == "frozen"}
        assert not frozen_ids & set(seen)


# ------------------------------------------------------------------------------------------------ acceptance 3
def test_resume_continues_exactly(tiny_cfg):
    n, k = 8, 3
    straight = run(tiny_cfg(f"train.steps={n}", out="straight"))
    first = run(tiny_cfg(f"train.steps={n}", f"train.stop_at={k}", out="resumed"))
    assert first.steps == k and first.adapter is None
    assert first.last_checkpoint.name == f"step_{k:08d}"
    second = run(tiny_cfg(f"train.steps={n}", "train.resume=latest", out="resumed"))
    curve_a = [h["loss"] for h in straight.history if h["kind"] == "train"]
    curve_b = [h["loss"] for h in first.history + second.history if h["kind"] == "train"]
    assert len(curve_a) == len(curve_b) == n
    assert max(abs(a - b) for a, b in zip(curve_a, curve_b)) <= 1e-6, (curve_a, curve_b)
    a = load_adapter_file(straight.adapter).state
    b = load_adapter_file(second.adapter).state
    assert max((a[k_] - b[k_]).abs().max().item() for k_ in a) <= 1e-6
    # the resumed run's metrics file holds each step once
    lines = [json.loads(x) for x in open(second.adapter.parent / "metrics.jsonl")]
    assert [x["step"] for x in lines if x["kind"] == "train"] == list(range(1, n + 1))


def test_checkpoint_holds_only_trainable_state_and_is_atomic(tiny_cfg, tmp_path):
    cfg = tiny_cfg("train.steps=4", "train.save_every=2", "train.keep_last=1")
    result = run(cfg)
    root = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_00000004"]  # pruned, no *.tmp left
    assert latest_checkpoint(tmp_path / "run") == root / "step_00000004" == result.last_checkpoint
    state = load_checkpoint(result.last_checkpoint)
    with Trainer(tiny_cfg("train.steps=4", out="probe")) as t:
        assert set(state["params"]) == set(t.trainable)
        assert len(state["params"]) < len(dict(t.module.named_parameters()))
    assert state["step"] == 4 and set(state["optimizers"]) == {"caption", "instruction"}
    assert {"torch", "numpy", "python"} <= set(state["rng"][0])
    assert (result.last_checkpoint / "adapter" / "adapter.safetensors").is_file()
    with pytest.raises(CheckpointError, match="holds checkpoints of an earlier run: continue it with --resume"):
        Trainer(cfg)  # a fresh start must not silently mix with (and prune) an earlier run's checkpoints


def test_resume_refuses_a_different_layout(tiny_cfg):
    first = run(tiny_cfg("train.steps=2", out="a"))
    with pytest.raises(CheckpointError, match="trainable parameters differ"):
        Trainer(tiny_cfg("train.steps=4", "model.adapter=paper-text", "model.vision=null", "data.caption_weight=0",
                         f"train.resume={first.last_checkpoint}", out="b"))


# ------------------------------------------------------------------------------------------------ NaN / inf
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_cfg):
    cfg = tiny_cfg("train.steps=6")
    with Trainer(cfg) as t:
        for _ in range(2):
            t.train_step()
        good = t.save()
        before = {n: p.detach().clone() for n, p in t.trainable.items()}
        with torch.no_grad():  # corrupt one instruction parameter (what an exploding update would leave behind)
            next(p for n, p in t.trainable.items() if n.endswith("attention_norm.weight")).fill_(float("nan"))
        with pytest.raises(NonFiniteError) as err:
            t.train()
        # nothing was updated by the failed step: the visual parameters are still the good ones
        assert all(torch.equal(before[n], p) for n, p in t.trainable.items() if "visual" in n)
    msg = str(err.value)
    assert "step 3 (caption batch): the loss is nan" in msg and str(good) in msg and "--resume" in msg
    state = load_checkpoint(good)  # kept and readable
    assert all(torch.isfinite(v).all() for v in state["params"].values())
    assert latest_checkpoint(cfg.train.out_dir) == good


def test_inf_learning_rate_is_caught(tiny_cfg):
    with Trainer(tiny_cfg("train.steps=4")) as t:
        for g in t.streams["caption"].optimizer.param_groups:
            g["base_lr"] = float("inf")
        with pytest.raises(NonFiniteError, match=r"step 1 \(caption batch\): the update made parameters NaN/inf "
                                                 r"\(first: llm\.layers\.0\.attention\.visual_gate\)"
                                                 r".*no checkpoint was written yet"):
            t.train_step()  # the caption update writes inf/nan into the visual parameters
        with pytest.raises(NonFiniteError, match="no checkpoint was written"):
            t.save()


# ------------------------------------------------------------------------------------------------ release recipe
def test_release_two_stage_recipe(tiny_cfg, synth, tmp_path):
    prefix = "model.visual_prefix={embed_dim: 16, depth: 1, num_heads: 2}"
    pre_cfg = tiny_cfg("model.adapter=release-bias", prefix, "train.stage=pretrain", "data.instruction_weight=0",
                       "train.steps=3", out="pretrain")
    with Trainer(pre_cfg) as t:
        kinds = adapter_kinds(t.module)
        before = _snapshot(t.module)
        for _ in range(3):
            assert t.train_step()["stream"] == "caption"
        changed_kinds = {kinds[n] for n in _changed(before, t.module)}
        assert changed_kinds == {"visual_proj", "prompt", "prompt_gate"}
    pre = run(pre_cfg)
    llava = f"{{format: llava, path: '{synth.llava}', image_root: '{synth.root / 'images'}'}}"
    fin_cfg = tiny_cfg("model.adapter=release-bias", prefix, "train.stage=finetune", "data.caption_weight=0",
                       f"model.init_from={pre.adapter}", "train.steps=3",
                       f"data.instruction=[{llava}, {{format: alpaca, path: '{synth.alpaca}'}}]", out="finetune")
    with Trainer(fin_cfg) as t:
        kinds = adapter_kinds(t.module)
        start = {n: p.detach().clone() for n, p in t.module.named_parameters()}
        stage1 = load_adapter_file(pre.adapter).state
        assert torch.equal(start["llm.layers.3.attention.gate"], stage1["layers.3.attention.gate"])  # init_from
        seen = []
        clip = t._clip_tokens
        t._clip_tokens = lambda pixels: (seen.append(pixels), clip(pixels))[1]
        for _ in range(3):
            assert t.train_step()["stream"] == "instruction"
        assert any(px is not None for px in seen)  # LLaVA rows reach the model with their images
        changed_kinds = {kinds[n] for n in _changed(start, t.module)}
        assert changed_kinds == {"bias", "norm"}


# ------------------------------------------------------------------------------------------------ precision etc.
def test_bf16_autocast_with_a_low_precision_frozen_base(tiny_cfg):
    with Trainer(tiny_cfg("model.dtype=bfloat16", "train.precision=bf16", "train.steps=2")) as t:
        assert t.module.llm.layers[0].attention.wq.weight.dtype == torch.bfloat16  # frozen base stays bf16
        assert all(p.dtype == torch.float32 for p in t.trainable.values())  # master weights
        before = _snapshot(t.module)
        for _ in range(2):
            assert torch.isfinite(torch.tensor(t.train_step()["loss"]))
        assert _changed(before, t.module)


def test_gradient_checkpointing_gives_the_same_step(tiny_cfg):
    losses = []
    for flag in ("false", "true"):
        with Trainer(tiny_cfg(f"model.gradient_checkpointing={flag}", "train.steps=2", out=f"gc_{flag}")) as t:
            losses.append([t.train_step()["loss"] for _ in range(2)] +
                          [p.detach().clone() for p in t.trainable.values()])
    assert losses[0][:2] == pytest.approx(losses[1][:2], abs=1e-6)
    for a, b in zip(losses[0][2:], losses[1][2:]):
        assert torch.allclose(a, b, atol=1e-6)


def _step_grads(cfg, steps: int = 2) -> tuple[list[float], list[dict[str, torch.Tensor]], dict]:
    """Train ``steps`` steps; the losses, every optimizer step's gradients (as the optimizer sees them), params."""
    seen: list[dict[str, torch.Tensor]] = []
    with Trainer(cfg) as t:
        names = {id(p): n for n, p in t.trainable.items()}
        for st in t.streams.values():
            st.optimizer.register_step_pre_hook(lambda opt, *_: seen.append(
                {names[id(p)]: p.grad.clone() for g in opt.param_groups for p in g["params"] if p.grad is not None}))
        losses = [t.train_step()["loss"] for _ in range(steps)]
        return losses, seen, {n: p.detach().clone() for n, p in t.trainable.items()}


def test_grad_accumulation_equals_a_bigger_micro_batch(tiny_cfg):
    la, ga, pa = _step_grads(tiny_cfg("train.steps=2", "train.micro_batch=4", "train.grad_accum=1", out="mb4"))
    lb, gb, pb = _step_grads(tiny_cfg("train.steps=2", "train.micro_batch=2", "train.grad_accum=2", out="mb2x2"))
    # the same rows per step (2 micro-batches of 2 = the first 4 rows of the epoch's permutation)
    assert la == pytest.approx(lb, abs=1e-6)
    # the claim itself: the accumulated gradient is the big micro-batch's gradient (measured 1.5e-8 apart)
    assert len(ga) == len(gb) == 2
    for a, b in zip(ga, gb):
        assert a.keys() == b.keys()
        assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-7
    # after Adam, parameters agree to rounding: Adam divides by the gradient's own magnitude, so elements with
    # tiny gradients amplify summation-order noise (1.07e-6 seen on w2.scale with AVX-512); wk.bias, whose true
    # gradient is exactly 0, is pure noise and is left out
    exact = [k for k in pa if not k.endswith("attention.wk.bias")]
    assert len(exact) < len(pa)
    assert max((pa[k] - pb[k]).abs().max().item() for k in exact) <= 1e-5


def test_module_entry_trains_and_resumes(synth, tmp_path, capsys):
    from training.cli import main

    from .conftest import tiny_overrides

    args = ["tiny-cpu", *tiny_overrides(synth, tmp_path / "cli", "train.steps=4")]
    assert main([*args, "train.stop_at=2"]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    assert main(args) == 2  # a fresh start over the earlier checkpoints is refused ...
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0  # ... --resume continues it
    out = capsys.readouterr().out
    assert "trained 4 steps" in out and "adapter:" in out


def test_loss_on_selected_positions_equals_the_full_logits_loss(tiny_cfg):
    """The trainer computes logits only where a target is (the prompt's positions have none): loss and gradients
    equal those of the full (B, T, vocab) logits."""
    import torch.nn.functional as F

    from training.data import IGNORE_INDEX

    with Trainer(tiny_cfg()) as trainer:
        module = trainer.module
        torch.manual_seed(0)
        tokens = torch.randint(0, 200, (2, 24))
        targets = torch.full((2, 24), IGNORE_INDEX)
        targets[0, 17:] = torch.randint(0, 200, (7,))
        targets[1, 20:22] = torch.randint(0, 200, (2,))
        params = [p for n, p in module.named_parameters() if n.endswith(("bias", "scale"))]
        assert params
        for p in params:
            p.requires_grad_(True)

        def loss_and_grads(full: bool):
            if full:
                logits = module(tokens, None)
                loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX,
                                       reduction="sum")
            else:
                loss = trainer._token_loss(tokens, targets, None)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            return loss.detach(), grads

        want, want_g = loss_and_grads(True)
        got, got_g = loss_and_grads(False)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        for a, b in zip(got_g, want_g):
            if a is None or b is None:
                assert a is None and b is None
            else:
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
