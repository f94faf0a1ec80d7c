// Y = A X for a large dense n x n matrix A and a few columns X (n x c, c up to a few dozen): the
// matrix-times-block product of LOBPCG on an explicit matrix, once per iteration.
//
// Why: at n = 4000, c = 16 (float64) BLAS GEMM takes 6.8-8.8 ms, although one pass over A's
// 128 MB at this machine's bandwidth (dgemv: 2.9 ms) bounds it near 3 ms: GotoBLAS-style GEMM
// packs A into cache-sized panels first (a read and a write of A) and then streams the packed
// copy, which pays off only when A's panels are reused across many columns of X. With a few
// columns, one pass over A that multiplies each loaded tile by all of X at once is
// bandwidth-bound instead.
//
// Loop order: A is split into panels of kPanel columns; each thread owns a range of rows and,
// for each panel, walks its row tiles top to bottom (kPanel concurrent sequential streams, which
// the hardware prefetchers follow), keeping a tile of Y (kRows x 8 columns) in registers across
// the panel's columns. X is read transposed (X^T, row-major) so the 8 values a column of A
// meets are contiguous. Every product is a plain sum of a_ik x_kj in k order within a panel, so
// the result matches GEMM to rounding (|error| <= n eps sum_k |a_ik x_kj|).
//
// The tiled loop is compiled for AVX-512F only (runtime check); without it callers use GEMM.
#pragma once

namespace linalg_core {

// True when skinny_matmul runs its own loop (AVX-512F present) and is expected to beat GEMM for
// an n x n A times c columns (measured crossover, see skinny_matmul.cc).
bool skinny_matmul_preferred(int n, int c);

// y (n x c, column-major, ld n) = a (n x n, column-major, ld n) x (n x c, column-major, ld n),
// on up to `threads` threads (rows split between them). Requires skinny_matmul_preferred-capable
// hardware (AVX-512F); falls back to GEMM otherwise.
template <typename T>
void skinny_matmul(int n, const T* a, const T* x, int c, T* y, int threads);

}  // namespace linalg_core
