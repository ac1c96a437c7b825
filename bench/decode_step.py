"""One C decode step (core_model.fastpath.DecodeStep) in a loop, fp32 vs int8 activations, no engine or Python
sampling around it: ms per step and tok/s at each batch size, medians of 3 interleaved reps of 20 steps.

    python bench/decode_step.py [ACTIVATIONS=fp32,int8] [BATCHES=1,4,8,16] [THREADS=2]
"""
import statistics
import sys
import time

import torch

sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.dirname(__import__("os").path.abspath(__file__))))
from core_model import load_model
from core_model.fastpath import decode_step
acts = (sys.argv[1] if len(sys.argv) > 1 else 'fp32,int8').split(',')
sizes = [int(x) for x in (sys.argv[2] if len(sys.argv) > 2 else '1,4,8,16').split(',')]
torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
models = {a: load_model('smollm2-135m', device='cpu', dtype='float32', activations=a) for a in acts}
res = {}
for rep in range(3):
  for a, m in models.items():
    for B in sizes:
        cache = m.llm.new_cache(B, 256)
        step = decode_step(m.llm, [c.k for c in cache.layers], [c.v for c in cache.layers])
        tok = torch.full((B,), 100); pos = torch.zeros(B, dtype=torch.int64)
        for i in range(3): step(tok, pos + i)
        t0 = time.perf_counter(); n = 20
        for i in range(n): step(tok, pos + 3 + i)
        dt = (time.perf_counter() - t0) / n
        res.setdefault((a, B), []).append(dt)
for (a, B), v in sorted(res.items()):
    d = statistics.median(v)
    print(f"{a} B={B}: {d*1e3:.2f} ms/step  {B/d:.0f} tok/s")
