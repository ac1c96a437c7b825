"""Vision side of LLaMA-Adapter V2: a frozen CLIP image encoder, the trainable visual prefix, a feature cache.

Pipeline (paper §4.3 and the release)::

    PIL images --preprocess--> pixels --CLIPVisionEncoder (frozen)--> CLIP tokens (B, 1+grid², clip_dim)
               --ReleaseVisualPrefix | LinearVisualPrefix (trainable, kind "visual_proj")--> (B, T, llm_dim)

* :class:`CLIPVisionEncoder` returns *all* tokens (CLS + patches) after ``ln_post`` and ``proj``, exactly the
  release's ``clip_encode_image`` but over open_clip (the release used OpenAI's ``clip`` package and cv2,
  feeding BGR; here preprocessing is open_clip's RGB transform).
* :class:`ReleaseVisualPrefix` names its submodules like the release, so official checkpoint keys
  (``clip_proj.weight``, ``visual_blocks.0.attn.qkv.weight``, ...) load 1:1.
* :class:`LinearVisualPrefix` is the paper's simpler projection (20 tokens).
* :class:`VisionTower` = encoder + :class:`ImageFeatureCache`: the same image is encoded once.

open_clip and timm are the optional ``[vision]`` extra: they are imported lazily and their absence raises
:class:`~core_model.errors.VisionUnavailableError`. No CLIP weights ship with the project; offline, loading a
pretrained tag fails fast with :class:`~core_model.errors.ModelLoadError` explaining how to use a local file.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import os
import socket
import threading
import urllib.parse
import uuid
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Hashable, Literal, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .config import dataclass_from_dict
from .errors import ConfigError, ImageError, ModelLoadError, VisionUnavailableError
from .images import ImageSource, image_digest, open_image

log = logging.getLogger(__name__)

VISUAL_PROJ = "visual_proj"  # the adapter kind of every trainable vision-prefix parameter (see core_model.groups)
RELEASE_CLIP = ("ViT-L-14", "openai")  # what the release loads with clip.load("ViT-L/14")
#: Top-level module names of the release's visual prefix; official checkpoint keys start with one of these.
RELEASE_PREFIX_MODULES = ("clip_proj", "clip_proj_norm", "visual_query", "visual_blocks", "visual_proj",
                          "visual_proj_norm")
_INSTALL_HINT = "install the vision extra: pip install 'llama-adapter-v2[vision]' (open_clip_torch, timm)"
_OFFLINE_ENV = ("LAV2_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


# ===================================================================================== lazy optional imports


def _open_clip():
    try:
        import open_clip
    except ImportError as e:  # pragma: no cover - the test venv has open_clip
        raise VisionUnavailableError(f"open_clip is not installed: {_INSTALL_HINT}") from e
    return open_clip


def _timm_block():
    try:
        from timm.models.vision_transformer import Block
    except ImportError as e:  # pragma: no cover - the test venv has timm
        raise VisionUnavailableError(f"timm is not installed (the release's visual blocks): {_INSTALL_HINT}") from e
    return Block


# ============================================================================================ CLIP encoder


class CLIPVisionEncoder(nn.Module):
    """Frozen open_clip ViT image tower returning every token (CLS + patches) after ``ln_post`` and ``proj``.

    Output shape ``(B, 1 + grid_h * grid_w, embed_dim)``. For the release's CLIP ViT-L/14 (224 px, patch 14)
    that is ``(B, 257, 768)`` — the tensor the release feeds into ``clip_proj``. The text tower is dropped to
    save memory. The module stays in eval mode even if a parent calls ``.train()`` (frozen weights, and patch
    dropout must stay off), and has no trainable parameters.

    Build it with :meth:`from_pretrained` (open_clip name + tag), :meth:`from_local` (a checkpoint on disk),
    :meth:`from_config` (random weights, tests/benchmarks) or :meth:`openai_vit_l14` (the release's CLIP).
    """

    def __init__(self, visual: nn.Module, preprocess_cfg: Optional[Mapping[str, Any]] = None, *,
                 name: str = "open_clip") -> None:
        super().__init__()
        _check_supported_tower(visual)
        self.visual = visual
        self.visual.requires_grad_(False)
        self.name = name
        #: Distinguishes this encoder's features in a shared cache (two random inits share a name, not weights).
        self.identity = f"{name}#{uuid.uuid4().hex[:12]}"
        self.preprocess_cfg = _preprocess_cfg(preprocess_cfg, visual.image_size)
        oc = _open_clip()
        cfg = oc.transform.PreprocessCfg(**self.preprocess_cfg)
        self._transform = oc.transform.image_transform_v2(cfg, is_train=False)
        self.eval()

    # ------------------------------------------------------------------ shape facts
    @property
    def embed_dim(self) -> int:
        """Width of every output token (``proj`` output; the tower width if ``proj`` is None)."""
        proj = self.visual.proj
        return int(proj.shape[1]) if proj is not None else int(self.visual.positional_embedding.shape[-1])

    @property
    def num_tokens(self) -> int:
        """CLS + grid patches, e.g. 257 for ViT-L/14 at 224 px, 50 for ViT-B/32."""
        gh, gw = self.visual.grid_size
        return 1 + gh * gw

    @property
    def image_size(self) -> tuple[int, int]:
        h, w = self.visual.image_size
        return int(h), int(w)

    @property
    def device(self) -> torch.device:
        return self.visual.conv1.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    def train(self, mode: bool = True) -> "CLIPVisionEncoder":
        """Always eval: CLIP is frozen in LLaMA-Adapter V2 (and patch dropout must not switch on)."""
        return super().train(False)

    # ------------------------------------------------------------------ compute
    def preprocess(self, images: Sequence[ImageSource]) -> torch.Tensor:
        """open_clip's eval transform (resize, centre crop, normalise) on RGB images -> float32 (B, 3, H, W).

        Anything that is not already an RGB ``PIL.Image`` goes through :func:`core_model.images.open_image`
        first, so transparency is composited on white (open_clip alone would composite on black).
        """
        rgb = [im if isinstance(im, Image.Image) and im.mode == "RGB" else open_image(im) for im in images]
        if not rgb:
            raise ImageError("no images given to preprocess")
        return torch.stack([self._transform(im) for im in rgb])

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (B, 3, H, W) -> all CLIP tokens (B, 1+grid², embed_dim), in the encoder's dtype and device.

        Same steps as the release's ``clip_encode_image``: conv1 -> flatten -> prepend CLS -> + positions ->
        ln_pre -> transformer -> ln_post on *every* token -> @ proj. (``no_grad`` rather than ``inference_mode``:
        inference tensors could not be saved for the trainable prefix's backward pass.)
        """
        v = self.visual
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, *self.image_size):
            raise ConfigError(f"expected pixels of shape (B, 3, {self.image_size[0]}, {self.image_size[1]}), got "
                              f"{tuple(pixels.shape)}; use encoder.preprocess(images)")
        x = v.conv1(pixels.to(device=self.device, dtype=self.dtype))  # (B, width, gh, gw)
        x = x.flatten(2).transpose(1, 2)  # (B, gh*gw, width)
        cls = v.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        x = v.ln_pre(x)
        x = v.transformer(x)  # open_clip's Transformer takes (B, L, D) and handles its own batch_first layout
        x = v.ln_post(x)
        return x @ v.proj if v.proj is not None else x

    def encode_images(self, images: Sequence[ImageSource]) -> torch.Tensor:
        """Preprocess and encode in one call (no cache; see :class:`VisionTower`)."""
        return self(self.preprocess(images))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_pretrained(cls, model_name: str, pretrained: Optional[str] = None, cache_dir: Optional[str] = None,
                        *, probe_timeout: float = 3.0) -> "CLIPVisionEncoder":
        """open_clip architecture + weights tag (``"ViT-L-14", "openai"``), or an ``hf-hub:`` / ``local-dir:`` name.

        Cached weights are used without touching the network. Otherwise the download host is probed first
        (bounded by ``probe_timeout`` even if DNS hangs) so an offline machine gets a :class:`ModelLoadError`
        in seconds instead of minutes of hub retries. ``LAV2_OFFLINE=1`` / ``HF_HUB_OFFLINE=1`` skip the probe.
        ``pretrained`` may also be a checkpoint file path (then this is :meth:`from_local`).
        """
        oc = _open_clip()
        if model_name.startswith("local-dir:"):
            return cls.from_local(model_name)
        if model_name.startswith("hf-hub:"):
            return _from_hf_hub(cls, oc, model_name, cache_dir, probe_timeout)
        arch = model_name.replace("/", "-")  # the release's "ViT-L/14" spelling
        if oc.get_model_config(arch) is None:
            raise ConfigError(f"unknown open_clip model {model_name!r}; see open_clip.list_models()")
        if pretrained is None:
            raise ConfigError(f"no weights given for {arch!r}: pass a tag (one of "
                              f"{oc.list_pretrained_tags_by_model(arch)}) or a file path; for random weights "
                              f"(tests, benchmarks) use CLIPVisionEncoder.from_config({arch!r})")
        if os.path.isfile(os.path.expanduser(pretrained)):
            return cls.from_local(pretrained, model_name=arch)
        tag_cfg = oc.get_pretrained_cfg(arch, pretrained)
        if not tag_cfg:
            raise ConfigError(f"unknown pretrained tag {pretrained!r} for {arch!r}; known tags: "
                              f"{oc.list_pretrained_tags_by_model(arch)} (or pass a checkpoint file path)")
        quick_gelu = bool(tag_cfg.get("quick_gelu", False))  # OpenAI weights were trained with QuickGELU
        tag_preprocess = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
        cached = _cached_weights(tag_cfg, cache_dir)
        if cached is not None:
            log.info("CLIP %s/%s: using cached weights %s", arch, pretrained, cached)
            return cls.from_local(cached, model_name=arch, quick_gelu=quick_gelu, preprocess_cfg=tag_preprocess)
        qg = ", quick_gelu=True" if quick_gelu else ""
        _require_network(_download_host(tag_cfg), f"CLIP weights {arch}/{pretrained}", probe_timeout,
                         f"copy {_weights_source(tag_cfg)} onto this machine and load it with "
                         f"CLIPVisionEncoder.from_local('/path/to/checkpoint', model_name={arch!r}{qg})")
        model = _create_model(oc, arch, pretrained=pretrained, cache_dir=cache_dir, force_quick_gelu=quick_gelu)
        return cls(model.visual, model.visual.preprocess_cfg, name=f"{arch}/{pretrained}")

    @classmethod
    def from_local(cls, path: str | os.PathLike, model_name: Optional[str] = None, *,
                   quick_gelu: bool = False, preprocess_cfg: Optional[Mapping[str, Any]] = None,
                   ) -> "CLIPVisionEncoder":
        """Weights on disk: a folder (optionally ``local-dir:``-prefixed) with ``open_clip_config.json`` and a
        checkpoint, an OpenAI TorchScript archive (e.g. ``~/.cache/clip/ViT-L-14.pt`` left by the release's
        ``clip`` package; architecture read from the weights), or any open_clip/OpenAI state-dict file plus
        ``model_name`` (its open_clip architecture, e.g. ``"ViT-L-14"``; ``quick_gelu=True`` for OpenAI weights
        — or use the ``-quickgelu`` model name).

        Nothing in the file runs: TorchScript archives are read by a restricted unpickler that only takes their
        tensors (``torch.jit.load`` would run the archive's code), state dicts with ``weights_only=True``. A
        checkpoint that needs full unpickling is refused unless listed in ``LAV2_TRUSTED_WEIGHTS``.
        """
        oc = _open_clip()
        text = os.fspath(path)
        if text.startswith("local-dir:"):
            text = text[len("local-dir:"):]
        p = Path(text).expanduser()
        if not p.exists():
            raise ModelLoadError(f"CLIP checkpoint {p} does not exist")
        if p.is_dir():
            return _from_local_dir(cls, oc, p)
        if _is_torchscript_archive(p):
            return _from_openai_jit(cls, oc, p)
        if model_name is None:
            raise ConfigError(f"{p}: pass model_name= (the open_clip architecture of this checkpoint, e.g. "
                              "'ViT-L-14'), or use a folder with open_clip_config.json")
        arch = model_name.replace("/", "-")
        if oc.get_model_config(arch) is None:
            raise ConfigError(f"unknown open_clip model {model_name!r}; see open_clip.list_models()")
        model = _create_model(oc, arch, pretrained=str(p), force_quick_gelu=quick_gelu,
                              force_preprocess_cfg=dict(preprocess_cfg or {}))
        return cls(model.visual, model.visual.preprocess_cfg, name=f"{arch}@{p.name}")

    @classmethod
    def from_config(cls, model_cfg: Mapping[str, Any] | str, image_size: Optional[int] = None, *,
                    quick_gelu: bool = False, seed: Optional[int] = None) -> "CLIPVisionEncoder":
        """Random weights from an open_clip model config (a dict like ``open_clip_config.json``'s ``model_cfg``,
        or a built-in name such as ``"ViT-B-32"``). For tests and benchmarks: no download, no text tower."""
        oc = _open_clip()
        if isinstance(model_cfg, str):
            name = model_cfg.replace("/", "-")
            resolved = oc.get_model_config(name)
            if resolved is None:
                raise ConfigError(f"unknown open_clip model {model_cfg!r}; see open_clip.list_models()")
        else:
            name, resolved = "custom", copy.deepcopy(dict(model_cfg))
        if "vision_cfg" not in resolved or "embed_dim" not in resolved:
            raise ConfigError("an open_clip model config needs 'embed_dim' and 'vision_cfg'")
        vision_cfg = dict(resolved["vision_cfg"])
        if image_size is not None:
            vision_cfg["image_size"] = image_size
        if "timm_model_name" in vision_cfg or isinstance(vision_cfg.get("layers"), (list, tuple)):
            raise ConfigError(_UNSUPPORTED_TOWER.format(kind="timm" if "timm_model_name" in vision_cfg
                                                        else "ModifiedResNet"))
        if seed is not None:
            torch.manual_seed(seed)
        visual = _build_vision_tower(oc, resolved["embed_dim"], vision_cfg,
                                     quick_gelu or bool(resolved.get("quick_gelu", False)))
        log.info("CLIP %s: random weights (from_config); fine for tests and benchmarks, useless for answers", name)
        return cls(visual, resolved.get("preprocess_cfg"), name=f"{name}(random)")

    @classmethod
    def openai_vit_l14(cls, cache_dir: Optional[str] = None) -> "CLIPVisionEncoder":
        """The release's CLIP: OpenAI ViT-L/14 at 224 px, QuickGELU; output (B, 257, 768) feeds ``clip_proj``."""
        return cls.from_pretrained(*RELEASE_CLIP, cache_dir=cache_dir)


_UNSUPPORTED_TOWER = ("{kind} vision towers are not supported: the visual prefix needs per-patch tokens from an "
                      "open_clip VisionTransformer (e.g. ViT-B-32, ViT-L-14)")


def _check_supported_tower(visual: nn.Module) -> None:
    oc = _open_clip()
    if not isinstance(visual, oc.transformer.VisionTransformer):
        kind = "ModifiedResNet" if type(visual).__name__ == "ModifiedResNet" else type(visual).__name__
        raise ConfigError(_UNSUPPORTED_TOWER.format(kind=kind))
    if getattr(visual, "attn_pool", None) is not None:
        raise ConfigError("attentional-pooling ViTs (CoCa-style) are not supported: their ln_post/proj act on "
                          "pooled queries, not on the patch tokens the visual prefix needs")


def _preprocess_cfg(cfg: Optional[Mapping[str, Any]], image_size) -> dict[str, Any]:
    """open_clip's PreprocessCfg fields only, with the tower's own image size (the single source of truth)."""
    oc = _open_clip()
    fields = {f.name for f in dataclasses.fields(oc.transform.PreprocessCfg)}
    out = dataclasses.asdict(oc.transform.PreprocessCfg())
    out.update({k: v for k, v in dict(cfg or {}).items() if k in fields})
    out["size"] = tuple(image_size) if isinstance(image_size, (list, tuple)) else image_size
    out["mode"] = "RGB"
    return out


def _build_vision_tower(oc, embed_dim: int, vision_cfg: dict, quick_gelu: bool) -> nn.Module:
    """Only the image tower (a ViT-L text tower would waste ~0.5 GB); falls back to building the full CLIP."""
    builder = getattr(oc.model, "_build_vision_tower", None)
    try:
        if builder is not None:
            return builder(embed_dim, vision_cfg, quick_gelu, None)
        return oc.CLIP(embed_dim=embed_dim, vision_cfg=vision_cfg, text_cfg={"layers": 1, "width": 64, "heads": 1,
                                                                             "vocab_size": 8, "context_length": 4},
                       quick_gelu=quick_gelu).visual
    except (TypeError, ValueError, AssertionError, ZeroDivisionError) as e:
        raise ConfigError(f"invalid open_clip vision config {vision_cfg}: {e}") from e


def _create_model(oc, name: str, **kwargs) -> nn.Module:
    """open_clip.create_model with its many failure types turned into ModelLoadError.

    Checkpoints are read with ``weights_only=True`` (open_clip's own default, made explicit); only a file the user
    lists in ``LAV2_TRUSTED_WEIGHTS`` may be unpickled in full.
    """
    import pickle

    from .safe_load import TRUST_ENV, is_trusted

    source = kwargs.get("pretrained") or (name[len("local-dir:"):] if name.startswith("local-dir:") else None)
    trusted = bool(source) and os.path.exists(source) and is_trusted(source)
    try:
        return oc.create_model(name, precision="fp32", device="cpu", weights_only=not trusted, **kwargs)
    except pickle.UnpicklingError as e:
        raise ModelLoadError(f"open_clip could not load {source or name!r} safely: the checkpoint holds Python "
                             "objects beyond tensors, which could run code while loading, so it was not loaded. "
                             f"Re-save it as a state dict or safetensors, or, if you trust it, list it in "
                             f"{TRUST_ENV}") from e
    except (RuntimeError, OSError, ValueError, KeyError) as e:
        raise ModelLoadError(f"open_clip could not build {name!r} ({kwargs.get('pretrained') or ''}): {e}. "
                             "Check that the checkpoint matches the architecture (model_name).") from e


def _from_local_dir(cls, oc, folder: Path) -> CLIPVisionEncoder:
    if not (folder / "open_clip_config.json").is_file():
        raise ModelLoadError(f"{folder}: no open_clip_config.json; pass a checkpoint file and model_name instead")
    if not any(f.suffix in _WEIGHT_SUFFIXES for f in folder.iterdir()):
        raise ModelLoadError(f"{folder}: open_clip_config.json found but no weights (*.safetensors, *.bin, *.pth); "
                             "for random weights use CLIPVisionEncoder.from_config(...)")
    model = _create_model(oc, f"local-dir:{folder}")
    return cls(model.visual, model.visual.preprocess_cfg, name=f"local-dir:{folder.name}")


def _is_torchscript_archive(path: Path) -> bool:
    """OpenAI's original CLIP files are TorchScript zips (``<root>/constants.pkl``, ``<root>/code/...``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in zf.namelist())


def _from_openai_jit(cls, oc, path: Path) -> CLIPVisionEncoder:
    """Read the weights out of the TorchScript archive (no code of it runs) and rebuild a plain open_clip model."""
    from .safe_load import read_torchscript_state

    state = read_torchscript_state(path)
    # the text causal mask (a buffer when open_clip itself was scripted) is rebuilt; scalars are not weights
    for key in ("attn_mask", "input_resolution", "context_length", "vocab_size"):
        state.pop(key, None)
    try:
        model = oc.model.build_model_from_openai_state_dict(state, quick_gelu=True, cast_dtype=None).float()
    except (RuntimeError, KeyError, ValueError) as e:
        raise ModelLoadError(f"{path}: not a readable OpenAI CLIP TorchScript archive ({e})") from e
    return cls(model.visual, {}, name=f"openai-jit@{path.name}")


# ------------------------------------------------------------------------------- weights cache & network


def _cached_weights(tag_cfg: Mapping[str, Any], cache_dir: Optional[str]) -> Optional[str]:
    """Where open_clip would find this tag's weights *without* a download, or None."""
    if tag_cfg.get("file") and os.path.isfile(tag_cfg["file"]):
        return tag_cfg["file"]
    hub = tag_cfg.get("hf_hub")
    if hub:
        found = _hf_cached(*_split_hub(hub), cache_dir=cache_dir)
        if found:
            return found
    url = tag_cfg.get("url")
    if url:
        # open_clip and the release's `clip` package both cache URL downloads in ~/.cache/clip/<basename>
        local = Path(cache_dir or os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if local.is_file():
            return str(local)
    return None


def _split_hub(hub: str) -> tuple[str, str]:
    repo, filename = os.path.split(hub)
    return repo, filename or "open_clip_pytorch_model.bin"


def _hf_cached(repo: str, filename: str, cache_dir: Optional[str]) -> Optional[str]:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    candidates = [filename]
    if filename.endswith((".bin", ".pth")):  # open_clip prefers a safetensors twin when one exists
        candidates.insert(0, "open_clip_model.safetensors" if filename == "open_clip_pytorch_model.bin"
                          else filename[:-4] + ".safetensors")
    for name in candidates:
        found = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def _download_host(tag_cfg: Mapping[str, Any]) -> str:
    """The host open_clip will contact: the HF hub when the tag has an hf_hub entry (preferred), else the URL's."""
    if tag_cfg.get("hf_hub"):
        return urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or ""
    return urllib.parse.urlsplit(tag_cfg.get("url", "")).hostname or ""


def _weights_source(tag_cfg: Mapping[str, Any]) -> str:
    parts = []
    if tag_cfg.get("hf_hub"):
        repo, filename = _split_hub(tag_cfg["hf_hub"])
        parts.append(f"https://huggingface.co/{repo} (file {filename})")
    if tag_cfg.get("url"):
        parts.append(tag_cfg["url"])
    return " or ".join(parts) or "the open_clip model zoo"


def _offline_by_env() -> Optional[str]:
    for var in _OFFLINE_ENV:
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return var
    return None


def _host_reachable(host: str, timeout: float) -> tuple[bool, str]:
    """TCP connect to host:443 in a daemon thread so a hanging DNS lookup cannot exceed ``timeout``."""
    result: dict[str, Any] = {}

    def probe() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            result["ok"] = True
        except Exception as e:  # noqa: BLE001 - a daemon thread must not die loudly; any failure = unreachable
            result["error"] = str(e) or type(e).__name__

    thread = threading.Thread(target=probe, name=f"lav2-probe-{host}", daemon=True)
    thread.start()
    thread.join(timeout)
    if result.get("ok"):
        return True, ""
    return False, result.get("error", f"no answer within {timeout:g}s")


def _require_network(host: str, what: str, timeout: float, fix: str) -> None:
    """Raise a ModelLoadError that says what to do, quickly, when a download cannot possibly work."""
    env = _offline_by_env()
    if env:
        reason = f"{env} is set"
    else:
        ok, reason = _host_reachable(host, timeout)
        if ok:
            return
        reason = f"{host} is unreachable: {reason}"
    raise ModelLoadError(
        f"{what} are not cached on this machine and cannot be downloaded ({reason}). No CLIP weights ship with "
        f"this project or its dependencies, so vision needs a checkpoint you provide: {fix} (or use a "
        "'local-dir:/folder' holding open_clip_config.json and the weights). Without vision, pass no images."
    )


def _from_hf_hub(cls, oc, model_name: str, cache_dir: Optional[str], timeout: float) -> CLIPVisionEncoder:
    repo = model_name[len("hf-hub:"):]
    config = _hf_cached(repo, "open_clip_config.json", cache_dir)
    if config is not None:
        folder = Path(config).parent  # an HF snapshot folder: config + weights side by side
        if any(f.suffix in _WEIGHT_SUFFIXES for f in folder.iterdir()):
            return _from_local_dir(cls, oc, folder)
    _require_network(_download_host({"hf_hub": repo + "/"}), f"CLIP weights {model_name}", timeout,
                     f"download the files of https://huggingface.co/{repo} into a folder and load it with "
                     "CLIPVisionEncoder.from_local('local-dir:/that/folder')")
    model = _create_model(oc, model_name, cache_dir=cache_dir)
    return cls(model.visual, model.visual.preprocess_cfg, name=model_name)


# ============================================================================================ visual prefix


@dataclass
class VisualPrefixConfig:
    """How CLIP tokens become visual prompt tokens for the LLM.

    ``kind="release"``: the official 7B multimodal model (``clip_proj`` + 10 ``visual_query`` tokens through
    8 ViT blocks of width 768). ``kind="linear"``: the paper's simple projection to 20 tokens.
    ``embed_dim``, ``depth``, ``num_heads``, ``mlp_ratio`` only matter for ``"release"``.
    """

    kind: Literal["release", "linear"] = "release"
    clip_dim: int = 768
    llm_dim: int = 4096
    num_tokens: int = 10
    embed_dim: int = 768
    depth: int = 8
    num_heads: int = 16
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        if self.kind not in ("release", "linear"):
            raise ConfigError(f"VisualPrefixConfig.kind must be 'release' or 'linear', not {self.kind!r}")
        for name in ("clip_dim", "llm_dim", "num_tokens", "embed_dim", "depth", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"VisualPrefixConfig.{name} must be a positive int, not {value!r}")
        if self.kind == "release" and self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
        if self.mlp_ratio <= 0:
            raise ConfigError(f"mlp_ratio must be positive, not {self.mlp_ratio}")

    @classmethod
    def release_7b(cls, llm_dim: int = 4096) -> "VisualPrefixConfig":
        """The released ``llama_adapter_v2_multimodal7b`` prefix (CLIP ViT-L/14 tokens, 10 queries, 8 blocks)."""
        return cls(kind="release", clip_dim=768, llm_dim=llm_dim, num_tokens=10)

    @classmethod
    def paper(cls, clip_dim: int, llm_dim: int, num_tokens: int = 20) -> "VisualPrefixConfig":
        """Paper §4.3: a learnable projection to 20 visual prompt tokens."""
        return cls(kind="linear", clip_dim=clip_dim, llm_dim=llm_dim, num_tokens=num_tokens)

    @classmethod
    def tiny(cls, clip_dim: int = 16, llm_dim: int = 32, kind: Literal["release", "linear"] = "release",
             ) -> "VisualPrefixConfig":
        """Seconds-fast sizes for tests (pairs with a tiny CLIP config)."""
        return cls(kind=kind, clip_dim=clip_dim, llm_dim=llm_dim, num_tokens=4, embed_dim=32, depth=2,
                   num_heads=2)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "VisualPrefixConfig":
        return dataclass_from_dict(cls, dict(data))


class VisualProjParams:
    """Mixin: every *direct* parameter of the module is an adapter parameter of kind ``"visual_proj"``.

    core_model.groups collects groups from these declarations (the visual group, paper §4.2) instead of
    matching names.
    """

    def adapter_params(self) -> dict[str, str]:
        params = self._parameters  # type: ignore[attr-defined]
        return {name: VISUAL_PROJ for name, p in params.items() if p is not None}


class VisualLinear(VisualProjParams, nn.Linear):
    """nn.Linear whose weight and bias belong to the visual group."""


class VisualLayerNorm(VisualProjParams, nn.LayerNorm):
    """nn.LayerNorm (eps 1e-5, as the release's timm 0.3.2 blocks) whose parameters belong to the visual group."""


class VisualEmbedding(VisualProjParams, nn.Embedding):
    """nn.Embedding whose table belongs to the visual group."""


_DECLARING_TWIN: dict[type, type] = {nn.Linear: VisualLinear, nn.LayerNorm: VisualLayerNorm,
                                     nn.Embedding: VisualEmbedding}


def _declare_visual_params(root: nn.Module) -> None:
    """Make every parameter-owning submodule of ``root`` declare its parameters as ``"visual_proj"``.

    timm builds the Linear layers inside its blocks itself, so they cannot be constructed as VisualLinear.
    Switching their class to the twin that only adds ``adapter_params`` keeps the weights, the state-dict keys
    and the math unchanged. An unknown parameter owner is an error, so nothing trainable goes undeclared.
    """
    for name, module in root.named_modules():
        if isinstance(module, VisualProjParams) or not any(True for _ in module.parameters(recurse=False)):
            continue
        twin = _DECLARING_TWIN.get(type(module))
        if twin is None:
            raise ConfigError(f"{name} ({type(module).__name__}) owns parameters but has no visual_proj "
                              "declaration; add it to _DECLARING_TWIN")
        module.__class__ = twin


class ReleaseVisualPrefix(VisualProjParams, nn.Module):
    """The release's visual prefix, with the release's submodule names so official keys load 1:1.

    clip tokens (B, N, clip_dim) -> clip_proj + clip_proj_norm -> prepend ``query_len`` visual_query tokens
    -> ``depth`` timm ViT blocks -> first ``query_len`` tokens -> visual_proj + visual_proj_norm
    -> (B, query_len, llm_dim).
    """

    def __init__(self, cfg: VisualPrefixConfig) -> None:
        super().__init__()
        Block = _timm_block()
        self.config = cfg
        self.query_len = cfg.num_tokens
        self.clip_proj = VisualLinear(cfg.clip_dim, cfg.embed_dim)
        self.clip_proj_norm = VisualLayerNorm(cfg.embed_dim)
        self.visual_query = VisualEmbedding(cfg.num_tokens, cfg.embed_dim)
        # norm_layer: modern timm defaults to LayerNorm(eps=1e-6); the release's timm 0.3.2 used nn.LayerNorm
        # (eps=1e-5). Keeping 1e-5 keeps the official weights' numerics.
        self.visual_blocks = nn.ModuleList(
            Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, qkv_bias=True, norm_layer=VisualLayerNorm)
            for _ in range(cfg.depth)
        )
        _declare_visual_params(self.visual_blocks)
        self.visual_proj = VisualLinear(cfg.embed_dim, cfg.llm_dim)
        self.visual_proj_norm = VisualLayerNorm(cfg.llm_dim)

    def forward(self, clip_tokens: torch.Tensor) -> torch.Tensor:
        x = self.clip_proj_norm(self.clip_proj(clip_tokens.to(self.clip_proj.weight.dtype)))
        queries = self.visual_query.weight.unsqueeze(0).expand(x.shape[0], -1, -1)
        x = torch.cat([queries, x], dim=1)
        for block in self.visual_blocks:
            x = block(x)
        return self.visual_proj_norm(self.visual_proj(x[:, : self.query_len]))


class LinearVisualPrefix(VisualProjParams, nn.Module):
    """The paper's simple projection: LayerNorm + Linear(clip_dim, llm_dim), then ``num_tokens`` learned queries.

    The queries read the projected CLIP tokens through ONE parameter-free cross-attention
    (``softmax(q kᵀ/√d) v`` with k = v = the projected tokens). Why this and not adaptive pooling: it works for
    any token count (50 for ViT-B/32, 257 for ViT-L/14), each output token can pick the image regions it needs
    (adaptive pooling would average fixed runs of the flattened patch grid, mixing unrelated rows), and it adds
    only ``num_tokens × llm_dim`` parameters on top of the projection — no Q/K/V matrices of llm_dim² each.
    Queries start N(0, 1) like the release's ``visual_query`` embedding, so the outputs differ from step one.
    """

    def __init__(self, cfg: VisualPrefixConfig) -> None:
        super().__init__()
        self.config = cfg
        self.num_tokens = cfg.num_tokens
        self.norm = VisualLayerNorm(cfg.clip_dim)
        self.proj = VisualLinear(cfg.clip_dim, cfg.llm_dim)
        self.queries = nn.Parameter(torch.randn(cfg.num_tokens, cfg.llm_dim))

    def forward(self, clip_tokens: torch.Tensor) -> torch.Tensor:
        kv = self.proj(self.norm(clip_tokens.to(self.proj.weight.dtype)))  # (B, N, llm_dim)
        q = self.queries.unsqueeze(0).expand(kv.shape[0], -1, -1)  # (B, T, llm_dim)
        return F.scaled_dot_product_attention(q, kv, kv)


def build_visual_prefix(cfg: VisualPrefixConfig) -> nn.Module:
    """ReleaseVisualPrefix or LinearVisualPrefix, by ``cfg.kind``."""
    if cfg.kind == "release":
        return ReleaseVisualPrefix(cfg)
    if cfg.kind == "linear":
        return LinearVisualPrefix(cfg)
    raise ConfigError(f"unknown visual prefix kind {cfg.kind!r}")


def release_prefix_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The visual-prefix entries of an official checkpoint's ``'model'`` dict, ready for
    ``ReleaseVisualPrefix.load_state_dict`` (names already match; ``llama.*``/``adapter_query`` are left out)."""
    return {k: v for k, v in state_dict.items() if k.split(".", 1)[0] in RELEASE_PREFIX_MODULES}


# ============================================================================================ feature cache


class ImageFeatureCache:
    """Bounded, thread-safe LRU of CLIP token tensors, keyed by (image digest, encoder identity, dtype).

    The orchestrator may run the model from several threads (a question and its expert tools); one lock
    guards the dict and the counters. Entries are detached copies (a row of a batch tensor would otherwise keep
    the whole batch alive), stored on ``device`` (CPU by default: GPU memory is for the LLM; ``None`` keeps
    them where they were computed).
    """

    def __init__(self, max_entries: int = 64, device: Optional[str | torch.device] = "cpu") -> None:
        if max_entries < 0:
            raise ConfigError(f"max_entries must be >= 0, not {max_entries}")
        self.max_entries = max_entries
        self.device = torch.device(device) if device is not None else None
        self._entries: "OrderedDict[Hashable, torch.Tensor]" = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Optional[torch.Tensor]:
        """The cached tensor (marked most recently used), or None; counts a hit or a miss."""
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: torch.Tensor) -> None:
        """Store a detached copy, evicting the least recently used entries beyond ``max_entries``."""
        if self.max_entries == 0:
            return
        stored = value.detach().to(self.device) if self.device is not None else value.detach()
        stored = stored.clone() if stored.data_ptr() == value.data_ptr() else stored.contiguous()
        with self._lock:
            self._entries[key] = stored
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"hits": self.hits, "misses": self.misses, "size": len(self._entries),
                    "max_entries": self.max_entries}


# ============================================================================================ vision tower


class VisionTower(nn.Module):
    """Frozen CLIP encoder + feature cache: ``encode(images) -> (B, N, clip_dim)``, each distinct image once.

    Cache misses are encoded together in one batch; the output batch is then assembled from the cache in input
    order (duplicates within a call are encoded once). Output is on the encoder's device and dtype. It is an
    ``nn.Module`` so ``model.to(device)`` moves the encoder with the rest of the model; its parameters are all
    frozen (group "frozen"). The trainable prefix is separate (:func:`build_visual_prefix`).
    """

    def __init__(self, encoder: CLIPVisionEncoder, cache: Optional[ImageFeatureCache] = None,
                 cache_size: int = 64) -> None:
        super().__init__()
        self.encoder = encoder
        self.cache = cache if cache is not None else ImageFeatureCache(cache_size)

    @property
    def clip_dim(self) -> int:
        return self.encoder.embed_dim

    @property
    def num_tokens(self) -> int:
        return self.encoder.num_tokens

    def encode(self, images: Sequence[ImageSource]) -> torch.Tensor:
        rgb = [im if isinstance(im, Image.Image) and im.mode == "RGB" else open_image(im) for im in images]
        if not rgb:
            raise ImageError("no images given to encode")
        tag = (self.encoder.identity, str(self.encoder.dtype))
        keys = [(image_digest(im), *tag) for im in rgb]
        found: dict[Hashable, torch.Tensor] = {}
        todo: dict[Hashable, Image.Image] = {}
        for key, im in zip(keys, rgb):
            if key in found or key in todo:
                continue
            hit = self.cache.get(key)
            if hit is not None:
                found[key] = hit
            else:
                todo[key] = im
        if todo:
            feats = self.encoder(self.encoder.preprocess(list(todo.values())))
            for key, feat in zip(todo, feats):
                found[key] = feat
                self.cache.put(key, feat)
        device = self.encoder.device
        return torch.stack([found[k].to(device) for k in keys])

    def forward(self, images: Sequence[ImageSource]) -> torch.Tensor:
        return self.encode(images)


__all__ = [
    "CLIPVisionEncoder",
    "ImageFeatureCache",
    "LinearVisualPrefix",
    "RELEASE_CLIP",
    "RELEASE_PREFIX_MODULES",
    "ReleaseVisualPrefix",
    "VISUAL_PROJ",
    "VisionTower",
    "VisualEmbedding",
    "VisualLayerNorm",
    "VisualLinear",
    "VisualPrefixConfig",
    "VisualProjParams",
    "build_visual_prefix",
    "release_prefix_state_dict",
]
