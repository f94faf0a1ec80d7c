"""Cost of the torch round trip (linalg_core/_torch.py) on small inputs, where it matters most.

Each primitive is timed with NumPy arrays and with tensors over the same bytes, in alternating
rounds so that both see the same machine load; the minimum per side is reported, with the ratio
and difference within this run (absolute times on a shared machine vary from run to run).

Run: ``python bench/torch_overhead.py``
"""

import time
import timeit

import numpy as np
import torch

import linalg_core as lc

ROUNDS, CALLS = 15, 100

g = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
s = lc.fd_init(64, 8)
st = lc.fd_init(64, 8, backend="torch")
gt = torch.from_numpy(g)
a = np.random.default_rng(1).standard_normal((32, 32))
a = a @ a.T + np.eye(32)
at = torch.from_numpy(a)
cases = [
    ("fd_update d=64 l=8 r=4 float32", lambda: lc.fd_update(s, factor=g), lambda: lc.fd_update(st, factor=gt)),
    ("inverse_root 32x32 float64", lambda: lc.inverse_root(a, 2), lambda: lc.inverse_root(at, 2)),
]
for name, numpy_call, torch_call in cases:
    best = [np.inf, np.inf]
    for _ in range(ROUNDS):
        for side, call in enumerate((numpy_call, torch_call)):
            best[side] = min(best[side], timeit.timeit(call, timer=time.process_time, number=CALLS) / CALLS * 1e6)
    print(f"{name}: numpy {best[0]:.1f} us, torch {best[1]:.1f} us, "
          f"ratio {best[1] / best[0]:.2f}, +{best[1] - best[0]:.1f} us")
