#include "lapack.h"

#include <utility>

namespace linalg_core {

template <typename T>
lapack_fn::gemm_t<T> Lapack<T>::gemm = nullptr;
template <typename T>
lapack_fn::syrk_t<T> Lapack<T>::syrk = nullptr;
template <typename T>
lapack_fn::geqrf_t<T> Lapack<T>::geqrf = nullptr;
template <typename T>
lapack_fn::ormqr_t<T> Lapack<T>::ormqr = nullptr;
template <typename T>
lapack_fn::syevd_t<T> Lapack<T>::syevd = nullptr;
template <typename T>
lapack_fn::syevr_t<T> Lapack<T>::syevr = nullptr;

template <typename T>
lapack_fn::trsm_t<T> Lapack<T>::trsm = nullptr;
template <typename T>
lapack_fn::trsm_t<T> Lapack<T>::trmm = nullptr;
template <typename T>
lapack_fn::orgqr_t<T> Lapack<T>::orgqr = nullptr;
template <typename T>
lapack_fn::potrf_t<T> Lapack<T>::potrf = nullptr;
template <typename T>
lapack_fn::sytrd_t<T> Lapack<T>::sytrd = nullptr;
template <typename T>
lapack_fn::stedc_t<T> Lapack<T>::stedc = nullptr;

template <typename T>
lapack_fn::gesdd_t<T> Lapack<T>::gesdd = nullptr;

template <typename T>
lapack_fn::getrf_t<T> Lapack<T>::getrf = nullptr;
template <typename T>
lapack_fn::laswp_t<T> Lapack<T>::laswp = nullptr;

template struct Lapack<float>;
template struct Lapack<double>;

namespace {

// One row per routine: its single- and double-precision names and where each pointer goes.
struct Slot {
  const char* name;
  void** target;
};

template <typename P>
void** slot(P& p) {
  return reinterpret_cast<void**>(&p);
}

std::vector<Slot>& slots() {
  static std::vector<Slot> table = {
      {"sgemm", slot(Lapack<float>::gemm)},   {"dgemm", slot(Lapack<double>::gemm)},
      {"ssyrk", slot(Lapack<float>::syrk)},   {"dsyrk", slot(Lapack<double>::syrk)},
      {"sgeqrf", slot(Lapack<float>::geqrf)}, {"dgeqrf", slot(Lapack<double>::geqrf)},
      {"sormqr", slot(Lapack<float>::ormqr)}, {"dormqr", slot(Lapack<double>::ormqr)},
      {"ssyevd", slot(Lapack<float>::syevd)}, {"dsyevd", slot(Lapack<double>::syevd)},
      {"ssyevr", slot(Lapack<float>::syevr)}, {"dsyevr", slot(Lapack<double>::syevr)},
      {"strsm", slot(Lapack<float>::trsm)},   {"dtrsm", slot(Lapack<double>::trsm)},
      {"strmm", slot(Lapack<float>::trmm)},   {"dtrmm", slot(Lapack<double>::trmm)},
      {"sorgqr", slot(Lapack<float>::orgqr)}, {"dorgqr", slot(Lapack<double>::orgqr)},
      {"spotrf", slot(Lapack<float>::potrf)}, {"dpotrf", slot(Lapack<double>::potrf)},
      {"ssytrd", slot(Lapack<float>::sytrd)}, {"dsytrd", slot(Lapack<double>::sytrd)},
      {"sstedc", slot(Lapack<float>::stedc)}, {"dstedc", slot(Lapack<double>::stedc)},
      {"sgesdd", slot(Lapack<float>::gesdd)}, {"dgesdd", slot(Lapack<double>::gesdd)},
      {"sgetrf", slot(Lapack<float>::getrf)}, {"dgetrf", slot(Lapack<double>::getrf)},
      {"slaswp", slot(Lapack<float>::laswp)}, {"dlaswp", slot(Lapack<double>::laswp)},
  };
  return table;
}

}  // namespace

bool set_lapack_symbol(const std::string& name, void* fn) {
  for (Slot& s : slots()) {
    if (name == s.name) {
      *s.target = fn;
      return true;
    }
  }
  return false;
}

std::vector<std::string> required_lapack_symbols() {
  std::vector<std::string> names;
  for (const Slot& s : slots()) names.emplace_back(s.name);
  return names;
}

std::vector<std::string> missing_lapack_symbols() {
  std::vector<std::string> names;
  for (const Slot& s : slots()) {
    if (*s.target == nullptr) names.emplace_back(s.name);
  }
  return names;
}

}  // namespace linalg_core
