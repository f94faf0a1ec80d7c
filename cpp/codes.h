// Status and method codes written once per primitive, as X-macro lists of
// (enumerator, name, value): the C++ enum is generated from the list and the binding exports the
// same list as a {name: value} dict, which the Python layer and the portable kernels read. And
// the scalar options, one X-macro list of (type, name, default) per primitive (LC_DEFINE_OPTIONS).
#pragma once

#include <cstddef>

#define LC_ENUMERATOR(enumerator, name, value) enumerator = value,

// From a primitive's options list LIST of (type, name, default), inside its namespace: `struct
// Options` with those fields and defaults; `kOptionNames`, the names in list order (the binding
// exports them, the adapters reject other keys) and `kOptionCount`; and `decode_options(get, o)`,
// which fills `o` from `get(name, &field)` (true when `name` is present and holds the field's
// type) for every field and returns the first that failed, or nullptr. The FFI adapter
// (ffi::Dictionary, decode_attributes in cpp/ffi_dispatch.h) and the binding (a Python dict,
// decode_option_dict in python/arrays.h) both decode through it: one decoder, one list.
#define LC_OPTION_FIELD(type, name, default_value) type name = default_value;
#define LC_OPTION_NAME(type, name, default_value) #name,
#define LC_OPTION_DECODE(type, name, default_value) \
  if (!get(#name, &o->name)) return #name;
#define LC_DEFINE_OPTIONS(LIST)                                                           \
  struct Options {                                                                        \
    LIST(LC_OPTION_FIELD)                                                                 \
  };                                                                                      \
  inline constexpr const char* kOptionNames[] = {LIST(LC_OPTION_NAME)};                   \
  inline constexpr size_t kOptionCount = sizeof(kOptionNames) / sizeof(kOptionNames[0]); \
  template <typename Get>                                                                 \
  const char* decode_options(Get&& get, Options* o) {                                     \
    LIST(LC_OPTION_DECODE)                                                                \
    return nullptr;                                                                       \
  }
