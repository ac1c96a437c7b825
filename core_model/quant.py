"""GGUF weights kept in their quantised blocks, with float32 matrix products that read the blocks directly.

Why: SmolLM2-135M dequantised to float32 is 540 MB, and batch-1 decode streams all of it for every token, so
decode is bound by memory bandwidth. In the GGUF's own Q4_1/Q8_0 blocks the same weights are about 100 MB.
:class:`PackedWeight` holds one matrix as those blocks; its products (``kernels/gguf_blocks.c``) compute
``x @ W^T`` in float32 with exactly the GGUF's weight values (``d*q + m`` per 32 weights) — the activations are
not quantised, only the summation order differs from a BLAS product of the dequantised matrix.

**Opt-in int8 activations** (``load_model(..., activations="int8")`` or ``LAV2_ACTIVATIONS=int8``): for Q4_0,
Q4_1 and Q8_0 matrices the kernels quantise each activation row per block of 32 to int8 with a float32 scale and
form integer dot products (AVX-512 VNNI where the CPU has it, else AVX2 or plain C, all giving the same numbers),
as llama.cpp does. Faster at batch > 1; not exact (docs/batching.md states the accuracy). The default stays fp32.

The C file is compiled once per machine with the system's C compiler (``CC``, else ``cc``/``gcc``/``clang``) into
``<cache_dir>/kernels`` and loaded with ctypes. Without a compiler :func:`kernels` raises
:class:`KernelUnavailableError`; ``load_model(weights="auto")`` then falls back to dense float32 weights.
Packed weights are CPU-only and frozen (inference, or adapter training through them: gradients flow to the
activations, never to the blocks).
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import KernelUnavailableError, WeightsFormatError

log = logging.getLogger(__name__)

#: GGUF block type -> (GGML type id used by the C kernels, weights per block, bytes per block)
BLOCK_TYPES: dict[str, tuple[int, int, int]] = {
    "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20), "Q8_0": (8, 32, 34),  # the classic types
    "Q4_K": (12, 256, 144), "Q6_K": (14, 256, 210),  # K-quants: Q4_K_M / Q4_K_S files are mostly these two
}
SOURCE = Path(__file__).with_name("kernels") / "gguf_blocks.c"
_ABI = 4
#: activation formats of the packed products: fp32 (default, exact weight values) or int8 (opt-in, see above)
ACTIVATIONS = ("fp32", "int8")
#: block types with an int8-activation kernel; other packed types keep fp32 activations under activations="int8"
INT8_TYPES = ("Q4_0", "Q4_1", "Q8_0")
_COMPILE_TIMEOUT_S = 180


# ----------------------------------------------------------------------------------------------- the C kernels
@dataclass(frozen=True)
class Kernels:
    """The loaded shared library (see ``kernels/gguf_blocks.c`` for the contracts)."""

    lib: ctypes.CDLL
    path: Path
    flags: tuple[str, ...]

    @property
    def parallel(self) -> bool:
        return "-fopenmp" in self.flags

    @property
    def int8_impl(self) -> str:
        """How this build forms int8 dot products: ``"vnni"``, ``"avx2"`` or ``"c"`` (the same results)."""
        return {2: "vnni", 1: "avx2"}.get(self.lib.lav2_int8_impl(), "c")


_kernels: Kernels | None = None
_failure: KernelUnavailableError | None = None
_build_lock = threading.Lock()


def _compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc:
        return shutil.which(cc) or cc
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _machine_tag() -> str:
    """What ``-march=native`` depends on: a library built on one CPU must not be loaded on another."""
    tag = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags", "Features", "CPU part")):
                tag += "|" + line
                if line.startswith(("flags", "Features")):
                    break
    except OSError:
        tag += "|" + platform.processor()
    return tag


_FLAG_SETS = (  # best first; each later set drops what a compiler or platform may not support
    ("-O3", "-march=native", "-fopenmp"),
    ("-O3", "-fopenmp"),
    ("-O3", "-march=native"),
    ("-O3",),
)


def _build(cc: str, out_dir: Path, extra_flags: tuple[str, ...] = (),
           source_path: Path = SOURCE) -> tuple[Path, tuple[str, ...]]:
    source = source_path.read_bytes()
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise KernelUnavailableError(f"the C compiler {cc!r} does not run ({e})") from e
    errors = []
    for flag_set in _FLAG_SETS:
        flags = flag_set + tuple(extra_flags)
        key = hashlib.sha256(b"|".join([source, cc.encode(), version.encode(), " ".join(flags).encode(),
                                        _machine_tag().encode()])).hexdigest()[:16]
        lib = out_dir / f"gguf_blocks-{key}.so"
        if lib.is_file():
            return lib, flags
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = lib.with_name(lib.name + f".tmp{os.getpid()}")
        cmd = [cc, *flags, "-shared", "-fPIC", "-std=gnu11", "-o", str(tmp), str(source_path)]
        log.info("building the GGUF block kernels (once per machine): %s", " ".join(cmd))
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=_COMPILE_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as e:
            errors.append(f"{' '.join(flags)}: {e}")
            continue
        if res.returncode == 0:
            os.replace(tmp, lib)  # atomic publish: a half-written library is never loaded
            return lib, flags
        tmp.unlink(missing_ok=True)
        last = ((res.stderr or res.stdout).strip().splitlines() or [f"exit status {res.returncode}"])[-1]
        errors.append(f"{' '.join(flags)}: {last}")
    raise KernelUnavailableError(f"{cc} could not build {source_path}: " + "; ".join(errors))


def _load(path: Path, flags: tuple[str, ...]) -> Kernels:
    lib = ctypes.CDLL(str(path))
    lib.lav2_abi_version.restype = ctypes.c_int
    if lib.lav2_abi_version() != _ABI:
        raise KernelUnavailableError(f"{path}: ABI {lib.lav2_abi_version()} != {_ABI}; delete it to rebuild")
    i64, ptr, i32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    lib.lav2_mm.argtypes = [i32, ptr, i64, i64, ptr, i64, ptr, i32, i32]
    lib.lav2_dequant.argtypes = [i32, ptr, i64, i64, ptr, i32]
    lib.lav2_rows.argtypes = [i32, ptr, i64, i64, ptr, i64, ptr]
    lib.lav2_decode.argtypes = [ptr, i64, ptr, ptr, ptr, ptr, ptr, ptr, i64, ptr, i32]  # see core_model/fastpath.py
    lib.lav2_int8_impl.argtypes = []
    lib.lav2_pointwise.argtypes = [i32, ptr, i64, ptr]
    for fn in (lib.lav2_mm, lib.lav2_dequant, lib.lav2_rows, lib.lav2_decode, lib.lav2_int8_impl, lib.lav2_pointwise):
        fn.restype = ctypes.c_int
    return Kernels(lib, path, flags)


def build_library(out_dir: Path, *, cc: str | None = None, extra_flags: tuple[str, ...] = (),
                  source: Path = SOURCE) -> tuple[Path, tuple[str, ...]]:
    """Compile (or reuse) the kernels' shared library in ``out_dir`` with the model's flags: (its path, the flags
    used). ``source``: another version of the C file (bench/products.py compares builds side by side)."""
    cc = cc or _compiler()
    if cc is None:
        raise KernelUnavailableError("no C compiler found (set CC, or install gcc or clang)")
    return _build(cc, out_dir, tuple(extra_flags), Path(source))


def build_kernels(out_dir: Path, *, cc: str | None = None, extra_flags: tuple[str, ...] = ()) -> Kernels:
    """Compile (or reuse) and load the kernels in ``out_dir``. ``extra_flags`` (e.g. ``-DLAV2_NO_FLOAT16`` for the
    portable half-precision path) are for tests; :func:`kernels` is what the model uses."""
    path, flags = build_library(out_dir, cc=cc, extra_flags=extra_flags)
    try:
        return _load(path, flags)
    except OSError as e:
        raise KernelUnavailableError(f"{path} could not be loaded ({e})") from e


def kernels() -> Kernels:
    """The compiled block kernels, building them on first use. Raises :class:`KernelUnavailableError`."""
    global _kernels, _failure
    if _kernels is not None:
        return _kernels
    with _build_lock:
        if _kernels is not None:
            return _kernels
        if _failure is not None:  # do not retry a failed build in every load of this process
            raise _failure
        from .loading import cache_dir

        try:
            _kernels = build_kernels(cache_dir() / "kernels")
        except KernelUnavailableError as e:
            _failure = KernelUnavailableError(
                f"packed GGUF weights need the block kernels, which could not be built: {e}. Install a C "
                "compiler (e.g. apt-get install gcc) or load with weights='dense'")
            raise _failure from e
        if not _kernels.parallel:
            log.warning("the GGUF block kernels were built without OpenMP: packed products use one thread")
        return _kernels


def kernels_available() -> bool:
    try:
        kernels()
    except KernelUnavailableError:
        return False
    return True


def _check(rc: int, what: str) -> None:
    if rc != 0:  # the Python side validates shapes first, so this is a bug or an out-of-range token id
        raise WeightsFormatError(f"{what} failed in the block kernels (code {rc})")


# ----------------------------------------------------------------------------------------------- packed weights
_INT8_MAX_K = 8192  # I8_MAX_K in the C file


def check_activations(activations: str | None) -> str:
    """``activations`` validated; None means ``LAV2_ACTIVATIONS`` from the environment, else ``"fp32"``."""
    from .errors import ConfigError

    source = "activations"
    if activations is None:
        activations, source = os.environ.get("LAV2_ACTIVATIONS", "") or "fp32", "LAV2_ACTIVATIONS"
    if activations not in ACTIVATIONS:
        raise ConfigError(f"{source} must be one of {ACTIVATIONS}, got {activations!r}")
    return activations


class PackedWeight:
    """One frozen (out_features, in_features) weight matrix in its GGUF blocks (a type of :data:`BLOCK_TYPES`).

    ``blocks``: uint8 (out_features, in_features // weights_per_block * bytes_per_block), the GGUF tensor data as
    stored. ``activations``: ``"fp32"`` (default) or ``"int8"`` (set with :meth:`set_activations`).
    """

    __slots__ = ("kind", "blocks", "shape", "_type", "activations")

    def __init__(self, kind: str, blocks: torch.Tensor, shape: tuple[int, int]):
        if kind not in BLOCK_TYPES:
            raise WeightsFormatError(f"block type {kind!r} is not supported (supported: {sorted(BLOCK_TYPES)})")
        n, k = (int(s) for s in shape)
        type_id, per_block, nbytes = BLOCK_TYPES[kind]
        if k % per_block:
            raise WeightsFormatError(f"{kind} rows must be a multiple of {per_block} wide, got {k}")
        if blocks.dtype != torch.uint8 or tuple(blocks.shape) != (n, k // per_block * nbytes):
            raise WeightsFormatError(f"{kind} blocks for a {n}x{k} matrix must be uint8 of shape "
                                     f"{(n, k // per_block * nbytes)}, got {blocks.dtype} {tuple(blocks.shape)}")
        if blocks.device.type != "cpu":
            raise WeightsFormatError("packed GGUF weights live on the CPU; load with weights='dense' for "
                                     f"{blocks.device.type}")
        self.kind, self.blocks, self.shape, self._type = kind, blocks.contiguous(), (n, k), type_id
        self.activations = "fp32"

    def __repr__(self) -> str:
        act = "" if self.activations == "fp32" else f", {self.activations} activations"
        return f"PackedWeight({self.kind}, {self.shape[0]}x{self.shape[1]}, {self.nbytes / 2**20:.1f} MiB{act})"

    @property
    def int8_supported(self) -> bool:
        return self.kind in INT8_TYPES and self.shape[1] <= _INT8_MAX_K

    def set_activations(self, activations: str) -> bool:
        """Use ``"fp32"`` or ``"int8"`` activations in this matrix's products. Returns False (and keeps fp32) when
        its block type has no int8 kernel (see :data:`INT8_TYPES`)."""
        activations = check_activations(activations)
        if activations == "int8" and not self.int8_supported:
            self.activations = "fp32"
            return False
        self.activations = activations
        return True

    @property
    def nbytes(self) -> int:
        return self.blocks.numel()

    def numel(self) -> int:
        return self.shape[0] * self.shape[1]

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            raise WeightsFormatError(f"packed GGUF weights compute on the CPU but the input is on {x.device}; "
                                     "load with weights='dense' to run on an accelerator")
        if x.shape[-1] != self.shape[1]:
            raise WeightsFormatError(f"input width {x.shape[-1]} does not match the weight's {self.shape[1]}")
        return x.reshape(-1, self.shape[1]).to(torch.float32).contiguous()

    def dequantize(self) -> torch.Tensor:
        """The float32 matrix (equal to ``gguf.quants.dequantize`` of the same blocks)."""
        out = torch.empty(self.shape, dtype=torch.float32)
        self._dequantize_into(out)
        return out

    def _dequantize_into(self, out: torch.Tensor) -> None:
        n, k = self.shape
        _check(kernels().lib.lav2_dequant(self._type, self.blocks.data_ptr(), n, k, out.data_ptr(),
                                          torch.get_num_threads()), "dequantise")

    def _product(self, x2: torch.Tensor) -> torch.Tensor:
        """(M, K) float32 contiguous -> (M, N), straight from the blocks for any M (decode and prefill use one
        kernel, so a row's values do not depend on how many rows came with it)."""
        n, k = self.shape
        m = x2.shape[0]
        y = torch.empty(m, n, dtype=torch.float32)
        _check(kernels().lib.lav2_mm(self._type, self.blocks.data_ptr(), n, k, x2.data_ptr(), m, y.data_ptr(),
                                     torch.get_num_threads(), int(self.activations == "int8")), "matrix product")
        return y

    def linear(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``x @ W^T (+ bias)`` in float32, returned in ``x``'s dtype. Differentiable in ``x`` and ``bias``."""
        if torch.is_grad_enabled() and x.requires_grad:
            y = _PackedLinear.apply(x, self)
        else:
            y = self._product(self._input(x)).view(*x.shape[:-1], self.shape[0]).to(x.dtype)
        return y if bias is None else y + bias

    def embedding(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` of the matrix, float32 (an embedding lookup)."""
        n, k = self.shape
        flat = ids.reshape(-1).to(device="cpu", dtype=torch.int64).contiguous()
        out = torch.empty(flat.numel(), k, dtype=torch.float32)
        rc = kernels().lib.lav2_rows(self._type, self.blocks.data_ptr(), n, k, flat.data_ptr(), flat.numel(),
                                     out.data_ptr())
        if rc == -3:
            raise IndexError(f"token id out of range for an embedding of {n} rows")
        _check(rc, "embedding lookup")
        return out.view(*ids.shape, k)


class _PackedLinear(torch.autograd.Function):
    """Gradients through a frozen packed matrix: dL/dx = dL/dy @ W (W dequantised for the backward only)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: PackedWeight) -> torch.Tensor:  # type: ignore[override]
        ctx.w, ctx.x_dtype = w, x.dtype
        return w._product(w._input(x)).view(*x.shape[:-1], w.shape[0]).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        w: PackedWeight = ctx.w
        g = grad.reshape(-1, w.shape[0]).to(torch.float32) @ w.dequantize()
        return g.view(*grad.shape[:-1], w.shape[1]).to(ctx.x_dtype), None


# ----------------------------------------------------------------------------------------------- modules
def packed_weight(module: torch.nn.Module) -> PackedWeight | None:
    """The packed weight a linear/embedding module uses instead of ``.weight``, or None."""
    return getattr(module, "packed_weight", None)


def attach_packed(module: torch.nn.Module, weight: PackedWeight) -> None:
    """Make ``module`` (a linear or embedding layer) use ``weight``; its dense ``.weight`` is removed."""
    expected = None
    if isinstance(module, torch.nn.Linear):
        expected = (module.out_features, module.in_features)
    elif isinstance(module, torch.nn.Embedding):
        expected = (module.num_embeddings, module.embedding_dim)
    if expected is None:
        raise WeightsFormatError(f"{type(module).__name__} cannot use a packed weight (only linear/embedding)")
    if tuple(weight.shape) != expected:
        raise WeightsFormatError(f"packed weight {weight.shape} does not fit {type(module).__name__} {expected}")
    module.weight = None  # type: ignore[assignment]  # a registered parameter slot set to None
    module.packed_weight = weight  # type: ignore[assignment]


def set_activations(model: torch.nn.Module, activations: str) -> dict[str, int]:
    """Use ``activations`` (``"fp32"`` or ``"int8"``) in every packed matrix of ``model``. Returns {block type:
    matrices that keep fp32 activations because their type has no int8 kernel} (empty when all switched).
    Raises :class:`~core_model.errors.ConfigError` for int8 on a model without packed Q4_0/Q4_1/Q8_0 matrices."""
    from .errors import ConfigError

    activations = check_activations(activations)
    kept: dict[str, int] = {}
    switched = 0
    for module in model.modules():
        w = packed_weight(module)
        if w is None:
            continue
        if w.set_activations(activations):
            switched += 1
        else:
            kept[w.kind] = kept.get(w.kind, 0) + 1
    if activations == "int8":
        if not switched:
            raise ConfigError("activations='int8' needs packed GGUF matrices of type " + "/".join(INT8_TYPES)
                              + (f"; this model has {sorted(kept)}" if kept else
                                 "; this model has none (load a .gguf on the CPU with weights='packed' or 'auto')"))
        if kept:
            log.info("int8 activations in %d packed matrices (%s dot products); %s keep fp32 activations (no int8 "
                     "kernel for that type)", switched, kernels().int8_impl,
                     ", ".join(f"{n} {k}" for k, n in sorted(kept.items())))
        else:
            log.info("int8 activations in all %d packed matrices (%s dot products)", switched, kernels().int8_impl)
    return kept


def packed_summary(model: torch.nn.Module) -> dict[str, int] | None:
    """{block type: number of matrices} of a model with packed weights, or None when it has none."""
    kinds: dict[str, int] = {}
    for module in model.modules():
        w = packed_weight(module)
        if w is not None:
            kinds[w.kind] = kinds.get(w.kind, 0) + 1
    return kinds or None
