"""lav2 batch --ray: an actor pool on a local Ray instance (loopback only) gives the local run's answers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from orchestrator.cli import main  # noqa: E402

from .conftest import make_image  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
             configure_logging=False)
    yield
    ray.shutdown()


def _rows(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


@pytest.mark.slow  # starts Ray and two actors
@pytest.mark.timeout(600)
def test_ray_batch_equals_the_local_run(local_ray, tmp_path):
    for i in range(3):
        make_image(i).save(tmp_path / f"img{i}.png")
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"image": f"img{i % 3}.png", "question": f"what is item {i}?",
                                       "answers": [str(i)]}) + "\n" for i in range(10)))
    common = ["--model", "random:tiny", "--experts", "none", "--max-new-tokens", "12", "--no-progress"]
    assert main(["batch", str(inp), "-o", str(tmp_path / "local.jsonl"), *common]) == 0
    assert main(["batch", str(inp), "-o", str(tmp_path / "ray.jsonl"), "--ray", "--ray-actors", "2",
                 "--ray-block", "3", *common]) == 0
    local, remote = _rows(tmp_path / "local.jsonl"), _rows(tmp_path / "ray.jsonl")
    assert set(local) == set(remote) and len(remote) == 10
    for key, row in local.items():
        for field in ("answer", "question", "image", "experts", "router", "error", "input"):
            assert remote[key][field] == row[field], (key, field)
    # resume on Ray: nothing left to do
    assert main(["batch", str(inp), "-o", str(tmp_path / "ray.jsonl"), "--ray", "--resume", *common]) == 0
    assert len(_rows(tmp_path / "ray.jsonl")) == 10


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_vqa_dataset_on_a_ray_dataset_with_parquet_in_and_out(local_ray, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from orchestrator.ray_batch import RESULT_COLUMNS, vqa_dataset

    make_image(0).save(tmp_path / "img.png")
    pq.write_table(pa.table({"id": ["a", "b", "c"], "image": [str(tmp_path / "img.png")] * 3,
                             "question": ["one?", "two?", "three?"]}), tmp_path / "in.parquet")
    ds = ray.data.read_parquet(str(tmp_path / "in.parquet"))
    vqa_dataset(ds, model="random:tiny", router="none", max_new_tokens=8).write_parquet(str(tmp_path / "out"))
    table = pq.read_table(tmp_path / "out")
    assert set(RESULT_COLUMNS) <= set(table.column_names)
    got = {r["id"]: r for r in table.to_pylist()}
    assert set(got) == {"a", "b", "c"} and all(r["error"] is None for r in got.values())
    from orchestrator.pipeline import VisualQAPipeline

    local = VisualQAPipeline("random:tiny", router="none", max_new_tokens=8)
    for key, q in (("a", "one?"), ("b", "two?")):
        assert got[key]["answer"] == local.invoke({"image": str(tmp_path / "img.png"), "question": q}).answer
