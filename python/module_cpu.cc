// The `linalg_core._cpu` module: LAPACK loading, NumPy entry points, XLA FFI handler capsules.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "ffi_handlers.h"
#include "lapack.h"

namespace py = pybind11;

namespace linalg_core {
void bind_fd(py::module_& m);
void bind_roots(py::module_& m);
void bind_rsvd(py::module_& m);
void bind_lobpcg(py::module_& m);
void bind_kron(py::module_& m);
void bind_shared_basis(py::module_& m);
void bind_polar(py::module_& m);
void bind_eigenbasis(py::module_& m);
}

namespace {

// `capsules` maps routine names to the PyCapsules of scipy.linalg.cython_{lapack,blas}.__pyx_capi__.
void load_lapack(const py::dict& capsules) {
  for (const std::string& name : linalg_core::required_lapack_symbols()) {
    if (!capsules.contains(name)) throw py::value_error("no LAPACK/BLAS capsule for " + name);
    PyObject* cap = py::object(capsules[py::str(name)]).ptr();
    void* fn = PyCapsule_GetPointer(cap, PyCapsule_GetName(cap));
    if (fn == nullptr) throw py::error_already_set();
    linalg_core::set_lapack_symbol(name, fn);
  }
}

template <typename Fn>
py::capsule handler_capsule(Fn* fn) {
  return py::capsule(reinterpret_cast<void*>(fn));
}

}  // namespace

PYBIND11_MODULE(_cpu, m) {
  m.doc() = "linalg_core CPU kernels (C++, LAPACK from SciPy's cython capsules).";
  m.def("required_lapack_symbols", &linalg_core::required_lapack_symbols);
  m.def("missing_lapack_symbols", &linalg_core::missing_lapack_symbols);
  m.def("load_lapack", &load_lapack, py::arg("capsules"));
  m.def("ffi_targets", []() {
    py::dict targets;
    targets["linalg_core_fd_update"] = handler_capsule(LcFdUpdateCpu);
    targets["linalg_core_fd_apply_inverse_root"] =
        handler_capsule(LcFdApplyInverseRootCpu);
    targets["linalg_core_inverse_root"] = handler_capsule(LcInverseRootCpu);
    targets["linalg_core_randomized_svd"] = handler_capsule(LcRandomizedSvdCpu);
    targets["linalg_core_randomized_eigh"] = handler_capsule(LcRandomizedEighCpu);
    targets["linalg_core_lobpcg"] = handler_capsule(LcLobpcgCpu);
    targets["linalg_core_kron_approx"] = handler_capsule(LcKronApproxCpu);
    targets["linalg_core_kron_cosine"] = handler_capsule(LcKronCosineCpu);
    targets["linalg_core_shared_basis_update"] = handler_capsule(LcSharedBasisUpdateCpu);
    targets["linalg_core_polar"] = handler_capsule(LcPolarCpu);
    targets["linalg_core_eigenbasis_refresh"] = handler_capsule(LcEigenbasisRefreshCpu);
    return targets;
  });
  linalg_core::bind_fd(m);
  linalg_core::bind_roots(m);
  linalg_core::bind_rsvd(m);
  linalg_core::bind_lobpcg(m);
  linalg_core::bind_kron(m);
  linalg_core::bind_shared_basis(m);
  linalg_core::bind_polar(m);
  linalg_core::bind_eigenbasis(m);
}
