// Per-thread BLAS threading, for batches that run one small problem per thread.
//
// Calling a threaded OpenBLAS from several threads at once makes them contend for its one thread
// server, which makes batches of small problems several times slower than one BLAS thread per
// caller (bench/bench_fd.py's batched case).
// OpenBLAS >= 0.3.27 exports `openblas_set_num_threads_local`, which sets the count for the
// calling thread only; every loaded copy (NumPy and SciPy each bundle one) is found once through
// the dynamic loader. Without it, batches run serially and BLAS keeps its threads.
#pragma once

namespace linalg_core {

// True when every BLAS in the process can be limited per thread.
bool blas_threads_local_available();

// Limits BLAS to `n` threads on the calling thread for the object's lifetime; n <= 0 changes
// nothing. The OpenBLAS builds that NumPy and SciPy ship (pthreads) keep the "local" count in
// one process-wide variable, so scopes opened by several user threads at once overlap: the
// counts are saved by the first scope to open anywhere in the process and restored by the last
// to close (a process-wide count of open scopes), which leaves them as they were found whatever
// the interleaving. A scope closing while others are still open restores the value its own
// thread saw, which is what a genuinely thread-local setter needs. While scopes are open, BLAS
// calls of other threads also run on `n` threads.
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

// Sets the BLAS thread count of a worker thread that ends before the thread that started it
// leaves its own ScopedBlasThreads (parallel_for's workers). OpenBLAS 0.3.30 keeps the "local"
// count in a process-wide variable, so a worker restoring its previous value after the caller
// had restored its own would leave every later BLAS call of the process on one thread; workers
// therefore set and never restore, and the caller's scope restores after joining them.
void set_blas_threads_until_exit(int n);

// One BLAS thread for LAPACK calls on matrices of at most 512 rows: below a few hundred rows
// OpenBLAS's threads cost more than they give (syevd on a few hundred rows runs faster on one
// thread than on two); larger problems keep the threaded BLAS.
class SmallProblemBlasThreads {
 public:
  explicit SmallProblemBlasThreads(int n) : guard_(n <= 512 ? 1 : 0) {}

 private:
  ScopedBlasThreads guard_;
};

}  // namespace linalg_core
