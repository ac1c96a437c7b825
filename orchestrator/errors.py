"""Typed errors of the orchestrator; all are ``LAV2Error`` so the ``lav2`` CLI prints them as one line."""
from __future__ import annotations

from core_model.errors import LAV2Error


class OrchestratorError(LAV2Error):
    """Base class of the orchestrator's errors."""


class UnknownExpertError(OrchestratorError, ValueError):
    """An expert name that is not in the pipeline's expert set (the message lists the known ones)."""


class BatchInputError(OrchestratorError, ValueError):
    """A batch input or output file that cannot be used (names the file and line)."""


class EvalError(OrchestratorError, ValueError):
    """``lav2 eval`` options that cannot work together (the message says which to change)."""


class EvalDataError(EvalError):
    """An evaluation set that cannot be used: missing file, bad JSON, a row without image/question/answers, or an
    image that does not exist (names the file and line)."""


class ReaderDataError(OrchestratorError, ValueError):
    """Bad arguments for the reader adapter's training set (``lav2 reader-data``)."""
