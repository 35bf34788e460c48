// Deterministic input mutation for p3d-fuzz: a seeded generator (the same seed
// gives the same inputs on every machine) and JSON-aware mutations that reach
// past the parser into range checks and arithmetic: byte flips, insertions,
// deletions, splices between seeds, truncation, numbers replaced by extreme
// values (0, -1, 2^63, 1e308, 1e-300, 1e605), keys replaced by near misses.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace p3d::fuzz {

class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed ? seed : 0x9E3779B97F4A7C15ull) {}
  uint64_t Next() {  // xorshift64*
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 0x2545F4914F6CDD1Dull;
  }
  size_t Below(size_t n) { return n ? static_cast<size_t>(Next() % n) : 0; }

 private:
  uint64_t s_;
};

// One mutated input from `seeds` (non-empty); 1-4 mutations stacked.
std::string Mutate(const std::vector<std::string>& seeds, Rng& rng);

}  // namespace p3d::fuzz
