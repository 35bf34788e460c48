// Float64 CPU causal attention, the reference of the attention GPU tests
// (AttentionCore, FusedAttention): tokens-major qkv [B, S, (NH + 2 KV) * HD]
// and output gradient [B, S, NH*HD] as the GPU reads them (bf16 values), no
// rotary; query head h uses kv head h / (NH / KV).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "executor/attention_core.h"

namespace p3d::testing {

struct Reference {
  std::vector<double> out;   // [B, S, NH*HD]
  std::vector<double> dqkv;  // [B, S, (NH + 2 KV) * HD]
  std::vector<double> lse;   // [B, NH, S]: log-sum-exp of each row's scaled scores
};

inline Reference CausalAttention(const AttentionCoreShape& s, const std::vector<float>& qkv,
                                 const std::vector<float>& dout) {
  const int64_t B = s.batch, S = s.seq, NH = s.heads, KV = s.kv_heads, HD = s.head_dim;
  const int64_t G = NH / KV, width = (NH + 2 * KV) * HD;
  const double scale = 1.0 / std::sqrt(static_cast<double>(HD));
  auto at = [&](int64_t b, int64_t t, int64_t slot, int64_t d) {
    return ((b * S + t) * (NH + 2 * KV) + slot) * HD + d;
  };
  Reference r;
  r.out.assign(B * S * NH * HD, 0.0);
  r.dqkv.assign(B * S * width, 0.0);
  r.lse.assign(B * NH * S, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < NH; ++h) {
      const int64_t ks = NH + h / G, vs = NH + KV + h / G;
      for (int64_t i = 0; i < S; ++i) {
        std::vector<double> p(i + 1), dp(i + 1);
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j <= i; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < HD; ++d) dot += qkv[at(b, i, h, d)] * qkv[at(b, j, ks, d)];
          mx = std::max(mx, p[j] = dot * scale);
        }
        for (double& x : p) sum += (x = std::exp(x - mx));
        r.lse[(b * NH + h) * S + i] = mx + std::log(sum);
        for (double& x : p) x /= sum;
        double pdp = 0;
        for (int64_t j = 0; j <= i; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < HD; ++d) {
            r.out[((b * S + i) * NH + h) * HD + d] += p[j] * qkv[at(b, j, vs, d)];
            dot += dout[((b * S + i) * NH + h) * HD + d] * qkv[at(b, j, vs, d)];
            r.dqkv[at(b, j, vs, d)] += p[j] * dout[((b * S + i) * NH + h) * HD + d];
          }
          dp[j] = dot;
          pdp += p[j] * dot;
        }
        for (int64_t j = 0; j <= i; ++j) {
          const double ds = p[j] * (dp[j] - pdp) * scale;
          for (int64_t d = 0; d < HD; ++d) {
            r.dqkv[at(b, i, h, d)] += ds * qkv[at(b, j, ks, d)];
            r.dqkv[at(b, j, ks, d)] += ds * qkv[at(b, i, h, d)];
          }
        }
      }
    }
  return r;
}

}  // namespace p3d::testing
