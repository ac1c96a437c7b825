"""Search experts: the web (DuckDuckGo and friends via ``ddgs``) and the user's own documents (SQLite FTS5, BM25).

``LocalSearchTool`` is the embedded offline default: ``lav2 index DIR`` (or :func:`build_index`) splits ``.txt``,
``.md`` and ``.jsonl`` files into passages and stores them in one SQLite file with an FTS5 full-text index; a
query returns the best passages (BM25, titles weighted up) with their source file and lines.

JSONL: one JSON object per line; the passage text is the ``text`` field (``text_field=`` / ``--text-field``
changes it); optional ``title`` and ``id`` fields are used for display. Lines without that field are skipped.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from .base import (
    ExpertError,
    ExpertInputError,
    ExpertStatus,
    ExpertTimeout,
    ExpertTool,
    ExpertUnavailable,
    network_available,
    offline_mode,
    user_data_dir,
)

logger = logging.getLogger(__name__)

__all__ = [
    "INDEX_SUFFIXES",
    "IndexStats",
    "LocalSearchTool",
    "SearchInput",
    "WebSearchTool",
    "build_index",
    "default_index_path",
]

INDEX_SUFFIXES = (".txt", ".md", ".markdown", ".jsonl")
_SCHEMA_VERSION = "1"
_MAX_FILE_BYTES = 50 * 1024 * 1024
_MAX_QUERY_TERMS = 32
# Frequent words add nothing to a BM25 "OR" query but noise; dropped unless the query has nothing else.
_STOPWORDS = frozenset(
    "a an and are as at be but by can do does for from has have how i in is it its of on or that the this to was "
    "were what when where which who why will with you your".split()
)


class SearchInput(BaseModel):
    """Input of the search experts."""

    query: str = Field(description="What to search for, in a few keywords or a short question.")


# ============================================================================================= web search
class WebSearchTool(ExpertTool):
    """Searches the web with ``ddgs`` (DuckDuckGo by default) and returns titles, snippets and links."""

    name: str = "web_search"
    description: str = (
        "Searches the web for the question and returns the top results' titles, short snippets and links; "
        "use it for facts, news or names that an image alone cannot tell."
    )
    args_schema: type[BaseModel] = SearchInput
    needs_query: ClassVar[bool] = True

    region: str = "wt-wt"
    """ddgs region code: ``wt-wt`` (no region), ``us-en``, ``de-de`` ..."""
    max_results: int = 5
    timeout: float = 10.0
    """Seconds for the whole search; the call returns an error after it even if the network hangs."""
    backend: str = "duckduckgo"
    """ddgs backend(s), comma-separated: ``duckduckgo``, ``bing``, ``brave``, ``google``, ``wikipedia`` or ``auto``."""
    safesearch: str = "moderate"
    snippet_chars: int = 300

    def status(self) -> ExpertStatus:
        import importlib.util

        if importlib.util.find_spec("ddgs") is None:
            return ExpertStatus(False, "the ddgs package is not installed: `pip install ddgs`")
        if offline_mode():
            return ExpertStatus(False, "offline mode (LAV2_OFFLINE=1): unset it to search the web; local_search works")
        if not network_available("html.duckduckgo.com"):
            return ExpertStatus(
                False, "no internet connection (html.duckduckgo.com unreachable): connect, or use local_search"
            )
        return ExpertStatus(True, f"ddgs backend={self.backend}, region={self.region}")

    def _analyze(self, image: Any, query: str | None) -> tuple[str, Any]:
        query = (query or "").strip()
        results = self.search(query)
        if not results:
            return f"No web results for {query!r}.", []
        return _render_web(results, self.snippet_chars), results

    def search(self, query: str) -> list[dict[str, str]]:
        """Return up to ``max_results`` ``{title, href, body}`` dicts; raises :class:`ExpertError` subclasses."""
        if offline_mode():
            raise ExpertUnavailable("offline mode (LAV2_OFFLINE=1): web search is disabled; use local_search")
        try:
            from ddgs import DDGS
            from ddgs.exceptions import DDGSException, TimeoutException
        except ImportError as exc:
            raise ExpertUnavailable("the ddgs package is not installed: `pip install ddgs`") from exc
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["results"] = DDGS(timeout=max(1, math.ceil(self.timeout))).text(
                    query,
                    region=self.region,
                    safesearch=self.safesearch,
                    max_results=self.max_results,
                    backend=self.backend,
                )
            except Exception as exc:  # noqa: BLE001 - handed to the caller's thread below
                outcome["error"] = exc

        # ddgs' own timeout covers each HTTP request, not DNS stalls or its thread pool: bound the whole call
        worker = threading.Thread(target=work, name="lav2-web-search", daemon=True)
        worker.start()
        worker.join(self.timeout + 1.0)
        if worker.is_alive():
            raise ExpertTimeout(
                f"web search got no answer within {self.timeout:g}s (offline or blocked?): check the connection "
                "or raise WebSearchTool(timeout=...); local_search works offline"
            )
        error = outcome.get("error")
        if isinstance(error, TimeoutException):
            raise ExpertTimeout(f"web search timed out after {self.timeout:g}s (offline or blocked?): {error}")
        if isinstance(error, DDGSException):
            if str(error).strip() == "No results found.":
                return []
            raise ExpertError(f"web search failed (offline or blocked?): {error}")
        if error is not None:
            raise ExpertError(f"web search failed: {type(error).__name__}: {error}")
        return [
            {"title": str(r.get("title", "")), "href": str(r.get("href", "")), "body": str(r.get("body", ""))}
            for r in outcome.get("results") or []
        ][: self.max_results]


def _render_web(results: list[dict[str, str]], snippet_chars: int) -> str:
    lines = []
    for i, r in enumerate(results, 1):
        body = _clip(" ".join(r["body"].split()), snippet_chars)
        title = r["title"] or r["href"]
        lines.append(f"{i}. {title} — {body} ({r['href']})" if body else f"{i}. {title} ({r['href']})")
    return "\n".join(lines)


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit * 0.6 else cut).rstrip() + "…"


# ============================================================================================= local index
def default_index_path() -> Path:
    """``$LAV2_INDEX`` if set, else ``<user data dir>/lav2/index.sqlite``."""
    override = os.environ.get("LAV2_INDEX")
    return Path(override).expanduser() if override else user_data_dir() / "index.sqlite"


@dataclass
class IndexStats:
    """What :func:`build_index` did."""

    index_path: Path
    files: int = 0
    passages: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        text = f"indexed {self.files} files into {self.passages} passages in {self.index_path} ({self.seconds:.2f}s)"
        return text + (f"; skipped {len(self.skipped)} files" if self.skipped else "")


@dataclass
class _Passage:
    title: str
    body: str
    source: str
    locator: str


def build_index(
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    index_path: str | os.PathLike | None = None,
    *,
    chunk_chars: int = 1000,
    overlap_chars: int = 150,
    text_field: str = "text",
    append: bool = False,
) -> IndexStats:
    """Index directories and/or files (``.txt``, ``.md``, ``.jsonl``) for :class:`LocalSearchTool`.

    Long documents are split into passages of about ``chunk_chars`` characters along paragraph boundaries
    (markdown: also at headings, whose text becomes the passage title). Without ``append`` the index is rebuilt
    and replaced atomically; with it, files already in the index are re-indexed and others kept.
    """
    if chunk_chars < 100 or not 0 <= overlap_chars < chunk_chars // 2:
        raise ExpertInputError("chunk_chars must be >= 100 and 0 <= overlap_chars < chunk_chars / 2")
    started = time.perf_counter()
    target = Path(index_path).expanduser() if index_path is not None else default_index_path()
    roots = [Path(sources)] if isinstance(sources, (str, os.PathLike)) else [Path(s) for s in sources]
    stats = IndexStats(index_path=target)
    files = list(_iter_files(roots, stats))
    if not files and not append:
        raise ExpertInputError(
            f"no {'/'.join(INDEX_SUFFIXES)} files found under {', '.join(map(str, roots))}: nothing to index"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    work_path = target if append and target.exists() else target.with_name(target.name + f".tmp{os.getpid()}")
    if work_path != target:
        work_path.unlink(missing_ok=True)
    conn = _connect(work_path)
    try:
        _create_schema(conn)
        with conn:
            for root, path in files:
                passages = _read_passages(root, path, stats, chunk_chars, overlap_chars, text_field)
                if passages is None:
                    continue
                conn.execute("DELETE FROM passages WHERE source = ?", (str(path),))
                conn.executemany(
                    "INSERT INTO passages(title, body, source, locator) VALUES (?, ?, ?, ?)",
                    [(p.title, p.body, p.source, p.locator) for p in passages],
                )
                stats.files += 1
                stats.passages += len(passages)
            total_files = conn.execute("SELECT COUNT(DISTINCT source) FROM passages").fetchone()[0]
            meta = {
                "schema": _SCHEMA_VERSION,
                "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "files": str(total_files),
                "roots": json.dumps([str(r.resolve()) for r in roots]),
            }
            conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", meta.items())
        conn.execute("INSERT INTO passages(passages) VALUES ('optimize')")
        conn.commit()
    except BaseException:
        conn.close()
        if work_path != target:
            work_path.unlink(missing_ok=True)
        raise
    conn.close()
    if work_path != target:
        os.replace(work_path, target)
    stats.seconds = time.perf_counter() - started
    logger.info("%s", stats.summary())
    return stats


def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    return sqlite3.connect(path, check_same_thread=False)


def _create_schema(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT)")
        conn.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS passages USING fts5("
            "title, body, source UNINDEXED, locator UNINDEXED, tokenize='porter unicode61 remove_diacritics 2')"
        )
    except sqlite3.OperationalError as exc:
        if "fts5" in str(exc).lower():
            raise ExpertUnavailable(
                f"this Python's SQLite {sqlite3.sqlite_version} has no FTS5 module: use a Python built with a "
                "current SQLite (python.org, Debian, conda builds all have it)"
            ) from exc
        raise


def _iter_files(roots: list[Path], stats: IndexStats) -> Iterator[tuple[Path, Path]]:
    """(root, file) pairs of indexable files, sorted, skipping hidden directories and oversized files."""
    for root in roots:
        root = root.expanduser()
        if root.is_file():
            candidates = [root]
            base = root.parent
        elif root.is_dir():
            base = root
            candidates = []
            for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                candidates += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
        else:
            raise ExpertInputError(f"cannot index {str(root)!r}: no such file or directory")
        for path in candidates:
            if path.suffix.lower() not in INDEX_SUFFIXES:
                continue
            if path.stat().st_size > _MAX_FILE_BYTES:
                stats.skipped.append((str(path), f"larger than {_MAX_FILE_BYTES} bytes"))
                continue
            yield base, path.resolve()


def _read_passages(
    root: Path, path: Path, stats: IndexStats, chunk_chars: int, overlap: int, text_field: str
) -> list[_Passage] | None:
    try:
        raw = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        stats.skipped.append((str(path), str(exc)))
        return None
    try:
        display = str(path.relative_to(root.resolve()))
    except ValueError:
        display = path.name
    if path.suffix.lower() == ".jsonl":
        passages = list(_jsonl_passages(raw, path, display, text_field, chunk_chars, overlap))
    else:
        markdown = path.suffix.lower() in (".md", ".markdown")
        passages = [
            _Passage(f"{display} › {heading}" if heading else display, body, str(path), _lines(a, b))
            for heading, body, a, b in _text_chunks(raw, chunk_chars, overlap, markdown)
        ]
    if not passages:
        stats.skipped.append((str(path), "no text"))
        return None
    return passages


def _lines(first: int, last: int) -> str:
    return f"line {first}" if first == last else f"lines {first}-{last}"


def _jsonl_passages(
    raw: str, path: Path, display: str, text_field: str, chunk_chars: int, overlap: int
) -> Iterator[_Passage]:
    bad = 0
    for lineno, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):  # RecursionError: nested deeper than the parser goes
            bad += 1
            continue
        text = record.get(text_field) if isinstance(record, dict) else None
        if not isinstance(text, str) or not text.strip():
            bad += 1
            continue
        label = record.get("title") or record.get("id") or f"line {lineno}"
        for _, body, _, _ in _text_chunks(text, chunk_chars, overlap, markdown=False):
            yield _Passage(f"{display} › {label}", body, str(path), f"line {lineno}")
    if bad:
        logger.warning("%s: skipped %d lines that are not JSON objects with a %r string", path, bad, text_field)


_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def _text_chunks(
    text: str, chunk_chars: int, overlap: int, markdown: bool
) -> Iterator[tuple[str, str, int, int]]:
    """(heading, passage, first line, last line): paragraphs packed up to ``chunk_chars``, split at headings."""
    heading = ""
    buffer: list[tuple[str, int, int]] = []  # (paragraph, first line, last line)
    size = 0

    def flush() -> Iterator[tuple[str, str, int, int]]:
        nonlocal buffer, size
        if buffer:
            yield heading, "\n\n".join(p for p, _, _ in buffer), buffer[0][1], buffer[-1][2]
        buffer, size = [], 0

    for para, first, last in _paragraphs(text):
        match = _HEADING.match(para.splitlines()[0]) if markdown else None
        if match:
            yield from flush()
            heading = match.group(2)
            rest = "\n".join(para.splitlines()[1:]).strip()
            if not rest:
                continue
            para, first = rest, first + 1
        for piece in _split_long(para, chunk_chars, overlap):
            if size and size + len(piece) > chunk_chars:
                yield from flush()
            buffer.append((piece, first, last))
            size += len(piece) + 2
    yield from flush()


def _paragraphs(text: str) -> Iterator[tuple[str, int, int]]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    current: list[str] = []
    start = 1
    for number, line in enumerate(lines, 1):
        if line.strip():
            if not current:
                start = number
            current.append(line.rstrip())
        elif current:
            yield "\n".join(current), start, number - 1
            current = []
    if current:
        yield "\n".join(current), start, len(lines)


def _split_long(paragraph: str, chunk_chars: int, overlap: int) -> Iterator[str]:
    """A paragraph longer than ``chunk_chars`` → windows ending at whitespace, overlapping by ``overlap``."""
    if len(paragraph) <= chunk_chars:
        yield paragraph
        return
    start = 0
    while start < len(paragraph):
        end = min(start + chunk_chars, len(paragraph))
        if end < len(paragraph):
            space = paragraph.rfind(" ", start + chunk_chars // 2, end)
            end = space if space > 0 else end
        yield paragraph[start:end].strip()
        if end >= len(paragraph):
            return
        next_start = end - overlap
        space = paragraph.find(" ", next_start, end)
        start = space + 1 if space >= 0 else next_start


def _fts_query(query: str) -> str:
    terms = re.findall(r"\w+", query.lower())
    content = [t for t in terms if t not in _STOPWORDS] or terms
    unique = list(dict.fromkeys(content))[:_MAX_QUERY_TERMS]
    if not unique:
        raise ExpertInputError(f"query {query!r} has no searchable words")
    return " OR ".join(f'"{t}"' for t in unique)  # quoted: FTS5 operators in user text stay plain words


class LocalSearchTool(ExpertTool):
    """Searches the user's own indexed documents (SQLite FTS5, BM25) — offline."""

    name: str = "local_search"
    description: str = (
        "Searches the user's own indexed documents and notes for the question and returns the best matching "
        "passages with their source files."
    )
    args_schema: type[BaseModel] = SearchInput
    needs_query: ClassVar[bool] = True

    index_path: str | None = None
    """SQLite index built by ``lav2 index DIR``; default ``$LAV2_INDEX`` or ``<user data dir>/lav2/index.sqlite``."""
    top_k: int = 3
    snippet_tokens: int = 48
    """Length of the passage excerpt around the matches that goes into the text (whole passages are in data)."""
    title_weight: float = 3.0

    @property
    def resolved_index_path(self) -> Path:
        return Path(self.index_path).expanduser() if self.index_path else default_index_path()

    def status(self) -> ExpertStatus:
        path = self.resolved_index_path
        if not path.is_file():
            return ExpertStatus(False, f"no local index at {path}: run `lav2 index DIR` to index your documents")
        try:
            conn = _connect(path, readonly=True)
            try:
                passages = conn.execute("SELECT COUNT(*) FROM passages").fetchone()[0]
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            return ExpertStatus(False, f"index {path} is unreadable ({exc}): rebuild it with `lav2 index DIR`")
        return ExpertStatus(
            True, f"{passages} passages from {meta.get('files', '?')} files in {path} (built {meta.get('built', '?')})"
        )

    def _analyze(self, image: Any, query: str | None) -> tuple[str, Any]:
        hits = self.search(query or "")
        if not hits:
            return f"No passages in the local documents match {query!r}.", []
        lines = [f"{i}. [{h['title']}, {h['locator']}] {h['snippet']}" for i, h in enumerate(hits, 1)]
        return "\n".join(lines), hits

    def search(self, query: str, top_k: int | None = None) -> list[dict[str, Any]]:
        """Best passages first: ``{title, snippet, text, source, locator, score}`` (score: higher is better)."""
        path = self.resolved_index_path
        if not path.is_file():
            raise ExpertUnavailable(f"no local index at {path}: run `lav2 index DIR` to index your documents")
        match = _fts_query(query)
        try:
            conn = _connect(path, readonly=True)
            try:
                rows = conn.execute(
                    "SELECT title, snippet(passages, 1, '', '', ' … ', ?), body, source, locator, "
                    "bm25(passages, ?, 1.0) AS rank FROM passages WHERE passages MATCH ? ORDER BY rank LIMIT ?",
                    (self.snippet_tokens, self.title_weight, match, top_k or self.top_k),
                ).fetchall()
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise ExpertUnavailable(f"index {path} is unreadable ({exc}): rebuild it with `lav2 index DIR`") from exc
        return [
            {
                "title": title,
                "snippet": " ".join(snippet.split()),
                "text": body,
                "source": source,
                "locator": locator,
                "score": round(-rank, 4),
            }
            for title, snippet, body, source, locator, rank in rows
        ]
