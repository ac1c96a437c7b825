"""Training checkpoints: only what a run cannot rebuild from its config — trainable parameters (by name), optimizer
and schedule states, the step, each data stream's position, and every rank's RNG states.

Layout: ``<out_dir>/checkpoints/step_00000120/state.pt`` (+ ``adapter/``, the adapter in the inference format, so
any checkpoint can be evaluated with ``core_model.load_model(adapter=...)``) and ``<out_dir>/checkpoints/latest``
(the name of the newest complete checkpoint). A checkpoint is written into ``step_X.tmp`` and renamed into place,
and ``latest`` is replaced atomically, so a crash mid-write never leaves a half-written checkpoint that resume
would pick up. Files are read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .errors import CheckpointError

log = logging.getLogger(__name__)

FORMAT = "lav2-train-state"
VERSION = 1
STATE = "state.pt"
LATEST = "latest"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def checkpoints_root(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def rng_state() -> dict[str, Any]:
    """This process's RNG states in weights_only-loadable types."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(out_dir: str | Path, step: int, state: dict[str, Any],
                    write_extra: Callable[[Path], None] | None = None) -> Path:
    """Write ``state`` (plus whatever ``write_extra(tmp_dir)`` adds) as checkpoint ``step``; returns its path."""
    root = checkpoints_root(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f"step_{step:08d}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    torch.save({"format": FORMAT, "version": VERSION, "step": step, **state}, tmp / STATE)
    if write_extra is not None:
        write_extra(tmp)
    _fsync_dir(tmp)
    if final.exists():  # re-saving a step (a rerun after an earlier crash): replace it as a whole
        old = root / f"step_{step:08d}.old"
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    pointer = root / (LATEST + ".tmp")
    pointer.write_text(final.name + "\n")
    os.replace(pointer, root / LATEST)
    _fsync_dir(root)
    return final


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    root = checkpoints_root(out_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))
             and (p / STATE).is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    root = checkpoints_root(out_dir)
    pointer = root / LATEST
    if pointer.is_file():
        cand = root / pointer.read_text().strip()
        if (cand / STATE).is_file():
            return cand
    found = list_checkpoints(out_dir)
    return found[-1] if found else None


def resolve_resume(spec: str, out_dir: str | Path) -> Path:
    """``latest`` (the newest checkpoint in ``out_dir``) or a checkpoint directory / its state.pt."""
    if spec in ("latest", "auto", "true", "True"):
        found = latest_checkpoint(out_dir)
        if found is None:
            raise CheckpointError(f"--resume: no checkpoint in {checkpoints_root(out_dir)}; start without --resume "
                                  "or point it at a checkpoint directory")
        return found
    p = Path(spec).expanduser()
    if p.is_file() and p.name == STATE:
        p = p.parent
    if not (p / STATE).is_file():
        raise CheckpointError(f"--resume {spec}: not a training checkpoint (expected {p / STATE})")
    return p


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        state = torch.load(p / STATE, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - zip/pickle errors vary
        raise CheckpointError(f"cannot read training checkpoint {p / STATE}: {e}") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{p / STATE} is not a training checkpoint of this project")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(f"{p / STATE} has format version {state['version']}; this library reads up to "
                              f"{VERSION}: upgrade llama-adapter-v2")
    return state


def prune_checkpoints(out_dir: str | Path, keep_last: int, protect: Path | None = None) -> None:
    """Delete all but the newest ``keep_last`` checkpoints (never ``protect``); ``keep_last <= 0`` keeps all."""
    if keep_last <= 0:
        return
    found = list_checkpoints(out_dir)
    for p in found[:-keep_last]:
        if protect is not None and p.resolve() == protect.resolve():
            continue
        shutil.rmtree(p, ignore_errors=True)
        log.debug("removed old checkpoint %s", p)
