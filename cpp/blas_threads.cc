#include "blas_threads.h"

#include <vector>

#if defined(__linux__)
#include <dlfcn.h>
#include <link.h>
#endif

namespace linalg_core {
namespace {

using SetLocal = int (*)(int);

std::vector<SetLocal> find_setters() {
  std::vector<SetLocal> setters;
#if defined(__linux__)
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) -> int {
        if (info->dlpi_name == nullptr || info->dlpi_name[0] == '\0') return 0;
        void* handle = dlopen(info->dlpi_name, RTLD_LAZY | RTLD_NOLOAD);
        if (handle == nullptr) return 0;
        auto* found = static_cast<std::vector<SetLocal>*>(out);
        for (const char* name : {"openblas_set_num_threads_local",
                                 "scipy_openblas_set_num_threads_local",
                                 "openblas_set_num_threads_local64_",
                                 "scipy_openblas_set_num_threads_local64_"}) {
          if (void* sym = dlsym(handle, name)) {
            auto fn = reinterpret_cast<SetLocal>(sym);
            bool seen = false;
            for (SetLocal f : *found) seen = seen || f == fn;
            if (!seen && found->size() < 8) found->push_back(fn);
          }
        }
        dlclose(handle);
        return 0;
      },
      &setters);
#endif
  return setters;
}

const std::vector<SetLocal>& setters() {
  static const std::vector<SetLocal> found = find_setters();
  return found;
}

}  // namespace

bool blas_threads_local_available() { return !setters().empty(); }

ScopedBlasThreads::ScopedBlasThreads(int n) {
  if (n <= 0) return;
  for (SetLocal set : setters()) previous_[count_++] = set(n);
}

void set_blas_threads_until_exit(int n) {
  if (n <= 0) return;
  for (SetLocal set : setters()) set(n);
}

ScopedBlasThreads::~ScopedBlasThreads() {
  const auto& s = setters();
  for (int i = 0; i < count_; ++i) s[i](previous_[i]);
}

}  // namespace linalg_core
