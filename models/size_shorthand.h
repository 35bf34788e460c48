// Model sizes written as shorthands ("7B", "500M", "1.3b", "2T") and the
// standard Llama-style shape p3d generates for a size the zoo does not hold.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "models/model_spec.h"

namespace p3d {

// Sizes GenerateLlamaStyle accepts, in parameters (inclusive).
inline constexpr int64_t kMinGeneratedParams = 50'000'000;           // 50M
inline constexpr int64_t kMaxGeneratedParams = 100'000'000'000'000;  // 100T

// True when `arg` is shaped like a size: it starts with a digit, sign or '.'
// and ends in one of k, m, b, t (any case). Such an argument is a size
// request, so parse errors are reported as bad sizes, not unknown models.
bool LooksLikeSize(const std::string& arg);

// "7B" -> 7e9, "500m" -> 5e8, "1.3B" -> 1.3e9, "2T" -> 2e12, "100K" -> 1e5.
// Errors (naming `arg`): no number, trailing junk, non-finite, <= 0, or more
// than kMaxGeneratedParams.
StatusOr<int64_t> ParseSize(const std::string& arg);

// A standard Llama-style shape with about `params` parameters, named `name`.
// The rule (docs/models.md):
//   vocab 32000, untied head, max_positions 4096, head_dim 128;
//   hidden H = 128 * NH, where H first solves 2*V*H + 12*H^3/128 = params
//     (12*H^2 per layer at the aspect ratio H/L = 128) and NH is rounded to a
//     multiple of 8 when >= 32, of 4 when >= 8;
//   KV = 8 when NH >= 32 (grouped-query attention), else NH;
//   F = 8/3 * H rounded to a multiple of 256 (SwiGLU);
//   L = the layer count that brings TotalParams closest to `params`.
// The NH neighbours one step either side are tried when the first shape
// misses by more than 1%; the closest shape wins. Result: within 3.5% of
// `params` over [kMinGeneratedParams, kMaxGeneratedParams], within 2% above 1B.
StatusOr<ModelSpec> GenerateLlamaStyle(int64_t params, const std::string& name);

}  // namespace p3d
