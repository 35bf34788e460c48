// Groups the positions of a micro-batch by token id, so the embedding gradient
// can be summed per distinct token in a fixed order (deterministic, no atomics).
// Host-side; the arrays are uploaded next to the tokens.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace p3d {

// Invariants: token is strictly ascending (distinct tokens);
// offset.size() == token.size() + 1, offset.front() == 0, offset.back() == tokens.size();
// positions[offset[u] .. offset[u+1]) are the ascending positions holding token[u].
struct TokenBuckets {
  std::vector<int32_t> token;
  std::vector<int32_t> offset;
  std::vector<int32_t> positions;
};

TokenBuckets BuildTokenBuckets(std::span<const int32_t> tokens);

}  // namespace p3d
