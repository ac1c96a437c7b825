"""Search experts: the local FTS5/BM25 index over the user's files, and web search against a loopback server."""
from __future__ import annotations

import argparse
import http.server
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from tools import LocalSearchTool, WebSearchTool, build_index
from tools.cli import add_index_parser, cmd_index
from tools.search import default_index_path

# --------------------------------------------------------------------------------------------- local corpus
DOCS = {
    "papers/llama_adapter.md": """# LLaMA-Adapter V2

LLaMA-Adapter V2 is a parameter-efficient visual instruction model built on a frozen LLaMA.

## Early fusion

Visual tokens from CLIP are injected only into the first transformer layers through zero-initialised gated
attention, while the adaption prompts sit in the late layers.

## Bias and scale tuning

Every linear layer gets a bias initialised to zero and a scale initialised to one.
""",
    "kitchen/sourdough.txt": """To bake sourdough bread, feed the starter the night before.

Bake the loaf at 250 degrees Celsius with steam for twenty minutes, then lower the oven temperature.
""",
    "notes/facts.jsonl": "\n".join(
        [
            json.dumps(
                {"id": "t1", "title": "Tides", "text": "Tides are caused by the gravitational pull of the moon."}
            ),
            "this line is not json",
            json.dumps({"title": "No text field", "body": "ignored"}),
            json.dumps({"id": "v1", "title": "Volcanoes", "text": "Magma rises through the crust and erupts as lava."}),
        ]
    ),
    "notes/trains.md": "Trains in Switzerland run every thirty minutes between major cities.\n",
    ".git/ignored.md": "moon moon moon moon tides tides",
    "image.png": "not text",
}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    for rel, text in DOCS.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def index(corpus: Path, tmp_path: Path) -> Path:
    path = tmp_path / "index.sqlite"
    stats = build_index(corpus, path)
    assert stats.files == 4 and stats.passages == 7  # md: 3 sections + trains, txt: 1, jsonl: 2 valid lines
    return path


@pytest.mark.parametrize(
    ("query", "source", "title"),
    [
        ("What causes the tides?", "notes/facts.jsonl", "notes/facts.jsonl › Tides"),
        ("how hot should the oven be to bake bread", "kitchen/sourdough.txt", "kitchen/sourdough.txt"),
        ("where are visual tokens injected (early fusion)?", "papers/llama_adapter.md",
         "papers/llama_adapter.md › Early fusion"),
        ("bias scale initialised", "papers/llama_adapter.md", "papers/llama_adapter.md › Bias and scale tuning"),
        ("lava", "notes/facts.jsonl", "notes/facts.jsonl › Volcanoes"),
    ],
)
def test_right_document_ranks_first(index: Path, query: str, source: str, title: str) -> None:
    tool = LocalSearchTool(index_path=str(index))
    result = tool.run_expert(query=query)
    assert result.error is None
    best = result.data[0]
    assert best["source"].endswith(source) and best["title"] == title
    assert [h["score"] for h in result.data] == sorted((h["score"] for h in result.data), reverse=True)
    assert result.text.startswith(f"1. [{title}, ")


def test_hidden_dirs_non_text_files_and_bad_jsonl_lines_are_skipped(index: Path) -> None:
    hits = LocalSearchTool(index_path=str(index), top_k=10).search("moon tides")
    assert {Path(h["source"]).name for h in hits} == {"facts.jsonl"}  # .git/ignored.md was not indexed


def test_locators_point_at_lines(index: Path) -> None:
    hit = LocalSearchTool(index_path=str(index)).search("zero-initialised gated attention")[0]
    assert hit["locator"] == "lines 7-8"
    assert LocalSearchTool(index_path=str(index)).search("tides")[0]["locator"] == "line 1"


def test_query_syntax_cannot_break_fts(index: Path) -> None:
    tool = LocalSearchTool(index_path=str(index))
    for query in ['"unbalanced', "NEAR(moon", "tides AND OR NOT", "col:moon*", "^-+"]:
        result = tool.run_expert(query=query)
        assert result.error is None or "no searchable words" in result.error
    assert tool.run_expert(query="zebra quantum").text == "No passages in the local documents match 'zebra quantum'."


def test_long_documents_are_chunked_with_overlap(tmp_path: Path) -> None:
    words = [f"w{i}" for i in range(3000)]
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "long.txt").write_text(" ".join(words))  # one 17 kB paragraph
    stats = build_index(tmp_path / "d", tmp_path / "i.sqlite", chunk_chars=1000, overlap_chars=100)
    tool = LocalSearchTool(index_path=str(tmp_path / "i.sqlite"), top_k=50)
    assert stats.passages >= 17
    for token in ("w0", "w1500", "w2999"):
        hit = tool.search(token)[0]
        assert len(hit["text"]) <= 1000 and token in hit["text"].split()
    # neighbouring passages share their boundary words
    assert len(tool.search("w1000")) + len(tool.search("w2000")) >= 3


def test_append_reindexes_changed_files_without_duplicates(corpus: Path, index: Path) -> None:
    (corpus / "notes" / "trains.md").write_text("Trains in Japan are famous for punctuality.\n")
    extra = corpus.parent / "extra"
    extra.mkdir()
    (extra / "boats.txt").write_text("Ferries cross the lake every hour.")
    build_index([corpus / "notes" / "trains.md", extra], index, append=True)
    tool = LocalSearchTool(index_path=str(index), top_k=10)
    assert "Japan" in tool.search("trains")[0]["text"] and len(tool.search("trains")) == 1
    assert tool.search("ferries")[0]["source"].endswith("boats.txt")
    assert tool.search("sourdough")  # untouched files stay
    assert "8 passages from 5 files" in tool.status().reason  # 4 files + boats.txt; trains.md replaced


def test_missing_index_is_unavailable_and_says_how_to_build_one(tmp_path: Path) -> None:
    tool = LocalSearchTool(index_path=str(tmp_path / "none.sqlite"))
    assert not tool.status().ready
    assert "run `lav2 index DIR`" in tool.status().reason
    assert tool.run_expert(query="x").error.startswith("unavailable: no local index at")
    (tmp_path / "garbage.sqlite").write_bytes(b"not a database at all" * 100)
    broken = LocalSearchTool(index_path=str(tmp_path / "garbage.sqlite")).status()
    assert not broken.ready and "rebuild it" in broken.reason


def test_default_index_path_and_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, index: Path) -> None:
    assert default_index_path() == Path(__import__("os").environ["LAV2_DATA_DIR"]) / "index.sqlite"
    monkeypatch.setenv("LAV2_INDEX", str(index))
    assert LocalSearchTool().status().ready
    assert LocalSearchTool().run_expert(query="tides").data[0]["title"].endswith("Tides")


def test_lav2_index_command(corpus: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_index_parser(parser.add_subparsers(dest="command"))
    target = tmp_path / "cli.sqlite"
    args = parser.parse_args(["index", str(corpus), "--index", str(target), "--json"])
    out = io.StringIO()
    assert args.func(args, out) == 0
    report = json.loads(out.getvalue())
    assert report["files"] == 4 and report["passages"] == 7 and report["index"] == str(target)
    empty = tmp_path / "empty"
    empty.mkdir()
    args = parser.parse_args(["index", str(empty), "--index", str(tmp_path / "x.sqlite")])
    assert cmd_index(args, io.StringIO()) == 2  # "no .txt/.md/.markdown/.jsonl files found": one line, exit 2


# --------------------------------------------------------------------------------------------- web (loopback)
DDG_PAGE = """<html><body><div class="serp__results">
<div class="result results_links results_links_deep web-result"><div class="links_main links_deep result__body">
  <h2 class="result__title"><a rel="nofollow" class="result__a" href="https://example.org/adapter">LLaMA-Adapter V2:
  <b>visual</b> instruction model</a></h2>
  <a class="result__snippet" href="https://example.org/adapter">Parameter-efficient <b>visual</b> instruction tuning
  with early fusion.</a>
</div></div>
<div class="result results_links results_links_deep web-result"><div class="links_main links_deep result__body">
  <h2 class="result__title"><a rel="nofollow" class="result__a" href="https://example.com/bus">London buses</a></h2>
  <a class="result__snippet" href="https://example.com/bus">Red double-decker buses and their routes.</a>
</div></div>
<div class="result results_links results_links_deep web-result"><div class="links_main links_deep result__body">
  <h2 class="result__title"><a rel="nofollow" class="result__a" href="https://example.net/x">Third hit</a></h2>
  <a class="result__snippet" href="https://example.net/x">Filler.</a>
</div></div>
</div></body></html>"""
EMPTY_PAGE = '<html><body><div class="no-results">No results.</div></body></html>'


class _DuckDuckGoHandler(http.server.BaseHTTPRequestHandler):
    requests: list[dict] = []  # noqa: RUF012 - replaced per test by the ddg_server fixture
    page = DDG_PAGE

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        length = int(self.headers.get("Content-Length", 0))
        self.requests.append({"path": self.path, "form": parse_qs(self.rfile.read(length).decode())})
        body = self.page.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def ddg_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_DuckDuckGoHandler]]:
    """A 127.0.0.1 server speaking DuckDuckGo's HTML endpoint; ddgs' duckduckgo engine is pointed at it."""
    from ddgs.engines.duckduckgo import Duckduckgo

    handler = type("Handler", (_DuckDuckGoHandler,), {"requests": [], "page": DDG_PAGE})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(Duckduckgo, "search_url", f"http://127.0.0.1:{server.server_port}/html/")
    monkeypatch.delenv("LAV2_OFFLINE")
    yield handler
    server.shutdown()
    server.server_close()


def test_web_search_parses_results_from_a_duckduckgo_style_page(ddg_server) -> None:
    tool = WebSearchTool(region="de-de", max_results=2, timeout=5)
    result = tool.run_expert(query="llama adapter visual")
    assert result.error is None, result.error
    assert ddg_server.requests == [{"path": "/html/", "form": {"q": ["llama adapter visual"], "l": ["de-de"]}}]
    assert result.data == [
        {"title": "LLaMA-Adapter V2: visual instruction model", "href": "https://example.org/adapter",
         "body": "Parameter-efficient visual instruction tuning with early fusion."},
        {"title": "London buses", "href": "https://example.com/bus",
         "body": "Red double-decker buses and their routes."},
    ]
    assert result.text.splitlines()[0] == (
        "1. LLaMA-Adapter V2: visual instruction model — Parameter-efficient visual instruction tuning with early "
        "fusion. (https://example.org/adapter)"
    )
    assert tool.invoke({"query": "llama"}).startswith("1. LLaMA-Adapter V2")


def test_web_search_with_no_results_is_not_an_error(ddg_server) -> None:
    ddg_server.page = EMPTY_PAGE
    result = WebSearchTool(timeout=5).run_expert(query="qwxzv")
    assert result.error is None and result.text == "No web results for 'qwxzv'." and result.data == []


def _free_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_web_search_fails_fast_and_clearly_when_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    from ddgs.engines.duckduckgo import Duckduckgo

    monkeypatch.delenv("LAV2_OFFLINE")
    monkeypatch.setattr(Duckduckgo, "search_url", f"http://127.0.0.1:{_free_port()}/html/")  # connection refused
    start = time.perf_counter()
    result = WebSearchTool(timeout=10).run_expert(query="anything")
    assert time.perf_counter() - start < 3
    assert result.error is not None and result.error.startswith("web search failed (offline or blocked?):")


def test_web_search_is_bounded_by_its_timeout_when_the_network_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    from ddgs.engines.duckduckgo import Duckduckgo

    black_hole = socket.socket()  # accepts connections, never answers
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(8)
    monkeypatch.delenv("LAV2_OFFLINE")
    monkeypatch.setattr(Duckduckgo, "search_url", f"http://127.0.0.1:{black_hole.getsockname()[1]}/html/")
    try:
        start = time.perf_counter()
        result = WebSearchTool(timeout=1).run_expert(query="anything")
        elapsed = time.perf_counter() - start
    finally:
        black_hole.close()
    assert elapsed < 3.5
    assert result.error is not None and "(offline or blocked?)" in result.error and "1s" in result.error


def test_web_search_offline_mode_and_status(monkeypatch: pytest.MonkeyPatch) -> None:
    tool = WebSearchTool()
    start = time.perf_counter()
    assert tool.run_expert(query="x").error.startswith("unavailable: offline mode (LAV2_OFFLINE=1)")
    assert time.perf_counter() - start < 0.5
    assert not tool.status().ready
    monkeypatch.delenv("LAV2_OFFLINE")
    import tools.search as search

    monkeypatch.setattr(search, "network_available", lambda host, *a, **k: False)
    assert "no internet connection" in tool.status().reason
    monkeypatch.setattr(search, "network_available", lambda host, *a, **k: True)
    assert tool.status().ready
