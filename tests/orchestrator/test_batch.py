"""lav2 batch: inputs, crash-safe append-only output, --resume after kill -9 with every row exactly once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from orchestrator.batch import BatchInputError, BatchRow, read_done, read_rows, run_batch

from .conftest import make_image

REPO = Path(__file__).resolve().parents[2]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def ids_in(path: Path) -> Counter:
    return Counter(json.loads(line)["id"] for line in path.read_text().splitlines())


# ------------------------------------------------------------------------------------------------ inputs
def test_read_rows_jsonl_csv_folder(tmp_path):
    make_image(0).save(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    make_image(1).save(tmp_path / "sub" / "b.jpg")
    rows = read_rows(write_jsonl(tmp_path / "in.jsonl", [
        {"image": "a.png", "question": "q1"}, {"id": "x", "image": "a.png", "question": "q2", "answers": ["7"]}]))
    assert [r.id for r in rows] == ["row-1", "x"]
    assert rows[0].image == str(tmp_path / "a.png")  # relative to the input file
    assert rows[1].extra == {"answers": ["7"]}
    (tmp_path / "in.csv").write_text("image,question\na.png,what?\nsub/b.jpg,who?\n")
    assert [(r.id, r.question) for r in read_rows(tmp_path / "in.csv")] == [("row-1", "what?"), ("row-2", "who?")]
    folder = read_rows(tmp_path, ["q1", "q2"])
    assert [r.id for r in folder] == ["a.png#q1", "a.png#q2", "sub/b.jpg#q1", "sub/b.jpg#q2"]


def test_read_rows_errors_name_the_problem(tmp_path):
    with pytest.raises(BatchInputError, match="--question"):
        read_rows(tmp_path)
    with pytest.raises(BatchInputError, match="appears twice"):
        read_rows(write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "image": "x", "question": "q"}] * 2))
    (tmp_path / "bad.jsonl").write_text('{"image": "x", "question": "q"}\nnot json\n')
    with pytest.raises(BatchInputError, match="bad.jsonl:2"):
        read_rows(tmp_path / "bad.jsonl")
    with pytest.raises(BatchInputError, match="no question"):
        read_rows(write_jsonl(tmp_path / "nq.jsonl", [{"image": "x"}]))


# ------------------------------------------------------------------------------------------------ output
def test_read_done_truncates_a_torn_last_line(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "a", "answer": "1"}\n{"id": "b", "answer": "2"}\n{"id": "c", "ans')
    assert set(read_done(out)) == {"a", "b"}
    assert out.read_text().endswith('"2"}\n')  # the torn line is gone, the complete ones kept
    out.write_text('{"id": "a"}\nGARBAGE\n{"id": "b"}\n')
    with pytest.raises(BatchInputError, match="not JSON"):
        read_done(out)


def test_run_batch_resume_skips_done_rows_and_records_failures(tmp_path):
    out = tmp_path / "out.jsonl"
    rows = [BatchRow(f"r{i}", None, f"q{i}", {}) for i in range(6)]
    asked = []

    def answer(row):
        asked.append(row.id)
        if row.id == "r3":
            raise ValueError("unreadable image")
        return {"answer": row.question.upper()}

    first = run_batch(rows[:4], answer, out, concurrency=2, progress=False)
    assert (first.written, first.failed) == (4, 1)
    with pytest.raises(BatchInputError, match="--resume"):
        run_batch(rows, answer, out, progress=False)
    second = run_batch(rows, answer, out, resume=True, concurrency=3, progress=False)
    assert (second.skipped, second.written) == (4, 2)
    assert ids_in(out) == Counter({f"r{i}": 1 for i in range(6)})
    assert sorted(asked) == sorted([f"r{i}" for i in range(6)])  # nothing asked twice
    records = {json.loads(line)["id"]: json.loads(line) for line in out.read_text().splitlines()}
    assert records["r3"]["error"] == "ValueError: unreadable image" and records["r3"]["answer"] is None
    assert records["r5"] == {"id": "r5", "image": None, "question": "q5", "answer": "Q5", "error": None}
    with pytest.raises(BatchInputError, match="different input"):
        run_batch([BatchRow("r0", None, "another question", {})], answer, out, resume=True, progress=False)
    run_batch(rows[:1], answer, out, overwrite=True, progress=False)
    assert ids_in(out) == Counter({"r0": 1})


def test_bounded_concurrency(tmp_path):
    import threading

    active, peak, lock = [0], [0], threading.Lock()

    def answer(row):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return {"answer": "x"}

    rows = [BatchRow(str(i), None, "q", {}) for i in range(12)]
    run_batch(rows, answer, tmp_path / "o.jsonl", concurrency=3, progress=False)
    assert peak[0] == 3


# ------------------------------------------------------------------------------------------------ kill -9
def _batch_cmd(inp: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", "batch", str(inp), "-o", str(out), "--model", "random:tiny",
            "--experts", "none", "--max-new-tokens", "24", "-j", "2", "--no-progress", *extra]


@pytest.mark.slow  # three interpreter start-ups, ~20 s
@pytest.mark.timeout(300)
def test_kill_9_mid_run_then_resume_gives_every_row_exactly_once(tmp_path):
    make_image(0).save(tmp_path / "img.png")
    n = 80
    inp = write_jsonl(tmp_path / "in.jsonl", [{"image": "img.png", "question": f"question {i}"} for i in range(n)])
    out = tmp_path / "answers.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(_batch_cmd(inp, out), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= 10:
            break
        time.sleep(0.005)
    assert proc.poll() is None, f"the batch finished before it could be killed: {proc.stderr.read().decode()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = out.read_bytes().count(b"\n")
    assert 10 <= written < n
    with open(out, "ab") as f:  # what a kill in the middle of a write leaves behind
        f.write(b'{"id": "row-999", "answer": "half a li')
    done = subprocess.run(_batch_cmd(inp, out, "--resume"), cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr
    assert f"{n - written} row(s) written, {written} already done" in done.stderr
    counts = ids_in(out)
    assert counts == Counter({f"row-{i}": 1 for i in range(1, n + 1)})
    again = subprocess.run(_batch_cmd(inp, out, "--resume"), cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=240)
    assert "0 row(s) written" in again.stderr and ids_in(out) == counts


# ------------------------------------------------------------------------------------------------ one writer, shards
def test_a_second_writer_on_the_same_output_is_refused(tmp_path):
    import threading

    from orchestrator.batch import OutputLock

    out = tmp_path / "out.jsonl"
    rows = [BatchRow(f"r{i}", None, f"q{i}", {}) for i in range(8)]
    started, release = threading.Event(), threading.Event()

    def slow(row):
        started.set()
        release.wait(10)
        return {"answer": "a"}

    first = threading.Thread(target=run_batch, args=(rows, slow, out), kwargs={"progress": False})
    first.start()
    assert started.wait(10)
    with pytest.raises(BatchInputError, match=f"being written by another lav2 batch \\(pid {os.getpid()}\\)"):
        run_batch(rows, lambda r: {"answer": "b"}, out, resume=True, progress=False)
    release.set()
    first.join(10)
    assert ids_in(out) == Counter({f"r{i}": 1 for i in range(8)})
    with OutputLock(out):  # released when the run ended
        pass


def test_shards_cover_every_row_exactly_once(tmp_path):
    from orchestrator.batch import shard_rows

    rows = [BatchRow(f"r{i}", None, "q", {}) for i in range(11)]
    parts = [shard_rows(rows, f"{i}/3") for i in range(3)]
    assert sorted(r.id for p in parts for r in p) == sorted(r.id for r in rows)
    assert [len(p) for p in parts] == [4, 4, 3]
    assert shard_rows(rows, "1/3") == parts[1]  # deterministic
    for bad in ("3/3", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(BatchInputError, match="--shard"):
            shard_rows(rows, bad)


@pytest.mark.slow  # interpreter start-ups
@pytest.mark.timeout(300)
def test_two_concurrent_cli_batches_on_one_output_never_duplicate_rows(tmp_path):
    make_image(0).save(tmp_path / "img.png")
    n = 40
    inp = write_jsonl(tmp_path / "in.jsonl", [{"image": "img.png", "question": f"question {i}"} for i in range(n)])
    out = tmp_path / "answers.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen(_batch_cmd(inp, out, "--resume"), cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=240) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert ids_in(out) == Counter({f"row-{i}": 1 for i in range(1, n + 1)})
    if codes == [0, 2]:  # the usual case: they overlapped, the second was refused with one line
        err = next(e for (_, e), p in zip(results, procs) if p.returncode == 2)
        assert "being written by another lav2 batch" in err and "Traceback" not in err
    else:  # the first finished before the second started: the second found nothing left to do
        assert codes == [0, 0]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cli_shards_split_an_input_and_batch_equals_one_at_a_time(tmp_path):
    make_image(0).save(tmp_path / "img.png")
    n = 12
    inp = write_jsonl(tmp_path / "in.jsonl", [{"image": "img.png", "question": f"q {i}"} for i in range(n)])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    outs = []
    for i in range(2):
        outs.append(tmp_path / f"part{i}.jsonl")
        res = subprocess.run(_batch_cmd(inp, outs[-1], "--shard", f"{i}/2"), cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=240)
        assert res.returncode == 0, res.stderr
    single = tmp_path / "single.jsonl"
    res = subprocess.run(_batch_cmd(inp, single, "--max-batch-size", "1"), cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=240)
    assert res.returncode == 0, res.stderr
    merged = [json.loads(line) for o in outs for line in o.read_text().splitlines()]
    assert Counter(r["id"] for r in merged) == Counter({f"row-{i}": 1 for i in range(1, n + 1)})
    alone = {json.loads(line)["id"]: json.loads(line)["answer"] for line in single.read_text().splitlines()}
    assert {r["id"]: r["answer"] for r in merged} == alone  # batched (default) answers = one at a time


def test_read_rows_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    make_image(0).save(tmp_path / "a.png")
    pq.write_table(pa.table({"id": ["x", "y"], "image": ["a.png", "a.png"], "question": ["q1", "q2"]}),
                   tmp_path / "in.parquet")
    rows = read_rows(tmp_path / "in.parquet")
    assert [(r.id, r.question, r.image) for r in rows] == [("x", "q1", str(tmp_path / "a.png")),
                                                             ("y", "q2", str(tmp_path / "a.png"))]
    (tmp_path / "bad.parquet").write_text("nope")
    with pytest.raises(BatchInputError, match="not a readable Parquet"):
        read_rows(tmp_path / "bad.parquet")
