"""Typed errors of the training package (all are :class:`core_model.errors.LAV2Error`, so ``lav2`` prints one line).

Every message names what went wrong (file and record, step, checkpoint) and what to do next.
"""
from __future__ import annotations

from core_model.errors import ConfigError, LAV2Error

__all__ = ["CheckpointError", "ConfigError", "DataError", "DistributedError", "NonFiniteError", "TrainingError"]


class TrainingError(LAV2Error):
    """Base class of errors raised by the training loop."""


class DataError(TrainingError, ValueError):
    """A data file or one of its records is malformed (the message names the file and the record)."""


class CheckpointError(TrainingError):
    """A training checkpoint is missing, unreadable, or does not fit the current run."""


class NonFiniteError(TrainingError):
    """The loss or the gradients became NaN/inf; the last good checkpoint is kept and named in the message."""


class DistributedError(TrainingError):
    """The distributed setup (torchrun environment, backend, strategy) is inconsistent."""
