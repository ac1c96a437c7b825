"""`lav2 serve` under load: 32 chat requests from 8 concurrent clients vs the same 32 one after another.

    python bench/serve.py                        # SmolLM2-135M (the offline default), 64 new tokens per answer
    python bench/serve.py --reps 3 --clients 8 --requests 32 --max-tokens 64
    python bench/serve.py --activations fp32,int8  # one server per setting (`lav2 serve --activations`), side by side
    python bench/serve.py --llama-server /path/to/llama-server   # and llama.cpp's own server on the same GGUF

`--llama-server PATH` adds llama.cpp's HTTP server (`llama-server`, the C++ one, continuous batching over
`--clients` parallel slots) on the same SmolLM2 GGUF file, the same thread count and the same two passes, so the
ratio of each server is measured beside the other on this machine. It is not a Python dependency: build it from
llama.cpp's source (the `llama-cpp-python` sdist vendors it):

    cmake -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF
    cmake --build build --target llama-server -j2        # ~7 minutes on two cores

Its concurrent answers are reported against its sequential ones but not required to equal them (llama.cpp does
not promise batch-invariant results; ours must give every request its batch-1 answer).

Starts the real server (`python -m orchestrator.cli serve`) on a free loopback port, waits until it is ready, then
runs the sequential and the concurrent pass alternately (`--reps` times each, medians reported). Every request is
counted: answered (200), refused with 429, or failed — none may be lost, and the concurrent greedy answers must
equal the sequential ones. Bounded: a fixed number of requests, a client timeout, and the server is stopped at the
end. Prints a Markdown table for bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
TOPICS = ["the sea", "a library", "autumn leaves", "a train station", "bread", "the moon", "a violin", "rain",
          "a mountain village", "coffee", "a lighthouse", "snow", "a market", "bees", "a bicycle", "the desert",
          "a museum", "thunder", "a garden", "ice skating", "a harbour", "owls", "a bakery", "the night sky",
          "a river", "chess", "a forest path", "kites", "a volcano", "tea", "a castle", "the wind"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(args: argparse.Namespace, port: int) -> list[str]:
    if args.current_activations == "llama-server":
        from core_model.loading import default_gguf_path

        gguf = args.gguf or str(default_gguf_path())
        # one slot per client, each with room for a prompt and max_tokens; continuous batching is its default
        return [args.llama_server, "-m", gguf, "--host", "127.0.0.1", "--port", str(port), "-t", str(args.threads),
                "-tb", str(args.threads), "-np", str(args.clients), "-c", str(args.clients * 512), "--no-webui",
                "--log-disable"]
    cmd = [sys.executable, "-m", "orchestrator.cli", "serve", "--model", args.model, "--port", str(port),
           "--experts", "none", "--log-level", "warning", "--max-pending", str(args.max_pending)]
    if args.current_activations != "fp32":
        cmd += ["--activations", args.current_activations]
    return cmd


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen:
    cmd = server_command(args, port)
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {proc.stderr.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json().get("status") == "ok":
                return proc
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.25)
    proc.kill()
    raise SystemExit("the server did not become ready within 300 s")


def one_request(client: httpx.Client, i: int, max_tokens: int) -> dict:
    body = {"model": "default", "max_tokens": max_tokens, "temperature": 0,
            "messages": [{"role": "user", "content": f"Write two sentences about {TOPICS[i % len(TOPICS)]}."}]}
    started = time.perf_counter()
    try:
        r = client.post("/v1/chat/completions", json=body)
    except httpx.HTTPError as e:
        return {"i": i, "status": f"error: {type(e).__name__}", "seconds": time.perf_counter() - started}
    out = {"i": i, "status": r.status_code, "seconds": time.perf_counter() - started,
           "retry_after": r.headers.get("retry-after")}
    if r.status_code == 200:
        data = r.json()
        out["text"] = data["choices"][0]["message"]["content"]
        out["tokens"] = data["usage"]["completion_tokens"]
    return out


def engine_counters(url: str) -> dict[str, float]:
    """The engine's cumulative decode steps and rows (from /metrics): rows / steps = mean batch size."""
    out = {"steps": 0.0, "rows": 0.0}
    for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
        if line.startswith("lav2_engine_steps_total "):
            out["steps"] = float(line.split()[-1])
        elif line.startswith("lav2_engine_rows_decoded_total "):
            out["rows"] = float(line.split()[-1])
    return out


def run_pass(url: str, n: int, clients: int, max_tokens: int, timeout: float) -> dict:
    """n requests through `clients` concurrent connections (1 = sequential)."""
    before = engine_counters(url)
    pool = [httpx.Client(base_url=url, timeout=timeout) for _ in range(clients)]
    started = time.perf_counter()
    try:
        if clients == 1:
            results = [one_request(pool[0], i, max_tokens) for i in range(n)]
        else:
            with cf.ThreadPoolExecutor(clients) as executor:
                results = list(executor.map(lambda i: one_request(pool[i % clients], i, max_tokens), range(n)))
    finally:
        for c in pool:
            c.close()
    wall = time.perf_counter() - started
    after = engine_counters(url)
    steps = after["steps"] - before["steps"]
    ok = [r for r in results if r["status"] == 200]
    latencies = sorted(r["seconds"] for r in ok)
    return {"wall": wall, "results": results, "ok": len(ok), "refused": sum(r["status"] == 429 for r in results),
            "failed": len(results) - len(ok) - sum(r["status"] == 429 for r in results),
            "batch": (after["rows"] - before["rows"]) / steps if steps else float("nan"),
            "tokens": sum(r["tokens"] for r in ok), "p50": percentile(latencies, 50), "p95": percentile(latencies, 95)}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    k = (len(values) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="what `lav2 serve --model` loads")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients of the concurrent pass")
    parser.add_argument("--max-tokens", type=int, default=64, help="max_tokens of every request")
    parser.add_argument("--reps", type=int, default=2, help="sequential/concurrent passes, alternating")
    parser.add_argument("--max-pending", type=int, default=64, help="the server's --max-pending")
    parser.add_argument("--timeout", type=float, default=600.0, help="client timeout per request, seconds")
    parser.add_argument("--activations", default="fp32",
                        help="comma-separated `lav2 serve --activations` settings (fp32, int8), one server each")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="llama-server's -t/-tb (default: every core, as `lav2 serve` uses)")
    parser.add_argument("--llama-server", metavar="PATH", default=None,
                        help="also measure llama.cpp's llama-server binary at PATH on the same GGUF (see above)")
    parser.add_argument("--gguf", default=None, help="the GGUF llama-server loads (default: the offline SmolLM2)")
    args = parser.parse_args()
    settings = [a.strip() for a in args.activations.split(",") if a.strip()]
    if not settings or any(a not in ("fp32", "int8") for a in settings):
        parser.error(f"--activations: a comma-separated list of fp32/int8, got {args.activations!r}")
    if args.llama_server:
        if not (os.path.isfile(args.llama_server) and os.access(args.llama_server, os.X_OK)):
            parser.error(f"--llama-server: {args.llama_server} is not an executable file")
        settings.append("llama-server")
    summary, code = [], 0
    for act in settings:
        args.current_activations = act
        ratio, rc = one_setting(args)
        summary.append((act, ratio))
        code = code or rc
    if len(summary) > 1:
        print("\n| server | concurrent / sequential throughput |")
        print("|---|---:|")
        for act, ratio in summary:
            print(f"| {act} | {ratio:.2f}x |")
    return code


def one_setting(args: argparse.Namespace) -> tuple[float, int]:
    port = free_port()
    proc = start_server(args, port)
    url = f"http://127.0.0.1:{port}"
    try:
        one_request(httpx.Client(base_url=url, timeout=args.timeout), 0, 8)  # warm-up (kernels, caches)
        runs: dict[str, list[dict]] = {"sequential": [], "concurrent": []}
        for rep in range(args.reps):
            for name, clients in (("sequential", 1), ("concurrent", args.clients)):
                run = run_pass(url, args.requests, clients, args.max_tokens, args.timeout)
                runs[name].append(run)
                print(f"rep {rep + 1} {name:>10}: {run['wall']:.1f}s, {run['tokens'] / run['wall']:.1f} tok/s, "
                      f"{run['ok']} answered, {run['refused']} "
                      f"refused (429), {run['failed']} failed, {run['batch']:.2f} rows per decode step, p50 {run['p50']:.2f}s p95 {run['p95']:.2f}s",
                      file=sys.stderr)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    lost = sum(args.requests - len(r["results"]) for rs in runs.values() for r in rs)
    failed = sum(r["failed"] for rs in runs.values() for r in rs)
    seq_text = {x["i"]: x.get("text") for x in runs["sequential"][0]["results"]}
    same = all(x.get("text") == seq_text[x["i"]] for r in runs["concurrent"] for x in r["results"]
               if x["status"] == 200)
    rows = []
    for name in ("sequential", "concurrent"):
        wall = med(name, "wall")
        rows.append((name, 1 if name == "sequential" else args.clients, wall, args.requests / wall,
                     med(name, "tokens") / wall, med(name, "p50"), med(name, "p95"),
                     sum(r["ok"] for r in runs[name]), sum(r["refused"] for r in runs[name])))
    ratio = rows[1][3] / rows[0][3]
    batch = statistics.median(r["batch"] for r in runs["concurrent"])
    ours = args.current_activations != "llama-server"
    server = f"`--activations {args.current_activations}`" if ours else "llama.cpp `llama-server`"
    print(f"\n`python bench/serve.py --requests {args.requests} --clients {args.clients} --max-tokens "
          f"{args.max_tokens} --reps {args.reps} --activations {args.activations}` — server with "
          f"{server}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, "
          f"{os.cpu_count()} cores, model {args.model}, greedy, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end\n")
    print("| pass | clients | wall s | requests/s | tokens/s | p50 latency s | p95 latency s | answered | 429 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, clients, wall, rps, tps, p50, p95, ok, refused in rows:
        print(f"| {name} | {clients} | {wall:.1f} | {rps:.2f} | {tps:.1f} | {p50:.2f} | {p95:.2f} | {ok} | "
              f"{refused} |")
    print(f"\nthroughput concurrent / sequential: **{ratio:.2f}x** (medians of {args.reps} interleaved passes); "
          f"{lost} lost, {failed} failed; concurrent greedy answers identical to sequential: {same}"
          + (f"; mean rows per engine decode step in the concurrent pass: {batch:.2f}" if ours else ""))
    # ours must give every request its batch-1 answer; llama.cpp does not promise that (reported, not failed)
    return ratio, 0 if lost == 0 and failed == 0 and (same or not ours) else 1


if __name__ == "__main__":
    sys.exit(main())
