"""TrainConfig: presets == shipped YAML recipes, typed key=value overrides, clear errors, meta-device dry runs of
the 7B / 65B recipes (no weights), and the CLI entry points."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from core_model.errors import ConfigError
from training import PRESETS, load_config, train_preset
from training.cli import add_train_parser, cmd_train, main
from training.config import TrainConfig, apply_override, dump_yaml
from training.model import dry_run

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_shipped_yaml_recipes_equal_the_presets(name):
    path = CONFIGS / (name.replace("-", "_") + ".yaml")
    assert path.is_file(), f"missing recipe {path}"
    assert load_config(path).to_dict() == train_preset(name).to_dict()


def test_yaml_round_trip_and_preset_key(tmp_path):
    cfg = train_preset("paper-7b")
    (tmp_path / "full.yaml").write_text(dump_yaml(cfg))
    assert load_config(tmp_path / "full.yaml").to_dict() == cfg.to_dict()
    (tmp_path / "small.yaml").write_text("preset: tiny-cpu\ntrain: {steps: 7}\noptim: {caption: {lr: 3e-3}}\n")
    small = load_config(tmp_path / "small.yaml")
    assert small.train.steps == 7 and small.optim.caption.lr == 3e-3
    assert small.optim.instruction.lr == train_preset("tiny-cpu").optim.instruction.lr


def test_overrides_are_typed():
    cfg = load_config("tiny-cpu", ["train.steps=12", "optim.caption.lr=1e-4", "train.tensorboard=false",
                                   "model.vision=null", "data.caption_weight=0", "optim.caption.betas=[0.8, 0.9]",
                                   "data.instruction=[{format: alpaca, path: x.json}]", "train.sample_prompts=[hi]"])
    assert cfg.train.steps == 12 and isinstance(cfg.train.steps, int)
    assert cfg.optim.caption.lr == 1e-4  # "1e-4" is a string to YAML; the field type makes it a float
    assert cfg.train.tensorboard is False and cfg.model.vision is None
    assert cfg.optim.caption.betas == [0.8, 0.9]
    assert cfg.data.instruction[0].format == "alpaca" and cfg.data.instruction[0].path == "x.json"


@pytest.mark.parametrize("item, message", [
    ("train.stepz=3", r"'stepz' is not a field of train; valid: \[.*'steps'"),
    ("trian.steps=3", r"'trian' is not a field of the top level; valid: \['data', 'distributed', 'model'"),
    ("train.steps=many", r"train.steps must be an integer"),
    ("train.precision=fp8", r"train.precision must be one of \['fp32', 'bf16', 'fp16'\]"),
    ("train.steps", r"expected key=value"),
    ("data.instruction=[{format: alpaca, path: x, colour: red}]", r"unknown config key.*data.instruction\[0\].colour"),
])
def test_bad_overrides_say_what_is_valid(item, message):
    with pytest.raises(ConfigError, match=message):
        apply_override(TrainConfig(), item)


def test_unknown_yaml_key_lists_valid_keys(tmp_path):
    (tmp_path / "c.yaml").write_text("model: {base: random:tiny, adaptor: paper}\n")
    with pytest.raises(ConfigError, match=r"model.adaptor.*valid keys of model: \[.*'adapter'"):
        load_config(tmp_path / "c.yaml")


@pytest.mark.parametrize("overrides, message", [
    (["model.dtype=bfloat16"], "train.precision=bf16"),
    (["data.caption_weight=0", "data.instruction_weight=0"], "nothing to train"),
    (["optim.caption.lr=.inf"], "positive finite"),
    (["train.stage=pretrain"], "trains nothing with instruction batches"),
    (["train.stop_at=1000"], "train.stop_at"),
    (["train.stage=custom"], "needs train.caption_trains"),
    (["train.caption_trains=[visual, colour]"], "unknown group or kind 'colour'"),
])
def test_inconsistent_configs_are_rejected(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny-cpu", overrides)


def test_overlapping_groups_are_refused():
    cfg = load_config("tiny-cpu", ["train.stage=custom", "train.caption_trains=[visual, bias]",
                                   "train.instruction_trains=[instruction]"])
    with pytest.raises(ConfigError, match="must be disjoint"):
        dry_run(cfg)


def test_dry_run_paper_7b_on_meta_has_disjoint_streams():
    r = dry_run(train_preset("paper-7b"))
    cap, ins = r["streams"]["caption"], r["streams"]["instruction"]
    assert set(cap["by_kind"]) == {"visual_proj", "visual_gate"}
    assert set(ins["by_kind"]) == {"prompt", "prompt_gate", "bias", "scale", "norm"}
    assert r["groups"]["visual"] == cap["params"] and r["groups"]["instruction"] == ins["params"]
    assert r["groups"]["frozen"] == 6_738_149_376  # LLaMA-7B base, nothing of it trains


def test_dry_run_65b_bias_scale_norm_is_the_papers_14m():
    r = dry_run(train_preset("llama65b-bias-scale-norm"))
    ins = r["streams"]["instruction"]
    assert set(ins["by_kind"]) == {"bias", "scale", "norm"}
    assert 13.5e6 < ins["params"] < 14.5e6  # paper §4.1: "14M"
    assert "caption" not in r["streams"]


def test_dry_run_release_stages():
    pre = dry_run(train_preset("release-7b-pretrain"))["streams"]
    fin = dry_run(train_preset("release-7b-finetune"))["streams"]
    assert set(pre) == {"caption"} and set(pre["caption"]["by_kind"]) == {"visual_proj", "prompt", "prompt_gate"}
    assert set(fin) == {"instruction"} and set(fin["instruction"]["by_kind"]) == {"bias", "norm"}


def test_cli_registers_and_dry_runs(capsys):
    parser = argparse.ArgumentParser(prog="lav2")
    add_train_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", str(CONFIGS / "llama65b_bias_scale_norm.yaml"), "train.steps=5", "--dry-run"])
    assert args.func is cmd_train and args.overrides == ["train.steps=5"]
    assert cmd_train(args) == 0
    out = capsys.readouterr().out
    assert "instruction batches (weight 1) update 13,811,712 parameters" in out


def test_module_entry_prints_config_and_reports_errors_in_one_line(capsys):
    assert main(["tiny-cpu", "train.steps=3", "--print-config"]) == 0
    assert "steps: 3" in capsys.readouterr().out
    assert main(["tiny-cpu", "train.stepz=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("training: error: unknown config key") and err.count("\n") == 1


def test_training_never_imports_langchain():
    import subprocess
    import sys

    code = ("import sys, training, training.trainer, training.cli, training.data, training.model; "
            "bad = [m for m in sys.modules if m.startswith(('langchain', 'langgraph'))]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
