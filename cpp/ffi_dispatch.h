// Element-type dispatch shared by the CPU XLA FFI adapters.
#pragma once

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

}  // namespace linalg_core
