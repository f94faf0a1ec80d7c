// A minimal parallel loop over independent problems of a batch.
//
// Batches of small problems (blocked optimizers: many 128x128 blocks) are faster one problem per
// thread, each calling single-threaded-sized BLAS; one large problem is faster left to the
// threaded BLAS. Callers pass how many workers to use; 1 runs inline.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "blas_threads.h"

namespace linalg_core {

inline int hardware_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

// Workers to use for `count` independent problems of `dim` rows: one per core for batches of
// small problems when BLAS can be held to one thread per caller, else one (threaded BLAS).
inline int batch_workers(int64_t count, int64_t dim) {
  if (count < 2 || dim > 512 || !blas_threads_local_available()) return 1;
  return static_cast<int>(std::min<int64_t>(count, hardware_threads()));
}

// Calls body(worker, index) for index in [0, count) on up to `workers` threads, each with BLAS
// limited to one thread. `worker` is in [0, workers) and identifies per-thread scratch.
template <typename Body>
void parallel_for(int64_t count, int workers, Body&& body) {
  workers = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(workers, count)));
  if (workers == 1) {
    for (int64_t i = 0; i < count; ++i) body(0, i);
    return;
  }
  std::atomic<int64_t> next{0};
  // The caller's BLAS setting is saved here and restored after the join; the workers only set
  // theirs (see set_blas_threads_until_exit).
  ScopedBlasThreads single(1);
  auto run = [&](int worker) {
    if (worker > 0) set_blas_threads_until_exit(1);
    for (int64_t i = next.fetch_add(1); i < count; i = next.fetch_add(1)) body(worker, i);
  };
  std::vector<std::thread> threads;
  threads.reserve(workers - 1);
  for (int w = 1; w < workers; ++w) threads.emplace_back(run, w);
  run(0);
  for (std::thread& t : threads) t.join();
}

}  // namespace linalg_core
