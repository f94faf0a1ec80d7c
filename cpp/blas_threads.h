// Per-thread BLAS threading, for batches that run one small problem per thread.
//
// Calling a threaded OpenBLAS from several threads at once makes them contend for its one thread
// server (measured: 64 FD updates of d=128 ran 4x slower than with one BLAS thread per caller).
// OpenBLAS >= 0.3.27 exports `openblas_set_num_threads_local`, which sets the count for the
// calling thread only; every loaded copy (NumPy and SciPy each bundle one) is found once through
// the dynamic loader. Without it, batches run serially and BLAS keeps its threads.
#pragma once

namespace linalg_core {

// True when every BLAS in the process can be limited per thread.
bool blas_threads_local_available();

// Limits BLAS to `n` threads on the calling thread for the object's lifetime; n <= 0 changes
// nothing.
class ScopedBlasThreads {
 public:
  explicit ScopedBlasThreads(int n);
  ~ScopedBlasThreads();
  ScopedBlasThreads(const ScopedBlasThreads&) = delete;
  ScopedBlasThreads& operator=(const ScopedBlasThreads&) = delete;

 private:
  int previous_[8];
  int count_ = 0;
};

}  // namespace linalg_core
