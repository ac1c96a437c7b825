"""Visual QA over a Ray Data dataset, for inputs bigger than one machine.

An actor pool does the work: each actor builds one :class:`~orchestrator.pipeline.VisualQAPipeline` — its model is
loaded once per actor, and its batching engine decodes the rows of a block together while upcoming rows run their
experts. Ray Data streams blocks of rows to the actors and the results back.

Python (any ``ray.data`` source and sink)::

    import ray
    from orchestrator.ray_batch import vqa_dataset

    ray.init()                                           # or ray.init("ray://head:10001")
    ds = ray.data.read_parquet("s3://bucket/questions/")  # columns: image, question[, id]
    vqa_dataset(ds, num_actors=4).write_parquet("s3://bucket/answers/")

CLI (same input files and resumable JSONL output as ``lav2 batch``; the driver writes the rows as they arrive)::

    lav2 batch questions.jsonl -o answers.jsonl --ray                 # a local Ray instance (or $RAY_ADDRESS)
    lav2 batch questions.jsonl -o answers.jsonl --ray auto --ray-actors 8   # the cluster this node belongs to

Every node needs this package (``pip install 'llama-adapter-v2[ray]'``), the model, and access to the images
(a shared filesystem, or http(s)/data URLs in the ``image`` column).
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .errors import BatchInputError

if TYPE_CHECKING:
    import ray.data

log = logging.getLogger(__name__)

__all__ = ["VQAActor", "ray_answers", "vqa_dataset"]

#: result columns; nested values (experts, errors, timings) are JSON strings so every sink can store them
RESULT_COLUMNS = ("id", "image", "question", "answer", "experts", "errors", "router", "visual_prefix", "timings",
                  "error")


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise BatchInputError("Ray is not installed: pip install 'llama-adapter-v2[ray]' (ray[data])") from None
    return ray


class VQAActor:
    """A Ray Data callable class: one pipeline (and one loaded model) per actor, rows of a block in parallel.

    ``pipeline``: :class:`VisualQAPipeline` keyword arguments (``model``, ``adapter``, ``router``, ...).
    """

    def __init__(self, pipeline: Mapping[str, Any] | None = None, *, max_batch_size: int = 8,
                 expert_workers: int | None = None, threads: int | None = None):
        if threads:
            import torch

            torch.set_num_threads(threads)
        from .experts import default_pipeline_experts
        from .pipeline import VisualQAPipeline

        kwargs = dict(pipeline or {})
        kwargs.setdefault("experts", default_pipeline_experts())
        self.expert_workers = expert_workers or os.cpu_count() or 2
        kwargs.setdefault("expert_workers", self.expert_workers)
        self.pipeline = VisualQAPipeline(**kwargs)
        configure = getattr(self.pipeline.model, "configure_engine", None)  # loads the model here, once
        if configure is not None:
            import torch

            from .load import EXPERT_LOAD

            configure(max_batch_size=max_batch_size, threads=EXPERT_LOAD.engine_threads(torch.get_num_threads()))
        self.concurrency = max_batch_size + 2 * self.expert_workers
        self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="lav2-ray")

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list[Any]]:
        rows = _rows_of(batch)
        results = list(self.pool.map(self.answer, rows))
        return {col: [r[col] for r in results] for col in RESULT_COLUMNS}

    def answer(self, row: Mapping[str, Any]) -> dict[str, Any]:
        base = {"id": str(row.get("id")), "image": row.get("image"), "question": row.get("question")}
        try:
            r = self.pipeline.invoke({"image": row.get("image") or None, "question": row.get("question")})
        except Exception as exc:  # noqa: BLE001 - one bad row is recorded, the dataset goes on
            return {**base, "answer": None, "experts": "{}", "errors": "{}", "router": "[]", "visual_prefix": None,
                    "timings": "{}", "error": f"{type(exc).__name__}: {exc}"}
        return {**base, "answer": r.answer, "experts": json.dumps(r.experts, ensure_ascii=False),
                "errors": json.dumps(r.errors, ensure_ascii=False), "router": json.dumps(r.router["chosen"]),
                "visual_prefix": r.visual_prefix, "timings": json.dumps(r.timings), "error": None}


def _rows_of(batch: Mapping[str, Any]) -> list[dict[str, Any]]:
    columns = {k: list(v) for k, v in batch.items()}
    n = len(next(iter(columns.values()), []))
    missing = [c for c in ("question",) if c not in columns]
    if missing:
        raise BatchInputError(f"the dataset has no {missing[0]!r} column (columns: {sorted(columns)})")
    rows = []
    for i in range(n):
        row = {k: _plain(v[i]) for k, v in columns.items()}
        row.setdefault("id", f"row-{i}")
        row.setdefault("image", None)
        rows.append(row)
    return rows


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars -> Python
    return item() if callable(item) and getattr(value, "shape", None) == () else value


def vqa_dataset(ds: ray.data.Dataset, *, num_actors: int = 1, batch_size: int = 16, cpus_per_actor: float = 1,
                max_batch_size: int = 8, expert_workers: int | None = None, threads: int | None = None,
                **pipeline: Any) -> ray.data.Dataset:
    """Answer every row (``image``, ``question``, optional ``id``) of ``ds``; returns a dataset with
    :data:`RESULT_COLUMNS`. ``pipeline`` are :class:`VisualQAPipeline` arguments (``model="smollm2-135m"``,
    ``adapter=...``, ``router="auto"``, ...); ``batch_size`` rows go to an actor at a time (they are decoded
    together, up to ``max_batch_size``)."""
    if num_actors < 1 or batch_size < 1:
        raise BatchInputError("num_actors and batch_size must be >= 1")
    return ds.map_batches(VQAActor, fn_constructor_kwargs={"pipeline": pipeline, "max_batch_size": max_batch_size,
                                                           "expert_workers": expert_workers, "threads": threads},
                          concurrency=num_actors, batch_size=batch_size, num_cpus=cpus_per_actor,
                          batch_format="numpy")


def ray_answers(rows: Iterable[Any], *, address: str | None = None, num_actors: int = 1, batch_size: int = 16,
                cpus_per_actor: float = 1, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """``lav2 batch --ray``: answer :class:`~orchestrator.batch.BatchRow` s on Ray and yield result records (the
    shape ``lav2 batch`` writes) as they arrive. Connects to ``address`` (``None``: ``$RAY_ADDRESS`` or a new local
    instance) unless Ray is already initialised in this process."""
    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=None if address in (None, "", "local") else address, log_to_driver=False,
                 include_dashboard=False)
    rows = list(rows)
    extras = {r.id: r.extra for r in rows if r.extra}
    items = [{"id": r.id, "image": r.image or "", "question": r.question} for r in rows]
    if not items:
        return
    ds = ray.data.from_items(items)
    out = vqa_dataset(ds, num_actors=num_actors, batch_size=batch_size, cpus_per_actor=cpus_per_actor, **kwargs)
    for rec in out.iter_rows():
        record = {"id": rec["id"], "image": rec["image"] or None, "question": rec["question"],
                  "answer": rec["answer"], "experts": json.loads(rec["experts"]), "errors": json.loads(rec["errors"]),
                  "router": json.loads(rec["router"]), "visual_prefix": rec["visual_prefix"],
                  "timings": json.loads(rec["timings"]), "error": rec["error"]}
        if record["id"] in extras:
            record["input"] = extras[record["id"]]
        yield record
