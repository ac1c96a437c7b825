"""Reading weight files without running code from them, with one-line errors.

A ``.pt``/``.pth``/``.bin`` file is a pickle, and unpickling runs whatever the file says (a crafted checkpoint
executes its code before any error is shown). Every torch checkpoint in this project is read here:

* :func:`torch_load` — ``torch.load(weights_only=True)``: tensors and plain containers only. A file that needs
  more (Python objects, custom classes) is refused with a :class:`~core_model.errors.ModelLoadError` naming the
  offending global — unless the user vouches for that very file (below).
* :func:`read_torchscript_state` — the tensors of a TorchScript archive (OpenAI's ``ViT-L-14.pt``) read with a
  restricted unpickler: ``torch.jit.load`` would run the archive's TorchScript (its ``__setstate__`` methods run
  while loading).
* :func:`load_safetensors`, :func:`read_json` — the same one-line errors for truncated or malformed files.

Opt-in for a pickle you trust: ``LAV2_TRUSTED_WEIGHTS`` lists files (or directories) separated by ``os.pathsep``
(``:`` on Linux). Only a listed file that the safe reader refuses is unpickled in full (``weights_only=False``),
with a warning in the log. The detection expert honours the same variable (``tools.detection``).
"""
from __future__ import annotations

import io
import json
import logging
import os
import pickle
import re
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from .errors import ModelLoadError

log = logging.getLogger(__name__)

TRUST_ENV = "LAV2_TRUSTED_WEIGHTS"
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


# --------------------------------------------------------------------------------------------- trust
def trusted_paths() -> list[Path]:
    """The files and directories listed in ``LAV2_TRUSTED_WEIGHTS``."""
    raw = os.environ.get(TRUST_ENV, "")
    out = []
    for entry in raw.split(os.pathsep):
        entry = entry.strip()
        if not entry:
            continue
        if entry.lower() in ("1", "true", "yes", "on", "all", "*"):
            log.warning("%s lists the weight files you trust (paths separated by %r), it is not a switch; "
                        "ignoring %r", TRUST_ENV, os.pathsep, entry)
            continue
        out.append(Path(entry).expanduser().resolve())
    return out


def is_trusted(path: str | os.PathLike) -> bool:
    """Whether the user vouched for ``path`` in ``LAV2_TRUSTED_WEIGHTS`` (the file or a directory holding it)."""
    p = Path(path).expanduser().resolve()
    return any(p == t or t in p.parents for t in trusted_paths())


# --------------------------------------------------------------------------------------------- torch.load
def torch_load(path: str | os.PathLike, what: str = "checkpoint", *, mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; refusals and damage become one-line ModelLoadErrors."""
    p = Path(path)
    try:
        return torch.load(p, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        refused = _refused_global(e)
        if is_trusted(p):
            log.warning("%s: %s needs full unpickling (%s); loading it because %s lists it", p, what,
                        refused or "non-tensor objects", TRUST_ENV)
            try:
                return torch.load(p, map_location="cpu", weights_only=False)
            except Exception as e2:  # noqa: BLE001 - whatever a trusted pickle raises
                raise ModelLoadError(f"{p}: cannot read the {what} ({type(e2).__name__}: {_first_line(e2)})") from e2
        raise ModelLoadError(
            f"{p}: the {what} holds Python objects beyond tensors ({refused or _first_line(e)}), which could run "
            f"code while loading; it was not loaded. Re-save it as a plain state dict or safetensors, or, if you "
            f"trust this file, list it in {TRUST_ENV}={p}") from e
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as e:
        if isinstance(e, FileNotFoundError):
            raise ModelLoadError(f"{p}: no such file") from e
        raise ModelLoadError(f"{p}: not a readable torch {what} — empty, truncated or another format "
                             f"({type(e).__name__}: {_first_line(e)})") from e


def _refused_global(e: BaseException) -> str:
    m = _REFUSED_GLOBAL.search(str(e))
    return f"refused global {m.group(1)}" if m else ""


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).strip().splitlines()[:1]) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# --------------------------------------------------------------------------------------------- other formats
def load_safetensors(path: str | os.PathLike, what: str = "weights") -> dict[str, torch.Tensor]:
    """``safetensors.torch.load_file`` with a one-line error for a missing, truncated or foreign file."""
    from safetensors.torch import load_file

    p = Path(path)
    try:
        return load_file(str(p))
    except FileNotFoundError as e:
        raise ModelLoadError(f"{p}: no such file ({what})") from e
    except Exception as e:  # noqa: BLE001 - SafetensorError (a Rust exception type), OSError, ValueError ...
        raise ModelLoadError(f"{p}: not a readable safetensors file ({what}) — truncated or damaged? "
                             f"({_first_line(e)})") from e


def read_json(path: str | os.PathLike, what: str = "config") -> Any:
    """A JSON file, or a one-line ModelLoadError naming the file, the line and the column."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ModelLoadError(f"{p}: no such file ({what})") from e
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"{p}: invalid JSON in the {what} (line {e.lineno}, column {e.colno}: {e.msg})") from e
    except RecursionError:
        raise ModelLoadError(f"{p}: invalid JSON in the {what} (nested too deeply)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{p}: cannot read the {what} ({_first_line(e)})") from e


def json_object(path: str | os.PathLike, what: str = "config") -> dict[str, Any]:
    """:func:`read_json` that must be a JSON object."""
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: the {what} must be a JSON object, got {type(data).__name__}")
    return data


# --------------------------------------------------------------------------------------------- TorchScript
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _ScriptObject:
    """Stand-in for a TorchScript class instance: keeps its state, runs none of its code."""

    qualname = "?"

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: Any, stride: Any, *_: Any) -> torch.Tensor:
    return torch.as_strided(storage, tuple(size), tuple(stride), offset)


def _identity(value: Any, *_: Any) -> Any:
    return value


_TORCHSCRIPT_FUNCTIONS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("collections", "OrderedDict"): OrderedDict,
    ("torch.jit._pickle", "restore_type_tag"): _identity,
    ("torch.jit._pickle", "build_intlist"): _identity,
    ("torch.jit._pickle", "build_doublelist"): _identity,
    ("torch.jit._pickle", "build_boollist"): _identity,
    ("torch.jit._pickle", "build_tensorlist"): _identity,
}


class _TorchScriptUnpickler(pickle.Unpickler):
    """Builds plain data from ``data.pkl``: tensors, containers and inert stand-ins for script classes."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str, source: Path):
        super().__init__(io.BytesIO(data))
        self._archive, self._root, self._source = archive, root, source
        self._classes: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _TORCHSCRIPT_FUNCTIONS:
            return _TORCHSCRIPT_FUNCTIONS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "__torch__" or module.startswith("__torch__."):
            qualname = f"{module}.{name}"
            if qualname not in self._classes:
                self._classes[qualname] = type(name, (_ScriptObject,), {"qualname": qualname})
            return self._classes[qualname]
        raise pickle.UnpicklingError(f"refused global {module}.{name}")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, dtype, key, _location, numel = pid[:5]
        if not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError(f"unexpected storage type {dtype!r}")
        raw = bytearray(self._archive.read(f"{self._root}/data/{key}"))
        itemsize = torch.empty((), dtype=dtype).element_size()
        if len(raw) < int(numel) * itemsize:
            raise pickle.UnpicklingError(f"storage {key} is shorter than its {numel} elements")
        if dtype == torch.bool:
            return torch.frombuffer(raw, dtype=torch.uint8, count=int(numel)).to(torch.bool)
        return torch.frombuffer(raw, dtype=dtype, count=int(numel)) if numel else torch.empty(0, dtype=dtype)


def read_torchscript_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor attribute of a TorchScript archive's module tree, by dotted name (what ``state_dict()`` of
    ``torch.jit.load(path)`` holds, plus any tensor-typed attributes), without running the archive's code."""
    p = Path(path)
    try:
        with zipfile.ZipFile(p) as archive:
            pkl = next((n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1), None)
            if pkl is None:
                raise ModelLoadError(f"{p}: not a TorchScript archive (no <root>/data.pkl)")
            root = pkl.rsplit("/", 1)[0]
            order = f"{root}/byteorder"
            if order in archive.namelist() and archive.read(order).strip() not in (b"little", b""):
                raise ModelLoadError(f"{p}: big-endian TorchScript archives are not supported")
            obj = _TorchScriptUnpickler(archive.read(pkl), archive, root, p).load()
    except ModelLoadError:
        raise
    except (pickle.UnpicklingError, zipfile.BadZipFile, KeyError, EOFError, ValueError, RuntimeError, OSError) as e:
        raise ModelLoadError(f"{p}: not a readable TorchScript archive ({_first_line(e)})") from e
    state: dict[str, torch.Tensor] = {}
    _collect(obj, "", state, set())
    if not state:
        raise ModelLoadError(f"{p}: the TorchScript archive holds no tensors this reader can name")
    return state


def _collect(obj: Any, prefix: str, out: dict[str, torch.Tensor], seen: set[int]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    attrs = getattr(obj, "state", None) if isinstance(obj, _ScriptObject) else None
    if not isinstance(attrs, dict):
        return
    for name, value in attrs.items():
        if isinstance(value, torch.Tensor):
            out[prefix + str(name)] = value
        elif isinstance(value, _ScriptObject):
            _collect(value, f"{prefix}{name}.", out, seen)
