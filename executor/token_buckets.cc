#include "executor/token_buckets.h"

#include <algorithm>
#include <numeric>

namespace p3d {

TokenBuckets BuildTokenBuckets(std::span<const int32_t> tokens) {
  TokenBuckets b;
  b.positions.resize(tokens.size());
  std::iota(b.positions.begin(), b.positions.end(), 0);
  // Stable sort by token keeps positions ascending inside each bucket.
  std::stable_sort(b.positions.begin(), b.positions.end(),
                   [&](int32_t x, int32_t y) { return tokens[x] < tokens[y]; });
  b.offset.push_back(0);
  for (size_t i = 0; i < b.positions.size(); ++i) {
    int32_t tok = tokens[b.positions[i]];
    if (b.token.empty() || b.token.back() != tok) {
      if (!b.token.empty()) b.offset.push_back(static_cast<int32_t>(i));
      b.token.push_back(tok);
    }
  }
  if (!b.token.empty()) b.offset.push_back(static_cast<int32_t>(b.positions.size()));
  return b;
}

}  // namespace p3d
