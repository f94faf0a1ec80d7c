// Element-type dispatch and the batch count shared by the CPU XLA FFI adapters.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

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

// The options of a primitive from its FFI attributes: exactly the `count` keys of its options
// list `list` (LC_*_OPTIONS), each decoded by the list's generated `decode(get, options)`
// (cpp/roots.h has one) with the field's own type. InvalidArgument naming `primitive` and the
// offending key otherwise.
template <typename Options, typename Decode>
xla::ffi::Error decode_attributes(const xla::ffi::Dictionary& attrs, const char* primitive, const char* list,
                                  size_t count, Decode&& decode, Options* o) {
  if (attrs.size() != count) {
    return xla::ffi::Error::InvalidArgument(std::string(primitive) + ": expected exactly the " +
                                            std::to_string(count) + " attributes of " + list + ", got " +
                                            std::to_string(attrs.size()));
  }
  auto get = [&](std::string_view name, auto* value) {
    using V = std::remove_pointer_t<decltype(value)>;
    auto got = attrs.get<V>(name);
    if (got.has_error()) return false;
    *value = *got;
    return true;
  };
  if (const char* bad = decode(get, o)) {
    return xla::ffi::Error::InvalidArgument(std::string(primitive) + ": attribute '" + bad +
                                            "' missing or of the wrong type");
  }
  return xla::ffi::Error::Success();
}

}  // namespace linalg_core
