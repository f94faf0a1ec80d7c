// Element-type dispatch and the batch count shared by the CPU XLA FFI adapters.
#pragma once

#include <cstdint>
#include <string>

#include "xla/ffi/api/ffi.h"

namespace linalg_core {

// Calls run(float{}) or run(double{}) for F32 / F64 buffers; InvalidArgument naming `what`
// otherwise.
template <typename Run>
xla::ffi::Error dispatch_float(xla::ffi::DataType dtype, const char* what, Run&& run) {
  switch (dtype) {
    case xla::ffi::DataType::F32:
      return run(float{});
    case xla::ffi::DataType::F64:
      return run(double{});
    default:
      return xla::ffi::Error::InvalidArgument(std::string(what) + " supports float32 and float64");
  }
}

// Product of the leading axes of `buf`, all but its last `trailing`: the batch count. Leading axes
// of every operand are batch axes (vmap_method="broadcast_all" hands vmapped calls over that way).
inline int64_t leading_count(const xla::ffi::AnyBuffer& buf, size_t trailing) {
  auto dims = buf.dimensions();
  int64_t n = 1;
  for (size_t i = 0; i + trailing < dims.size(); ++i) n *= dims[i];
  return n;
}

}  // namespace linalg_core
