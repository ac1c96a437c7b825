"""Batch visual QA with a resumable, append-only JSONL output.

Inputs: a ``.jsonl`` file (one ``{"image", "question"[, "id"]}`` object per line), a ``.csv`` or ``.parquet`` file
with the same columns, or a folder of images plus one or more questions (every image × every question). Relative image paths
in a file are resolved against the file's folder first, then the working directory.

Crash safety: every finished row is written as one line with a single ``write`` on an ``O_APPEND`` file and
``fsync``-ed before the next, with a stable ``id`` (the input's ``id``, else ``row-<n>`` for the n-th data row, or
``<image path>#q<k>`` for folders). ``resume`` reads the output, truncates a torn last line (a kill in the middle
of a write) and skips the ids already there, so after any interruption — even ``kill -9`` — every row ends up in
the output exactly once. Rows that failed (unreadable image ...) are written with an ``error`` and count as done.

One writer per output: :func:`run_batch` holds an exclusive lock on ``<output>.lock`` (``flock``, released by the
kernel even after ``kill -9``), so a second ``lav2 batch`` on the same output stops with a clear error instead of
duplicating every row. To spread one input over several processes or machines, give each a ``shard`` (``I/N``:
the rows whose position in the input is I modulo N) and its own output.
"""
from __future__ import annotations

import concurrent.futures as cf
import csv
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BatchInputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@dataclass(frozen=True)
class BatchRow:
    id: str
    image: str | None
    question: str
    extra: dict[str, Any]


# ------------------------------------------------------------------------------------------------ input
def read_rows(source: str | os.PathLike, questions: Iterable[str] = ()) -> list[BatchRow]:
    """Rows from a JSONL/CSV file or an image folder (with ``questions``); ids are unique or this raises."""
    path = Path(source)
    questions = [q for q in questions if q and q.strip()]
    if path.is_dir():
        if not questions:
            raise BatchInputError(f"{path} is a folder: pass the question(s) to ask about each image with --question")
        images = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not images:
            raise BatchInputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {path}")
        rows = [BatchRow(f"{img.relative_to(path).as_posix()}#q{k}", str(img), q, {})
                for img in images for k, q in enumerate(questions, 1)]
    elif not path.is_file():
        raise BatchInputError(f"{path}: no such file or folder")
    elif path.suffix.lower() == ".csv":
        rows = list(_csv_rows(path, questions))
    elif path.suffix.lower() == ".parquet":
        rows = list(_parquet_rows(path, questions))
    else:
        rows = list(_jsonl_rows(path, questions))
    seen: set[str] = set()
    for row in rows:
        if row.id in seen:
            raise BatchInputError(f"{path}: the id {row.id!r} appears twice; ids must be unique (they make "
                                  "--resume exact)")
        seen.add(row.id)
    return rows


def _jsonl_rows(path: Path, questions: list[str]) -> Iterator[BatchRow]:
    n = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise BatchInputError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            except RecursionError:
                raise BatchInputError(f"{path}:{lineno}: not valid JSON (nested too deeply)") from None
            if not isinstance(record, dict):
                raise BatchInputError(f"{path}:{lineno}: each line must be a JSON object with image and question")
            n += 1
            yield from _make_rows(record, n, path, f"{path}:{lineno}", questions)


def _csv_rows(path: Path, questions: list[str]) -> Iterator[BatchRow]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "image" not in reader.fieldnames:
            raise BatchInputError(f"{path}: the CSV needs a header with an 'image' column (and 'question', 'id')")
        for n, record in enumerate(reader, 1):
            yield from _make_rows(dict(record), n, path, f"{path}:{n + 1}", questions)


def _parquet_rows(path: Path, questions: list[str]) -> Iterator[BatchRow]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise BatchInputError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow, or the [ray] extra)") \
            from None
    try:
        records = pq.read_table(path).to_pylist()
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise BatchInputError(f"{path}: not a readable Parquet file ({e})") from None
    for n, record in enumerate(records, 1):
        yield from _make_rows(dict(record), n, path, f"{path} row {n}", questions)


def _make_rows(record: dict[str, Any], n: int, path: Path, where: str, questions: list[str]) -> Iterator[BatchRow]:
    image = record.pop("image", None)
    question = record.pop("question", None)
    row_id = str(record.pop("id", None) or f"row-{n}")
    asked = [question] if isinstance(question, str) and question.strip() else questions
    if not asked:
        raise BatchInputError(f"{where}: no question (add a 'question' field or pass --question)")
    image = _resolve_image(image, path.parent) if image not in (None, "") else None
    for k, q in enumerate(asked, 1):
        yield BatchRow(row_id if len(asked) == 1 else f"{row_id}#q{k}", image, q, record)


def _resolve_image(image: Any, base: Path) -> str:
    image = str(image)
    if "://" in image or image.startswith("data:") or Path(image).is_absolute():
        return image
    if image.startswith("ultralytics:"):
        return resolve_package_asset(image)
    beside = base / image
    return str(beside) if beside.exists() or not Path(image).exists() else image


def resolve_package_asset(ref: str) -> str:
    """``ultralytics:assets/bus.jpg`` → the file inside the installed package (photos we do not copy)."""
    import importlib.util

    package, _, rel = ref.partition(":")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BatchInputError(f"{ref}: the package {package!r} is not installed")
    return str(Path(next(iter(spec.submodule_search_locations))) / rel)


def shard_rows(rows: list[BatchRow], shard: str | None) -> list[BatchRow]:
    """The rows of shard ``"I/N"`` (0 <= I < N): every N-th row starting at row I, in input order.

    Deterministic for the same input, so N processes (or machines) with shards 0/N .. N-1/N cover every row
    exactly once, and ``--resume`` of one shard stays within it.
    """
    if shard is None:
        return rows
    index, n = parse_shard(shard)
    return rows[index::n]


def parse_shard(shard: str) -> tuple[int, int]:
    try:
        left, right = str(shard).split("/")
        index, n = int(left), int(right)
    except ValueError:
        raise BatchInputError(f"--shard {shard!r}: expected I/N, e.g. 0/4 (shard I of N, counting from 0)") from None
    if n < 1 or not 0 <= index < n:
        raise BatchInputError(f"--shard {shard!r}: I must be in 0..N-1 and N >= 1 (e.g. 0/4 .. 3/4)")
    return index, n


# ------------------------------------------------------------------------------------------------ output
class OutputLock:
    """An exclusive advisory lock on ``<output>.lock`` for the lifetime of one batch run.

    ``flock`` is per open file and released by the kernel when the process dies, so a crashed run never leaves
    a stale lock. The lock file records the holder's pid for the error message.
    """

    def __init__(self, output: str | os.PathLike):
        self.path = Path(f"{os.fspath(output)}.lock")
        self._fd = -1

    def __enter__(self) -> OutputLock:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock (documented)
            log.warning("no file locking on this platform: do not run two batches on %s at once", self.path)
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "another process"
            os.close(fd)
            output = str(self.path)[:-len(".lock")]
            raise BatchInputError(f"{output} is being written by another lav2 batch (pid {holder}): wait for it, "
                                  "or write to another output (use --shard I/N to split an input)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the flock
            self._fd = -1


def read_done(output: str | os.PathLike, *, repair: bool = True) -> dict[str, dict[str, Any]]:
    """Rows already in ``output`` by id. A torn last line (no newline, or not JSON) is cut off when ``repair``."""
    path = Path(output)
    if not path.exists():
        return {}
    data = path.read_bytes()
    keep = len(data)
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
    done: dict[str, dict[str, Any]] = {}
    offset = 0
    for raw in data[:keep].splitlines(keepends=True):
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):  # RecursionError: "[[[[...]]]]", too deep to parse
            if offset + len(raw) == keep:  # a torn line that happened to end in a newline byte
                keep = offset
                break
            raise BatchInputError(f"{path}: line {len(done) + 1} is not JSON and not the last line: "
                                  "this is not a file written by `lav2 batch`") from None
        offset += len(raw)
        if isinstance(record, dict) and "id" in record:
            done[str(record["id"])] = record
    if keep < len(data):
        if not repair:
            raise BatchInputError(f"{path}: the last line is incomplete")
        log.warning("%s: removing an incomplete last line (%d bytes) left by an interrupted run", path,
                    len(data) - keep)
        with open(path, "r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
    return done


class JsonlAppender:
    """Append one JSON object per line, durably: one ``write`` per line on an ``O_APPEND`` fd, then ``fsync``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        view = memoryview(line)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------ running
@dataclass
class BatchSummary:
    total: int
    skipped: int
    written: int
    failed: int
    interrupted: bool = False


def run_batch(rows: list[BatchRow], answer: Callable[[BatchRow], dict[str, Any]], output: str | os.PathLike, *,
              resume: bool = False, overwrite: bool = False, concurrency: int = 2,
              progress: bool = True, bulk: Callable[[list[BatchRow]], Iterable[dict[str, Any]]] | None = None
              ) -> BatchSummary:
    """Answer every row not yet in ``output`` with ``answer(row) -> dict``, at most ``concurrency`` at a time.

    Rows are written as they finish (so the output order is completion order; every line has its ``id``). With a
    pipeline on the batching engine, ``concurrency`` rows in flight means: up to ``max_batch_size`` of them are
    decoded together while the others run their experts. ``bulk``: instead of ``answer``, a function given all
    rows still to do that yields their finished records in any order (``lav2 batch --ray``). Raises
    :class:`BatchInputError` if another run holds the output.
    """
    out = Path(output)
    with OutputLock(out):
        return _run_locked(rows, answer, out, resume=resume, overwrite=overwrite, concurrency=concurrency,
                           progress=progress, bulk=bulk)


def _run_locked(rows: list[BatchRow], answer: Callable[[BatchRow], dict[str, Any]] | None, out: Path, *,
                resume: bool, overwrite: bool, concurrency: int, progress: bool,
                bulk: Callable[[list[BatchRow]], Iterable[dict[str, Any]]] | None) -> BatchSummary:
    if out.exists() and out.stat().st_size > 0 and not (resume or overwrite):
        raise BatchInputError(f"{out} already exists: pass --resume to continue it or --overwrite to start over")
    if overwrite and not resume and out.exists():
        out.unlink()
    done = read_done(out) if resume else {}
    ids = {r.id for r in rows}
    stray = [i for i in done if i not in ids]
    if stray:
        log.warning("%s has %d row(s) whose id is not in the input (e.g. %r); they are kept", out, len(stray),
                    stray[0])
    for row in rows:
        old = done.get(row.id)
        if old is not None and old.get("question") not in (None, row.question):
            raise BatchInputError(f"{out}: row {row.id!r} was written for another question ({old.get('question')!r}"
                                  f" vs {row.question!r}): this output belongs to a different input")
    todo = [r for r in rows if r.id not in done]
    summary = BatchSummary(total=len(rows), skipped=len(rows) - len(todo), written=0, failed=0)
    if not todo:
        return summary
    bar = _progress(len(rows), summary.skipped, progress)
    if bulk is not None:
        try:
            with JsonlAppender(out) as sink:
                for record in bulk(todo):
                    sink.write(record)
                    summary.written += 1
                    summary.failed += record.get("error") is not None
                    bar.update(1)
        finally:
            bar.close()
        return summary
    assert answer is not None, "run_batch needs answer or bulk"
    pool = cf.ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="lav2-batch")
    pending: set[cf.Future] = set()
    queue = iter(todo)
    try:
        with JsonlAppender(out) as sink:
            while True:
                while len(pending) < max(1, concurrency):  # bounded: never more than `concurrency` in flight
                    row = next(queue, None)
                    if row is None:
                        break
                    pending.add(pool.submit(_answer_row, answer, row))
                if not pending:
                    break
                finished, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    record = future.result()
                    sink.write(record)
                    summary.written += 1
                    summary.failed += record.get("error") is not None
                    bar.update(1)
    except KeyboardInterrupt:
        summary.interrupted = True
        for future in pending:
            future.cancel()
        raise
    finally:
        pool.shutdown(wait=not summary.interrupted, cancel_futures=True)
        bar.close()
    return summary


def _answer_row(answer: Callable[[BatchRow], dict[str, Any]], row: BatchRow) -> dict[str, Any]:
    base = {"id": row.id, "image": row.image, "question": row.question}
    try:
        record = {**base, **answer(row), "error": None}
    except Exception as exc:  # noqa: BLE001 - one bad row (unreadable image ...) is recorded, the batch goes on
        log.info("row %s failed: %s", row.id, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        record = {**base, "answer": None, "error": f"{type(exc).__name__}: {exc}"}
    if row.extra:
        record["input"] = row.extra
    return record


def _progress(total: int, initial: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="row", desc="lav2 batch", disable=not enabled, dynamic_ncols=True)
