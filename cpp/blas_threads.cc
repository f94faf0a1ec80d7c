#include "blas_threads.h"

#include <mutex>
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

// The process-wide scope count and the counts found by the first scope (see ScopedBlasThreads).
struct OpenScopes {
  std::mutex mutex;
  int open = 0;
  int found[8];
};

OpenScopes& open_scopes() {
  static OpenScopes scopes;
  return scopes;
}

}  // namespace

bool blas_threads_local_available() { return !setters().empty(); }

ScopedBlasThreads::ScopedBlasThreads(int n) {
  if (n <= 0 || setters().empty()) return;
  OpenScopes& scopes = open_scopes();
  std::lock_guard<std::mutex> lock(scopes.mutex);
  for (SetLocal set : setters()) previous_[count_++] = set(n);
  if (scopes.open++ == 0) {
    for (int i = 0; i < count_; ++i) scopes.found[i] = previous_[i];
  }
}

void set_blas_threads_until_exit(int n) {
  if (n <= 0) return;
  for (SetLocal set : setters()) set(n);
}

ScopedBlasThreads::~ScopedBlasThreads() {
  if (count_ == 0) return;
  const auto& s = setters();
  OpenScopes& scopes = open_scopes();
  std::lock_guard<std::mutex> lock(scopes.mutex);
  const int* restore = --scopes.open == 0 ? scopes.found : previous_;
  for (int i = 0; i < count_; ++i) s[i](restore[i]);
}

}  // namespace linalg_core
