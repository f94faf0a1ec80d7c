// Deterministic pseudo-random start vectors for the kernels' internal iterations (LOBPCG's fill
// columns, the Lanczos bound of the inverse roots): Knuth's MMIX linear congruential generator,
// the top 53 bits mapped to [-0.5, 0.5). Reproducible across runs and platforms, no seed to pass;
// only "generic" directions are needed (no statistical quality beyond that).
#pragma once

#include <cstdint>

namespace linalg_core {

class Lcg {
 public:
  explicit Lcg(uint64_t state = 0x9E3779B97F4A7C15ull) : state_(state) {}

  // The next value in [-0.5, 0.5).
  double next() {
    state_ = state_ * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<double>(state_ >> 11) / 9007199254740992.0 - 0.5;
  }

 private:
  uint64_t state_;
};

}  // namespace linalg_core
