"""Typed exceptions of core_model. Every message says what to do next."""
from __future__ import annotations


class LAV2Error(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(LAV2Error, ValueError):
    """A configuration value is invalid or inconsistent."""


class ModelLoadError(LAV2Error):
    """A base model, adapter or vision checkpoint could not be found or read."""


class CheckpointMismatchError(ModelLoadError):
    """A checkpoint's keys or shapes do not match the model built from the config."""


class ContextLengthError(LAV2Error, ValueError):
    """Prompt tokens plus max_new_tokens exceed the model's context window."""


class ImageError(LAV2Error, ValueError):
    """An image input could not be opened safely (names the input)."""


class VisionUnavailableError(LAV2Error):
    """Images were given but no vision weights are configured, or the vision backend is missing."""


class KernelUnavailableError(ModelLoadError):
    """The packed-weight CPU kernels could not be built or loaded (no C compiler, unsupported platform)."""


class WeightsFormatError(LAV2Error, ValueError):
    """A packed (GGUF-block) weight was used where it cannot be: wrong device, shape or block type."""
