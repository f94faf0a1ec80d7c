// XLA FFI adapter (CPU) for the polar factor: decode, check shapes, call cpp/polar.h.
#include <cstdint>
#include <limits>
#include <string>

#include "ffi_dispatch.h"
#include "polar.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace linalg_core {
namespace {

// The scalar options by name (LC_POLAR_OPTIONS, the list python/polar.cc decodes too).
ffi::Error decode_options(const ffi::Dictionary& attrs, polar::Options* o) {
#define LC_POLAR_DECODE(type, name)                                                  \
  {                                                                                  \
    auto value = attrs.get<type>(#name);                                             \
    if (!value.has_value()) {                                                        \
      return ffi::Error::InvalidArgument("polar: attribute '" #name "' missing or not " #type); \
    }                                                                                \
    o->name = *value;                                                                \
  }
  LC_POLAR_OPTIONS(LC_POLAR_DECODE)
#undef LC_POLAR_DECODE
  return ffi::Error::Success();
}

ffi::Error PolarImpl(ffi::AnyBuffer a, ffi::Result<ffi::AnyBuffer> q, ffi::Result<ffi::AnyBuffer> residual,
                     ffi::Result<ffi::AnyBuffer> sigma_lower, ffi::Result<ffi::AnyBuffer> sigma_upper,
                     ffi::Result<ffi::AnyBuffer> norm_bound, ffi::Result<ffi::Buffer<ffi::S32>> iterations,
                     ffi::Result<ffi::Buffer<ffi::S32>> method, ffi::Result<ffi::Buffer<ffi::S32>> status,
                     ffi::Dictionary attrs) {
  auto dims = a.dimensions();
  if (dims.size() < 2) return ffi::Error::InvalidArgument("polar: a must have shape (..., m, n)");
  polar::Shape shape;
  shape.m = dims[dims.size() - 2];
  shape.n = dims[dims.size() - 1];
  shape.batch = leading_count(a, 2);
  if (shape.m > std::numeric_limits<int>::max() || shape.n > std::numeric_limits<int>::max()) {
    return ffi::Error::InvalidArgument("polar: m and n must fit a LAPACK int");
  }
  polar::Options o;
  ffi::Error e = decode_options(attrs, &o);
  if (e.failure()) return e;
  auto schedule = attrs.get<ffi::Span<const double>>("schedule");
  if (!schedule.has_value() || schedule->size() % 3 != 0) {
    return ffi::Error::InvalidArgument("polar: attribute 'schedule' must be float64 of length 3 * steps");
  }
  auto run = [&](auto zero) -> ffi::Error {
    using T = decltype(zero);
    polar::Args<T> args{static_cast<const T*>(a.untyped_data()),
                        schedule->begin(),
                        static_cast<int64_t>(schedule->size() / 3),
                        static_cast<T*>(q->untyped_data()),
                        static_cast<T*>(residual->untyped_data()),
                        static_cast<T*>(sigma_lower->untyped_data()),
                        static_cast<T*>(sigma_upper->untyped_data()),
                        static_cast<T*>(norm_bound->untyped_data()),
                        iterations->typed_data(),
                        method->typed_data(),
                        status->typed_data()};
    if (!polar::polar<T>(shape, args, o)) {
      return ffi::Error::InvalidArgument("polar: invalid shape or options (0 < tol < 1, max_iters >= 0, band)");
    }
    return ffi::Error::Success();
  };
  return dispatch_float(a.element_type(), "polar", run);
}

}  // namespace
}  // namespace linalg_core

XLA_FFI_DEFINE_HANDLER_SYMBOL(LcPolarCpu, linalg_core::PolarImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()         // a
                                  .Ret<ffi::AnyBuffer>()         // q
                                  .Ret<ffi::AnyBuffer>()         // residual
                                  .Ret<ffi::AnyBuffer>()         // sigma_lower
                                  .Ret<ffi::AnyBuffer>()         // sigma_upper
                                  .Ret<ffi::AnyBuffer>()         // norm_bound
                                  .Ret<ffi::Buffer<ffi::S32>>()  // iterations
                                  .Ret<ffi::Buffer<ffi::S32>>()  // method
                                  .Ret<ffi::Buffer<ffi::S32>>()  // status
                                  .Attrs<ffi::Dictionary>());    // LC_POLAR_OPTIONS + schedule
