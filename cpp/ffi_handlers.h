// Declarations of the CPU XLA FFI handler symbols (extern "C", as XLA_FFI_DEFINE_HANDLER_SYMBOL
// defines them), for the binding layer to wrap in capsules.
#pragma once

#include "xla/ffi/api/c_api.h"

extern "C" {
XLA_FFI_Error* LcFdUpdateCpu(XLA_FFI_CallFrame* call_frame);
XLA_FFI_Error* LcFdApplyInverseRootCpu(XLA_FFI_CallFrame* call_frame);
XLA_FFI_Error* LcInverseRootCpu(XLA_FFI_CallFrame* call_frame);
XLA_FFI_Error* LcRandomizedSvdCpu(XLA_FFI_CallFrame* call_frame);
XLA_FFI_Error* LcRandomizedEighCpu(XLA_FFI_CallFrame* call_frame);
XLA_FFI_Error* LcLobpcgCpu(XLA_FFI_CallFrame* call_frame);
XLA_FFI_Error* LcKronApproxCpu(XLA_FFI_CallFrame* call_frame);
XLA_FFI_Error* LcKronCosineCpu(XLA_FFI_CallFrame* call_frame);
XLA_FFI_Error* LcSharedBasisUpdateCpu(XLA_FFI_CallFrame* call_frame);
XLA_FFI_Error* LcPolarCpu(XLA_FFI_CallFrame* call_frame);
XLA_FFI_Error* LcEigenbasisRefreshCpu(XLA_FFI_CallFrame* call_frame);
}
