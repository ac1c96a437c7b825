"""Custom experts (@expert, as_expert), entry-point plugins, and `lav2 tools` listing and running them."""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, tool
from PIL import Image
from pydantic import BaseModel

from tools import ExpertTool, as_expert, discover_experts, expert, register_expert, unregister_expert
from tools.cli import add_tools_parser, cmd_tools
from tools.registry import DuplicateExpertError, UnloadableExpert, all_experts, registered_experts

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    before = {t.name for t in registered_experts()}
    yield
    for t in registered_experts():
        if t.name not in before:
            unregister_expert(t.name)


@pytest.fixture
def grey_png(tmp_path: Path) -> Path:
    path = tmp_path / "grey.png"
    Image.new("RGB", (8, 8), (100, 100, 100)).save(path)
    return path


# --------------------------------------------------------------------------------------------- @expert
def test_documented_function_expert(grey_png: Path) -> None:
    @expert
    def brightness(image) -> str:
        """Tells how bright the image is, from 0 (black) to 255 (white).

        More details that the model does not need.
        """
        mean = sum(image.convert("L").getdata()) / (image.width * image.height)
        return f"Brightness: {mean:.0f} of 255"

    assert isinstance(brightness, ExpertTool) and isinstance(brightness, BaseTool)
    assert brightness.name == "brightness"
    assert brightness.description == "Tells how bright the image is, from 0 (black) to 255 (white)."
    assert type(brightness).needs_image is True and brightness.needs_image
    assert brightness.args_schema.model_json_schema()["required"] == ["image"]
    assert brightness.status().ready
    assert brightness.run_expert(image=Image.new("RGB", (2, 2), (255, 255, 255))).text == "Brightness: 255 of 255"
    assert brightness.invoke({"image": str(grey_png)}) == "Brightness: 100 of 255"
    message = brightness.invoke({"type": "tool_call", "id": "call-1", "name": "brightness",
                                 "args": {"image": str(grey_png)}})
    assert isinstance(message, ToolMessage) and message.content == "Brightness: 100 of 255"
    assert brightness in registered_experts()
    assert brightness.name in {t.name for t in all_experts(plugins=False)}


def test_function_expert_outputs_and_failures() -> None:
    @expert(name="lookup", register=False)
    def find(query: str, table: dict | None = None) -> tuple[str, Any]:
        """Looks the question up in a small table."""
        hits = [k for k in (table or {"bus": 1, "tram": 2}) if k in query]
        return f"{len(hits)} hits", hits

    assert find.name == "lookup" and not find.needs_image and find.needs_query
    assert set(find.args_schema.model_fields) == {"query"}  # `table` has a default: configuration, not exposed
    result = find.run_expert(query="a bus and a tram")
    assert (result.text, result.data) == ("2 hits", ["bus", "tram"])

    @expert(register=False)
    def as_dict(query: str) -> dict:
        """Returns structured data."""
        return {"answer": 42}

    structured = as_dict.run_expert(query="q")
    assert structured.text == '{"answer": 42}' and structured.data == {"answer": 42}

    @expert(register=False)
    def flaky(query: str = "") -> str:
        """Always fails."""
        raise ConnectionError("service down")

    assert not flaky.needs_query
    assert flaky.run_expert().error == "ConnectionError: service down"


def test_expert_decorator_rejects_unusable_functions() -> None:
    with pytest.raises(TypeError, match="must take an 'image' and/or a 'query'"):
        expert(lambda x: x)
    with pytest.raises(TypeError, match="needs a docstring"):
        expert(lambda query: query)

    def extra(query, mode):
        """Doc."""

    with pytest.raises(TypeError, match=r"\['mode'\] need default values"):
        expert(extra)


def test_registry_refuses_duplicate_names() -> None:
    @expert(name="dup")
    def first(query: str) -> str:
        """One."""
        return "1"

    with pytest.raises(DuplicateExpertError, match="already registered"):

        @expert(name="dup")
        def second(query: str) -> str:
            """Two."""
            return "2"

    other = expert(lambda query: "3", name="dup", description="Three.", register=False)
    register_expert(other, replace=True)
    assert [t.run_expert(query="q").text for t in registered_experts() if t.name == "dup"] == ["3"]


# --------------------------------------------------------------------------------------------- as_expert
class _PathInput(BaseModel):
    image_path: str
    question: str | None = None


class _ImageSizeTool(BaseTool):
    name: str = "image_size"
    description: str = "Tells the image size in pixels."
    args_schema: type[BaseModel] = _PathInput
    seen: list = []  # noqa: RUF012 - a pydantic field (copied per instance), not a shared class attribute

    def _run(self, image_path: str, question: str | None = None) -> str:
        self.seen.append((image_path, os.path.exists(image_path), question))
        with Image.open(image_path) as img:
            return f"{img.width}x{img.height} px"


def test_as_expert_wraps_any_langchain_tool(grey_png: Path) -> None:
    wrapped = as_expert(_ImageSizeTool(seen=[]), register=False)
    assert wrapped.image_arg == "image_path" and wrapped.query_arg == "question"
    assert wrapped.needs_image and not wrapped.needs_query
    assert wrapped.args_schema is _PathInput  # agents still see the tool's own schema
    assert wrapped.run_expert(image=Image.new("RGB", (5, 3)), query="how big?").text == "5x3 px"
    path, existed, question = wrapped.tool.seen[-1]
    assert existed and question == "how big?" and not os.path.exists(path)  # temp PNG cleaned up afterwards
    assert wrapped.invoke({"image_path": str(grey_png)}) == "8x8 px"
    assert wrapped.status().ready

    @tool
    def shout(text: str) -> str:
        """Repeats the question in capitals."""
        return text.upper()

    loud = as_expert(shout, register=False)
    assert loud.query_arg == "text" and loud.needs_query and not loud.needs_image
    assert loud.run_expert(query="hello").text == "HELLO"


def test_as_expert_errors() -> None:
    with pytest.raises(TypeError, match="expects a LangChain BaseTool"):
        as_expert(lambda q: q)

    class _TwoInts(BaseModel):
        a: int
        b: int

    class Adder(BaseTool):
        name: str = "adder"
        description: str = "Adds."
        args_schema: type[BaseModel] = _TwoInts

        def _run(self, a: int, b: int) -> str:
            return str(a + b)

    with pytest.raises(TypeError, match="pass image_arg= and/or query_arg="):
        as_expert(Adder(), register=False)


# --------------------------------------------------------------------------------------------- entry points
PLUGIN = '''
from langchain_core.tools import BaseTool, tool
from pydantic import BaseModel

from tools import expert


class WordCountInput(BaseModel):
    query: str


class WordCountTool(BaseTool):
    name: str = "word_count"
    description: str = "Counts the words of the question."
    args_schema: type[BaseModel] = WordCountInput

    def _run(self, query: str) -> str:
        return f"{len(query.split())} words"


def make_shouter():
    @tool
    def shout(text: str) -> str:
        """Repeats the question in capitals."""
        return text.upper()

    return shout


@expert(register=False)
def plugin_redness(image) -> str:
    """Tells how red the image is."""
    r, g, b = image.resize((1, 1)).getpixel((0, 0))
    return f"Redness: {r - (g + b) // 2}"
'''

ENTRY_POINTS = """
[lav2.experts]
word_count = lav2_fake_plugin:WordCountTool
shout = lav2_fake_plugin:make_shouter
redness = lav2_fake_plugin:plugin_redness
broken = lav2_fake_plugin:does_not_exist
"""


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake installed distribution (dist-info + module) on sys.path, as `pip install` would leave it."""
    site = tmp_path / "site"
    dist_info = site / "lav2_fake_plugin-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: lav2-fake-plugin\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(ENTRY_POINTS)
    (site / "lav2_fake_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("lav2_fake_plugin", None)


def test_entry_points_are_discovered(plugin_site: Path) -> None:
    found = {t.name: t for t in discover_experts()}
    assert {"word_count", "shout", "plugin_redness", "broken"} <= set(found)
    assert found["word_count"].run_expert(query="one two three").text == "3 words"
    assert found["shout"].run_expert(query="hey").text == "HEY"
    assert found["plugin_redness"].run_expert(image=Image.new("RGB", (2, 2), (255, 0, 0))).text == "Redness: 255"
    broken = found["broken"]
    assert isinstance(broken, UnloadableExpert) and not broken.status().ready
    assert "'broken = lav2_fake_plugin:does_not_exist' from lav2-fake-plugin failed to load" in broken.status().reason
    assert broken.run_expert(query="x").error.startswith("unavailable: entry point")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lav2")
    add_tools_parser(parser.add_subparsers(dest="command"))
    return parser


def test_lav2_tools_lists_builtin_custom_and_plugin_experts(plugin_site: Path, grey_png: Path) -> None:
    @expert
    def brightness(image) -> str:
        """Tells how bright the image is."""
        return f"Brightness: {sum(image.convert('L').getdata()) / (image.width * image.height):.0f}"

    out = io.StringIO()
    args = _parser().parse_args(["tools", "--json"])
    assert args.func(args, out) == 0
    rows = {row["name"]: row for row in json.loads(out.getvalue())}
    assert {"caption", "ocr", "detection", "local_search", "web_search"} <= set(rows)
    assert rows["brightness"] == {
        "name": "brightness", "ready": True, "status": "ready", "reason": "ready", "input": "image",
        "source": "registered", "description": "Tells how bright the image is.",
    }
    assert rows["word_count"]["source"] == "entry point word_count (lav2-fake-plugin)" and rows["word_count"]["ready"]
    assert rows["shout"]["input"] == "query"
    assert rows["broken"]["status"] == "unavailable" and "failed to load" in rows["broken"]["reason"]
    assert rows["web_search"]["status"] == "unavailable" and "LAV2_OFFLINE" in rows["web_search"]["reason"]
    assert rows["local_search"]["reason"].startswith("no local index at")

    text = io.StringIO()
    cmd_tools(_parser().parse_args(["tools"]), text)
    listing = text.getvalue().splitlines()
    assert any(line.split()[:3] == ["brightness", "ready", "image"] for line in listing)
    assert any(line.split()[:2] == ["broken", "unavailable"] for line in listing)
    assert listing[-1].endswith("experts ready")

    run = io.StringIO()
    assert cmd_tools(_parser().parse_args(["tools", "brightness", "--image", str(grey_png)]), run) == 0
    assert run.getvalue() == "Brightness: 100\n"
    run = io.StringIO()
    assert cmd_tools(_parser().parse_args(["tools", "word_count", "--query", "a b c d", "--json"]), run) == 0
    assert json.loads(run.getvalue())["text"] == "4 words"
    assert cmd_tools(_parser().parse_args(["tools", "nope"]), io.StringIO()) == 2
    assert cmd_tools(_parser().parse_args(["tools", "broken", "--query", "x"]), io.StringIO()) == 1


def readme_custom_experts_example() -> str:
    """The first code block under the experts section's "Custom experts" heading in README.md — the documented
    one-screen way."""
    readme = (REPO / "README.md").read_text()
    experts = readme.split("## Experts:", 1)[1]
    section = experts.split("## Custom experts", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_documented_custom_expert_example_runs() -> None:
    namespace: dict[str, Any] = {}
    exec(compile(readme_custom_experts_example(), "README.md", "exec"), namespace)  # noqa: S102
    colour, miles, loud = namespace["dominant_colour"], namespace["miles"], namespace["loud"]
    assert colour.run_expert(image=Image.new("RGB", (4, 4), (255, 0, 0))).text == "Average colour: rgb(255, 0, 0)"
    result = miles.run_expert(query="Is 26.2 miles more than 40 km? And 3 miles?")
    assert result.text == "26.2 miles = 42.16 km, 3 miles = 4.83 km" and result.data == {"km": [42.16, 4.83]}
    assert miles.name == "miles_to_km" and miles.needs_query and not colour.needs_query
    assert loud.run_expert(query="hi").text == "HI"
    assert {"dominant_colour", "miles_to_km", "shout"} <= {t.name for t in registered_experts()}


@pytest.mark.slow
def test_python_m_tools_cli_standalone(plugin_site: Path, tmp_path: Path, grey_png: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "my_experts.py").write_text(readme_custom_experts_example())
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(plugin_site)]),
        "LAV2_OFFLINE": "1",
    }

    def cli(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tools.cli", *argv], cwd=work, env=env, capture_output=True,
                              text=True, timeout=120)

    listing = cli("tools", "--json", "--import", "my_experts")
    assert listing.returncode == 0, listing.stderr
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    for name in ("dominant_colour", "miles_to_km"):
        assert rows[name]["ready"] and rows[name]["source"] == "registered"
    assert rows["shout"]["source"] == "entry point shout (lav2-fake-plugin)"  # name clash: the first one wins
    assert rows["word_count"]["ready"] and rows["word_count"]["source"].startswith("entry point")
    ran = cli("tools", "dominant_colour", "--image", str(grey_png), "--import", "my_experts")
    assert (ran.returncode, ran.stdout) == (0, "Average colour: rgb(100, 100, 100)\n")
    ran = cli("tools", "miles_to_km", "--query", "5 miles", "--import", "my_experts", "--json")
    assert json.loads(ran.stdout)["data"] == {"km": [8.05]}
    shout = cli("tools", "shout", "--query", "hello")
    assert (shout.returncode, shout.stdout) == (0, "HELLO\n")
    bad = cli("tools", "--import", "no_such_module")
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: cannot import expert module 'no_such_module'")
    index = cli("index", str(work), "--index", str(tmp_path / "i.sqlite"))
    assert index.returncode == 2 and "nothing to index" in index.stderr  # only a .py file there


def test_wrapped_tool_runs_as_a_child_run_in_callbacks() -> None:
    from langchain_core.callbacks import BaseCallbackHandler

    class Recorder(BaseCallbackHandler):
        def __init__(self) -> None:
            self.started: list[tuple[str, Any]] = []

        def on_tool_start(self, serialized, input_str, *, run_id, parent_run_id=None, **kwargs):
            self.started.append((serialized["name"], parent_run_id))

    @tool
    def echo(text: str) -> str:
        """Echoes."""
        return text

    recorder = Recorder()
    wrapped = as_expert(echo, name="echo_expert", register=False)
    assert wrapped.invoke({"text": "x"}, config={"callbacks": [recorder]}) == "x"
    assert [name for name, _ in recorder.started] == ["echo_expert", "echo"]
    assert recorder.started[0][1] is None and recorder.started[1][1] is not None
