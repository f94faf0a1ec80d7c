// LAPACK/BLAS through function pointers, set once at import.
//
// The pointers come from the `__pyx_capi__` capsules of scipy.linalg.cython_lapack / cython_blas
// (the binding layer reads them; this layer never sees Python), so NumPy, SciPy, JAX and this
// library share one OpenBLAS. The routines use the Fortran calling convention with 32-bit
// integers (LP64), column-major storage, and no hidden string-length arguments (SciPy's wrappers
// take none).
//
// `Lapack<T>` gives one typed entry point per routine for T = float or double, so kernels are
// written once as templates.
#pragma once

#include <string>
#include <vector>

namespace linalg_core {

// Stores the pointer of routine `name` (e.g. "dsyevr"). Returns false for an unknown name.
bool set_lapack_symbol(const std::string& name, void* fn);
// Names of the routines the kernels call, to be resolved by the binding layer at import.
std::vector<std::string> required_lapack_symbols();
// Names among required_lapack_symbols() that have not been set.
std::vector<std::string> missing_lapack_symbols();

namespace lapack_fn {
template <typename T>
using gemm_t = void (*)(const char*, const char*, const int*, const int*, const int*, const T*,
                        const T*, const int*, const T*, const int*, const T*, T*, const int*);
template <typename T>
using syrk_t = void (*)(const char*, const char*, const int*, const int*, const T*, const T*,
                        const int*, const T*, T*, const int*);
template <typename T>
using geqrf_t = void (*)(const int*, const int*, T*, const int*, T*, T*, const int*, int*);
template <typename T>
using ormqr_t = void (*)(const char*, const char*, const int*, const int*, const int*, const T*,
                         const int*, const T*, T*, const int*, T*, const int*, int*);
template <typename T>
using syevd_t = void (*)(const char*, const char*, const int*, T*, const int*, T*, T*, const int*,
                         int*, const int*, int*);
template <typename T>
using syevr_t = void (*)(const char*, const char*, const char*, const int*, T*, const int*,
                         const T*, const T*, const int*, const int*, const T*, int*, T*, T*,
                         const int*, int*, T*, const int*, int*, const int*, int*);
template <typename T>
using trsm_t = void (*)(const char*, const char*, const char*, const char*, const int*, const int*,
                        const T*, const T*, const int*, T*, const int*);
template <typename T>
using orgqr_t = void (*)(const int*, const int*, const int*, T*, const int*, const T*, T*,
                         const int*, int*);
template <typename T>
using potrf_t = void (*)(const char*, const int*, T*, const int*, int*);
template <typename T>
using sytrd_t = void (*)(const char*, const int*, T*, const int*, T*, T*, T*, T*, const int*,
                         int*);
template <typename T>
using stedc_t = void (*)(const char*, const int*, T*, T*, T*, const int*, T*, const int*, int*,
                         const int*, int*);
template <typename T>
using gesdd_t = void (*)(const char*, const int*, const int*, T*, const int*, T*, T*, const int*,
                         T*, const int*, T*, const int*, int*, int*);
template <typename T>
using getrf_t = void (*)(const int*, const int*, T*, const int*, int*, int*);
template <typename T>
using laswp_t = void (*)(const int*, T*, const int*, const int*, const int*, const int*,
                         const int*);
}  // namespace lapack_fn

template <typename T>
struct Lapack {
  static lapack_fn::gemm_t<T> gemm;
  static lapack_fn::syrk_t<T> syrk;
  static lapack_fn::geqrf_t<T> geqrf;
  static lapack_fn::ormqr_t<T> ormqr;
  static lapack_fn::syevd_t<T> syevd;
  static lapack_fn::syevr_t<T> syevr;
  static lapack_fn::trsm_t<T> trsm;
  static lapack_fn::trsm_t<T> trmm;  // the same signature as trsm
  static lapack_fn::orgqr_t<T> orgqr;
  static lapack_fn::potrf_t<T> potrf;
  static lapack_fn::sytrd_t<T> sytrd;
  static lapack_fn::stedc_t<T> stedc;
  static lapack_fn::gesdd_t<T> gesdd;
  static lapack_fn::getrf_t<T> getrf;
  static lapack_fn::laswp_t<T> laswp;
};

extern template struct Lapack<float>;
extern template struct Lapack<double>;

}  // namespace linalg_core
