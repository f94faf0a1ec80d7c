import timeit, numpy as np, torch, linalg_core as lc
g = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
s = lc.fd_init(64, 8); st = lc.fd_init(64, 8, dtype=torch.float32); gt = torch.from_numpy(g)
a = np.random.default_rng(1).standard_normal((32, 32)); a = a @ a.T + np.eye(32); at = torch.from_numpy(a)
for name, f in [("fd_update numpy", lambda: lc.fd_update(s, factor=g)), ("fd_update torch", lambda: lc.fd_update(st, factor=gt)),
                ("inverse_root numpy", lambda: lc.inverse_root(a, 2)), ("inverse_root torch", lambda: lc.inverse_root(at, 2))]:
    print(name, "%.1f us" % (min(timeit.repeat(f, number=200, repeat=5)) / 200 * 1e6))
